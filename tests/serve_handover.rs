//! Handing the port over to another process: the probe listener (a port of one process alone)
//! and the drain (answers say `Connection: close` once the stop has begun, so keep-alive
//! clients reconnect to the process that shares the port).

mod serve_common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use reqwest::StatusCode;
use serve_common::*;

#[test]
fn the_probe_address_serves_the_same_routes_on_a_port_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let (store, version) = store_with_model(dir.path());
    let mut options = options(dir.path());
    options.reuse_port = true;
    options.probe_addr = Some("127.0.0.1:0".parse().unwrap());
    let server = TestServer::start(options.clone(), store.clone());
    let probe = server.probe.expect("a probe listener");
    assert_ne!(probe, server.addr);
    for path in ["/ready", "/health"] {
        let answer = client().get(format!("http://{probe}{path}")).send().unwrap();
        assert_eq!(answer.status(), StatusCode::OK, "{path}");
    }
    let ready: serde_json::Value = client().get(format!("http://{probe}/ready")).send().unwrap().json().unwrap();
    assert_eq!(ready["model_version"], version.as_str());

    // The probe port is bound without SO_REUSEPORT: a second server cannot share it, even one
    // that shares the service port.
    options.addr = server.addr;
    options.probe_addr = Some(probe);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let store: std::sync::Arc<netsec::store::ModelStore> = std::sync::Arc::new(store);
    let refused = runtime.block_on(netsec::serve::Server::bind(options, store));
    assert!(refused.is_err_and(|e| e.to_string().contains(&format!("cannot listen on {probe}"))));
}

#[test]
fn with_a_probe_port_the_service_port_listens_only_once_a_model_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let store = netsec::store::folder_store(&dir.path().join("models")).unwrap();
    let mut options = options(dir.path());
    options.reuse_port = true;
    options.probe_addr = Some("127.0.0.1:0".parse().unwrap());
    let server = TestServer::start(options, store.clone());
    let probe = server.probe.unwrap();
    // Unready: the probe port says so; the service port is bound but takes no connection, so
    // that its share of a shared port's traffic goes to the other process.
    let answer = client().get(format!("http://{probe}/ready")).send().unwrap();
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(TcpStream::connect(server.addr).is_err(), "the service port accepts before the server is ready");

    promote(&store, &tree_model(3));
    let ready = eventually(Duration::from_secs(10), || {
        client().get(server.url("/ready")).send().is_ok_and(|r| r.status() == StatusCode::OK)
    });
    assert!(ready, "the service port did not open once the model was loaded");
}

/// One request on a kept-alive connection; the answer's head (lower-cased) and body.
fn exchange(stream: &mut TcpStream, path: &str) -> (String, String) {
    write!(stream, "GET {path} HTTP/1.1\r\nHost: netsec\r\n\r\n").unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut head = String::new();
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "the connection closed before an answer: {head}");
        if line == "\r\n" {
            break;
        }
        head.push_str(&line.to_ascii_lowercase());
    }
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .expect("a content-length");
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    (head, String::from_utf8(body).unwrap())
}

#[test]
fn a_stopping_server_closes_keep_alive_connections_with_its_answers_while_the_other_serves() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store_with_model(dir.path());
    let mut options = options(dir.path());
    options.reuse_port = true;
    options.probe_addr = Some("127.0.0.1:0".parse().unwrap());
    // Long enough that the drain is still on when the client sends its next request (it ends
    // as soon as that connection closes).
    options.drain_timeout = Duration::from_secs(60);
    options.shutdown_timeout = Duration::from_secs(60);
    let mut old = TestServer::start(options.clone(), store.clone());

    // A keep-alive connection, to the old server (the only one yet).
    let mut kept = TcpStream::connect(old.addr).unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let (head, _) = exchange(&mut kept, "/ready");
    assert!(head.starts_with("http/1.1 200") && !head.contains("connection: close"), "{head}");

    options.addr = old.addr;
    let new = TestServer::start(options, store);
    assert_eq!(new.addr, old.addr);

    // The stop begins: the old server's listeners close (its probe port refuses), and it waits
    // for the kept connection.
    old.stop();
    let old_probe = old.probe.unwrap();
    assert!(eventually(Duration::from_secs(10), || TcpStream::connect(old_probe).is_err()), "still accepting");

    // The next request on the kept connection is answered, with `Connection: close`, and the
    // connection ends there.
    let (head, body) = exchange(&mut kept, "/health");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: close"), "no `Connection: close` while draining: {head}");
    assert!(body.contains("ok"), "{body}");
    let mut rest = Vec::new();
    assert_eq!(kept.read_to_end(&mut rest).unwrap(), 0, "the connection is closed after the answer");

    // New connections to the shared port reach the new server, which keeps its connections.
    for _ in 0..20 {
        let mut stream = TcpStream::connect(new.addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let (head, _) = exchange(&mut stream, "/ready");
        assert!(head.starts_with("http/1.1 200") && !head.contains("connection: close"), "{head}");
    }
    // With its last connection gone the old server ends (it does not wait out the drain).
    drop(old);
    assert_eq!(client().get(new.url("/ready")).send().unwrap().status(), StatusCode::OK);
}
