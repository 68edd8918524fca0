//! Validate: schema, missing values, duplicates, train/test leakage, and drift between train
//! and test: per column by the method that fits it (see [`crate::stats::drift`]), p-values
//! corrected across the columns, and a verdict on the split from the share of drifted columns.
//! `report.yaml` keeps the Python original's format: a KS test per column (`scipy.stats.ks_2samp`).
//!
//! Schema errors fail the run. Drift warns, or fails when `validation.fail_on_drift` is set and
//! the split drifts.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::Settings;
use crate::artifacts::Run;
use crate::config::ValidationConfig;
use crate::dataset::{Dataset, RowMap, RowSet};
use crate::error::InputError;
use crate::schema::{Column, Schema};
use crate::stats::drift::{self, Correction, Kind, Method};
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
    /// A tested column drifts when its corrected p-value is below this.
    pub drift_threshold: f64,
    /// A measured column drifts when its distance is at least this.
    pub drift_distance_threshold: f64,
    pub drift_correction: Correction,
    /// The split drifts when the share of drifted columns reaches this.
    pub drift_share: f64,
    pub drifted_share: f64,
    pub dataset_drift: bool,
    pub drift: Vec<ColumnDrift>,
    /// Features with no value on one side (all missing), left out of the drift figures.
    #[serde(default)]
    pub drift_not_compared: Vec<String>,
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
    pub method: Method,
    /// chi2's statistic, z, KS's D, or the distance (null when infinite: a code the
    /// reference never holds).
    #[serde(deserialize_with = "null_as_infinity")]
    pub statistic: f64,
    /// For the tests (chi2, z, ks): the p-value and the one corrected across the columns.
    pub p_value: Option<f64>,
    pub corrected_p_value: Option<f64>,
    /// PSI for code columns, the normed Wasserstein distance for numerical ones.
    pub effect_size: f64,
    pub drift_status: bool,
    /// The original's KS test (report.yaml).
    pub ks: KsSummary,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KsSummary {
    pub statistic: f64,
    pub p_value: f64,
    pub method: String,
}

impl ValidationReport {
    pub fn drifted_columns(&self) -> Vec<&str> {
        self.drift.iter().filter(|d| d.drift_status).map(|d| d.column.as_str()).collect()
    }

    /// One line: how many columns drift, by which rules, and the verdict on the split.
    pub fn drift_summary(&self) -> String {
        let correction = match self.drift_correction {
            Correction::BenjaminiHochberg => "p-values corrected by Benjamini–Hochberg",
            Correction::Bonferroni => "p-values corrected by Bonferroni",
            Correction::None => "p-values uncorrected",
        };
        let verdict = if self.dataset_drift { "the split DRIFTS" } else { "the split does not drift" };
        let mut summary = format!(
            "{} of {} columns drift (p < {}, {correction}; distance ≥ {}): {verdict} (threshold {}% of the columns)",
            self.drifted_columns().len(),
            self.drift.len(),
            self.drift_threshold,
            self.drift_distance_threshold,
            self.drift_share * 100.0
        );
        if !self.drift_not_compared.is_empty() {
            summary += &format!("; not compared (no value on one side): {}", self.drift_not_compared.join(", "));
        }
        summary
    }
}

pub fn run(run: &mut Run, settings: &Settings, train: &Dataset, test: &Dataset) -> anyhow::Result<ValidationReport> {
    let started = std::time::Instant::now();
    let report = validate(&settings.schema, &settings.config.validation, train, test);
    run.write(REPORT_YAML, |w| write_original_yaml(w, &report))?;
    run.write(REPORT_JSON, |w| serde_json::to_writer_pretty(w, &report).map_err(Into::into))?;
    if !report.schema_errors.is_empty() {
        return Err(InputError::new(format!("schema check failed: {}", report.schema_errors.join("; ")))
            .hint("fix the data or data_schema/schema.yaml; the report is in validation/report.json")
            .into());
    }
    if !report.drift_not_compared.is_empty() {
        tracing::warn!(
            "drift not measured for {}: no value on one side of the split (all missing)",
            report.drift_not_compared.join(", ")
        );
    }
    let drifted = report.drifted_columns();
    if !drifted.is_empty() {
        let verdict = if report.dataset_drift { "the split drifts" } else { "the split does not drift" };
        let message = format!(
            "drift between train and test in {} of {} columns ({verdict}: threshold {:.0}%): {}",
            drifted.len(),
            report.drift.len(),
            report.drift_share * 100.0,
            drifted.join(", ")
        );
        if report.dataset_drift && settings.config.validation.fail_on_drift {
            return Err(InputError::new(message).hint("validation.fail_on_drift is set; unset it to only warn").into());
        }
        tracing::warn!("{message}");
    }
    run.finish_stage("validate", started.elapsed().as_secs_f64())?;
    Ok(report)
}

pub fn validate(schema: &Schema, config: &ValidationConfig, train: &Dataset, test: &Dataset) -> ValidationReport {
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
    let (drift, drift_not_compared) = column_drift(schema, config, train, test);
    let drifted = drift.iter().filter(|d| d.drift_status).count();
    let drifted_share = if drift.is_empty() { 0.0 } else { drifted as f64 / drift.len() as f64 };
    ValidationReport {
        schema_errors,
        missing,
        duplicates: Duplicates { train: train.duplicate_rows(), test: test.duplicate_rows() },
        leakage: leakage(train, test),
        drift_threshold: config.drift_p_value,
        drift_distance_threshold: config.drift.distance_threshold,
        drift_correction: config.drift.correction,
        drift_share: config.drift_share,
        drifted_share,
        dataset_drift: drifted > 0 && drifted_share >= config.drift_share,
        drift,
        drift_not_compared,
    }
}

