//! Parameter pieces shared by the tree models, and their validation.

use serde::{Deserialize, Serialize};

use super::criterion::Task;
use super::error::{LearnError, Result};
use super::grow::GrowParams;

/// How many features each node draws before searching splits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaxFeatures {
    /// Every feature (scikit-learn's `None`).
    #[default]
    All,
    /// `floor(sqrt(n_features))`, at least 1.
    Sqrt,
    /// `floor(log2(n_features))`, at least 1.
    Log2,
    /// A fixed number, capped at the number of features.
    Count(usize),
}

impl MaxFeatures {
    /// The number of features for data with `n` features.
    pub fn resolve(self, n: usize) -> usize {
        let k = match self {
            MaxFeatures::All => n,
            MaxFeatures::Sqrt => (n as f64).sqrt() as usize,
            MaxFeatures::Log2 => (n as f64).log2() as usize,
            MaxFeatures::Count(k) => k,
        };
        k.clamp(1, n.max(1))
    }
}

/// The tree-shape parameters common to every tree model.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub max_depth: Option<usize>,
    pub min_samples_split: usize,
    pub min_samples_leaf: usize,
    pub max_features: MaxFeatures,
}

impl Shape {
    /// Checks the values scikit-learn would refuse.
    pub fn validate(&self) -> Result<()> {
        if self.max_depth == Some(0) {
            return Err(param("max_depth must be at least 1"));
        }
        if self.min_samples_split < 2 {
            return Err(param("min_samples_split must be at least 2"));
        }
        if self.min_samples_leaf < 1 {
            return Err(param("min_samples_leaf must be at least 1"));
        }
        if self.max_features == MaxFeatures::Count(0) {
            return Err(param("max_features must be at least 1"));
        }
        Ok(())
    }

    /// Growth parameters for data with `n_features` features.
    pub fn grow(&self, task: Task, n_features: usize) -> GrowParams {
        GrowParams {
            task,
            max_depth: self.max_depth,
            min_samples_split: self.min_samples_split,
            min_samples_leaf: self.min_samples_leaf,
            max_features: self.max_features.resolve(n_features),
        }
    }
}

pub fn param(message: &str) -> LearnError {
    LearnError::Param(message.to_string())
}

/// Checks an ensemble's size.
pub fn check_estimators(n: usize) -> Result<()> {
    if n == 0 {
        return Err(param("n_estimators must be at least 1"));
    }
    Ok(())
}

/// Checks that a learning rate is positive and finite.
pub fn check_learning_rate(rate: f64) -> Result<()> {
    if !(rate > 0.0 && rate.is_finite()) {
        return Err(param("learning_rate must be positive"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_features_resolve_like_scikit_learn() {
        assert_eq!(MaxFeatures::Sqrt.resolve(30), 5);
        assert_eq!(MaxFeatures::Log2.resolve(30), 4);
        assert_eq!(MaxFeatures::All.resolve(30), 30);
        assert_eq!(MaxFeatures::Count(99).resolve(30), 30);
        assert_eq!(MaxFeatures::Sqrt.resolve(1), 1);
    }
}
