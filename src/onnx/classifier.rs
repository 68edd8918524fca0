//! The fitted model as one ai.onnx.ml classifier node with two outputs: `label` (int64, the
//! source's label values) and `probabilities` (float [N, 2], in the order of the labels).
//!
//! Every family is written as skl2onnx 1.20 writes scikit-learn's binary classifiers, the form
//! ONNX Runtime implements as intended: its two-class path does not follow the operator's
//! general rules (measured with onnxruntime 1.31: with votes for both classes it returns the
//! class indices 0/1 instead of `classlabels_int64s`, and with the votes on class 1 it writes
//! `[0, p]`). So every leaf votes for class id 0 only, with the score of the positive class:
//!
//! | family | node | leaf vote | base | post-transform | label 1 when |
//! | --- | --- | --- | --- | --- | --- |
//! | decision tree | TreeEnsembleClassifier | p | – | NONE | p > 0.5 |
//! | random forest | TreeEnsembleClassifier | p / T | – | NONE | mean p > 0.5 |
//! | gradient boosting | TreeEnsembleClassifier | rate ⋅ v | prior log-odds | LOGISTIC | raw score > 0 |
//! | AdaBoost (SAMME) | TreeEnsembleClassifier | weight ⋅ vote / Σ weights | 0 | LOGISTIC | score > 0 |
//! | logistic regression | LinearClassifier | rows (−w, w), intercepts (−b, b) | | LOGISTIC | score > 0 |
//!
//! The probabilities come out as (1 − p, p) and (σ(−s), σ(s)): the logistic of the raw score,
//! as netsec and scikit-learn compute it. The runtime decides a LOGISTIC label by `score > 0`
//! only when some vote is negative (otherwise by `score > 0.5`); an ensemble whose votes are all
//! non-negative gets one more single-leaf tree voting −1 and a base 1 higher, which changes no
//! score beyond float rounding. Gradient boosting's own rule is `score >= 0`: the two differ
//! only at a raw score of exactly 0.
//!
//! Splits: netsec sends a row right when `x > threshold`, so `BRANCH_LEQ` with the left child
//! as the true branch. Thresholds and votes are float attributes (the form runtimes support
//! most widely), so probabilities agree with netsec's f64 ones to about 1e-7.

use super::graph::{Attr, Graph};
use crate::learn::{Model, Tree};

pub const LABEL: &str = "label";
pub const PROBABILITIES: &str = "probabilities";
const ML: &str = "ai.onnx.ml";

/// Adds the classifier on `features`; its outputs are [`LABEL`] and [`PROBABILITIES`].
pub fn classify(graph: &mut Graph, model: &Model, classes: &[i64], features: &str) {
    let ensemble = Ensemble::new(classes);
    match model {
        Model::DecisionTree(m) => ensemble.add(std::slice::from_ref(m.tree()), |_, p| p).finish(graph, features, None),
        Model::RandomForest(m) => {
            let n = m.trees().len() as f64;
            ensemble.add(m.trees(), |_, p| p / n).finish(graph, features, None)
        }
        Model::GradientBoosting(m) => {
            let rates = m.rates();
            ensemble.add(m.trees(), |t, v| rates[t] * v).finish(graph, features, Some(m.init()))
        }
        Model::AdaBoost(m) => {
            let weights = m.estimator_weights();
            let norm: f64 = weights.iter().sum();
            ensemble.add(m.trees(), |t, vote| weights[t] * vote / norm).finish(graph, features, Some(0.0))
        }
        Model::LogisticRegression(m) => {
            let w = m.coefficients();
            let coefficients = w.iter().map(|&w| -w as f32).chain(w.iter().map(|&w| w as f32)).collect();
            let b = m.intercept() as f32;
            graph.node(
                ML,
                "LinearClassifier",
                &[features],
                &[LABEL, PROBABILITIES],
                vec![
                    ("coefficients", Attr::Floats(coefficients)),
                    ("intercepts", Attr::Floats(vec![-b, b])),
                    ("classlabels_ints", Attr::Ints(classes.to_vec())),
                    ("post_transform", Attr::Str("LOGISTIC".into())),
                    ("multi_class", Attr::Int(0)),
                ],
            );
        }
    }
}

