//! Per-column drift between a reference and a current sample, with the test chosen by the
//! column's kind and the sample's size as Evidently (0.7) chooses it, and computed as
//! Evidently computes it (the Z-test's p-value from `erfc`, exact where Evidently's
//! `1 − Φ(|z|)` rounds to 0 beyond |z| ≈ 8.3), so that each column's score and verdict agree
//! with Evidently's (which corrects nothing for testing many columns):
//!
//! | reference rows (no NaN) | column | distinct values (both samples) | method |
//! |---|---|---|---|
//! | ≤ 1000 | any | ≤ 2 | two-proportion Z-test (p-value) |
//! | ≤ 1000 | categorical, or numerical with ≤ 5 | > 2 | chi-squared on the code counts (p-value) |
//! | ≤ 1000 | numerical | > 5 | two-sample Kolmogorov–Smirnov (p-value) |
//! | > 1000 | categorical, or numerical with ≤ 5 | any | Jensen–Shannon distance |
//! | > 1000 | numerical | > 5 | Wasserstein distance normed by the reference's deviation |
//!
//! The 30 features, codes in {-1, 0, 1}, are categorical. PSI is never chosen but can be
//! asked for, and is reported beside every categorical column as its effect size (the normed
//! Wasserstein distance for numerical ones).
//!
//! Missing and infinite values are dropped first, as Evidently drops them; a side with no
//! value left cannot be compared (`None`, where Evidently raises).

use serde::{Deserialize, Serialize};

use super::ks::ks_2samp;
use super::special::{chi2_sf, normal_two_sided};

/// How a column is tested: `auto` chooses as in the table above.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    #[default]
    Auto,
    Ks,
    Chi2,
    Z,
    JensenShannon,
    Psi,
    Wasserstein,
}

impl Method {
    /// Whether the method gives a p-value (else a distance, drifting at or above a threshold).
    pub fn is_test(self) -> bool {
        matches!(self, Method::Ks | Method::Chi2 | Method::Z)
    }

    pub fn name(self) -> &'static str {
        match self {
            Method::Auto => "auto",
            Method::Ks => "ks",
            Method::Chi2 => "chi2",
            Method::Z => "z",
            Method::JensenShannon => "jensenshannon",
            Method::Psi => "psi",
            Method::Wasserstein => "wasserstein",
        }
    }
}

/// Whether a column's values are categories (codes) or numbers on a scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Categorical,
    Numerical,
}

/// One column's comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    pub method: Method,
    /// The chi-squared statistic, z, the KS statistic D, or the distance.
    pub statistic: f64,
    /// For the tests (chi2, z, ks).
    pub p_value: Option<f64>,
    /// PSI for categorical columns, the normed Wasserstein distance for numerical ones.
    pub effect_size: f64,
}

impl Outcome {
    /// What Evidently reports as the column's drift score: the p-value or the distance.
    pub fn score(&self) -> f64 {
        self.p_value.unwrap_or(self.statistic)
    }
}

/// Compares `current` with `reference` by `method` (chosen when `Auto`); `None` when either
/// holds no finite value.
pub fn compare(method: Method, kind: Kind, reference: &[f64], current: &[f64]) -> Option<Outcome> {
    let reference: Vec<f64> = reference.iter().copied().filter(|v| v.is_finite()).collect();
    let current: Vec<f64> = current.iter().copied().filter(|v| v.is_finite()).collect();
    if reference.is_empty() || current.is_empty() {
        return None;
    }
    let counts = Counts::new(&reference, &current);
    let method = match method {
        Method::Auto => choose(kind, reference.len(), counts.values.len()),
        chosen => chosen,
    };
    let effect_size = match kind {
        Kind::Categorical => psi(&counts, kind),
        Kind::Numerical => wasserstein_normed(&counts),
    };
    let (statistic, p_value) = match method {
        Method::Chi2 => {
            let (statistic, p) = chi2(&counts);
            (statistic, Some(p))
        }
        Method::Z => {
            let (z, p) = z_test(&counts);
            (z, Some(p))
        }
        Method::Ks => {
            let result = ks_2samp(&reference, &current);
            (result.statistic, Some(result.p_value))
        }
        Method::JensenShannon => (jensen_shannon(&counts, kind), None),
        Method::Psi => (psi(&counts, kind), None),
        Method::Wasserstein | Method::Auto => (wasserstein_normed(&counts), None),
    };
    Some(Outcome { method, statistic, p_value, effect_size })
}

