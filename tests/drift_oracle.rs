//! `netsec::stats::drift` against scipy (the oracle), each statistic computed as Evidently
//! computes it: `chisquare` on the reference's counts scaled to the current size, the pooled
//! two-proportion Z-test, `ks_2samp`, `jensenshannon` on the shares, PSI on the shares with
//! empty bins filled, `wasserstein_distance` normed by the reference's deviation; Sturges bins
//! for numerical columns with more than 20 distinct values. And the corrections against
//! `scipy.stats.false_discovery_control`.

mod common;

use common::samples::{continuous, phishing_columns, ternary};
use netsec::stats::drift::{compare, correct, Correction, Kind, Method};
use serde::Serialize;
use serde_json::Value;

#[derive(Serialize)]
struct Case {
    name: String,
    kind: &'static str,
    method: &'static str,
    a: Vec<f64>,
    b: Vec<f64>,
}

const SCIPY_SCRIPT: &str = r#"
import json, sys, warnings
import numpy as np
from scipy.stats import chisquare, norm, ks_2samp, wasserstein_distance
from scipy.spatial.distance import jensenshannon

def shares(ref, cur, kind, fill):
    if kind == "num" and len(np.unique(ref)) > 20:
        bins = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
        r, c = np.histogram(ref, bins)[0] / len(ref), np.histogram(cur, bins)[0] / len(cur)
    else:
        keys = sorted(set(ref) | set(cur))
        r = np.array([np.sum(ref == k) / len(ref) for k in keys])
        c = np.array([np.sum(cur == k) / len(cur) for k in keys])
    if fill:
        for a in (r, c):
            smallest = a[a != 0].min()
            np.place(a, a == 0, smallest / 10**6 if smallest <= 0.0001 else 0.0001)
    return r, c

def score(method, kind, ref, cur):
    if method == "chi2":
        keys = sorted(set(ref) | set(cur))
        scale = len(cur) / len(ref)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s, p = chisquare([np.sum(cur == k) for k in keys], [np.sum(ref == k) * scale for k in keys])
        return [float(s) if np.isfinite(s) else None, float(p)]
    if method == "z":
        if len(set(ref)) == 1 and set(ref) == set(cur):
            return [0.0, 1.0]
        key = min(set(ref) | set(cur))
        n1, n2 = len(ref), len(cur)
        p1, p2 = np.sum(ref != key) / n1, np.sum(cur != key) / n2
        pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
        z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
        # Evidently writes 2 * (1 - norm.cdf(|z|)), the same value rounded to 0 below ~1e-16.
        return [float(z), float(2 * norm.sf(abs(z)))]
    if method == "ks":
        r = ks_2samp(ref, cur)
        return [float(r.statistic), float(r.pvalue)]
    if method == "jensenshannon":
        return [float(jensenshannon(*shares(ref, cur, kind, False))), None]
    if method == "psi":
        r, c = shares(ref, cur, kind, True)
        return [float(np.sum((r - c) * np.log(r / c))), None]
    if method == "wasserstein":
        return [float(wasserstein_distance(ref, cur) / max(np.std(ref), 0.001)), None]

out = []
for case in json.load(sys.stdin):
    ref, cur = np.array(case["a"]), np.array(case["b"])
    out.append(score(case["method"], case["kind"], ref, cur))
print(json.dumps(out))
"#;

fn method(name: &str) -> Method {
    serde_json::from_value(Value::String(name.into())).unwrap()
}

fn kind(name: &str) -> Kind {
    if name == "num" {
        Kind::Numerical
    } else {
        Kind::Categorical
    }
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |name: String, kind, method, a: Vec<f64>, b: Vec<f64>| {
        cases.push(Case { name, kind, method, a, b });
    };
    // The shared data (8,844 / 2,211 rows): every distance, and the tests on samples of it.
    for (column, train, test) in phishing_columns() {
        for method in ["jensenshannon", "psi", "wasserstein"] {
            add(format!("{column} {method}"), "cat", method, train.clone(), test.clone());
        }
        for method in ["chi2", "z"] {
            add(format!("{column} {method} (600/300)"), "cat", method, train[..600].to_vec(), test[..300].to_vec());
        }
    }
    // Drift of growing strength, small and large samples.
    for (at, shift) in [0.0, 0.03, 0.1, 0.4].into_iter().enumerate() {
        let seed = 100 + 10 * at as u64;
        for (n1, n2) in [(500, 300), (5000, 2000)] {
            let (a, b) = (ternary(seed, n1, 0.3, 0.2), ternary(seed + 1, n2, 0.3 + shift, 0.2));
            for method in ["chi2", "z", "jensenshannon", "psi", "wasserstein"] {
                add(format!("ternary {n1}/{n2} shift {shift} {method}"), "cat", method, a.clone(), b.clone());
            }
        }
        // Numerical columns: many distinct values, Sturges bins for the shares.
        let (a, b) = (continuous(seed + 2, 2000, 0.0), continuous(seed + 3, 1500, shift));
        for method in ["ks", "jensenshannon", "psi", "wasserstein"] {
            add(format!("continuous shift {shift} {method}"), "num", method, a.clone(), b.clone());
        }
    }
    // A code the reference never holds: chi2 is infinite, PSI fills the empty bin.
    let (a, b) = (ternary(7, 400, 0.5, 0.0), ternary(8, 300, 0.3, 0.2));
    for method in ["chi2", "psi", "jensenshannon"] {
        add(format!("new code {method}"), "cat", method, a.clone(), b.clone());
    }
    cases
}

