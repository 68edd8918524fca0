//! MLflow's scoring protocol on `netsec serve`: every body format MLflow takes gives the
//! predictions of `/predict/json`, malformed bodies get MLflow's error answer naming the field,
//! and `/ping` and `/version` answer as MLflow's do. (That the answers equal `mlflow models
//! serve`'s for the registered model is checked in tests/mlflow_model.rs.)

mod serve_common;

use reqwest::StatusCode;
use serde_json::{json, Value};
use serve_common::*;

/// The first rows of the shared data as (column names, rows of cells), the second row with a
/// missing cell.
fn rows(n: usize) -> (Vec<String>, Vec<Vec<Value>>) {
    let csv = csv_rows(n);
    let mut lines = csv.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(|c| c.trim_matches('"').to_string()).collect();
    let features = header[..header.len() - 1].to_vec();
    let mut rows: Vec<Vec<Value>> =
        lines.map(|l| l.split(',').take(features.len()).map(|c| json!(c.parse::<i64>().unwrap())).collect()).collect();
    rows[1][4] = Value::Null;
    (features, rows)
}

fn post(server: &TestServer, content_type: &str, body: impl Into<Vec<u8>>) -> (StatusCode, Value) {
    let answer = client()
        .post(server.url("/invocations"))
        .header("content-type", content_type)
        .body(body.into())
        .send()
        .unwrap();
    let status = answer.status();
    let text = answer.text().unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")))
}

fn post_json(server: &TestServer, body: &Value) -> (StatusCode, Value) {
    post(server, "application/json", body.to_string())
}

#[test]
fn every_body_format_gives_the_predictions_of_predict_json() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store_with_model(dir.path());
    let server = TestServer::start(options(dir.path()), store);
    let (features, rows) = rows(5);
    let reference: Value =
        client().post(server.url("/predict/json")).json(&json!(rows)).send().unwrap().json().unwrap();

    let records: Vec<Value> =
        rows.iter().map(|r| Value::Object(features.iter().cloned().zip(r.iter().cloned()).collect())).collect();
    let columnar: serde_json::Map<String, Value> =
        features.iter().enumerate().map(|(j, f)| (f.clone(), rows.iter().map(|r| r[j].clone()).collect())).collect();
    // Columns in another order, with the label column too: matched by name, extras ignored.
    let mut reversed: Vec<String> = features.iter().rev().cloned().collect();
    reversed.push("Result".into());
    let reversed_rows: Vec<Vec<Value>> =
        rows.iter().map(|r| r.iter().rev().cloned().chain([json!(1)]).collect()).collect();
    let bodies = [
        json!({ "dataframe_split": { "columns": features, "data": rows } }),
        json!({ "dataframe_split": { "columns": reversed, "data": reversed_rows, "index": [0, 1, 2, 3, 4] } }),
        json!({ "dataframe_records": records }),
        json!({ "instances": records }),
        json!({ "inputs": rows, "params": {} }),
        json!({ "instances": columnar }),
    ];
    let csv: String = std::iter::once(features.join(","))
        .chain(rows.iter().map(|r| {
            r.iter().map(|c| if c.is_null() { String::new() } else { c.to_string() }).collect::<Vec<_>>().join(",")
        }))
        .map(|l| l + "\n")
        .collect();
    let answers = bodies.iter().map(|b| post_json(&server, b)).chain([post(&server, "text/csv", csv)]);
    for (i, (status, answer)) in answers.enumerate() {
        assert_eq!(status, StatusCode::OK, "body {i}: {answer}");
        let predictions = answer["predictions"].as_array().unwrap();
        assert_eq!(predictions.len(), 5, "body {i}");
        for (got, want) in predictions.iter().zip(reference["predictions"].as_array().unwrap()) {
            assert_eq!(got["label"], want["prediction"], "body {i}");
            let label = got["label"].as_i64().unwrap();
            let p = got[format!("probability_{label}")].as_f64().unwrap();
            assert!((p - want["probability"].as_f64().unwrap()).abs() < 1e-12, "body {i}: {got} vs {want}");
            let total = got["probability_-1"].as_f64().unwrap() + got["probability_1"].as_f64().unwrap();
            assert!((total - 1.0).abs() < 1e-12, "{got}");
        }
    }
}

