//! The Blob service's REST API, the few operations the store needs, over blocking reqwest
//! (rustls with ring): requests authorized by Shared Key, a SAS or a managed identity's token,
//! retried with backoff, and errors that say what to do.
//!
//! Shared Key signing follows "Authorize with Shared Key" (Blob service, version 2009-09-19 and
//! later): the string to sign is the verb, the standard headers, the `x-ms-` headers sorted, and
//! the canonicalized resource `/<account><path>` plus the query parameters sorted.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::blocking::Response;
use reqwest::Method;
use sha2::Sha256;

use super::account::{Account, Auth};
use crate::error::InputError;

/// The REST API version every request names (Azurite 3.35 and Azure both serve it).
const API_VERSION: &str = "2024-11-04";
/// Attempts per request: the first and the retries, with doubling delays and jitter.
const MAX_ATTEMPTS: u32 = 5;
const FIRST_DELAY: Duration = Duration::from_millis(200);
/// Characters a path segment or query value keeps unencoded (RFC 3986's unreserved ones).
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

pub struct Client {
    http: reqwest::blocking::Client,
    pub account: Account,
    /// A managed identity's token and when to fetch a new one.
    token: Mutex<Option<(String, Instant)>>,
}

/// One request: `path` is `/container/blob` (unencoded), `query` and `headers` in any order.
pub struct Request<'a> {
    pub method: Method,
    pub path: &'a str,
    pub query: Vec<(&'a str, String)>,
    pub headers: Vec<(&'a str, String)>,
    pub body: Option<Vec<u8>>,
}

impl<'a> Request<'a> {
    pub fn new(method: Method, path: &'a str) -> Request<'a> {
        Request { method, path, query: Vec::new(), headers: Vec::new(), body: None }
    }

    pub fn query(mut self, name: &'a str, value: impl Into<String>) -> Self {
        self.query.push((name, value.into()));
        self
    }

    pub fn header(mut self, name: &'a str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(mut self, bytes: Vec<u8>) -> Self {
        self.body = Some(bytes);
        self
    }
}

/// An answer the caller decides about: its status, its error code (`x-ms-error-code`), and
/// the response for headers and body.
pub struct Answer {
    pub status: u16,
    pub code: String,
    pub response: Response,
}

impl Client {
    pub fn new(account: Account) -> anyhow::Result<Client> {
        // reqwest is built without a crypto provider: use ring, as the S3 client does.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(120))
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("netsec/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Client { http, account, token: Mutex::new(None) })
    }

    /// Sends a request, retrying network failures, 408, 429 and 5xx with backoff; any other
    /// answer comes back for the caller to judge. `operation` and `target` name it in errors.
    pub fn send(&self, operation: &str, target: &str, request: &Request) -> anyhow::Result<Answer> {
        let mut delay = FIRST_DELAY;
        for attempt in 1..=MAX_ATTEMPTS {
            let last = attempt == MAX_ATTEMPTS;
            match self.http.execute(self.build(request)?) {
                Ok(response) => {
                    let status = response.status().as_u16();
                    if !(last || matches!(status, 408 | 429 | 500..=599)) {
                        let code = header(&response, "x-ms-error-code").unwrap_or_default();
                        return Ok(Answer { status, code, response });
                    }
                    if last {
                        return Err(self.failure(operation, target, Answer::from(response)));
                    }
                }
                // The URL may carry a SAS: never in a message.
                Err(error) if last => {
                    return Err(anyhow::anyhow!(
                        "Azure Blob {operation} {target} could not be sent to {} after {MAX_ATTEMPTS} attempts with \
                         backoff: {}\n  hint: check the network and the account's endpoint \
                         (AZURE_STORAGE_CONNECTION_STRING's BlobEndpoint)",
                        self.account.endpoint,
                        describe(&error.without_url())
                    ))
                }
                Err(_) => {}
            }
            std::thread::sleep(jittered(delay));
            delay *= 2;
        }
        unreachable!("the last attempt returns")
    }

    /// The HTTP request, authorized.
    fn build(&self, request: &Request) -> anyhow::Result<reqwest::blocking::Request> {
        let path = format!("{}{}", endpoint_path(&self.account.endpoint), encode_path(request.path));
        let mut query: Vec<String> =
            request.query.iter().map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, ENCODE))).collect();
        if let Auth::Sas(sas) = &self.account.auth {
            query.push(sas.clone());
        }
        let endpoint = &self.account.endpoint;
        let origin = endpoint.strip_suffix(endpoint_path(endpoint)).unwrap_or(endpoint);
        let url =
            if query.is_empty() { format!("{origin}{path}") } else { format!("{origin}{path}?{}", query.join("&")) };
        let mut headers = request.headers.clone();
        headers.push(("x-ms-date", httpdate::fmt_http_date(SystemTime::now())));
        headers.push(("x-ms-version", API_VERSION.to_string()));
        let authorization = match &self.account.auth {
            Auth::SharedKey(key) => Some(format!(
                "SharedKey {}:{}",
                self.account.name,
                sign(key, &string_to_sign(&self.account.name, &path, request, &headers))
            )),
            Auth::Sas(_) => None,
            Auth::ManagedIdentity => Some(format!("Bearer {}", self.token()?)),
        };
        let mut builder = self.http.request(request.method.clone(), url);
        for (name, value) in &headers {
            builder = builder.header(*name, value);
        }
        if let Some(authorization) = authorization {
            builder = builder.header("Authorization", authorization);
        }
        if let Some(body) = &request.body {
            builder = builder.body(body.clone());
        }
        Ok(builder.build()?)
    }

    /// A managed identity's token for Azure Storage, fetched again five minutes before it expires.
    fn token(&self) -> anyhow::Result<String> {
        let mut cached = self.token.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((token, _)) = cached.as_ref().filter(|(_, renew_at)| Instant::now() < *renew_at) {
            return Ok(token.clone());
        }
        let (token, lifetime) = managed_identity_token(&self.http)?;
        let renew_at = Instant::now() + lifetime.saturating_sub(Duration::from_secs(300));
        *cached = Some((token.clone(), renew_at));
        Ok(token)
    }

    /// An answer that is not what the operation wanted, as a message naming the operation, the
    /// object and what to do.
    pub fn failure(&self, operation: &str, target: &str, answer: Answer) -> anyhow::Error {
        let Answer { status, code, response } = answer;
        let message = response.text().ok().and_then(|body| element(&body, "Message")).unwrap_or_default();
        let message = message.lines().next().unwrap_or_default().to_string();
        let at = &self.account.endpoint;
        let container = target.trim_start_matches("az://").split('/').next().unwrap_or_default();
        match (status, code.as_str()) {
            (404, "ContainerNotFound") => {
                InputError::new(format!("the container `{container}` does not exist ({operation} {target} at {at})"))
                    .hint(format!(
                        "create it (`az storage container create --name {container}`), or check the container name and \
                         the account ({})",
                        self.account.name
                    ))
                    .into()
            }
            (401 | 403, code) => {
                let code = if code.is_empty() { status.to_string() } else { code.to_string() };
                InputError::new(format!("Azure Blob Storage refused {operation} {target} at {at} ({code})"))
                    .hint(format!(
                        "check the key or SAS of account {} (AZURE_STORAGE_KEY, AZURE_STORAGE_SAS_TOKEN or \
                         AZURE_STORAGE_CONNECTION_STRING): a rotated key or an expired SAS is refused, and a SAS must \
                         allow read, write, delete and list on the container's blobs (ss=b, srt=co, sp=rwdl…); a \
                         managed identity needs the Storage Blob Data Contributor role",
                        self.account.name
                    ))
                    .into()
            }
            (status, code) => {
                anyhow::anyhow!("Azure Blob {operation} {target} at {at} failed: {status} {code}: {message}")
            }
        }
    }
}

