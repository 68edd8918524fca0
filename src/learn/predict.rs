//! Prediction over many trees: weighted sums of tree outputs, for a batch (in parallel over
//! blocks of rows), staged (after the first `k` trees for several `k` at once), and for a
//! single row (walking several trees in turn to overlap their memory latency).
//!
//! Large batches are first reduced to their distinct rows: identical rows get identical
//! outputs, and real batches of this data repeat rows a lot.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use rayon::prelude::*;

use super::tree::Tree;

/// Rows per parallel task: enough to amortise the scheduling, few enough to stay in cache
/// while every tree walks them.
const CHUNK_ROWS: usize = 256;

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

/// `sum_t weights[t] * tree_t(row)` for every row.
pub fn weighted_sum(trees: &[Tree], weights: &[f64], rows: &[f32], n_features: usize) -> Vec<f64> {
    check_rows(rows, n_features);
    if rows.len() == n_features {
        return vec![row_sum(trees, weights, rows)];
    }
    staged_sums(trees, weights, rows, n_features, &[trees.len()]).pop().unwrap_or_default()
}

/// The weighted sums after the first `stages[i]` trees (capped at the number of trees), for
/// every stage and row, from one walk over the trees.
pub fn staged_sums(
    trees: &[Tree],
    weights: &[f64],
    rows: &[f32],
    n_features: usize,
    stages: &[usize],
) -> Vec<Vec<f64>> {
    check_rows(rows, n_features);
    let n = rows.len() / n_features;
    if n >= DEDUP_MIN_ROWS {
        let (distinct, index) = distinct_rows(rows, n_features);
        // Worth it only when a tenth of the rows or more are repeats.
        if distinct.len() / n_features * 10 <= n * 9 {
            let sums = walk_all(trees, weights, &distinct, n_features, stages);
            return sums.iter().map(|s| index.iter().map(|&i| s[i as usize]).collect()).collect();
        }
    }
    walk_all(trees, weights, rows, n_features, stages)
}

/// The staged sums of every row, in parallel over blocks of rows.
fn walk_all(trees: &[Tree], weights: &[f64], rows: &[f32], n_features: usize, stages: &[usize]) -> Vec<Vec<f64>> {
    let n = rows.len() / n_features;
    let chunk = |rows: &[f32]| chunk_stages(trees, weights, rows, n_features, stages);
    let parts: Vec<Vec<Vec<f64>>> = if n > CHUNK_ROWS {
        rows.par_chunks(CHUNK_ROWS * n_features).map(chunk).collect()
    } else {
        vec![chunk(rows)]
    };
    (0..stages.len()).map(|s| parts.iter().flat_map(|p| p[s].iter().copied()).collect()).collect()
}

fn chunk_stages(
    trees: &[Tree],
    weights: &[f64],
    rows: &[f32],
    n_features: usize,
    stages: &[usize],
) -> Vec<Vec<f64>> {
    let mut out = vec![Vec::new(); stages.len()];
    let mut acc = vec![0.0; rows.len() / n_features];
    let mut done = 0;
    let mut order: Vec<usize> = (0..stages.len()).collect();
    order.sort_by_key(|&s| stages[s]);
    for s in order {
        let upto = stages[s].min(trees.len());
        for t in done..upto.max(done) {
            trees[t].add_to(rows, n_features, weights[t], &mut acc);
        }
        done = done.max(upto);
        out[s] = acc.clone();
    }
    out
}

/// The weighted sum for one row, walking `TREE_GROUP` trees in turn until none moves.
pub fn row_sum(trees: &[Tree], weights: &[f64], row: &[f32]) -> f64 {
    let mut sum = 0.0;
    for (group, ws) in trees.chunks(TREE_GROUP).zip(weights.chunks(TREE_GROUP)) {
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

    fn stump(feature: u32, lo: f64, hi: f64) -> Tree {
        let nodes = vec![
            Node { feature, threshold: 0.5, children: [1, 2] },
            Node::leaf(1),
            Node::leaf(2),
        ];
        Tree::new(nodes, vec![0.0, lo, hi], 1)
    }

    #[test]
    fn staged_sums_match_prefix_sums() {
        let trees: Vec<Tree> = (0..20).map(|t| stump(t % 2, t as f64, -(t as f64))).collect();
        let weights: Vec<f64> = (0..20).map(|t| 1.0 + t as f64 / 10.0).collect();
        let rows: Vec<f32> = (0..1000).flat_map(|i| [(i % 2) as f32, (i % 3 / 2) as f32]).collect();
        let staged = staged_sums(&trees, &weights, &rows, 2, &[20, 3, 99]);
        for (s, &k) in [20usize, 3, 20].iter().enumerate() {
            for r in 0..1000 {
                let row = &rows[2 * r..2 * r + 2];
                let want = row_sum(&trees[..k], &weights[..k], row);
                assert!((staged[s][r] - want).abs() < 1e-9);
            }
        }
        assert_eq!(weighted_sum(&trees, &weights, &rows, 2), staged[0]);
    }
}