#[test]
fn malformed_bodies_get_mlflows_error_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store_with_model(dir.path());
    let mut options = options(dir.path());
    options.max_rows = 3;
    let server = TestServer::start(options, store);
    let (features, rows) = rows(4);
    let mut bad_code = rows.clone();
    bad_code[0][2] = json!(7);
    let letters = vec!["a"; 30];
    let cases = [
        (
            json!({ "dataframe_split": { "columns": &features[1..], "data": [&rows[0][1..]] } }),
            "dataframe_split: missing columns: having_IP_Address",
        ),
        (
            json!({ "dataframe_split": { "columns": features, "data": &bad_code[..1] } }),
            "dataframe_split.data[0][2]: 7 is not one of the codes of Shortining_Service",
        ),
        (
            json!({ "dataframe_split": { "columns": features, "data": [&rows[0][..3]] } }),
            "dataframe_split.data[0]: has 3 cells for 30 columns",
        ),
        (json!({ "dataframe_records": [{ "URL_Length": "long" }] }), "dataframe_records[0]: missing columns"),
        (json!({ "instances": [&rows[0][..29]] }), "instances[0]: has 29 cells; a row in schema order has 30"),
        (json!({ "inputs": [letters] }), "inputs[0][0]: \"a\" is not one of the codes of having_IP_Address"),
        (json!({ "instances": rows, "inputs": rows }), "the body has instances and inputs: give only one"),
        (json!({ "data": rows }), "the body has none of the keys that carry rows"),
        (json!([rows[0]]), "the body is not a JSON object"),
        (json!({ "dataframe_records": [] }), "dataframe_records: no rows"),
        (json!({ "inputs": [&rows[0]], "params": [null] }), "params: not an object"),
    ];
    for (body, expected) in cases {
        let (status, error) = post_json(&server, &body);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {error}");
        assert_eq!(error["error_code"], "BAD_REQUEST", "{error}");
        let message = error["message"].as_str().unwrap();
        assert!(message.starts_with(expected), "{body}: {message}");
        assert!(message.contains("(hint: "), "{message}");
    }
    let (status, error) = post(&server, "application/json", "{\"dataframe_split\": ");
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error["message"].as_str().unwrap().starts_with("malformed JSON"), "{error}");
    let (status, error) = post_json(&server, &json!({ "inputs": rows }));
    assert_eq!(
        (status, &error["error_code"]),
        (StatusCode::PAYLOAD_TOO_LARGE, &json!("REQUEST_LIMIT_EXCEEDED")),
        "{error}"
    );
    let (status, error) = post(&server, "image/png", "x");
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(error["message"].as_str().unwrap().contains("application/json, text/csv"), "{error}");
    // And the server is still there.
    assert_eq!(client().get(server.url("/ping")).send().unwrap().status(), StatusCode::OK);
}

#[test]
fn ping_and_version_answer_as_mlflows_do() {
    let dir = tempfile::tempdir().unwrap();
    let store = netsec::store::folder_store(&dir.path().join("models")).unwrap();
    let server = TestServer::start(options(dir.path()), store.clone());
    // No model yet: /ping is 404 and scoring is unavailable.
    assert_eq!(client().get(server.url("/ping")).send().unwrap().status(), StatusCode::NOT_FOUND);
    let (status, error) = post_json(&server, &json!({ "inputs": rows(2).1 }));
    assert_eq!((status, &error["error_code"]), (StatusCode::SERVICE_UNAVAILABLE, &json!("TEMPORARILY_UNAVAILABLE")));
    promote(&store, &tree_model(3));
    assert!(eventually(std::time::Duration::from_secs(10), || {
        client().get(server.url("/ping")).send().unwrap().status() == StatusCode::OK
    }));
    let version = client().get(server.url("/version")).send().unwrap().text().unwrap();
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
}
