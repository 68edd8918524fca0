//! AdaBoost with SAMME, as scikit-learn 1.9's `AdaBoostClassifier`: depth-1 trees fitted on
//! the current sample weights; each gets the weight `learning_rate * ln((1 - err) / err)`,
//! misclassified samples have their weight multiplied by `exp` of it; boosting stops early on
//! a perfect fit (that tree gets weight 1) or on a tree no better than chance (dropped).

use serde::{Deserialize, Serialize};

use super::compiled::{Compiled, CompiledCache};
use super::criterion::{Criterion, Task};
use super::data::Prepared;
use super::error::{LearnError, Result};
use super::grow::{grow_tree, GrowParams, Grown, TreeRows, Workspace};
use super::params::{check_estimators, check_learning_rate, MaxFeatures, Shape};
use super::predict::sigmoid;
use super::seed::{self, stream};
use super::tree::Tree;

/// Parameters, with scikit-learn's defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaBoostParams {
    pub n_estimators: usize,
    pub learning_rate: f64,
    /// Depth of the base trees (scikit-learn's default base is a depth-1 tree).
    pub max_depth: usize,
    pub seed: u64,
}

impl Default for AdaBoostParams {
    fn default() -> Self {
        AdaBoostParams { n_estimators: 50, learning_rate: 1.0, max_depth: 1, seed: 0 }
    }
}

/// A fitted AdaBoost classifier. Its trees' leaves hold votes: +1 for class 1, -1 for 0.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdaBoost {
    n_features: usize,
    trees: Vec<Tree>,
    weights: Vec<f64>,
    #[serde(skip)]
    compiled: CompiledCache,
}

impl AdaBoost {
    pub fn fit(params: &AdaBoostParams, data: &Prepared) -> Result<Self> {
        check_estimators(params.n_estimators)?;
        check_learning_rate(params.learning_rate)?;
        let shape = Shape {
            max_depth: Some(params.max_depth),
            min_samples_split: 2,
            min_samples_leaf: 1,
            max_features: MaxFeatures::All,
        };
        shape.validate()?;
        data.positive_share().ok_or(LearnError::SingleClass)?;
        let grow = shape.grow(Task::Classify(Criterion::Gini), data.n_features());
        Boosting::new(data).run(params, &grow)
    }

    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Number of trees kept (fewer than asked when boosting stopped early).
    pub fn n_estimators(&self) -> usize {
        self.trees.len()
    }

    pub fn trees(&self) -> &[Tree] {
        &self.trees
    }

    /// The weight of each tree.
    pub fn estimator_weights(&self) -> &[f64] {
        &self.weights
    }

    /// The model of the first `n` trees: what fitting with `n_estimators = n` gives.
    pub fn truncated(&self, n: usize) -> Self {
        let n = n.clamp(1, self.trees.len());
        AdaBoost {
            n_features: self.n_features,
            trees: self.trees[..n].to_vec(),
            weights: self.weights[..n].to_vec(),
            compiled: CompiledCache::default(),
        }
    }

    fn ensemble(&self) -> &Compiled {
        self.compiled.get_or_build(|| Compiled::new(&self.trees, &self.weights, self.n_features))
    }

    /// scikit-learn's decision function: the weighted vote, normalised by the total weight.
    pub fn decision_function(&self, rows: &[f32]) -> Vec<f64> {
        let norm: f64 = self.weights.iter().sum();
        let mut d = self.ensemble().sums(rows);
        d.iter_mut().for_each(|v| *v /= norm);
        d
    }

    /// Probability of class 1: the logistic of the decision function (scikit-learn's
    /// softmax of `[-d, d] / 2`).
    pub fn predict_proba(&self, rows: &[f32]) -> Vec<f64> {
        self.decision_function(rows).into_iter().map(sigmoid).collect()
    }

    /// Class 1 where the decision function is positive.
    pub fn predict(&self, rows: &[f32]) -> Vec<u8> {
        self.decision_function(rows).into_iter().map(|d| u8::from(d > 0.0)).collect()
    }

    /// Probabilities after the first `stages[i]` trees.
    pub fn staged_predict_proba(&self, rows: &[f32], stages: &[usize]) -> Vec<Vec<f64>> {
        let sums = self.ensemble().staged_sums(rows, stages);
        sums.into_iter()
            .zip(stages)
            .map(|(s, &k)| {
                let norm: f64 = self.weights[..k.clamp(1, self.trees.len())].iter().sum();
                s.into_iter().map(|v| sigmoid(v / norm)).collect()
            })
            .collect()
    }
}

