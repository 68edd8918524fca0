//! `netsec.yaml`: every setting with its default, overridden by `NETSEC_…` environment
//! variables (a `.env` file included), then by command-line flags.
//!
//! An environment variable's name is the setting's path in upper case joined by `_`:
//! `split.test_ratio` is `NETSEC_SPLIT_TEST_RATIO`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_yaml::Value;

use crate::error::InputError;
use crate::stats::drift::{Correction, Method};

/// The prefix of every environment override.
const ENV_PREFIX: &str = "NETSEC";

/// The file read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "netsec.yaml";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// A CSV or ARFF file.
    pub source: String,
    /// Root of the run folders.
    pub artifacts: PathBuf,
    /// A schema file; the embedded `data_schema/schema.yaml` when absent.
    pub schema: Option<PathBuf>,
    pub split: SplitConfig,
    pub transform: TransformConfig,
    pub validation: ValidationConfig,
    pub train: TrainConfig,
    pub mongo: MongoConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SplitConfig {
    /// Share of rows held out for testing.
    pub test_ratio: f64,
    pub seed: u64,
    pub strategy: SplitStrategy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SplitStrategy {
    /// Identical feature vectors all on one side, so test rows are unseen rows.
    Grouped,
    /// scikit-learn's `train_test_split(test_size, random_state=seed)`, row for row.
    Random,
    /// The last rows are the test set (time-ordered data).
    Ordered,
}

impl std::fmt::Display for SplitStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            SplitStrategy::Grouped => "grouped",
            SplitStrategy::Random => "random",
            SplitStrategy::Ordered => "ordered",
        };
        f.write_str(name)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransformConfig {
    /// Neighbours the KNN imputer averages.
    pub imputer_k: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidationConfig {
    /// A column tested by a p-value (chi2, z, ks) drifts when its corrected p-value is below
    /// this; report.yaml's KS verdicts use it too.
    pub drift_p_value: f64,
    /// The split drifts when at least this share of the columns drifts.
    pub drift_share: f64,
    /// Fail the run when the split drifts, instead of warning.
    pub fail_on_drift: bool,
    pub drift: DriftConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriftConfig {
    /// `auto` (as Evidently chooses: see `stats::drift`), or one method for every column.
    pub method: Method,
    /// Across the columns tested by a p-value.
    pub correction: Correction,
    /// A column measured by a distance (jensenshannon, psi, wasserstein) drifts at or above this.
    pub distance_threshold: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            source: "../shared/data/phishing.csv".into(),
            artifacts: PathBuf::from("artifacts"),
            schema: None,
            split: SplitConfig::default(),
            transform: TransformConfig::default(),
            validation: ValidationConfig::default(),
            train: TrainConfig::default(),
            mongo: MongoConfig::default(),
        }
    }
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig { test_ratio: 0.2, seed: 42, strategy: SplitStrategy::Grouped }
    }
}

impl Default for TransformConfig {
    fn default() -> Self {
        TransformConfig { imputer_k: 3 }
    }
}

impl Default for ValidationConfig {
    fn default() -> Self {
        ValidationConfig { drift_p_value: 0.05, drift_share: 0.5, fail_on_drift: false, drift: DriftConfig::default() }
    }
}

impl Default for DriftConfig {
    fn default() -> Self {
        DriftConfig { method: Method::Auto, correction: Correction::BenjaminiHochberg, distance_threshold: 0.1 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Cross-validation folds of the grid search.
    pub folds: usize,
    /// Seed of the models' random draws (bootstrap, feature sampling, subsampling).
    pub seed: u64,
    /// Fail when the chosen model's test F1 is below this.
    pub expected_score: f64,
    /// Warn when train F1 exceeds test F1 by more than this.
    pub overfit_threshold: f64,
    /// Fail instead of warning on overfitting.
    pub fail_on_overfit: bool,
    /// Accept a new model only if its test F1 beats the current model's by more than this.
    pub min_improvement: f64,
    /// The model store: a folder (default `models`).
    pub store: String,
    /// Model family → parameter → values to search (the Python original's grids by default).
    pub models: serde_yaml::Mapping,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            folds: 3,
            seed: 42,
            expected_score: 0.6,
            overfit_threshold: 0.05,
            fail_on_overfit: false,
            min_improvement: 0.0,
            store: "models".into(),
            models: serde_yaml::from_str(DEFAULT_GRIDS).expect("the default grids parse"),
        }
    }
}

