//! Training data: the caller's rows ([`Samples`]) and their binned, deduplicated form
//! ([`Prepared`]) that the tree learners work on.
//!
//! Identical rows (same bins, label and sample weight) are merged into one weighted row: the
//! phishing data holds about half duplicates, and every learner here treats `k` copies of a
//! row exactly like one row of `k` times the weight. Random draws over rows (bootstrap,
//! subsampling) are still made over the original rows and then counted per merged row, so
//! their distribution is unchanged.

use super::binning::{BinMapper, FeatureBins, MAX_BINS};
use super::error::{LearnError, Result};
use super::packing::Packing;

/// The most features a row may have (tree nodes store features as u16).
pub const MAX_FEATURES: usize = u16::MAX as usize;

/// Borrowed training data: row-major features, 0/1 labels, optional sample weights.
#[derive(Clone, Copy, Debug)]
pub struct Samples<'a> {
    rows: &'a [f32],
    n_features: usize,
    labels: &'a [u8],
    weights: Option<&'a [f64]>,
}

impl<'a> Samples<'a> {
    /// Checks shapes, labels and values: every feature must be finite.
    pub fn new(rows: &'a [f32], n_features: usize, labels: &'a [u8]) -> Result<Self> {
        if n_features == 0 || n_features > MAX_FEATURES || !rows.len().is_multiple_of(n_features) {
            return Err(LearnError::Shape { len: rows.len(), n_features });
        }
        let n = rows.len() / n_features;
        if n == 0 {
            return Err(LearnError::Empty);
        }
        if labels.len() != n {
            return Err(LearnError::Labels { rows: n, labels: labels.len() });
        }
        if let Some(&bad) = labels.iter().find(|&&y| y > 1) {
            return Err(LearnError::Label(bad));
        }
        if let Some(i) = rows.iter().position(|v| !v.is_finite()) {
            return Err(LearnError::NotFinite { row: i / n_features, feature: i % n_features });
        }
        Ok(Samples { rows, n_features, labels, weights: None })
    }

    /// Adds sample weights (non-negative, finite, not all zero).
    pub fn with_weights(mut self, weights: &'a [f64]) -> Result<Self> {
        if weights.len() != self.n_rows() {
            return Err(LearnError::Weights { rows: self.n_rows(), weights: weights.len() });
        }
        if let Some(&bad) = weights.iter().find(|w| !(w.is_finite() && **w >= 0.0)) {
            return Err(LearnError::Weight(bad));
        }
        if weights.iter().all(|&w| w == 0.0) {
            return Err(LearnError::ZeroWeight);
        }
        self.weights = Some(weights);
        Ok(self)
    }

    pub fn n_rows(&self) -> usize {
        self.labels.len()
    }

    pub fn n_features(&self) -> usize {
        self.n_features
    }

    pub fn rows(&self) -> &'a [f32] {
        self.rows
    }

    pub fn labels(&self) -> &'a [u8] {
        self.labels
    }

    pub fn weights(&self) -> Option<&'a [f64]> {
        self.weights
    }

    fn weight(&self, i: usize) -> f64 {
        self.weights.map_or(1.0, |w| w[i])
    }
}

/// Training data binned and merged, ready for the tree learners; build it once per training
/// set and fit many models from it (a grid over one CV fold).
#[derive(Clone, Debug)]
pub struct Prepared {
    mapper: BinMapper,
    /// Column-major bins of the merged rows: feature `f` of row `r` is `bins[f * n + r]`.
    bins: Vec<u8>,
    /// Joint codes of few-bin features, for faster histograms.
    packing: Packing,
    labels: Vec<u8>,
    /// Weight of one original sample of each merged row.
    unit_weights: Vec<f64>,
    /// How many original rows each merged row stands for.
    counts: Vec<u32>,
    /// The merged row of each original row.
    origin: Vec<u32>,
    /// Whether every sample weight is 1, so weights count samples.
    unit: bool,
    /// The original data, for learners that need every row (logistic regression).
    raw_rows: Vec<f32>,
    raw_labels: Vec<u8>,
    raw_weights: Option<Vec<f64>>,
}

impl Prepared {
    /// Bins the features (at most 255 bins each) and merges identical rows.
    pub fn new(samples: &Samples<'_>) -> Result<Self> {
        Self::with_max_bins(samples, MAX_BINS)
    }

