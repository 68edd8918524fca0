//! Bad requests get the 4xx that says what is wrong (and where), never a 5xx: size and row
//! limits, content types, malformed CSV and JSON, wrong columns, slow clients.

mod serve_common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use serve_common::*;

fn server(dir: &std::path::Path) -> TestServer {
    let (store, _) = store_with_model(dir);
    let mut options = options(dir);
    options.body_limit = 100_000;
    options.max_rows = 500;
    TestServer::start(options, store)
}

/// Posts `body` with `content_type` and returns the status and the error object.
fn post(server: &TestServer, path: &str, content_type: &str, body: impl Into<Vec<u8>>) -> (StatusCode, Value) {
    let mut request = client().post(server.url(path)).body(body.into());
    if !content_type.is_empty() {
        request = request.header("content-type", content_type);
    }
    let answer = request.send().unwrap();
    let status = answer.status();
    let text = answer.text().unwrap();
    let json: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (status, json["error"].clone())
}

#[test]
fn bodies_and_row_counts_over_the_limits_get_413() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let (status, error) = post(&server, "/predict", "text/csv", vec![b'1'; 100_001]);
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(error["problem"].as_str().unwrap().contains("100000 bytes"), "{error}");
    // The same without a Content-Length (chunked): the limit holds while reading.
    let chunks = std::io::Cursor::new(vec![b'1'; 150_000]);
    let answer = client()
        .post(server.url("/predict"))
        .header("content-type", "text/csv")
        .body(reqwest::blocking::Body::new(chunks))
        .send()
        .unwrap();
    assert_eq!(answer.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let (status, error) = post(&server, "/predict", "text/csv", csv_rows(501));
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(error["problem"].as_str().unwrap().contains("501 rows is over the limit of 500"), "{error}");
    let rows = format!("[{}]", vec!["[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]"; 501].join(","));
    assert_eq!(post(&server, "/predict/json", "application/json", rows).0, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(post(&server, "/predict", "text/csv", csv_rows(500)).0, StatusCode::OK);
}

#[test]
fn wrong_content_types_get_415_and_unanswerable_accepts_406() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let csv = csv_rows(2);
    for (path, content_type) in [
        ("/predict", "application/json"),
        ("/predict", "image/png"),
        ("/predict", ""),
        ("/predict/json", "text/csv"),
        ("/predict/json", "application/x-www-form-urlencoded"),
    ] {
        let (status, error) = post(&server, path, content_type, csv.clone());
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{path} {content_type}");
        assert!(error["hint"].as_str().unwrap().starts_with("send one of"), "{error}");
    }
    let answer = client()
        .post(server.url("/predict"))
        .header("content-type", "text/csv")
        .header("accept", "image/png")
        .body(csv)
        .send()
        .unwrap();
    assert_eq!(answer.status(), StatusCode::NOT_ACCEPTABLE);
}

#[test]
fn malformed_csv_is_located_by_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let mut lines: Vec<String> = csv_rows(3).lines().map(String::from).collect();
    lines[2] = format!("7{}", &lines[2][lines[2].find(',').unwrap()..]);
    let (status, error) = post(&server, "/predict", "text/csv", lines.join("\n"));
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["line"], 3);
    assert_eq!(error["column"], "having_IP_Address");
    assert!(error["problem"].as_str().unwrap().contains("7 is not an allowed value"), "{error}");

    let ragged = format!("{}\n1,1,1\n", csv_rows(1).trim_end());
    let (status, error) = post(&server, "/predict", "text/csv", ragged);
    assert_eq!((status, error["line"].as_u64()), (StatusCode::BAD_REQUEST, Some(3)));
    assert!(error["problem"].as_str().unwrap().contains("3 fields but the header has 31"), "{error}");

    let not_a_number = csv_rows(1).replacen(",1,", ",yes,", 1);
    let (status, error) = post(&server, "/predict", "text/csv", not_a_number);
    assert_eq!((status, error["line"].as_u64()), (StatusCode::BAD_REQUEST, Some(2)));
    assert!(error["column"].is_string() && error["problem"].as_str().unwrap().contains("`yes` is not an integer"));

    for empty in ["", "\n\n", "\u{feff}"] {
        assert_eq!(post(&server, "/predict", "text/csv", empty).0, StatusCode::BAD_REQUEST, "{empty:?}");
    }
    let header_only = csv_rows(0);
    assert!(post(&server, "/predict", "text/csv", header_only).1["problem"].as_str().unwrap().contains("no data rows"));
    assert_eq!(post(&server, "/predict", "text/csv", vec![0xff, 0xfe, 0x00, 0x41]).0, StatusCode::BAD_REQUEST);
}

