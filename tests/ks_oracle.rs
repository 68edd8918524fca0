//! `netsec::stats::ks::ks_2samp` against `scipy.stats.ks_2samp` (the oracle).
//!
//! All samples go to a single Python invocation as JSON; scipy answers one line per case:
//! the statistic, the p-value (Python `repr`, parsed exactly by Rust) and which method produced
//! the p-value (scipy's "Exact calculation unsuccessful" warning marks a fallback).

mod common;

use common::samples::{continuous, phishing_columns, ternary};
use common::SplitMix as Rng;

use netsec::stats::ks::{ks_2samp, KsMethod, KsResult};
use serde::Serialize;

#[derive(Serialize)]
struct Case {
    name: String,
    a: Vec<f64>,
    b: Vec<f64>,
}

impl Case {
    fn new(name: impl Into<String>, a: Vec<f64>, b: Vec<f64>) -> Self {
        Case { name: name.into(), a, b }
    }
}

/// A shuffled ternary sample with exactly `n_neg` -1s, `n_zero` 0s and `n_pos` 1s, to aim the
/// statistic at a chosen branch of the p-value computation.
fn from_counts(seed: u64, n_neg: usize, n_zero: usize, n_pos: usize) -> Vec<f64> {
    let mut v: Vec<f64> = [(-1.0, n_neg), (0.0, n_zero), (1.0, n_pos)]
        .iter()
        .flat_map(|&(value, count)| std::iter::repeat_n(value, count))
        .collect();
    let mut rng = Rng(seed);
    for i in (1..v.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

fn synthetic_cases() -> Vec<Case> {
    const BASE: (f64, f64) = (0.30, 0.20);
    let t = |seed, n, (p_neg, p_zero): (f64, f64)| ternary(seed, n, p_neg, p_zero);
    vec![
        // Exact, n1 != n2 (the pipeline's train/test sizes).
        Case::new("8844/2211 no drift", t(1, 8844, BASE), t(2, 2211, BASE)),
        Case::new("8844/2211 mild drift", t(3, 8844, BASE), t(4, 2211, (0.33, 0.20))),
        Case::new("8844/2211 drift", t(5, 8844, BASE), t(6, 2211, (0.40, 0.20))),
        Case::new("8844/2211 strong drift", t(7, 8844, BASE), t(8, 2211, (0.70, 0.20))),
        Case::new("3000/1999 drift", t(9, 3000, BASE), t(10, 1999, (0.35, 0.15))),
        Case::new("10000/7 (boundary)", t(11, 10_000, BASE), t(12, 7, BASE)),
        // Exact, n1 == n2 (_compute_prob_outside_square).
        Case::new("500/500 no drift", t(13, 500, BASE), t(14, 500, BASE)),
        Case::new("500/500 drift", t(15, 500, BASE), t(16, 500, (0.40, 0.20))),
        Case::new("500/500 strong drift", t(17, 500, BASE), t(18, 500, (0.80, 0.10))),
        Case::new("10000/10000 drift", t(19, 10_000, BASE), t(20, 10_000, (0.32, 0.20))),
        // Small samples, including exact results outside [0, 1] (fallback to asymptotic).
        Case::new("5/5", t(21, 5, BASE), t(22, 5, BASE)),
        Case::new("6/6", t(23, 6, BASE), t(24, 6, (0.5, 0.3))),
        Case::new("20/20", t(25, 20, BASE), t(26, 20, BASE)),
        Case::new("3/4", t(27, 3, BASE), t(28, 4, BASE)),
        Case::new("1/1", vec![0.0], vec![1.0]),
        // Asymptotic (max(n1, n2) > 10000), through the branches of kstwo.sf.
        Case::new("12000/3000 no drift", t(29, 12_000, BASE), t(30, 3000, BASE)),
        Case::new("12000/3000 drift", t(31, 12_000, BASE), t(32, 3000, (0.33, 0.20))),
        Case::new("20000/20000 no drift", t(33, 20_000, BASE), t(34, 20_000, BASE)),
        Case::new("20000/20000 drift", t(35, 20_000, BASE), t(36, 20_000, (0.31, 0.20))),
        Case::new("10001/50 no drift", t(37, 10_001, BASE), t(38, 50, BASE)),
        Case::new("10001/50 drift", t(39, 10_001, BASE), t(40, 50, (0.45, 0.20))),
        Case::new("10001/50 strong drift", t(41, 10_001, BASE), t(42, 50, (0.75, 0.2))),
        Case::new("15000/137 drift", t(43, 15_000, BASE), t(44, 137, (0.40, 0.20))),
        Case::new("800000/200000 no drift", t(45, 800_000, BASE), t(46, 200_000, BASE)),
        Case::new("800000/200000 mild drift", t(47, 800_000, BASE), t(48, 200_000, (0.31, 0.20))),
        Case::new("800000/200000 strong drift", t(49, 800_000, BASE), t(50, 200_000, (0.5, 0.2))),
        // Chosen statistics for the remaining branches of kstwo.sf(d, N):
        // N = 10000, N d^1.5 <= 1.4 (Durbin matrix, N > 140).
        Case::new("20000/20000 DMTW", from_counts(57, 6000, 4000, 10_000), from_counts(58, 6050, 4000, 9950)),
        // 0.5/N < d <= 1/N, N > 140 (Ruben–Gambino, Stirling).
        Case::new("20000/20000 d=1/N", from_counts(59, 6000, 4000, 10_000), from_counts(60, 6002, 4000, 9998)),
        // N = 50: 0.5/N < d <= 1/N (Ruben–Gambino product), d >= 0.5, d >= 1 - 1/N.
        Case::new("10001/50 d<=1/N", from_counts(61, 3150, 2000, 4851), from_counts(62, 15, 10, 25)),
        Case::new("10001/50 d>=0.5", from_counts(63, 10_001, 0, 0), from_counts(64, 10, 0, 40)),
        Case::new("10001/50 d>=1-1/N", from_counts(65, 9950, 0, 51), from_counts(66, 0, 0, 50)),
        // Continuous data: the sorting path for the statistic.
        Case::new("continuous 300/200", continuous(51, 300, 0.0), continuous(52, 200, 0.1)),
        Case::new("continuous 257/257", continuous(53, 257, 0.0), continuous(54, 257, 0.0)),
        Case::new("continuous 15000/12000", continuous(55, 15_000, 0.0), continuous(56, 12_000, 0.02)),
    ]
}

const SCIPY_SCRIPT: &str = r#"
import json, sys, warnings
import numpy as np
from scipy import stats

for case in json.load(sys.stdin):
    a = np.asarray(case["a"], dtype=np.float64)
    b = np.asarray(case["b"], dtype=np.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = stats.ks_2samp(a, b)
    fell_back = any("Exact calculation unsuccessful" in str(w.message) for w in caught)
    exact = max(len(a), len(b)) <= 10000 and not fell_back
    print(repr(float(res.statistic)), repr(float(res.pvalue)), "exact" if exact else "asymp")
"#;

fn check(name: &str, ours: KsResult, scipy: &str) -> Result<String, String> {
    let fields: Vec<&str> = scipy.split_whitespace().collect();
    assert_eq!(fields.len(), 3, "unexpected oracle line {scipy:?}");
    let statistic: f64 = fields[0].parse().expect("statistic");
    let p_value: f64 = fields[1].parse().expect("p-value");
    let method = match fields[2] {
        "exact" => KsMethod::Exact,
        _ => KsMethod::Asymptotic,
    };
    let summary = format!(
        "{name:<28} D {:<22} scipy {statistic:<22} p {:<24e} scipy {p_value:<24e} {:?}",
        ours.statistic, ours.p_value, ours.method
    );
    if ours.statistic != statistic {
        return Err(format!("statistic differs: {summary}"));
    }
    if ours.method != method {
        return Err(format!("method differs (scipy {method:?}): {summary}"));
    }
    let diff = (ours.p_value - p_value).abs();
    let ok = if p_value < 1e-6 { diff <= 1e-12 } else { diff <= 1e-6 * p_value };
    if ok {
        Ok(summary)
    } else {
        Err(format!("p-value differs: {summary}"))
    }
}

#[test]
fn matches_scipy_ks_2samp() {
    let mut cases: Vec<Case> =
        phishing_columns().into_iter().map(|(name, a, b)| Case::new(format!("phishing {name}"), a, b)).collect();
    cases.extend(synthetic_cases());

    let input = serde_json::to_string(&cases).expect("serialize cases");
    let output = common::run_python(SCIPY_SCRIPT, &input);
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(lines.len(), cases.len(), "one oracle line per case");

    let mut failures = Vec::new();
    let mut methods = [0usize; 2];
    for (case, line) in cases.iter().zip(&lines) {
        let ours = ks_2samp(&case.a, &case.b);
        methods[usize::from(ours.method == KsMethod::Asymptotic)] += 1;
        match check(&case.name, ours, line) {
            Ok(summary) => println!("ok   {summary}"),
            Err(message) => {
                println!("FAIL {message}");
                failures.push(message);
            }
        }
    }
    assert!(failures.is_empty(), "{} case(s) differ from scipy:\n{}", failures.len(), failures.join("\n"));
    // The cases must exercise both methods (and the fallback).
    assert!(methods[0] >= 30 && methods[1] >= 10, "methods used: {methods:?}");
}
