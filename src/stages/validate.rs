//! Validate: schema, missing values, duplicates, train/test leakage, and per-column drift
//! between train and test (two-sample Kolmogorov–Smirnov, as `scipy.stats.ks_2samp`).
//!
//! Schema errors fail the run. Drift warns, or fails when `validation.fail_on_drift` is set.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::Settings;
use crate::artifacts::Run;
use crate::dataset::{Dataset, RowMap, RowSet};
use crate::error::InputError;
use crate::schema::Schema;
use crate::stats::ks::{ks_2samp, KsMethod};

/// The Python original's drift report: `{column: {p_value, drift_status}}`.
pub const REPORT_YAML: &str = "validation/report.yaml";
pub const REPORT_JSON: &str = "validation/report.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ValidationReport {
    pub schema_errors: Vec<String>,
    pub missing: Vec<ColumnMissing>,
    pub duplicates: Duplicates,
    pub leakage: Leakage,
    pub drift_threshold: f64,
    pub drift: Vec<ColumnDrift>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ColumnMissing {
    pub column: String,
    pub train: usize,
    pub test: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Duplicates {
    /// Rows repeating an earlier row of the same side exactly (features and label).
    pub train: usize,
    pub test: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Leakage {
    /// Test rows whose feature vector also occurs in train.
    pub test_rows_in_train: usize,
    pub test_rows: usize,
    /// Feature vectors seen with both labels (in train and test together).
    pub conflicting_feature_vectors: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ColumnDrift {
    pub column: String,
    pub statistic: f64,
    pub p_value: f64,
    pub method: String,
    pub drift_status: bool,
}

impl ValidationReport {
    pub fn drifted_columns(&self) -> Vec<&str> {
        self.drift.iter().filter(|d| d.drift_status).map(|d| d.column.as_str()).collect()
    }
}

pub fn run(run: &mut Run, settings: &Settings, train: &Dataset, test: &Dataset) -> anyhow::Result<ValidationReport> {
    let started = std::time::Instant::now();
    let report = validate(&settings.schema, settings.config.validation.drift_p_value, train, test);
    run.write(REPORT_YAML, |w| write_original_yaml(w, &report))?;
    run.write(REPORT_JSON, |w| serde_json::to_writer_pretty(w, &report).map_err(Into::into))?;
    if !report.schema_errors.is_empty() {
        return Err(InputError::new(format!("schema check failed: {}", report.schema_errors.join("; ")))
            .hint("fix the data or data_schema/schema.yaml; the report is in validation/report.json")
            .into());
    }
    let drifted = report.drifted_columns();
    if !drifted.is_empty() {
        let message = format!("drift between train and test in {} column(s): {}", drifted.len(), drifted.join(", "));
        if settings.config.validation.fail_on_drift {
            return Err(InputError::new(message).hint("validation.fail_on_drift is set; unset it to only warn").into());
        }
        tracing::warn!("{message}");
    }
    run.finish_stage("validate", started.elapsed().as_secs_f64())?;
    Ok(report)
}

pub fn validate(schema: &Schema, threshold: f64, train: &Dataset, test: &Dataset) -> ValidationReport {
    let schema_errors = [("train", train), ("test", test)]
        .into_iter()
        .flat_map(|(side, data)| schema_problems(schema, data).into_iter().map(move |p| format!("{side}: {p}")))
        .collect();
    let (train_missing, test_missing) = (train.missing_per_column(), test.missing_per_column());
    let missing = train
        .features
        .iter()
        .enumerate()
        .map(|(j, column)| ColumnMissing { column: column.clone(), train: train_missing[j], test: test_missing[j] })
        .collect();
    let drift = (0..train.n_features())
        .into_par_iter()
        .map(|j| {
            let result = ks_2samp(&train.column_values(j), &test.column_values(j));
            ColumnDrift {
                column: train.features[j].clone(),
                statistic: result.statistic,
                p_value: result.p_value,
                method: match result.method {
                    KsMethod::Exact => "exact".into(),
                    KsMethod::Asymptotic => "asymptotic".into(),
                },
                drift_status: result.p_value < threshold,
            }
        })
        .collect();
    ValidationReport {
        schema_errors,
        missing,
        duplicates: Duplicates { train: train.duplicate_rows(), test: test.duplicate_rows() },
        leakage: leakage(train, test),
        drift_threshold: threshold,
        drift,
    }
}

/// Column names and order, and every value against the codes the schema allows.
fn schema_problems(schema: &Schema, data: &Dataset) -> Vec<String> {
    if data.features != schema.feature_names() {
        return vec![format!(
            "columns are [{}], the schema's are [{}]",
            data.features.join(", "),
            schema.feature_names().join(", ")
        )];
    }
    let mut problems = Vec::new();
    for (j, column) in schema.columns.iter().enumerate() {
        let bad = data.x.chunks_exact(data.n_features()).position(|row| {
            let v = row[j];
            !v.is_nan() && (v.fract() != 0.0 || !column.values.contains(&(v as i64)))
        });
        if let Some(i) = bad {
            problems.push(format!(
                "column `{}`, row {}: {} is not an allowed value",
                column.name,
                i + 1,
                data.row(i)[j]
            ));
        }
    }
    if let Some(i) = data.labels.iter().position(|l| schema.encode_label(*l).is_none()) {
        problems.push(format!("target `{}`, row {}: {} is not a class", schema.target.name, i + 1, data.labels[i]));
    }
    problems
}

fn leakage(train: &Dataset, test: &Dataset) -> Leakage {
    let (train_keys, test_keys) = (train.row_keys(false), test.row_keys(false));
    let in_train: RowSet = train_keys.iter().copied().collect();
    let mut first_label = RowMap::default();
    let mut conflicting = RowSet::default();
    let labelled = train_keys.iter().zip(&train.labels).chain(test_keys.iter().zip(&test.labels));
    for (key, label) in labelled {
        if first_label.entry(*key).or_insert(*label) != label {
            conflicting.insert(*key);
        }
    }
    Leakage {
        test_rows_in_train: test_keys.iter().filter(|key| in_train.contains(key)).count(),
        test_rows: test.n_rows(),
        conflicting_feature_vectors: conflicting.len(),
    }
}

/// `{column: {p_value, drift_status}}` in column order, as the Python original wrote it.
fn write_original_yaml(out: &mut dyn std::io::Write, report: &ValidationReport) -> std::io::Result<()> {
    let mut map = serde_yaml::Mapping::new();
    for d in &report.drift {
        let mut entry = serde_yaml::Mapping::new();
        entry.insert("p_value".into(), d.p_value.into());
        entry.insert("drift_status".into(), d.drift_status.into());
        map.insert(d.column.clone().into(), entry.into());
    }
    serde_yaml::to_writer(out, &map).map_err(std::io::Error::other)
}

/// The drift table for the terminal.
pub fn drift_table(report: &ValidationReport) -> String {
    let width = report.drift.iter().map(|d| d.column.len()).max().unwrap_or(6).max(6);
    let mut out = format!("{:<width$}  {:>9}  {:>10}  {:<10}  drift\n", "column", "KS stat", "p-value", "method");
    for d in &report.drift {
        let flag = if d.drift_status { "DRIFT" } else { "-" };
        out += &format!("{:<width$}  {:>9.4}  {:>10.3e}  {:<10}  {flag}\n", d.column, d.statistic, d.p_value, d.method);
    }
    out
}