/// Every feature compared by its method, then the p-values corrected together; and the
/// features that could not be compared (no value on one side).
fn column_drift(
    schema: &Schema,
    config: &ValidationConfig,
    train: &Dataset,
    test: &Dataset,
) -> (Vec<ColumnDrift>, Vec<String>) {
    let compared: Vec<Result<ColumnDrift, String>> = (0..train.n_features())
        .into_par_iter()
        .map(|j| {
            let (reference, current) = (train.column_values(j), test.column_values(j));
            let kind = schema.columns.get(j).map_or(Kind::Numerical, kind);
            let Some(outcome) = drift::compare(config.drift.method, kind, &reference, &current) else {
                return Err(train.features[j].clone());
            };
            let ks = ks_2samp(&without_missing(&reference), &without_missing(&current));
            Ok(ColumnDrift {
                column: train.features[j].clone(),
                method: outcome.method,
                statistic: outcome.statistic,
                p_value: outcome.p_value,
                corrected_p_value: None,
                effect_size: outcome.effect_size,
                drift_status: !outcome.method.is_test() && outcome.statistic >= config.drift.distance_threshold,
                ks: KsSummary {
                    statistic: ks.statistic,
                    p_value: ks.p_value,
                    method: match ks.method {
                        KsMethod::Exact => "exact".into(),
                        KsMethod::Asymptotic => "asymptotic".into(),
                    },
                },
            })
        })
        .collect();
    let (mut drift, mut not_compared) = (Vec::new(), Vec::new());
    for column in compared {
        match column {
            Ok(column) => drift.push(column),
            Err(name) => not_compared.push(name),
        }
    }
    let tested: Vec<usize> = (0..drift.len()).filter(|&j| drift[j].p_value.is_some()).collect();
    let raw: Vec<f64> = tested.iter().filter_map(|&j| drift[j].p_value).collect();
    for (&j, corrected) in tested.iter().zip(drift::correct(&raw, config.drift.correction)) {
        let d = &mut drift[j];
        d.corrected_p_value = Some(corrected);
        // Evidently's KS drifts at p <= threshold, its other tests at p < threshold.
        d.drift_status =
            if d.method == Method::Ks { corrected <= config.drift_p_value } else { corrected < config.drift_p_value };
    }
    (drift, not_compared)
}

/// JSON has no infinity (serde_json writes null), so null reads back as one.
fn null_as_infinity<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::INFINITY))
}

/// A column listing at most 10 codes in the schema is categorical. (Evidently looks at the
/// distinct values of the current data instead; up to 5 values both choose the same method.)
fn kind(column: &Column) -> Kind {
    if column.values.len() <= 10 {
        Kind::Categorical
    } else {
        Kind::Numerical
    }
}

fn without_missing(values: &[f64]) -> Vec<f64> {
    values.iter().copied().filter(|v| !v.is_nan()).collect()
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
            !v.is_nan() && !column.holds(f64::from(v))
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
        entry.insert("p_value".into(), d.ks.p_value.into());
        entry.insert("drift_status".into(), (d.ks.p_value < report.drift_threshold).into());
        map.insert(d.column.clone().into(), entry.into());
    }
    serde_yaml::to_writer(out, &map).map_err(std::io::Error::other)
}

/// The drift table for the terminal.
pub fn drift_table(report: &ValidationReport) -> String {
    let width = report.drift.iter().map(|d| d.column.len()).max().unwrap_or(6).max(6);
    let mut out = format!(
        "{:<width$}  {:<13}  {:>10}  {:>10}  {:>10}  {:>8}  drift\n",
        "column", "method", "statistic", "p-value", "corrected", "effect"
    );
    let p = |p: Option<f64>| p.map_or("-".to_string(), |p| format!("{p:.3e}"));
    for d in &report.drift {
        let flag = if d.drift_status { "DRIFT" } else { "-" };
        out += &format!(
            "{:<width$}  {:<13}  {:>10.4}  {:>10}  {:>10}  {:>8.4}  {flag}\n",
            d.column,
            d.method.name(),
            d.statistic,
            p(d.p_value),
            p(d.corrected_p_value),
            d.effect_size
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(schema: &Schema, x: Vec<f32>) -> Dataset {
        let mut data = Dataset::new(schema.feature_names(), schema.target.name.clone());
        data.labels = vec![1; x.len() / 2];
        data.x = x;
        data
    }

    /// A feature with no value on one side is named, left out of the figures, and the
    /// report (with an infinite chi2 statistic) reads back from its JSON.
    #[test]
    fn a_feature_missing_on_one_side_is_named_and_the_report_reads_back() {
        let schema = Schema::two_feature_example();
        let train = side(&schema, [-1.0, 1.0, 1.0, -1.0].repeat(50));
        let test = side(&schema, [0.0, f32::NAN, 1.0, f32::NAN].repeat(20));
        let mut config = ValidationConfig::default();
        config.drift.method = Method::Chi2;
        let report = validate(&schema, &config, &train, &test);
        assert_eq!(report.drift_not_compared, ["b"]);
        assert_eq!(report.drift.len(), 1);
        assert_eq!((report.drift[0].statistic, report.drift[0].p_value), (f64::INFINITY, Some(0.0)));
        assert!(report.dataset_drift && report.drift_summary().contains("not compared (no value on one side): b"));
        let json = serde_json::to_string(&report).unwrap();
        let back: ValidationReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back.drift[0].statistic, f64::INFINITY);
        assert_eq!(back.drift_not_compared, ["b"]);
    }
}