/// Evidently's default choice (`_get_default_stattest`).
pub fn choose(kind: Kind, reference_rows: usize, distinct_values: usize) -> Method {
    let scale = kind == Kind::Numerical && distinct_values > 5;
    match (reference_rows <= 1000, scale) {
        (true, true) => Method::Ks,
        (true, false) if distinct_values <= 2 => Method::Z,
        (true, false) => Method::Chi2,
        (false, true) => Method::Wasserstein,
        (false, false) => Method::JensenShannon,
    }
}

/// The two samples as counts over their sorted distinct values.
struct Counts<'a> {
    values: Vec<f64>,
    reference: Vec<f64>,
    current: Vec<f64>,
    /// The reference's own distinct values (it decides histogram binning).
    reference_distinct: usize,
    /// The samples themselves, for histogram bins.
    reference_raw: &'a [f64],
    current_raw: &'a [f64],
}

impl<'a> Counts<'a> {
    fn new(reference: &'a [f64], current: &'a [f64]) -> Counts<'a> {
        let distinct = |sample: &[f64]| {
            let mut values = sample.to_vec();
            values.sort_by(f64::total_cmp);
            values.dedup();
            values
        };
        let values = distinct(&[reference, current].concat());
        let count = |sample: &[f64]| {
            let mut counts = vec![0.0; values.len()];
            for v in sample {
                let at = values.partition_point(|x| x < v);
                counts[at] += 1.0;
            }
            counts
        };
        Counts {
            reference: count(reference),
            current: count(current),
            reference_distinct: distinct(reference).len(),
            values,
            reference_raw: reference,
            current_raw: current,
        }
    }

    fn sizes(&self) -> (f64, f64) {
        (self.reference.iter().sum(), self.current.iter().sum())
    }

    /// Evidently's `get_binned_data`: shares per value, or per Sturges bin over both samples
    /// for a numerical column with more than 20 distinct reference values.
    fn shares(&self, kind: Kind) -> (Vec<f64>, Vec<f64>) {
        if kind == Kind::Numerical && self.reference_distinct > 20 {
            let edges = sturges_edges(&[self.reference_raw, self.current_raw].concat());
            return (histogram_shares(self.reference_raw, &edges), histogram_shares(self.current_raw, &edges));
        }
        let (n_ref, n_cur) = self.sizes();
        (self.reference.iter().map(|c| c / n_ref).collect(), self.current.iter().map(|c| c / n_cur).collect())
    }
}

/// `scipy.stats.chisquare(observed, expected)` with the reference's counts scaled to the
/// current sample's size: `(statistic, p-value)`. A value the reference never holds makes
/// the statistic infinite and the p-value 0, as in scipy.
fn chi2(counts: &Counts) -> (f64, f64) {
    let (n_ref, n_cur) = counts.sizes();
    let statistic: f64 = counts
        .reference
        .iter()
        .zip(&counts.current)
        .map(|(r, observed)| {
            let expected = r * (n_cur / n_ref);
            (observed - expected).powi(2) / expected
        })
        .sum();
    let degrees = counts.values.len().saturating_sub(1);
    // One value in both samples: nothing differs (scipy would give NaN with no freedom).
    let p = if degrees == 0 { 1.0 } else { chi2_sf(statistic, degrees as f64) };
    (statistic, p)
}

/// Evidently's two-proportion Z-test: the smallest value against all others, pooled
/// variance, two-sided: `(z, p-value)`.
fn z_test(counts: &Counts) -> (f64, f64) {
    let (n_ref, n_cur) = counts.sizes();
    if counts.values.len() <= 1 {
        return (0.0, 1.0);
    }
    let p1 = (n_ref - counts.reference[0]) / n_ref;
    let p2 = (n_cur - counts.current[0]) / n_cur;
    let pooled = (p1 * n_ref + p2 * n_cur) / (n_ref + n_cur);
    let z = (p1 - p2) / (pooled * (1.0 - pooled) * (1.0 / n_ref + 1.0 / n_cur)).sqrt();
    (z, normal_two_sided(z))
}

