//! `netsec::train` against scikit-learn 1.9.1 (the oracle): the metrics, `roc_curve`,
//! `StratifiedKFold` and `StratifiedGroupKFold(shuffle=False)`. Every test sends all its cases
//! to one Python process (JSON on stdin, JSON on stdout).

mod common;

use common::SplitMix;

use std::collections::HashMap;

use netsec::train::folds::{self, FoldError};
use netsec::train::metrics::{self, Metrics};
use serde_json::{json, Value};

/// Floats must agree within this relative difference (NaN matches NaN).
const REL_TOL: f64 = 1e-12;

/// The oracles write floats as `repr` strings: JSON has no NaN or infinity, and serde_json
/// (without its `float_roundtrip` feature) may read a number one ulp off, while Rust's
/// `str::parse` is exact.
const FLOAT_HELPER: &str = r#"
import json, sys, warnings
import numpy as np
warnings.simplefilter("ignore")  # zero divisions and one-class AUCs are cases under test

def f(x):
    return repr(float(x))
"#;

const METRICS_ORACLE: &str = r#"
from sklearn.metrics import (accuracy_score, confusion_matrix, f1_score, log_loss,
                             precision_score, recall_score, roc_auc_score, roc_curve)
out = []
for case in json.load(sys.stdin):
    y, pred = np.array(case["y"]), np.array(case["pred"])
    p = np.array(case["proba"], dtype=np.float64)
    fpr, tpr, thresholds = roc_curve(y, p)
    out.append({
        "f1": f(f1_score(y, pred)),
        "precision": f(precision_score(y, pred)),
        "recall": f(recall_score(y, pred)),
        "accuracy": f(accuracy_score(y, pred)),
        "roc_auc": f(roc_auc_score(y, p)),
        "log_loss": f(log_loss(y, p, labels=[0, 1])),
        "confusion": confusion_matrix(y, pred, labels=[0, 1]).tolist(),
        "roc": [[f(a), f(b), f(c)] for a, b, c in zip(fpr, tpr, thresholds)],
    })
json.dump(out, sys.stdout)
"#;

/// The test fold of every row, or `null` when scikit-learn raises `ValueError`.
const FOLDS_ORACLE: &str = r#"
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
out = []
for case in json.load(sys.stdin):
    y, k = np.array(case["y"], dtype=np.int64), case["k"]
    groups = None if case["groups"] is None else np.array(case["groups"], dtype=np.int64)
    try:
        splitter = StratifiedKFold(n_splits=k) if groups is None else StratifiedGroupKFold(n_splits=k)
        folds = np.full(len(y), -1)
        for i, (_, test) in enumerate(splitter.split(np.zeros((len(y), 1)), y, groups)):
            folds[test] = i
        out.append(folds.tolist())
    except ValueError:
        out.append(None)
json.dump(out, sys.stdout)
"#;

fn oracle(script: &str, cases: &Value) -> Vec<Value> {
    let out = common::run_python(&format!("{FLOAT_HELPER}{script}"), &cases.to_string());
    serde_json::from_str(&out).expect("the oracle writes a JSON list")
}

fn num(v: &Value) -> f64 {
    let text = v.as_str().unwrap_or_else(|| panic!("not a float string: {v}"));
    text.parse().unwrap_or_else(|_| panic!("not a float: {text}"))
}

fn assert_close(what: &str, ours: f64, theirs: f64) {
    let same = ours == theirs || (ours.is_nan() && theirs.is_nan());
    let near = (ours - theirs).abs() <= REL_TOL * ours.abs().max(theirs.abs());
    assert!(same || near, "{what}: ours {ours:e}, scikit-learn {theirs:e}");
}

struct Case {
    name: String,
    y: Vec<u8>,
    pred: Vec<u8>,
    proba: Vec<f64>,
}

fn case(name: &str, y: &[u8], pred: &[u8], proba: &[f64]) -> Case {
    Case { name: name.to_string(), y: y.to_vec(), pred: pred.to_vec(), proba: proba.to_vec() }
}

