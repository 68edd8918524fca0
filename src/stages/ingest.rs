//! Ingest: read the source, write the feature store, split train/test, and report duplicates
//! and how many test rows also occur in train (the leakage a random split causes here).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::Settings;
use crate::artifacts::{InputRecord, Run};
use crate::config::SplitStrategy;
use crate::dataset::Dataset;
use crate::source::{CsvFile, Labels, Loaded, Source};
use crate::split::split;

pub const FEATURE_STORE: &str = "feature_store/data.csv";
pub const TRAIN: &str = "ingest/train.csv";
pub const TEST: &str = "ingest/test.csv";
pub const REPORT: &str = "ingest/report.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestReport {
    pub source: String,
    pub rows: usize,
    pub features: usize,
    /// Columns the source had beyond the schema's; dropped.
    pub extra_columns: Vec<String>,
    pub missing_cells: usize,
    /// Rows that repeat an earlier row exactly (features and label).
    pub duplicate_rows: usize,
    pub distinct_feature_vectors: usize,
    pub strategy: SplitStrategy,
    pub train_rows: usize,
    pub test_rows: usize,
    /// Test rows whose feature vector also occurs in train.
    pub test_rows_in_train: usize,
}

pub struct Ingested {
    pub train: Dataset,
    pub test: Dataset,
    pub report: IngestReport,
}

/// Splits and records a loaded source. The source is read before the run folder exists, so
/// that bad input leaves no run behind.
pub fn run(run: &mut Run, settings: &Settings, source: &dyn Source, loaded: Loaded) -> anyhow::Result<Ingested> {
    let started = std::time::Instant::now();
    if !loaded.extra_columns.is_empty() {
        tracing::warn!(columns = ?loaded.extra_columns, "the source has columns the schema does not; they are dropped");
    }
    let data = loaded.dataset;
    let split_config = &settings.config.split;
    let (groups, distinct) = data.feature_groups();
    let parts = split(split_config.strategy, data.n_rows(), split_config.test_ratio, split_config.seed, &groups);
    let train_groups: HashSet<usize> = parts.train.iter().map(|&i| groups[i]).collect();
    let report = IngestReport {
        source: source.describe(),
        rows: data.n_rows(),
        features: data.n_features(),
        extra_columns: loaded.extra_columns,
        missing_cells: data.missing_per_column().iter().sum(),
        duplicate_rows: data.duplicate_rows(),
        distinct_feature_vectors: distinct,
        strategy: split_config.strategy,
        train_rows: parts.train.len(),
        test_rows: parts.test.len(),
        test_rows_in_train: parts.test.iter().filter(|&&i| train_groups.contains(&groups[i])).count(),
    };
    let (train, test) = (data.select(&parts.train), data.select(&parts.test));
    let report_json = serde_json::to_vec_pretty(&report)?;
    run.write_all(vec![
        (FEATURE_STORE, Box::new(|w| data.write_csv(w))),
        (TRAIN, Box::new(|w| train.write_csv(w))),
        (TEST, Box::new(|w| test.write_csv(w))),
        (REPORT, Box::new(|w| w.write_all(&report_json))),
    ])?;
    run.manifest.input = Some(InputRecord { source: report.source.clone(), sha256: loaded.sha256, rows: report.rows });
    run.finish_stage("ingest", started.elapsed().as_secs_f64())?;
    Ok(Ingested { train, test, report })
}

/// The ingest stage's output, read back from the run folder.
pub fn load(run: &Run, settings: &Settings) -> anyhow::Result<Ingested> {
    run.require_stage("ingest")?;
    let read = |relative: &str| -> anyhow::Result<Dataset> {
        let file = CsvFile { path: run.path(relative) };
        Ok(file.load(&settings.schema, Labels::Required)?.dataset)
    };
    let report = serde_json::from_slice(&std::fs::read(run.path(REPORT))?)?;
    Ok(Ingested { train: read(TRAIN)?, test: read(TEST)?, report })
}
