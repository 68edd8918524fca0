//! Tree ensembles compiled for prediction.
//!
//! Every distinct split `(feature, threshold)` of an ensemble is numbered once. A row is first
//! turned into its *signature*, one bit per condition (set when the row goes right), so that a
//! step down a tree is a bit test on a word in a register instead of a feature load and a float
//! compare. Nodes are 8 bytes, laid out depth-first so that a left child is the next node (often
//! in the same cache line); a leaf loops on itself (its condition is a bit that is always set,
//! its right child itself), so rows or trees step together without branches until none moves.
//! Leaf values are multiplied by their tree's weight once, here.
//!
//! The sums add the trees in order, exactly as walking the fitted trees does.

use std::sync::OnceLock;

use super::tree::Tree;

/// One node: an internal node goes to `right` when its condition's bit is set, else to the
/// next node; a leaf has the always-set condition and itself as `right`.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
struct Step {
    cond: u32,
    right: u32,
}

/// An ensemble's trees and weights, compiled.
#[derive(Clone, Debug)]
pub struct Compiled {
    n_features: usize,
    /// Condition `c` holds for a row when `row[features[c]] > thresholds[c]`.
    features: Vec<u16>,
    thresholds: Vec<f32>,
    /// Words of a signature: the conditions plus the always-set bit.
    words: usize,
    steps: Vec<Step>,
    /// Per node: its tree's weight times the leaf value (0 at internal nodes).
    values: Vec<f64>,
    roots: Vec<u32>,
}

/// Trees walked together for one row, or rows walked together through one tree: independent
/// walks overlap their memory latency.
const GROUP: usize = 8;

impl Compiled {
    pub fn new(trees: &[Tree], weights: &[f64], n_features: usize) -> Compiled {
        assert_eq!(trees.len(), weights.len(), "one weight per tree");
        let mut numbers = std::collections::HashMap::new();
        let mut compiled = Compiled {
            n_features,
            features: Vec::new(),
            thresholds: Vec::new(),
            words: 0,
            steps: Vec::with_capacity(trees.iter().map(|t| t.nodes().len()).sum()),
            values: Vec::new(),
            roots: Vec::with_capacity(trees.len()),
        };
        for (tree, &weight) in trees.iter().zip(weights) {
            compiled.roots.push(compiled.steps.len() as u32);
            compiled.add_tree(tree, weight, &mut numbers);
        }
        // The always-set bit is the one after the last condition; leaves were given it.
        let always = compiled.features.len() as u32;
        for step in compiled.steps.iter_mut().filter(|s| s.cond == u32::MAX) {
            step.cond = always;
        }
        compiled.words = compiled.features.len() / 64 + 1;
        compiled
    }

    /// Appends `tree` depth-first (left child next), numbering its new conditions.
    fn add_tree(&mut self, tree: &Tree, weight: f64, numbers: &mut std::collections::HashMap<(u16, u32), u32>) {
        let nodes = tree.nodes();
        // (node of the tree, the step whose right child it is)
        let mut pending: Vec<(usize, Option<usize>)> = vec![(0, None)];
        while let Some((node, parent)) = pending.pop() {
            let at = self.steps.len();
            if let Some(parent) = parent {
                self.steps[parent].right = at as u32;
            }
            if tree.is_leaf(node) {
                // The always-set condition's number is known once every tree is in.
                self.steps.push(Step { cond: u32::MAX, right: at as u32 });
                self.values.push(weight * tree.values()[node]);
                continue;
            }
            let n = &nodes[node];
            let next = numbers.len() as u32;
            let cond = *numbers.entry((n.feature, n.threshold.to_bits())).or_insert_with(|| {
                self.features.push(n.feature);
                self.thresholds.push(n.threshold);
                next
            });
            self.steps.push(Step { cond, right: 0 });
            self.values.push(0.0);
            pending.push((n.children[1] as usize, Some(at)));
            pending.push((n.children[0] as usize, None));
        }
    }

    pub fn n_trees(&self) -> usize {
        self.roots.len()
    }

    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Words per signature.
    pub fn words(&self) -> usize {
        self.words
    }

