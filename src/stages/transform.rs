//! Transform: fit the KNN imputer (k from the config) on train, apply it to train and test,
//! encode the target (-1 → 0), and save the matrices (`.npy`, features then target, as the
//! Python original's `np.c_[X, y]`) and the fitted preprocessor.

use serde::{Deserialize, Serialize};

use super::Settings;
use crate::artifacts::Run;
use crate::dataset::Dataset;
use crate::npy;
use crate::preprocess::Preprocessor;

pub const TRAIN: &str = "transform/train.npy";
pub const TEST: &str = "transform/test.npy";
pub const PREPROCESSOR: &str = "transform/preprocessor.bin";
pub const REPORT: &str = "transform/report.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TransformReport {
    pub imputer_k: usize,
    pub imputed_train_cells: usize,
    pub imputed_test_cells: usize,
}

/// The model's inputs: imputed feature matrices (row-major) and encoded labels.
pub struct Transformed {
    pub n_features: usize,
    pub train_x: Vec<f32>,
    pub train_y: Vec<u8>,
    pub test_x: Vec<f32>,
    pub test_y: Vec<u8>,
    pub preprocessor: Preprocessor,
    pub report: TransformReport,
}

pub fn run(run: &mut Run, settings: &Settings, train: &Dataset, test: &Dataset) -> anyhow::Result<Transformed> {
    let started = std::time::Instant::now();
    let k = settings.config.transform.imputer_k;
    let preprocessor = Preprocessor::fit(&settings.schema, train, k)?;
    let transformed = Transformed {
        n_features: train.n_features(),
        train_x: preprocessor.transform(train)?,
        train_y: preprocessor.encode_labels(&train.labels),
        test_x: preprocessor.transform(test)?,
        test_y: preprocessor.encode_labels(&test.labels),
        report: TransformReport {
            imputer_k: k,
            imputed_train_cells: train.missing_per_column().iter().sum(),
            imputed_test_cells: test.missing_per_column().iter().sum(),
        },
        preprocessor,
    };
    let t = &transformed;
    let report_json = serde_json::to_vec_pretty(&t.report)?;
    run.write_all(vec![
        (TRAIN, Box::new(|w| write_matrix(w, t.n_features, &t.train_x, &t.train_y))),
        (TEST, Box::new(|w| write_matrix(w, t.n_features, &t.test_x, &t.test_y))),
        (PREPROCESSOR, Box::new(|w| w.write_all(&t.preprocessor.to_bytes()))),
        (REPORT, Box::new(|w| w.write_all(&report_json))),
    ])?;
    run.finish_stage("transform", started.elapsed().as_secs_f64())?;
    Ok(transformed)
}

/// Features then the encoded target, one row per sample.
fn write_matrix(out: &mut dyn std::io::Write, n_features: usize, x: &[f32], y: &[u8]) -> std::io::Result<()> {
    let rows = x.chunks_exact(n_features).zip(y);
    npy::write_f32_rows(out, y.len(), n_features + 1, rows, |(row, &label), bytes| {
        row.iter().chain([&f32::from(label)]).for_each(|v| bytes.extend_from_slice(&v.to_le_bytes()))
    })
}

/// The transform stage's output, read back from the run folder.
pub fn load(run: &Run) -> anyhow::Result<Transformed> {
    run.require_stage("transform")?;
    let (train_x, train_y, n_features) = read_matrix(&run.path(TRAIN))?;
    let (test_x, test_y, _) = read_matrix(&run.path(TEST))?;
    Ok(Transformed {
        n_features,
        train_x,
        train_y,
        test_x,
        test_y,
        preprocessor: Preprocessor::load(&run.path(PREPROCESSOR))?,
        report: serde_json::from_slice(&std::fs::read(run.path(REPORT))?)?,
    })
}

/// Splits a matrix written by `write_matrix` back into features and labels.
fn read_matrix(path: &std::path::Path) -> anyhow::Result<(Vec<f32>, Vec<u8>, usize)> {
    let bytes = std::fs::read(path)?;
    let (rows, cols, values) = npy::read_f32(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    anyhow::ensure!(cols >= 2, "{}: no feature columns", path.display());
    let mut x = Vec::with_capacity(rows * (cols - 1));
    let mut y = Vec::with_capacity(rows);
    for row in values.chunks_exact(cols) {
        x.extend_from_slice(&row[..cols - 1]);
        y.push(row[cols - 1] as u8);
    }
    Ok((x, y, cols - 1))
}
