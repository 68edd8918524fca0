//! `cargo xtask bench <suite>`: release-build benchmarks printed beside the reference they
//! must beat (the Python original's way, run here from the harness's Python environment).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{project_root, python, run_command, shared_dir};

mod image;
mod mongo;
mod serve;

#[derive(clap::Subcommand)]
pub enum Suite {
    /// ingest + validate + transform: the shared file and 1,000,000 synthetic rows.
    Data {
        /// Rows of the large synthetic run.
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
    },
    /// The Python original's whole grid search (five families, cv=3, refit) on the shared
    /// data, beside scikit-learn's on the same split; then prediction speed.
    Train {
        /// Print only netsec's figures (scikit-learn's search takes minutes).
        #[arg(long)]
        skip_python: bool,
    },
    /// SYNTHETIC documents loaded into the harness's MongoDB server, read into a feature
    /// matrix by netsec and by pymongo + pandas (the original's way): documents/s, peak memory.
    Mongo {
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
    },
    /// `netsec serve` under wrk: one-row and 1,000-row CSV uploads, then memory over a
    /// longer run; the model is made by one `netsec pipeline` run.
    Serve {
        /// Seconds of each throughput run (the one-row protocol comparison runs five
        /// interleaved rounds of half that per route).
        #[arg(long, default_value_t = 10)]
        seconds: u32,
        /// Seconds of the memory run.
        #[arg(long, default_value_t = 60)]
        soak_seconds: u32,
        /// `train.models` for the pipeline run (YAML), e.g. '{random_forest: {n_estimators: [128]}}'
        /// for the original's model; default: every family, as the pipeline chooses.
        #[arg(long)]
        models: Option<String>,
    },
    /// The service image: size, build time with a warm cargo cache, container start to /ready.
    Image,
}

pub fn run(suite: Suite) -> anyhow::Result<()> {
    match suite {
        Suite::Data { rows } => data(rows),
        Suite::Train { skip_python } => train(skip_python),
        Suite::Mongo { rows } => mongo::run(rows),
        Suite::Serve { seconds, soak_seconds, models } => serve::run(serve::Settings { seconds, soak_seconds, models }),
        Suite::Image => image::run(),
    }
}

/// One measured process: wall time and peak resident memory.
struct Measured {
    wall: Duration,
    peak_rss_bytes: u64,
}

/// Runs `command`, measuring its wall time and its own peak RSS (wait4's rusage).
fn measure(command: &mut Command) -> anyhow::Result<Measured> {
    measure_to(command, std::process::Stdio::null())
}

/// As [`measure`], with the command's standard output going to `stdout`.
fn measure_to(command: &mut Command, stdout: std::process::Stdio) -> anyhow::Result<Measured> {
    let started = Instant::now();
    let child = command.stdout(stdout).stderr(std::process::Stdio::null()).spawn()?;
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    anyhow::ensure!(pid > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "{command:?} failed");
    Ok(Measured { wall, peak_rss_bytes: usage.ru_maxrss as u64 * 1024 })
}

fn release_binary() -> anyhow::Result<PathBuf> {
    run_command(Command::new("cargo").current_dir(project_root()).args(["build", "--release", "-q", "-p", "netsec"]))?;
    Ok(project_root().join("target/release/netsec"))
}

fn median(mut runs: Vec<Measured>) -> Measured {
    runs.sort_by_key(|m| m.wall);
    runs.swap_remove(runs.len() / 2)
}

/// The Python original's ingest, validation and transformation steps on `csv`.
const PYTHON_DATA_STEPS: &str = r#"
import sys, time, os
import numpy as np, pandas as pd
from scipy.stats import ks_2samp
from sklearn.model_selection import train_test_split
from sklearn.impute import KNNImputer
csv, out = sys.argv[1], sys.argv[2]
t = time.perf_counter()
df = pd.read_csv(csv).replace({"na": np.nan})
df.to_csv(os.path.join(out, "feature_store.csv"), index=False)
train, test = train_test_split(df, test_size=0.2, random_state=42)
train.to_csv(os.path.join(out, "train.csv"), index=False)
test.to_csv(os.path.join(out, "test.csv"), index=False)
report = {c: float(ks_2samp(train[c], test[c]).pvalue) for c in df.columns}
X, y = train.drop(columns=["Result"]), train["Result"].replace(-1, 0)
imputer = KNNImputer(n_neighbors=3, weights="uniform").fit(X)
np.save(os.path.join(out, "train.npy"), np.c_[imputer.transform(X), y])
np.save(os.path.join(out, "test.npy"), np.c_[imputer.transform(test.drop(columns=["Result"])), test["Result"].replace(-1, 0)])
print(time.perf_counter() - t)
"#;

