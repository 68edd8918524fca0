//! Times the model engine on the shared phishing data: one staged fit per grid family at
//! both training sizes of the search, the whole grid search (3-fold CV on an 80/20 split,
//! selection by mean CV accuracy as `GridSearchCV` does, refit of each family's winner), the
//! test F1 of each winner, and prediction speed.
//!
//! `cargo run --release --example learn_timing [path/to/phishing.csv]`

use std::time::Instant;

use netsec::learn::{
    AdaBoostParams, Classifier, Criterion, DecisionTreeParams, GradientBoostingParams, LogisticRegressionParams, Model,
    ModelConfig, Prepared, RandomForestParams, Samples,
};
use rand::{RngExt, SeedableRng};
use rayon::prelude::*;

const N_FEATURES: usize = 30;
const STAGES: [usize; 6] = [8, 16, 32, 64, 128, 256];

/// Rows and labels.
struct Data {
    rows: Vec<f32>,
    labels: Vec<u8>,
}

impl Data {
    fn load(path: &str) -> Data {
        let mut reader = csv::Reader::from_path(path).expect("open the CSV");
        let (mut rows, mut labels) = (Vec::new(), Vec::new());
        for record in reader.records() {
            let record = record.expect("read a CSV record");
            let values: Vec<f32> = record.iter().map(|v| v.trim().parse().expect("a number")).collect();
            rows.extend_from_slice(&values[..N_FEATURES]);
            labels.push(u8::from(values[N_FEATURES] > 0.0));
        }
        Data { rows, labels }
    }

    fn n(&self) -> usize {
        self.labels.len()
    }

    fn subset(&self, idx: &[usize]) -> Data {
        Data {
            rows: idx.iter().flat_map(|&i| self.rows[i * N_FEATURES..(i + 1) * N_FEATURES].iter().copied()).collect(),
            labels: idx.iter().map(|&i| self.labels[i]).collect(),
        }
    }

    fn prepare(&self) -> Prepared {
        Prepared::new(&Samples::new(&self.rows, N_FEATURES, &self.labels).unwrap()).unwrap()
    }
}

fn f1(labels: &[u8], proba: &[f64]) -> f64 {
    let (mut tp, mut fp, mut fneg) = (0.0, 0.0, 0.0);
    for (&y, &p) in labels.iter().zip(proba) {
        match (y == 1, p > 0.5) {
            (true, true) => tp += 1.0,
            (false, true) => fp += 1.0,
            (true, false) => fneg += 1.0,
            _ => {}
        }
    }
    2.0 * tp / (2.0 * tp + fp + fneg)
}

fn accuracy(labels: &[u8], proba: &[f64]) -> f64 {
    let right = labels.iter().zip(proba).filter(|(&y, &p)| (y == 1) == (p > 0.5)).count();
    right as f64 / labels.len() as f64
}

/// A random 80/20 split (seeded).
fn split(n: usize, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut idx: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        idx.swap(i, rng.random_range(0..=i));
    }
    let n_test = n.div_ceil(5);
    let test = idx[..n_test].to_vec();
    (idx[n_test..].to_vec(), test)
}

/// Stratified 3-fold CV indices into `labels` (each class cut in order into 3 parts).
fn folds(labels: &[u8]) -> Vec<(Vec<usize>, Vec<usize>)> {
    let mut fold_of = vec![0; labels.len()];
    for class in 0..2u8 {
        let members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        for (k, &i) in members.iter().enumerate() {
            fold_of[i] = k * 3 / members.len();
        }
    }
    (0..3)
        .map(|f| {
            let (test, train) = (0..labels.len()).partition(|&i| fold_of[i] == f);
            (train, test)
        })
        .collect()
}

