//! Tracking to a real MLflow server (`mlflow server`, SQLite store, proxied artifacts), checked
//! through the Python `mlflow` client as a user of the MLflow UI would see it. The harness
//! starts the shared server (NETSEC_TEST_MLFLOW_URI); the failure test starts its own behind a
//! proxy that goes down part-way through the upload.

mod common;
mod stand_ins;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stand_ins::{required, unique};

/// What the MLflow client sees of an experiment: its runs (parent first), their params, tags,
/// metric histories, the artifacts it can download, and the registered model's versions.
const INSPECT: &str = r#"
import sys, json, hashlib, tempfile, os
import mlflow
from mlflow.tracking import MlflowClient
args = json.load(sys.stdin)
client = MlflowClient(tracking_uri=args["uri"], registry_uri=args["uri"])
experiment = client.get_experiment_by_name(args["experiment"])
runs = client.search_runs([experiment.experiment_id])
out = {"runs": [], "versions": []}
for run in sorted(runs, key=lambda r: "mlflow.parentRunId" in r.data.tags):
    histories = {key: [[m.step, m.value] for m in client.get_metric_history(run.info.run_id, key)]
                 for key in args["histories"] if key in run.data.metrics}
    downloaded = {}
    if "mlflow.parentRunId" not in run.data.tags:
        with tempfile.TemporaryDirectory() as tmp:
            for path in args["artifacts"]:
                local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=path,
                                                            dst_path=tmp, tracking_uri=args["uri"])
                downloaded[path] = hashlib.sha256(open(local, "rb").read()).hexdigest()
    out["runs"].append({"id": run.info.run_id, "name": run.info.run_name, "status": run.info.status,
                        "params": run.data.params, "tags": run.data.tags, "metrics": run.data.metrics,
                        "histories": histories, "downloaded": downloaded})
if args["model"]:
    for v in client.search_model_versions(f"name='{args['model']}'"):
        out["versions"].append({"version": v.version, "run_id": v.run_id, "source": v.source})
print(json.dumps(out))
"#;

fn inspect(uri: &str, experiment: &str, model: &str, artifacts: &[&str]) -> Value {
    let args = json!({
        "uri": uri, "experiment": experiment, "model": model, "artifacts": artifacts,
        "histories": ["staged_cv_f1", "staged_test_f1", "cv_f1"],
    });
    serde_json::from_str(&common::run_python(INSPECT, &args.to_string())).unwrap()
}

/// `netsec pipeline` (JSON summary) against `uri`, with a new experiment and registered model.
fn pipeline(dir: &Path, uri: &str, experiment: &str, model: &str, env: &[(&str, &str)]) -> Output {
    let source = common::phishing_csv();
    let mut command =
        common::netsec_command(dir, &["--log-format", "json", "pipeline", "--source", source.to_str().unwrap()]);
    command.env("MLFLOW_TRACKING_URI", uri).env("MLFLOW_EXPERIMENT_NAME", experiment);
    command.env("NETSEC_MLFLOW_REGISTERED_MODEL", model).envs(env.iter().copied());
    command.output().unwrap()
}