fn threshold(proba: &[f64]) -> Vec<u8> {
    proba.iter().map(|&p| u8::from(p >= 0.5)).collect()
}

/// 1,000 rows whose probabilities lean towards the label; `decimals` rounds them (ties when
/// small), and `own_decisions` draws predictions that ignore the probabilities.
fn random_case(name: &str, seed: u64, decimals: Option<i32>, own_decisions: bool) -> Case {
    let mut rng = SplitMix(seed);
    let y: Vec<u8> = (0..1000).map(|_| u8::from(rng.uniform() < 0.45)).collect();
    let proba: Vec<f64> = y
        .iter()
        .map(|&t| {
            let p = (rng.uniform() + if t == 1 { 0.35 } else { -0.35 }).clamp(0.0, 1.0);
            decimals.map_or(p, |d| (p * 10f64.powi(d)).round() / 10f64.powi(d))
        })
        .collect();
    let pred =
        if own_decisions { (0..1000).map(|_| u8::from(rng.uniform() < 0.5)).collect() } else { threshold(&proba) };
    Case { name: name.to_string(), y, pred, proba }
}

fn metric_cases() -> Vec<Case> {
    let ties = [0.5, 0.5, 0.2, 0.8, 0.2, 0.8, 0.5, 0.5, 0.9, 0.2];
    let spread = [0.9, 0.8, 0.7, 0.6, 0.55, 0.4, 0.3, 0.2, 0.1, 0.05];
    vec![
        case("ties", &[0, 1, 0, 1, 1, 0, 1, 0, 1, 1], &threshold(&ties), &ties),
        case("all tied", &[0, 1, 1, 0], &[1, 1, 1, 1], &[0.5; 4]),
        case("all-one predictions", &[0, 1, 1, 0, 1, 0, 0, 1, 1, 1], &[1; 10], &spread),
        case("all-zero predictions", &[0, 1, 1, 0, 1, 0, 0, 1, 1, 1], &[0; 10], &spread),
        case("perfect", &[0, 1, 1, 0, 1], &[0, 1, 1, 0, 1], &[0.0, 1.0, 1.0, 0.0, 1.0]),
        case("perfect, unsure", &[0, 1, 1, 0, 1], &[0, 1, 1, 0, 1], &[0.3, 0.6, 0.9, 0.1, 0.51]),
        case("certain mistakes", &[1, 0, 1, 0], &[0, 1, 1, 0], &[0.0, 1.0, 1.0, 0.0]),
        case("positives only", &[1, 1, 1], &[1, 0, 1], &[0.9, 0.4, 0.7]),
        case("negatives only", &[0, 0, 0], &[0, 0, 1], &[0.1, 0.4, 0.7]),
        case("collinear runs", &[1, 1, 1, 0, 0, 0, 1, 0], &[1, 1, 1, 1, 0, 0, 0, 0], &spread[..8]),
        random_case("random", 1, None, false),
        random_case("random, two decimals", 2, Some(2), false),
        random_case("random, one decimal, own decisions", 3, Some(1), true),
    ]
}

fn check_metrics(case: &Case, ours: &Metrics, theirs: &Value) {
    let n = &case.name;
    for (field, value) in [
        ("f1", ours.f1),
        ("precision", ours.precision),
        ("recall", ours.recall),
        ("accuracy", ours.accuracy),
        ("roc_auc", ours.roc_auc),
        ("log_loss", ours.log_loss),
    ] {
        assert_close(&format!("{n}: {field}"), value, num(&theirs[field]));
    }
    let confusion: [[u64; 2]; 2] = serde_json::from_value(theirs["confusion"].clone()).unwrap();
    assert_eq!(ours.confusion, confusion, "{n}: confusion matrix");
    assert_eq!(ours.support, case.y.len() as u64, "{n}: support");
    assert_eq!(metrics::f1(&case.y, &case.pred), ours.f1, "{n}: f1 alone");
}

