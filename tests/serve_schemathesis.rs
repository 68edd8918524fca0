//! schemathesis (from the harness's Python environment) against /openapi.json: requests
//! generated from the document, valid and invalid, with every check it has: no 5xx, statuses,
//! content types, headers and bodies as documented, invalid requests refused.

mod serve_common;

use std::path::PathBuf;
use std::process::Command;

use serve_common::*;

/// `schemathesis` next to the harness's Python (`cargo xtask test` installs it).
fn schemathesis() -> PathBuf {
    let python = std::env::var_os("NETSEC_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/netsec-py/bin/python"));
    let path = python.with_file_name("schemathesis");
    assert!(path.is_file(), "no {}: run the tests with `cargo xtask test`, which installs it", path.display());
    path
}

#[test]
fn generated_requests_conform_to_the_openapi_document() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store_with_model(dir.path());
    let server = TestServer::start(with_token(options(dir.path()), "schemathesis-token"), store);
    let output = Command::new(schemathesis())
        .args(["run", &server.url("/openapi.json"), "--checks", "all", "--max-examples", "25", "--seed", "7"])
        .args(["--header", "Authorization: Bearer schemathesis-token"])
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.contains("No issues found"), "{report}");
}
