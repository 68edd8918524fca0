//! Training: grids, cross-validation folds, the metrics that score them, and the search.

pub mod folds;
pub mod grid;
pub mod importance;
pub mod metrics;
pub mod search;