impl From<Response> for Answer {
    fn from(response: Response) -> Answer {
        let code = header(&response, "x-ms-error-code").unwrap_or_default();
        Answer { status: response.status().as_u16(), code, response }
    }
}

pub fn header(response: &Response, name: &str) -> Option<String> {
    response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// The path part of an endpoint (`/acct` for an emulator's, empty for Azure's).
fn endpoint_path(endpoint: &str) -> &str {
    let after_scheme = endpoint.split_once("://").map_or(endpoint, |(_, rest)| rest);
    after_scheme.find('/').map_or("", |at| &after_scheme[at..])
}

fn encode_path(path: &str) -> String {
    path.split('/').map(|segment| utf8_percent_encode(segment, ENCODE).to_string()).collect::<Vec<_>>().join("/")
}

/// The Shared Key string to sign. `path` is the request's encoded path; `headers` carries
/// every header sent but Authorization.
fn string_to_sign(account: &str, path: &str, request: &Request, headers: &[(&str, String)]) -> String {
    let standard = |name: &str| {
        headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).unwrap_or_default()
    };
    // Content-Length is empty when zero (version 2015-02-21 and later).
    let length = request.body.as_ref().map(Vec::len).filter(|&n| n > 0).map(|n| n.to_string()).unwrap_or_default();
    let mut ms: Vec<(String, &str)> = headers
        .iter()
        .filter(|(k, _)| k.to_ascii_lowercase().starts_with("x-ms-"))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim()))
        .collect();
    ms.sort();
    let mut query: Vec<(String, &str)> =
        request.query.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.as_str())).collect();
    query.sort();
    let mut text = [
        request.method.as_str(),
        standard("Content-Encoding"),
        standard("Content-Language"),
        &length,
        standard("Content-MD5"),
        standard("Content-Type"),
        standard("Date"),
        standard("If-Modified-Since"),
        standard("If-Match"),
        standard("If-None-Match"),
        standard("If-Unmodified-Since"),
        standard("Range"),
    ]
    .join("\n");
    text.push('\n');
    for (name, value) in ms {
        text.push_str(&format!("{name}:{value}\n"));
    }
    text.push_str(&format!("/{account}{path}"));
    for (name, value) in query {
        text.push_str(&format!("\n{name}:{value}"));
    }
    text
}