fn json_file(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

const ARTIFACTS: [&str; 4] = ["train/model.bin", "transform/preprocessor.bin", "validation/report.yaml", "report.html"];

/// The server holds what the run folder holds: checks one sent run against its record.
fn assert_server_has_the_run(seen: &Value, run: &Path, model: &str) {
    let record = json_file(&run.join("tracking.json"));
    let state = json_file(&run.join("mlflow.json"));
    let runs = seen["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3, "a parent and two families: {seen}");
    let parent = &runs[0];
    assert_eq!(parent["id"], state["run_id"]);
    assert_eq!(parent["status"], "FINISHED");
    assert_eq!(parent["name"], record["run_id"]);
    assert_eq!(parent["tags"]["netsec.decision"], "accepted");
    assert_eq!(parent["tags"]["netsec.data_sha256"], record["run"]["tags"]["netsec.data_sha256"]);
    assert_eq!(parent["tags"]["netsec.git_revision"], record["run"]["tags"]["netsec.git_revision"]);
    assert_eq!(parent["params"]["split.strategy"], "grouped");
    assert_eq!(parent["params"].as_object().unwrap().len(), record["run"]["params"].as_object().unwrap().len());
    let test_f1 = record["run"]["metrics"].as_array().unwrap().iter().find(|m| m["key"] == "test_f1").unwrap();
    assert_eq!(parent["metrics"]["test_f1"], test_f1["value"]);
    let families: Vec<&str> = runs[1..].iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert!(families.contains(&"decision_tree") && families.contains(&"random_forest"), "{families:?}");
    for child in &runs[1..] {
        assert_eq!(child["tags"]["mlflow.parentRunId"], parent["id"]);
        assert_eq!(child["status"], "FINISHED");
    }
    // Staged CV F1 of the forest as steps 4 and 8, equal to search.json.
    let forest = runs.iter().find(|r| r["name"] == "random_forest").unwrap();
    assert_eq!(forest["params"]["n_estimators"].as_str().map(|n| n == "4" || n == "8"), Some(true));
    let search = json_file(&run.join("train/search.json"));
    let expected: Vec<Value> = search
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["family"] == "random_forest")
        .map(|c| json!([c["params"]["n_estimators"], c["cv_f1"]]))
        .collect();
    assert_eq!(forest["histories"]["staged_cv_f1"], Value::Array(expected));
    for artifact in ARTIFACTS {
        let local = netsec::artifacts::sha256_file(&run.join(artifact)).unwrap();
        assert_eq!(parent["downloaded"][artifact], local, "{artifact}");
    }
    let versions = seen["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 1, "{versions:?}");
    assert_eq!(versions[0]["run_id"], parent["id"]);
    assert_eq!(state["registered_model"]["name"], model);
    assert_eq!(state["registered_model"]["version"], versions[0]["version"]);
}

#[test]
fn a_pipeline_run_reaches_mlflow_with_nested_runs_steps_artifacts_and_a_model_version() {
    let uri = required("NETSEC_TEST_MLFLOW_URI");
    let dir = tempfile::tempdir().unwrap();
    let (experiment, model) = (unique("netsec-exp"), unique("netsec-model"));
    let output = pipeline(dir.path(), &uri, &experiment, &model, &[]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["tracking"]["mlflow"]["status"], "sent", "{summary}");
    let run = dir.path().join(summary["run_dir"].as_str().unwrap());
    assert_server_has_the_run(&inspect(&uri, &experiment, &model, &ARTIFACTS), &run, &model);
    let manifest = json_file(&run.join("manifest.json"));
    assert!(manifest["files"]["mlflow.json"].is_object(), "the sync state is a run file");

    // A second run goes into the same experiment, and is rejected: no second version.
    let output = pipeline(dir.path(), &uri, &experiment, &model, &[]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let seen = inspect(&uri, &experiment, &model, &[]);
    let parents = seen["runs"].as_array().unwrap().iter().filter(|r| r["tags"]["mlflow.parentRunId"].is_null());
    assert_eq!(parents.count(), 2);
    assert_eq!(seen["versions"].as_array().unwrap().len(), 1, "a rejected model is not registered");
}

/// A TCP proxy to `target` that serves `requests` HTTP requests, then goes down: open
/// connections are cut and new ones refused, as when a server stops part-way.
struct FailingProxy {
    port: u16,
    down: Arc<AtomicBool>,
}

impl FailingProxy {
    fn start(target: u16, requests: usize) -> FailingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let down = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(AtomicUsize::new(0));
        let flag = down.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break; // dropping the listener refuses every later connection
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else { continue };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || copy(s2, c2, None));
                let (flag, seen) = (flag.clone(), seen.clone());
                std::thread::spawn(move || copy(client, server, Some((flag, seen, requests))));
            }
        });
        FailingProxy { port, down }
    }
}

