//! Prediction over many trees: weighted sums of tree outputs, for a batch (in parallel over
//! blocks of rows, each block bit-sliced and walking one tree after the other, all its rows at
//! once), staged (after the first `k` trees for several `k` at once), and for a single row.
//! The walking itself is [`super::compiled`]'s.
//!
//! Batches are first reduced to their distinct signatures (see
//! [`Compiled::distinct_signatures`]): rows that go the same way down every tree get the same
//! outputs, and real batches of this data repeat rows a lot.

use super::compiled::Compiled;
use super::row_mask::RowMask;
#[cfg(target_arch = "x86_64")]
use super::row_mask::{wide_available, Wide};

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
    ///
    /// Each distinct signature is walked once, in parallel over blocks cut from the order of
    /// [`Compiled::distinct_signatures`].
    pub fn staged_sums(&self, rows: &[f32], stages: &[usize]) -> Vec<Vec<f64>> {
        check_rows(rows, self.n_features());
        let (sigs, number) = self.distinct_signatures(rows);
        let parts = self.blocks(&sigs, stages);
        (0..stages.len())
            .map(|s| {
                let distinct: Vec<f64> = parts.iter().flat_map(|p| &p[s]).copied().collect();
                number.iter().map(|&d| distinct[d as usize]).collect()
            })
            .collect()
    }

    /// The staged sums of `sigs` (distinct signatures, in order), in blocks: as few as fit,
    /// but, when called from outside rayon's pool, at least one per thread (and as even as can
    /// be) while blocks have 64 rows or more. One entry per block, in order.
    fn blocks(&self, sigs: &[u64], stages: &[usize]) -> Vec<Vec<Vec<f64>>> {
        let words = self.words();
        let n = sigs.len() / words;
        // Called from inside the pool, the pool's other threads are most likely busy with
        // this call's siblings (a server's other uploads, a search's other fits), and two
        // blocks cost more than one: two of 400 rows visit about 1.4 times the nodes that one
        // of 800 does. So only a caller outside the pool (a batch job) splits for its threads.
        let threads = if rayon::current_thread_index().is_some() { 1 } else { rayon::current_num_threads() };
        let blocks = n.div_ceil(max_block_rows()).next_multiple_of(threads).min(n.div_ceil(64)).max(1);
        let block_rows = n.div_ceil(blocks).max(1);
        let blocks: Vec<&[u64]> = sigs.chunks(block_rows * words).collect();
        let mut parts: Vec<Vec<Vec<f64>>> = vec![Vec::new(); blocks.len()];
        // The calling thread walks the first block itself while the pool's threads take the
        // others: a pool thread that was asleep can take a millisecond to wake on this VM,
        // and when none did, the whole batch used to run on one thread, twice as long.
        rayon::in_place_scope(|scope| {
            let mut parts = parts.iter_mut().zip(&blocks);
            let first = parts.next();
            for (part, &block) in parts {
                scope.spawn(move |_| *part = self.block(block, stages));
            }
            if let Some((part, &block)) = first {
                *part = self.block(block, stages);
            }
        });
        parts
    }

    /// The staged sums of one block of rows (at most [`max_block_rows`]), bit-sliced in the
    /// narrowest mask that holds it.
    fn block(&self, sigs: &[u64], stages: &[usize]) -> Vec<Vec<f64>> {
        match (sigs.len() / self.words()).div_ceil(64) {
            0 | 1 => self.block_of::<[u64; 1]>(sigs, stages),
            2 => self.block_of::<[u64; 2]>(sigs, stages),
            3 | 4 => self.block_of::<[u64; 4]>(sigs, stages),
            #[cfg(target_arch = "x86_64")]
            words => {
                assert!(wide_available(), "blocks of over 256 rows only where AVX-512 is");
                // SAFETY: the CPU has AVX-512F, checked just above.
                unsafe {
                    if words <= 8 {
                        self.wide_block::<1>(sigs, stages)
                    } else {
                        self.wide_block::<2>(sigs, stages)
                    }
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => unreachable!("blocks of over 256 rows only where AVX-512 is"),
        }
    }

    /// [`Self::block_of`] in masks of `V` AVX-512 registers (`512 * V` rows), compiled with
    /// AVX-512 so that its mask operations are single instructions. Callers check that the CPU
    /// has AVX-512F.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn wide_block<const V: usize>(&self, sigs: &[u64], stages: &[usize]) -> Vec<Vec<f64>> {
        self.block_of::<Wide<V>>(sigs, stages)
    }

    /// Trees in order over the block, a snapshot of the sums at each stage.
    #[inline(always)]
    fn block_of<M: RowMask>(&self, sigs: &[u64], stages: &[usize]) -> Vec<Vec<f64>> {
        let mut columns = self.columns::<M>(sigs);
        let mut out = vec![Vec::new(); stages.len()];
        let rows = sigs.len() / self.words();
        let mut acc = vec![0.0; M::ROWS];
        let mut done = 0;
        let mut order: Vec<usize> = (0..stages.len()).collect();
        order.sort_by_key(|&s| stages[s]);
        for s in order {
            let upto = stages[s].min(self.n_trees());
            for t in done..upto.max(done) {
                self.add_tree_to(t, &mut columns, &mut acc);
            }
            done = done.max(upto);
            out[s] = acc[..rows].to_vec();
        }
        out
    }
}