    /// As [`Prepared::new`] with fewer bins per feature.
    pub fn with_max_bins(samples: &Samples<'_>, max_bins: usize) -> Result<Self> {
        let nf = samples.n_features();
        let mapper = BinMapper::fit(samples.rows(), nf, max_bins);
        let row_bins = row_major_bins(&mapper, samples.rows(), nf);
        let (order, origin) = merge(samples, &row_bins, nf);
        let first: Vec<usize> = order.iter().map(|group| group[0]).collect();
        let n = first.len();
        let mut bins = vec![0u8; n * nf];
        for (u, &i) in first.iter().enumerate() {
            for f in 0..nf {
                bins[f * n + u] = row_bins[i * nf + f];
            }
        }
        let n_bins: Vec<usize> = (0..nf).map(|f| mapper.feature(f).len()).collect();
        Ok(Prepared {
            packing: Packing::new(&n_bins, &bins, n),
            bins,
            labels: first.iter().map(|&i| samples.labels()[i]).collect(),
            unit_weights: first.iter().map(|&i| samples.weight(i)).collect(),
            counts: order.iter().map(|group| group.len() as u32).collect(),
            origin,
            unit: samples.weights().is_none_or(|w| w.iter().all(|&x| x == 1.0)),
            mapper,
            raw_rows: samples.rows().to_vec(),
            raw_labels: samples.labels().to_vec(),
            raw_weights: samples.weights().map(<[f64]>::to_vec),
        })
    }

    pub fn n_features(&self) -> usize {
        self.mapper.n_features()
    }

    /// Number of merged rows.
    pub fn n_unique(&self) -> usize {
        self.labels.len()
    }

    /// Number of original rows.
    pub fn n_rows(&self) -> usize {
        self.origin.len()
    }

    pub fn feature_bins(&self, f: usize) -> &FeatureBins {
        self.mapper.feature(f)
    }

    /// The bins of feature `f` for every merged row.
    pub fn column(&self, f: usize) -> &[u8] {
        let n = self.n_unique();
        &self.bins[f * n..(f + 1) * n]
    }

    /// The packs of features sharing joint codes.
    pub fn packing(&self) -> &Packing {
        &self.packing
    }

    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    pub fn unit_weights(&self) -> &[f64] {
        &self.unit_weights
    }

    pub fn counts(&self) -> &[u32] {
        &self.counts
    }

    pub fn origin(&self) -> &[u32] {
        &self.origin
    }

    /// Whether sample weights are all 1, so that a weight is also a sample count.
    pub fn unit_weighted(&self) -> bool {
        self.unit
    }

    /// Total weight of each merged row (count times unit weight).
    pub fn weights(&self) -> Vec<f64> {
        self.counts.iter().zip(&self.unit_weights).map(|(&c, &w)| f64::from(c) * w).collect()
    }

    /// Weighted share of label 1, or None when only one class has weight.
    pub fn positive_share(&self) -> Option<f64> {
        let (mut pos, mut all) = (0.0, 0.0);
        for (u, w) in self.weights().into_iter().enumerate() {
            all += w;
            if self.labels[u] == 1 {
                pos += w;
            }
        }
        let p = pos / all;
        (p > 0.0 && p < 1.0).then_some(p)
    }

    /// The original data as given.
    pub fn raw(&self) -> Samples<'_> {
        Samples {
            rows: &self.raw_rows,
            n_features: self.n_features(),
            labels: &self.raw_labels,
            weights: self.raw_weights.as_deref(),
        }
    }
}

fn row_major_bins(mapper: &BinMapper, rows: &[f32], nf: usize) -> Vec<u8> {
    rows.chunks(nf).flat_map(|row| row.iter().enumerate().map(|(f, &v)| mapper.feature(f).bin(v))).collect()
}

/// Groups of identical original rows (by bins, label and weight) in a deterministic order,
/// and the group of each original row.
fn merge(samples: &Samples<'_>, row_bins: &[u8], nf: usize) -> (Vec<Vec<usize>>, Vec<u32>) {
    let n = samples.n_rows();
    let key = |i: usize| (&row_bins[i * nf..(i + 1) * nf], samples.labels()[i], samples.weight(i).to_bits());
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| key(a).cmp(&key(b)).then(a.cmp(&b)));
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut origin = vec![0u32; n];
    for (k, &i) in order.iter().enumerate() {
        if k == 0 || key(order[k - 1]) != key(i) {
            groups.push(Vec::new());
        }
        origin[i] = (groups.len() - 1) as u32;
        groups.last_mut().expect("a group was pushed").push(i);
    }
    (groups, origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_rows_merge_into_counts() {
        let rows = [1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0];
        let labels = [1, 1, 0, 0];
        let p = Prepared::new(&Samples::new(&rows, 2, &labels).unwrap()).unwrap();
        assert_eq!(p.n_unique(), 3);
        assert_eq!(p.n_rows(), 4);
        assert_eq!(p.counts().iter().sum::<u32>(), 4);
        let u = p.origin()[0] as usize;
        assert_eq!(p.origin()[1] as usize, u);
        assert_eq!(p.counts()[u], 2);
        assert_eq!(p.labels()[u], 1);
        assert!(p.unit_weighted());
    }

    #[test]
    fn bad_inputs_are_refused() {
        assert!(Samples::new(&[1.0, 2.0, 3.0], 2, &[0]).is_err());
        assert!(Samples::new(&[1.0, 2.0], 2, &[2]).is_err());
        assert!(Samples::new(&[f32::NAN, 2.0], 2, &[0]).is_err());
        let s = Samples::new(&[1.0, 2.0], 2, &[0]).unwrap();
        assert!(s.with_weights(&[-1.0]).is_err());
        assert!(s.with_weights(&[0.0]).is_err());
    }
}
