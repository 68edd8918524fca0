//! The Open Inference Protocol routes: driven by tritonclient's HTTP client (the harness's
//! Python environment) and by hand, they give what /predict/json gives, and every malformed
//! request gets a 4xx naming the field, with the server still serving.

mod common;
mod serve_common;

use reqwest::StatusCode;
use serde_json::{json, Value};
use serve_common::*;

/// The first `n` rows of the shared data, as feature arrays in schema order.
fn rows(n: usize) -> Vec<Vec<i64>> {
    let data = phishing();
    let width = data.n_features();
    (0..n).map(|i| data.x[i * width..(i + 1) * width].iter().map(|&v| v as i64).collect()).collect()
}

/// (label, probability of each class) per row, from /predict/json and GET /model's classes.
fn reference(server: &TestServer, rows: &[Vec<i64>]) -> Vec<(i64, [f64; 2])> {
    let request = client().post(server.url("/predict/json")).header("content-type", "application/json");
    let answer: Value = request.body(json!(rows).to_string()).send().unwrap().json().unwrap();
    let model: Value = client().get(server.url("/model")).send().unwrap().json().unwrap();
    let first = model["classes"][0].as_i64().unwrap();
    let predictions = answer["predictions"].as_array().unwrap();
    predictions
        .iter()
        .map(|p| {
            let (label, probability) = (p["prediction"].as_i64().unwrap(), p["probability"].as_f64().unwrap());
            let first_probability = if label == first { probability } else { 1.0 - probability };
            (label, [first_probability, 1.0 - first_probability])
        })
        .collect()
}

fn infer(server: &TestServer, body: &Value) -> (StatusCode, Value) {
    let request = client().post(server.url("/v2/models/netsec/infer")).header("content-type", "application/json");
    let response = request.body(body.to_string()).send().unwrap();
    (response.status(), response.json().unwrap())
}

/// The outputs of an answer as (label, probabilities) per row.
fn outputs(answer: &Value) -> Vec<(i64, [f64; 2])> {
    let output = |name: &str| answer["outputs"].as_array().unwrap().iter().find(|o| o["name"] == name).unwrap().clone();
    let (labels, probabilities) = (output("label"), output("probabilities"));
    let n = labels["shape"][0].as_u64().unwrap() as usize;
    assert_eq!(probabilities["shape"], json!([n, 2]));
    let p: Vec<f64> = probabilities["data"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let labels = labels["data"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap());
    labels.enumerate().map(|(i, label)| (label, [p[2 * i], p[2 * i + 1]])).collect()
}

fn assert_same(got: &[(i64, [f64; 2])], expected: &[(i64, [f64; 2])]) {
    assert_eq!(got.len(), expected.len());
    for (row, (g, e)) in got.iter().zip(expected).enumerate() {
        assert_eq!(g.0, e.0, "row {row}");
        assert!((g.1[0] - e.1[0]).abs() < 1e-9 && (g.1[1] - e.1[1]).abs() < 1e-9, "row {row}: {g:?} {e:?}");
    }
}

#[test]
fn both_input_forms_give_what_predict_json_gives() {
    let dir = tempfile::tempdir().unwrap();
    let (store, version) = store_with_model(dir.path());
    let server = TestServer::start(options(dir.path()), store);
    let rows = rows(40);
    let expected = reference(&server, &rows);

    let flat: Vec<i64> = rows.iter().flatten().copied().collect();
    let one =
        json!({"id": "req-1", "inputs": [{"name": "input", "shape": [40, 30], "datatype": "INT64", "data": flat}]});
    let (status, answer) = infer(&server, &one);
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        (&answer["model_name"], &answer["model_version"], &answer["id"]),
        (&json!("netsec"), &json!(version), &json!("req-1"))
    );
    assert_same(&outputs(&answer), &expected);

    // One input per feature, named after it, in any order; nested data is row-major too.
    let names: Vec<String> = phishing().features.clone();
    let inputs: Vec<Value> = (0..30)
        .rev()
        .map(|j| {
            let column: Vec<Vec<i64>> = rows.iter().map(|r| vec![r[j]]).collect();
            json!({"name": names[j], "shape": [40, 1], "datatype": "FP32", "data": column})
        })
        .collect();
    let (status, answer) = infer(&server, &json!({"inputs": inputs, "outputs": [{"name": "label"}]}));
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["outputs"].as_array().unwrap().len(), 1, "only the output asked for");
    let labels: Vec<i64> =
        answer["outputs"][0]["data"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    assert_eq!(labels, expected.iter().map(|e| e.0).collect::<Vec<_>>());
}

#[test]
fn health_and_metadata_follow_the_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let store = netsec::store::folder_store(&dir.path().join("models")).unwrap();
    let server = TestServer::start(options(dir.path()), store.clone());
    let get = |path: &str| {
        let response = client().get(server.url(path)).send().unwrap();
        (response.status(), response.json::<Value>().unwrap())
    };
    assert_eq!(get("/v2/health/live"), (StatusCode::OK, json!({"live": true})));
    assert_eq!(get("/v2/health/ready"), (StatusCode::BAD_REQUEST, json!({"ready": false})), "no model yet");
    assert_eq!(get("/v2/models/netsec").0, StatusCode::SERVICE_UNAVAILABLE);

    let version = promote(&store, &tree_model(5));
    assert!(eventually(std::time::Duration::from_secs(10), || get("/v2/health/ready").0 == StatusCode::OK));
    assert_eq!(get("/v2/models/netsec/ready"), (StatusCode::OK, json!({"ready": true})));
    let (status, model) = get("/v2/models/netsec");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(model["versions"], json!([version]));
    assert_eq!(model["inputs"][0]["shape"], json!([-1, 30]));
    let (status, server_meta) = get("/v2");
    assert_eq!((status, &server_meta["name"]), (StatusCode::OK, &json!("netsec")));
    let (status, error) = get("/v2/models/other/ready");
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(error["error"].as_str().unwrap().contains("serves `netsec`"), "{error}");
}