/// Where a `mongodb://` source reads and `netsec load-data` writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MongoConfig {
    /// The database (the Python original's `WASNIK`).
    pub database: String,
    /// The collection (the Python original's `NetworkData`).
    pub collection: String,
    /// Documents per cursor batch when reading, and per insert_many when loading.
    pub batch_size: u32,
    /// How long to wait for the server (selection, connection) before giving up.
    pub timeout_seconds: f64,
}

impl Default for MongoConfig {
    fn default() -> Self {
        MongoConfig {
            database: "WASNIK".into(),
            collection: "NetworkData".into(),
            batch_size: 10_000,
            timeout_seconds: 10.0,
        }
    }
}

/// The Python original's grids (its `GridSearchCV` parameters), in its order.
const DEFAULT_GRIDS: &str = "
random_forest: { n_estimators: [8, 16, 32, 128, 256] }
decision_tree: { criterion: [gini, entropy, log_loss] }
gradient_boosting:
  learning_rate: [0.1, 0.01, 0.05, 0.001]
  subsample: [0.6, 0.7, 0.75, 0.85, 0.9]
  n_estimators: [8, 16, 32, 64, 128, 256]
logistic_regression: {}
ada_boost: { learning_rate: [0.1, 0.01, 0.001], n_estimators: [8, 16, 32, 64, 128, 256] }
";

impl Config {
    /// Defaults, then the file (`path`, or `netsec.yaml` if present), then the environment.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        let default_file = Path::new(DEFAULT_CONFIG_FILE);
        let file = path.or_else(|| default_file.is_file().then_some(default_file));
        let config = match file {
            Some(file) => Config::from_file(file)?,
            None => Config::default(),
        };
        let config = config.with_env(|name| std::env::var(name).ok())?;
        config.check()?;
        Ok(config)
    }

    pub fn from_file(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| InputError::in_file(path, format!("cannot read the config: {e}")))?;
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        serde_yaml::from_str(&text).map_err(|e| {
            let line = e.location().map(|l| l.line() as u64);
            let error = InputError::in_file(path, config_problem(&e.to_string()));
            let error = error.hint("see the README's configuration table for every setting");
            match line {
                Some(line) => error.line(line).into(),
                None => error.into(),
            }
        })
    }

    /// Applies `NETSEC_<PATH>` overrides, as looked up by `lookup`.
    pub fn with_env(&self, lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Config> {
        let mut tree = serde_yaml::to_value(self).context("serialising the config")?;
        override_leaves(&mut tree, ENV_PREFIX, &lookup)?;
        Ok(serde_yaml::from_value(tree).map_err(|e| InputError::new(format!("environment override: {e}")))?)
    }

    /// Values that parse but make no sense.
    pub fn check(&self) -> Result<(), InputError> {
        let bad = |setting: &str, why: &str| Err(InputError::new(format!("setting `{setting}`: {why}")));
        if !(self.split.test_ratio > 0.0 && self.split.test_ratio < 1.0) {
            return bad("split.test_ratio", "must be between 0 and 1 (exclusive)");
        }
        if self.transform.imputer_k == 0 {
            return bad("transform.imputer_k", "must be at least 1");
        }
        if !(self.validation.drift_p_value > 0.0 && self.validation.drift_p_value < 1.0) {
            return bad("validation.drift_p_value", "must be between 0 and 1 (exclusive)");
        }
        if !(self.validation.drift_share > 0.0 && self.validation.drift_share <= 1.0) {
            return bad("validation.drift_share", "must be above 0 and at most 1");
        }
        if !(self.validation.drift.distance_threshold > 0.0 && self.validation.drift.distance_threshold.is_finite()) {
            return bad("validation.drift.distance_threshold", "must be a number above 0");
        }
        if self.train.folds < 2 {
            return bad("train.folds", "must be at least 2");
        }
        if self.train.models.is_empty() {
            return bad("train.models", "lists no model family to train");
        }
        if self.mongo.batch_size == 0 {
            return bad("mongo.batch_size", "must be at least 1");
        }
        if !(self.mongo.timeout_seconds > 0.0 && self.mongo.timeout_seconds <= 3600.0) {
            return bad("mongo.timeout_seconds", "must be above 0 and at most 3600");
        }
        Ok(())
    }
}

/// serde_yaml says "unknown field `x`, expected one of …": keep it, it names the key.
fn config_problem(message: &str) -> String {
    message.split(" at line ").next().unwrap_or(message).to_string()
}

