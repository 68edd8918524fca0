//! Experiment tracking. After the stages, the pipeline hands the tracker what they produced;
//! it writes the run record (`tracking.json`) and the report (`report.html`) into the run
//! folder, and, when `MLFLOW_TRACKING_URI` names a server, sends the run there. The stages
//! know nothing of it. A server that fails never fails the run: the record stays local and
//! `netsec runs sync RUN` sends it later.

pub mod mlflow;
pub mod mlflow_model;
pub mod record;
pub mod report;
pub mod runs;
pub mod svg;

use crate::artifacts::{Manifest, Run};
use crate::learn::{Classifier, Model};
use crate::stages::evaluate::Decision;
use crate::stages::ingest::IngestReport;
use crate::stages::push::PushResult;
use crate::stages::train::TrainReport;
use crate::stages::validate::ValidationReport;
use crate::train::importance::permutation_importance;
use crate::train::metrics;
use crate::train::search::CandidateScore;
pub use record::{Record, RECORD};

pub const REPORT_HTML: &str = "report.html";

/// What the stages of a run produced, as far as it got.
pub struct Facts<'a> {
    pub manifest: &'a Manifest,
    pub ingest: Option<&'a IngestReport>,
    pub validation: Option<&'a ValidationReport>,
    pub train: Option<&'a TrainReport>,
    pub candidates: &'a [CandidateScore],
    pub decision: Option<&'a Decision>,
    pub push: Option<&'a PushResult>,
    /// The label values of class 0 and class 1 (the schema's target values).
    pub classes: [String; 2],
    pub analysis: Option<Analysis>,
}

/// What the tracker measures of the chosen model on the test rows, beyond the train report.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    /// ROC curve points (false positive rate, true positive rate).
    pub roc: Vec<(f64, f64)>,
    /// Test F1 after the first n estimators, at the grid's sizes (ensembles only).
    pub staged_test_f1: Vec<(usize, f64)>,
    /// Permutation importance (mean test F1 drop) per feature, in column order.
    pub importance: Vec<(String, f64)>,
}

/// The chosen model's test rows, already transformed.
pub struct TestRows<'a> {
    pub x: &'a [f32],
    pub y: &'a [u8],
    pub n_features: usize,
    pub feature_names: &'a [String],
}

impl Analysis {
    pub fn compute(
        model: &Model,
        train: &TrainReport,
        candidates: &[CandidateScore],
        test: &TestRows,
        seed: u64,
    ) -> Self {
        let proba = model.predict_proba(test.x);
        let roc = metrics::roc_curve(test.y, &proba).into_iter().map(|(fpr, tpr, _)| (fpr, tpr)).collect();
        let own: Vec<&CandidateScore> = candidates.iter().filter(|c| c.family == train.chosen.family).collect();
        let sizes: Vec<usize> = record::staged(&own, &train.chosen.params).into_iter().map(|(n, _)| n).collect();
        let staged_test_f1 = match model.staged_predict_proba(test.x, &sizes) {
            Some(staged) if sizes.len() > 1 => sizes
                .iter()
                .zip(staged)
                .map(|(&n, p)| (n, metrics::f1(test.y, &p.iter().map(|&p| u8::from(p > 0.5)).collect::<Vec<_>>())))
                .collect(),
            _ => Vec::new(),
        };
        let (x, y) = sample(test, IMPORTANCE_ROWS);
        let drops = permutation_importance(model, &x, &y, test.n_features, seed);
        let importance = test.feature_names.iter().cloned().zip(drops).collect();
        Analysis { roc, staged_test_f1, importance }
    }
}

/// Test rows the permutation importance uses at most: enough for a stable ranking, few
/// enough that recording stays a small part of a run.
pub const IMPORTANCE_ROWS: usize = 1000;

/// At most `n` rows, evenly spaced (every row when there are fewer).
fn sample(test: &TestRows, n: usize) -> (Vec<f32>, Vec<u8>) {
    let rows = test.y.len();
    let picked: Vec<usize> = if rows <= n { (0..rows).collect() } else { (0..n).map(|i| i * rows / n).collect() };
    let x = picked.iter().flat_map(|&i| &test.x[i * test.n_features..(i + 1) * test.n_features]).copied().collect();
    (x, picked.iter().map(|&i| test.y[i]).collect())
}

/// Writes `tracking.json` and `report.html` into the run (and records them in the manifest).
pub fn record(run: &mut Run, facts: &Facts) -> anyhow::Result<Record> {
    let record = Record::build(facts);
    let html = report::render(facts);
    let json = serde_json::to_vec_pretty(&record)?;
    run.write_all(vec![
        (RECORD, Box::new(|w| w.write_all(&json))),
        (REPORT_HTML, Box::new(|w| w.write_all(html.as_bytes()))),
    ])?;
    run.save_manifest()?;
    Ok(record)
}

/// The record of a run folder, read back.
pub fn load(run: &Run) -> anyhow::Result<Record> {
    let path = run.path(RECORD);
    let bytes = std::fs::read(&path).map_err(|_| {
        crate::error::InputError::in_file(&path, "this run has no tracking record").hint(
            "runs record themselves when a command finishes; rerun a stage on it (e.g. `netsec evaluate --run ID`)",
        )
    })?;
    Ok(serde_json::from_slice(&bytes)?)
}
