//! Runs the stages in order in one process (passing data in memory), or one stage alone on
//! an existing run (loading what earlier stages wrote), and summarises what happened.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::artifacts::{Run, MANIFEST};
use crate::config::Config;
use crate::error::InputError;
use crate::source;
use crate::stages::evaluate::{self, Decision};
use crate::stages::ingest::{self, IngestReport, Ingested};
use crate::stages::push::{self, PushResult};
use crate::stages::train::{self, TrainReport, Trained};
use crate::stages::transform::{self, TransformReport, Transformed};
use crate::stages::validate::{self, ValidationReport};
use crate::stages::Settings;
use crate::store;
use crate::tracking::{self, mlflow, Analysis, Facts, TestRows};

/// The stages, in pipeline order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Ingest,
    Validate,
    Transform,
    Train,
    Evaluate,
    Push,
}

impl Stage {
    pub const ALL: [Stage; 6] =
        [Stage::Ingest, Stage::Validate, Stage::Transform, Stage::Train, Stage::Evaluate, Stage::Push];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Ingest => "ingest",
            Stage::Validate => "validate",
            Stage::Transform => "transform",
            Stage::Train => "train",
            Stage::Evaluate => "evaluate",
            Stage::Push => "push",
        }
    }

    /// The settings this stage reads, to tell whether a new configuration changes its work.
    fn reads(self, config: &Config) -> serde_json::Value {
        let train = &config.train;
        match self {
            Stage::Ingest => serde_json::json!([config.source, config.schema, config.split, config.mongo]),
            Stage::Validate => serde_json::json!(config.validation),
            Stage::Transform => serde_json::json!(config.transform),
            Stage::Train => serde_json::json!([
                train.folds,
                train.seed,
                train.expected_score,
                train.overfit_threshold,
                train.fail_on_overfit,
                train.models
            ]),
            Stage::Evaluate => serde_json::json!([train.store, train.min_improvement]),
            Stage::Push => serde_json::json!(train.store),
        }
    }

    fn previous(self) -> Option<Stage> {
        let i = Stage::ALL.iter().position(|&s| s == self).expect("listed");
        i.checked_sub(1).map(|i| Stage::ALL[i])
    }
}

/// What a command did, for the terminal (text) or for machines (JSON).
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub run_id: String,
    pub run_dir: String,
    pub ingest: Option<IngestReport>,
    pub validation: Option<ValidationReport>,
    pub transform: Option<TransformReport>,
    pub train: Option<TrainReport>,
    pub evaluate: Option<Decision>,
    pub push: Option<PushResult>,
    pub tracking: Option<TrackingSummary>,
    pub files: usize,
}

/// What the tracker did after the stages.
#[derive(Debug, Default, Serialize)]
pub struct TrackingSummary {
    pub record: String,
    pub report: String,
    pub seconds: f64,
    /// The MLflow server's answer, when MLFLOW_TRACKING_URI names one and the run is whole.
    pub mlflow: Option<mlflow::SyncState>,
}

/// Stage outputs of one run: kept from the stages run in this process, or loaded from the
/// run folder the first time a later stage asks for them.
#[derive(Default)]
struct Outputs {
    ingested: Option<Ingested>,
    transformed: Option<Transformed>,
    trained: Option<Trained>,
    decision: Option<Decision>,
}

impl Outputs {
    fn ingested(&mut self, run: &Run, settings: &Settings) -> anyhow::Result<&Ingested> {
        if self.ingested.is_none() {
            self.ingested = Some(ingest::load(run, settings)?);
        }
        Ok(self.ingested.as_ref().expect("just set"))
    }

    fn transformed(&mut self, run: &Run) -> anyhow::Result<&Transformed> {
        if self.transformed.is_none() {
            self.transformed = Some(transform::load(run)?);
        }
        Ok(self.transformed.as_ref().expect("just set"))
    }

    fn trained(&mut self, run: &Run) -> anyhow::Result<&Trained> {
        if self.trained.is_none() {
            self.trained = Some(train::load(run)?);
        }
        Ok(self.trained.as_ref().expect("just set"))
    }