/// `scipy.spatial.distance.jensenshannon(p, q)` (natural logarithm) on the shares.
fn jensen_shannon(counts: &Counts, kind: Kind) -> f64 {
    let (p, q) = counts.shares(kind);
    let relative_entropy = |x: f64, y: f64| if x > 0.0 { x * (x / y).ln() } else { 0.0 };
    let divergence: f64 = p
        .iter()
        .zip(&q)
        .map(|(&p, &q)| {
            let m = (p + q) / 2.0;
            relative_entropy(p, m) + relative_entropy(q, m)
        })
        .sum();
    (divergence / 2.0).max(0.0).sqrt()
}

/// The population stability index, `Σ (r − c) ln(r / c)`, with empty bins filled as
/// Evidently fills them (0.0001, or a millionth of the smallest share when that is smaller).
fn psi(counts: &Counts, kind: Kind) -> f64 {
    let (reference, current) = counts.shares(kind);
    let (reference, current) = (fill_zeroes(reference), fill_zeroes(current));
    reference.iter().zip(&current).map(|(r, c)| (r - c) * (r / c).ln()).sum()
}

fn fill_zeroes(mut shares: Vec<f64>) -> Vec<f64> {
    let smallest = shares.iter().copied().filter(|&s| s != 0.0).fold(f64::INFINITY, f64::min);
    let fill = if smallest <= 0.0001 { smallest / 1e6 } else { 0.0001 };
    shares.iter_mut().filter(|s| **s == 0.0).for_each(|s| *s = fill);
    shares
}

/// `scipy.stats.wasserstein_distance(reference, current) / max(np.std(reference), 0.001)`.
fn wasserstein_normed(counts: &Counts) -> f64 {
    let (n_ref, n_cur) = counts.sizes();
    let (mut u, mut v, mut distance) = (0.0, 0.0, 0.0);
    for i in 0..counts.values.len().saturating_sub(1) {
        u += counts.reference[i] / n_ref;
        v += counts.current[i] / n_cur;
        distance += (u - v).abs() * (counts.values[i + 1] - counts.values[i]);
    }
    let mean = counts.values.iter().zip(&counts.reference).map(|(x, c)| x * c).sum::<f64>() / n_ref;
    let variance =
        counts.values.iter().zip(&counts.reference).map(|(x, c)| c * (x - mean).powi(2)).sum::<f64>() / n_ref;
    distance / variance.sqrt().max(0.001)
}

/// `np.histogram_bin_edges(values, bins="sturges")`.
fn sturges_edges(values: &[f64]) -> Vec<f64> {
    let (mut first, mut last) =
        values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let spread = last - first;
    if first == last {
        (first, last) = (first - 0.5, last + 0.5);
    }
    let width = spread / ((values.len() as f64).log2() + 1.0);
    let bins = if width > 0.0 { ((last - first) / width).ceil() as usize } else { 1 };
    // As `np.linspace` computes them: i · step + first, the last edge exactly `last`.
    let step = (last - first) / bins as f64;
    let mut edges: Vec<f64> = (0..=bins).map(|i| i as f64 * step + first).collect();
    edges[bins] = last;
    edges
}

/// `np.histogram(values, edges)[0] / len(values)`: half-open bins, the last one closed.
fn histogram_shares(values: &[f64], edges: &[f64]) -> Vec<f64> {
    let bins = edges.len() - 1;
    let mut counts = vec![0.0; bins];
    for &v in values {
        if v < edges[0] || v > edges[bins] {
            continue;
        }
        let at = edges.partition_point(|&e| e <= v).saturating_sub(1).min(bins - 1);
        counts[at] += 1.0;
    }
    counts.iter().map(|c| c / values.len() as f64).collect()
}

/// How p-values are corrected for testing many columns at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Correction {
    /// Benjamini–Hochberg: controls the false discovery rate.
    #[default]
    BenjaminiHochberg,
    /// Bonferroni: controls the family-wise error rate (stricter).
    Bonferroni,
    /// Each column at the threshold, as Evidently does.
    None,
}

