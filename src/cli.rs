//! The `netsec` command line: parsing, logging set-up, and dispatch to the pipeline.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::artifacts::write_atomic;
use crate::config::{Config, SplitStrategy};
use crate::error::InputError;
use crate::pipeline::{self, Stage, StageConfig, Summary};
use crate::schema::Schema;
use crate::synth::{self, SynthOptions};
use crate::{predict, store};

#[derive(Debug, Parser)]
#[command(
    name = "netsec",
    version,
    about = "Phishing-website classifier: from raw data to a model, tracked and served"
)]
pub struct Cli {
    /// More log output (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Log lines (stderr) and summaries (stdout) as text or as JSON.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// A config file; `./netsec.yaml` is read when present and this is not given.
    #[arg(long, global = true, env = "NETSEC_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The data: a CSV or ARFF file, or a MongoDB URI (`mongodb://…`; `mongodb` alone takes it
    /// from MONGODB_URI or MONGO_DB_URL) (overrides `source` in the config).
    #[arg(long, global = true, value_name = "PATH")]
    pub source: Option<String>,
    /// The MongoDB database (overrides `mongo.database`; default WASNIK).
    #[arg(long, global = true, value_name = "NAME")]
    pub database: Option<String>,
    /// The MongoDB collection (overrides `mongo.collection`; default NetworkData).
    #[arg(long, global = true, value_name = "NAME")]
    pub collection: Option<String>,
    /// Root of the run folders (overrides `artifacts` in the config; default ./artifacts).
    #[arg(long, global = true, value_name = "DIR")]
    pub artifacts: Option<PathBuf>,
    /// The model store: a folder, s3://bucket/prefix or az://container/prefix (overrides
    /// `train.store`; default ./models).
    #[arg(long, global = true, value_name = "LOCATION")]
    pub store: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read the source, write the feature store and the train/test split into a new run.
    Ingest(NewRunArgs),
    /// Check schema, missing values, duplicates, leakage and drift of a run's split.
    Validate(RunArg),
    /// Fit the KNN imputer on a validated run's train rows and write the model inputs.
    Transform(RunArg),
    /// Grid-search every model family with k-fold CV on F1 and refit the best.
    Train(RunArg),
    /// Compare the trained model with the store's current one on the run's test rows.
    Evaluate(RunArg),
    /// Put an accepted model into the store and make it current.
    Push(RunArg),
    /// Run every stage into a new run and print the summary.
    Pipeline(NewRunArgs),
    /// Data utilities.
    #[command(subcommand)]
    Data(DataCommand),
    /// The model store: versions, the current model, promotion and rollback.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Score a CSV with the store's current model: adds `prediction` and `probability`.
    Predict {
        /// Rows to score (the schema's feature columns; the label column is optional).
        #[arg(long)]
        input: PathBuf,
        /// Where to write the rows with their predictions.
        #[arg(long)]
        output: PathBuf,
    },
    /// The local run history: list, show and compare runs; re-send one to MLflow.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Serve the store's current model over HTTP: predictions, web page, retraining, metrics.
    Serve(crate::serve::ServeArgs),
    /// Load a CSV or ARFF file into a MongoDB collection (--database, --collection), in batches.
    LoadData {
        /// The file to load (checked against the schema first).
        #[arg(long)]
        input: PathBuf,
        /// The server (default: MONGODB_URI, then MONGO_DB_URL); never printed with its password.
        #[arg(long)]
        uri: Option<String>,
        /// Documents per insert_many (overrides `mongo.batch_size`).
        #[arg(long)]
        batch: Option<u32>,
        /// Load into a temporary collection and rename it over the old one when complete.
        #[arg(long)]
        replace: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct NewRunArgs {
    /// How to split (overrides `split.strategy`).
    #[arg(long, value_enum)]
    pub split: Option<SplitStrategy>,
    /// Name the run (default: the UTC time); an earlier run of that name is replaced.
    #[arg(long, value_name = "NAME")]
    pub run: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct RunArg {
    /// The run (default: the newest).
    #[arg(long)]
    pub run: Option<String>,
    /// Use the configuration in force now (file, environment, flags) instead of the run's own,
    /// and record it in the run; refused when it changes what an earlier stage read.
    #[arg(long)]
    pub reconfigure: bool,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Every version, newest last, with the current one marked.
    List,
    /// One version (default: the current one) in detail.
    Show { version: Option<String> },
    /// Make a version the current one.
    Promote { version: String },
    /// Go back to the version that was current before the last promotion.
    Rollback,
    /// Write a version (default: the current one) in a format other tools load.
    Export {
        version: Option<String>,
        #[arg(long, value_enum, default_value_t = ExportFormat::Onnx)]
        format: ExportFormat,
        /// The file to write (replaced atomically).
        #[arg(long, short)]
        output: PathBuf,
    },
}

/// Formats `netsec models export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// One ONNX graph for the whole prediction: imputation, then the classifier.
    Onnx,
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Every run, oldest first: date, source, best model, CV F1, test F1, accepted.
    List,
    /// One run's record: tags, params, metrics, families, artifacts, MLflow status.
    Show { run: String },
    /// Two runs side by side: the params that differ and every metric with B - A.
    Compare { a: String, b: String },
    /// Send a run to the MLflow server of MLFLOW_TRACKING_URI (again, after a failure).
    Sync { run: String },
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Write SYNTHETIC rows with the schema's columns (not real phishing data), for scale
    /// tests, drift tests and offline demos.
    Synth {
        #[arg(long, default_value_t = 11_055)]
        rows: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Share of cells in the last 20% of rows set to their column's highest code (0..=1).
        #[arg(long, default_value_t = 0.0)]
        drift: f64,
        /// The CSV file to write.
        #[arg(long, short)]
        output: PathBuf,
    },
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    load_dotenv()?;
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(source) = &cli.source {
        config.source = source.clone();
    }
    if let Some(artifacts) = &cli.artifacts {
        config.artifacts = artifacts.clone();
    }
    if let Some(store) = &cli.store {
        config.train.store = store.clone();
    }
    config.mongo.database = cli.database.clone().unwrap_or(config.mongo.database);
    config.mongo.collection = cli.collection.clone().unwrap_or(config.mongo.collection);
    let artifacts = config.artifacts.clone();
    let resume = |stage: Stage, arg: RunArg, config: Config| {
        let stage_config = match arg.reconfigure {
            true => StageConfig::Current(Box::new(config)),
            false => StageConfig::Recorded { store: cli.store.as_deref() },
        };
        with_spinner(stage.name(), || pipeline::resume(&artifacts, arg.run.as_deref(), stage, stage_config))
    };
    let start = |command: &str, args: NewRunArgs, config: Config, stages: &[Stage]| {
        let config = with_split(config, args.split);
        with_spinner(command, || pipeline::run_new(config, args.run.as_deref(), stages))
    };
    let summary = match cli.command {
        Command::Ingest(args) => start("ingest", args, config, &[Stage::Ingest])?,
        Command::Validate(arg) => resume(Stage::Validate, arg, config)?,
        Command::Transform(arg) => resume(Stage::Transform, arg, config)?,
        Command::Train(arg) => resume(Stage::Train, arg, config)?,
        Command::Evaluate(arg) => resume(Stage::Evaluate, arg, config)?,
        Command::Push(arg) => resume(Stage::Push, arg, config)?,
        Command::Pipeline(args) => start("pipeline", args, config, &Stage::ALL)?,
        Command::Data(DataCommand::Synth { rows, seed, drift, output }) => {
            return synthesize(&config, rows, seed, drift, &output)
        }
        Command::Models(command) => return models(&config.train.store, command, cli.log_format),
        Command::Runs(command) => return runs(&artifacts, command, cli.log_format),
        Command::Predict { input, output } => return predict::run(&config.train.store, &input, &output),
        Command::Serve(args) => return crate::serve::run(config, args),
        Command::LoadData { input, uri, batch, replace } => return load_data(&config, input, uri, batch, replace),
    };
    print_summary(&summary, cli.log_format)
}

/// `netsec models …`: reads and switches the store.
fn models(location: &str, command: ModelsCommand, format: LogFormat) -> anyhow::Result<()> {
    let store = store::open(location)?;
    match command {
        ModelsCommand::List => {
            let versions = store.list()?;
            match format {
                LogFormat::Text => print!("{}", store::render_list(&versions)),
                LogFormat::Json => println!("{}", serde_json::to_string(&versions)?),
            }
        }
        ModelsCommand::Show { version } => {
            let version = version_or_current(&store, version)?;
            let info = store.list()?.into_iter().find(|v| v.version == version);
            let info = info.ok_or_else(|| InputError::new(format!("no version {version} in {}", store.describe())))?;
            print!("{}", store::render_show(&store.get(&version)?, &info));
        }
        ModelsCommand::Promote { version } => {
            store.promote(&version)?;
            println!("{version} is now the current model in {}", store.describe());
            follow_in_mlflow(&version)?;
        }
        ModelsCommand::Rollback => {
            let version = store.rollback()?;
            println!("rolled back: {version} is now the current model in {}", store.describe());
            follow_in_mlflow(&version)?;
        }
        ModelsCommand::Export { version, format: ExportFormat::Onnx, output } => {
            let version = version_or_current(&store, version)?;
            // The stored export when the version has one (checked on read), else a fresh one.
            let bytes = match store.get_onnx(&version)? {
                Some(bytes) => bytes,
                None => crate::onnx::export(&store.get(&version)?)?,
            };
            let record = crate::artifacts::write_atomic(&output, |w| w.write_all(&bytes))?;
            println!(
                "wrote {version} as ONNX to {} ({} bytes, sha256 {})",
                output.display(),
                record.bytes,
                record.sha256
            );
        }
    }
    Ok(())
}

/// With MLflow configured, moves the registered model's alias to the store's new current
/// version. The store has switched already: a server that fails is reported, and the command
/// fails so that scripts notice, with what to run again.
fn follow_in_mlflow(version: &str) -> anyhow::Result<()> {
    use crate::tracking::mlflow;
    let Some(settings) = mlflow::Settings::from_env()? else { return Ok(()) };
    match mlflow::move_alias(&settings, version) {
        Ok(Some(registered)) => {
            println!("MLflow: {}@{} is now version {}", registered.name, settings.alias, registered.version);
            Ok(())
        }
        Ok(None) => {
            println!(
                "MLflow: no version of registered model {} was registered from {version}; the alias {} stays where it is",
                settings.registered_model, settings.alias
            );
            Ok(())
        }
        Err(error) => Err(error.context(format!(
            "the store switched to {version}, but moving MLflow's alias {} failed; run the command again to retry",
            settings.alias
        ))),
    }
}

/// The version asked for, or the store's current one.
fn version_or_current(store: &store::ModelStore, version: Option<String>) -> anyhow::Result<String> {
    match version.or(store.current()?) {
        Some(version) => Ok(version),
        None => Err(InputError::new(format!("{} has no current model", store.describe()))
            .hint("name a version (see `netsec models list`), or promote one with `netsec models promote`")
            .into()),
    }
}

/// `netsec runs …`: reads the run records under the artifacts root.
fn runs(root: &std::path::Path, command: RunsCommand, format: LogFormat) -> anyhow::Result<()> {
    use crate::tracking::{mlflow, runs};
    match command {
        RunsCommand::List => {
            let all = runs::all(root)?;
            match format {
                LogFormat::Text => print!("{}", runs::render_list(&all)),
                LogFormat::Json => {
                    let records: Vec<_> = all.iter().filter_map(|(_, r)| r.as_ref()).collect();
                    println!("{}", serde_json::to_string(&records)?)
                }
            }
        }
        RunsCommand::Show { run } => {
            let (run, record) = runs::open(root, &run)?;
            match format {
                LogFormat::Text => print!("{}", runs::render_show(&record, mlflow::load_state(&run).as_ref())),
                LogFormat::Json => println!("{}", serde_json::to_string(&record)?),
            }
        }
        RunsCommand::Compare { a, b } => {
            let ((_, a), (_, b)) = (runs::open(root, &a)?, runs::open(root, &b)?);
            print!("{}", runs::render_compare(&a, &b));
        }
        RunsCommand::Sync { run } => {
            let (mut run, record) = runs::open(root, &run)?;
            let Some(settings) = mlflow::Settings::from_env()? else {
                return Err(InputError::new(
                    "MLFLOW_TRACKING_URI is not an http(s) URL: there is no server to send to",
                )
                .hint("set MLFLOW_TRACKING_URI=https://host (and MLFLOW_TRACKING_TOKEN or USERNAME/PASSWORD)")
                .into());
            };
            let state = mlflow::send(&mut run, &record, &settings)?;
            if !state.sent() {
                anyhow::bail!("{}", state.describe().replace("RUN", run.id()));
            }
            println!("{}", state.describe());
        }
    }
    Ok(())
}

/// `netsec load-data`: the report goes to stdout, never with the password.
fn load_data(
    config: &Config,
    input: PathBuf,
    uri: Option<String>,
    batch: Option<u32>,
    replace: bool,
) -> anyhow::Result<()> {
    let uri = crate::source::mongo::client::resolve_uri(uri.as_deref())?;
    let mut settings = config.mongo.clone();
    settings.batch_size = batch.unwrap_or(settings.batch_size);
    if settings.batch_size == 0 {
        return Err(InputError::new("--batch must be at least 1").into());
    }
    let target = crate::source::mongo::client::Target::new(uri, &settings);
    let options = crate::source::mongo::load::LoadOptions { input, target, batch_size: settings.batch_size, replace };
    let report = crate::source::mongo::load::run(&options, &schema(config)?)?;
    if !report.extra_columns.is_empty() {
        tracing::warn!(columns = ?report.extra_columns, "the file has columns the schema does not; they were not loaded");
    }
    println!("{report}");
    Ok(())
}

fn schema(config: &Config) -> anyhow::Result<Schema> {
    Ok(match &config.schema {
        Some(path) => Schema::load(path)?,
        None => Schema::embedded(),
    })
}

fn with_split(mut config: Config, split: Option<SplitStrategy>) -> Config {
    if let Some(strategy) = split {
        config.split.strategy = strategy;
    }
    config
}

fn print_summary(summary: &Summary, format: LogFormat) -> anyhow::Result<()> {
    match format {
        LogFormat::Text => print!("{}", pipeline::render(summary)),
        LogFormat::Json => println!("{}", serde_json::to_string(summary)?),
    }
    Ok(())
}

fn synthesize(config: &Config, rows: usize, seed: u64, drift: f64, output: &std::path::Path) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&drift) {
        return Err(InputError::new(format!("--drift {drift} is outside 0..=1")).into());
    }
    if rows == 0 {
        return Err(InputError::new("--rows must be at least 1").into());
    }
    let schema = schema(config)?;
    let data = synth::generate(&schema, SynthOptions { rows, seed, drift, ..SynthOptions::default() });
    write_atomic(output, |w| data.write_csv(w))?;
    eprintln!(
        "wrote {rows} SYNTHETIC rows (not real phishing data; seed {seed}, drift {drift}) to {}",
        output.display()
    );
    Ok(())
}

/// A spinner with the elapsed time while a stage runs, on a terminal only.
fn with_spinner<T>(name: &str, work: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let spinner = indicatif::ProgressBar::new_spinner().with_message(format!("netsec {name}"));
    spinner.set_style(indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("a valid template"));
    spinner.enable_steady_tick(Duration::from_millis(120));
    let result = work();
    spinner.finish_and_clear();
    result
}

/// Reads `.env` from the working directory into the environment (existing variables win).
fn load_dotenv() -> anyhow::Result<()> {
    match dotenvy::dotenv() {
        Ok(_) => Ok(()),
        Err(e) if e.not_found() => Ok(()),
        Err(e) => Err(InputError::in_file(std::path::Path::new(".env"), e.to_string()).into()),
    }
}

/// Logs go to stderr, as text or JSON lines; `-v` raises the level, RUST_LOG overrides it.
pub fn init_logging(verbose: u8, format: LogFormat) {
    let level = ["warn", "info", "debug"][usize::from(verbose).min(2)];
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("netsec={level}")));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