fn check_roc_curve(case: &Case, theirs: &Value) {
    let ours = metrics::roc_curve(&case.y, &case.proba);
    let theirs = theirs["roc"].as_array().unwrap();
    assert_eq!(ours.len(), theirs.len(), "{}: number of ROC points", case.name);
    for (i, (point, expected)) in ours.iter().zip(theirs).enumerate() {
        let what = |axis: &str| format!("{}: ROC point {i} {axis}", case.name);
        assert_close(&what("fpr"), point.0, num(&expected[0]));
        assert_close(&what("tpr"), point.1, num(&expected[1]));
        assert_close(&what("threshold"), point.2, num(&expected[2]));
    }
}

#[test]
fn metrics_and_roc_curve_match_sklearn() {
    let cases = metric_cases();
    let input: Vec<Value> = cases.iter().map(|c| json!({"y": c.y, "pred": c.pred, "proba": c.proba})).collect();
    let answers = oracle(METRICS_ORACLE, &json!(input));
    assert_eq!(answers.len(), cases.len());
    for (case, theirs) in cases.iter().zip(&answers) {
        check_metrics(case, &Metrics::compute(&case.y, &case.pred, &case.proba), theirs);
        check_roc_curve(case, theirs);
    }
}

/// The shared data set's labels (`Result`, -1 → 0) and a group id per row: rows with
/// identical feature vectors share one, numbered by first appearance.
fn phishing_labels_and_groups() -> (Vec<u8>, Vec<usize>) {
    let mut reader = csv::Reader::from_path(common::phishing_csv()).expect("open phishing.csv");
    assert_eq!(reader.headers().expect("read the header").get(30), Some("Result"), "the label is column 31");
    let (mut y, mut groups, mut ids) = (Vec::new(), Vec::new(), HashMap::new());
    for record in reader.records() {
        let record = record.expect("a CSV record");
        y.push(u8::from(&record[30] == "1"));
        let features: Vec<&str> = record.iter().take(30).collect();
        let next = ids.len();
        groups.push(*ids.entry(features.join(",")).or_insert(next));
    }
    (y, groups)
}

struct FoldCase {
    name: String,
    y: Vec<u8>,
    groups: Option<Vec<usize>>,
    k: usize,
}

fn fold_case(name: &str, y: &[u8], groups: Option<&[usize]>, k: usize) -> FoldCase {
    FoldCase { name: format!("{name}, k = {k}"), y: y.to_vec(), groups: groups.map(<[usize]>::to_vec), k }
}

/// Ours and scikit-learn's folds for every case; an error must match an oracle `null`.
fn check_folds(cases: &[FoldCase]) {
    let input: Vec<Value> = cases.iter().map(|c| json!({"y": c.y, "groups": c.groups, "k": c.k})).collect();
    let answers = oracle(FOLDS_ORACLE, &json!(input));
    assert_eq!(answers.len(), cases.len());
    for (case, theirs) in cases.iter().zip(answers) {
        let ours = match &case.groups {
            None => folds::stratified_k_fold(&case.y, case.k),
            Some(groups) => folds::stratified_group_k_fold_unshuffled(&case.y, groups, case.k),
        };
        let theirs: Option<Vec<usize>> = serde_json::from_value(theirs).expect("folds or null");
        match (ours, theirs) {
            (Ok(ours), Some(theirs)) => assert!(ours == theirs, "{}: the folds differ", case.name),
            (Err(e), None) => eprintln!("{}: both refuse ({e})", case.name),
            (ours, theirs) => panic!("{}: ours {ours:?}, scikit-learn {theirs:?}", case.name),
        }
    }
}

