//! The ONNX export against ONNX Runtime (pinned in the harness's Python environment): for every
//! model family, on the whole shared data set and on rows with missing cells, the exported
//! graph gives netsec's labels and its probabilities within 1e-5; `onnx.checker` (full check,
//! with shape inference) accepts every graph. And `netsec models export` on a store.

mod common;
mod serve_common;

use std::path::Path;

use common::SplitMix;
use netsec::dataset::Dataset;
use netsec::model_file::ModelFile;
use serve_common::{fitted_model, phishing, promote};

/// Checks the model and scores `input` (raw little-endian f32, [N, F]) with ONNX Runtime;
/// writes the labels (int64) and probabilities (float32) beside it.
const SCORE_WITH_ONNXRUNTIME: &str = r#"
import json, sys
import numpy as np, onnx, onnxruntime as ort
job = json.load(sys.stdin)
model = onnx.load(job["model"])
onnx.checker.check_model(model, full_check=True)
options = ort.SessionOptions()
options.intra_op_num_threads = 2
session = ort.InferenceSession(job["model"], options, providers=["CPUExecutionProvider"])
rows = np.fromfile(job["input"], dtype="<f4").reshape(-1, job["n_features"])
label, probabilities = session.run(["label", "probabilities"], {"input": rows})
assert label.dtype == np.int64 and probabilities.dtype == np.float32, (label.dtype, probabilities.dtype)
assert probabilities.shape == (rows.shape[0], 2), probabilities.shape
label.astype("<i8").tofile(job["input"] + ".label")
probabilities.astype("<f4").tofile(job["input"] + ".probabilities")
print(json.dumps({"inputs": [i.name for i in session.get_inputs()], "producer": model.producer_name,
                  "metadata": {p.key: p.value for p in model.metadata_props}}))
"#;

/// ONNX Runtime's labels and probabilities of `rows`, and what the script reported.
fn onnxruntime(
    dir: &Path,
    model: &Path,
    rows: &[f32],
    n_features: usize,
) -> (Vec<i64>, Vec<[f32; 2]>, serde_json::Value) {
    let input = dir.join("rows.f32");
    std::fs::write(&input, rows.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
    let job = serde_json::json!({ "model": model, "input": input, "n_features": n_features });
    let report = common::run_python(SCORE_WITH_ONNXRUNTIME, &job.to_string());
    let labels = std::fs::read(input.with_extension("f32.label")).unwrap();
    let labels = labels.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect();
    let probabilities = std::fs::read(input.with_extension("f32.probabilities")).unwrap();
    let probabilities = probabilities
        .chunks_exact(8)
        .map(|b| [f32::from_le_bytes(b[..4].try_into().unwrap()), f32::from_le_bytes(b[4..].try_into().unwrap())])
        .collect();
    (labels, probabilities, serde_json::from_str(&report).unwrap())
}

/// The shared data with a cell blanked in about one row in twenty, so that the fitted imputer
/// has columns with different donor lists.
fn fit_rows_with_gaps() -> Dataset {
    let mut data = phishing().clone();
    let n_features = data.n_features();
    let mut rng = SplitMix(7);
    for row in data.x.chunks_exact_mut(n_features) {
        if rng.uniform() < 0.05 {
            row[(rng.next_u64() % n_features as u64) as usize] = f32::NAN;
        }
    }
    data
}

/// Receivers: every row of the shared data as it is, then 400 of its rows with 1 to 30 cells
/// blanked (the last ones entirely).
fn receivers() -> Dataset {
    let data = phishing();
    let n_features = data.n_features();
    let mut out = data.clone();
    let mut rng = SplitMix(11);
    for i in 0..400 {
        let source = (rng.next_u64() % data.n_rows() as u64) as usize;
        let mut row = data.x[source * n_features..(source + 1) * n_features].to_vec();
        let blanks = if i >= 390 { n_features } else { 1 + i % n_features };
        for _ in 0..blanks {
            row[(rng.next_u64() % n_features as u64) as usize] = f32::NAN;
        }
        if blanks == n_features {
            row.fill(f32::NAN);
        }
        out.x.extend_from_slice(&row);
        out.labels.push(data.labels[source]);
    }
    out
}

fn assert_onnx_matches(model: &ModelFile, receivers: &Dataset) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.onnx");
    std::fs::write(&path, netsec::onnx::export(model).unwrap()).unwrap();
    let expected = model.predict_dataset(receivers).unwrap();
    let (labels, probabilities, report) = onnxruntime(dir.path(), &path, &receivers.x, receivers.n_features());
    assert_eq!(report["inputs"], serde_json::json!(["input"]));
    assert_eq!(report["metadata"]["netsec.family"], model.family.as_str());
    assert_eq!(report["metadata"]["netsec.run_id"], model.run_id.as_str());
    let classes = &model.preprocessor.classes;
    let mut worst = 0.0f64;
    for (i, ((label, p_positive), (onnx_label, onnx_p))) in
        expected.iter().zip(labels.iter().zip(&probabilities)).enumerate()
    {
        assert_eq!(
            label, onnx_label,
            "{}: row {i}: label (netsec's P = {p_positive}, ONNX's {onnx_p:?})",
            model.family
        );
        let gap = (p_positive - f64::from(onnx_p[1])).abs().max((1.0 - p_positive - f64::from(onnx_p[0])).abs());
        worst = worst.max(gap);
        assert!(gap <= 1e-5, "{}: row {i}: netsec's P({}) = {p_positive}, ONNX's {onnx_p:?}", model.family, classes[1]);
    }
    eprintln!("{}: {} rows, largest probability gap {worst:.2e}", model.family, expected.len());
}

