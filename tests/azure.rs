//! The Azure Blob store and artifact upload, against the Azurite server `cargo xtask test`
//! starts with an account and key of its own, reached as a user would reach Azure: through
//! `AZURE_STORAGE_CONNECTION_STRING`. (The store's rules themselves are the suite in
//! `model_store.rs`, run here too.)

mod serve_common;
mod stand_ins;

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use netsec::store::azure::{Account, AzureContainer};
use netsec::store::objects::{Multipart, ObjectStore};
use netsec::store::sync::upload_dir;
use netsec::store::ModelStore;
use serde_json::Value;
use serve_common::{eventually, options, served_version, tree_model, TestServer};
use stand_ins::{azure_container, fail, netsec, succeed, text, unique};

fn models(dir: &Path, store: &str, args: &[&str]) -> String {
    let mut all = vec!["models", "--store", store];
    all.extend_from_slice(args);
    text(&succeed(&mut netsec(dir, &all)).stdout)
}

/// The store in `container` under `team/models`, opened as the CLI opens it.
fn open(container: &str) -> ModelStore {
    let objects = azure_container_handle(container);
    ModelStore::new(Arc::new(objects), "team/models", Some("artifacts"))
}

/// A client of an existing container.
fn azure_container_handle(container: &str) -> AzureContainer {
    let account = Account::from_connection_string(&stand_ins::azure_connection_string()).unwrap();
    AzureContainer::new(account, container).unwrap()
}

/// A run of the pipeline into `az://<new container>/team/models`: the folder it ran in, the
/// container, the store's location and the run's summary.
fn pipeline_into_new_container() -> (tempfile::TempDir, String, String, Value) {
    let dir = tempfile::tempdir().unwrap();
    let container = unique("netsec-az");
    azure_container(&container);
    let store = format!("az://{container}/team/models");
    let csv = serve_common::phishing_csv();
    let args = ["--log-format", "json", "pipeline", "--source", csv.to_str().unwrap(), "--store", &store];
    let summary: Value = serde_json::from_slice(&succeed(&mut netsec(dir.path(), &args)).stdout).unwrap();
    (dir, container, store, summary)
}

#[test]
fn a_pipeline_pushes_to_a_container_and_uploads_its_run() {
    let (dir, container, store, summary) = pipeline_into_new_container();
    let first = summary["push"]["version"].as_str().unwrap().to_string();
    assert!(first.starts_with("v0001-"), "{summary}");
    let run_id = summary["run_id"].as_str().unwrap();
    let artifacts = &summary["push"]["artifacts"];
    assert_eq!(artifacts["destination"], format!("az://{container}/artifacts/{run_id}/"));
    assert!(artifacts["uploaded"].as_u64().unwrap() >= 14, "{artifacts}");

    // The run's files are in the container as on disk, each with its sha256.
    let run_dir = dir.path().join(summary["run_dir"].as_str().unwrap());
    let objects = azure_container_handle(&container);
    let manifest = objects.get(&format!("artifacts/{run_id}/manifest.json")).unwrap().unwrap();
    assert_eq!(manifest, std::fs::read(run_dir.join("manifest.json")).unwrap());
    let head = objects.head(&format!("artifacts/{run_id}/train/model.bin")).unwrap().unwrap();
    assert_eq!(head.sha256.unwrap(), netsec::artifacts::sha256_file(&run_dir.join("train/model.bin")).unwrap());

    // The CLI reads and switches versions there as in a folder.
    let push = ["--log-format", "json", "push", "--run", run_id, "--store", &store];
    let again: Value = serde_json::from_slice(&succeed(&mut netsec(dir.path(), &push)).stdout).unwrap();
    let second = again["push"]["version"].as_str().unwrap().to_string();
    // Only what the second push rewrote goes up again.
    let resent = &again["push"]["artifacts"];
    assert!(resent["unchanged"].as_u64().unwrap() > 0 && resent["uploaded"].as_u64().unwrap() >= 2, "{resent}");
    let list = models(dir.path(), &store, &["list"]);
    assert!(list.contains(&format!("   {first}")) && list.contains(&format!("*  {second}")), "{list}");
    assert!(models(dir.path(), &store, &["rollback"]).contains(&format!("rolled back: {first} is now the current")));
    assert_eq!(open(&container).current().unwrap().as_deref(), Some(first.as_str()));
}