#[test]
fn malformed_requests_get_a_4xx_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store_with_model(dir.path());
    let server = TestServer::start(options(dir.path()), store);
    let row: Vec<i64> = rows(1).remove(0);
    let input = |shape: Value, datatype: &str, data: Value| json!({"inputs": [{"name": "input", "shape": shape, "datatype": datatype, "data": data}]});
    let mut bad_code = row.clone();
    bad_code[3] = 2;
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "missing field `inputs`"),
        (json!({"inputs": []}), "inputs: missing features"),
        (input(json!([1, 29]), "INT64", json!(row)), "inputs[0].shape: [1, 29] is not [n, 30]"),
        (input(json!([1, 30]), "BYTES", json!(row)), "inputs[0].datatype: `BYTES` is not a numeric datatype"),
        (input(json!([2, 30]), "INT64", json!(row)), "inputs[0].data: 30 numbers for a shape of [2, 30] (60)"),
        (input(json!([1, 30]), "INT64", json!(bad_code)), "row 0, feature"),
        (input(json!([1, 30]), "INT64", json!(vec!["a"; 30])), "inputs[0].data: \"a\" is not a number"),
        (input(json!([0, 30]), "INT64", json!([])), "the tensors hold no rows"),
        (
            json!({"inputs": [{"name": "URL_Length", "shape": [1], "datatype": "INT64", "data": [1]}]}),
            "inputs: missing features",
        ),
        (
            json!({"inputs": [{"name": "AAA", "shape": [1, 30], "datatype": "INT64", "data": row}]}),
            "inputs[0].name: `AAA` is neither a feature nor `input`",
        ),
        (
            json!({"inputs": input(json!([1, 30]), "INT64", json!(row))["inputs"], "outputs": [{"name": "score"}]}),
            "outputs[0].name: no output `score`",
        ),
        (
            json!({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "INT64", "data": row, "parameters": {"binary_data": true}}]}),
            "binary tensor extension",
        ),
    ];
    for (body, expected) in cases {
        let (status, answer) = infer(&server, &body);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        let message = answer["error"].as_str().unwrap();
        assert!(message.contains(expected), "{body}: {message}");
    }
    let post = |path: &str, content_type: &str, body: &str| {
        let request = client().post(server.url(path)).header("content-type", content_type);
        request.body(body.to_string()).send().unwrap()
    };
    assert_eq!(post("/v2/models/netsec/infer", "text/csv", "a,b").status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(post("/v2/models/nope/infer", "application/json", "{}").status(), StatusCode::NOT_FOUND);
    assert_eq!(post("/v2/models/netsec/infer", "application/json", "{\"inputs\": [").status(), StatusCode::BAD_REQUEST);
    let binary = client()
        .post(server.url("/v2/models/netsec/infer"))
        .header("inference-header-content-length", "10")
        .body("{\"inputs\":[]}xxxx")
        .send()
        .unwrap();
    assert_eq!(binary.status(), StatusCode::BAD_REQUEST);
    // Still serving.
    assert_eq!(infer(&server, &input(json!([1, 30]), "INT64", json!(row))).0, StatusCode::OK);
}

/// tritonclient's HTTP client, as a KServe or Triton user would call netsec.
#[test]
fn tritonclient_drives_the_routes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, version) = store_with_model(dir.path());
    let server = TestServer::start(options(dir.path()), store);
    let rows = rows(25);
    let expected = reference(&server, &rows);
    let script = r#"
import json, sys
import numpy as np
import tritonclient.http as http
given = json.load(sys.stdin)
client = http.InferenceServerClient(url=given["url"])
assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("netsec")
meta = client.get_model_metadata("netsec")
data = np.array(given["rows"], dtype=np.float32)
tensor = http.InferInput("input", list(data.shape), "FP32")
tensor.set_data_from_numpy(data, binary_data=False)
wanted = [http.InferRequestedOutput(n, binary_data=False) for n in ("label", "probabilities")]
result = client.infer("netsec", [tensor], outputs=wanted)
print(json.dumps({"versions": meta["versions"], "label": result.as_numpy("label").tolist(),
                  "probabilities": result.as_numpy("probabilities").tolist()}))
"#;
    let output = common::run_python(script, &json!({"url": server.addr.to_string(), "rows": rows}).to_string());
    let answer: Value = serde_json::from_str(&output).unwrap();
    assert_eq!(answer["versions"], json!([version]));
    let got: Vec<(i64, [f64; 2])> = answer["label"]
        .as_array()
        .unwrap()
        .iter()
        .zip(answer["probabilities"].as_array().unwrap())
        .map(|(l, p)| (l.as_i64().unwrap(), [p[0].as_f64().unwrap(), p[1].as_f64().unwrap()]))
        .collect();
    assert_same(&got, &expected);
}
