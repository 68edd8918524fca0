//! Runs the stages in order in one process (passing data in memory), or one stage alone on
//! an existing run (reading the previous stage's artifacts), and summarises what happened.

use std::fmt::Write as _;

use serde::Serialize;

use crate::artifacts::{Run, MANIFEST};
use crate::config::Config;
use crate::source;
use crate::stages::ingest::{self, IngestReport};
use crate::stages::transform::{self, TransformReport};
use crate::stages::validate::{self, ValidationReport};
use crate::stages::Settings;

/// What a command did, for the terminal (text) or for machines (JSON).
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub run_id: String,
    pub run_dir: String,
    pub ingest: Option<IngestReport>,
    pub validation: Option<ValidationReport>,
    pub transform: Option<TransformReport>,
    pub files: usize,
}

impl Summary {
    fn of(run: &Run) -> Summary {
        Summary {
            run_id: run.id().to_string(),
            run_dir: run.dir.display().to_string(),
            files: run.manifest.files.len(),
            ..Summary::default()
        }
    }
}

/// Every stage, from the configured source into a new run.
pub fn run_all(config: Config) -> anyhow::Result<Summary> {
    let settings = Settings::new(config)?;
    let source = source::open(&settings.config.source)?;
    let loaded = source.load(&settings.schema)?;
    let mut run = Run::create(&settings.config.artifacts, &settings.config)?;
    tracing::info!(run = run.id(), source = source.describe(), "pipeline started");
    let ingested = ingest::run(&mut run, &settings, source.as_ref(), loaded)?;
    let validation = validate::run(&mut run, &settings, &ingested.train, &ingested.test)?;
    let transformed = transform::run(&mut run, &settings, &ingested.train, &ingested.test)?;
    Ok(Summary {
        ingest: Some(ingested.report),
        validation: Some(validation),
        transform: Some(transformed.report),
        ..Summary::of(&run)
    })
}

/// The ingest stage into a new run.
pub fn ingest_only(config: Config) -> anyhow::Result<Summary> {
    let settings = Settings::new(config)?;
    let source = source::open(&settings.config.source)?;
    let loaded = source.load(&settings.schema)?;
    let mut run = Run::create(&settings.config.artifacts, &settings.config)?;
    let ingested = ingest::run(&mut run, &settings, source.as_ref(), loaded)?;
    Ok(Summary { ingest: Some(ingested.report), ..Summary::of(&run) })
}

/// The validate stage on an existing run (the newest when `run_id` is None), with the
/// configuration that run was started with, so that its manifest stays true.
pub fn validate_only(artifacts: &std::path::Path, run_id: Option<&str>) -> anyhow::Result<Summary> {
    let mut run = Run::open(artifacts, run_id)?;
    let settings = Settings::new(run.manifest.config.clone())?;
    let ingested = ingest::load(&run, &settings)?;
    let validation = validate::run(&mut run, &settings, &ingested.train, &ingested.test)?;
    Ok(Summary { validation: Some(validation), ..Summary::of(&run) })
}

/// The transform stage on an existing, validated run.
pub fn transform_only(artifacts: &std::path::Path, run_id: Option<&str>) -> anyhow::Result<Summary> {
    let mut run = Run::open(artifacts, run_id)?;
    let settings = Settings::new(run.manifest.config.clone())?;
    run.require_stage("validate")?;
    let ingested = ingest::load(&run, &settings)?;
    let transformed = transform::run(&mut run, &settings, &ingested.train, &ingested.test)?;
    Ok(Summary { transform: Some(transformed.report), ..Summary::of(&run) })
}

/// The summary as people read it.
pub fn render(summary: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "run         {}  ({})", summary.run_id, summary.run_dir);
    if let Some(r) = &summary.ingest {
        let _ = writeln!(out, "source      {}", r.source);
        let _ = writeln!(
            out,
            "rows        {} rows x {} features; {} duplicate rows; {} distinct feature vectors; {} missing cells",
            r.rows, r.features, r.duplicate_rows, r.distinct_feature_vectors, r.missing_cells
        );
        if !r.extra_columns.is_empty() {
            let _ = writeln!(out, "dropped     columns not in the schema: {}", r.extra_columns.join(", "));
        }
        let _ = writeln!(
            out,
            "split       {}: {} train / {} test; {} test rows also occur in train",
            r.strategy, r.train_rows, r.test_rows, r.test_rows_in_train
        );
    }
    if let Some(v) = &summary.validation {
        render_validation(&mut out, v);
    }
    if let Some(t) = &summary.transform {
        let _ = writeln!(
            out,
            "transform   KNN imputer (k={}): {} train and {} test cells imputed",
            t.imputer_k, t.imputed_train_cells, t.imputed_test_cells
        );
    }
    let _ = writeln!(out, "manifest    {}/{MANIFEST} ({} files)", summary.run_dir, summary.files);
    out
}

fn render_validation(out: &mut String, v: &ValidationReport) {
    let schema = if v.schema_errors.is_empty() { "ok".to_string() } else { v.schema_errors.join("; ") };
    let missing: usize = v.missing.iter().map(|m| m.train + m.test).sum();
    let _ = writeln!(
        out,
        "validation  schema {schema}; {missing} missing cells; duplicate rows: {} in train, {} in test",
        v.duplicates.train, v.duplicates.test
    );
    let _ = writeln!(
        out,
        "leakage     {} of {} test rows also occur in train; {} feature vectors carry both labels",
        v.leakage.test_rows_in_train, v.leakage.test_rows, v.leakage.conflicting_feature_vectors
    );
    let _ = writeln!(
        out,
        "drift       {} of {} columns drift (KS p-value < {})",
        v.drifted_columns().len(),
        v.drift.len(),
        v.drift_threshold
    );
    out.push_str(&validate::drift_table(v));
}
