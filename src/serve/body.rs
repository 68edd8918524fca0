//! Request bodies: the size limit, the slow-client timeout, content types, and the CSV file
//! inside a multipart upload.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::error::ApiError;

/// What a request body holds, from its Content-Type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Csv,
    Json,
    Multipart { boundary: String },
}

/// Classifies the Content-Type among those `accepted`; anything else is a 415 that lists
/// them.
pub fn kind(headers: &HeaderMap, accepted: &[&str]) -> Result<Kind, ApiError> {
    let raw = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = raw.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let kind = match essence.as_str() {
        "text/csv" | "application/csv" | "text/plain" => Some(Kind::Csv),
        "application/json" => Some(Kind::Json),
        e if e.starts_with("application/") && e.ends_with("+json") => Some(Kind::Json),
        "multipart/form-data" => multer::parse_boundary(raw).ok().map(|boundary| Kind::Multipart { boundary }),
        _ => None,
    };
    let family = |k: &Kind| match k {
        Kind::Csv => "text/csv",
        Kind::Json => "application/json",
        Kind::Multipart { .. } => "multipart/form-data",
    };
    match kind {
        Some(k) if accepted.contains(&family(&k)) => Ok(k),
        _ if essence == "multipart/form-data" && accepted.contains(&"multipart/form-data") => {
            Err(ApiError::bad_request("the multipart Content-Type has no boundary")
                .hint("let the HTTP client build the multipart body and its header"))
        }
        _ => {
            let shown = if raw.is_empty() { "no Content-Type".to_string() } else { format!("Content-Type `{raw}`") };
            Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("{shown} is not accepted here"))
                .hint(format!("send one of: {}", accepted.join(", ")))
                .closing())
        }
    }
}

/// How much of a body over the limit is still read (and dropped) so that a client that is
/// still sending it gets to read the 413 rather than a connection reset.
const DRAIN_LIMIT: usize = 8 << 20;

/// Reads the whole body: at most `limit` bytes (413 past it) within `timeout` (408 after it,
/// so a client trickling its body cannot hold a connection and its memory forever).
pub async fn read(mut body: Body, headers: &HeaderMap, limit: usize, timeout: Duration) -> Result<Bytes, ApiError> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit).closing());
    }
    let deadline = Instant::now() + timeout;
    let mut parts: Vec<Bytes> = Vec::new();
    let mut total = 0;
    while let Some(data) = next_data(&mut body, deadline, timeout).await? {
        total += data.len();
        if total > limit {
            let drained = drain(&mut body, deadline).await;
            let error = too_large(limit);
            return Err(if drained { error } else { error.closing() });
        }
        parts.push(data);
    }
    // A body usually arrives as one frame: hand it on without copying.
    if parts.len() == 1 {
        return Ok(parts.pop().expect("one part"));
    }
    let mut joined = Vec::with_capacity(total);
    parts.iter().for_each(|part| joined.extend_from_slice(part));
    Ok(Bytes::from(joined))
}

/// The next data frame (trailers are skipped), None at the end of the body.
async fn next_data(body: &mut Body, deadline: Instant, timeout: Duration) -> Result<Option<Bytes>, ApiError> {
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(None) => return Ok(None),
            Ok(Some(Ok(frame))) => frame,
            Ok(Some(Err(error))) => {
                return Err(ApiError::bad_request(format!("the request body could not be read: {error}")).closing())
            }
            Err(_) => {
                let problem = format!("the request body did not arrive within {} s", timeout.as_secs_f64());
                return Err(ApiError::new(StatusCode::REQUEST_TIMEOUT, problem).closing());
            }
        };
        if let Ok(data) = frame.into_data() {
            return Ok(Some(data));
        }
    }
}

/// Reads and drops the rest of a refused body, up to [`DRAIN_LIMIT`]; true if it ended.
async fn drain(body: &mut Body, deadline: Instant) -> bool {
    let mut dropped = 0;
    while dropped < DRAIN_LIMIT {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(None) => return true,
            Ok(Some(Ok(frame))) => dropped += frame.data_ref().map_or(0, Bytes::len),
            Ok(Some(Err(_))) | Err(_) => return false,
        }
    }
    false
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the request body is over the limit of {limit} bytes"))
        .hint("split the rows over several requests")
}

