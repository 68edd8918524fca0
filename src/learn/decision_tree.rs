//! A single classification tree (scikit-learn's `DecisionTreeClassifier`).

use serde::{Deserialize, Serialize};

use super::criterion::{Criterion, Task};
use super::data::Prepared;
use super::error::Result;
use super::grow::{grow_tree, TreeRows, Workspace};
use super::params::{MaxFeatures, Shape};
use super::predict::check_rows;
use super::seed::{self, stream};
use super::tree::Tree;

/// Parameters, with scikit-learn's defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecisionTreeParams {
    pub criterion: Criterion,
    pub max_depth: Option<usize>,
    pub min_samples_split: usize,
    pub min_samples_leaf: usize,
    pub max_features: MaxFeatures,
    pub seed: u64,
}

impl Default for DecisionTreeParams {
    fn default() -> Self {
        DecisionTreeParams {
            criterion: Criterion::Gini,
            max_depth: None,
            min_samples_split: 2,
            min_samples_leaf: 1,
            max_features: MaxFeatures::All,
            seed: 0,
        }
    }
}

impl DecisionTreeParams {
    fn shape(&self) -> Shape {
        Shape {
            max_depth: self.max_depth,
            min_samples_split: self.min_samples_split,
            min_samples_leaf: self.min_samples_leaf,
            max_features: self.max_features,
        }
    }
}

/// A fitted classification tree; its leaves hold the probability of class 1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecisionTree {
    n_features: usize,
    tree: Tree,
}

impl DecisionTree {
    pub fn fit(params: &DecisionTreeParams, data: &Prepared) -> Result<Self> {
        let shape = params.shape();
        shape.validate()?;
        let grow = shape.grow(Task::Classify(params.criterion), data.n_features());
        let weights = data.weights();
        let counts: Option<Vec<f64>> =
            (!data.unit_weighted()).then(|| data.counts().iter().map(|&c| f64::from(c)).collect());
        let rows = TreeRows::classes(data.labels(), &weights, counts.as_deref());
        let mut rng = seed::rng(params.seed, stream::TREE, 0);
        let grown = grow_tree(&grow, data, rows, None, &mut rng, &mut Workspace::default());
        Ok(DecisionTree { n_features: data.n_features(), tree: grown.tree })
    }

    pub fn n_features(&self) -> usize {
        self.n_features
    }

    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    /// Probability of class 1 for each row of row-major `rows`.
    pub fn predict_proba(&self, rows: &[f32]) -> Vec<f64> {
        check_rows(rows, self.n_features);
        rows.chunks(self.n_features).map(|row| self.tree.predict_row(row)).collect()
    }

    /// Class of each row (ties go to class 0, as scikit-learn's argmax does).
    pub fn predict(&self, rows: &[f32]) -> Vec<u8> {
        self.predict_proba(rows).into_iter().map(|p| u8::from(p > 0.5)).collect()
    }
}
