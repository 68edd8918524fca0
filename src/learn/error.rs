//! Errors of the model engine.

use thiserror::Error;

/// Why a model could not be fitted or used.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum LearnError {
    #[error("no training rows")]
    Empty,
    #[error("{len} values is not a whole number of rows of {n_features} features (1 to 65535)")]
    Shape { len: usize, n_features: usize },
    #[error("{rows} rows but {labels} labels")]
    Labels { rows: usize, labels: usize },
    #[error("{rows} rows but {weights} sample weights")]
    Weights { rows: usize, weights: usize },
    #[error("label {0} is not 0 or 1")]
    Label(u8),
    #[error("sample weight {0} is negative or not finite")]
    Weight(f64),
    #[error("all sample weights are zero")]
    ZeroWeight,
    #[error("feature {feature} of row {row} is not a finite number")]
    NotFinite { row: usize, feature: usize },
    #[error("the training labels hold a single class; a classifier needs both")]
    SingleClass,
    #[error("invalid parameter: {0}")]
    Param(String),
    #[error("{0}")]
    Fit(String),
}

pub type Result<T, E = LearnError> = std::result::Result<T, E>;
