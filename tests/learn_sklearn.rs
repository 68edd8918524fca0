//! The model engine against scikit-learn 1.9 on the shared phishing data: on one fixed 80/20
//! split, each family's test F1 is at most 0.003 below scikit-learn's (averaged over three
//! random states), and logistic regression finds scikit-learn's coefficients.

mod common;

use netsec::learn::{
    AdaBoostParams, Classifier, Criterion, DecisionTreeParams, GradientBoostingParams, Logistic,
    LogisticRegressionParams, ModelConfig, Prepared, RandomForestParams, Samples,
};

const N_FEATURES: usize = 30;

/// Fits each config with scikit-learn (random states 0, 1, 2) and reports mean test F1 by
/// name, plus the coefficients of an exactly converged logistic regression.
const ORACLE: &str = r#"
import json, sys
import numpy as np
from sklearn.ensemble import AdaBoostClassifier, GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.tree import DecisionTreeClassifier

req = json.loads(sys.stdin.read())
d = np.loadtxt(req["csv"], delimiter=",", skiprows=1)
X, y = d[:, :-1], (d[:, -1] == 1).astype(int)
tr, te = np.array(req["train"]), np.array(req["test"])
makers = {
    "random_forest": lambda s: RandomForestClassifier(n_estimators=64, random_state=s),
    "tree_gini": lambda s: DecisionTreeClassifier(random_state=s),
    "tree_entropy": lambda s: DecisionTreeClassifier(criterion="entropy", random_state=s),
    "gradient_boosting": lambda s: GradientBoostingClassifier(
        n_estimators=64, subsample=0.8, random_state=s),
    "ada_boost": lambda s: AdaBoostClassifier(n_estimators=64, learning_rate=0.1, random_state=s),
    "logistic_regression": lambda s: LogisticRegression(),
}
out = {}
for name, make in makers.items():
    scores = [f1_score(y[te], make(s).fit(X[tr], y[tr]).predict(X[te])) for s in range(3)]
    out[name] = float(np.mean(scores))
exact = LogisticRegression(tol=1e-10, max_iter=10000).fit(X[tr], y[tr])
out["coef"] = exact.coef_[0].tolist() + [float(exact.intercept_[0])]
print(json.dumps(out))
"#;

fn load() -> (Vec<f32>, Vec<u8>) {
    let mut reader = csv::Reader::from_path(common::phishing_csv()).unwrap();
    let (mut rows, mut labels) = (Vec::new(), Vec::new());
    for record in reader.records() {
        let values: Vec<f32> = record.unwrap().iter().map(|v| v.trim().parse().unwrap()).collect();
        rows.extend_from_slice(&values[..N_FEATURES]);
        labels.push(u8::from(values[N_FEATURES] > 0.0));
    }
    (rows, labels)
}

/// A fixed shuffled 80/20 split (train, test).
fn split(n: usize) -> (Vec<usize>, Vec<usize>) {
    let mut idx: Vec<usize> = (0..n).collect();
    let mut state = 42u64;
    for i in (1..n).rev() {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        idx.swap(i, ((state >> 33) % (i as u64 + 1)) as usize);
    }
    let test = idx.split_off(n * 4 / 5);
    (idx, test)
}

fn subset(rows: &[f32], labels: &[u8], idx: &[usize]) -> (Vec<f32>, Vec<u8>) {
    let r = idx.iter().flat_map(|&i| rows[i * N_FEATURES..(i + 1) * N_FEATURES].iter().copied()).collect();
    (r, idx.iter().map(|&i| labels[i]).collect())
}

fn f1(labels: &[u8], predicted: &[u8]) -> f64 {
    let count = |a: u8, b: u8| labels.iter().zip(predicted).filter(|&(&y, &p)| y == a && p == b).count() as f64;
    let (tp, fp, fneg) = (count(1, 1), count(0, 1), count(1, 0));
    2.0 * tp / (2.0 * tp + fp + fneg)
}

fn configs() -> Vec<(&'static str, ModelConfig)> {
    vec![
        ("random_forest", ModelConfig::RandomForest(RandomForestParams { n_estimators: 64, ..Default::default() })),
        ("tree_gini", ModelConfig::DecisionTree(DecisionTreeParams::default())),
        (
            "tree_entropy",
            ModelConfig::DecisionTree(DecisionTreeParams { criterion: Criterion::Entropy, ..Default::default() }),
        ),
        (
            "gradient_boosting",
            ModelConfig::GradientBoosting(GradientBoostingParams {
                n_estimators: 64,
                subsample: 0.8,
                ..Default::default()
            }),
        ),
        (
            "ada_boost",
            ModelConfig::AdaBoost(AdaBoostParams { n_estimators: 64, learning_rate: 0.1, ..Default::default() }),
        ),
        ("logistic_regression", ModelConfig::LogisticRegression(LogisticRegressionParams::default())),
    ]
}

#[test]
fn test_f1_is_within_0_003_of_scikit_learn() {
    let (rows, labels) = load();
    let (train, test) = split(labels.len());
    let request = serde_json::json!({
        "csv": common::phishing_csv(),
        "train": train,
        "test": test,
    });
    let oracle: serde_json::Value = serde_json::from_str(&common::run_python(ORACLE, &request.to_string())).unwrap();
    let (train_rows, train_labels) = subset(&rows, &labels, &train);
    let (test_rows, test_labels) = subset(&rows, &labels, &test);
    let data = Prepared::new(&Samples::new(&train_rows, N_FEATURES, &train_labels).unwrap()).unwrap();
    let mut report = Vec::new();
    for (name, config) in configs() {
        let model = config.fit_prepared(&data).unwrap();
        let ours = f1(&test_labels, &model.predict(&test_rows));
        let theirs = oracle[name].as_f64().unwrap();
        report.push(format!("{name}: ours {ours:.4}, scikit-learn {theirs:.4}"));
        assert!(ours >= theirs - 0.003, "{}", report.join("; "));
    }
    eprintln!("{}", report.join("\n"));

    let lr = Logistic::fit(&LogisticRegressionParams::default(), &data).unwrap();
    let coef: Vec<f64> = oracle["coef"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let ours: Vec<f64> = lr.coefficients().iter().copied().chain([lr.intercept()]).collect();
    for (a, b) in ours.iter().zip(&coef) {
        assert!((a - b).abs() < 1e-3, "coefficients {ours:?} vs scikit-learn {coef:?}");
    }
}