fn data(rows: usize) -> anyhow::Result<()> {
    let netsec = release_binary()?;
    let python = python::ensure()?.python;
    let work = tempdir("bench-data")?;
    let shared_csv = shared_dir().join("data/phishing.csv");
    let synthetic_csv = work.join("synthetic.csv");
    run_command(
        Command::new(&netsec).args(["data", "synth", "--rows", &rows.to_string(), "--output"]).arg(&synthetic_csv),
    )?;

    println!("\ncargo xtask bench data: ingest + validate + transform (release build, {} cores)", cores());
    println!("{:<34} {:>10} {:>10} {:>12} {:>10}   target", "input", "netsec s", "peak MiB", "Python s", "ratio");
    for (label, csv, repeats, target) in [
        ("shared file (11,055 rows)", &shared_csv, 7, "< 0.3 s"),
        (&*format!("synthetic ({rows} rows)"), &synthetic_csv, 3, "< 10 s, < 1024 MiB"),
    ] {
        let runs = (0..repeats)
            .map(|_| {
                measure(
                    Command::new(&netsec)
                        .arg("pipeline")
                        .arg("--source")
                        .arg(csv)
                        .arg("--artifacts")
                        .arg(work.join("runs")),
                )
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let ours = median(runs);
        let reference = python_seconds(&python, csv, &work)?;
        println!(
            "{label:<34} {:>10.3} {:>10.0} {:>12.3} {:>9.1}x   {target}",
            ours.wall.as_secs_f64(),
            ours.peak_rss_bytes as f64 / (1 << 20) as f64,
            reference,
            reference / ours.wall.as_secs_f64()
        );
        let _ = std::fs::remove_dir_all(work.join("runs"));
    }
    println!("(netsec: whole process, median of runs; Python: the original's steps in-process, imports excluded)");
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// The Python original's grids (`GridSearchCV` parameters), as YAML flow mappings, which are
/// also Python dict literals once `true`/`false` are absent.
const ORIGINAL_GRIDS: [(&str, &str, &str); 5] = [
    ("random_forest", "RandomForestClassifier", "{'n_estimators': [8, 16, 32, 128, 256]}"),
    ("decision_tree", "DecisionTreeClassifier", "{'criterion': ['gini', 'entropy', 'log_loss']}"),
    (
        "gradient_boosting",
        "GradientBoostingClassifier",
        "{'learning_rate': [0.1, 0.01, 0.05, 0.001], 'subsample': [0.6, 0.7, 0.75, 0.85, 0.9], 'n_estimators': [8, 16, 32, 64, 128, 256]}",
    ),
    ("logistic_regression", "LogisticRegression", "{}"),
    ("ada_boost", "AdaBoostClassifier", "{'learning_rate': [0.1, 0.01, 0.001], 'n_estimators': [8, 16, 32, 64, 128, 256]}"),
];

/// The original's search of one model on our split: GridSearchCV(cv=3) scored on F1, refit.
const PYTHON_SEARCH: &str = r#"
import sys, time, json
import pandas as pd
from sklearn.model_selection import GridSearchCV
from sklearn.metrics import f1_score
from sklearn.ensemble import RandomForestClassifier, GradientBoostingClassifier, AdaBoostClassifier
from sklearn.tree import DecisionTreeClassifier
from sklearn.linear_model import LogisticRegression
train_csv, test_csv, name, grid = sys.argv[1:5]
train, test = pd.read_csv(train_csv), pd.read_csv(test_csv)
X, y = train.drop(columns=["Result"]), (train["Result"] == 1).astype(int)
Xt, yt = test.drop(columns=["Result"]), (test["Result"] == 1).astype(int)
t = time.perf_counter()
search = GridSearchCV(globals()[name](), eval(grid), cv=3, scoring="f1").fit(X, y)
seconds = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "test_f1": f1_score(yt, search.predict(Xt)), "params": search.best_params_}))
"#;

