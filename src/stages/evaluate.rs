//! Evaluate: the gate. The new model is compared with the store's current model on this run's
//! test rows (each through its own preprocessor), and accepted only if its F1 beats it by more
//! than `train.min_improvement` (default 0: strictly better), or if there is no current model.
//! A negative `min_improvement` tolerates a regression of up to that much.

use serde::{Deserialize, Serialize};

use super::Settings;
use crate::artifacts::Run;
use crate::dataset::Dataset;
use crate::model_file::ModelFile;
use crate::store::ModelStore;
use crate::train::metrics;

pub const DECISION: &str = "evaluate/decision.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub accepted: bool,
    pub reasons: Vec<String>,
    pub store: String,
    pub new_f1: f64,
    pub current_version: Option<String>,
    pub current_f1: Option<f64>,
    pub min_improvement: f64,
}

pub fn run(
    run: &mut Run,
    settings: &Settings,
    store: &ModelStore,
    model: &ModelFile,
    test: &Dataset,
) -> anyhow::Result<Decision> {
    let started = std::time::Instant::now();
    let min_improvement = settings.config.train.min_improvement;
    let new_f1 = test_f1(model, test)?;
    let current = match store.current()? {
        Some(version) => Some((test_f1(&store.get(&version)?, test)?, version)),
        None => None,
    };
    let decision = decide(new_f1, current, min_improvement, store.describe());
    let json = serde_json::to_vec_pretty(&decision)?;
    run.write(DECISION, |w| w.write_all(&json))?;
    run.finish_stage("evaluate", started.elapsed().as_secs_f64())?;
    Ok(decision)
}

/// F1 of a model file's predictions on raw test rows (its own preprocessor applied).
fn test_f1(model: &ModelFile, test: &Dataset) -> anyhow::Result<f64> {
    let positive = model.schema.target.values[1];
    let predicted: Vec<u8> =
        model.predict_dataset(test)?.iter().map(|&(label, _)| u8::from(label == positive)).collect();
    let truth: Vec<u8> = test.labels.iter().map(|&l| u8::from(l == positive)).collect();
    Ok(metrics::f1(&truth, &predicted))
}

fn decide(new_f1: f64, current: Option<(f64, String)>, min_improvement: f64, store: String) -> Decision {
    let Some((current_f1, version)) = current else {
        return Decision {
            accepted: true,
            reasons: vec![format!("the store has no current model; test F1 {new_f1:.4}")],
            store,
            new_f1,
            current_version: None,
            current_f1: None,
            min_improvement,
        };
    };
    let gain = new_f1 - current_f1;
    let accepted = gain > min_improvement;
    let verdict = if accepted { "improves on" } else { "does not improve enough on" };
    let reason = format!(
        "test F1 {new_f1:.4} {verdict} the current model {version}'s {current_f1:.4} on the same test rows \
         (gain {gain:+.4}; train.min_improvement {min_improvement})"
    );
    Decision {
        accepted,
        reasons: vec![reason],
        store,
        new_f1,
        current_version: Some(version),
        current_f1: Some(current_f1),
        min_improvement,
    }
}

/// The evaluate stage's output, read back from the run folder.
pub fn load(run: &Run) -> anyhow::Result<Decision> {
    run.require_stage("evaluate")?;
    Ok(serde_json::from_slice(&std::fs::read(run.path(DECISION))?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_without_a_current_model_or_on_a_large_enough_gain() {
        assert!(decide(0.9, None, 0.0, "s".into()).accepted);
        assert!(decide(0.95, Some((0.94, "v1".into())), 0.0, "s".into()).accepted);
        assert!(decide(0.95, Some((0.94, "v1".into())), 0.005, "s".into()).accepted);
        assert!(decide(0.93, Some((0.94, "v1".into())), -0.02, "s".into()).accepted, "a tolerated regression");
    }

    #[test]
    fn rejects_an_equal_worse_or_too_small_gain_and_says_why() {
        assert!(!decide(0.94, Some((0.94, "v1".into())), 0.0, "s".into()).accepted);
        assert!(!decide(0.93, Some((0.94, "v1".into())), 0.0, "s".into()).accepted);
        let small = decide(0.945, Some((0.94, "v1".into())), 0.01, "s".into());
        assert!(!small.accepted);
        assert!(small.reasons[0].contains("v1") && small.reasons[0].contains("min_improvement"), "{:?}", small.reasons);
    }
}
