//! `netsec::impute::KnnImputer` against scikit-learn's `KNNImputer` (the oracle).
//!
//! The phishing features are ternary, so most receivers have several donors at exactly the same
//! distance and the imputed value depends on how numpy's `argpartition` breaks ties. See
//! `ORACLE` for how the oracle is pinned to the tie order the Rust code implements.

mod common;

use common::SplitMix as SplitMix64;

use netsec::impute::KnnImputer;
use serde::{Deserialize, Serialize};

/// Rows of the shared data set used for fitting; the rest is the "test" part.
const N_TRAIN: usize = 8844;
/// Share of feature cells blanked.
const BLANK_RATE: f64 = 0.05;
const TOLERANCE: f64 = 1e-6;

/// The oracle: fits `KNNImputer(n_neighbors=k)` on each job's train matrix and transforms the
/// train and test matrices (JSON on stdin, `null` = missing; JSON on stdout).
///
/// Why `NPY_DISABLE_CPU_FEATURES`: sklearn picks the k nearest donors with
/// `np.argpartition(dist, k - 1, axis=1)[:, :k]`. numpy 2.4.6 on x86-64 dispatches a single-kth
/// float64 argpartition to x86-simd-sort's `ArgQSelect` whenever the CPU has the X86_V3 (AVX2)
/// or X86_V4 (AVX-512) feature group (this machine reports X86_V3), and that SIMD selection
/// orders equal distances differently from numpy's portable `introselect_` / `dumb_select_`.
/// With the ternary phishing data ties are everywhere: on the k = 3 case below, 1,281 of the
/// 16,692 imputed values differ between sklearn on the SIMD path and on the portable path, and
/// which path runs depends on the CPU.
/// `netsec::impute` implements the portable algorithm (what numpy does on every CPU without
/// those extensions), so the oracle switches the SIMD dispatch targets off. numpy reads the
/// variable once, when it is imported, so it is set at the top of the script, before
/// `import numpy` (the Rust test process's own environment is left alone). Naming feature
/// groups the CPU lacks is harmless. The script then checks that numpy really took the portable
/// path on an array of ties whose result differs between the two paths, so a numpy upgrade that
/// renames the dispatch targets fails loudly instead of silently comparing the wrong thing.
const ORACLE: &str = r#"
import os
os.environ["NPY_DISABLE_CPU_FEATURES"] = "X86_V3 X86_V4 AVX512_ICL AVX512_SPR"
import json, sys
import numpy as np
from sklearn.impute import KNNImputer

ties = np.array([1.0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 1] * 3)
got = (np.argpartition(ties, 2)[:3].tolist(), np.argpartition(ties, 4)[:5].tolist())
assert got == ([1, 3, 4], [26, 50, 49, 27, 30]), f"numpy is not on its portable argpartition path: {got}"

out = []
for job in json.load(sys.stdin):
    train = np.array(job["train"], dtype=np.float64).reshape(-1, job["n_features"])
    test = np.array(job["test"], dtype=np.float64).reshape(-1, job["n_features"])
    imp = KNNImputer(n_neighbors=job["k"]).fit(train)
    out.append({"train": imp.transform(train).ravel().tolist() if job["transform_train"] else None,
                "test": imp.transform(test).ravel().tolist()})
json.dump(out, sys.stdout)
"#;

#[derive(Serialize)]
struct Job<'a> {
    name: &'a str,
    k: usize,
    n_features: usize,
    train: Vec<Option<f32>>,
    test: Vec<Option<f32>>,
    /// Also compare `transform(train)` (the fit rows themselves), not only `transform(test)`.
    transform_train: bool,
}

#[derive(Deserialize)]
struct Answer {
    train: Option<Vec<f64>>,
    test: Vec<f64>,
}

/// The feature matrix of the shared data set (row-major, `Result` dropped) and its width.
fn phishing_features() -> (Vec<f32>, usize) {
    let mut reader = csv::Reader::from_path(common::phishing_csv()).expect("open phishing.csv");
    let headers = reader.headers().expect("read the header").clone();
    assert_eq!(headers.len(), 31, "phishing.csv has 31 columns");
    assert_eq!(&headers[30], "Result", "the last column is the label");
    let mut x = Vec::new();
    for record in reader.records() {
        let record = record.expect("read a row");
        for field in record.iter().take(30) {
            x.push(field.trim().parse::<f32>().expect("numeric feature"));
        }
    }
    (x, 30)
}

fn blank(x: &mut [f32], rate: f64, rng: &mut SplitMix64) {
    for v in x.iter_mut() {
        if rng.uniform() < rate {
            *v = f32::NAN;
        }
    }
}

fn to_json(x: &[f32]) -> Vec<Option<f32>> {
    x.iter().map(|&v| (!v.is_nan()).then_some(v)).collect()
}

/// Runs all jobs through one oracle invocation.
fn oracle(jobs: &[Job]) -> Vec<Answer> {
    let stdin = serde_json::to_string(jobs).expect("encode jobs");
    let stdout = common::run_python(ORACLE, &stdin);
    let answers: Vec<Answer> = serde_json::from_str(&stdout).expect("decode the oracle's answer");
    assert_eq!(answers.len(), jobs.len());
    answers
}

