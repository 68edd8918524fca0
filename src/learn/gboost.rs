//! Gradient boosting with the log-loss (scikit-learn's `GradientBoostingClassifier`).
//!
//! Starts from the prior log-odds; each stage fits a regression tree to the negative gradient
//! `y - p` (weighted by the stage's subsample: rows drawn without replacement), sets each leaf
//! to one Newton step `sum(w (y - p)) / sum(w p (1 - p))`, and adds `learning_rate` times the
//! tree to the raw score of every row.

use serde::{Deserialize, Serialize};

use super::compiled::{Compiled, CompiledCache};
use super::criterion::Task;
use super::data::Prepared;
use super::error::{LearnError, Result};
use super::grow::{grow_tree, GrowParams, Grown, Regression, TreeRows, Workspace};
use super::params::{check_estimators, check_learning_rate, param, MaxFeatures, Shape};
use super::predict::sigmoid;
use super::seed::{self, stream};
use super::tree::Tree;

/// Parameters, with scikit-learn's defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GradientBoostingParams {
    pub learning_rate: f64,
    pub n_estimators: usize,
    /// Share of rows drawn (without replacement) for each stage.
    pub subsample: f64,
    pub max_depth: Option<usize>,
    pub min_samples_split: usize,
    pub min_samples_leaf: usize,
    pub max_features: MaxFeatures,
    pub seed: u64,
}

impl Default for GradientBoostingParams {
    fn default() -> Self {
        GradientBoostingParams {
            learning_rate: 0.1,
            n_estimators: 100,
            subsample: 1.0,
            max_depth: Some(3),
            min_samples_split: 2,
            min_samples_leaf: 1,
            max_features: MaxFeatures::All,
            seed: 0,
        }
    }
}

impl GradientBoostingParams {
    fn validate(&self) -> Result<GrowParams> {
        check_estimators(self.n_estimators)?;
        check_learning_rate(self.learning_rate)?;
        if !(self.subsample > 0.0 && self.subsample <= 1.0) {
            return Err(param("subsample must be in (0, 1]"));
        }
        let shape = Shape {
            max_depth: self.max_depth,
            min_samples_split: self.min_samples_split,
            min_samples_leaf: self.min_samples_leaf,
            max_features: self.max_features,
        };
        shape.validate()?;
        Ok(shape.grow(Task::Regress, 0))
    }
}

/// A fitted gradient-boosting classifier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GradientBoosting {
    n_features: usize,
    /// Raw score before any tree: the prior log-odds.
    init: f64,
    learning_rate: f64,
    trees: Vec<Tree>,
    /// The learning rate once per tree.
    rates: Vec<f64>,
    #[serde(skip)]
    compiled: CompiledCache,
}

impl GradientBoosting {
    pub fn fit(params: &GradientBoostingParams, data: &Prepared) -> Result<Self> {
        let mut grow = params.validate()?;
        grow.max_features = params.max_features.resolve(data.n_features());
        let p = data.positive_share().ok_or(LearnError::SingleClass)?;
        // scikit-learn clips the prior to [eps, 1 - eps] before taking the log-odds.
        let p = p.clamp(f64::EPSILON, 1.0 - f64::EPSILON);
        let init = (p / (1.0 - p)).ln();
        let mut state = Stages::new(data, init);
        let trees: Vec<Tree> = (0..params.n_estimators).map(|t| state.stage(params, &grow, t as u64)).collect();
        Ok(GradientBoosting {
            n_features: data.n_features(),
            init,
            learning_rate: params.learning_rate,
            rates: vec![params.learning_rate; trees.len()],
            trees,
            compiled: CompiledCache::default(),
        })
    }

    fn ensemble(&self) -> &Compiled {
        self.compiled.get_or_build(|| Compiled::new(&self.trees, &self.rates, self.n_features))
    }

    pub fn n_features(&self) -> usize {
        self.n_features
    }

    pub fn trees(&self) -> &[Tree] {
        &self.trees
    }

    /// The raw score before any tree (the prior log-odds).
    pub fn init(&self) -> f64 {
        self.init
    }

    /// Each tree's factor (the learning rate).
    pub fn rates(&self) -> &[f64] {
        &self.rates
    }

    pub fn n_estimators(&self) -> usize {
        self.trees.len()
    }

    /// The model of the first `n` stages: what fitting with `n_estimators = n` gives.
    pub fn truncated(&self, n: usize) -> Self {
        let mut m = self.clone();
        m.trees.truncate(n.max(1));
        m.rates.truncate(n.max(1));
        m
    }

    /// Raw scores (log-odds of class 1).
    pub fn decision_function(&self, rows: &[f32]) -> Vec<f64> {
        let mut raw = self.ensemble().sums(rows);
        raw.iter_mut().for_each(|r| *r += self.init);
        raw
    }