    fn decision(&mut self, run: &Run) -> anyhow::Result<&Decision> {
        if self.decision.is_none() {
            self.decision = Some(evaluate::load(run)?);
        }
        Ok(self.decision.as_ref().expect("just set"))
    }
}

/// Every stage, from the configured source into a new run.
pub fn run_all(config: Config) -> anyhow::Result<Summary> {
    run_new(config, None, &Stage::ALL)
}

/// `stages` (starting with ingest) into a new run, named by the time or `name` (which
/// replaces an earlier run of that name). The source is read and checked before the run
/// folder exists, so bad input leaves no run behind (and an earlier run of the name intact).
pub fn run_new(config: Config, name: Option<&str>, stages: &[Stage]) -> anyhow::Result<Summary> {
    let settings = Settings::new(config)?;
    let source = source::open_configured(&settings.config)?;
    let loaded = source.load(&settings.schema, source::Labels::Required)?;
    // The manifest records the configuration, and is uploaded with the run: no password.
    let recorded = as_recorded(settings.config.clone());
    let mut run = match name {
        Some(name) => Run::create_named(&settings.config.artifacts, name, &recorded)?,
        None => Run::create(&settings.config.artifacts, &recorded)?,
    };
    tracing::info!(run = run.id(), source = source.describe(), "pipeline started");
    let mut summary = Summary::default();
    let mut outputs = Outputs::default();
    let ingested = ingest::run(&mut run, &settings, source.as_ref(), loaded)?;
    summary.ingest = Some(ingested.report.clone());
    outputs.ingested = Some(ingested);
    for &stage in stages.iter().filter(|&&s| s != Stage::Ingest) {
        run_stage(&mut run, &settings, stage, &mut outputs, &mut summary)?;
    }
    after_stages(&mut run, &settings, &mut outputs, &mut summary)?;
    Ok(summary.finish(&run))
}

/// How a stage run alone on an existing run is configured.
pub enum StageConfig<'a> {
    /// As the run was started (so that its manifest stays true), with another store if given.
    Recorded { store: Option<&'a str> },
    /// The configuration in force now (file, environment, flags), recorded into the run; refused
    /// when it changes what an earlier completed stage read. Tools that rerun a stage because
    /// its parameters changed (DVC) need this.
    Current(Box<Config>),
}

/// One stage on an existing run (the newest when `run_id` is None).
pub fn resume(artifacts: &Path, run_id: Option<&str>, stage: Stage, config: StageConfig) -> anyhow::Result<Summary> {
    let mut run = Run::open(artifacts, run_id)?;
    let config = match config {
        StageConfig::Recorded { store } => {
            let mut config = run.manifest.config.clone();
            if let Some(store) = store {
                config.train.store = store.to_string();
            }
            config
        }
        StageConfig::Current(config) => reconfigure(&mut run, stage, *config)?,
    };
    let settings = Settings::new(config)?;
    if let Some(previous) = stage.previous() {
        run.require_stage(previous.name())?;
    }
    let mut summary = Summary::default();
    let mut outputs = Outputs::default();
    run_stage(&mut run, &settings, stage, &mut outputs, &mut summary)?;
    after_stages(&mut run, &settings, &mut outputs, &mut summary)?;
    Ok(summary.finish(&run))
}

/// The configuration as a run records it (and uploads it): the source without its password.
fn as_recorded(config: Config) -> Config {
    Config { source: source::redacted(&config.source), ..config }
}

/// Records `config` as the run's configuration for `stage` and the ones after it, once every
/// earlier completed stage is found to have read the same settings as before.
fn reconfigure(run: &mut Run, stage: Stage, config: Config) -> anyhow::Result<Config> {
    let config = as_recorded(config);
    let earlier = Stage::ALL.iter().take_while(|&&s| s != stage).filter(|s| run.has_stage(s.name()));
    for &done in earlier {
        if done.reads(&run.manifest.config) != done.reads(&config) {
            return Err(InputError::in_file(
                &run.dir,
                format!("the configuration changed what the {} stage read", done.name()),
            )
            .hint(format!("run `netsec {}` again first (or `netsec pipeline`)", done.name()))
            .into());
        }
    }
    run.manifest.config = config.clone();
    run.save_manifest()?;
    Ok(config)
}

