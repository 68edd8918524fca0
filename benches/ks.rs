//! Speed of the drift tests validation runs on every feature column: the two-sample KS test of
//! report.yaml (exact p-values for the pipeline's sizes, the asymptotic one for large samples),
//! and the drift report's method chosen as Evidently chooses it, beside Evidently itself on the
//! same columns. Each figure is the fastest of a few repetitions, since the machine may be
//! shared. `cargo bench --bench ks`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::samples::{continuous, phishing_columns, ternary};
use netsec::stats::drift::{compare, Kind, Method};
use netsec::stats::ks::{ks_2samp, KsResult};

fn fastest<T>(repeats: usize, f: impl Fn() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut result = None;
    for _ in 0..repeats {
        let start = Instant::now();
        let r = f();
        best = best.min(start.elapsed());
        result = Some(r);
    }
    (best, result.expect("at least one repetition"))
}

fn main() {
    let columns = phishing_columns();
    drift_report(&columns);
    let mut total = Duration::ZERO;
    let mut slowest = Duration::ZERO;
    for (_, a, b) in &columns {
        let (t, _) = fastest(7, || ks_2samp(a, b));
        total += t;
        slowest = slowest.max(t);
    }
    println!(
        "exact, 30 phishing columns 8844 vs 2211: {:?} per call on average, slowest {slowest:?}",
        total / columns.len() as u32
    );
    for (label, p_neg) in [("no drift", 0.30), ("mild drift", 0.31), ("drift", 0.33), ("strong drift", 0.45)] {
        let a = ternary(101, 8844, 0.30, 0.20);
        let b = ternary(102, 2211, p_neg, 0.20);
        let (t, r) = fastest(7, || ks_2samp(&a, &b));
        println!("exact 8844 vs 2211, {label}: {t:?} (D {}, p {:e})", r.statistic, r.p_value);
    }
    for (label, p_neg) in [("no drift", 0.30), ("mild drift", 0.31), ("strong drift", 0.45)] {
        let a = ternary(103, 800_000, 0.30, 0.20);
        let b = ternary(104, 200_000, p_neg, 0.20);
        let (t, r) = fastest(5, || ks_2samp(&a, &b));
        println!("asymptotic 800000 vs 200000, {label}: {t:?} (D {}, p {:e})", r.statistic, r.p_value);
    }
    let a = continuous(105, 800_000, 0.0);
    let b = continuous(106, 200_000, 0.0);
    let (t, r): (Duration, KsResult) = fastest(3, || ks_2samp(&a, &b));
    println!("asymptotic 800000 vs 200000, continuous (sorting): {t:?} (D {}, p {:e})", r.statistic, r.p_value);
}

/// The 30 columns by the automatic method (Jensen–Shannon here, PSI beside), and Evidently's
/// DataDriftPreset on the same frames when the harness's Python environment is there.
fn drift_report(columns: &[(String, Vec<f64>, Vec<f64>)]) {
    let (t, _) = fastest(7, || {
        columns
            .iter()
            .map(|(_, a, b)| compare(Method::Auto, Kind::Categorical, a, b).map_or(0.0, |o| o.statistic))
            .sum::<f64>()
    });
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/netsec-py/bin/python");
    let evidently = if venv.is_file() || std::env::var_os("NETSEC_PYTHON").is_some() {
        let frames: serde_json::Map<String, serde_json::Value> =
            columns.iter().map(|(name, a, b)| (name.clone(), serde_json::json!([a, b]))).collect();
        let seconds: f64 = common::run_python(EVIDENTLY_TIMING, &serde_json::Value::Object(frames).to_string())
            .trim()
            .parse()
            .expect("seconds");
        format!("{:.0} ms", seconds * 1000.0)
    } else {
        "not measured (run `cargo xtask test` once to create the Python environment)".into()
    };
    println!("drift report, 30 phishing columns 8844 vs 2211 (auto: Jensen–Shannon + PSI): {t:?}; Evidently 0.7.23 DataDriftPreset: {evidently}");
}

/// The fastest of three DataDriftPreset runs on the columns given as {name: [train, test]}.
const EVIDENTLY_TIMING: &str = r#"
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import pandas as pd
from evidently import Report, Dataset, DataDefinition
from evidently.presets import DataDriftPreset
columns = json.load(sys.stdin)
ref = pd.DataFrame({c: v[0] for c, v in columns.items()})
cur = pd.DataFrame({c: v[1] for c, v in columns.items()})
definition = DataDefinition(categorical_columns=list(ref.columns))
best = float("inf")
for _ in range(3):
    start = time.perf_counter()
    Report([DataDriftPreset()]).run(Dataset.from_pandas(cur, data_definition=definition), Dataset.from_pandas(ref, data_definition=definition))
    best = min(best, time.perf_counter() - start)
print(best)
"#;
