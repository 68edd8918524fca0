//! Forest prediction by row sets: a block of up to 256 rows goes down each tree as bit masks
//! instead of row by row. Each distinct `(feature, threshold)` of the forest is a condition;
//! for a block, one mask per condition says which rows go right. A node splits its set of
//! rows with two ANDs, so the rows of a block share the walk through the top of every tree:
//! on deep forests (random forests) that visits a few nodes per row instead of a whole path.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::tree::Tree;

/// Words of a row mask.
const WORDS: usize = 4;

/// Rows per block.
pub const BLOCK_ROWS: usize = 64 * WORDS;

/// A set of rows of a block.
pub type Mask = [u64; WORDS];

/// Above this many conditions, computing a block's masks costs more than it saves.
const MAX_CONDITIONS: usize = 4096;

/// A node's `cond` holds the condition number in its low bits, and whether its left and
/// right child are leaves in the two top bits.
const COND_MASK: u16 = 0x3fff;
const LEAF_FLAGS: [u16; 2] = [1 << 14, 1 << 15];

/// The distinct conditions of a forest; each node's `cond` indexes them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conditions {
    features: Vec<u16>,
    thresholds: Vec<f32>,
}

impl Conditions {
    /// Numbers the distinct conditions of the trees' split nodes and stores each node's
    /// number and its children's leaf flags in it; None when there are too many conditions
    /// to be worth it.
    pub fn assign(trees: &mut [Tree]) -> Option<Self> {
        let mut index: HashMap<(u16, u32), u16> = HashMap::new();
        let mut conds = Conditions { features: Vec::new(), thresholds: Vec::new() };
        for tree in trees.iter_mut() {
            let leaves: Vec<bool> = (0..tree.nodes().len()).map(|i| tree.is_leaf(i)).collect();
            for (i, node) in tree.nodes_mut().iter_mut().enumerate() {
                if leaves[i] {
                    continue;
                }
                let key = (node.feature, node.threshold.to_bits());
                let next = index.len();
                let c = *index.entry(key).or_insert_with(|| {
                    conds.features.push(node.feature);
                    conds.thresholds.push(node.threshold);
                    next as u16
                });
                node.cond = c;
                for side in 0..2 {
                    if leaves[node.children[side] as usize] {
                        node.cond |= LEAF_FLAGS[side];
                    }
                }
                if index.len() > MAX_CONDITIONS {
                    return None;
                }
            }
        }
        Some(conds)
    }

    /// The masks of a block of at most [`BLOCK_ROWS`] row-major rows: bit `r` of mask `c` is
    /// set when row `r` goes right at condition `c`.
    pub fn masks(&self, rows: &[f32], n_features: usize, out: &mut Vec<Mask>) {
        out.clear();
        for (&f, &t) in self.features.iter().zip(&self.thresholds) {
            let mut m = [0u64; WORDS];
            for (r, row) in rows.chunks_exact(n_features).enumerate() {
                m[r / 64] |= u64::from(row[usize::from(f)] > t) << (r % 64);
            }
            out.push(m);
        }
    }
}

/// The set of the first `n` rows of a block.
pub fn first_rows(n: usize) -> Mask {
    std::array::from_fn(|w| match n.saturating_sub(w * 64) {
        0 => 0,
        k if k >= 64 => u64::MAX,
        k => (1u64 << k) - 1,
    })
}

/// Scratch space of [`sweep`].
#[derive(Default)]
pub struct Scratch {
    level: Vec<(u32, Mask)>,
    next: Vec<(u32, Mask)>,
    leaves: Vec<(u32, Mask)>,
}

/// Adds `scale` times the leaf value each row of `rows` reaches in `tree` to `out[row]`;
/// `masks` are the block's condition masks.
///
/// The tree is swept level by level, so the nodes of a level are loaded independently of
/// each other (the forest does not fit in cache; a chain of dependent loads would wait on
/// each). Data-dependent branches cost too: a child's set is written both to the next level
/// and to the list of reached leaves, and only the right one (if the set is not empty) is
/// advanced, whether the child is a leaf being read from the parent's flags.
pub fn sweep(tree: &Tree, masks: &[Mask], rows: Mask, scale: f64, out: &mut [f64], scratch: &mut Scratch) {
    let nodes = tree.nodes();
    if tree.is_leaf(0) {
        return add_leaf(rows, scale * tree.values()[0], out);
    }
    let Scratch { level, next, leaves } = scratch;
    for buffer in [&mut *level, &mut *next, &mut *leaves] {
        buffer.resize(BLOCK_ROWS + 1, (0, [0; WORDS]));
    }
    level[0] = (0, rows);
    let (mut width, mut found) = (1, 0);
    while width > 0 {
        let mut grown = 0;
        for &(i, set) in &level[..width] {
            let node = &nodes[i as usize];
            let go = &masks[usize::from(node.cond & COND_MASK)];
            for (side, flip) in [(1, 0), (0, !0)] {
                let part = set_and(&set, go, flip);
                let busy = part.iter().any(|&w| w != 0);
                let leaf = node.cond & LEAF_FLAGS[side] != 0;
                next[grown] = (node.children[side], part);
                leaves[found] = (node.children[side], part);
                grown += usize::from(busy & !leaf);
                found += usize::from(busy & leaf);
            }
        }
        std::mem::swap(level, next);
        width = grown;
    }
    for &(i, set) in &leaves[..found] {
        add_leaf(set, scale * tree.values()[i as usize], out);
    }
}

/// `set & (go ^ flip)`: the rows going right (`flip = 0`) or left (`flip = !0`).
#[inline(always)]
fn set_and(set: &Mask, go: &Mask, flip: u64) -> Mask {
    std::array::from_fn(|w| set[w] & (go[w] ^ flip))
}

fn add_leaf(set: Mask, value: f64, out: &mut [f64]) {
    for (w, &word) in set.iter().enumerate() {
        let mut bits = word;
        while bits != 0 {
            out[w * 64 + bits.trailing_zeros() as usize] += value;
            bits &= bits - 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learn::tree::Node;

    #[test]
    fn sweeping_equals_walking() {
        let nodes = vec![
            Node { feature: 0, cond: 0, threshold: 0.5, children: [1, 4] },
            Node { feature: 1, cond: 0, threshold: -0.5, children: [2, 3] },
            Node::leaf(2),
            Node::leaf(3),
            Node::leaf(4),
        ];
        let mut trees = vec![Tree::new(nodes, vec![0.0, 0.0, 0.25, 0.5, 1.0], 2)];
        let conds = Conditions::assign(&mut trees).unwrap();
        let rows: Vec<f32> = (0..300).flat_map(|i| [(i % 3) as f32 - 1.0, (i % 5) as f32 - 2.0]).collect();
        let mut masks = Vec::new();
        let mut stack = Scratch::default();
        for block in rows.chunks(BLOCK_ROWS * 2) {
            let n = block.len() / 2;
            conds.masks(block, 2, &mut masks);
            let mut out = vec![0.0; n];
            sweep(&trees[0], &masks, first_rows(n), 2.0, &mut out, &mut stack);
            for (r, o) in out.iter().enumerate() {
                assert_eq!(*o, 2.0 * trees[0].predict_row(&block[2 * r..2 * r + 2]));
            }
        }
    }
}
