//! The real binary: SIGTERM stops new connections, lets the request in flight finish, and
//! exits 0; the admin token never appears in its log.

mod serve_common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serve_common::*;

const TOKEN: &str = "tok-7f3a9c-very-secret";

#[test]
fn sigterm_finishes_the_request_in_flight_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    store_with_model(dir.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_netsec"))
        .args(["-vv", "--store"])
        .arg(dir.path().join("models"))
        .args(["serve", "--addr", "127.0.0.1:0", "--header-timeout", "5", "--body-timeout", "10"])
        .env("NETSEC_ADMIN_TOKEN", TOKEN)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // The log, read as it comes; the address is on the "listening" line.
    let (lines_tx, lines) = mpsc::channel::<String>();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let reader = std::thread::spawn(move || {
        stderr.lines().map_while(Result::ok).for_each(|line| {
            let _ = lines_tx.send(line);
        })
    });
    let mut log = Vec::new();
    let addr: SocketAddr = loop {
        let line = lines.recv_timeout(Duration::from_secs(60)).expect("the server says where it listens");
        log.push(line.clone());
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    let url = |path: &str| format!("http://{addr}{path}");
    // The token goes over the wire, wrong and right; it must not reach the log.
    let wrong = client().post(url("/train")).bearer_auth(format!("{TOKEN}-wrong")).send().unwrap();
    assert_eq!(wrong.status(), 401);
    let status = client().get(url("/train/none")).bearer_auth(TOKEN).send().unwrap().status();
    assert_eq!(status, 404);

    // A request in flight: headers and half the body sent.
    let body = csv_rows(20);
    let (first, rest) = body.split_at(body.len() / 2);
    let mut in_flight = TcpStream::connect(addr).unwrap();
    write!(
        in_flight,
        "POST /predict HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/csv\r\nAccept: text/csv\r\nContent-Length: {}\r\n\r\n{first}",
        body.len()
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));

    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    // New connections are refused once the listener is closed.
    let closed = eventually(Duration::from_secs(5), || TcpStream::connect(addr).is_err());
    assert!(closed, "the server still accepts connections after SIGTERM");

    in_flight.write_all(rest.as_bytes()).unwrap();
    in_flight.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = String::new();
    in_flight.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(answer.split("\r\n\r\n").nth(1).unwrap().lines().count(), 21, "a header and 20 rows");

    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the server did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    reader.join().unwrap();
    log.extend(lines.try_iter());
    let log = log.join("\n");
    assert!(log.contains("SIGTERM"), "{log}");
    assert!(log.contains("\"/train/{id}\""), "requests are logged at -vv:\n{log}");
    assert!(!log.contains("tok-7f3a9c"), "the admin token leaked into the log:\n{log}");
}