#[test]
fn stratified_k_fold_matches_sklearn() {
    let (y, _) = phishing_labels_and_groups();
    let mut rng = SplitMix(11);
    let random: Vec<u8> = (0..97).map(|_| u8::from(rng.uniform() < 0.3)).collect();
    let small = [
        ("docstring", vec![0, 0, 1, 1], 2),
        ("first label is 1", vec![1, 1, 1, 0, 0, 0, 1], 3),
        ("class smaller than k", vec![0, 0, 0, 0, 0, 1], 3),
        ("one class", vec![1, 1, 1, 1, 1], 2),
        ("every class smaller than k", vec![0, 1, 0, 1], 3),
        ("more folds than rows", vec![0, 1], 3),
        ("one fold", vec![0, 1, 0, 1], 1),
        ("random", random.clone(), 4),
        ("random", random, 10),
    ];
    let mut cases: Vec<FoldCase> = [3, 5, 10].iter().map(|&k| fold_case("phishing", &y, None, k)).collect();
    cases.extend(small.iter().map(|(name, y, k)| fold_case(name, y, None, *k)));
    check_folds(&cases);
}

#[test]
fn unshuffled_stratified_group_k_fold_matches_sklearn() {
    let (y, groups) = phishing_labels_and_groups();
    let doc_y = [0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let doc_groups = [1, 1, 2, 2, 3, 3, 3, 4, 5, 5, 5, 5, 6, 6, 7, 8, 8];
    // Sparse, unordered ids: scikit-learn takes the groups in increasing id order.
    let far_groups: Vec<usize> = doc_groups.iter().map(|&g| (9 - g) * 1_000_003).collect();
    let mut rng = SplitMix(12);
    let random_y: Vec<u8> = (0..300).map(|_| u8::from(rng.uniform() < 0.4)).collect();
    let random_groups: Vec<usize> = (0..300).map(|_| (rng.next_u64() % 60) as usize).collect();
    let mut cases: Vec<FoldCase> = [3, 5, 10].iter().map(|&k| fold_case("phishing", &y, Some(&groups), k)).collect();
    cases.extend([
        fold_case("docstring", &doc_y, Some(&doc_groups), 3),
        fold_case("docstring", &doc_y, Some(&doc_groups), 4),
        fold_case("far ids", &doc_y, Some(&far_groups), 3),
        fold_case("random", &random_y, Some(&random_groups), 5),
        fold_case("random", &random_y, Some(&random_groups), 7),
        fold_case("more folds than groups", &[0, 0, 0, 1, 1, 1], Some(&[1, 1, 1, 2, 2, 2]), 3),
        fold_case("every class smaller than k", &[0, 1, 0, 1], Some(&[1, 2, 3, 4]), 3),
    ]);
    check_folds(&cases);
}

/// The seeded order cannot be checked against numpy's draws; check what it promises instead.
#[test]
fn shuffled_stratified_group_k_fold_keeps_groups_and_balance() {
    let (y, groups) = phishing_labels_and_groups();
    let assignment = folds::stratified_group_k_fold(&y, &groups, 5, 42).expect("folds");
    assert_eq!(assignment, folds::stratified_group_k_fold(&y, &groups, 5, 42).unwrap(), "deterministic for a seed");
    let mut fold_of_group = HashMap::new();
    for (&group, &fold) in groups.iter().zip(&assignment) {
        assert_eq!(*fold_of_group.entry(group).or_insert(fold), fold, "group {group} is split");
    }
    let share = |rows: &[usize]| rows.iter().filter(|&&r| y[r] == 1).count() as f64 / rows.len() as f64;
    let overall = share(&(0..y.len()).collect::<Vec<_>>());
    for (fold, (_, validation)) in folds::fold_indices(&assignment, 5).iter().enumerate() {
        assert!((share(validation) - overall).abs() < 0.02, "fold {fold} is unbalanced");
        assert!(validation.len().abs_diff(y.len() / 5) < y.len() / 50, "fold {fold} has {} rows", validation.len());
    }
    assert!(matches!(folds::stratified_group_k_fold(&y, &groups, 1, 0), Err(FoldError::TooFewFolds { k: 1 })));
}