fn sign(key: &[u8], text: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(text.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// A token from the managed identity endpoint: App Service's and Container Apps'
/// (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`) or the virtual machine's instance metadata
/// service; `AZURE_CLIENT_ID` picks a user-assigned identity.
fn managed_identity_token(http: &reqwest::blocking::Client) -> anyhow::Result<(String, Duration)> {
    let resource = utf8_percent_encode("https://storage.azure.com/", ENCODE);
    let client = std::env::var("AZURE_CLIENT_ID").map(|id| format!("&client_id={}", utf8_percent_encode(&id, ENCODE)));
    let client = client.unwrap_or_default();
    let request = match (std::env::var("IDENTITY_ENDPOINT"), std::env::var("IDENTITY_HEADER")) {
        (Ok(endpoint), Ok(secret)) => http
            .get(format!("{endpoint}?api-version=2019-08-01&resource={resource}{client}"))
            .header("X-IDENTITY-HEADER", secret),
        _ => http
            .get(format!(
                "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource={resource}{client}"
            ))
            .header("Metadata", "true")
            .timeout(Duration::from_secs(5)),
    };
    let no_identity = |detail: String| {
        InputError::new(format!("no managed identity token for Azure Storage: {detail}")).hint(
            "outside Azure, set AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN with AZURE_STORAGE_ACCOUNT, or \
             AZURE_STORAGE_CONNECTION_STRING",
        )
    };
    let response = request.send().map_err(|e| no_identity(describe(&e.without_url())))?;
    let status = response.status();
    let body: serde_json::Value = response.json().map_err(|e| no_identity(describe(&e.without_url())))?;
    let token = body["access_token"].as_str().ok_or_else(|| no_identity(format!("the endpoint answered {status}")))?;
    let expires_in = body["expires_in"].as_str().and_then(|s| s.parse().ok()).or(body["expires_in"].as_u64());
    Ok((token.to_string(), Duration::from_secs(expires_in.unwrap_or(3600))))
}

/// A reqwest error with its causes, on one line.
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Up to a quarter more or less than `delay`, so that writers retrying together spread out.
fn jittered(delay: Duration) -> Duration {
    let quarter = delay.as_millis() as u64 / 4;
    let offset = rand::random_range(0..=2 * quarter);
    Duration::from_millis(delay.as_millis() as u64 - quarter + offset)
}

/// The text of the first `<name>…</name>` in an XML document, entities decoded. The Blob
/// service's answers are plain elements without attributes on these or CDATA, which is all
/// this reads.
pub fn element(xml: &str, name: &str) -> Option<String> {
    blocks(xml, name).first().map(|text| unescape(text))
}

/// What is between each `<name>` and its `</name>`, as written (nested elements included).
pub fn blocks<'x>(xml: &'x str, name: &str) -> Vec<&'x str> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        found.push(&after[..end]);
        rest = &after[end + close.len()..];
    }
    found
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let entity_end = rest[at..].find(';').map(|e| at + e);
        let Some(end) = entity_end else { break };
        let entity = &rest[at + 1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ if entity.starts_with("#x") => u32::from_str_radix(&entity[2..], 16).ok().and_then(char::from_u32),
            _ if entity.starts_with('#') => entity[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match decoded {
            Some(c) => out.push(c),
            None => out.push_str(&rest[at..=end]),
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of "Authorize with Shared Key": a GET of a container's metadata.
    #[test]
    fn the_string_to_sign_is_the_documented_one() {
        let request = Request::new(Method::GET, "/mycontainer")
            .query("restype", "container")
            .query("comp", "metadata")
            .query("timeout", "20");
        let headers =
            [("x-ms-version", "2015-02-21".to_string()), ("x-ms-date", "Fri, 26 Jun 2015 23:39:12 GMT".into())];
        let expected = "GET\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:Fri, 26 Jun 2015 23:39:12 GMT\nx-ms-version:2015-02-21\n\
                        /myaccount/mycontainer\ncomp:metadata\nrestype:container\ntimeout:20";
        assert_eq!(string_to_sign("myaccount", "/mycontainer", &request, &headers), expected);
    }

    #[test]
    fn an_emulator_endpoint_keeps_its_path() {
        assert_eq!(endpoint_path("http://127.0.0.1:10000/devstoreaccount1"), "/devstoreaccount1");
        assert_eq!(endpoint_path("https://acct.blob.core.windows.net"), "");
        assert_eq!(encode_path("/c/v0001/model.bin"), "/c/v0001/model.bin");
        assert_eq!(encode_path("/c/a b"), "/c/a%20b");
    }

    #[test]
    fn listings_are_read_with_entities_decoded() {
        let xml = "<EnumerationResults><Blobs><Blob><Name>a&amp;b/&#x41;</Name><Properties><Content-Length>3\
                   </Content-Length></Properties></Blob><Blob><Name>c</Name></Blob></Blobs><NextMarker /></EnumerationResults>";
        let names: Vec<Option<String>> = blocks(xml, "Blob").iter().map(|b| element(b, "Name")).collect();
        assert_eq!(names, [Some("a&b/A".to_string()), Some("c".to_string())]);
        assert_eq!(element(blocks(xml, "Blob")[0], "Content-Length").as_deref(), Some("3"));
        assert_eq!(element(xml, "NextMarker"), None);
        assert_eq!(unescape("x &unknown; y"), "x &unknown; y");
    }
}