/// The grid: each config fitted with the most estimators, scored at every stage.
fn grid() -> Vec<(&'static str, ModelConfig, Vec<usize>)> {
    let mut g = vec![(
        "RandomForest",
        ModelConfig::RandomForest(RandomForestParams { n_estimators: 256, ..Default::default() }),
        vec![8, 16, 32, 128, 256],
    )];
    for criterion in [Criterion::Gini, Criterion::Entropy, Criterion::LogLoss] {
        let p = DecisionTreeParams { criterion, ..Default::default() };
        g.push(("DecisionTree", ModelConfig::DecisionTree(p), vec![]));
    }
    for learning_rate in [0.1, 0.01, 0.05, 0.001] {
        for subsample in [0.6, 0.7, 0.75, 0.85, 0.9] {
            let p = GradientBoostingParams { learning_rate, subsample, n_estimators: 256, ..Default::default() };
            g.push(("GradientBoosting", ModelConfig::GradientBoosting(p), STAGES.to_vec()));
        }
    }
    g.push(("LogisticRegression", ModelConfig::LogisticRegression(LogisticRegressionParams::default()), vec![]));
    for learning_rate in [0.1, 0.01, 0.001] {
        let p = AdaBoostParams { learning_rate, n_estimators: 256, ..Default::default() };
        g.push(("AdaBoost", ModelConfig::AdaBoost(p), STAGES.to_vec()));
    }
    g
}

/// Probabilities of `model` on `rows` for each stage (one entry for non-ensembles).
fn stage_probas(model: &Model, rows: &[f32], stages: &[usize]) -> Vec<Vec<f64>> {
    model.staged_predict_proba(rows, stages).unwrap_or_else(|| vec![model.predict_proba(rows)])
}

fn time<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed().as_secs_f64())
}

/// CPU seconds used so far by the live threads of the process (Linux only, else 0): on a
/// shared machine wall time also counts other processes' work, CPU time does not.
fn cpu_seconds() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0.0 };
    let on_cpu_ns = |dir: std::fs::DirEntry| -> Option<f64> {
        let stat = std::fs::read_to_string(dir.path().join("schedstat")).ok()?;
        stat.split_whitespace().next()?.parse().ok()
    };
    tasks.filter_map(|t| t.ok().and_then(on_cpu_ns)).sum::<f64>() / 1e9
}

/// One staged fit (and staged prediction) per family at one training size.
fn per_family(train: &Data, test: &Data, label: &str) {
    let (data, prep_s) = time(|| train.prepare());
    println!("\n{label}: {} rows ({} distinct), prepare {:.1} ms", train.n(), data.n_unique(), prep_s * 1e3);
    let mut seen = Vec::new();
    for (family, config, stages) in grid() {
        if seen.contains(&family) {
            continue;
        }
        seen.push(family);
        let cpu0 = cpu_seconds();
        let (model, fit_s) = time(|| config.fit_prepared(&data).unwrap());
        let cpu1 = cpu_seconds();
        let (probas, pred_s) = time(|| stage_probas(&model, &test.rows, &stages));
        let f1s: Vec<String> = probas.iter().map(|p| format!("{:.4}", f1(&test.labels, p))).collect();
        println!(
            "  {family:<18} fit {:>7.1} ms ({:>7.1} ms CPU)  staged predict {:>5.1} ms  F1 by stage [{}]",
            fit_s * 1e3,
            (cpu1 - cpu0) * 1e3,
            pred_s * 1e3,
            f1s.join(", ")
        );
    }
}

/// Result of the grid search of one family.
struct Winner {
    family: &'static str,
    config: ModelConfig,
    cv_accuracy: f64,
}