    /// Writes the signature of each row of row-major `rows` into `out` (`words` per row).
    pub fn signatures(&self, rows: &[f32], out: &mut Vec<u64>) {
        let always = self.features.len();
        out.clear();
        for row in rows.chunks_exact(self.n_features) {
            let start = out.len();
            out.resize(start + self.words, 0);
            let sig = &mut out[start..];
            for (c, (&f, &t)) in self.features.iter().zip(&self.thresholds).enumerate() {
                sig[c / 64] |= u64::from(row[usize::from(f)] > t) << (c % 64);
            }
            sig[always / 64] |= 1 << (always % 64);
        }
    }

    /// `sum_t weight_t * tree_t(row)` for one row, walking [`GROUP`] trees at a time.
    pub fn row_sum(&self, row: &[f32]) -> f64 {
        let mut sig = Vec::with_capacity(self.words);
        self.signatures(row, &mut sig);
        match self.words {
            1 => self.row_sum_of(sig[0]),
            _ => self.row_sum_of(&sig[..]),
        }
    }

    fn row_sum_of<S: Bits>(&self, sig: S) -> f64 {
        let mut sum = 0.0;
        let sigs = [sig; GROUP];
        for roots in self.roots.chunks(GROUP) {
            // A short last group walks its last tree again in the spare lanes.
            let mut at: [u32; GROUP] = std::array::from_fn(|k| roots[k.min(roots.len() - 1)]);
            self.walk(&mut at, &sigs);
            sum = at[..roots.len()].iter().fold(sum, |s, &i| s + self.values[i as usize]);
        }
        sum
    }

    /// Adds tree `t`'s weighted value to `acc[r]` for every row `r` of `sigs` (signatures,
    /// `words` per row).
    pub fn add_tree_to(&self, t: usize, sigs: &[u64], acc: &mut [f64]) {
        match self.words {
            1 => self.add_tree_to_of(t, |r| sigs[r], acc),
            w => self.add_tree_to_of(t, |r| &sigs[r * w..(r + 1) * w], acc),
        }
    }

    fn add_tree_to_of<S: Bits>(&self, t: usize, sig_of: impl Fn(usize) -> S, acc: &mut [f64]) {
        let root = self.roots[t];
        for (g, acc) in acc.chunks_mut(GROUP).enumerate() {
            // A short last group walks its last row again in the spare lanes.
            let n = acc.len();
            let rows: [S; GROUP] = std::array::from_fn(|r| sig_of(g * GROUP + r.min(n - 1)));
            let mut at = [root; GROUP];
            self.walk(&mut at, &rows);
            for (a, &i) in acc.iter_mut().zip(&at) {
                *a += self.values[i as usize];
            }
        }
    }

    /// Steps every walk (a node and the signature it follows) until none moves: all at leaves.
    /// The step is a conditional move, not a branch: which way a row goes is data, and a
    /// mispredicted branch per step would cost more than the step.
    #[inline(always)]
    fn walk<S: Bits, const G: usize>(&self, at: &mut [u32; G], sigs: &[S; G]) {
        loop {
            let mut moved = false;
            for (i, sig) in at.iter_mut().zip(sigs) {
                let step = self.steps[*i as usize];
                let next = std::hint::select_unpredictable(sig.bit(step.cond), step.right, *i + 1);
                moved |= next != *i;
                *i = next;
            }
            if !moved {
                return;
            }
        }
    }
}

/// A row's signature: one word when the conditions fit in it (the common case, kept in a
/// register), else a slice of words.
trait Bits: Copy {
    fn bit(&self, cond: u32) -> bool;
}

impl Bits for u64 {
    #[inline(always)]
    fn bit(&self, cond: u32) -> bool {
        (self >> (cond & 63)) & 1 == 1
    }
}

impl Bits for &[u64] {
    #[inline(always)]
    fn bit(&self, cond: u32) -> bool {
        (self[(cond / 64) as usize] >> (cond % 64)) & 1 == 1
    }
}

/// A model's compiled ensemble, built on first use and never serialised (it is derived from
/// the trees). It compares equal to any other, so models compare by what they are, and a clone
/// starts empty, so a clone whose trees are then changed never predicts with the old ones.
#[derive(Default)]
pub struct CompiledCache(OnceLock<Compiled>);

impl Clone for CompiledCache {
    fn clone(&self) -> Self {
        CompiledCache::default()
    }
}

impl CompiledCache {
    pub fn get_or_build(&self, build: impl FnOnce() -> Compiled) -> &Compiled {
        self.0.get_or_init(build)
    }
}

impl PartialEq for CompiledCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for CompiledCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() { "compiled" } else { "not compiled yet" })
    }
}
