//! A fitted tree, stored flat so that prediction is a tight loop over an array of nodes.
//!
//! Every node holds a feature, a raw threshold and two child indices; a leaf points to itself
//! with both children. A row goes left when `!(x > threshold)`, i.e. `x <= threshold` for
//! numbers (and NaN goes left). This is the fitted, serialised form; ensembles predict through
//! [`super::compiled`], which is built from it.

use serde::{Deserialize, Serialize};

/// One node of a flat tree.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub feature: u16,
    pub threshold: f32,
    /// Left and right child; both equal the node's own index at a leaf.
    pub children: [u32; 2],
}

impl Node {
    /// A leaf at index `index` (its threshold is unused: both children are itself; a finite
    /// one keeps it representable in JSON).
    pub fn leaf(index: usize) -> Self {
        Node { feature: 0, threshold: 0.0, children: [index as u32; 2] }
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
}

#[cfg(test)]
mod tests {
    use super::*;

    /// x0 <= 0.5 ? (x1 <= 0.5 ? 0.1 : 0.2) : 0.9
    fn sample() -> Tree {
        let nodes = vec![
            Node { feature: 0, threshold: 0.5, children: [1, 4] },
            Node { feature: 1, threshold: 0.5, children: [2, 3] },
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
}