/// Compares an imputed matrix with the oracle's; returns the number of imputed cells.
fn compare(what: &str, input: &[f32], ours: &[f32], theirs: &[f64]) -> usize {
    assert_eq!(ours.len(), input.len(), "{what}: output length");
    assert_eq!(theirs.len(), input.len(), "{what}: oracle output length");
    let mut imputed = 0;
    let mut bad = Vec::new();
    for (i, ((&x, &o), &t)) in input.iter().zip(ours).zip(theirs).enumerate() {
        assert!(o.is_finite(), "{what}: cell {i} is {o} after imputation");
        if x.is_nan() {
            imputed += 1;
            if (f64::from(o) - t).abs() > TOLERANCE {
                bad.push((i, o, t));
            }
        } else {
            assert_eq!(o, x, "{what}: present cell {i} was changed");
            assert_eq!(f64::from(x), t, "{what}: oracle changed present cell {i}");
        }
    }
    assert!(
        bad.is_empty(),
        "{what}: {} of {imputed} imputed cells differ from sklearn (cell, ours, sklearn), first: {:?}",
        bad.len(),
        &bad[..bad.len().min(10)]
    );
    imputed
}

fn check_jobs(jobs: Vec<Job>, raw: &[(Vec<f32>, Vec<f32>)]) {
    let answers = oracle(&jobs);
    for ((job, (train, test)), answer) in jobs.iter().zip(raw).zip(&answers) {
        let imputer = KnnImputer::fit(train, job.n_features, job.k).expect("fit");
        assert_eq!(imputer.n_features(), job.n_features);
        let n_train = if job.transform_train {
            let theirs = answer.train.as_ref().expect("the oracle transformed train");
            let ours = imputer.transform(train).expect("transform train");
            compare(&format!("{} train", job.name), train, &ours, theirs)
        } else {
            0
        };
        let ours = imputer.transform(test).expect("transform test");
        let n_test = compare(&format!("{} test", job.name), test, &ours, &answer.test);
        println!("{}: k = {}, {n_train} + {n_test} imputed cells match sklearn", job.name, job.k);
        assert!(n_train + n_test > 0, "{}: nothing was imputed", job.name);
    }
}

fn job<'a>(name: &'a str, k: usize, n_features: usize, train: &[f32], test: &[f32]) -> Job<'a> {
    Job { name, k, n_features, train: to_json(train), test: to_json(test), transform_train: true }
}

/// The task's case: the shared data set with 5% of the feature cells blanked, fit on the first
/// 8,844 rows, k = 3.
#[test]
fn phishing_with_five_percent_missing_matches_sklearn() {
    let (mut x, n_features) = phishing_features();
    let n_rows = x.len() / n_features;
    assert!(n_rows > N_TRAIN, "the data set has {n_rows} rows");
    blank(&mut x, BLANK_RATE, &mut SplitMix64(0x5eed_2024));
    let (train, test) = x.split_at(N_TRAIN * n_features);
    let raw = vec![(train.to_vec(), test.to_vec())];
    check_jobs(vec![job("phishing", 3, n_features, train, test)], &raw);
}

/// Small cases with k = 1 and k = 5 (k = 5 runs numpy's full introselect, not only the
/// selection sort used for kth < 3), more missing cells, and rows that exercise the mean
/// fallback: a row with nothing present and rows with a single present feature.
#[test]
fn small_cases_with_k1_and_k5_match_sklearn() {
    let (x, n_features) = phishing_features();
    let mut rng = SplitMix64(7);
    let mut train = x[..400 * n_features].to_vec();
    let mut test = x[400 * n_features..520 * n_features].to_vec();
    blank(&mut train, 0.15, &mut rng);
    blank(&mut test, 0.15, &mut rng);
    // Column 0 present only in a few train rows; those rows lack most other features, so
    // receivers often share no coordinate with any donor of column 0.
    for row in 0..400 {
        if row % 50 == 0 {
            for col in 6..n_features {
                train[row * n_features + col] = f32::NAN;
            }
        } else {
            train[row * n_features] = f32::NAN;
        }
    }
    let mut extra = vec![f32::NAN; 3 * n_features];
    extra[n_features + 10] = 1.0; // only column 10 present
    extra[2 * n_features + 3] = -1.0; // only column 3 present
    test.extend_from_slice(&extra);

    // k larger than the number of rows.
    let tiny_train = vec![
        1.0,
        f32::NAN,
        0.0, //
        -1.0,
        1.0,
        f32::NAN, //
        0.0,
        0.0,
        1.0, //
        f32::NAN,
        -1.0,
        -1.0,
    ];
    let tiny_test = vec![
        f32::NAN,
        1.0,
        0.0, //
        1.0,
        f32::NAN,
        f32::NAN, //
        f32::NAN,
        f32::NAN,
        f32::NAN,
    ];

    let raw =
        vec![(train.clone(), test.clone()), (train.clone(), test.clone()), (tiny_train.clone(), tiny_test.clone())];
    let jobs = vec![
        job("small k=1", 1, n_features, &train, &test),
        job("small k=5", 5, n_features, &train, &test),
        job("tiny k=5", 5, 3, &tiny_train, &tiny_test),
    ];
    check_jobs(jobs, &raw);
}

/// k = 5 on the full data: thousands of selections through numpy's median-of-3 introselect
/// (kth = 4). Only the test part is transformed, to keep the debug-build run time down.
#[test]
fn phishing_k5_matches_sklearn() {
    let (mut x, n_features) = phishing_features();
    blank(&mut x, BLANK_RATE, &mut SplitMix64(0xfeed));
    let (train, test) = x.split_at(N_TRAIN * n_features);
    let raw = vec![(train.to_vec(), test.to_vec())];
    let job = Job { transform_train: false, ..job("phishing k=5", 5, n_features, train, test) };
    check_jobs(vec![job], &raw);
}
