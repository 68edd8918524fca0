//! The common interface: a serde-deserialisable [`ModelConfig`] fits a [`Model`]; every model
//! predicts probabilities of class 1 and classes from row-major f32 rows; ensembles also give
//! staged probabilities and truncated copies, so a grid over `n_estimators` needs one fit.

use serde::{Deserialize, Serialize};

use super::adaboost::{AdaBoost, AdaBoostParams};
use super::data::{Prepared, Samples};
use super::decision_tree::{DecisionTree, DecisionTreeParams};
use super::error::Result;
use super::forest::{RandomForest, RandomForestParams};
use super::gboost::{GradientBoosting, GradientBoostingParams};
use super::logistic::{Logistic, LogisticRegressionParams};

/// What to fit: a model family and its parameters (scikit-learn's names and defaults).
/// Serialised externally tagged, e.g. `{"random_forest": {"n_estimators": 128}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelConfig {
    DecisionTree(DecisionTreeParams),
    RandomForest(RandomForestParams),
    GradientBoosting(GradientBoostingParams),
    AdaBoost(AdaBoostParams),
    LogisticRegression(LogisticRegressionParams),
}

impl ModelConfig {
    /// Fits on raw samples (bins and merges them first).
    pub fn fit(&self, samples: &Samples<'_>) -> Result<Model> {
        self.fit_prepared(&Prepared::new(samples)?)
    }

    /// Fits on data prepared once for many fits.
    pub fn fit_prepared(&self, data: &Prepared) -> Result<Model> {
        Ok(match self {
            ModelConfig::DecisionTree(p) => Model::DecisionTree(DecisionTree::fit(p, data)?),
            ModelConfig::RandomForest(p) => Model::RandomForest(RandomForest::fit(p, data)?),
            ModelConfig::GradientBoosting(p) => Model::GradientBoosting(GradientBoosting::fit(p, data)?),
            ModelConfig::AdaBoost(p) => Model::AdaBoost(AdaBoost::fit(p, data)?),
            ModelConfig::LogisticRegression(p) => Model::LogisticRegression(Logistic::fit(p, data)?),
        })
    }

    /// The family's name, as in the config.
    pub fn family(&self) -> &'static str {
        match self {
            ModelConfig::DecisionTree(_) => "decision_tree",
            ModelConfig::RandomForest(_) => "random_forest",
            ModelConfig::GradientBoosting(_) => "gradient_boosting",
            ModelConfig::AdaBoost(_) => "ada_boost",
            ModelConfig::LogisticRegression(_) => "logistic_regression",
        }
    }

    /// The number of estimators of an ensemble config.
    pub fn n_estimators(&self) -> Option<usize> {
        match self {
            ModelConfig::RandomForest(p) => Some(p.n_estimators),
            ModelConfig::GradientBoosting(p) => Some(p.n_estimators),
            ModelConfig::AdaBoost(p) => Some(p.n_estimators),
            _ => None,
        }
    }

    /// The same config with `n` estimators (unchanged for non-ensembles).
    pub fn with_n_estimators(&self, n: usize) -> Self {
        let mut c = self.clone();
        match &mut c {
            ModelConfig::RandomForest(p) => p.n_estimators = n,
            ModelConfig::GradientBoosting(p) => p.n_estimators = n,
            ModelConfig::AdaBoost(p) => p.n_estimators = n,
            _ => {}
        }
        c
    }
}

/// Anything that classifies rows into class 0 or 1.
pub trait Classifier {
    /// Number of features a row must have.
    fn n_features(&self) -> usize;

    /// Probability of class 1 for each row of row-major `rows`.
    ///
    /// # Panics
    /// If `rows.len()` is not a multiple of [`Classifier::n_features`].
    fn predict_proba(&self, rows: &[f32]) -> Vec<f64>;

    /// Class of each row, as the model's scikit-learn counterpart decides it.
    fn predict(&self, rows: &[f32]) -> Vec<u8>;
}

/// A fitted model of any family.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Model {
    DecisionTree(DecisionTree),
    RandomForest(RandomForest),
    GradientBoosting(GradientBoosting),
    AdaBoost(AdaBoost),
    LogisticRegression(Logistic),
}

macro_rules! each {
    ($self:expr, $m:ident => $e:expr) => {
        match $self {
            Model::DecisionTree($m) => $e,
            Model::RandomForest($m) => $e,
            Model::GradientBoosting($m) => $e,
            Model::AdaBoost($m) => $e,
            Model::LogisticRegression($m) => $e,
        }
    };
}

impl Classifier for Model {
    fn n_features(&self) -> usize {
        each!(self, m => m.n_features())
    }

    fn predict_proba(&self, rows: &[f32]) -> Vec<f64> {
        each!(self, m => m.predict_proba(rows))
    }

    fn predict(&self, rows: &[f32]) -> Vec<u8> {
        each!(self, m => m.predict(rows))
    }
}

impl Model {
    /// Number of estimators of an ensemble (trees actually kept), None otherwise.
    pub fn n_estimators(&self) -> Option<usize> {
        match self {
            Model::RandomForest(m) => Some(m.n_estimators()),
            Model::GradientBoosting(m) => Some(m.n_estimators()),
            Model::AdaBoost(m) => Some(m.n_estimators()),
            _ => None,
        }
    }

    /// For an ensemble, the probabilities of class 1 after the first `stages[i]` estimators
    /// (each capped at the number fitted): equal to those of a model fitted with
    /// `n_estimators = stages[i]` and the same seed. None for other models.
    pub fn staged_predict_proba(&self, rows: &[f32], stages: &[usize]) -> Option<Vec<Vec<f64>>> {
        match self {
            Model::RandomForest(m) => Some(m.staged_predict_proba(rows, stages)),
            Model::GradientBoosting(m) => Some(m.staged_predict_proba(rows, stages)),
            Model::AdaBoost(m) => Some(m.staged_predict_proba(rows, stages)),
            _ => None,
        }
    }

    /// For an ensemble, the model of its first `n` estimators: what fitting with
    /// `n_estimators = n` and the same seed gives. Other models are returned unchanged.
    pub fn truncated(&self, n: usize) -> Model {
        match self {
            Model::RandomForest(m) => Model::RandomForest(m.truncated(n)),
            Model::GradientBoosting(m) => Model::GradientBoosting(m.truncated(n)),
            Model::AdaBoost(m) => Model::AdaBoost(m.truncated(n)),
            other => other.clone(),
        }
    }
}

macro_rules! classifier {
    ($($t:ty),*) => {$(
        impl Classifier for $t {
            fn n_features(&self) -> usize {
                <$t>::n_features(self)
            }
            fn predict_proba(&self, rows: &[f32]) -> Vec<f64> {
                <$t>::predict_proba(self, rows)
            }
            fn predict(&self, rows: &[f32]) -> Vec<u8> {
                <$t>::predict(self, rows)
            }
        }
    )*};
}

classifier!(DecisionTree, RandomForest, GradientBoosting, AdaBoost, Logistic);
