//! The registered model as the rest of the MLflow ecosystem loads it, against the harness's
//! `mlflow server`: `mlflow.pyfunc.load_model("models:/NAME@champion")` predicts what netsec
//! predicts, `mlflow models serve` answers `/invocations` with the same, and `netsec models
//! promote` / `rollback` move the alias with the store's current version.

mod common;
mod stand_ins;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use netsec::dataset::Dataset;
use netsec::schema::Schema;
use netsec::source::{self, Labels};
use serde_json::{json, Value};
use stand_ins::{required, unique};

/// `netsec` against the shared MLflow server, with the small grid and a store in `dir/models`.
fn netsec(dir: &Path, uri: &str, model: &str, args: &[&str]) -> std::process::Output {
    let mut command = common::netsec_command(dir, args);
    command.env("MLFLOW_TRACKING_URI", uri).env("MLFLOW_EXPERIMENT_NAME", model);
    command.env("NETSEC_MLFLOW_REGISTERED_MODEL", model).env("NETSEC_TRAIN_MIN_IMPROVEMENT", "-1");
    let output = command.output().unwrap();
    assert!(output.status.success(), "netsec {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    output
}

/// Loads `models:/NAME@ALIAS` with MLflow's pyfunc and predicts the frame given as JSON
/// ("split" orient, floats); also reports the registered version behind the alias, its tags
/// and the model's flavors and signature.
const PYFUNC: &str = r#"
import json, sys
import mlflow, pandas as pd
from mlflow.tracking import MlflowClient
args = json.load(sys.stdin)
mlflow.set_tracking_uri(args["uri"])
uri = f"models:/{args['model']}@{args['alias']}"
frame = pd.DataFrame(args["data"], columns=args["columns"], dtype="float64")
predicted = mlflow.pyfunc.load_model(uri).predict(frame)
version = MlflowClient().get_model_version_by_alias(args["model"], args["alias"])
info = mlflow.models.get_model_info(uri)
print(json.dumps({"columns": list(predicted.columns), "rows": predicted.to_dict(orient="records"),
                  "version": version.version, "tags": version.tags, "flavors": sorted(info.flavors),
                  "inputs": info.signature.inputs.input_names()}))
"#;

fn pyfunc(uri: &str, model: &str, data: &Dataset) -> Value {
    let rows: Vec<Vec<Option<f32>>> =
        data.x.chunks(data.n_features()).map(|r| r.iter().map(|v| (!v.is_nan()).then_some(*v)).collect()).collect();
    let args = json!({ "uri": uri, "model": model, "alias": "champion", "columns": data.features, "data": rows });
    serde_json::from_str(&common::run_python(PYFUNC, &args.to_string())).unwrap()
}

/// The shared data's first `n` rows, with some cells blanked in every fifth row.
fn rows_with_gaps(n: usize) -> Dataset {
    let source = source::open(common::phishing_csv().to_str().unwrap()).unwrap();
    let mut data = source.load(&Schema::embedded(), Labels::Required).unwrap().dataset;
    let nf = data.n_features();
    data.x.truncate(n * nf);
    data.labels.truncate(n);
    for (i, row) in data.x.chunks_mut(nf).enumerate().filter(|(i, _)| i % 5 == 0) {
        row[i % nf] = f32::NAN;
        row[(i * 7 + 3) % nf] = f32::NAN;
    }
    data
}

/// Asserts that MLflow's predictions (records with `label` and a probability per class) are
/// netsec's, to 1e-5.
fn assert_same_predictions(records: &[Value], expected: &[(i64, f64)], classes: &[i64]) {
    assert_eq!(records.len(), expected.len());
    for (i, (record, (label, p_positive))) in records.iter().zip(expected).enumerate() {
        assert_eq!(record["label"].as_i64(), Some(*label), "row {i}: {record}");
        let p = record[format!("probability_{}", classes[1])].as_f64().unwrap();
        let q = record[format!("probability_{}", classes[0])].as_f64().unwrap();
        assert!(
            (p - p_positive).abs() <= 1e-5 && (q - (1.0 - p_positive)).abs() <= 1e-5,
            "row {i}: {record} vs {p_positive}"
        );
    }
}

/// `mlflow models serve` of the alias, on a free port, killed when dropped.
struct MlflowServe {
    child: Child,
    port: u16,
}

impl MlflowServe {
    fn start(uri: &str, model: &str, log: &Path) -> MlflowServe {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::fs::File::create(log).unwrap();
        let mlflow = common::python().with_file_name("mlflow");
        // It runs `uvicorn` by name: the environment's programs first on the PATH, as an
        // activated virtual environment has them.
        let bin = mlflow.parent().unwrap().to_path_buf();
        let path = std::env::join_paths(
            std::iter::once(bin).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
        )
        .unwrap();
        let child = Command::new(&mlflow)
            .env("PATH", path)
            .args(["models", "serve", "-m", &format!("models:/{model}@champion"), "--env-manager", "local"])
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--workers", "1"])
            .env("MLFLOW_TRACKING_URI", uri)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        MlflowServe { child, port }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Polls `/ping` until the server answers 200.
    fn wait_ready(&mut self, log: &Path) {
        let deadline = Instant::now() + Duration::from_secs(180);
        let client = common::http_client();
        loop {
            if client.get(self.url("/ping")).send().is_ok_and(|r| r.status() == 200) {
                return;
            }
            let exited = self.child.try_wait().unwrap();
            assert!(exited.is_none() && Instant::now() < deadline, "mlflow models serve did not start: {}", read(log));
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for MlflowServe {
    fn drop(&mut self) {
        // It forks a worker: stop the whole group.
        let _ = Command::new("kill").args(["-TERM", "--", &format!("-{}", self.child.id())]).status();
        let _ = self.child.wait();
    }
}

use std::os::unix::process::CommandExt;

/// `netsec serve` on the test's store, on a free port, killed when dropped.
struct NetsecServe {
    child: Child,
    port: u16,
}

impl NetsecServe {
    fn start(dir: &Path) -> NetsecServe {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child =
            common::netsec_command(dir, &["serve", "--addr", &format!("127.0.0.1:{port}"), "--store", "models"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
        NetsecServe { child, port }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !common::http_client().get(self.url("/ping")).send().is_ok_and(|r| r.status() == 200) {
            assert!(Instant::now() < deadline, "netsec serve did not get ready");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for NetsecServe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The same rows in every form MLflow's scoring server takes: name, Content-Type, body.
fn invocation_bodies(data: &Dataset) -> Vec<(&'static str, &'static str, String)> {
    let cell = |v: f32| if v.is_nan() { Value::Null } else { json!(v as i64) };
    let rows: Vec<Vec<Value>> =
        data.x.chunks(data.n_features()).map(|r| r.iter().map(|&v| cell(v)).collect()).collect();
    let records: Vec<Value> =
        rows.iter().map(|r| Value::Object(data.features.iter().cloned().zip(r.iter().cloned()).collect())).collect();
    let csv: String = std::iter::once(data.features.join(","))
        .chain(data.x.chunks(data.n_features()).map(|r| {
            r.iter()
                .map(|v| if v.is_nan() { String::new() } else { (*v as i64).to_string() })
                .collect::<Vec<_>>()
                .join(",")
        }))
        .map(|line| line + "\n")
        .collect();
    vec![
        (
            "dataframe_split",
            "application/json",
            json!({ "dataframe_split": { "columns": data.features, "data": rows } }).to_string(),
        ),
        ("dataframe_records", "application/json", json!({ "dataframe_records": records }).to_string()),
        ("instances", "application/json", json!({ "instances": records }).to_string()),
        ("inputs", "application/json", json!({ "inputs": records }).to_string()),
        ("csv", "text/csv", csv),
    ]
}

fn invoke(url: &str, content_type: &str, body: &str) -> Value {
    let answer =
        common::http_client().post(url).header("content-type", content_type).body(body.to_string()).send().unwrap();
    let status = answer.status();
    let text = answer.text().unwrap();
    assert_eq!(status, 200, "{url}: {text}");
    serde_json::from_str(&text).unwrap()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn the_registered_model_loads_in_mlflow_and_follows_the_store() {
    let uri = required("NETSEC_TEST_MLFLOW_URI");
    let dir = tempfile::tempdir().unwrap();
    let model = unique("netsec-champion");
    let csv = common::phishing_csv();
    let pipeline = ["pipeline", "--source", csv.to_str().unwrap()];
    netsec(dir.path(), &uri, &model, &pipeline);
    let store = netsec::store::folder_store(&dir.path().join("models")).unwrap();
    let first = store.current().unwrap().unwrap();
    let served = store.get(&first).unwrap();
    let data = rows_with_gaps(300);
    let expected = served.predict_dataset(&data).unwrap();
    let classes = served.preprocessor.classes.clone();

    // pyfunc: the ONNX flavor, the schema's columns, netsec's predictions; tagged with the
    // store version.
    let seen = pyfunc(&uri, &model, &data);
    assert_eq!(seen["flavors"], json!(["onnx", "python_function"]));
    assert_eq!(seen["inputs"], json!(data.features));
    assert_eq!(seen["columns"], json!(["label", "probability_-1", "probability_1"]));
    assert_eq!(seen["tags"]["netsec.store_version"], first.as_str());
    assert_same_predictions(seen["rows"].as_array().unwrap(), &expected, &classes);

    // The same bodies to `mlflow models serve` and to `netsec serve`: the same predictions,
    // and netsec's are netsec's own.
    let log = dir.path().join("serve.log");
    let mut mlflow = MlflowServe::start(&uri, &model, &log);
    let netsec_serve = NetsecServe::start(dir.path());
    mlflow.wait_ready(&log);
    netsec_serve.wait_ready();
    for (what, content_type, body) in invocation_bodies(&data) {
        let from_mlflow = invoke(&mlflow.url("/invocations"), content_type, &body);
        let from_netsec = invoke(&netsec_serve.url("/invocations"), content_type, &body);
        assert_same_predictions(from_mlflow["predictions"].as_array().unwrap(), &expected, &classes);
        assert_same_predictions(from_netsec["predictions"].as_array().unwrap(), &expected, &classes);
        eprintln!("{what}: the same {} predictions from mlflow models serve and netsec serve", expected.len());
    }
    drop(mlflow);
    drop(netsec_serve);

    // A second accepted run moves the alias; rollback and promote move it back and forth.
    let first_registered = seen["version"].as_str().unwrap().to_string();
    netsec(dir.path(), &uri, &model, &pipeline);
    let second = store.current().unwrap().unwrap();
    assert_ne!(first, second);
    let alias_at = || pyfunc(&uri, &model, &rows_with_gaps(2))["version"].as_str().unwrap().to_string();
    let second_registered = alias_at();
    assert_ne!(first_registered, second_registered);
    let out = netsec(dir.path(), &uri, &model, &["models", "rollback"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("@champion is now version {first_registered}")));
    assert_eq!(alias_at(), first_registered);
    netsec(dir.path(), &uri, &model, &["models", "promote", &second]);
    assert_eq!(alias_at(), second_registered);
}
