//! The model store's suite, run on every backend alike (a folder, a bucket on the moto server
//! and a container on the Azurite server `cargo xtask test` starts): round trips, tampering, version semantics, interrupted
//! writers, concurrent ones and the writer lock.

use std::fs;
use std::sync::Arc;
use std::time::Duration;

mod stand_ins;

use netsec::learn::{ModelConfig, Samples};
use netsec::model_file::ModelFile;
use netsec::preprocess::Preprocessor;
use netsec::schema::Schema;
use netsec::store::objects::join;
use netsec::store::{self, ModelStore};
use netsec::synth::{generate, SynthOptions};

/// A small real model file: a decision tree (depth `depth`) and a KNN preprocessor fitted on
/// synthetic rows, with a test F1 of `test_f1`.
fn model_file(depth: usize, test_f1: f64) -> ModelFile {
    let schema = Schema::embedded();
    let mut train = generate(&schema, SynthOptions { rows: 150, seed: depth as u64, ..SynthOptions::default() });
    train.x.iter_mut().step_by(41).for_each(|v| *v = f32::NAN);
    let preprocessor = Preprocessor::fit(&schema, &train, 3).unwrap();
    let rows = preprocessor.transform(&train).unwrap();
    let labels = preprocessor.encode_labels(&train.labels);
    let params = serde_json::json!({ "max_depth": depth });
    let config: ModelConfig = serde_json::from_value(serde_json::json!({ "decision_tree": params })).unwrap();
    let model = config.fit(&Samples::new(&rows, train.n_features(), &labels).unwrap()).unwrap();
    let mut file = ModelFile::new(config.family(), params, model, preprocessor, schema);
    file.run_id = format!("run-{depth}");
    file.data_sha256 = "cd".repeat(32);
    file.metrics = serde_json::json!({ "train": { "f1": 0.99 }, "test": { "f1": test_f1 } });
    file
}

/// A store on one backend, and raw access to its objects as another program would have.
struct Backend {
    store: ModelStore,
    /// The store's prefix in the backend.
    prefix: String,
    _dir: tempfile::TempDir,
}

impl Backend {
    fn folder() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        let store = store::folder_store(&dir.path().join("models")).unwrap();
        Backend { store, prefix: String::new(), _dir: dir }
    }

    /// A fresh bucket on the moto server the harness starts.
    fn s3() -> Backend {
        let bucket = stand_ins::unique("netsec-suite");
        stand_ins::create_bucket(&stand_ins::s3(), &bucket);
        let location = format!("s3://{bucket}/team/models");
        let store = store::s3::open(&location, Some(&stand_ins::s3_endpoint())).unwrap();
        Backend { store, prefix: "team/models".into(), _dir: tempfile::tempdir().unwrap() }
    }

    /// A fresh container on the Azurite server the harness starts.
    fn azure() -> Backend {
        let container = stand_ins::azure_container(&stand_ins::unique("netsec-suite"));
        let store = ModelStore::new(Arc::new(container), "team/models", Some("artifacts"));
        Backend { store, prefix: "team/models".into(), _dir: tempfile::tempdir().unwrap() }
    }

    fn key(&self, name: &str) -> String {
        join(&self.prefix, name)
    }

    fn raw(&self, name: &str) -> Option<Vec<u8>> {
        self.store.objects().get(&self.key(name)).unwrap()
    }

    fn write_raw(&self, name: &str, bytes: Vec<u8>) {
        self.store.objects().put(&self.key(name), bytes).unwrap();
    }
}

