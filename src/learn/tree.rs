//! A fitted tree, stored flat so that prediction is a tight loop over an array of nodes.
//!
//! Every node holds a feature, a raw threshold and two child indices; a leaf points to itself
//! with both children, so that rows can take branch-free steps in groups until none moves.
//! A row goes left when `!(x > threshold)`, i.e. `x <= threshold` for numbers (and NaN goes
//! left).

use serde::{Deserialize, Serialize};

/// One node of a flat tree.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub feature: u16,
    /// Index of `(feature, threshold)` in the ensemble's condition table (see
    /// [`super::sweep`]); 0 when the tree stands alone.
    pub cond: u16,
    pub threshold: f32,
    /// Left and right child; both equal the node's own index at a leaf.
    pub children: [u32; 2],
}

impl Node {
    /// A leaf at index `index` (its threshold is unused: both children are itself; a finite
    /// one keeps it representable in JSON).
    pub fn leaf(index: usize) -> Self {
        Node { feature: 0, cond: 0, threshold: 0.0, children: [index as u32; 2] }
    }

    /// The child a row takes.
    #[inline(always)]
    pub fn next(&self, row: &[f32]) -> u32 {
        self.children[usize::from(row[self.feature as usize] > self.threshold)]
    }
}

/// A fitted tree: nodes, a value per node (used at leaves: the probability of class 1 for a
/// classifier, the output for a regressor) and the depth of its deepest leaf.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    nodes: Vec<Node>,
    values: Vec<f64>,
    depth: u32,
}

/// Rows walked together: independent walks overlap their memory latency.
const GROUP: usize = 8;

impl Tree {
    pub fn new(nodes: Vec<Node>, values: Vec<f64>, depth: u32) -> Self {
        debug_assert_eq!(nodes.len(), values.len());
        Tree { nodes, values, depth }
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn values(&self) -> &[f64] {
        &self.values
    }

    pub fn nodes_mut(&mut self) -> &mut [Node] {
        &mut self.nodes
    }

    pub fn values_mut(&mut self) -> &mut [f64] {
        &mut self.values
    }

    pub fn depth(&self) -> u32 {
        self.depth
    }

    pub fn is_leaf(&self, node: usize) -> bool {
        self.nodes[node].children[0] as usize == node
    }

    /// Number of leaves.
    pub fn n_leaves(&self) -> usize {
        (0..self.nodes.len()).filter(|&i| self.is_leaf(i)).count()
    }

    /// The leaf a row reaches.
    #[inline]
    pub fn leaf(&self, row: &[f32]) -> usize {
        let mut i = 0u32;
        loop {
            let node = &self.nodes[i as usize];
            let next = node.next(row);
            if next == i {
                return i as usize;
            }
            i = next;
        }
    }

    /// The value of the leaf a row reaches.
    #[inline]
    pub fn predict_row(&self, row: &[f32]) -> f64 {
        self.values[self.leaf(row)]
    }

    /// Adds `scale` times the tree's value to `out[r]` for every row of the row-major block
    /// `rows` (`n_features` columns). Rows walk in groups, one step each in turn, so their
    /// memory accesses overlap; a group stops once no row moved (all reached self-looping
    /// leaves).
    pub fn add_to(&self, rows: &[f32], n_features: usize, scale: f64, out: &mut [f64]) {
        let mut group = rows.chunks_exact(GROUP * n_features);
        let mut outs = out.chunks_exact_mut(GROUP);
        for (block, out) in (&mut group).zip(&mut outs) {
            let rows: [&[f32]; GROUP] = std::array::from_fn(|r| &block[r * n_features..(r + 1) * n_features]);
            let idx = self.walk(rows);
            for (o, &i) in out.iter_mut().zip(&idx) {
                *o += scale * self.values[i as usize];
            }
        }
        for (row, o) in group.remainder().chunks(n_features).zip(outs.into_remainder()) {
            *o += scale * self.predict_row(row);
        }
    }

    /// The leaves of a group of rows.
    #[inline]
    fn walk<const G: usize>(&self, rows: [&[f32]; G]) -> [u32; G] {
        let mut idx = [0u32; G];
        loop {
            let mut moved = false;
            for (i, row) in idx.iter_mut().zip(&rows) {
                let next = self.nodes[*i as usize].next(row);
                moved |= next != *i;
                *i = next;
            }
            if !moved {
                return idx;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// x0 <= 0.5 ? (x1 <= 0.5 ? 0.1 : 0.2) : 0.9
    fn sample() -> Tree {
        let nodes = vec![
            Node { feature: 0, cond: 0, threshold: 0.5, children: [1, 4] },
            Node { feature: 1, cond: 0, threshold: 0.5, children: [2, 3] },
            Node::leaf(2),
            Node::leaf(3),
            Node::leaf(4),
        ];
        Tree::new(nodes, vec![0.0, 0.0, 0.1, 0.2, 0.9], 2)
    }

    #[test]
    fn rows_reach_their_leaves() {
        let t = sample();
        assert_eq!(t.predict_row(&[0.0, 0.0]), 0.1);
        assert_eq!(t.predict_row(&[0.5, 1.0]), 0.2);
        assert_eq!(t.predict_row(&[1.0, 0.0]), 0.9);
        assert_eq!(t.n_leaves(), 3);
    }

    #[test]
    fn block_prediction_matches_row_prediction() {
        let t = sample();
        let rows: Vec<f32> = (0..100).flat_map(|i| [(i % 3) as f32 * 0.5, (i % 2) as f32]).collect();
        let mut out = vec![1.0; 50];
        t.add_to(&rows, 2, 2.0, &mut out);
        for (r, o) in out.iter().enumerate() {
            assert_eq!(*o, 1.0 + 2.0 * t.predict_row(&rows[r * 2..r * 2 + 2]));
        }
    }
}
