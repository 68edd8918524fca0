//! What the xtask integration tests share: the harness's variables, the Docker engine (or the
//! reason it is missing), commands, the image's user, and a model store the image can read.
#![allow(dead_code)] // each test file uses its own part

pub mod aws;
pub mod github;
pub mod host;
pub mod intercept;
pub mod lossy;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// One decision tree: the model the tests serve and train.
pub const ONE_TREE: &str = "{decision_tree: {criterion: [gini]}}";
/// The image runs as this user; mounted folders must be theirs.
pub const IMAGE_UID: u32 = 10001;

/// The engine's address, or `None` (with the reason printed) when the harness could not start
/// one and the tests may be skipped.
pub fn engine_host() -> Option<String> {
    if let Ok(host) = std::env::var("NETSEC_TEST_DOCKER_HOST") {
        return Some(host);
    }
    let Ok(reason) = std::env::var("NETSEC_TEST_DOCKER_UNAVAILABLE") else {
        panic!("NETSEC_TEST_DOCKER_HOST is not set: run the tests with `cargo xtask test`, which starts dockerd")
    };
    assert!(std::env::var("NETSEC_REQUIRE_DOCKER").as_deref() != Ok("1"), "NETSEC_REQUIRE_DOCKER=1 but: {reason}");
    eprintln!("SKIPPED (no Docker engine): {reason}");
    None
}

/// Returns from the test when there is no engine (see [`engine_host`]).
#[macro_export]
macro_rules! require_engine {
    () => {
        match common::engine_host() {
            Some(host) => host,
            None => return,
        }
    };
}

pub fn required(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run the tests with `cargo xtask test`"))
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The arguments only: a Command's Debug form lists its environment, credentials included.
pub fn shown(command: &Command) -> String {
    command.get_args().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
}

pub fn succeed(command: &mut Command) -> Output {
    let output = command.output().unwrap();
    let shown = shown(command);
    assert!(output.status.success(), "{shown} failed:\n{}{}", text(&output.stdout), text(&output.stderr));
    output
}

/// Built in a workspace, reqwest has netsec's `rustls-no-provider` feature: a crypto provider
/// must be installed first (ring, as netsec).
pub fn install_ring() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The shared data set's folder (it is never copied into the repository).
pub fn shared_data() -> PathBuf {
    let dir = root().join("../shared/data");
    assert!(dir.join("phishing.csv").is_file(), "the shared data set is missing in {}", dir.display());
    std::fs::canonicalize(dir).unwrap()
}

/// The shared data set's header and its first `rows` rows, as CSV text.
pub fn shared_rows(rows: usize) -> String {
    let csv = std::fs::read_to_string(shared_data().join("phishing.csv")).unwrap();
    csv.lines().take(rows + 1).map(|l| format!("{l}\n")).collect()
}

/// The static binary `cargo xtask image` staged (it runs on the host too).
pub fn staged_netsec() -> PathBuf {
    root().join("target/image/netsec")
}

pub fn chown_tree(path: &Path) {
    std::os::unix::fs::chown(path, Some(IMAGE_UID), Some(IMAGE_UID)).unwrap();
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            chown_tree(&entry.unwrap().path());
        }
    }
}

/// A model store made by one quick pipeline run of the staged static binary, owned by the
/// image's user.
pub fn model_store(dir: &Path) -> PathBuf {
    let store = dir.join("models");
    let mut command = Command::new(staged_netsec());
    command.current_dir(dir).env("NETSEC_TRAIN_MODELS", ONE_TREE).env_remove("NETSEC_CONFIG");
    command.arg("--store").arg(&store).arg("--artifacts").arg(dir.join("artifacts"));
    succeed(command.arg("pipeline").arg("--source").arg(shared_data().join("phishing.csv")));
    chown_tree(&store);
    store
}