/// The uploaded file of a multipart body, which holds that one part: named `file` or
/// carrying a file name (a browser's upload). Any other part is refused, as extra CSV
/// columns are: the client has most likely sent something else than it meant to. Returns
/// the file's name (for messages) and its bytes.
pub async fn multipart_file(body: Bytes, boundary: String) -> Result<(String, Bytes), ApiError> {
    const HINT: &str = "send the CSV as the only part of a multipart/form-data body, a file field named `file`";
    let malformed = |e: multer::Error| ApiError::bad_request(format!("malformed multipart body: {e}")).hint(HINT);
    let mut multipart = multer::Multipart::with_reader(std::io::Cursor::new(body), boundary);
    let mut file = None;
    while let Some(field) = multipart.next_field().await.map_err(malformed)? {
        let name = field.name().unwrap_or("").to_string();
        let is_file = field.file_name().is_some() || name == "file";
        if !is_file || file.is_some() {
            return Err(ApiError::bad_request(format!("unexpected part `{name}` in the multipart body")).hint(HINT));
        }
        let file_name = field.file_name().unwrap_or("upload").to_string();
        file = Some((file_name, field.bytes().await.map_err(malformed)?));
    }
    file.ok_or_else(|| ApiError::bad_request("the multipart body has no file part").hint(HINT))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(content_type: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap());
        headers
    }

    #[test]
    fn content_types_are_classified_or_refused_with_415() {
        let csv_or_form = ["text/csv", "multipart/form-data"];
        assert_eq!(kind(&headers("text/csv; charset=utf-8"), &csv_or_form).unwrap(), Kind::Csv);
        assert_eq!(
            kind(&headers("multipart/form-data; boundary=xyz"), &csv_or_form).unwrap(),
            Kind::Multipart { boundary: "xyz".into() }
        );
        assert_eq!(kind(&headers("multipart/form-data"), &csv_or_form).unwrap_err().status, StatusCode::BAD_REQUEST);
        let refused = kind(&headers("application/json"), &csv_or_form).unwrap_err();
        assert_eq!(refused.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(refused.hint.as_deref().unwrap().contains("text/csv"));
        assert_eq!(
            kind(&HeaderMap::new(), &["application/json"]).unwrap_err().status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        assert_eq!(kind(&headers("application/problem+json"), &["application/json"]).unwrap(), Kind::Json);
    }

    #[tokio::test]
    async fn the_file_part_of_a_multipart_body_is_found() {
        let file = "--b\r\nContent-Disposition: form-data; name=\"upload\"; filename=\"rows.csv\"\r\n\
                    Content-Type: text/csv\r\n\r\na,b\n1,1\n\r\n--b--\r\n";
        let (name, bytes) = multipart_file(Bytes::from(file), "b".into()).await.unwrap();
        assert_eq!((name.as_str(), &bytes[..]), ("rows.csv", &b"a,b\n1,1\n"[..]));
        let field = "--b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\na,b\n\r\n--b--\r\n";
        assert_eq!(multipart_file(Bytes::from(field), "b".into()).await.unwrap().0, "upload");
        let extra = format!("--b\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n{field}");
        let error = multipart_file(Bytes::from(extra), "b".into()).await.unwrap_err();
        assert!(error.problem.contains("unexpected part `note`"), "{}", error.problem);
        let error = multipart_file(Bytes::from("--b\r\ngarbage"), "b".into()).await.unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_refused() {
        let error = read(Body::from(vec![b'x'; 100]), &HeaderMap::new(), 10, Duration::from_secs(1)).await.unwrap_err();
        assert_eq!(error.status, StatusCode::PAYLOAD_TOO_LARGE);
        let ok = read(Body::from("abc"), &HeaderMap::new(), 10, Duration::from_secs(1)).await.unwrap();
        assert_eq!(&ok[..], b"abc");
    }
}