/// After the stages of a command: the tracker records the run as far as it got (and sends it
/// to MLflow once it is whole), then a store that keeps runs receives the folder, so that the
/// upload carries the record.
fn after_stages(
    run: &mut Run,
    settings: &Settings,
    outputs: &mut Outputs,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let record = track(run, settings, outputs, summary)?;
    let mut tracked = TrackingSummary {
        record: run.path(tracking::RECORD).display().to_string(),
        report: run.path(tracking::REPORT_HTML).display().to_string(),
        seconds: started.elapsed().as_secs_f64(),
        mlflow: None,
    };
    if let (Some(server), Some(_)) = (mlflow::Settings::from_env()?, &summary.push) {
        tracked.mlflow = Some(mlflow::send(run, &record, &server)?);
    }
    summary.tracking = Some(tracked);
    if let Some(result) = summary.push.as_mut() {
        push::upload(run, &store::open(&settings.config.train.store)?, result)?;
    }
    Ok(())
}

/// The run record and report from what the stages produced (loading what this command did
/// not produce itself).
fn track(
    run: &mut Run,
    settings: &Settings,
    outputs: &mut Outputs,
    summary: &Summary,
) -> anyhow::Result<tracking::Record> {
    fn read<T: serde::de::DeserializeOwned>(run: &Run, stage: Stage, file: &str) -> anyhow::Result<Option<T>> {
        if !run.has_stage(stage.name()) {
            return Ok(None);
        }
        Ok(Some(serde_json::from_slice(&std::fs::read(run.path(file))?)?))
    }
    let ingest = summary.ingest.clone().map_or_else(|| read(run, Stage::Ingest, ingest::REPORT), |r| Ok(Some(r)))?;
    let validation = summary
        .validation
        .clone()
        .map_or_else(|| read(run, Stage::Validate, validate::REPORT_JSON), |r| Ok(Some(r)))?;
    let decision =
        summary.evaluate.clone().map_or_else(|| read(run, Stage::Evaluate, evaluate::DECISION), |r| Ok(Some(r)))?;
    let push = summary.push.clone().map_or_else(|| read(run, Stage::Push, push::RESULT), |r| Ok(Some(r)))?;
    let trained = if run.has_stage(Stage::Train.name()) {
        outputs.transformed(run)?;
        outputs.trained(run)?;
        outputs.trained.as_ref().zip(outputs.transformed.as_ref())
    } else {
        None
    };
    let feature_names = settings.schema.feature_names();
    let analysis = trained.map(|(trained, data)| {
        let test =
            TestRows { x: &data.test_x, y: &data.test_y, n_features: data.n_features, feature_names: &feature_names };
        let seed = settings.config.train.seed;
        Analysis::compute(&trained.model.model, &trained.report, &trained.candidates, &test, seed)
    });
    let values = &settings.schema.target.values;
    let facts = Facts {
        manifest: &run.manifest.clone(),
        ingest: ingest.as_ref(),
        validation: validation.as_ref(),
        train: trained.map(|(t, _)| &t.report),
        candidates: trained.map_or(&[], |(t, _)| &t.candidates),
        decision: decision.as_ref(),
        push: push.as_ref(),
        classes: [values[0].to_string(), values[1].to_string()],
        analysis,
    };
    tracking::record(run, &facts)
}

