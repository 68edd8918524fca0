//! Prediction over many trees: weighted sums of tree outputs, for a batch (in parallel over
//! blocks of rows, each block bit-sliced and walking one tree after the other, all its rows at
//! once), staged (after the first `k` trees for several `k` at once), and for a single row.
//! The walking itself is [`super::compiled`]'s.
//!
//! Large batches are first reduced to their distinct rows: identical rows get identical
//! outputs, and real batches of this data repeat rows a lot.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use rayon::prelude::*;

use super::compiled::{Compiled, MAX_BLOCK_ROWS, MAX_BLOCK_WORDS};

/// Panics unless `rows` is a whole number of rows of `n_features`.
pub fn check_rows(rows: &[f32], n_features: usize) {
    assert!(
        n_features > 0 && rows.len().is_multiple_of(n_features),
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

/// The sums of every tree model: the compiled ensemble over batches of rows.
impl Compiled {
    /// `sum_t weights[t] * tree_t(row)` for every row of row-major `rows`.
    pub fn sums(&self, rows: &[f32]) -> Vec<f64> {
        let n_features = self.n_features();
        check_rows(rows, n_features);
        if rows.len() == n_features {
            return vec![self.row_sum(rows)];
        }
        self.staged_sums(rows, &[self.n_trees()]).pop().unwrap_or_default()
    }

    /// The weighted sums after the first `stages[i]` trees (capped at the number of trees),
    /// for every stage and row, from one pass over the trees.
    pub fn staged_sums(&self, rows: &[f32], stages: &[usize]) -> Vec<Vec<f64>> {
        let n_features = self.n_features();
        check_rows(rows, n_features);
        let n = rows.len() / n_features;
        if n >= DEDUP_MIN_ROWS {
            let (distinct, index) = distinct_rows(rows, n_features);
            // Worth it only when a tenth of the rows or more are repeats.
            if distinct.len() / n_features * 10 <= n * 9 {
                let sums = self.all_blocks(&distinct, stages);
                return sums.iter().map(|s| index.iter().map(|&i| s[i as usize]).collect()).collect();
            }
        }
        self.all_blocks(rows, stages)
    }

    /// The staged sums of every row, in parallel over blocks of rows: as few blocks as fit,
    /// but at least one per thread (and as even as can be) while blocks have 64 rows or more.
    /// Blocks are cut from the rows ordered by [`Compiled::similar_first`].
    fn all_blocks(&self, rows: &[f32], stages: &[usize]) -> Vec<Vec<f64>> {
        let n_features = self.n_features();
        let n = rows.len() / n_features;
        let threads = rayon::current_num_threads();
        let blocks = n.div_ceil(MAX_BLOCK_ROWS).next_multiple_of(threads).min(n.div_ceil(64)).max(1);
        if blocks == 1 {
            return self.block(rows, stages);
        }
        let order = self.similar_first(rows);
        let sorted: Vec<f32> = order
            .iter()
            .flat_map(|&r| &rows[r as usize * n_features..(r as usize + 1) * n_features])
            .copied()
            .collect();
        let block_rows = n.div_ceil(blocks);
        let parts: Vec<Vec<Vec<f64>>> =
            sorted.par_chunks(block_rows * n_features).map(|b| self.block(b, stages)).collect();
        (0..stages.len())
            .map(|s| {
                let mut sums = vec![0.0; n];
                for (&r, &sum) in order.iter().zip(parts.iter().flat_map(|p| &p[s])) {
                    sums[r as usize] = sum;
                }
                sums
            })
            .collect()
    }

    /// The staged sums of one block of rows, bit-sliced in as few words as hold it.
    fn block(&self, rows: &[f32], stages: &[usize]) -> Vec<Vec<f64>> {
        match (rows.len() / self.n_features()).div_ceil(64) {
            0 | 1 => self.block_of::<1>(rows, stages),
            2 => self.block_of::<2>(rows, stages),
            _ => self.block_of::<MAX_BLOCK_WORDS>(rows, stages),
        }
    }

    /// Trees in order over the block, a snapshot of the sums at each stage.
    fn block_of<const W: usize>(&self, rows: &[f32], stages: &[usize]) -> Vec<Vec<f64>> {
        let mut columns = self.columns::<W>(rows);
        let mut out = vec![Vec::new(); stages.len()];
        let mut acc = vec![0.0; rows.len() / self.n_features()];
        let mut done = 0;
        let mut order: Vec<usize> = (0..stages.len()).collect();
        order.sort_by_key(|&s| stages[s]);
        for s in order {
            let upto = stages[s].min(self.n_trees());
            for t in done..upto.max(done) {
                self.add_tree_to(t, &mut columns, &mut acc);
            }
            done = done.max(upto);
            out[s] = acc.clone();
        }
        out
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
    use crate::learn::tree::{Node, Tree};

    fn stump(feature: u16, lo: f64, hi: f64) -> Tree {
        let nodes = vec![Node { feature, threshold: 0.5, children: [1, 2] }, Node::leaf(1), Node::leaf(2)];
        Tree::new(nodes, vec![0.0, lo, hi], 1)
    }

    /// x0 <= 0.5 ? (x1 <= -0.5 ? a : b) : c, with leaves reached down both sides.
    fn deeper(a: f64, b: f64, c: f64) -> Tree {
        let nodes = vec![
            Node { feature: 0, threshold: 0.5, children: [1, 4] },
            Node { feature: 1, threshold: -0.5, children: [2, 3] },
            Node::leaf(2),
            Node::leaf(3),
            Node::leaf(4),
        ];
        Tree::new(nodes, vec![0.0, 0.0, a, b, c], 2)
    }

    #[test]
    fn staged_sums_match_prefix_sums_and_walking_the_fitted_trees() {
        let trees: Vec<Tree> = (0..20)
            .map(|t| if t % 3 == 0 { deeper(t as f64, 0.5, -1.0) } else { stump(t % 2, t as f64, -(t as f64)) })
            .collect();
        let weights: Vec<f64> = (0..20).map(|t| 1.0 + t as f64 / 10.0).collect();
        let rows: Vec<f32> = (0..1000).flat_map(|i| [(i % 3) as f32 - 1.0, (i % 5 / 2) as f32 - 1.0]).collect();
        let compiled = Compiled::new(&trees, &weights, 2);
        let staged = compiled.staged_sums(&rows, &[20, 3, 99]);
        for (s, &k) in [20usize, 3, 20].iter().enumerate() {
            let prefix = Compiled::new(&trees[..k], &weights[..k], 2);
            for r in 0..1000 {
                let row = &rows[2 * r..2 * r + 2];
                let walked = trees[..k].iter().zip(&weights).fold(0.0, |sum, (t, w)| sum + w * t.predict_row(row));
                assert_eq!(staged[s][r], walked);
                assert_eq!(prefix.row_sum(row), walked);
            }
        }
        assert_eq!(compiled.sums(&rows), staged[0]);
    }

    /// Rows that are all distinct (no reduction), in every block size, and none at all.
    #[test]
    fn blocks_of_every_size_sum_as_walking_the_fitted_trees() {
        let trees: Vec<Tree> =
            (0..9).map(|t| if t % 2 == 0 { deeper(t as f64, -0.25, 2.0) } else { stump(1, 0.5, t as f64) }).collect();
        let weights: Vec<f64> = (0..9).map(|t| 0.5 + t as f64).collect();
        let compiled = Compiled::new(&trees, &weights, 2);
        for n in [0, 1, 63, 64, 65, 129, 200, 511, 512, 513, 1500] {
            let rows: Vec<f32> = (0..n).flat_map(|i| [(i % 3) as f32 - 1.0, i as f32 / 7.0 - 20.0]).collect();
            let sums = compiled.sums(&rows);
            assert_eq!(sums.len(), n);
            for (r, sum) in sums.iter().enumerate() {
                let row = &rows[2 * r..2 * r + 2];
                let walked = trees.iter().zip(&weights).fold(0.0, |s, (t, w)| s + w * t.predict_row(row));
                assert_eq!(*sum, walked, "row {r} of {n}");
            }
        }
    }

    #[test]
    fn similar_first_orders_all_rows_by_the_first_conditions() {
        // Conditions numbered as met: x0 > 0.5 first, then x1 > -0.5.
        let compiled = Compiled::new(&[deeper(1.0, 2.0, 3.0)], &[1.0], 2);
        let rows: Vec<f32> = (0..600).flat_map(|i| [(i % 3) as f32 - 1.0, (i % 7 % 2) as f32 - 1.0]).collect();
        let order = compiled.similar_first(&rows);
        let mut seen = order.clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..600).collect::<Vec<u32>>(), "a permutation");
        let key = |r: u32| {
            let row = &rows[2 * r as usize..2 * r as usize + 2];
            (row[0] > 0.5, row[1] > -0.5)
        };
        assert!(order.windows(2).all(|p| key(p[0]) <= key(p[1])), "sorted by x0's split, then x1's");
    }

    #[test]
    fn signatures_of_many_words_walk_as_one_word_does() {
        // 70 features with a split each: 70 conditions, two signature words.
        let trees: Vec<Tree> = (0..70).map(|f| stump(f, f as f64, -(f as f64))).collect();
        let weights = vec![1.0; 70];
        let compiled = Compiled::new(&trees, &weights, 70);
        assert_eq!(compiled.words(), 2);
        let rows: Vec<f32> = (0..70 * 300).map(|i| ((i * 7 + i / 70) % 3) as f32 - 1.0).collect();
        let sums = compiled.sums(&rows);
        for (r, sum) in sums.iter().enumerate() {
            let row = &rows[70 * r..70 * (r + 1)];
            let walked = trees.iter().fold(0.0, |s, t| s + t.predict_row(row));
            assert_eq!(*sum, walked);
            assert_eq!(compiled.row_sum(row), walked);
        }
    }
}
