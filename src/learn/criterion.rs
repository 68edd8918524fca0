//! Split criteria and the best split of one feature's histogram.
//!
//! Histogram lanes: for classification lane 0 and 1 hold the weight of class 0 and class 1;
//! for regression lane 0 holds the weight and lane 1 the weighted target. With `L == 3`,
//! lane 2 counts samples (used when weights are not themselves counts).

use serde::{Deserialize, Serialize};

use super::hist::Entry;

/// scikit-learn's threshold below which a node's impurity counts as zero (a pure node).
pub const EPSILON: f64 = f64::EPSILON;

/// Classification impurity measure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Criterion {
    #[default]
    Gini,
    Entropy,
    /// Same as entropy, as in scikit-learn.
    LogLoss,
}

/// What a tree learns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    Classify(Criterion),
    /// Regression with the Friedman MSE improvement (the split it picks is the same as
    /// squared error's: the two differ by a factor that is constant within a node).
    Regress,
}

impl Task {
    /// Total weight of an entry.
    pub fn weight<const L: usize>(self, e: &Entry<L>) -> f64 {
        match self {
            Task::Classify(_) => e[0] + e[1],
            Task::Regress => e[0],
        }
    }

    /// Number of samples of an entry: the count lane if any, else the weight.
    pub fn count<const L: usize>(self, e: &Entry<L>) -> f64 {
        if L > 2 {
            e[2]
        } else {
            self.weight(e)
        }
    }

    /// Impurity of a node with sums `e` (`sum_sq` = weighted sum of squared targets, for
    /// regression only).
    pub fn impurity<const L: usize>(self, e: &Entry<L>, sum_sq: f64) -> f64 {
        match self {
            Task::Classify(Criterion::Gini) => 1.0 - gini_sq(e[0], e[1]),
            Task::Classify(_) => entropy(e[0], e[1]),
            Task::Regress => {
                let mean = e[1] / e[0];
                sum_sq / e[0] - mean * mean
            }
        }
    }

    /// scikit-learn's proxy improvement of a split (larger is better).
    fn proxy<const L: usize>(self, left: &Entry<L>, right: &Entry<L>) -> f64 {
        match self {
            Task::Classify(Criterion::Gini) => {
                let (wl, wr) = (left[0] + left[1], right[0] + right[1]);
                -wr * (1.0 - gini_sq(right[0], right[1])) - wl * (1.0 - gini_sq(left[0], left[1]))
            }
            Task::Classify(_) => {
                let (wl, wr) = (left[0] + left[1], right[0] + right[1]);
                -wr * entropy(right[0], right[1]) - wl * entropy(left[0], left[1])
            }
            Task::Regress => {
                let diff = right[0] * left[1] - left[0] * right[1];
                diff * diff / (left[0] * right[0])
            }
        }
    }
}

/// Sum of squared class shares.
fn gini_sq(c0: f64, c1: f64) -> f64 {
    let w = c0 + c1;
    (c0 * c0 + c1 * c1) / (w * w)
}

/// Entropy in bits of a two-class node.
fn entropy(c0: f64, c1: f64) -> f64 {
    let w = c0 + c1;
    [c0, c1]
        .iter()
        .filter(|&&c| c > 0.0)
        .map(|&c| {
            let p = c / w;
            -p * p.log2()
        })
        .sum()
}

/// The best split of one feature in a node.
#[derive(Clone, Copy, Debug)]
pub struct Split<const L: usize> {
    pub feature: usize,
    /// Rows with bin `<= bin` go left.
    pub bin: usize,
    /// The first non-empty bin on the right, for the raw threshold.
    pub right_bin: usize,
    pub proxy: f64,
    pub left: Entry<L>,
}

/// What split search found in one feature.
pub enum Scan<const L: usize> {
    /// At most one bin holds rows: the feature cannot split this node or its descendants.
    Constant,
    /// No split leaves `min_leaf` samples on both sides.
    NoSplit,
    Best(Split<L>),
}

/// Scans the bins of feature `feature` (its slice `bins` of the node's histogram) for the
/// split with the best proxy improvement; ties go to the lower bin.
pub fn best_split<const L: usize>(
    task: Task,
    feature: usize,
    bins: &[Entry<L>],
    total: &Entry<L>,
    min_leaf: f64,
) -> Scan<L> {
    let mut left = [0.0; L];
    let mut prev: Option<usize> = None;
    let mut best: Option<Split<L>> = None;
    let mut non_empty = 0;
    for (b, e) in bins.iter().enumerate() {
        if task.count(e) <= 0.0 {
            continue;
        }
        non_empty += 1;
        if let Some(a) = prev {
            let right: Entry<L> = std::array::from_fn(|l| total[l] - left[l]);
            if task.count(&left) >= min_leaf && task.count(&right) >= min_leaf {
                let proxy = task.proxy(&left, &right);
                if best.is_none_or(|s| proxy > s.proxy) {
                    best = Some(Split { feature, bin: a, right_bin: b, proxy, left });
                }
            }
        }
        for l in 0..L {
            left[l] += e[l];
        }
        prev = Some(b);
    }
    match best {
        _ if non_empty <= 1 => Scan::Constant,
        None => Scan::NoSplit,
        Some(s) => Scan::Best(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gini_prefers_the_separating_bin() {
        // Bins: 0 all class 0, 1 empty, 2 all class 1, 3 mixed.
        let bins = [[4.0, 0.0], [0.0, 0.0], [0.0, 3.0], [1.0, 1.0]];
        let total = [5.0, 4.0];
        let Scan::Best(s) = best_split(Task::Classify(Criterion::Gini), 7, &bins, &total, 1.0) else {
            panic!("a split exists")
        };
        assert_eq!((s.feature, s.bin, s.right_bin), (7, 0, 2));
        assert_eq!(s.left, [4.0, 0.0]);
    }

    #[test]
    fn constant_and_unsplittable_features_are_told_apart() {
        let task = Task::Classify(Criterion::Entropy);
        let one = [[0.0, 0.0], [2.0, 1.0]];
        assert!(matches!(best_split(task, 0, &one, &[2.0, 1.0], 1.0), Scan::Constant));
        let two = [[1.0, 0.0], [2.0, 1.0]];
        assert!(matches!(best_split(task, 0, &two, &[3.0, 1.0], 2.0), Scan::NoSplit));
    }

    #[test]
    fn friedman_proxy_ranks_like_squared_error() {
        let task = Task::Regress;
        let bins = [[2.0, 2.0], [1.0, -1.0], [3.0, -3.0]];
        let Scan::Best(s) = best_split(task, 0, &bins, &[6.0, -2.0], 1.0) else { panic!("a split exists") };
        assert_eq!(s.bin, 0);
        // Pure node: every target equal.
        assert_eq!(task.impurity(&[2.0, 4.0], 8.0), 0.0);
    }
}
