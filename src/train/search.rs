//! Grid search: every fit point on every cross-validation fold, scored on F1, in parallel.
//!
//! Folds follow the split strategy: with groups (identical feature vectors), every copy of a
//! row stays inside one fold, so a model is never validated on rows it was trained on.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::folds;
use super::grid::FitPoint;
use super::metrics;
use crate::learn::{Classifier, Prepared, Samples};

/// The training rows the search runs on.
pub struct SearchData<'a> {
    /// Row-major features.
    pub x: &'a [f32],
    pub y: &'a [u8],
    pub n_features: usize,
    /// A group id per row, to keep groups inside one fold (grouped strategy).
    pub groups: Option<&'a [usize]>,
    pub folds: usize,
    pub seed: u64,
}

/// One grid point's cross-validated score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateScore {
    pub family: String,
    pub params: Map<String, Value>,
    pub fold_f1: Vec<f64>,
    /// Mean F1 over the folds: what selection uses.
    pub cv_f1: f64,
}

/// One fold's training part, binned once for every fit on it, and its validation rows.
struct Fold {
    prepared: Prepared,
    validation_x: Vec<f32>,
    validation_y: Vec<u8>,
}

/// Scores every candidate of `points` (every stage of every fit point) by k-fold CV F1.
pub fn search(
    points: &[FitPoint],
    data: &SearchData<'_>,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<Vec<CandidateScore>> {
    let folds = make_folds(data)?;
    let jobs: Vec<(usize, usize)> = (0..points.len()).flat_map(|p| (0..folds.len()).map(move |f| (p, f))).collect();
    progress.set_length(jobs.len() as u64);
    let scores: Vec<Vec<f64>> = jobs
        .par_iter()
        .map(|&(p, f)| {
            let scores = score_fit(&points[p], &folds[f]);
            progress.inc(1);
            scores
        })
        .collect::<anyhow::Result<_>>()?;
    progress.finish_and_clear();
    Ok(collect_candidates(points, folds.len(), &scores))
}

fn make_folds(data: &SearchData<'_>) -> anyhow::Result<Vec<Fold>> {
    let assignment = match data.groups {
        Some(groups) => folds::stratified_group_k_fold(data.y, groups, data.folds, data.seed)?,
        None => folds::stratified_k_fold(data.y, data.folds)?,
    };
    folds::fold_indices(&assignment, data.folds)
        .into_par_iter()
        .map(|(train, validation)| {
            let (train_x, train_y) = gather(data, &train);
            let (validation_x, validation_y) = gather(data, &validation);
            let prepared = Prepared::new(&Samples::new(&train_x, data.n_features, &train_y)?)?;
            Ok(Fold { prepared, validation_x, validation_y })
        })
        .collect()
}

/// The rows at `indices`, copied out.
pub fn gather(data: &SearchData<'_>, indices: &[usize]) -> (Vec<f32>, Vec<u8>) {
    let n = data.n_features;
    let x = indices.iter().flat_map(|&i| &data.x[i * n..(i + 1) * n]).copied().collect();
    (x, indices.iter().map(|&i| data.y[i]).collect())
}

/// F1 on the fold's validation rows at each stage of the fit point.
fn score_fit(point: &FitPoint, fold: &Fold) -> anyhow::Result<Vec<f64>> {
    let model = point.config.fit_prepared(&fold.prepared)?;
    let stage_sizes: Vec<usize> = point.stages.iter().flatten().copied().collect();
    let predictions = match model.staged_predict_proba(&fold.validation_x, &stage_sizes) {
        Some(staged) if !stage_sizes.is_empty() => {
            staged.iter().map(|proba| proba.iter().map(|&p| u8::from(p > 0.5)).collect()).collect()
        }
        _ => vec![model.predict(&fold.validation_x)],
    };
    Ok(predictions.iter().map(|predicted: &Vec<u8>| metrics::f1(&fold.validation_y, predicted)).collect())
}

fn collect_candidates(points: &[FitPoint], n_folds: usize, scores: &[Vec<f64>]) -> Vec<CandidateScore> {
    let mut candidates = Vec::new();
    for (p, point) in points.iter().enumerate() {
        for (s, &stage) in point.stages.iter().enumerate() {
            let fold_f1: Vec<f64> = (0..n_folds).map(|f| scores[p * n_folds + f][s]).collect();
            let cv_f1 = fold_f1.iter().sum::<f64>() / n_folds as f64;
            candidates.push(CandidateScore {
                family: point.family.clone(),
                params: point.point(stage),
                fold_f1,
                cv_f1,
            });
        }
    }
    candidates
}

/// The index of the best candidate (highest CV F1; the first in config order on a tie),
/// among those `keep` accepts.
pub fn best(candidates: &[CandidateScore], keep: impl Fn(&CandidateScore) -> bool) -> Option<usize> {
    candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| keep(c))
        .fold(None, |best: Option<(usize, f64)>, (i, c)| match best {
            Some((_, score)) if score >= c.cv_f1 => best,
            _ => Some((i, c.cv_f1)),
        })
        .map(|(i, _)| i)
}

/// The fit point and stage a candidate came from.
pub fn locate<'p>(points: &'p [FitPoint], candidate: &CandidateScore) -> (&'p FitPoint, Option<usize>) {
    let stage = candidate.params.get("n_estimators").and_then(Value::as_u64).map(|n| n as usize);
    let point = points
        .iter()
        .find(|p| p.family == candidate.family && p.point(stage) == candidate.params)
        .expect("every candidate comes from a fit point");
    (point, stage)
}
