//! Speed of the two-sample KS test that validation runs on every feature column (exact
//! p-values for the pipeline's sizes, the asymptotic one for large samples). Each figure is the
//! fastest of a few repetitions, since the machine may be shared. `cargo bench --bench ks`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::samples::{continuous, phishing_columns, ternary};
use netsec::stats::ks::{ks_2samp, KsResult};

fn fastest(repeats: usize, f: impl Fn() -> KsResult) -> (Duration, KsResult) {
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
    let (t, r) = fastest(3, || ks_2samp(&a, &b));
    println!("asymptotic 800000 vs 200000, continuous (sorting): {t:?} (D {}, p {:e})", r.statistic, r.p_value);
}