    pub fn predict_proba(&self, rows: &[f32]) -> Vec<f64> {
        self.decision_function(rows).into_iter().map(sigmoid).collect()
    }

    /// Class of each row: raw score >= 0, as scikit-learn decides.
    pub fn predict(&self, rows: &[f32]) -> Vec<u8> {
        self.decision_function(rows).into_iter().map(|r| u8::from(r >= 0.0)).collect()
    }

    /// Probabilities after the first `stages[i]` stages.
    pub fn staged_predict_proba(&self, rows: &[f32], stages: &[usize]) -> Vec<Vec<f64>> {
        self.ensemble()
            .staged_sums(rows, stages)
            .into_iter()
            .map(|raw| raw.into_iter().map(|r| sigmoid(r + self.init)).collect())
            .collect()
    }
}

/// The boosting state over the merged training rows.
struct Stages<'a> {
    data: &'a Prepared,
    /// Odds `exp(raw)` of each merged row: a stage multiplies them by `exp(rate * leaf)`, so
    /// no row needs an `exp` of its own. Clamped so they stay finite and nonzero.
    odds: Vec<f64>,
    targets: Vec<f64>,
    hessians: Vec<f64>,
    /// Samples of each merged row in this stage's subsample.
    draws: Vec<u32>,
    ws: Workspace,
}

/// Odds beyond these bounds give probabilities of exactly 0 or 1 in f64 anyway.
const ODDS_MIN: f64 = 1e-300;
const ODDS_MAX: f64 = 1e300;

impl<'a> Stages<'a> {
    fn new(data: &'a Prepared, init: f64) -> Self {
        let n = data.n_unique();
        Stages {
            data,
            odds: vec![init.exp(); n],
            targets: vec![0.0; n],
            hessians: vec![0.0; n],
            draws: data.counts().to_vec(),
            ws: Workspace::default(),
        }
    }

    fn stage(&mut self, params: &GradientBoostingParams, grow: &GrowParams, t: u64) -> Tree {
        if params.subsample < 1.0 {
            self.draw(params.subsample, &mut seed::Fast::new(params.seed, stream::SUBSAMPLE, t));
        }
        let rows = self.gradients();
        let regression = Regression { targets: &self.targets, hessians: Some(&self.hessians) };
        let mut rng = seed::rng(params.seed, stream::TREE, t);
        let grown = grow_tree(grow, self.data, rows, Some(regression), &mut rng, &mut self.ws);
        self.advance(&grown, params.learning_rate);
        grown.tree
    }

    /// Negative gradients `y - p` and hessians `p (1 - p)` of the rows in the subsample, and
    /// the tree's input rows. Branch-free: whether a row is in the subsample is random, so a
    /// branch on it would be mispredicted half the time.
    fn gradients(&mut self) -> TreeRows {
        let data = self.data;
        let n = data.n_unique();
        let (mut rows, mut vals, mut counts) = (vec![0u32; n + 1], vec![[0.0; 2]; n + 1], vec![0.0; n + 1]);
        let mut k = 0;
        for u in 0..n {
            let draws = f64::from(self.draws[u]);
            let w = draws * data.unit_weights()[u];
            let q = self.odds[u];
            let p = q / (1.0 + q);
            let r = f64::from(data.labels()[u]) - p;
            self.targets[u] = r;
            self.hessians[u] = p * (1.0 - p);
            rows[k] = u as u32;
            vals[k] = [w, w * r];
            counts[k] = draws;
            k += usize::from(w > 0.0);
        }
        rows.truncate(k);
        vals.truncate(k);
        counts.truncate(k);
        TreeRows { rows, vals, counts: (!data.unit_weighted()).then_some(counts) }
    }

    /// Draws `subsample` of the original rows without replacement (selection sampling: each
    /// row in turn with probability wanted / left, so exactly `wanted` rows are drawn) and
    /// counts them per merged row. Branch-free for the same reason as [`Self::gradients`].
    fn draw(&mut self, subsample: f64, rng: &mut seed::Fast) {
        let n = self.data.n_rows();
        let mut wanted = ((subsample * n as f64) as usize).max(1);
        self.draws.fill(0);
        for (i, &u) in self.data.origin().iter().enumerate() {
            let take = usize::from(rng.below(n - i) < wanted);
            self.draws[u as usize] += take as u32;
            wanted -= take;
        }
    }

    /// Adds the tree to every merged row's raw score.
    fn advance(&mut self, grown: &Grown, rate: f64) {
        let factor: Vec<f64> = grown.tree.values().iter().map(|v| (rate * v).exp()).collect();
        for (u, q) in self.odds.iter_mut().enumerate() {
            *q = (*q * factor[grown.leaf_of(self.data, u)]).clamp(ODDS_MIN, ODDS_MAX);
        }
    }
}