/// The whole search: every (fold, config) job in parallel, then the best of each family by
/// mean CV accuracy (first in grid order on ties).
fn search(train: &Data) -> Vec<Winner> {
    let grid = grid();
    let folds = folds(&train.labels);
    let prepared: Vec<(Prepared, Data)> =
        folds.par_iter().map(|(tr, te)| (train.subset(tr).prepare(), train.subset(te))).collect();
    let jobs: Vec<(usize, usize)> = (0..grid.len()).flat_map(|g| (0..3).map(move |f| (g, f))).collect();
    let scores: Vec<Vec<f64>> = jobs
        .par_iter()
        .map(|&(g, f)| {
            let (data, test) = &prepared[f];
            let model = grid[g].1.fit_prepared(data).unwrap();
            let probas = stage_probas(&model, &test.rows, &grid[g].2);
            probas.iter().map(|p| accuracy(&test.labels, p)).collect()
        })
        .collect();
    let mut winners: Vec<Winner> = Vec::new();
    for (g, (family, config, stages)) in grid.iter().enumerate() {
        let folds = &scores[g * 3..g * 3 + 3];
        let means: Vec<f64> = (0..stages.len().max(1)).map(|s| folds.iter().map(|f| f[s]).sum::<f64>() / 3.0).collect();
        for (s, mean) in means.into_iter().enumerate() {
            let config = stages.get(s).map_or(config.clone(), |&n| config.with_n_estimators(n));
            match winners.iter_mut().find(|w| w.family == *family) {
                Some(w) if mean <= w.cv_accuracy => {}
                Some(w) => *w = Winner { family, config, cv_accuracy: mean },
                None => winners.push(Winner { family, config, cv_accuracy: mean }),
            }
        }
    }
    winners
}

/// Refits each winner on the whole training set, in parallel.
fn refit(winners: &[Winner], train: &Data) -> Vec<Model> {
    let data = train.prepare();
    winners.par_iter().map(|w| w.config.fit_prepared(&data).unwrap()).collect()
}

fn prediction_speed(train: &Data, test: &Data) {
    let config = ModelConfig::RandomForest(RandomForestParams { n_estimators: 256, ..Default::default() });
    let model = config.fit(&Samples::new(&train.rows, N_FEATURES, &train.labels).unwrap()).unwrap();
    let row = &test.rows[..N_FEATURES];
    let reps = 2000;
    let (_, s) = time(|| {
        (0..reps).map(|i| model.predict_proba(&test.rows[(i % test.n()) * N_FEATURES..][..N_FEATURES])[0]).sum::<f64>()
    });
    println!("\nRF-256 one row: {:.2} us per call ({:?})", s / reps as f64 * 1e6, model.predict_proba(row));
    let batch: Vec<f32> = test.rows.iter().copied().cycle().take(test.rows.len() * 100).collect();
    let n = batch.len() / N_FEATURES;
    let (_, s) = time(|| model.predict_proba(&batch));
    println!("RF-256 batch of {n} rows: {:.0} rows/s", n as f64 / s);
    let bytes = postcard::to_allocvec(&model).unwrap();
    println!("RF-256 postcard size: {} KiB", bytes.len() / 1024);
}

fn main() {
    let path = std::env::args().nth(1).unwrap_or_else(|| "../shared/data/phishing.csv".into());
    let all = Data::load(&path);
    let (train_idx, test_idx) = split(all.n(), 42);
    let (train, test) = (all.subset(&train_idx), all.subset(&test_idx));
    println!("threads: {}; train {} rows, test {} rows", rayon::current_num_threads(), train.n(), test.n());
    let (tr, te) = &folds(&train.labels)[0];
    per_family(&train.subset(tr), &train.subset(te), "CV fold");
    per_family(&train, &test, "Full training set");

    let cpu0 = cpu_seconds();
    let (winners, search_s) = time(|| search(&train));
    let cpu1 = cpu_seconds();
    let (models, refit_s) = time(|| refit(&winners, &train));
    let cpu2 = cpu_seconds();
    println!(
        "\nGrid search (3-fold CV, {} jobs): {:.3} s wall, {:.2} s CPU; refit of the 5 winners: {:.3} s wall, {:.2} s CPU",
        grid().len() * 3,
        search_s,
        cpu1 - cpu0,
        refit_s,
        cpu2 - cpu1
    );
    println!(
        "Whole search: {:.3} s wall, {:.2} s CPU (on 2 idle cores: about {:.2} s)",
        search_s + refit_s,
        cpu2 - cpu0,
        (cpu2 - cpu0) / 2.0
    );
    for (w, m) in winners.iter().zip(&models) {
        let test_f1 = f1(&test.labels, &m.predict_proba(&test.rows));
        println!("  {:<18} cv accuracy {:.4}  test F1 {:.4}  {:?}", w.family, w.cv_accuracy, test_f1, w.config);
    }
    prediction_speed(&train, &test);
}
