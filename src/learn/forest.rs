//! Random forest (scikit-learn's `RandomForestClassifier`): fully grown trees on bootstrap
//! samples, `sqrt(n_features)` features drawn per node; the probability is the mean of the
//! trees' leaf probabilities.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::compiled::{Compiled, CompiledCache};
use super::criterion::{Criterion, Task};
use super::data::Prepared;
use super::error::Result;
use super::grow::{grow_tree, GrowParams, TreeRows, Workspace};
use super::params::{check_estimators, MaxFeatures, Shape};
use super::seed::{self, stream};
use super::tree::Tree;

/// Parameters, with scikit-learn's defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RandomForestParams {
    pub n_estimators: usize,
    pub criterion: Criterion,
    pub max_depth: Option<usize>,
    pub min_samples_split: usize,
    pub min_samples_leaf: usize,
    pub max_features: MaxFeatures,
    /// Each tree sees a bootstrap sample (as integer sample weights) instead of every row.
    pub bootstrap: bool,
    pub seed: u64,
}

impl Default for RandomForestParams {
    fn default() -> Self {
        RandomForestParams {
            n_estimators: 100,
            criterion: Criterion::Gini,
            max_depth: None,
            min_samples_split: 2,
            min_samples_leaf: 1,
            max_features: MaxFeatures::Sqrt,
            bootstrap: true,
            seed: 0,
        }
    }
}

/// A fitted random forest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RandomForest {
    n_features: usize,
    trees: Vec<Tree>,
    #[serde(skip)]
    compiled: CompiledCache,
}

impl RandomForest {
    /// Fits the trees in parallel; tree `t` depends only on the seed and `t`.
    pub fn fit(params: &RandomForestParams, data: &Prepared) -> Result<Self> {
        check_estimators(params.n_estimators)?;
        let shape = Shape {
            max_depth: params.max_depth,
            min_samples_split: params.min_samples_split,
            min_samples_leaf: params.min_samples_leaf,
            max_features: params.max_features,
        };
        shape.validate()?;
        let grow = shape.grow(Task::Classify(params.criterion), data.n_features());
        let trees: Vec<Tree> = (0..params.n_estimators)
            .into_par_iter()
            .map_init(Workspace::default, |ws, t| fit_tree(params, &grow, data, t as u64, ws))
            .collect();
        Ok(Self::from_trees(data.n_features(), trees))
    }

    fn from_trees(n_features: usize, trees: Vec<Tree>) -> Self {
        RandomForest { n_features, trees, compiled: CompiledCache::default() }
    }

    fn ensemble(&self) -> &Compiled {
        // A weight of 1 per tree: the mean is taken after the sum, as scikit-learn does.
        let ones = || vec![1.0; self.trees.len()];
        self.compiled.get_or_build(|| Compiled::new(&self.trees, &ones(), self.n_features))
    }

    pub fn n_features(&self) -> usize {
        self.n_features
    }

    pub fn trees(&self) -> &[Tree] {
        &self.trees
    }

    /// Number of trees.
    pub fn n_estimators(&self) -> usize {
        self.trees.len()
    }

    /// The forest of the first `n` trees: what fitting with `n_estimators = n` gives.
    pub fn truncated(&self, n: usize) -> Self {
        let n = n.clamp(1, self.trees.len());
        Self::from_trees(self.n_features, self.trees[..n].to_vec())
    }

    /// Probability of class 1: the mean of the trees' probabilities.
    pub fn predict_proba(&self, rows: &[f32]) -> Vec<f64> {
        let k = self.trees.len() as f64;
        self.ensemble().sums(rows).into_iter().map(|s| s / k).collect()
    }

    /// Class of each row (ties go to class 0).
    pub fn predict(&self, rows: &[f32]) -> Vec<u8> {
        self.predict_proba(rows).into_iter().map(|p| u8::from(p > 0.5)).collect()
    }

    /// Probabilities of the forests of the first `stages[i]` trees.
    pub fn staged_predict_proba(&self, rows: &[f32], stages: &[usize]) -> Vec<Vec<f64>> {
        let sums = self.ensemble().staged_sums(rows, stages);
        sums.into_iter()
            .zip(stages)
            .map(|(s, &k)| {
                let k = k.clamp(1, self.trees.len()) as f64;
                s.into_iter().map(|v| v / k).collect()
            })
            .collect()
    }
}

fn fit_tree(params: &RandomForestParams, grow: &GrowParams, data: &Prepared, t: u64, ws: &mut Workspace) -> Tree {
    let draws = if params.bootstrap {
        bootstrap(data, &mut seed::Fast::new(params.seed, stream::BOOTSTRAP, t))
    } else {
        data.counts().iter().map(|&c| f64::from(c)).collect()
    };
    let weights: Vec<f64> = draws.iter().zip(data.unit_weights()).map(|(d, w)| d * w).collect();
    let counts = (!data.unit_weighted()).then_some(draws.as_slice());
    let rows = TreeRows::classes(data.labels(), &weights, counts);
    grow_tree(grow, data, rows, None, &mut seed::rng(params.seed, stream::TREE, t), ws).tree
}

/// How often each merged row is drawn when drawing as many original rows as there are, with
/// replacement.
fn bootstrap(data: &Prepared, rng: &mut seed::Fast) -> Vec<f64> {
    let n = data.n_rows();
    let mut draws = vec![0.0; data.n_unique()];
    for _ in 0..n {
        draws[data.origin()[rng.below(n)] as usize] += 1.0;
    }
    draws
}
