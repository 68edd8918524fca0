//! The `netsec` command line: parsing, logging set-up, and dispatch to the pipeline.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::artifacts::write_atomic;
use crate::config::{Config, SplitStrategy};
use crate::error::InputError;
use crate::pipeline::{self, Summary};
use crate::schema::Schema;
use crate::synth::{self, SynthOptions};

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
    /// The data: a CSV or ARFF file (overrides `source` in the config).
    #[arg(long, global = true, value_name = "PATH")]
    pub source: Option<String>,
    /// Root of the run folders (overrides `artifacts` in the config; default ./artifacts).
    #[arg(long, global = true, value_name = "DIR")]
    pub artifacts: Option<PathBuf>,
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
    Ingest {
        /// How to split (overrides `split.strategy`).
        #[arg(long, value_enum)]
        split: Option<SplitStrategy>,
    },
    /// Check schema, missing values, duplicates, leakage and drift of a run's split.
    Validate {
        /// The run (default: the newest).
        #[arg(long)]
        run: Option<String>,
    },
    /// Fit the KNN imputer on a validated run's train rows and write the model inputs.
    Transform {
        /// The run (default: the newest).
        #[arg(long)]
        run: Option<String>,
    },
    /// Run every stage into a new run and print the summary.
    Pipeline {
        /// How to split (overrides `split.strategy`).
        #[arg(long, value_enum)]
        split: Option<SplitStrategy>,
    },
    /// Data utilities.
    #[command(subcommand)]
    Data(DataCommand),
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
    let artifacts = config.artifacts.clone();
    let summary = match cli.command {
        Command::Ingest { split } => with_spinner("ingest", || pipeline::ingest_only(with_split(config, split)))?,
        Command::Validate { run } => with_spinner("validate", || pipeline::validate_only(&artifacts, run.as_deref()))?,
        Command::Transform { run } => {
            with_spinner("transform", || pipeline::transform_only(&artifacts, run.as_deref()))?
        }
        Command::Pipeline { split } => with_spinner("pipeline", || pipeline::run_all(with_split(config, split)))?,
        Command::Data(DataCommand::Synth { rows, seed, drift, output }) => {
            return synthesize(&config, rows, seed, drift, &output)
        }
    };
    print_summary(&summary, cli.log_format)
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
    let schema = match &config.schema {
        Some(path) => Schema::load(path)?,
        None => Schema::embedded(),
    };
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
