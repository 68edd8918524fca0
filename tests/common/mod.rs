//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

pub mod samples;

/// The shared data set (never copied into the repo).
pub fn phishing_csv() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/phishing.csv");
    assert!(path.is_file(), "the shared data set is missing at {}", path.display());
    path
}

/// The Python interpreter of the harness's virtual environment (scipy, scikit-learn), used as
/// an oracle. `cargo xtask test` sets NETSEC_PYTHON; a plain `cargo test` finds the venv the
/// harness left in target/.
pub fn python() -> PathBuf {
    if let Some(path) = std::env::var_os("NETSEC_PYTHON") {
        return PathBuf::from(path);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/netsec-py/bin/python");
    assert!(venv.is_file(), "no Python oracle: run the tests with `cargo xtask test` (it creates {})", venv.display());
    venv
}

/// Runs a Python script with the oracle interpreter, passing `stdin`, and returns its stdout.
pub fn run_python(script: &str, stdin: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(python())
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the Python oracle");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().expect("run the Python oracle");
    assert!(out.status.success(), "Python oracle failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("oracle output is UTF-8")
}

/// A grid small enough for a debug build; the full grids are exercised by `cargo xtask bench train`.
pub const SMALL_GRID: &str = "{decision_tree: {criterion: [gini, entropy]}, random_forest: {n_estimators: [4, 8]}}";

/// Runs the netsec binary in `dir` with the small grid; asserts that it succeeds.
pub fn netsec(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let output = netsec_command(dir, args).output().unwrap();
    assert!(output.status.success(), "netsec {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    output
}

/// The netsec binary in `dir` with the small grid, to run as the caller likes.
pub fn netsec_command(dir: &std::path::Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_netsec"));
    command.current_dir(dir).env("NETSEC_TRAIN_MODELS", SMALL_GRID).args(args);
    command
}

/// A blocking HTTP client for the tests. netsec builds reqwest without a crypto provider (it
/// picks ring itself); so do the tests.
pub fn http_client() -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder().timeout(std::time::Duration::from_secs(30)).build().unwrap()
}

/// SplitMix64: a small deterministic generator, so fixtures never change and need no library.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}