fn close(ours: f64, theirs: f64) -> bool {
    if theirs.abs() < 1e-6 {
        (ours - theirs).abs() <= 1e-12
    } else {
        ((ours - theirs) / theirs).abs() <= 1e-9
    }
}

#[test]
fn statistics_match_scipy_computed_as_evidently_computes_them() {
    let cases = cases();
    let oracle: Vec<(Option<f64>, Option<f64>)> =
        serde_json::from_str(&common::run_python(SCIPY_SCRIPT, &serde_json::to_string(&cases).unwrap())).unwrap();
    let mut failures = Vec::new();
    for (case, (statistic, p_value)) in cases.iter().zip(oracle) {
        let ours = compare(method(case.method), kind(case.kind), &case.a, &case.b).unwrap();
        assert_eq!(ours.method, method(case.method), "{}", case.name);
        let statistic_ok = match statistic {
            Some(theirs) => close(ours.statistic, theirs),
            None => ours.statistic.is_infinite(),
        };
        let p_ok = match (ours.p_value, p_value) {
            (Some(ours), Some(theirs)) => close(ours, theirs),
            (None, None) => true,
            _ => false,
        };
        if !(statistic_ok && p_ok) {
            failures.push(format!(
                "{}: netsec ({}, {:?}) scipy ({statistic:?}, {p_value:?})",
                case.name, ours.statistic, ours.p_value
            ));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

/// The choice by size and distinct values, on real columns: Jensen–Shannon on the shared
/// data's split, chi2 on small samples of three codes, Z on two.
#[test]
fn auto_chooses_as_evidently_does() {
    let columns = phishing_columns();
    let (name, train, test) = &columns[0];
    assert_eq!(name, "having_IP_Address");
    assert_eq!(compare(Method::Auto, Kind::Categorical, train, test).unwrap().method, Method::JensenShannon);
    assert_eq!(compare(Method::Auto, Kind::Categorical, &train[..1000], test).unwrap().method, Method::Z);
    let (name, train, test) = &columns[1];
    assert_eq!(name, "URL_Length");
    assert_eq!(compare(Method::Auto, Kind::Categorical, &train[..1000], test).unwrap().method, Method::Chi2);
    assert_eq!(compare(Method::Auto, Kind::Categorical, &train[..1001], test).unwrap().method, Method::JensenShannon);
    let (a, b) = (continuous(1, 1000, 0.0), continuous(2, 500, 0.0));
    assert_eq!(compare(Method::Auto, Kind::Numerical, &a, &b).unwrap().method, Method::Ks);
    let a = continuous(3, 1001, 0.0);
    assert_eq!(compare(Method::Auto, Kind::Numerical, &a, &b).unwrap().method, Method::Wasserstein);
}

#[test]
fn corrections_match_scipy() {
    let p: Vec<f64> = (0..30).map(|i| (f64::from(i) * 0.37).fract().powi(3) * 0.2).collect();
    let script = r#"
import json, sys
from scipy.stats import false_discovery_control
p = json.load(sys.stdin)
print(json.dumps(list(map(float, false_discovery_control(p, method="bh")))))
"#;
    let bh: Vec<f64> = serde_json::from_str(&common::run_python(script, &serde_json::to_string(&p).unwrap())).unwrap();
    let ours = correct(&p, Correction::BenjaminiHochberg);
    for (i, (ours, theirs)) in ours.iter().zip(&bh).enumerate() {
        assert!((ours - theirs).abs() <= 1e-15, "p[{i}] = {}: netsec {ours} vs scipy {theirs}", p[i]);
    }
    let bonferroni = correct(&p, Correction::Bonferroni);
    assert!(bonferroni.iter().zip(&p).all(|(c, p)| *c == (p * 30.0).min(1.0)));
}