/// Copies `from` into `to`; with a budget, counts request lines and cuts both when it is spent.
fn copy(mut from: TcpStream, mut to: TcpStream, budget: Option<(Arc<AtomicBool>, Arc<AtomicUsize>, usize)>) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some((down, seen, limit)) = &budget {
            let lines = buffer[..n].windows(11).filter(|w| w == b" HTTP/1.1\r\n").count();
            if down.load(Ordering::SeqCst) || seen.fetch_add(lines, Ordering::SeqCst) + lines > *limit {
                down.store(true, Ordering::SeqCst);
                // Wake the accept loop so that it sees the flag and closes the listener.
                let _ = TcpStream::connect(from.local_addr().unwrap());
                break;
            }
        }
        if to.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// An `mlflow server` of this test's own, stopped when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(dir: &Path) -> Server {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::fs::File::create(dir.join("mlflow.log")).unwrap();
        let mlflow: PathBuf = common::python().with_file_name("mlflow");
        let child = Command::new(mlflow)
            .args(["server", "--host", "127.0.0.1", "--port", &port.to_string(), "--workers", "1"])
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
            .arg("--artifacts-destination")
            .arg(dir.join("artifacts"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            // A group of its own, so that stopping it stops the workers it forks too.
            .process_group(0)
            .spawn()
            .unwrap();
        let server = Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(90);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "mlflow server did not start; see {}", dir.join("mlflow.log").display());
            std::thread::sleep(Duration::from_millis(200));
        }
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // `mlflow server` forks uvicorn and job consumers: kill the whole group.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

#[test]
fn a_server_that_goes_down_mid_run_leaves_the_run_local_and_runs_sync_resends_it() {
    // Fails without the harness, like every test of a service (and needs its environment).
    required("NETSEC_TEST_MLFLOW_URI");
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("mlflow");
    std::fs::create_dir_all(&state_dir).unwrap();
    let server = Server::start(&state_dir);
    let direct = format!("http://127.0.0.1:{}", server.port);
    // The experiment, the parent run, a family's run and its batch get through; then the server is gone.
    let proxy = FailingProxy::start(server.port, 4);
    let through_proxy = format!("http://127.0.0.1:{}", proxy.port);
    let (experiment, model) = (unique("netsec-exp"), unique("netsec-model"));
    let fast = [("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2"), ("NETSEC_MLFLOW_BACKOFF_MS", "50")];
    let secret = "not-to-be-printed-7f3a";
    let mut env = fast.to_vec();
    env.extend([("MLFLOW_TRACKING_USERNAME", "netsec"), ("MLFLOW_TRACKING_PASSWORD", secret)]);
    let output = pipeline(dir.path(), &through_proxy, &experiment, &model, &env);
    assert!(
        output.status.success(),
        "the run succeeds without its server: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(proxy.down.load(Ordering::SeqCst), "the proxy went down during the run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("MLflow tracking failed"), "{stderr}");
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    let run_id = summary["run_id"].as_str().unwrap();
    let run = dir.path().join(summary["run_dir"].as_str().unwrap());
    let state = json_file(&run.join("mlflow.json"));
    assert_eq!(state["status"], "failed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stderr.contains(secret) && !stdout.contains(secret), "the password is never printed");
    assert!(!std::fs::read_to_string(run.join("mlflow.json")).unwrap().contains(secret));
    // The text summary says it plainly, with the command to re-send.
    let show = common::netsec(dir.path(), &["runs", "show", run_id]);
    let show = String::from_utf8_lossy(&show.stdout);
    assert!(show.contains("NOT sent") && show.contains("netsec runs sync"), "{show}");
    assert!(run.join("report.html").is_file() && run.join("push/result.json").is_file(), "the run is whole locally");

    // The server is back (reached directly): `runs sync` sends the run, replacing the half-sent one.
    let mut sync = common::netsec_command(dir.path(), &["runs", "sync", run_id]);
    sync.env("MLFLOW_TRACKING_URI", &direct).env("MLFLOW_EXPERIMENT_NAME", &experiment);
    sync.env("NETSEC_MLFLOW_REGISTERED_MODEL", &model).envs(fast);
    let output = sync.output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("sent to"));
    assert_eq!(json_file(&run.join("mlflow.json"))["status"], "sent");
    assert_server_has_the_run(&inspect(&direct, &experiment, &model, &ARTIFACTS), &run, &model);
    drop(server);
}