#[test]
fn a_wrong_key_and_a_missing_container_exit_2_saying_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let container = unique("netsec-az");
    azure_container(&container);
    let store = format!("az://{container}/models");
    // Another well-formed key for the same account.
    let good = stand_ins::azure_connection_string();
    let key = good.split(';').find_map(|p| p.strip_prefix("AccountKey=")).unwrap().to_string();
    let wrong_key = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmc=";
    let mut command = netsec(dir.path(), &["models", "--store", &store, "list"]);
    command.env("AZURE_STORAGE_CONNECTION_STRING", good.replace(&key, wrong_key));
    let stderr = fail(&mut command, 2);
    // Azure answers a wrong key with 403 AuthenticationFailed, Azurite with 403
    // AuthorizationFailure: either way the refusal exits 2 and says what to check.
    let refused = format!("Azure Blob Storage refused GetBlob az://{container}/models/current");
    assert!(stderr.contains(&refused), "{stderr}");
    assert!(stderr.contains("AZURE_STORAGE_KEY") && !stderr.contains(wrong_key) && !stderr.contains(&key), "{stderr}");

    let missing = unique("netsec-missing");
    let stderr = fail(&mut netsec(dir.path(), &["models", "--store", &format!("az://{missing}/m"), "list"]), 2);
    assert!(stderr.contains(&format!("the container `{missing}` does not exist")), "{stderr}");
    assert!(stderr.contains(&format!("az storage container create --name {missing}")), "{stderr}");

    let mut command = netsec(dir.path(), &["models", "--store", &store, "list"]);
    command.env_remove("AZURE_STORAGE_CONNECTION_STRING").env_remove("AZURE_STORAGE_ACCOUNT");
    let stderr = fail(&mut command, 2);
    assert!(stderr.contains("no Azure storage account is configured"), "{stderr}");
}

/// A SAS instead of the key: the store works with it, an expired one exits 2, and neither the
/// signature nor the rest of the SAS is ever printed.
#[test]
fn a_shared_access_signature_is_taken_and_an_expired_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let container = unique("netsec-az");
    azure_container(&container);
    let store = format!("az://{container}/models");
    let mut command = netsec(dir.path(), &["models", "--store", &store, "list"]);
    command.env("AZURE_STORAGE_CONNECTION_STRING", stand_ins::azure_sas_connection_string("2099-01-01T00:00:00Z"));
    assert_eq!(text(&succeed(&mut command).stdout), "no versions stored yet\n");

    let expired = stand_ins::azure_sas_connection_string("2020-01-01T00:00:00Z");
    let mut command = netsec(dir.path(), &["models", "--store", &store, "list"]);
    command.env("AZURE_STORAGE_CONNECTION_STRING", &expired);
    let stderr = fail(&mut command, 2);
    // Azure answers an expired SAS with 403 AuthenticationFailed, Azurite with 403
    // AuthorizationFailure: both are refusals the user fixes, with the SAS named.
    assert!(stderr.contains("Azure Blob Storage refused") && stderr.contains("an expired SAS"), "{stderr}");
    let signature = expired.split("sig=").nth(1).unwrap();
    assert!(!stderr.contains(signature) && !stderr.contains("sv=2024-11-04"), "{stderr}");
}

#[test]
fn large_files_go_up_in_blocks_and_only_once() {
    let dir = tempfile::tempdir().unwrap();
    let container = unique("netsec-az");
    let objects = azure_container(&container);
    let big: Vec<u8> = (0..12u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    std::fs::create_dir_all(dir.path().join("run/transform")).unwrap();
    std::fs::write(dir.path().join("run/transform/big.npy"), &big).unwrap();
    std::fs::write(dir.path().join("run/small.json"), "{}").unwrap();
    let parts = Multipart { threshold: 5 << 20, part_size: 5 << 20 };
    let report = upload_dir(&objects, &dir.path().join("run"), "artifacts/r1", parts).unwrap();
    assert_eq!((report.uploaded, report.unchanged, report.bytes_uploaded), (2, 0, big.len() as u64 + 2));
    let stored = objects.get("artifacts/r1/transform/big.npy").unwrap().unwrap();
    assert!(stored == big, "the blocks were joined in order");
    let again = upload_dir(&objects, &dir.path().join("run"), "artifacts/r1", parts).unwrap();
    assert_eq!((again.uploaded, again.unchanged), (0, 2));
}

/// Pushes killed at different moments: whatever they left, `current` names a version that
/// loads and verifies, and every listed version does too.
#[test]
fn a_killed_push_leaves_the_previous_current_serving() {
    let (dir, container, store, summary) = pipeline_into_new_container();
    let run_id = summary["run_id"].as_str().unwrap();
    let reader = open(&container);
    for delay in [30, 90, 200, 400] {
        let push = ["push", "--run", run_id, "--store", &store];
        let mut child = netsec(dir.path(), &push).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        let _ = child.kill();
        child.wait().unwrap();
        let current = reader.current().unwrap().expect("a version stays current");
        reader.get(&current).unwrap_or_else(|e| panic!("after a kill at {delay} ms, {current}: {e:#}"));
        for version in reader.list().unwrap() {
            reader.get(&version.version).unwrap();
        }
        // A writer killed while holding the lock leaves it: as its message says, delete it.
        azure_container_handle(&container).delete("team/models/.lock").unwrap();
    }
}

#[test]
fn a_server_on_a_container_hot_reloads_a_promoted_version() {
    let dir = tempfile::tempdir().unwrap();
    let container = unique("netsec-az");
    azure_container(&container);
    let store = open(&container);
    let first = serve_common::promote(&store, &tree_model(4));
    let server = TestServer::start(options(dir.path()), open(&container));
    assert!(eventually(Duration::from_secs(10), || served_version(&server).as_deref() == Some(first.as_str())));
    let second = serve_common::promote(&store, &tree_model(7));
    assert!(eventually(Duration::from_secs(10), || served_version(&server).as_deref() == Some(second.as_str())));
}