#[test]
fn missing_and_extra_columns_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let csv = csv_rows(2);
    let without_two = csv.replacen("URL_Length", "Length_of_URL", 1).replacen("\"port\"", "\"ports\"", 1);
    let (status, error) = post(&server, "/predict", "text/csv", without_two);
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["missing_columns"], serde_json::json!(["URL_Length", "port"]));

    let with_extra: String =
        csv.lines().enumerate().map(|(i, l)| format!("{l},{}\n", if i == 0 { "note,_id" } else { "x,7" })).collect();
    let (status, error) = post(&server, "/predict", "text/csv", with_extra);
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["extra_columns"], serde_json::json!(["note", "_id"]));

    let (status, error) = post(&server, "/predict/json", "application/json", r#"[{"URL_Length": 1, "nope": 1}]"#);
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["extra_columns"], serde_json::json!(["nope"]));
    assert_eq!(error["missing_columns"].as_array().unwrap().len(), 29);
    assert_eq!(error["field"], "rows[0]");
}

#[test]
fn malformed_json_is_located_by_field_or_position() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let (status, error) = post(&server, "/predict/json", "application/json", "[[1, 1,\n  ");
    assert_eq!((status, error["line"].as_u64()), (StatusCode::BAD_REQUEST, Some(2)));
    assert!(error["problem"].as_str().unwrap().starts_with("malformed JSON"), "{error}");
    let row = "[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,5]";
    let (status, error) = post(&server, "/predict/json", "application/json", format!("[{row}]"));
    assert_eq!((status, error["field"].as_str()), (StatusCode::BAD_REQUEST, Some("rows[0][29]")));
    let (status, error) = post(&server, "/predict/json", "application/json", r#"{"rows": [{"URL_Length": "1"}]}"#);
    assert_eq!((status, error["field"].as_str()), (StatusCode::BAD_REQUEST, Some("rows[0].URL_Length")));
    for body in ["", "null", "{}", "[]", "[1]", "[[]]", "\"rows\""] {
        assert_eq!(post(&server, "/predict/json", "application/json", body).0, StatusCode::BAD_REQUEST, "{body}");
    }
}

#[test]
fn unknown_routes_and_methods_are_4xx() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    assert_eq!(client().get(server.url("/nope")).send().unwrap().status(), StatusCode::NOT_FOUND);
    let wrong_method = client().get(server.url("/predict")).send().unwrap();
    assert_eq!(wrong_method.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.headers()["allow"], "POST");
    let multipart_without_file = reqwest::blocking::multipart::Form::new().text("note", "hi").text("other", "x");
    let answer = client().post(server.url("/predict")).multipart(multipart_without_file).send().unwrap();
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    let (status, _) = post(&server, "/predict", "multipart/form-data; boundary=zz", "--zz\r\nbroken");
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// Sends `head` (and nothing more) on a raw connection and returns what the server answers
/// and how long it took to answer or hang up.
fn stall(server: &TestServer, head: &str) -> (String, Duration) {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    (String::from_utf8_lossy(&answer).into_owned(), started.elapsed())
}

#[test]
fn slow_clients_time_out() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    // Headers never finished: the connection is closed after the header timeout (1 s here).
    let (answer, waited) = stall(&server, "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Ty");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert!(!answer.contains(" 200 "), "{answer}");
    // A body that stops arriving: 408 after the body timeout (1 s here).
    let head = "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: 5000\r\n\r\nhaving_IP";
    let (answer, waited) = stall(&server, head);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    // The server still answers others.
    assert_eq!(client().get(server.url("/health")).send().unwrap().status(), StatusCode::OK);
}
