//! The run record (`tracking.json`): what a tracking server would hold about a run, kept in
//! the run folder first. One entry for the run (config, the chosen model's metrics, tags) and
//! one per model family (its best grid point, every grid point's CV F1, staged F1 as steps),
//! in the shape MLflow takes them, so that sending a run is replaying its record.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Facts;
use crate::stages::train::FamilyResult;
use crate::train::metrics::Metrics;
use crate::train::search::CandidateScore;

pub const RECORD: &str = "tracking.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub run_id: String,
    pub created_at: String,
    pub source: String,
    /// The stages the run had completed when it was recorded.
    pub stages: Vec<String>,
    pub outcome: Outcome,
    pub run: Entry,
    pub families: Vec<Entry>,
    /// Every grid point with its CV F1 on each fold.
    pub candidates: Vec<CandidateScore>,
    /// Run files a tracking server receives as artifacts (paths inside the run folder).
    pub artifacts: Vec<String>,
}

/// What `netsec runs list` shows of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub best_model: Option<String>,
    pub cv_f1: Option<f64>,
    pub test_f1: Option<f64>,
    pub accepted: Option<bool>,
    /// The store version the run pushed, if any.
    pub version: Option<String>,
}

/// Params, metrics and tags of one tracked run (the pipeline run, or one family in it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub name: String,
    pub params: BTreeMap<String, String>,
    pub metrics: Vec<MetricPoint>,
    pub tags: BTreeMap<String, String>,
}

/// One metric value; `step` orders a series (n_estimators for staged scores, 0 otherwise).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricPoint {
    pub key: String,
    pub value: f64,
    pub step: u64,
}

/// The files a tracking server gets, when the run has them.
const ARTIFACTS: [&str; 7] = [
    crate::stages::train::MODEL,
    crate::stages::transform::PREPROCESSOR,
    crate::stages::validate::REPORT_YAML,
    crate::stages::validate::REPORT_JSON,
    crate::stages::train::REPORT,
    crate::stages::evaluate::DECISION,
    super::REPORT_HTML,
];

impl Record {
    pub fn build(facts: &Facts) -> Record {
        let manifest = facts.manifest;
        let outcome = Outcome {
            best_model: facts.train.map(|t| t.chosen.family.clone()),
            cv_f1: facts.train.map(|t| t.chosen.cv_f1),
            test_f1: facts.train.map(|t| t.chosen.test.f1),
            accepted: facts.decision.map(|d| d.accepted),
            version: facts.push.and_then(|p| p.version.clone()),
        };
        let families = facts.train.map_or_else(Vec::new, |t| {
            t.families.iter().map(|f| family_entry(f, &t.chosen.family, facts.candidates)).collect()
        });
        let mut artifacts: Vec<String> = ARTIFACTS.iter().map(|a| a.to_string()).collect();
        artifacts.retain(|a| a == super::REPORT_HTML || manifest.files.contains_key(a));
        Record {
            run_id: manifest.run_id.clone(),
            created_at: manifest.created_at.clone(),
            source: manifest.config.source.clone(),
            stages: manifest.stages.iter().map(|s| s.name.clone()).collect(),
            run: run_entry(facts, &outcome),
            outcome,
            families,
            candidates: facts.candidates.to_vec(),
            artifacts,
        }
    }
}

fn run_entry(facts: &Facts, outcome: &Outcome) -> Entry {
    let manifest = facts.manifest;
    let mut entry = Entry { name: manifest.run_id.clone(), ..Entry::default() };
    let config = serde_json::to_value(&manifest.config).unwrap_or(Value::Null);
    flatten("", &config, &mut entry.params);
    let tags = &mut entry.tags;
    tags.insert("netsec.run_id".into(), manifest.run_id.clone());
    tags.insert("netsec.git_revision".into(), manifest.git_revision.clone());
    tags.insert("netsec.version".into(), manifest.netsec_version.clone());
    tags.insert("netsec.source".into(), manifest.config.source.clone());
    tags.insert("mlflow.runName".into(), manifest.run_id.clone());
    tags.insert("mlflow.source.git.commit".into(), manifest.git_revision.clone());
    if let Some(input) = &manifest.input {
        tags.insert("netsec.data_sha256".into(), input.sha256.clone());
    }
    if let Some(accepted) = outcome.accepted {
        tags.insert("netsec.decision".into(), if accepted { "accepted" } else { "rejected" }.into());
    }
    if let Some(best) = &outcome.best_model {
        tags.insert("netsec.best_model".into(), best.clone());
    }
    if let Some(version) = &outcome.version {
        tags.insert("netsec.model_version".into(), version.clone());
    }
    let metrics = &mut entry.metrics;
    if let Some(train) = facts.train {
        push(metrics, "cv_f1", train.chosen.cv_f1, 0);
        push_metrics(metrics, "train", &train.chosen.train);
        push_metrics(metrics, "test", &train.chosen.test);
        push(metrics, "overfit_gap", train.overfit_gap, 0);
        push(metrics, "search_seconds", train.search_seconds, 0);
    }
    if let Some(analysis) = &facts.analysis {
        for &(n, f1) in &analysis.staged_test_f1 {
            push(metrics, "staged_test_f1", f1, n as u64);
        }
        for (column, importance) in &analysis.importance {
            push(metrics, &format!("importance/{column}"), *importance, 0);
        }
    }
    if let Some(validation) = facts.validation {
        for d in &validation.drift {
            // The corrected p-value of a test, or the distance: what the column's verdict used.
            let score = d.corrected_p_value.unwrap_or(d.statistic);
            push(metrics, &format!("drift_score/{}", d.column), score, 0);
            push(metrics, &format!("drift_effect_size/{}", d.column), d.effect_size, 0);
        }
        push(metrics, "drifted_columns", validation.drifted_columns().len() as f64, 0);
        push(metrics, "dataset_drift", f64::from(u8::from(validation.dataset_drift)), 0);
    }
    if let Some(decision) = facts.decision {
        push(metrics, "gate_new_f1", decision.new_f1, 0);
        if let Some(current) = decision.current_f1 {
            push(metrics, "gate_current_f1", current, 0);
        }
    }
    for stage in &manifest.stages {
        push(metrics, &format!("stage_seconds/{}", stage.name), stage.seconds, 0);
    }
    entry
}