fn train(skip_python: bool) -> anyhow::Result<()> {
    let netsec = release_binary()?;
    let python = python::ensure()?.python;
    let work = tempdir("bench-train")?;
    let shared_csv = shared_dir().join("data/phishing.csv");
    println!("\ncargo xtask bench train: the original's grids, 3-fold CV on F1, refit; random 80/20 split (seed 42)");
    println!(
        "{:<22} {:>10} {:>9} {:>12} {:>9} {:>8}",
        "model", "netsec s", "test F1", "sklearn s", "test F1", "speed-up"
    );
    let mut totals = (0.0, 0.0);
    let mut split = None;
    let mut tracking_seconds = f64::NAN;
    // Each family alone, then all five in one search (an empty class name marks that row).
    for (family, class, grid) in ORIGINAL_GRIDS.into_iter().chain([("all five", "", "")]) {
        let models =
            if class.is_empty() { "{}".to_string() } else { format!("{{{family}: {}}}", grid.replace('\'', "")) };
        let mut command = Command::new(&netsec);
        command.args(["--log-format", "json", "pipeline", "--split", "random", "--source"]).arg(&shared_csv);
        command.arg("--artifacts").arg(work.join("runs")).arg("--store").arg(work.join(format!("store-{family}")));
        if !class.is_empty() {
            command.env("NETSEC_TRAIN_MODELS", &models);
        }
        let output = command.output()?;
        anyhow::ensure!(output.status.success(), "netsec failed: {}", String::from_utf8_lossy(&output.stderr));
        let summary: serde_json::Value = serde_json::from_slice(&output.stdout)?;
        let run_dir = PathBuf::from(summary["run_dir"].as_str().unwrap_or_default());
        let seconds = stage_seconds(&run_dir, "train")?;
        let ours_f1 = summary["train"]["chosen"]["test"]["f1"].as_f64().unwrap_or(f64::NAN);
        tracking_seconds = summary["tracking"]["seconds"].as_f64().unwrap_or(f64::NAN);
        split.get_or_insert((run_dir.join("ingest/train.csv"), run_dir.join("ingest/test.csv")));
        let (python_seconds, python_f1) = if skip_python || class.is_empty() {
            (totals.1, f64::NAN)
        } else {
            let (train_csv, test_csv) = split.as_ref().expect("set above");
            let output = Command::new(&python)
                .args(["-c", PYTHON_SEARCH])
                .arg(train_csv)
                .arg(test_csv)
                .args([class, grid])
                .output()?;
            anyhow::ensure!(
                output.status.success(),
                "scikit-learn failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            let result: serde_json::Value = serde_json::from_slice(&output.stdout)?;
            (result["seconds"].as_f64().unwrap_or(f64::NAN), result["test_f1"].as_f64().unwrap_or(f64::NAN))
        };
        if !class.is_empty() {
            totals.0 += seconds;
            totals.1 += if skip_python { 0.0 } else { python_seconds };
        }
        let reference = if class.is_empty() { totals.1 } else { python_seconds };
        println!(
            "{family:<22} {seconds:>10.3} {ours_f1:>9.4} {reference:>12.2} {python_f1:>9.4} {:>7.0}x",
            reference / seconds
        );
    }
    println!(
        "(netsec: the train stage of a pipeline run, search + refit of each family's best; \
              'all five' searches every family at once; targets: all five under 3.5 s, F1 within 0.003)"
    );
    println!(
        "tracking after the stages (record, report.html, importances): {:.0} ms   target: milliseconds, \
         not the run's seconds",
        tracking_seconds * 1e3
    );
    let _ = std::fs::remove_dir_all(&work);
    run_command(
        Command::new("cargo").current_dir(project_root()).args(["bench", "-q", "-p", "netsec", "--bench", "predict"]),
    )
}

fn stage_seconds(run_dir: &Path, stage: &str) -> anyhow::Result<f64> {
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(run_dir.join("manifest.json"))?)?;
    let stages = manifest["stages"].as_array().cloned().unwrap_or_default();
    let record = stages.iter().find(|s| s["name"] == stage).ok_or_else(|| anyhow::anyhow!("no {stage} stage"))?;
    record["seconds"].as_f64().ok_or_else(|| anyhow::anyhow!("no seconds"))
}

fn python_seconds(python: &Path, csv: &Path, work: &Path) -> anyhow::Result<f64> {
    let out = work.join("python");
    std::fs::create_dir_all(&out)?;
    let output = Command::new(python).args(["-c", PYTHON_DATA_STEPS]).arg(csv).arg(&out).output()?;
    anyhow::ensure!(
        output.status.success(),
        "the Python reference failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).trim().parse()?)
}

fn tempdir(name: &str) -> anyhow::Result<PathBuf> {
    let dir = project_root().join("target/xtask").join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