/// Every test of the suite, once per backend: the store's rules hold on each alike.
macro_rules! on_every_backend {
    ($($test:ident),* $(,)?) => {
        mod folder {
            $(#[test] fn $test() { super::$test(&super::Backend::folder()); })*
        }
        mod s3 {
            $(#[test] fn $test() { super::$test(&super::Backend::s3()); })*
        }
        mod azure {
            $(#[test] fn $test() { super::$test(&super::Backend::azure()); })*
        }
    };
}

on_every_backend!(
    a_stored_model_comes_back_identical_and_described,
    tampered_model_files_are_refused,
    the_store_refuses_a_valid_file_that_is_not_the_one_it_stored,
    put_promote_rollback_and_list,
    interrupted_writers_leave_nothing_readers_see,
    concurrent_writers_do_not_corrupt_the_store,
    a_held_lock_makes_another_writer_wait_then_give_up,
);

fn error_of<T>(result: anyhow::Result<T>) -> String {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

fn a_stored_model_comes_back_identical_and_described(backend: &Backend) {
    let store = &backend.store;
    let file = model_file(3, 0.91);
    let version = store.put(&file).unwrap();
    assert!(version.starts_with("v0001-"), "{version}");

    let back = store.get(&version).unwrap();
    assert_eq!(back.to_bytes(), file.to_bytes());
    assert_eq!(back.params, serde_json::json!({ "max_depth": 3 }));
    let raw = backend.raw(&format!("{version}/model.bin")).unwrap();
    assert_eq!(ModelFile::from_bytes(&raw).unwrap().model, file.model);

    let info = store.info(&version).unwrap();
    assert_eq!((info.family.as_str(), info.run_id.as_str(), info.test_f1), ("decision_tree", "run-3", Some(0.91)));
    assert_eq!(info.bytes, file.to_bytes().len() as u64);
    let meta: serde_json::Value =
        serde_json::from_slice(&backend.raw(&format!("{version}/meta.json")).unwrap()).unwrap();
    assert_eq!(
        (&meta["version"], &meta["sha256"], &meta["metrics"]["test"]["f1"]),
        (&version.clone().into(), &info.sha256.clone().into(), &0.91.into())
    );

    // The ONNX export is stored beside the model file, recorded and checked like it.
    let onnx = store.get_onnx(&version).unwrap().expect("an ONNX export");
    assert_eq!(onnx, netsec::onnx::export(&file).unwrap());
    assert_eq!(backend.raw(&format!("{version}/model.onnx")).unwrap(), onnx);
    let recorded = info.onnx.as_ref().unwrap();
    assert_eq!(
        (recorded.bytes, &recorded.sha256),
        (onnx.len() as u64, &meta["onnx"]["sha256"].as_str().unwrap().to_string())
    );

    let shown = store::render_show(&back, &info);
    assert!(shown.contains(&format!("version      {version}\n")) && shown.contains("test F1      0.9100"), "{shown}");
    assert!(shown.contains(&format!("onnx         {} bytes, sha256 {}", recorded.bytes, recorded.sha256)), "{shown}");
    let data = generate(&file.schema, SynthOptions { rows: 10, seed: 9, ..SynthOptions::default() });
    assert_eq!(back.predict_dataset(&data).unwrap(), file.predict_dataset(&data).unwrap());
}

/// Flips a byte of, truncates or re-versions a stored model file: each is refused on load with
/// what happened and what to do, and the store refuses to hand it out.
fn tampered_model_files_are_refused(backend: &Backend) {
    let (store, dir) = (&backend.store, tempfile::tempdir().unwrap());
    let original = model_file(3, 0.9).to_bytes();
    let damages: [(&str, Damage, &str); 3] = [
        ("flipped", flip_middle_byte, "the checksum does not match"),
        ("truncated", |b| b[..b.len() - 100].to_vec(), "the file is truncated (100 bytes missing)"),
        ("re-versioned", set_next_format_version, &format!("format version {} is not supported", NEXT_FORMAT)),
    ];
    for (what, damage, expected) in damages {
        let version = store.put(&ModelFile::from_bytes(&original).unwrap()).unwrap();
        let name = format!("{version}/model.bin");
        let damaged = damage(&backend.raw(&name).unwrap());
        backend.write_raw(&name, damaged.clone());

        // The damaged file, downloaded, is refused by the model file's own checks too.
        let path = dir.path().join("model.bin");
        fs::write(&path, damaged).unwrap();
        let loaded = ModelFile::load(&path).unwrap_err();
        assert_eq!(netsec::error::exit_code(&loaded), 2, "{what}");
        let message = loaded.to_string();
        assert!(message.starts_with(&path.display().to_string()), "{what}: {message}");
        assert!(message.contains(expected) && message.contains("hint: "), "{what}: {message}");

        let got = error_of(store.get(&version));
        assert!(got.contains("differs from the store's record"), "{what}: {got}");
        assert!(got.starts_with(&store.model_location(&version)), "{what}: {got}");
        assert!(error_of(store.promote(&version)).contains("differs from the store's record"), "{what}");

        // The ONNX export is checked on read too.
        let name = format!("{version}/model.onnx");
        backend.write_raw(&name, damage(&backend.raw(&name).unwrap()));
        let got = error_of(store.get_onnx(&version));
        assert!(got.contains("the stored ONNX file differs from the store's record"), "{what}: {got}");
        assert!(got.starts_with(&backend.store.objects().url(&backend.key(&name))), "{what}: {got}");
    }
}

/// What a damage makes of a file's bytes.
type Damage = fn(&[u8]) -> Vec<u8>;

fn flip_middle_byte(bytes: &[u8]) -> Vec<u8> {
    let mut damaged = bytes.to_vec();
    damaged[bytes.len() / 2] ^= 0x10;
    damaged
}

/// A format version this build does not know yet.
const NEXT_FORMAT: u32 = ModelFile::FORMAT_VERSION + 1;

/// Rewrites the envelope's format version (after the magic, the kind's length and the kind).
fn set_next_format_version(bytes: &[u8]) -> Vec<u8> {
    let mut damaged = bytes.to_vec();
    let at = 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    damaged[at..at + 4].copy_from_slice(&NEXT_FORMAT.to_le_bytes());
    damaged
}

/// A valid model file swapped in for another one passes the codec, but not the store's record.
fn the_store_refuses_a_valid_file_that_is_not_the_one_it_stored(backend: &Backend) {
    let store = &backend.store;
    let first = store.put(&model_file(2, 0.8)).unwrap();
    let second = store.put(&model_file(5, 0.9)).unwrap();
    backend.write_raw(&format!("{first}/model.bin"), backend.raw(&format!("{second}/model.bin")).unwrap());
    let error = error_of(store.get(&first));
    assert!(error.contains("altered or damaged after it was stored") && error.contains("hint: "), "{error}");
    assert!(store.get(&second).is_ok());
}

fn put_promote_rollback_and_list(backend: &Backend) {
    let store = &backend.store;
    let v1 = store.put(&model_file(1, 0.81)).unwrap();
    let v2 = store.put(&model_file(2, 0.82)).unwrap();
    assert_eq!(store.current().unwrap(), None, "put does not promote");
    assert!(backend.raw("current").is_none());

    assert_eq!(store.promote(&v1).unwrap(), None);
    assert_eq!(store.current().unwrap().as_deref(), Some(v1.as_str()));
    assert_eq!(backend.raw("current").unwrap(), format!("{v1}\n").as_bytes());
    let v3 = store.put(&model_file(3, 0.83)).unwrap();
    assert_eq!(store.current().unwrap().as_deref(), Some(v1.as_str()), "put keeps the current version");
    assert_eq!(store.promote(&v3).unwrap().as_deref(), Some(v1.as_str()));
    assert_eq!(store.promote(&v3).unwrap().as_deref(), Some(v3.as_str()), "promoting the current one changes nothing");

    let list = store.list().unwrap();
    let names: Vec<&str> = list.iter().map(|v| v.version.as_str()).collect();
    assert_eq!(names, [v1.as_str(), v2.as_str(), v3.as_str()]);
    assert_eq!(list.iter().map(|v| v.is_current).collect::<Vec<_>>(), [false, false, true]);
    assert_eq!(list.iter().map(|v| v.test_f1.unwrap()).collect::<Vec<_>>(), [0.81, 0.82, 0.83]);
    let table = store::render_list(&list);
    assert_eq!(table.lines().count(), 4);
    assert!(table.lines().nth(3).unwrap().starts_with(&format!("*  {v3}")), "{table}");

    assert_eq!(store.rollback().unwrap(), v1);
    assert_eq!(store.current().unwrap().as_deref(), Some(v1.as_str()));
    assert!(error_of(store.rollback()).contains("was the first version promoted"));
    assert_eq!(store.current().unwrap().as_deref(), Some(v1.as_str()), "a refused rollback changes nothing");

    let unknown = error_of(store.promote("v0009-20261124T053512Z"));
    assert!(unknown.contains("no version `v0009-20261124T053512Z`") && unknown.contains(&v2), "{unknown}");
    assert!(error_of(store.get("../models")).contains("is not a version name"));
}

/// A writer killed mid-put leaves a version the index does not list (its objects written, the
/// index not yet), and, in a folder, a temporary file: readers ignore both, and the next put
/// does not reuse the number.
fn interrupted_writers_leave_nothing_readers_see(backend: &Backend) {
    let store = &backend.store;
    let v1 = store.put(&model_file(1, 0.8)).unwrap();
    store.promote(&v1).unwrap();
    let unlisted = "v0003-20261124T053513Z";
    backend.write_raw(&format!("{unlisted}/model.bin"), backend.raw(&format!("{v1}/model.bin")).unwrap());
    backend.write_raw(&format!("{unlisted}/.meta.json.tmp-1-1"), b"{".to_vec());

    let names: Vec<String> = store.list().unwrap().into_iter().map(|v| v.version).collect();
    assert_eq!(names, std::slice::from_ref(&v1));
    assert_eq!(store.current().unwrap(), Some(v1.clone()));
    assert!(error_of(store.get(unlisted)).contains("no version"));
    assert!(error_of(store.promote(unlisted)).contains("no version"));

    let next = store.put(&model_file(2, 0.8)).unwrap();
    assert!(next.starts_with("v0004-"), "{next}");
    assert!(backend.raw(".lock").is_none(), "the lock is released");
}

/// Threads that store and promote at once each get their own version, and the index and
/// history end up whole and consistent.
fn concurrent_writers_do_not_corrupt_the_store(backend: &Backend) {
    let store = &backend.store;
    let files: Vec<ModelFile> = (1..=6).map(|depth| model_file(depth, 0.8)).collect();
    let versions: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .iter()
            .map(|file| {
                let store = store.clone();
                scope.spawn(move || {
                    let version = store.put(file).unwrap();
                    store.promote(&version).unwrap();
                    version
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    let mut listed: Vec<String> = store.list().unwrap().into_iter().map(|v| v.version).collect();
    assert_eq!(listed.len(), 6);
    listed.sort();
    let mut expected = versions.clone();
    expected.sort();
    assert_eq!(listed, expected, "every put is in the index exactly once");
    let history: serde_json::Value = serde_json::from_slice(&backend.raw("history.json").unwrap()).unwrap();
    let promotions = history["promotions"].as_array().unwrap();
    assert_eq!(promotions.len(), 6);
    // Each promotion's `previous` is the one promoted just before it.
    for pair in promotions.windows(2) {
        assert_eq!(pair[1]["previous"], pair[0]["version"]);
    }
    assert_eq!(store.current().unwrap().unwrap(), promotions[5]["version"].as_str().unwrap());
    for version in &versions {
        store.get(version).unwrap();
    }
    assert!(backend.raw(".lock").is_none());
}

/// Two writers, as two processes would be: the second waits for the first, then gives up
/// saying what to do.
fn a_held_lock_makes_another_writer_wait_then_give_up(backend: &Backend) {
    let (first, second) = (&backend.store, backend.store.clone());
    let held = first.lock(Duration::ZERO).unwrap();
    let error = second.lock(Duration::from_millis(600)).err().unwrap().to_string();
    let lock = backend.store.objects().url(&backend.key(".lock"));
    assert!(error.contains("locked by another writer") && error.contains(&format!("delete {lock}")), "{error}");
    drop(held);
    drop(second.lock(Duration::ZERO).unwrap());
    assert!(second.list().unwrap().is_empty());
}

#[test]
fn open_takes_a_folder_and_refuses_unknown_schemes() {
    let dir = tempfile::tempdir().unwrap();
    let store = store::open(dir.path().join("models").to_str().unwrap()).unwrap();
    assert!(store.describe().ends_with("models"));
    assert!(store.list().unwrap().is_empty());
    let error = store::open("gs://bucket/prefix").err().unwrap();
    assert!(error.to_string().contains("not a model store location"), "{error}");
    assert_eq!(netsec::error::exit_code(&error), 2);
}
