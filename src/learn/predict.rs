//! Prediction over many trees: weighted sums of tree outputs, for a batch (in parallel over
//! blocks of rows), staged (after the first `k` trees for several `k` at once), and for a
//! single row (walking several trees in lockstep to overlap their memory latency).

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

/// The weighted sum for one row, walking `TREE_GROUP` trees in lockstep.
pub fn row_sum(trees: &[Tree], weights: &[f64], row: &[f32]) -> f64 {
    let mut sum = 0.0;
    for (group, ws) in trees.chunks(TREE_GROUP).zip(weights.chunks(TREE_GROUP)) {
        let mut idx = [0u32; TREE_GROUP];
        let depth = group.iter().map(Tree::depth).max().unwrap_or(0);
        for _ in 0..depth {
            for (i, tree) in idx.iter_mut().zip(group) {
                let node = &tree.nodes()[*i as usize];
                *i = node.children[usize::from(row[node.feature as usize] > node.threshold)];
            }
        }
        for ((i, tree), w) in idx.iter().zip(group).zip(ws) {
            sum += w * tree.values()[*i as usize];
        }
    }
    sum
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