/// Rows in the largest block: 1,024 where the CPU has AVX-512, else 256. A node costs the same
/// whether one row of a block reaches it or all do, so wider blocks pay at every deep, thinly
/// reached node; with the rows ordered by [`Compiled::distinct_signatures`], narrower blocks
/// still share the trees' tops. In 64-bit words, blocks of 128 to 256 rows were the fastest on
/// the shared data set's test rows (512 about 20% slower); in AVX-512 registers, whose mask
/// steps cost an instruction a register, blocks of up to 1,024 rows (the test rows' 1,546
/// signatures in two blocks, one per core) were 10% faster than of up to 512.
fn max_block_rows() -> usize {
    #[cfg(target_arch = "x86_64")]
    if wide_available() {
        return Wide::<2>::ROWS;
    }
    <[u64; 4]>::ROWS
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learn::tree::{Node, Tree};

    fn stump(feature: u16, lo: f64, hi: f64) -> Tree {
        stump_at(feature, 0.5, lo, hi)
    }

    fn stump_at(feature: u16, threshold: f32, lo: f64, hi: f64) -> Tree {
        let nodes = vec![Node { feature, threshold, children: [1, 2] }, Node::leaf(1), Node::leaf(2)];
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

    /// Rows whose signatures are all distinct (nothing to reduce), in every block size, and
    /// none at all.
    #[test]
    fn blocks_of_every_size_sum_as_walking_the_fitted_trees() {
        // 40 thresholds on each feature: a grid of 41 x 41 distinct signatures.
        let trees: Vec<Tree> = (0..85)
            .map(|t| match t {
                0..40 => stump_at(0, t as f32 + 0.5, 0.5, t as f64),
                40..80 => stump_at(1, (t - 40) as f32 + 0.5, -1.5, t as f64),
                _ => deeper(t as f64, -0.25, 2.0),
            })
            .collect();
        let weights: Vec<f64> = (0..85).map(|t| 0.5 + t as f64).collect();
        let compiled = Compiled::new(&trees, &weights, 2);
        for n in [0, 1, 63, 64, 65, 129, 200, 511, 512, 513, 1025, 1500] {
            let rows: Vec<f32> = (0..n).flat_map(|i| [(i % 41) as f32, (i / 41) as f32]).collect();
            assert_eq!(compiled.distinct_signatures(&rows).0.len(), n * compiled.words(), "all distinct");
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
    fn distinct_signatures_are_ordered_by_the_first_conditions() {
        // Conditions numbered as met: x0 > 0.5 first, then x1 > -0.5.
        let compiled = Compiled::new(&[deeper(1.0, 2.0, 3.0)], &[1.0], 2);
        let rows: Vec<f32> = (0..600).flat_map(|i| [(i % 3) as f32 - 1.0, (i % 7 % 2) as f32 - 1.0]).collect();
        let (distinct, number) = compiled.distinct_signatures(&rows);
        let key = |sig: u64| (sig & 1, sig >> 1 & 1);
        assert_eq!(distinct.len(), 4, "two conditions, every way");
        assert!(distinct.windows(2).all(|p| key(p[0]) < key(p[1])), "sorted by x0's split, then x1's");
        let mut own = Vec::new();
        compiled.signatures(&rows, &mut own);
        assert_eq!(number.len(), 600);
        assert!(number.iter().zip(&own).all(|(&d, &sig)| distinct[d as usize] == sig), "each row's own");
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
