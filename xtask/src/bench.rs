//! `cargo xtask bench <suite>`: release-build benchmarks printed beside the reference they
//! must beat (the Python original's way, run here from the harness's Python environment).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{project_root, python, run_command, shared_dir};

#[derive(clap::Subcommand)]
pub enum Suite {
    /// ingest + validate + transform: the shared file and 1,000,000 synthetic rows.
    Data {
        /// Rows of the large synthetic run.
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
    },
}

pub fn run(suite: Suite) -> anyhow::Result<()> {
    match suite {
        Suite::Data { rows } => data(rows),
    }
}

/// One measured process: wall time and peak resident memory.
struct Measured {
    wall: Duration,
    peak_rss_bytes: u64,
}

/// Runs `command`, measuring its wall time and its own peak RSS (wait4's rusage).
fn measure(command: &mut Command) -> anyhow::Result<Measured> {
    let started = Instant::now();
    let child = command.stdout(std::process::Stdio::null()).spawn()?;
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
