//! A stand-in endpoint in front of moto for the calls moto cannot make real (a target's health,
//! a command that runs): the handler answers those, and every other request goes to moto as it
//! came, Host header and signature included. The client under test only has its endpoint
//! pointed here (`AWS_ENDPOINT_URL_<SERVICE>`), as the ECR registry stand-in does for pushes.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{Shutdown, TcpListener};
use std::sync::Arc;

use super::lossy::{forward, read_request};

/// One request as received.
pub struct Request {
    pub head: String,
    pub body: Vec<u8>,
}

impl Request {
    /// A header's value (names compared without case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    /// A Query-protocol body (`application/x-www-form-urlencoded`), decoded.
    pub fn form(&self) -> BTreeMap<String, String> {
        let decode = |text: &str| {
            let spaced = text.replace('+', " ");
            percent_encoding::percent_decode_str(&spaced).decode_utf8_lossy().into_owned()
        };
        String::from_utf8_lossy(&self.body)
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .map(|(key, value)| (decode(key), decode(value)))
            .collect()
    }

    /// An awsJson body.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
}

/// The handler's answer: status, content type, body.
pub struct Answer(pub u16, pub &'static str, pub String);

pub type Handler = Arc<dyn Fn(&Request) -> Option<Answer> + Send + Sync>;

pub struct Intercept {
    pub url: String,
}

impl Intercept {
    /// Listens on a free loopback port; what `handler` does not answer goes to `upstream`.
    pub fn start(upstream: &str, handler: Handler) -> Intercept {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let upstream = upstream.trim_start_matches("http://").trim_end_matches('/').to_string();
        std::thread::spawn(move || {
            for mut client in listener.incoming().flatten() {
                let (upstream, handler) = (upstream.clone(), handler.clone());
                std::thread::spawn(move || {
                    let Some((head, body)) = read_request(&mut client) else { return };
                    let request = Request { head, body };
                    let answer = match handler(&request) {
                        Some(Answer(status, content_type, body)) => format!(
                            "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
                             Connection: close\r\n\r\n{body}",
                            body.len()
                        )
                        .into_bytes(),
                        None => forward(&upstream, &request.head, &request.body),
                    };
                    let _ = client.write_all(&answer);
                    let _ = client.shutdown(Shutdown::Both);
                });
            }
        });
        Intercept { url }
    }
}