/// The corrected p-values, in the order given.
pub fn correct(p_values: &[f64], correction: Correction) -> Vec<f64> {
    let m = p_values.len() as f64;
    match correction {
        Correction::None => p_values.to_vec(),
        Correction::Bonferroni => p_values.iter().map(|p| (p * m).min(1.0)).collect(),
        Correction::BenjaminiHochberg => {
            let mut order: Vec<usize> = (0..p_values.len()).collect();
            order.sort_by(|&a, &b| p_values[a].total_cmp(&p_values[b]));
            let mut corrected = vec![0.0; p_values.len()];
            let mut running = 1.0_f64;
            // From the largest p-value down: the running minimum of p·m/rank.
            for (rank, &i) in order.iter().enumerate().rev() {
                running = running.min(p_values[i] * m / (rank + 1) as f64);
                corrected[i] = running;
            }
            corrected
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(counts: &[(f64, usize)]) -> Vec<f64> {
        counts.iter().flat_map(|&(v, n)| std::iter::repeat_n(v, n)).collect()
    }

    #[test]
    fn the_choice_follows_evidentlys_table() {
        use Kind::*;
        assert_eq!(choose(Categorical, 1000, 2), Method::Z);
        assert_eq!(choose(Categorical, 1000, 3), Method::Chi2);
        assert_eq!(choose(Categorical, 1000, 9), Method::Chi2);
        assert_eq!(choose(Numerical, 1000, 5), Method::Chi2);
        assert_eq!(choose(Numerical, 1000, 6), Method::Ks);
        assert_eq!(choose(Categorical, 1001, 3), Method::JensenShannon);
        assert_eq!(choose(Numerical, 1001, 5), Method::JensenShannon);
        assert_eq!(choose(Numerical, 1001, 6), Method::Wasserstein);
    }

    #[test]
    fn identical_samples_show_no_drift_by_any_method() {
        let a = sample(&[(-1.0, 30), (0.0, 50), (1.0, 20)]);
        for method in [Method::Chi2, Method::Z, Method::Ks, Method::JensenShannon, Method::Psi, Method::Wasserstein] {
            let outcome = compare(method, Kind::Categorical, &a, &a).unwrap();
            assert!(outcome.p_value.is_none_or(|p| p > 0.99), "{method:?}: {outcome:?}");
            assert!(method.is_test() || outcome.statistic.abs() < 1e-12, "{method:?}: {outcome:?}");
        }
    }

    #[test]
    fn a_value_the_reference_never_holds_is_certain_drift_for_chi2() {
        let reference = sample(&[(-1.0, 30), (1.0, 20)]);
        let current = sample(&[(-1.0, 30), (0.0, 1), (1.0, 20)]);
        let outcome = compare(Method::Chi2, Kind::Categorical, &reference, &current).unwrap();
        assert_eq!((outcome.statistic, outcome.p_value), (f64::INFINITY, Some(0.0)));
    }

    #[test]
    fn a_side_without_values_is_not_compared() {
        let values = sample(&[(-1.0, 30), (1.0, 20)]);
        let missing = vec![f64::NAN; 10];
        assert_eq!(compare(Method::Auto, Kind::Categorical, &values, &missing), None);
        assert_eq!(compare(Method::Chi2, Kind::Categorical, &[], &values), None);
    }

    #[test]
    fn missing_values_are_dropped() {
        let reference = sample(&[(-1.0, 30), (1.0, 20), (f64::NAN, 5)]);
        let clean = sample(&[(-1.0, 30), (1.0, 20)]);
        assert_eq!(
            compare(Method::Auto, Kind::Categorical, &reference, &clean),
            compare(Method::Auto, Kind::Categorical, &clean, &clean)
        );
    }

    #[test]
    fn benjamini_hochberg_and_bonferroni_match_statsmodels() {
        // statsmodels.stats.multitest.multipletests(p, method="fdr_bh" / "bonferroni").
        let p = [0.01, 0.04, 0.03, 0.2, 0.005];
        let bh = correct(&p, Correction::BenjaminiHochberg);
        let expected = [0.025, 0.05, 0.05, 0.2, 0.025];
        assert!(bh.iter().zip(expected).all(|(a, b)| (a - b).abs() < 1e-15), "{bh:?}");
        let bonferroni = correct(&p, Correction::Bonferroni);
        assert!(bonferroni.iter().zip([0.05, 0.2, 0.15, 1.0, 0.025]).all(|(a, b)| (a - b).abs() < 1e-15));
        assert_eq!(correct(&p, Correction::None), p);
    }

    #[test]
    fn sturges_edges_match_numpy() {
        // np.histogram_bin_edges(np.arange(100.0), "sturges"): 8 bins.
        let values: Vec<f64> = (0..100).map(f64::from).collect();
        let edges = sturges_edges(&values);
        assert_eq!(edges.len(), 9);
        assert_eq!((edges[0], edges[8]), (0.0, 99.0));
        let shares = histogram_shares(&values, &edges);
        assert!((shares.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }
}
