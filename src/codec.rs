//! The envelope of every binary file netsec writes for later loading (the fitted
//! preprocessor, model files): what it is, its format version and a checksum, so that a
//! truncated, altered or foreign file is refused with a clear message instead of misread.
//!
//! Layout: `NETSEC\0\n` | kind length (u16 LE) | kind | version (u32 LE) |
//! payload length (u64 LE) | sha256(payload) | payload (postcard).

use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"NETSEC\0\n";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("not a netsec file (its first bytes are not netsec's)")]
    NotNetsec,
    #[error("the file holds a {found}, not a {expected}")]
    WrongKind { expected: String, found: String },
    #[error("format version {found} is not supported (this build reads version {supported}); use a netsec of the version that wrote it, or rebuild the file")]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error("the file is truncated ({missing} bytes missing)")]
    Truncated { missing: u64 },
    #[error("the checksum does not match: the file was altered or damaged")]
    ChecksumMismatch,
    #[error("the payload does not decode: {0}")]
    Payload(String),
}

pub fn encode<T: Serialize>(kind: &str, version: u32, value: &T) -> Vec<u8> {
    let payload = postcard::to_stdvec(value).expect("netsec's own types serialise");
    let mut out = Vec::with_capacity(payload.len() + 64 + kind.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(kind.len() as u16).to_le_bytes());
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&Sha256::digest(&payload));
    out.extend_from_slice(&payload);
    out
}

pub fn decode<T: DeserializeOwned>(kind: &str, version: u32, bytes: &[u8]) -> Result<T, CodecError> {
    let mut rest = bytes.strip_prefix(MAGIC.as_slice()).ok_or(CodecError::NotNetsec)?;
    let kind_len = u16::from_le_bytes(take(&mut rest)?) as usize;
    let found = take_slice(&mut rest, kind_len)?;
    if found != kind.as_bytes() {
        let found = String::from_utf8_lossy(found).into_owned();
        return Err(CodecError::WrongKind { expected: kind.into(), found });
    }
    let found_version = u32::from_le_bytes(take(&mut rest)?);
    if found_version != version {
        return Err(CodecError::UnsupportedVersion { found: found_version, supported: version });
    }
    let length = u64::from_le_bytes(take(&mut rest)?);
    let checksum: [u8; 32] = take(&mut rest)?;
    if (rest.len() as u64) < length {
        return Err(CodecError::Truncated { missing: length - rest.len() as u64 });
    }
    if rest.len() as u64 > length || Sha256::digest(rest).as_slice() != checksum {
        return Err(CodecError::ChecksumMismatch);
    }
    postcard::from_bytes(rest).map_err(|e| CodecError::Payload(e.to_string()))
}

fn take<const N: usize>(rest: &mut &[u8]) -> Result<[u8; N], CodecError> {
    Ok(take_slice(rest, N)?.try_into().expect("N bytes"))
}

fn take_slice<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], CodecError> {
    if rest.len() < n {
        return Err(CodecError::Truncated { missing: (n - rest.len()) as u64 });
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_kind_of_damage() {
        let value = (vec![1.5f32, -2.0], "x".to_string());
        let bytes = encode("thing", 3, &value);
        assert_eq!(decode::<(Vec<f32>, String)>("thing", 3, &bytes), Ok(value));
        let err = |bytes: &[u8], kind: &str, version| decode::<(Vec<f32>, String)>(kind, version, bytes).unwrap_err();
        assert_eq!(err(&bytes[..bytes.len() - 2], "thing", 3), CodecError::Truncated { missing: 2 });
        assert!(matches!(err(&bytes, "other", 3), CodecError::WrongKind { .. }));
        assert!(matches!(err(&bytes, "thing", 4), CodecError::UnsupportedVersion { found: 3, supported: 4 }));
        assert_eq!(err(b"PK\x03\x04", "thing", 3), CodecError::NotNetsec);
        let mut altered = bytes.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(err(&altered, "thing", 3), CodecError::ChecksumMismatch);
    }
}
