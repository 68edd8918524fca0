//! Validation's drift report against Evidently (pinned in the harness's Python environment)
//! on the same train and test frames: per column the same method, the same statistic (its
//! p-value or distance) within 1e-6, the same verdict, and the same verdict on the dataset.
//! Evidently corrects nothing for testing many columns, so these runs set
//! `validation.drift.correction: none`; the correction is checked against scipy in
//! `tests/drift_oracle.rs`.

mod common;

use common::samples::phishing_columns;
use netsec::config::ValidationConfig;
use netsec::dataset::Dataset;
use netsec::schema::Schema;
use netsec::stages::validate::{validate, ValidationReport};
use netsec::stats::drift::Correction;
use serde_json::{json, Value};

const EVIDENTLY_SCRIPT: &str = r#"
import json, sys, warnings
warnings.filterwarnings("ignore")
import pandas as pd
from evidently import Report, Dataset, DataDefinition
from evidently.presets import DataDriftPreset

case = json.load(sys.stdin)
ref, cur = pd.DataFrame(case["train"]), pd.DataFrame(case["test"])
definition = DataDefinition(categorical_columns=list(ref.columns))
snapshot = Report([DataDriftPreset(drift_share=case["drift_share"])], include_tests=True).run(
    Dataset.from_pandas(cur, data_definition=definition), Dataset.from_pandas(ref, data_definition=definition))
result = snapshot.dict()
columns, dataset = {}, {}
for metric in result["metrics"]:
    if metric["metric_name"].startswith("ValueDrift("):
        config = metric["config"]
        columns[config["column"]] = {"method": config["method"], "score": float(metric["value"])}
    elif metric["metric_name"].startswith("DriftedColumnsCount("):
        dataset = {"count": int(metric["value"]["count"]), "share": float(metric["value"]["share"])}
for test in result["tests"]:
    column = test["metric_config"]["params"].get("column")
    if test["name"].startswith("Value Drift for column") and column in columns:
        columns[column]["drifted"] = test["status"] == "FAIL"
print(json.dumps({"columns": columns, "dataset": dataset}))
"#;

/// Evidently's display names of the methods netsec names `chi2`, `z`, `jensenshannon`.
fn evidently_name(method: &str) -> &'static str {
    match method {
        "chi2" => "chi-square p_value",
        "z" => "Z-test p_value",
        "jensenshannon" => "Jensen-Shannon distance",
        "ks" => "K-S p_value",
        "wasserstein" => "Wasserstein distance (normed)",
        other => panic!("no default method {other}"),
    }
}

/// Train and test datasets of the embedded schema from per-column values.
fn datasets(columns: &[(String, Vec<f64>, Vec<f64>)]) -> (Dataset, Dataset) {
    let schema = Schema::embedded();
    let side = |values: Vec<&Vec<f64>>| {
        let mut data = Dataset::new(schema.feature_names(), schema.target.name.clone());
        let rows = values[0].len();
        data.x = (0..rows).flat_map(|i| values.iter().map(move |column| column[i] as f32)).collect();
        data.labels = vec![1; rows];
        data
    };
    (side(columns.iter().map(|c| &c.1).collect()), side(columns.iter().map(|c| &c.2).collect()))
}

fn frame(columns: &[(String, Vec<f64>, Vec<f64>)], train: bool) -> Value {
    let pairs = columns.iter().map(|(name, a, b)| (name.clone(), json!(if train { a } else { b })));
    Value::Object(pairs.collect())
}

fn compare(name: &str, columns: &[(String, Vec<f64>, Vec<f64>)]) -> ValidationReport {
    let mut config = ValidationConfig::default();
    config.drift.correction = Correction::None;
    let (train, test) = datasets(columns);
    let ours = validate(&Schema::embedded(), &config, &train, &test);
    let input =
        json!({"train": frame(columns, true), "test": frame(columns, false), "drift_share": config.drift_share});
    let theirs: Value = serde_json::from_str(&common::run_python(EVIDENTLY_SCRIPT, &input.to_string())).unwrap();
    let mut failures = Vec::new();
    for d in &ours.drift {
        let expected = &theirs["columns"][&d.column];
        let score = d.p_value.unwrap_or(d.statistic);
        let their_score = expected["score"].as_f64().unwrap();
        let same = expected["method"] == evidently_name(d.method.name())
            && (score - their_score).abs() <= 1e-6
            && expected["drifted"] == d.drift_status;
        if !same {
            failures.push(format!(
                "{}: netsec {} {score} {}, Evidently {expected}",
                d.column,
                d.method.name(),
                d.drift_status
            ));
        }
    }
    assert!(failures.is_empty(), "{name}: {} columns differ:\n{}", failures.len(), failures.join("\n"));
    let share = theirs["dataset"]["share"].as_f64().unwrap();
    assert!((ours.drifted_share - share).abs() < 1e-12, "{name}: share {} vs {share}", ours.drifted_share);
    assert_eq!(ours.dataset_drift, share >= config.drift_share, "{name}: the dataset verdict");
    ours
}

/// The shared data (8,844 / 2,211 rows): Jensen–Shannon everywhere, no drift.
#[test]
fn the_shared_data_split_agrees_with_evidently() {
    let report = compare("shared data", &phishing_columns());
    assert!(!report.dataset_drift);
}

/// Small samples (Z-test for two codes, chi-squared for three), two columns in three shifted:
/// 40% of their test cells take the column's rarest code.
#[test]
fn small_drifted_samples_agree_with_evidently() {
    let columns: Vec<(String, Vec<f64>, Vec<f64>)> = phishing_columns()
        .into_iter()
        .enumerate()
        .map(|(j, (name, train, test))| {
            let mut test = test[..300].to_vec();
            if j % 3 != 0 {
                let count = |code: f64| train.iter().filter(|&&v| v == code).count();
                let rarest = [-1.0, 0.0, 1.0].into_iter().filter(|&c| count(c) > 0).min_by_key(|&c| count(c)).unwrap();
                test[..120].fill(rarest);
            }
            (name, train[..800].to_vec(), test)
        })
        .collect();
    let report = compare("small samples", &columns);
    let methods: Vec<&str> = report.drift.iter().map(|d| d.method.name()).collect();
    assert!(methods.contains(&"z") && methods.contains(&"chi2"), "{methods:?}");
    assert!(report.dataset_drift, "two columns in three shifted: {}", report.drift_summary());
}
