//! A proxy in front of moto that loses one call, the first one with a given `X-Amz-Target`:
//! before moto sees it (the request is lost) or after (the answer is lost). That is what a
//! reset connection does to a call, and what a blind retry of a non-idempotent call gets wrong.
//! Every other request is passed through, one per connection.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Debug, Clone, Copy)]
pub enum Loss {
    Request,
    Answer,
}

pub struct LossyProxy {
    pub url: String,
    lost: Arc<AtomicBool>,
}

impl LossyProxy {
    /// Listens on a free loopback port, forwarding to `upstream` (`http://host:port`).
    pub fn start(upstream: &str, target: &str, loss: Loss) -> LossyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let upstream = upstream.trim_start_matches("http://").trim_end_matches('/').to_string();
        let target = format!("x-amz-target: {}", target.to_ascii_lowercase());
        let lost = Arc::new(AtomicBool::new(false));
        let proxy = LossyProxy { url, lost: lost.clone() };
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (upstream, target, lost) = (upstream.clone(), target.clone(), lost.clone());
                std::thread::spawn(move || serve(client, &upstream, &target, loss, &lost));
            }
        });
        proxy
    }

    /// Whether the call has been lost yet.
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }
}

fn serve(mut client: TcpStream, upstream: &str, target: &str, loss: Loss, lost: &AtomicBool) {
    let Some((head, body)) = read_request(&mut client) else { return };
    let targeted = head.to_ascii_lowercase().lines().any(|line| line.trim() == target);
    if targeted && !lost.swap(true, Ordering::SeqCst) {
        if let Loss::Answer = loss {
            forward(upstream, &head, &body);
        }
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    let answer = forward(upstream, &head, &body);
    let _ = client.write_all(&answer);
    let _ = client.shutdown(Shutdown::Both);
}

/// The request's head (through the blank line) and its body (by Content-Length).
pub fn read_request(client: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let read = client.read(&mut chunk).ok().filter(|&n| n > 0)?;
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
    let length = head
        .lines()
        .find_map(|line| line.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = buffer[end..].to_vec();
    while body.len() < length {
        let read = client.read(&mut chunk).ok().filter(|&n| n > 0)?;
        body.extend_from_slice(&chunk[..read]);
    }
    Some((head, body))
}

/// Sends the request upstream with `Connection: close` (an unsigned header) and returns the
/// whole answer, which ends when upstream closes.
pub fn forward(upstream: &str, head: &str, body: &[u8]) -> Vec<u8> {
    let mut server = TcpStream::connect(upstream).unwrap();
    let head = head.trim_end_matches("\r\n").to_string() + "\r\nConnection: close\r\n\r\n";
    server.write_all(head.as_bytes()).unwrap();
    server.write_all(body).unwrap();
    let mut answer = Vec::new();
    let _ = server.read_to_end(&mut answer);
    answer
}
