//! Helpers of the `serve_*` tests: small real models trained on the shared data set, a model
//! store holding them, and a real server on 127.0.0.1:0 in a thread of its own.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use netsec::config::Config;
use netsec::dataset::Dataset;
use netsec::learn::{ModelConfig, Samples};
use netsec::model_file::ModelFile;
use netsec::preprocess::Preprocessor;
use netsec::schema::Schema;
use netsec::serve::{Options, Secret, Server};
use netsec::source::{self, Labels};
use netsec::store::{self, ModelStore};

pub fn phishing_csv() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/phishing.csv");
    assert!(path.is_file(), "the shared data set is missing at {}", path.display());
    path
}

/// The shared data set, read once through netsec's own CSV source.
pub fn phishing() -> &'static Dataset {
    static DATA: OnceLock<Dataset> = OnceLock::new();
    DATA.get_or_init(|| {
        let source = source::open(phishing_csv().to_str().unwrap()).unwrap();
        source.load(&Schema::embedded(), Labels::Required).unwrap().dataset
    })
}

/// The first `n` data lines of the shared file, with its header.
pub fn csv_rows(n: usize) -> String {
    let text = std::fs::read_to_string(phishing_csv()).unwrap();
    text.lines().take(n + 1).map(|l| format!("{l}\n")).collect()
}

/// A decision tree of depth `depth` on the shared data (milliseconds to fit, unlike the
/// pipeline's grid search).
pub fn tree_model(depth: usize) -> ModelFile {
    let mut file = fitted_model(serde_json::json!({ "decision_tree": { "max_depth": depth } }), phishing());
    file.run_id = format!("test-depth-{depth}");
    file
}

/// A model of `config` (e.g. `{"random_forest": {"n_estimators": 8}}`) fitted on `data`, with
/// a KNN imputer (k = 3) fitted on the same rows.
pub fn fitted_model(config: serde_json::Value, data: &Dataset) -> ModelFile {
    let schema = Schema::embedded();
    let preprocessor = Preprocessor::fit(&schema, data, 3).unwrap();
    let rows = preprocessor.transform(data).unwrap();
    let labels = preprocessor.encode_labels(&data.labels);
    let params = config.as_object().and_then(|o| o.values().next()).cloned().expect("one family");
    let config: ModelConfig = serde_json::from_value(config).unwrap();
    let model = config.fit(&Samples::new(&rows, data.n_features(), &labels).unwrap()).unwrap();
    let mut file = ModelFile::new(config.family(), params, model, preprocessor, schema);
    file.run_id = format!("test-{}", config.family());
    file.data_sha256 = "ab".repeat(32);
    file.metrics = serde_json::json!({ "test": { "f1": 0.9 } });
    file
}

/// Stores `model` and makes it current; returns its version.
pub fn promote(store: &ModelStore, model: &ModelFile) -> String {
    let version = store.put(model).unwrap();
    store.promote(&version).unwrap();
    version
}

/// A store in `dir/models` whose current version is a tree of depth 6.
pub fn store_with_model(dir: &Path) -> (ModelStore, String) {
    let store = store::folder_store(&dir.join("models")).unwrap();
    let version = promote(&store, &tree_model(6));
    (store, version)
}

/// Options for tests: loopback, port 0, quick polling and timeouts; training (when a test
/// turns it on) runs a single decision tree.
pub fn options(dir: &Path) -> Options {
    let mut config = Config {
        source: phishing_csv().to_str().unwrap().into(),
        artifacts: dir.join("artifacts"),
        ..Config::default()
    };
    config.train.store = dir.join("models").to_str().unwrap().into();
    config.train.models = serde_yaml::from_str("{decision_tree: {criterion: [gini]}}").unwrap();
    let mut options = Options::new(config);
    options.addr = SocketAddr::from(([127, 0, 0, 1], 0));
    options.poll_interval = Duration::from_millis(50);
    options.header_timeout = Duration::from_secs(1);
    options.body_timeout = Duration::from_secs(1);
    options.shutdown_timeout = Duration::from_secs(5);
    options
}

pub fn with_token(mut options: Options, token: &str) -> Options {
    options.admin_token = Some(Secret(token.into()));
    options
}

/// A server running in a thread of its own until dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The probe listener's address, when the options asked for one.
    pub probe: Option<SocketAddr>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    pub fn start(options: Options, store: ModelStore) -> TestServer {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            // As `netsec serve` does: the last reference to the store is dropped outside the
            // runtime (a store's client must not be dropped in an async context).
            let store: Arc<ModelStore> = Arc::new(store);
            let served = store.clone();
            runtime.block_on(async move {
                let server = Server::bind(options, served).await.unwrap();
                ready_tx.send((server.local_addr(), server.probe_addr())).unwrap();
                server
                    .run(async move {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
            // Do not wait for a training run a test left behind.
            runtime.shutdown_timeout(Duration::from_millis(200));
            drop(store);
        });
        let (addr, probe) = ready_rx.recv_timeout(Duration::from_secs(30)).expect("the server starts");
        TestServer { addr, probe, stop: Some(stop), thread: Some(thread) }
    }

    /// Starts the stop (as SIGTERM does) without waiting for it; dropping waits.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub fn client() -> reqwest::blocking::Client {
    // netsec builds reqwest without a crypto provider (it picks ring itself); so do the tests.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

/// Waits up to `limit` for `check` to hold.
pub fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    check()
}

/// The served model's version, from GET /model.
pub fn served_version(server: &TestServer) -> Option<String> {
    let response = client().get(server.url("/model")).send().ok()?;
    let model: serde_json::Value = response.json().ok()?;
    model["version"].as_str().map(String::from)
}
