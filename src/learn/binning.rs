//! Feature binning: each feature's raw values are mapped once to at most 255 ordered bins, so
//! split search works on small integer histograms; split thresholds are turned back into raw
//! values so that prediction never needs the bins.

use serde::{Deserialize, Serialize};

/// The most bins a feature may have (bins are stored as u8).
pub const MAX_BINS: usize = 255;

/// The bins of one feature.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureBins {
    /// Bin `b` holds the values `x` with `uppers[b - 1] < x <= uppers[b]` (the last is +inf).
    uppers: Vec<f32>,
    /// Smallest and largest training value seen in each bin, for raw thresholds.
    mins: Vec<f32>,
    maxs: Vec<f32>,
}

impl FeatureBins {
    /// Bins for one feature's training values (all finite).
    fn fit(values: &mut [f32], max_bins: usize) -> Self {
        values.sort_unstable_by(f32::total_cmp);
        let mut distinct = values.to_vec();
        distinct.dedup();
        let uppers = if distinct.len() <= max_bins {
            // Few values: one bin each, cut halfway between neighbours.
            let mut cuts: Vec<f32> = distinct.windows(2).map(|w| midpoint(w[0], w[1])).collect();
            cuts.push(f32::INFINITY);
            cuts
        } else {
            quantile_cuts(values, max_bins)
        };
        let n = uppers.len();
        let mut bins = FeatureBins { uppers, mins: vec![f32::INFINITY; n], maxs: vec![f32::NEG_INFINITY; n] };
        for &v in values.iter() {
            let b = bins.bin(v) as usize;
            bins.mins[b] = bins.mins[b].min(v);
            bins.maxs[b] = bins.maxs[b].max(v);
        }
        bins
    }

    /// Number of bins.
    pub fn len(&self) -> usize {
        self.uppers.len()
    }

    /// Whether the feature has no bins (never true for a fitted feature).
    pub fn is_empty(&self) -> bool {
        self.uppers.is_empty()
    }

    /// The bin of a raw value.
    pub fn bin(&self, value: f32) -> u8 {
        self.uppers.partition_point(|&u| u < value) as u8
    }

    /// The raw threshold separating bin `left` from bin `right` (`left < right`, bins in
    /// between empty): halfway between the values seen, as scikit-learn places it, and such
    /// that every training value of `left` satisfies `x <= t` and none of `right` does.
    pub fn threshold(&self, left: usize, right: usize) -> f32 {
        let (lo, hi) = (self.maxs[left], self.mins[right]);
        let t = midpoint(lo, hi);
        if t >= hi {
            lo
        } else {
            t
        }
    }
}

/// Halfway between two values, computed in f64 so that it cannot overflow.
fn midpoint(a: f32, b: f32) -> f32 {
    ((f64::from(a) + f64::from(b)) / 2.0) as f32
}

/// Upper edges at evenly spaced quantiles of the sorted values, deduplicated.
fn quantile_cuts(sorted: &[f32], max_bins: usize) -> Vec<f32> {
    let n = sorted.len();
    let mut cuts: Vec<f32> = (1..max_bins).map(|q| sorted[q * n / max_bins - 1]).collect();
    cuts.dedup();
    // The largest value must fall in the last bin, not above every cut.
    if cuts.last() == sorted.last() {
        cuts.pop();
    }
    cuts.push(f32::INFINITY);
    cuts
}

/// The bins of every feature, fitted on training rows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BinMapper {
    features: Vec<FeatureBins>,
}

impl BinMapper {
    /// Fits bins on row-major `rows` of `n_features` finite values.
    pub fn fit(rows: &[f32], n_features: usize, max_bins: usize) -> Self {
        let max_bins = max_bins.clamp(2, MAX_BINS);
        let n_rows = rows.len() / n_features.max(1);
        let features = (0..n_features)
            .map(|f| {
                let mut column: Vec<f32> = (0..n_rows).map(|r| rows[r * n_features + f]).collect();
                FeatureBins::fit(&mut column, max_bins)
            })
            .collect();
        BinMapper { features }
    }

    pub fn n_features(&self) -> usize {
        self.features.len()
    }

    pub fn feature(&self, f: usize) -> &FeatureBins {
        &self.features[f]
    }

    /// Column-major bins of row-major `rows`.
    pub fn transform(&self, rows: &[f32]) -> Vec<u8> {
        let n_features = self.n_features();
        let n_rows = rows.len() / n_features.max(1);
        let mut bins = vec![0u8; n_rows * n_features];
        for (f, column) in bins.chunks_mut(n_rows.max(1)).enumerate().take(n_features) {
            let fb = &self.features[f];
            for (r, b) in column.iter_mut().enumerate() {
                *b = fb.bin(rows[r * n_features + f]);
            }
        }
        bins
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_values_get_one_bin_each_and_midpoint_thresholds() {
        let rows = [-1.0, 1.0, 0.0, 1.0, -1.0];
        let m = BinMapper::fit(&rows, 1, 255);
        assert_eq!(m.feature(0).len(), 3);
        assert_eq!(m.transform(&rows), vec![0, 2, 1, 2, 0]);
        assert_eq!(m.feature(0).threshold(0, 1), -0.5);
        assert_eq!(m.feature(0).threshold(0, 2), 0.0);
        assert_eq!(m.feature(0).threshold(1, 2), 0.5);
        // Unseen values fall in the bin whose cut they do not exceed.
        assert_eq!(m.feature(0).bin(0.4), 1);
        assert_eq!(m.feature(0).bin(7.0), 2);
    }

    #[test]
    fn many_values_are_cut_at_quantiles() {
        let rows: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        let m = BinMapper::fit(&rows, 1, 10);
        let fb = m.feature(0);
        assert_eq!(fb.len(), 10);
        let bins = m.transform(&rows);
        assert!(bins.windows(2).all(|w| w[0] <= w[1]));
        for b in 0..9 {
            let t = fb.threshold(b, b + 1);
            for (i, &bin) in bins.iter().enumerate() {
                assert_eq!(rows[i] <= t, bin as usize <= b);
            }
        }
    }

    #[test]
    fn adjacent_floats_keep_a_separating_threshold() {
        let a = 1.0f32;
        let b = f32::from_bits(a.to_bits() + 1);
        let m = BinMapper::fit(&[a, b], 1, 255);
        let t = m.feature(0).threshold(0, 1);
        assert!(a <= t && b > t);
    }
}