/// A family's best grid point as params; every grid point's CV F1, and the CV F1 of its best
/// point's series against n_estimators as steps.
fn family_entry(family: &FamilyResult, chosen: &str, candidates: &[CandidateScore]) -> Entry {
    let mut entry = Entry { name: family.family.clone(), ..Entry::default() };
    for (key, value) in &family.params {
        entry.params.insert(key.clone(), text(value));
    }
    entry.tags.insert("mlflow.runName".into(), family.family.clone());
    entry.tags.insert("netsec.family".into(), family.family.clone());
    entry.tags.insert("netsec.chosen".into(), (family.family == chosen).to_string());
    let metrics = &mut entry.metrics;
    push(metrics, "cv_f1", family.cv_f1, 0);
    push_metrics(metrics, "train", &family.train);
    push_metrics(metrics, "test", &family.test);
    let own: Vec<&CandidateScore> = candidates.iter().filter(|c| c.family == family.family).collect();
    for c in &own {
        push(metrics, &format!("cv_f1/{}", point_key(&c.params)), c.cv_f1, 0);
    }
    for (n, f1) in staged(&own, &family.params) {
        push(metrics, "staged_cv_f1", f1, n as u64);
    }
    entry
}

/// The series of candidates that differ from `point` only in n_estimators: (n, CV F1) by n.
pub fn staged(candidates: &[&CandidateScore], point: &Map<String, Value>) -> Vec<(usize, f64)> {
    let without = |params: &Map<String, Value>| {
        let mut p = params.clone();
        p.remove("n_estimators");
        p
    };
    let others = without(point);
    let mut series: Vec<(usize, f64)> = candidates
        .iter()
        .filter(|c| without(&c.params) == others)
        .filter_map(|c| Some((c.params.get("n_estimators")?.as_u64()? as usize, c.cv_f1)))
        .collect();
    series.sort_by_key(|&(n, _)| n);
    series
}

/// A grid point as a metric name: `criterion_gini/n_estimators_8`, without the seed (the same
/// for every point) and with only the characters MLflow allows in names.
pub fn point_key(params: &Map<String, Value>) -> String {
    let parts: Vec<String> =
        params.iter().filter(|(k, _)| *k != "seed").map(|(k, v)| sanitize(&format!("{k}_{}", text(v)))).collect();
    if parts.is_empty() {
        "default".into()
    } else {
        parts.join("/")
    }
}

fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || "_-. ".contains(c) { c } else { '_' }).collect()
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn push(metrics: &mut Vec<MetricPoint>, key: &str, value: f64, step: u64) {
    // MLflow stores no NaN from every backend; an undefined metric (e.g. ROC-AUC of one
    // class) is left out rather than sent as a number it is not.
    if value.is_finite() {
        metrics.push(MetricPoint { key: sanitize_key(key), value, step });
    }
}

fn sanitize_key(key: &str) -> String {
    key.chars().map(|c| if c.is_ascii_alphanumeric() || "_-. /".contains(c) { c } else { '_' }).collect()
}

fn push_metrics(metrics: &mut Vec<MetricPoint>, prefix: &str, m: &Metrics) {
    for (name, value) in [
        ("f1", m.f1),
        ("precision", m.precision),
        ("recall", m.recall),
        ("accuracy", m.accuracy),
        ("roc_auc", m.roc_auc),
        ("log_loss", m.log_loss),
    ] {
        push(metrics, &format!("{prefix}_{name}"), value, 0);
    }
}

/// Nested objects become dotted keys; lists and scalars their JSON text (strings bare).
fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, String>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, v) in map {
                let key = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                flatten(&key, v, out);
            }
        }
        Value::Null => {}
        other => {
            out.insert(sanitize_key(prefix), text(other));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_points_become_valid_metric_names() {
        let params: Map<String, Value> =
            serde_json::from_str(r#"{"criterion": "gini", "max_depth": null, "seed": 42, "learning_rate": 0.1}"#)
                .unwrap();
        assert_eq!(point_key(&params), "criterion_gini/max_depth_null/learning_rate_0.1", "in the grid's order");
        assert_eq!(point_key(&Map::new()), "default");
    }

    #[test]
    fn configs_flatten_to_dotted_keys() {
        let mut out = BTreeMap::new();
        flatten("", &serde_json::json!({"a": {"b": 1, "c": [1, 2]}, "d": "x", "e": null}), &mut out);
        let expected: BTreeMap<String, String> =
            [("a.b", "1"), ("a.c", "[1,2]"), ("d", "x")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(out, expected);
    }
}
