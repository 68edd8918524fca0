//! The model engine: our own tree learner and the models built on it.
//!
//! smartcore's classifier trees lose most cuts on ternary features, so the tree family is
//! ours: features are binned once ([`binning`]), identical rows merged into weighted rows
//! ([`data`]), and one histogram learner ([`grow`]) grows every tree, stored flat ([`tree`])
//! and compiled for prediction ([`compiled`]). On it: [`DecisionTree`], [`RandomForest`],
//! [`GradientBoosting`] (log-loss) and [`AdaBoost`] (SAMME), with scikit-learn's defaults and
//! semantics; logistic regression comes from smartcore ([`Logistic`]).
//!
//! ```
//! use netsec::learn::{Classifier, ModelConfig, Prepared, Samples};
//! let rows = [0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0];
//! let labels = [0, 1, 1, 0];
//! let data = Prepared::new(&Samples::new(&rows, 2, &labels).unwrap()).unwrap();
//! let config: ModelConfig = serde_json::from_str(r#"{"random_forest": {"n_estimators": 64}}"#).unwrap();
//! let model = config.fit_prepared(&data).unwrap();
//! let p = model.predict_proba(&rows);
//! let staged = model.staged_predict_proba(&rows, &[8, 16, 64]).unwrap();
//! assert_eq!(staged[2], p);
//! ```

pub mod adaboost;
pub mod binning;
pub mod compiled;
pub mod criterion;
pub mod data;
pub mod decision_tree;
pub mod error;
pub mod forest;
pub mod gboost;
pub mod grow;
pub mod hist;
pub mod logistic;
pub mod model;
pub mod packing;
pub mod params;
pub mod predict;
pub mod row_mask;
pub mod seed;
pub mod tree;

pub use adaboost::{AdaBoost, AdaBoostParams};
pub use criterion::Criterion;
pub use data::{Prepared, Samples};
pub use decision_tree::{DecisionTree, DecisionTreeParams};
pub use error::LearnError;
pub use forest::{RandomForest, RandomForestParams};
pub use gboost::{GradientBoosting, GradientBoostingParams};
pub use logistic::{Logistic, LogisticRegressionParams};
pub use model::{Classifier, Model, ModelConfig};
pub use params::MaxFeatures;
pub use tree::Tree;
