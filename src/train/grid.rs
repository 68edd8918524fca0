//! Parameter grids: `train.models` in the config, expanded into fits.
//!
//! A grid over `n_estimators` is not expanded into separate fits: one fit with the largest
//! value is scored at every requested size from its staged predictions.

use serde_json::{Map, Value};

use crate::error::InputError;
use crate::learn::ModelConfig;

/// One model to fit per fold, scored at each of `stages` estimators (one stage, `None`, for
/// models that are not ensembles).
#[derive(Debug, Clone, PartialEq)]
pub struct FitPoint {
    pub family: String,
    /// The grid point without `n_estimators`.
    pub params: Map<String, Value>,
    /// The model to fit (with the largest `n_estimators` of the grid, for ensembles).
    pub config: ModelConfig,
    pub stages: Vec<Option<usize>>,
}

impl FitPoint {
    /// The full grid point of one stage, as it is recorded.
    pub fn point(&self, stage: Option<usize>) -> Map<String, Value> {
        let mut params = self.params.clone();
        if let Some(n) = stage {
            params.insert("n_estimators".into(), n.into());
        }
        params
    }

    /// The model config of one stage, seeded.
    pub fn config_at(&self, stage: Option<usize>) -> ModelConfig {
        stage.map_or_else(|| self.config.clone(), |n| self.config.with_n_estimators(n))
    }
}

/// Expands `train.models` (family → parameter → values) into fit points, in config order.
pub fn expand(models: &serde_yaml::Mapping, seed: u64) -> Result<Vec<FitPoint>, InputError> {
    let mut points = Vec::new();
    for (family, grid) in models {
        let family = family.as_str().ok_or_else(|| grid_error("a model family name must be text"))?;
        let grid = grid_values(family, grid)?;
        let (stages, others): (Vec<_>, Vec<_>) = grid.into_iter().partition(|(name, _)| name == "n_estimators");
        let stages = stage_list(family, stages.into_iter().next().map(|(_, values)| values))?;
        for params in cartesian(&others) {
            let mut full = params.clone();
            if let Some(Some(largest)) = stages.last() {
                full.insert("n_estimators".into(), (*largest).into());
            }
            let config = model_config(family, full, seed)?;
            points.push(FitPoint { family: family.to_string(), params, config, stages: stages.clone() });
        }
    }
    Ok(points)
}

/// A family's parameters as (name, values) pairs; a single value counts as a list of one.
fn grid_values(family: &str, grid: &serde_yaml::Value) -> Result<Vec<(String, Vec<Value>)>, InputError> {
    let Some(mapping) = grid.as_mapping().or(grid.is_null().then_some(&serde_yaml::Mapping::new())).cloned() else {
        return Err(grid_error(&format!("`{family}` must map parameter names to lists of values")));
    };
    mapping
        .into_iter()
        .map(|(name, values)| {
            let name = name.as_str().unwrap_or_default().to_string();
            let values = match serde_json::to_value(&values).map_err(|e| grid_error(&e.to_string()))? {
                Value::Array(values) if values.is_empty() => {
                    return Err(grid_error(&format!("`{family}.{name}` lists no values")));
                }
                Value::Array(values) => values,
                single => vec![single],
            };
            Ok((name, values))
        })
        .collect()
}

fn stage_list(family: &str, values: Option<Vec<Value>>) -> Result<Vec<Option<usize>>, InputError> {
    let Some(values) = values else { return Ok(vec![None]) };
    let mut stages = values
        .iter()
        .map(|v| v.as_u64().filter(|&n| n > 0).map(|n| Some(n as usize)))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| grid_error(&format!("`{family}.n_estimators` must list positive whole numbers")))?;
    stages.sort_unstable();
    stages.dedup();
    Ok(stages)
}

/// Every combination of the parameters' values, the first parameter varying slowest.
fn cartesian(grid: &[(String, Vec<Value>)]) -> Vec<Map<String, Value>> {
    grid.iter().fold(vec![Map::new()], |points, (name, values)| {
        points
            .iter()
            .flat_map(|point| {
                values.iter().map(move |value| {
                    let mut point = point.clone();
                    point.insert(name.clone(), value.clone());
                    point
                })
            })
            .collect()
    })
}

/// The model config of a grid point; families that draw random numbers get the seed.
fn model_config(family: &str, mut params: Map<String, Value>, seed: u64) -> Result<ModelConfig, InputError> {
    if family != "logistic_regression" {
        params.entry("seed").or_insert(seed.into());
    }
    let tagged = Value::Object(Map::from_iter([(family.to_string(), Value::Object(params))]));
    serde_json::from_value(tagged).map_err(|e| {
        grid_error(&format!("`{family}`: {e}")).hint(
            "model families are random_forest, decision_tree, gradient_boosting, logistic_regression and \
             ada_boost, with scikit-learn's parameter names",
        )
    })
}

fn grid_error(problem: &str) -> InputError {
    InputError::new(format!("setting `train.models`: {problem}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TrainConfig;

    #[test]
    fn the_default_grids_are_the_python_originals() {
        let points = expand(&TrainConfig::default().models, 7).unwrap();
        let count = |family: &str| points.iter().filter(|p| p.family == family).count();
        assert_eq!(
            [
                count("random_forest"),
                count("decision_tree"),
                count("gradient_boosting"),
                count("logistic_regression"),
                count("ada_boost")
            ],
            [1, 3, 20, 1, 3]
        );
        let forest = &points[0];
        assert_eq!(forest.stages, [8, 16, 32, 128, 256].map(Some));
        assert_eq!(forest.config.n_estimators(), Some(256));
        assert_eq!(forest.point(Some(32))["n_estimators"], 32);
        let candidates: usize = points.iter().map(|p| p.stages.len()).sum();
        assert_eq!(candidates, 5 + 3 + 120 + 1 + 18);
    }

    #[test]
    fn unknown_families_and_parameters_are_named() {
        let grid = |yaml: &str| expand(&serde_yaml::from_str(yaml).unwrap(), 0).unwrap_err().to_string();
        assert!(grid("svm: {}").contains("svm"));
        assert!(grid("random_forest: { n_trees: [1] }").contains("n_trees"));
        assert!(grid("ada_boost: { n_estimators: [0] }").contains("positive"));
    }
}