/// The boosting state over the merged training rows.
struct Boosting<'a> {
    data: &'a Prepared,
    /// Weight of one sample of each merged row.
    sample_weights: Vec<f64>,
    /// Rows whose weight was zero from the start: never clipped up.
    zero: Vec<bool>,
    counts: Vec<f64>,
    ws: Workspace,
}

impl<'a> Boosting<'a> {
    fn new(data: &'a Prepared) -> Self {
        let counts: Vec<f64> = data.counts().iter().map(|&c| f64::from(c)).collect();
        let total: f64 = data.weights().iter().sum();
        Boosting {
            data,
            sample_weights: data.unit_weights().iter().map(|w| w / total).collect(),
            zero: data.unit_weights().iter().map(|&w| w == 0.0).collect(),
            counts,
            ws: Workspace::default(),
        }
    }

    fn run(mut self, params: &AdaBoostParams, grow: &GrowParams) -> Result<AdaBoost> {
        let mut trees = Vec::new();
        let mut weights = Vec::new();
        for t in 0..params.n_estimators {
            self.clip();
            let (mut tree, wrong) = self.fit_stage(grow, params.seed, t as u64);
            let error = self.error(&wrong);
            if error >= 0.5 {
                if trees.is_empty() {
                    return Err(LearnError::Fit("AdaBoost's first tree is worse than random".into()));
                }
                break;
            }
            let alpha = if error <= 0.0 { 1.0 } else { params.learning_rate * ((1.0 - error) / error).ln() };
            to_votes(&mut tree);
            trees.push(tree);
            weights.push(alpha);
            if error <= 0.0 || !self.reweight(&wrong, alpha, t + 1 < params.n_estimators) {
                break;
            }
        }
        Ok(AdaBoost { n_features: self.data.n_features(), trees, weights, compiled: CompiledCache::default() })
    }

    /// scikit-learn keeps every positive weight at least machine epsilon.
    fn clip(&mut self) {
        for (w, &z) in self.sample_weights.iter_mut().zip(&self.zero) {
            if !z {
                *w = w.max(f64::EPSILON);
            }
        }
    }

    /// Fits one tree on the current weights; also says which merged rows it gets wrong.
    fn fit_stage(&mut self, grow: &GrowParams, seed: u64, t: u64) -> (Tree, Vec<bool>) {
        let total: Vec<f64> = self.sample_weights.iter().zip(&self.counts).map(|(w, c)| w * c).collect();
        let rows = TreeRows::classes(self.data.labels(), &total, Some(&self.counts));
        let grown = grow_tree(grow, self.data, rows, None, &mut seed::rng(seed, stream::TREE, t), &mut self.ws);
        let wrong = self.mistakes(&grown);
        (grown.tree, wrong)
    }

    fn mistakes(&self, grown: &Grown) -> Vec<bool> {
        let values = grown.tree.values();
        (0..self.data.n_unique())
            .map(|u| {
                let predicted = u8::from(values[grown.leaf_of(self.data, u)] > 0.5);
                predicted != self.data.labels()[u]
            })
            .collect()
    }

    /// Weighted share of samples the tree gets wrong.
    fn error(&self, wrong: &[bool]) -> f64 {
        let (mut bad, mut all) = (0.0, 0.0);
        for ((w, c), &x) in self.sample_weights.iter().zip(&self.counts).zip(wrong) {
            all += w * c;
            if x {
                bad += w * c;
            }
        }
        bad / all
    }

    /// Boosts the weights of mistakes (unless this was the last tree) and normalises; false
    /// when boosting must stop (weights overflowed or vanished).
    fn reweight(&mut self, wrong: &[bool], alpha: f64, more: bool) -> bool {
        if !more {
            return true;
        }
        let factor = alpha.exp();
        for (w, &x) in self.sample_weights.iter_mut().zip(wrong) {
            if x && *w > 0.0 {
                *w *= factor;
            }
        }
        let sum: f64 = self.sample_weights.iter().zip(&self.counts).map(|(w, c)| w * c).sum();
        if !sum.is_finite() || sum <= 0.0 {
            return false;
        }
        self.sample_weights.iter_mut().for_each(|w| *w /= sum);
        true
    }
}

/// Turns a classification tree's leaf probabilities into votes: +1 for class 1, -1 for 0
/// (ties to class 0, as scikit-learn's argmax).
fn to_votes(tree: &mut Tree) {
    for v in tree.values_mut() {
        *v = if *v > 0.5 { 1.0 } else { -1.0 };
    }
}
