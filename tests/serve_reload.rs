//! Hot reload: a version promoted in the store while the server runs is served without a
//! restart and without a failed request; a corrupted version is refused and the old model
//! keeps serving.

mod serve_common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use netsec::store;
use reqwest::StatusCode;
use serve_common::*;

/// Flips one byte in the middle of a stored version's model file.
fn corrupt(dir: &std::path::Path, version: &str) {
    let path = dir.join("models").join(version).join("model.bin");
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(&path, bytes).unwrap();
}

fn metric(server: &TestServer, name: &str) -> f64 {
    let text = client().get(server.url("/metrics")).send().unwrap().text().unwrap();
    let line = text.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} in\n{text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn a_promoted_version_is_served_and_a_corrupted_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (store, first) = store_with_model(dir.path());
    let server = Arc::new(TestServer::start(options(dir.path()), store.clone()));
    assert_eq!(served_version(&server).as_deref(), Some(first.as_str()));

    // Requests keep flowing during the swaps; every one must succeed.
    let (stop, answered) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (server, stop, answered) = (server.clone(), stop.clone(), answered.clone());
        std::thread::spawn(move || {
            let (client, csv) = (client(), csv_rows(5));
            while !stop.load(Ordering::Relaxed) {
                let request = client.post(server.url("/predict")).header("content-type", "text/csv");
                let status = request.body(csv.clone()).send().unwrap().status();
                assert_eq!(status, StatusCode::OK);
                answered.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    let second = promote(&store, &tree_model(3));
    assert!(eventually(Duration::from_secs(10), || served_version(&server).as_deref() == Some(second.as_str())));
    let model: serde_json::Value = client().get(server.url("/model")).send().unwrap().json().unwrap();
    assert_eq!(model["params"]["max_depth"], 3);

    // A current version whose file is damaged (`promote` refuses a damaged file, so the
    // damage comes after: the store's `current` is switched by hand to the damaged version).
    let third = store.put(&tree_model(9)).unwrap();
    corrupt(dir.path(), &third);
    std::fs::write(dir.path().join("models/current"), format!("{third}\n")).unwrap();
    assert!(eventually(Duration::from_secs(10), || metric(&server, "netsec_model_reloads_total{result=\"refused\"}")
        >= 1.0));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(served_version(&server).as_deref(), Some(second.as_str()), "the old model keeps serving");
    assert_eq!(client().get(server.url("/ready")).send().unwrap().status(), StatusCode::OK);
    assert_eq!(
        metric(&server, "netsec_model_reloads_total{result=\"refused\"}"),
        1.0,
        "a refused version is not retried at every poll"
    );

    stop.store(true, Ordering::Relaxed);
    load.join().expect("every request during the swaps succeeded");
    assert!(answered.load(Ordering::Relaxed) > 10);
}

#[test]
fn a_server_started_on_a_corrupted_current_version_waits_for_a_good_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = store::folder_store(&dir.path().join("models")).unwrap();
    promote(&store, &tree_model(4));
    let bad = store.put(&tree_model(5)).unwrap();
    corrupt(dir.path(), &bad);
    std::fs::write(dir.path().join("models/current"), format!("{bad}\n")).unwrap();
    let server = TestServer::start(options(dir.path()), store.clone());
    assert_eq!(client().get(server.url("/ready")).send().unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);

    let good = promote(&store, &tree_model(7));
    assert!(eventually(Duration::from_secs(10), || served_version(&server).as_deref() == Some(good.as_str())));
    assert_eq!(client().get(server.url("/ready")).send().unwrap().status(), StatusCode::OK);
}
