//! Prediction over many trees: weighted sums of tree outputs, for a batch (in parallel over
//! blocks of rows), staged (after the first `k` trees for several `k` at once), and for a
//! single row (walking several trees in turn to overlap their memory latency).
//!
//! Large batches are first reduced to their distinct rows: identical rows get identical
//! outputs, and real batches of this data repeat rows a lot.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use rayon::prelude::*;

use super::sweep::{first_rows, sweep, Conditions, Scratch, BLOCK_ROWS};
use super::tree::Tree;

/// Rows per parallel task: enough to amortise the scheduling, few enough to stay in cache
/// while every tree walks them.
const CHUNK_ROWS: usize = 64;

/// Trees walked together for one row.
const TREE_GROUP: usize = 8;

/// Panics unless `rows` is a whole number of rows of `n_features`.
pub fn check_rows(rows: &[f32], n_features: usize) {
    assert!(
        n_features > 0 && rows.len() % n_features == 0,
        "{} values is not a whole number of rows of {} features",
        rows.len(),
        n_features
    );
}

/// The logistic function.
pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Batches from this size on are reduced to distinct rows first.
const DEDUP_MIN_ROWS: usize = 512;

/// Trees whose outputs are summed with weights: the prediction of every tree model.
#[derive(Clone, Copy)]
pub struct Ensemble<'a> {
    pub trees: &'a [Tree],
    pub weights: &'a [f64],
    /// The forest's conditions, to sweep blocks of rows instead of walking rows.
    pub conditions: Option<&'a Conditions>,
    pub n_features: usize,
}

impl Ensemble<'_> {
    /// `sum_t weights[t] * tree_t(row)` for every row of row-major `rows`.
    pub fn sums(&self, rows: &[f32]) -> Vec<f64> {
        check_rows(rows, self.n_features);
        if rows.len() == self.n_features {
            return vec![self.row_sum(rows)];
        }
        self.staged_sums(rows, &[self.trees.len()]).pop().unwrap_or_default()
    }

    /// The weighted sums after the first `stages[i]` trees (capped at the number of trees),
    /// for every stage and row, from one pass over the trees.
    pub fn staged_sums(&self, rows: &[f32], stages: &[usize]) -> Vec<Vec<f64>> {
        check_rows(rows, self.n_features);
        let n = rows.len() / self.n_features;
        if n >= DEDUP_MIN_ROWS {
            let (distinct, index) = distinct_rows(rows, self.n_features);
            // Worth it only when a tenth of the rows or more are repeats.
            if distinct.len() / self.n_features * 10 <= n * 9 {
                let sums = self.all_blocks(&distinct, stages);
                return sums.iter().map(|s| index.iter().map(|&i| s[i as usize]).collect()).collect();
            }
        }
        self.all_blocks(rows, stages)
    }

    /// The staged sums of every row, in parallel over blocks of rows.
    fn all_blocks(&self, rows: &[f32], stages: &[usize]) -> Vec<Vec<f64>> {
        let block = if self.conditions.is_some() { BLOCK_ROWS } else { CHUNK_ROWS };
        let n = rows.len() / self.n_features;
        let parts: Vec<Vec<Vec<f64>>> = if n > block {
            rows.par_chunks(block * self.n_features).map(|b| self.block(b, stages)).collect()
        } else {
            vec![self.block(rows, stages)]
        };
        (0..stages.len()).map(|s| parts.iter().flat_map(|p| p[s].iter().copied()).collect()).collect()
    }

    /// The staged sums of one block of rows: trees in order, a snapshot at each stage.
    fn block(&self, rows: &[f32], stages: &[usize]) -> Vec<Vec<f64>> {
        let n = rows.len() / self.n_features;
        let mut masks = Vec::new();
        if let Some(c) = self.conditions {
            c.masks(rows, self.n_features, &mut masks);
        }
        let mut stack = Scratch::default();
        let mut add = |t: usize, acc: &mut [f64]| match self.conditions {
            Some(_) => sweep(&self.trees[t], &masks, first_rows(n), self.weights[t], acc, &mut stack),
            None => self.trees[t].add_to(rows, self.n_features, self.weights[t], acc),
        };
        let mut out = vec![Vec::new(); stages.len()];
        let mut acc = vec![0.0; n];
        let mut done = 0;
        let mut order: Vec<usize> = (0..stages.len()).collect();
        order.sort_by_key(|&s| stages[s]);
        for s in order {
            let upto = stages[s].min(self.trees.len());
            for t in done..upto.max(done) {
                add(t, &mut acc);
            }
            done = done.max(upto);
            out[s] = acc.clone();
        }
        out
    }

    /// The weighted sum for one row, walking `TREE_GROUP` trees in turn until none moves.
    pub fn row_sum(&self, row: &[f32]) -> f64 {
        let mut sum = 0.0;
        for (group, ws) in self.trees.chunks(TREE_GROUP).zip(self.weights.chunks(TREE_GROUP)) {
            let mut idx = [0u32; TREE_GROUP];
            loop {
                let mut moved = false;
                for (i, tree) in idx.iter_mut().zip(group) {
                    let next = tree.nodes()[*i as usize].next(row);
                    moved |= next != *i;
                    *i = next;
                }
                if !moved {
                    break;
                }
            }
            for ((i, tree), w) in idx.iter().zip(group).zip(ws) {
                sum += w * tree.values()[*i as usize];
            }
        }
        sum
    }
}

