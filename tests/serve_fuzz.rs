//! Thousands of malformed requests against one server: mutated CSV and JSON, random bytes,
//! odd content types and Accept headers, truncated multipart bodies. None may get a 5xx, and
//! the server must still answer a good request afterwards.

mod serve_common;

use std::sync::OnceLock;

use proptest::prelude::*;
use serve_common::*;

struct Shared {
    server: TestServer,
    client: reqwest::blocking::Client,
    _dir: tempfile::TempDir,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = store_with_model(dir.path());
        let mut options = options(dir.path());
        options.body_limit = 64 * 1024;
        options.max_rows = 50;
        Shared { server: TestServer::start(options, store), client: client(), _dir: dir }
    })
}

fn send(path: &str, content_type: &str, accept: &str, body: Vec<u8>) -> u16 {
    let shared = shared();
    let mut request = shared.client.post(shared.server.url(path)).body(body);
    if !content_type.is_empty() {
        request = request.header("content-type", content_type);
    }
    if !accept.is_empty() {
        request = request.header("accept", accept);
    }
    request.send().expect("the server answers").status().as_u16()
}

/// A valid body to mutate: a few CSV rows, or the same rows as JSON.
fn valid_csv() -> String {
    csv_rows(3)
}

fn valid_json() -> String {
    let rows: Vec<String> =
        csv_rows(3).lines().skip(1).map(|l| format!("[{}]", l.rsplit_once(',').unwrap().0)).collect();
    format!("{{\"rows\": [{}]}}", rows.join(","))
}

/// The same rows as MLflow's `dataframe_split`.
fn valid_invocation() -> String {
    let csv = csv_rows(3);
    let mut lines = csv.lines();
    let header = lines.next().unwrap();
    let columns: Vec<String> =
        header.rsplit_once(',').unwrap().0.split(',').map(|c| format!("\"{}\"", c.trim_matches('"'))).collect();
    let rows: Vec<String> = lines.map(|l| format!("[{}]", l.rsplit_once(',').unwrap().0)).collect();
    format!("{{\"dataframe_split\": {{\"columns\": [{}], \"data\": [{}]}}}}", columns.join(","), rows.join(","))
}

/// Edits of a body: replace, insert or delete bytes at a few places, or truncate it.
fn mutated(base: String) -> impl Strategy<Value = Vec<u8>> {
    let len = base.len();
    let edit = (0..len, any::<u8>(), 0..3u8);
    (prop::collection::vec(edit, 1..6), 0..=len + 1).prop_map(move |(edits, cut)| {
        let mut bytes = base.clone().into_bytes();
        for (at, byte, kind) in edits {
            let at = at.min(bytes.len().saturating_sub(1));
            match kind {
                0 if !bytes.is_empty() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ if !bytes.is_empty() => {
                    bytes.remove(at);
                }
                _ => {}
            }
        }
        if cut <= bytes.len() && cut % 3 == 0 {
            bytes.truncate(cut);
        }
        bytes
    })
}

fn content_type() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("text/csv".to_string()),
        Just("application/json".to_string()),
        Just("multipart/form-data; boundary=XyZ".to_string()),
        Just("multipart/form-data".to_string()),
        Just(String::new()),
        "[a-z/+;= -]{0,30}",
    ]
}

fn accept() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("text/csv".to_string()),
        Just("text/html".to_string()),
        Just("*/*;q=0.1, application/json".to_string()),
        "[a-z/*;=.0-9, ]{0,30}",
    ]
}

fn path() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("/predict"), Just("/predict/json"), Just("/invocations"), Just("/train"), Just("/nowhere")]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_csv_never_gets_a_5xx(body in mutated(valid_csv()), accept in accept()) {
        let status = send("/predict", "text/csv", &accept, body);
        prop_assert!(status < 500, "status {}", status);
    }

    #[test]
    fn mutated_json_never_gets_a_5xx(body in mutated(valid_json()), accept in accept()) {
        let status = send("/predict/json", "application/json", &accept, body);
        prop_assert!(status < 500, "status {}", status);
    }

    #[test]
    fn mutated_invocations_never_get_a_5xx(body in mutated(valid_invocation())) {
        let status = send("/invocations", "application/json", "", body);
        prop_assert!(status < 500, "status {}", status);
    }

    #[test]
    fn random_requests_never_get_a_5xx(
        path in path(),
        content_type in content_type(),
        accept in accept(),
        body in prop::collection::vec(any::<u8>(), 0..2000),
    ) {
        let status = send(path, &content_type, &accept, body);
        prop_assert!(status < 500, "status {}", status);
    }

    #[test]
    fn broken_multipart_uploads_never_get_a_5xx(body in mutated(format!(
        "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\n\r\n{}\r\n--XyZ--\r\n", valid_csv()
    ))) {
        let status = send("/predict", "multipart/form-data; boundary=XyZ", "", body);
        prop_assert!(status < 500, "status {}", status);
    }
}

#[test]
fn the_server_still_answers_after_the_storm() {
    let shared = shared();
    for _ in 0..200 {
        send("/predict", "text/csv", "", b"\xff\xfe garbage,,,\n\"".to_vec());
    }
    assert_eq!(send("/predict", "text/csv", "text/csv", valid_csv().into_bytes()), 200);
    assert_eq!(send("/predict/json", "application/json", "", valid_json().into_bytes()), 200);
    assert_eq!(send("/invocations", "application/json", "", valid_invocation().into_bytes()), 200);
    let health = shared.client.get(shared.server.url("/health")).send().unwrap();
    assert_eq!(health.status(), 200);
}