fn override_leaves(node: &mut Value, name: &str, lookup: &impl Fn(&str) -> Option<String>) -> Result<(), InputError> {
    // A whole section can be replaced too, e.g. NETSEC_TRAIN_MODELS='{ada_boost: {}}'.
    if let Some(raw) = lookup(name).filter(|_| name != ENV_PREFIX) {
        *node = parse_env(name, raw, node)?;
        return Ok(());
    }
    if let Value::Mapping(map) = node {
        for (key, child) in map.iter_mut() {
            let key = key.as_str().unwrap_or_default().to_ascii_uppercase();
            override_leaves(child, &format!("{name}_{key}"), lookup)?;
        }
    }
    Ok(())
}

/// An environment value for a setting that now holds `current`, of the same type.
fn parse_env(name: &str, raw: String, current: &Value) -> Result<Value, InputError> {
    // Text settings keep the text as written, even when it looks like a number.
    if matches!(current, Value::String(_) | Value::Null) {
        return Ok(Value::String(raw));
    }
    let parsed: Value = serde_yaml::from_str(&raw)
        .map_err(|e| InputError::new(format!("environment variable {name}=`{raw}` does not parse: {e}")))?;
    if std::mem::discriminant(&parsed) == std::mem::discriminant(current) {
        return Ok(parsed);
    }
    let expected = match current {
        Value::Bool(_) => "true or false",
        Value::Number(_) => "a number",
        Value::Sequence(_) => "a list such as [1, 2]",
        _ => "a mapping such as {key: value}",
    };
    Err(InputError::new(format!("environment variable {name}=`{raw}`: expected {expected}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dvc_pipelines_configuration_is_the_defaults_with_its_data_path() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("dvc/netsec.yaml");
        let config = Config::from_file(&path).unwrap();
        assert_eq!(config, Config { source: "data/phishing.csv".into(), ..Config::default() });
    }

    #[test]
    fn a_file_overrides_only_what_it_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("netsec.yaml");
        std::fs::write(&path, "split:\n  test_ratio: 0.3\n").unwrap();
        let config = Config::from_file(&path).unwrap();
        assert_eq!(config.split.test_ratio, 0.3);
        assert_eq!(config.split.seed, 42);
        assert_eq!(config.transform.imputer_k, 3);
    }

    #[test]
    fn an_unknown_key_names_the_key_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("netsec.yaml");
        std::fs::write(&path, "split:\n  test_ration: 0.3\n").unwrap();
        let message = Config::from_file(&path).unwrap_err().to_string();
        assert!(message.contains("test_ration"), "{message}");
        assert!(message.contains("netsec.yaml"), "{message}");
        assert!(message.contains("line 2"), "{message}");
    }

    #[test]
    fn environment_variables_override_by_path() {
        let env = |name: &str| match name {
            "NETSEC_SPLIT_TEST_RATIO" => Some("0.25".to_string()),
            "NETSEC_SPLIT_STRATEGY" => Some("random".to_string()),
            "NETSEC_SOURCE" => Some("2024".to_string()),
            "NETSEC_VALIDATION_FAIL_ON_DRIFT" => Some("true".to_string()),
            "NETSEC_VALIDATION_DRIFT_METHOD" => Some("chi2".to_string()),
            "NETSEC_VALIDATION_DRIFT_CORRECTION" => Some("bonferroni".to_string()),
            "NETSEC_TRAIN_MODELS" => Some("{decision_tree: {criterion: [gini]}}".to_string()),
            _ => None,
        };
        let config = Config::default().with_env(env).unwrap();
        assert_eq!(config.split.test_ratio, 0.25);
        assert_eq!(config.split.strategy, SplitStrategy::Random);
        assert_eq!(config.source, "2024");
        assert!(config.validation.fail_on_drift);
        assert_eq!(
            (config.validation.drift.method, config.validation.drift.correction),
            (Method::Chi2, Correction::Bonferroni)
        );
        assert_eq!(config.train.models.len(), 1);
        let bad = Config::default().with_env(|n| (n == "NETSEC_SPLIT_SEED").then(|| "x".into()));
        let message = bad.unwrap_err().to_string();
        assert!(message.contains("NETSEC_SPLIT_SEED") && message.contains("expected a number"), "{message}");
    }

    #[test]
    fn nonsense_values_are_refused() {
        let mut config = Config::default();
        config.split.test_ratio = 1.5;
        assert!(config.check().unwrap_err().to_string().contains("split.test_ratio"));
        let mut config = Config::default();
        config.validation.drift_share = 0.0;
        assert!(config.check().unwrap_err().to_string().contains("validation.drift_share"));
        let unknown = Config::default().with_env(|n| (n == "NETSEC_VALIDATION_DRIFT_METHOD").then(|| "anova".into()));
        let message = unknown.unwrap_err().to_string();
        assert!(message.contains("jensenshannon"), "the error lists the methods: {message}");
    }
}