#[test]
fn every_family_scores_as_netsec_in_onnxruntime() {
    let fit = fit_rows_with_gaps();
    let receivers = receivers();
    for config in [
        serde_json::json!({ "decision_tree": {} }),
        serde_json::json!({ "random_forest": { "n_estimators": 40 } }),
        serde_json::json!({ "gradient_boosting": { "n_estimators": 60 } }),
        serde_json::json!({ "ada_boost": { "n_estimators": 50 } }),
        serde_json::json!({ "logistic_regression": {} }),
    ] {
        assert_onnx_matches(&fitted_model(config, &fit), &receivers);
    }
}

#[test]
fn an_imputer_fitted_without_gaps_imputes_as_netsec() {
    // Every column shares one donor list (the whole fit data): the graph's shared selection.
    assert_onnx_matches(
        &fitted_model(serde_json::json!({ "random_forest": { "n_estimators": 20 } }), phishing()),
        &receivers(),
    );
}

/// `netsec models export` as a user runs it: `netsec models export --output FILE` on a store.
fn export(dir: &Path, args: &[&str]) -> std::process::Output {
    let mut command = common::netsec_command(dir, &["--store", "models", "models", "export"]);
    command.args(args).output().unwrap()
}

#[test]
fn models_export_writes_the_stored_onnx_or_says_why_it_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let store = netsec::store::folder_store(&dir.path().join("models")).unwrap();
    let model = serve_common::tree_model(4);
    let version = promote(&store, &model);

    // The current version by default, the stored export byte for byte.
    let out = export(dir.path(), &["--output", "exported/current.onnx"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let written = std::fs::read(dir.path().join("exported/current.onnx")).unwrap();
    assert_eq!(written, store.get_onnx(&version).unwrap().unwrap());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("wrote {version} as ONNX")));

    // A version stored before exports existed (no `onnx` in the index) is converted on the fly.
    let index_path = dir.path().join("models/index.json");
    let mut index: serde_json::Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    index["versions"][0].as_object_mut().unwrap().remove("onnx");
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::remove_file(dir.path().join(format!("models/{version}/model.onnx"))).unwrap();
    let out = export(dir.path(), &[&version, "--format", "onnx", "-o", "old.onnx"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(dir.path().join("old.onnx")).unwrap(), written);

    // An unknown version, and a model whose imputer the export cannot write: exit 2, the
    // reason and what to do, and no file.
    let out = export(dir.path(), &["v0042-20260101T000000Z", "-o", "missing.onnx"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("v0042-20260101T000000Z") && stderr.contains(&version), "{stderr}");
    let mut wide = model.clone();
    wide.preprocessor = netsec::preprocess::Preprocessor::fit(&wide.schema, phishing(), 5).unwrap();
    let unexportable = store.put(&wide).unwrap();
    assert!(store.info(&unexportable).unwrap().onnx.is_none());
    let out = export(dir.path(), &[&unexportable, "-o", "wide.onnx"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("k = 5") && stderr.contains("transform.imputer_k"), "{stderr}");
    assert!(!dir.path().join("missing.onnx").exists() && !dir.path().join("wide.onnx").exists());
}
