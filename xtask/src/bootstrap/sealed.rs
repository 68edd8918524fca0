//! libsodium's sealed box (`crypto_box_seal`), the encryption GitHub requires for Actions
//! secrets: an ephemeral X25519 key pair per message, so only the holder of the repository's
//! private key (GitHub) can open it, and not even the sender can read it back.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// `value` sealed for `public_key` (base64, as GitHub's public-key endpoint gives it); base64.
pub fn seal(public_key: &str, value: &[u8]) -> anyhow::Result<String> {
    let bytes = STANDARD.decode(public_key.trim()).ok().filter(|b| b.len() == crypto_box::KEY_SIZE);
    let bytes: [u8; crypto_box::KEY_SIZE] = bytes
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| anyhow::anyhow!("GitHub's secrets public key is not a base64 X25519 key"))?;
    let sealed = crypto_box::PublicKey::from(bytes)
        .seal(&mut crypto_box::aead::OsRng, value)
        .map_err(|_| anyhow::anyhow!("sealing a secret failed"))?;
    Ok(STANDARD.encode(sealed))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made with libsodium (PyNaCl 1.5.0's SealedBox) for the secret key 1, 2, …, 32.
    const LIBSODIUM_SEALED: &str =
        "2ksZ3kNDzN5+xcJ6PceXhicPe0UX9ZcKd4pTEdkfIEneL4eKrkYjVbVY92Zp/YNxwlzouXrbQ3uXNO0B3RAVTR51qQ==";
    const LIBSODIUM_PUBLIC: &str = "B6N8vBQgk8i3VdwbEOhstCY3StFqqFPtC9/AsrhtHHw=";

    fn secret_key() -> crypto_box::SecretKey {
        let bytes: [u8; 32] = std::array::from_fn(|i| i as u8 + 1);
        crypto_box::SecretKey::from(bytes)
    }

    #[test]
    fn the_format_is_libsodiums() {
        let key = secret_key();
        assert_eq!(STANDARD.encode(key.public_key().as_bytes()), LIBSODIUM_PUBLIC);
        let opened = key.unseal(&STANDARD.decode(LIBSODIUM_SEALED).unwrap()).unwrap();
        assert_eq!(opened, b"netsec-secret-value");
    }

    #[test]
    fn a_sealed_value_opens_with_the_secret_key_only() {
        let key = secret_key();
        let sealed = STANDARD.decode(seal(LIBSODIUM_PUBLIC, b"hunter2").unwrap()).unwrap();
        assert_eq!(key.unseal(&sealed).unwrap(), b"hunter2");
        let other = crypto_box::SecretKey::from([9u8; 32]);
        assert!(other.unseal(&sealed).is_err());
        // A fresh ephemeral key every time: the same value never seals the same way twice.
        assert_ne!(seal(LIBSODIUM_PUBLIC, b"hunter2").unwrap(), seal(LIBSODIUM_PUBLIC, b"hunter2").unwrap());
    }

    #[test]
    fn a_bad_key_is_refused() {
        assert!(seal("not base64!", b"x").is_err());
        assert!(seal(&STANDARD.encode([1u8; 16]), b"x").is_err());
    }
}
