//! Train: grid search with k-fold CV on F1 over every configured model family, selection on
//! cross-validated F1 (never on the test set), refit of each family's best on the whole train
//! set, train and test metrics, and the expected-score and overfitting checks.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::transform::Transformed;
use super::Settings;
use crate::artifacts::Run;
use crate::config::SplitStrategy;
use crate::dataset;
use crate::learn::{Classifier, Model, Prepared, Samples};
use crate::model_file::ModelFile;
use crate::train::grid::{self, FitPoint};
use crate::train::metrics::Metrics;
use crate::train::search::{self, CandidateScore, SearchData};

pub const SEARCH: &str = "train/search.json";
pub const MODEL: &str = "train/model.bin";
pub const REPORT: &str = "train/report.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainReport {
    pub folds: usize,
    /// Whether identical feature vectors were kept inside one fold.
    pub grouped_folds: bool,
    pub candidates: usize,
    pub search_seconds: f64,
    /// Each family's best grid point, refitted on the whole train set.
    pub families: Vec<FamilyResult>,
    /// The chosen family (best cross-validated F1).
    pub chosen: FamilyResult,
    /// Train F1 minus test F1 of the chosen model.
    pub overfit_gap: f64,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FamilyResult {
    pub family: String,
    pub params: Map<String, Value>,
    pub cv_f1: f64,
    pub train: Metrics,
    pub test: Metrics,
}

pub struct Trained {
    pub model: ModelFile,
    pub report: TrainReport,
    /// Every grid point's CV F1 (`train/search.json`).
    pub candidates: Vec<CandidateScore>,
}

pub fn run(run: &mut Run, settings: &Settings, data: &Transformed) -> anyhow::Result<Trained> {
    let started = std::time::Instant::now();
    let config = &settings.config.train;
    let points = grid::expand(&config.models, config.seed)?;
    let grouped = settings.config.split.strategy == SplitStrategy::Grouped;
    let groups = grouped.then(|| dataset::row_groups(&data.train_x, data.n_features).0);
    let search_data = SearchData {
        x: &data.train_x,
        y: &data.train_y,
        n_features: data.n_features,
        groups: groups.as_deref(),
        folds: config.folds,
        seed: config.seed,
    };
    let progress = progress_bar("grid search");
    let candidates = search::search(&points, &search_data, &progress)?;
    let search_seconds = started.elapsed().as_secs_f64();
    let (families, models) = refit_family_bests(&points, &candidates, data)?;
    let chosen_index = best_family(&families);
    let chosen = families[chosen_index].clone();
    let overfit_gap = chosen.train.f1 - chosen.test.f1;
    let report = TrainReport {
        folds: config.folds,
        grouped_folds: grouped,
        candidates: candidates.len(),
        search_seconds,
        warnings: check_thresholds(settings, &chosen, overfit_gap)?,
        families,
        chosen,
        overfit_gap,
    };
    let model =
        model_file(run, settings, data, models.into_iter().nth(chosen_index).expect("one per family"), &report)?;
    let bytes = model.to_bytes();
    let candidates_json = serde_json::to_vec_pretty(&candidates)?;
    let report_json = serde_json::to_vec_pretty(&report)?;
    run.write_all(vec![
        (SEARCH, Box::new(|w| w.write_all(&candidates_json))),
        (MODEL, Box::new(|w| w.write_all(&bytes))),
        (REPORT, Box::new(|w| w.write_all(&report_json))),
    ])?;
    run.finish_stage("train", started.elapsed().as_secs_f64())?;
    Ok(Trained { model, report, candidates })
}

/// The chosen model with everything prediction needs and where it came from.
fn model_file(
    run: &Run,
    settings: &Settings,
    data: &Transformed,
    model: Model,
    report: &TrainReport,
) -> anyhow::Result<ModelFile> {
    let chosen = &report.chosen;
    let params = Value::Object(chosen.params.clone());
    let mut file = ModelFile::new(&chosen.family, params, model, data.preprocessor.clone(), settings.schema.clone());
    file.run_id = run.id().to_string();
    file.data_sha256 = run.manifest.input.as_ref().map(|i| i.sha256.clone()).unwrap_or_default();
    file.metrics = serde_json::json!({ "cv_f1": chosen.cv_f1, "train": chosen.train, "test": chosen.test });
    Ok(file)
}

/// Each family's best candidate, refitted on the whole train set and measured.
fn refit_family_bests(
    points: &[FitPoint],
    candidates: &[CandidateScore],
    data: &Transformed,
) -> anyhow::Result<(Vec<FamilyResult>, Vec<Model>)> {
    use rayon::prelude::*;
    let prepared = Prepared::new(&Samples::new(&data.train_x, data.n_features, &data.train_y)?)?;
    let mut families: Vec<&str> = points.iter().map(|p| p.family.as_str()).collect();
    families.dedup();
    let results: Vec<(FamilyResult, Model)> = families
        .par_iter()
        .map(|family| {
            let best = search::best(candidates, |c| c.family == *family).expect("every family has candidates");
            let candidate = &candidates[best];
            let (point, stage) = search::locate(points, candidate);
            let model = point.config_at(stage).fit_prepared(&prepared)?;
            let measure = |x: &[f32], y: &[u8]| Metrics::compute(y, &model.predict(x), &model.predict_proba(x));
            let result = FamilyResult {
                family: family.to_string(),
                params: candidate.params.clone(),
                cv_f1: candidate.cv_f1,
                train: measure(&data.train_x, &data.train_y),
                test: measure(&data.test_x, &data.test_y),
            };
            Ok((result, model))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(results.into_iter().unzip())
}

/// The family with the best cross-validated F1 (the first in config order on a tie).
fn best_family(families: &[FamilyResult]) -> usize {
    let mut best = 0;
    for (i, family) in families.iter().enumerate() {
        if family.cv_f1 > families[best].cv_f1 {
            best = i;
        }
    }
    best
}

/// Fails below the expected score; warns (or fails, if configured) on overfitting.
fn check_thresholds(settings: &Settings, chosen: &FamilyResult, gap: f64) -> anyhow::Result<Vec<String>> {
    let config = &settings.config.train;
    if chosen.test.f1 < config.expected_score {
        anyhow::bail!(
            "the best model ({}) reaches test F1 {:.4}, below train.expected_score {}: no model is good enough to keep",
            chosen.family,
            chosen.test.f1,
            config.expected_score
        );
    }
    let mut warnings = Vec::new();
    if gap > config.overfit_threshold {
        let message = format!(
            "{} overfits: train F1 {:.4} exceeds test F1 {:.4} by {gap:.4} (train.overfit_threshold {})",
            chosen.family, chosen.train.f1, chosen.test.f1, config.overfit_threshold
        );
        if config.fail_on_overfit {
            anyhow::bail!("{message}; train.fail_on_overfit is set");
        }
        tracing::warn!("{message}");
        warnings.push(message);
    }
    Ok(warnings)
}

fn progress_bar(message: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0).with_message(message.to_string());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} fits {elapsed}").expect("a valid template"),
    );
    bar
}

/// The train stage's output, read back from the run folder.
pub fn load(run: &Run) -> anyhow::Result<Trained> {
    run.require_stage("train")?;
    let model = ModelFile::load(&run.path(MODEL))?;
    let report = serde_json::from_slice(&std::fs::read(run.path(REPORT))?)?;
    let candidates = serde_json::from_slice(&std::fs::read(run.path(SEARCH))?)?;
    Ok(Trained { model, report, candidates })
}