/// The attributes of a TreeEnsembleClassifier, tree by tree.
#[derive(Default)]
struct Ensemble {
    classes: Vec<i64>,
    tree_ids: Vec<i64>,
    node_ids: Vec<i64>,
    feature_ids: Vec<i64>,
    thresholds: Vec<f32>,
    modes: Vec<String>,
    true_ids: Vec<i64>,
    false_ids: Vec<i64>,
    vote_tree_ids: Vec<i64>,
    vote_node_ids: Vec<i64>,
    votes: Vec<f32>,
}

impl Ensemble {
    fn new(classes: &[i64]) -> Self {
        Ensemble { classes: classes.to_vec(), ..Default::default() }
    }

    /// Adds `trees`; `vote(tree index, leaf value)` gives a leaf's score.
    fn add(mut self, trees: &[Tree], vote: impl Fn(usize, f64) -> f64) -> Self {
        for (t, tree) in trees.iter().enumerate() {
            for (i, node) in tree.nodes().iter().enumerate() {
                self.tree_ids.push(t as i64);
                self.node_ids.push(i as i64);
                if tree.is_leaf(i) {
                    self.push_node("LEAF", 0, 0.0, [0, 0]);
                    self.push_vote(t, i, vote(t, tree.values()[i]) as f32);
                } else {
                    self.push_node("BRANCH_LEQ", node.feature.into(), node.threshold, node.children);
                }
            }
        }
        self
    }

    fn push_vote(&mut self, tree: usize, node: usize, vote: f32) {
        self.vote_tree_ids.push(tree as i64);
        self.vote_node_ids.push(node as i64);
        self.votes.push(vote);
    }

    fn push_node(&mut self, mode: &str, feature: i64, threshold: f32, children: [u32; 2]) {
        self.modes.push(mode.into());
        self.feature_ids.push(feature);
        self.thresholds.push(threshold);
        self.true_ids.push(children[0].into());
        self.false_ids.push(children[1].into());
    }

    /// Adds the node; a `base` score means a logistic model (NONE otherwise: the votes are
    /// probabilities).
    fn finish(mut self, graph: &mut Graph, features: &str, mut base: Option<f64>) {
        if let Some(score) = &mut base {
            if self.votes.iter().all(|&v| v >= 0.0) {
                // See the module docs: a negative vote keeps the runtime's `score > 0` rule.
                let tree = self.tree_ids.last().map_or(0, |&t| t as usize + 1);
                self.tree_ids.push(tree as i64);
                self.node_ids.push(0);
                self.push_node("LEAF", 0, 0.0, [0, 0]);
                self.push_vote(tree, 0, -1.0);
                *score += 1.0;
            }
        }
        let post_transform = if base.is_some() { "LOGISTIC" } else { "NONE" };
        let vote_classes = vec![0; self.votes.len()];
        let mut attrs = vec![
            ("nodes_treeids", Attr::Ints(self.tree_ids)),
            ("nodes_nodeids", Attr::Ints(self.node_ids)),
            ("nodes_featureids", Attr::Ints(self.feature_ids)),
            ("nodes_values", Attr::Floats(self.thresholds)),
            ("nodes_modes", Attr::Strs(self.modes)),
            ("nodes_truenodeids", Attr::Ints(self.true_ids)),
            ("nodes_falsenodeids", Attr::Ints(self.false_ids)),
            ("class_treeids", Attr::Ints(self.vote_tree_ids)),
            ("class_nodeids", Attr::Ints(self.vote_node_ids)),
            ("class_ids", Attr::Ints(vote_classes)),
            ("class_weights", Attr::Floats(self.votes)),
            ("classlabels_int64s", Attr::Ints(self.classes)),
            ("post_transform", Attr::Str(post_transform.into())),
        ];
        if let Some(score) = base {
            attrs.push(("base_values", Attr::Floats(vec![score as f32])));
        }
        graph.node(ML, "TreeEnsembleClassifier", &[features], &[LABEL, PROBABILITIES], attrs);
    }
}