fn run_stage(
    run: &mut Run,
    settings: &Settings,
    stage: Stage,
    outputs: &mut Outputs,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    match stage {
        Stage::Ingest => anyhow::bail!("ingest starts a new run; it cannot run on an existing one"),
        Stage::Validate => {
            let data = outputs.ingested(run, settings)?;
            let (train, test) = (&data.train, &data.test);
            summary.validation = Some(validate::run(run, settings, train, test)?);
        }
        Stage::Transform => {
            let data = outputs.ingested(run, settings)?;
            let (train, test) = (&data.train, &data.test);
            let transformed = transform::run(run, settings, train, test)?;
            summary.transform = Some(transformed.report.clone());
            outputs.transformed = Some(transformed);
        }
        Stage::Train => {
            let trained = train::run(run, settings, outputs.transformed(run)?)?;
            summary.train = Some(trained.report.clone());
            outputs.trained = Some(trained);
        }
        Stage::Evaluate => {
            let store = store::open(&settings.config.train.store)?;
            outputs.trained(run)?;
            outputs.ingested(run, settings)?;
            let (model, test) =
                (&outputs.trained.as_ref().expect("loaded").model, &outputs.ingested.as_ref().expect("loaded").test);
            let decision = evaluate::run(run, settings, &store, model, test)?;
            summary.evaluate = Some(decision.clone());
            outputs.decision = Some(decision);
        }
        Stage::Push => {
            let store = store::open(&settings.config.train.store)?;
            let decision = outputs.decision(run)?.clone();
            let model = &outputs.trained(run)?.model;
            summary.push = Some(push::run(run, &store, model, &decision)?);
        }
    }
    Ok(())
}

impl Summary {
    fn finish(mut self, run: &Run) -> Summary {
        self.run_id = run.id().to_string();
        self.run_dir = run.dir.display().to_string();
        self.files = run.manifest.files.len();
        self
    }
}

/// The summary as people read it.
pub fn render(summary: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "run         {}  ({})", summary.run_id, summary.run_dir);
    if let Some(r) = &summary.ingest {
        render_ingest(&mut out, r);
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
    if let Some(t) = &summary.train {
        render_train(&mut out, t);
    }
    if let Some(d) = &summary.evaluate {
        let verdict = if d.accepted { "ACCEPTED" } else { "REJECTED" };
        let _ = writeln!(out, "evaluate    {verdict}: {}", d.reasons.join("; "));
    }
    if let Some(p) = &summary.push {
        match &p.version {
            Some(version) => _ = writeln!(out, "push        {version} is now current in {}", p.store),
            None => _ = writeln!(out, "push        nothing pushed; {} keeps its current model", p.store),
        }
        if let Some(a) = &p.artifacts {
            let _ = writeln!(
                out,
                "artifacts   {} files uploaded to {} ({} bytes), {} unchanged",
                a.uploaded, a.destination, a.bytes_uploaded, a.unchanged
            );
        }
    }
    if let Some(t) = &summary.tracking {
        let _ = writeln!(out, "report      {} ({:.0} ms to record)", t.report, t.seconds * 1000.0);
        if let Some(state) = &t.mlflow {
            let message = state.describe().replace("RUN", &summary.run_id);
            let _ = writeln!(out, "mlflow      {message}");
            if !state.sent() {
                let _ = writeln!(out, "            the run itself is complete: its record is in {}", t.record);
            }
        }
    }
    let _ = writeln!(out, "manifest    {}/{MANIFEST} ({} files)", summary.run_dir, summary.files);
    out
}

fn render_ingest(out: &mut String, r: &IngestReport) {
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
    let _ = writeln!(out, "drift       {}", v.drift_summary());
    out.push_str(&validate::drift_table(v));
}

fn render_train(out: &mut String, t: &TrainReport) {
    let folds = if t.grouped_folds { "grouped " } else { "" };
    let _ = writeln!(
        out,
        "train       {} candidates, {}{}-fold CV on F1, {:.2} s",
        t.candidates, folds, t.folds, t.search_seconds
    );
    let _ = writeln!(
        out,
        "{:<22} {:>7} {:>8} {:>8} {:>9} {:>8}  params",
        "family", "CV F1", "train F1", "test F1", "precision", "recall"
    );
    for f in &t.families {
        let marker = if f.family == t.chosen.family { "*" } else { " " };
        let params: Vec<String> =
            f.params.iter().filter(|(k, _)| *k != "seed").map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(
            out,
            "{marker}{:<21} {:>7.4} {:>8.4} {:>8.4} {:>9.4} {:>8.4}  {}",
            f.family,
            f.cv_f1,
            f.train.f1,
            f.test.f1,
            f.test.precision,
            f.test.recall,
            params.join(" ")
        );
    }
    for warning in &t.warnings {
        let _ = writeln!(out, "warning     {warning}");
    }
}