/// The distinct rows of a batch (by bit pattern) and, for each row, its distinct row.
fn distinct_rows(rows: &[f32], n_features: usize) -> (Vec<f32>, Vec<u32>) {
    let n = rows.len() / n_features;
    let mut seen: HashMap<RowKey<'_>, u32, BuildHasherDefault<FxHasher>> =
        HashMap::with_capacity_and_hasher(n.min(1 << 16), Default::default());
    let mut distinct = Vec::new();
    let index = rows
        .chunks(n_features)
        .map(|row| {
            let next = seen.len() as u32;
            *seen.entry(RowKey(row)).or_insert_with(|| {
                distinct.extend_from_slice(row);
                next
            })
        })
        .collect();
    (distinct, index)
}

/// A row compared and hashed by the bits of its values.
struct RowKey<'a>(&'a [f32]);

impl PartialEq for RowKey<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0.iter().zip(other.0).all(|(a, b)| a.to_bits() == b.to_bits())
    }
}

impl Eq for RowKey<'_> {}

impl Hash for RowKey<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for pair in self.0.chunks(2) {
            let hi = pair.get(1).map_or(0, |v| u64::from(v.to_bits()) << 32);
            state.write_u64(u64::from(pair[0].to_bits()) | hi);
        }
    }
}

/// The multiply-rotate hash of rustc (FxHash): fast for short keys; not DoS-resistant, which
/// only costs speed here.
#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learn::tree::Node;

    fn stump(feature: u16, lo: f64, hi: f64) -> Tree {
        let nodes = vec![Node { feature, cond: 0, threshold: 0.5, children: [1, 2] }, Node::leaf(1), Node::leaf(2)];
        Tree::new(nodes, vec![0.0, lo, hi], 1)
    }

    #[test]
    fn staged_sums_match_prefix_sums_walked_or_swept() {
        let mut trees: Vec<Tree> = (0..20).map(|t| stump(t % 2, t as f64, -(t as f64))).collect();
        let conds = Conditions::assign(&mut trees).unwrap();
        let weights: Vec<f64> = (0..20).map(|t| 1.0 + t as f64 / 10.0).collect();
        let rows: Vec<f32> = (0..1000).flat_map(|i| [(i % 2) as f32, (i % 3 / 2) as f32]).collect();
        for conditions in [None, Some(&conds)] {
            let e = Ensemble { trees: &trees, weights: &weights, conditions, n_features: 2 };
            let staged = e.staged_sums(&rows, &[20, 3, 99]);
            for (s, &k) in [20usize, 3, 20].iter().enumerate() {
                let prefix = Ensemble { trees: &trees[..k], weights: &weights[..k], ..e };
                for r in 0..1000 {
                    assert_eq!(staged[s][r], prefix.row_sum(&rows[2 * r..2 * r + 2]));
                }
            }
            assert_eq!(e.sums(&rows), staged[0]);
        }
    }
}
