//! The model file and the local model store: round trips, tampering, version semantics,
//! interrupted writers and concurrent ones.

use std::fs;
use std::path::{Path, PathBuf};

use netsec::learn::{ModelConfig, Samples};
use netsec::model_file::ModelFile;
use netsec::preprocess::Preprocessor;
use netsec::schema::Schema;
use netsec::store::{self, LocalStore, ModelStore};
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

fn store_in(dir: &Path) -> (LocalStore, PathBuf) {
    let root = dir.join("models");
    (LocalStore::open(&root).unwrap(), root)
}

fn error_of<T>(result: anyhow::Result<T>) -> String {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn a_stored_model_comes_back_identical_and_described() {
    let dir = tempfile::tempdir().unwrap();
    let (store, root) = store_in(dir.path());
    let file = model_file(3, 0.91);
    let version = store.put(&file).unwrap();
    assert!(version.starts_with("v0001-"), "{version}");

    let back = store.get(&version).unwrap();
    assert_eq!(back.to_bytes(), file.to_bytes());
    assert_eq!(back.params, serde_json::json!({ "max_depth": 3 }));
    assert_eq!(ModelFile::load(&root.join(&version).join("model.bin")).unwrap().model, file.model);

    let info = store.info(&version).unwrap();
    assert_eq!((info.family.as_str(), info.run_id.as_str(), info.test_f1), ("decision_tree", "run-3", Some(0.91)));
    assert_eq!(info.bytes, file.to_bytes().len() as u64);
    let meta: serde_json::Value =
        serde_json::from_slice(&fs::read(root.join(&version).join("meta.json")).unwrap()).unwrap();
    assert_eq!(
        (&meta["version"], &meta["sha256"], &meta["metrics"]["test"]["f1"]),
        (&version.clone().into(), &info.sha256.clone().into(), &0.91.into())
    );

    let shown = store::render_show(&back, &info);
    assert!(shown.contains(&format!("version      {version}\n")) && shown.contains("test F1      0.9100"), "{shown}");
    let data = generate(&file.schema, SynthOptions { rows: 10, seed: 9, ..SynthOptions::default() });
    assert_eq!(back.predict_dataset(&data).unwrap(), file.predict_dataset(&data).unwrap());
}

/// Flips a byte of, truncates or re-versions a stored model file: each is refused on load with
/// what happened and what to do, and the store refuses to hand it out.
#[test]
fn tampered_model_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (store, root) = store_in(dir.path());
    let original = model_file(3, 0.9).to_bytes();
    let damages: [(&str, Damage, &str); 3] = [
        ("flipped", flip_middle_byte, "the checksum does not match"),
        ("truncated", |b| b[..b.len() - 100].to_vec(), "the file is truncated (100 bytes missing)"),
        ("re-versioned", set_next_format_version, &format!("format version {} is not supported", NEXT_FORMAT)),
    ];
    for (what, damage, expected) in damages {
        let version = store.put(&ModelFile::from_bytes(&original).unwrap()).unwrap();
        let path = root.join(&version).join("model.bin");
        fs::write(&path, damage(&fs::read(&path).unwrap())).unwrap();

        let loaded = ModelFile::load(&path).unwrap_err();
        assert_eq!(netsec::error::exit_code(&loaded), 2, "{what}");
        let message = loaded.to_string();
        assert!(message.starts_with(&path.display().to_string()), "{what}: {message}");
        assert!(message.contains(expected) && message.contains("hint: "), "{what}: {message}");

        let got = error_of(store.get(&version));
        assert!(got.contains("differs from the store's record"), "{what}: {got}");
        assert!(error_of(store.promote(&version)).contains("differs from the store's record"), "{what}");
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
#[test]
fn the_store_refuses_a_valid_file_that_is_not_the_one_it_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (store, root) = store_in(dir.path());
    let first = store.put(&model_file(2, 0.8)).unwrap();
    let second = store.put(&model_file(5, 0.9)).unwrap();
    fs::copy(root.join(&second).join("model.bin"), root.join(&first).join("model.bin")).unwrap();
    let error = error_of(store.get(&first));
    assert!(error.contains("altered or damaged after it was stored") && error.contains("hint: "), "{error}");
    assert!(store.get(&second).is_ok());
}

#[test]
fn put_promote_rollback_and_list() {
    let dir = tempfile::tempdir().unwrap();
    let (store, root) = store_in(dir.path());
    let v1 = store.put(&model_file(1, 0.81)).unwrap();
    let v2 = store.put(&model_file(2, 0.82)).unwrap();
    assert_eq!(store.current().unwrap(), None, "put does not promote");
    assert!(!root.join("current").exists());

    assert_eq!(store.promote(&v1).unwrap(), None);
    assert_eq!(store.current().unwrap().as_deref(), Some(v1.as_str()));
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

/// A writer killed mid-put leaves a temporary folder, or a renamed folder the index does not
/// list: readers ignore both, and the next put neither reuses the number nor keeps the debris.
#[test]
fn interrupted_writers_leave_nothing_readers_see() {
    let dir = tempfile::tempdir().unwrap();
    let (store, root) = store_in(dir.path());
    let v1 = store.put(&model_file(1, 0.8)).unwrap();
    store.promote(&v1).unwrap();
    let half_written = root.join(".tmp-v0002-20261124T053512Z");
    fs::create_dir_all(&half_written).unwrap();
    fs::write(half_written.join("model.bin"), b"NETSEC").unwrap();
    let unlisted = "v0003-20261124T053513Z";
    fs::create_dir_all(root.join(unlisted)).unwrap();
    fs::copy(root.join(&v1).join("model.bin"), root.join(unlisted).join("model.bin")).unwrap();

    let names: Vec<String> = store.list().unwrap().into_iter().map(|v| v.version).collect();
    assert_eq!(names, std::slice::from_ref(&v1));
    assert_eq!(store.current().unwrap(), Some(v1.clone()));
    assert!(error_of(store.get(unlisted)).contains("no version"));
    assert!(error_of(store.promote(unlisted)).contains("no version"));

    let next = store.put(&model_file(2, 0.8)).unwrap();
    assert!(next.starts_with("v0004-"), "{next}");
    assert!(!half_written.exists());
    let leftovers: Vec<_> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Threads that store and promote at once each get their own version, and the index and
/// history end up whole and consistent.
#[test]
fn concurrent_writers_do_not_corrupt_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let (store, root) = store_in(dir.path());
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
    let history: serde_json::Value = serde_json::from_slice(&fs::read(root.join("history.json")).unwrap()).unwrap();
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
    assert!(!root.join(".lock").exists());
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
