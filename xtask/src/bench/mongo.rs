//! `cargo xtask bench mongo`: synthetic rows loaded into the SecantusDB server the test
//! harness uses, then read into a feature matrix by netsec (release build) and, against the
//! same server, the Python original's way: pymongo + pandas `DataFrame(list(find()))`.
//! Both are whole processes: documents per second of wall time, and peak RSS.

use std::path::Path;
use std::process::{Command, Stdio};

use super::{cores, measure, measure_to, release_binary, tempdir, Measured};
use crate::{project_root, python, run_command, services};

const DATABASE: &str = "bench";
const COLLECTION: &str = "rows";

/// The Python original's ingestion (drop `_id`, `"na"` is missing), timed from connecting.
const PYTHON_READ: &str = r#"
import sys, time
import numpy as np, pandas as pd, pymongo
uri, database, collection = sys.argv[1:4]
t = time.perf_counter()
client = pymongo.MongoClient(uri)
df = pd.DataFrame(list(client[database][collection].find()))
df = df.drop(columns=["_id"]).replace({"na": np.nan})
print(len(df), time.perf_counter() - t)
"#;

/// The server alone: every document fetched as raw BSON and dropped, nothing decoded. No
/// client can read faster than this, which bounds any client's speed-up.
const PYTHON_RAW_SCAN: &str = r#"
import sys, time
import pymongo
from bson.raw_bson import RawBSONDocument
uri, database, collection = sys.argv[1:4]
t = time.perf_counter()
client = pymongo.MongoClient(uri, document_class=RawBSONDocument)
n = sum(1 for _ in client[database][collection].find(batch_size=10000))
print(n, time.perf_counter() - t)
"#;

pub fn run(rows: usize) -> anyhow::Result<()> {
    let netsec = release_binary()?;
    let reader = release_example("read_source")?;
    let python = python::ensure()?;
    let work = tempdir("bench-mongo")?;
    let server = services::mongodb(&python)?;
    let uri =
        server.env.iter().find(|(k, _)| k == "NETSEC_TEST_MONGODB_URI").map(|(_, v)| v.clone()).unwrap_or_default();

    let csv = work.join("synthetic.csv");
    run_command(Command::new(&netsec).args(["data", "synth", "--rows", &rows.to_string(), "--output"]).arg(&csv))?;
    let load = measure(
        Command::new(&netsec)
            .args(["load-data", "--replace", "--batch", "10000", "--uri", &uri, "--database", DATABASE])
            .args(["--collection", COLLECTION, "--input"])
            .arg(&csv),
    )?;
    let ours = timed(&work, "netsec", Command::new(&reader).args([uri.as_str(), DATABASE, COLLECTION]), rows)?;
    let python_read = |name: &str, script: &str| {
        timed(&work, name, Command::new(&python.python).args(["-c", script, &uri, DATABASE, COLLECTION]), rows)
    };
    let theirs = python_read("python", PYTHON_READ)?;
    let server_alone = python_read("raw", PYTHON_RAW_SCAN)?;
    drop(server);

    println!(
        "\ncargo xtask bench mongo: {rows} SYNTHETIC documents on SecantusDB (loopback, {} cores shared)",
        cores()
    );
    println!(
        "load (netsec load-data --replace, batches of 10,000): {:.1} s, {:.0} documents/s, peak {:.0} MiB",
        load.wall.as_secs_f64(),
        rows as f64 / load.wall.as_secs_f64(),
        mib(load.peak_rss_bytes)
    );
    println!("{:<44} {:>9} {:>12} {:>10}", "read into a feature matrix", "wall s", "documents/s", "peak MiB");
    for (label, m) in [
        ("netsec (streaming cursor, rows as they come)", &ours),
        ("pymongo + pandas DataFrame(list(find()))", &theirs),
        ("the server alone (pymongo raw BSON, dropped)", &server_alone),
    ] {
        println!(
            "{label:<44} {:>9.2} {:>12.0} {:>10.0}",
            m.wall.as_secs_f64(),
            rows as f64 / m.wall.as_secs_f64(),
            mib(m.peak_rss_bytes)
        );
    }
    println!(
        "netsec: {:.2}x the documents/s (target ≥ 3x), {:.2} of the memory (target ≤ 0.25)",
        theirs.wall.as_secs_f64() / ours.wall.as_secs_f64(),
        ours.peak_rss_bytes as f64 / theirs.peak_rss_bytes as f64
    );
    println!(
        "(whole processes, wall time from start to exit; the server is a Python process on the same cores: \
         no client can beat {:.2}x, the original's time over the server's alone)",
        theirs.wall.as_secs_f64() / server_alone.wall.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// Runs a reader that prints `rows seconds`, checking that it read every row.
fn timed(work: &Path, name: &str, command: &mut Command, rows: usize) -> anyhow::Result<Measured> {
    let output = work.join(format!("{name}.out"));
    let measured = measure_to(command, Stdio::from(std::fs::File::create(&output)?))?;
    let printed = std::fs::read_to_string(&output)?;
    let read: usize = printed.split_whitespace().next().unwrap_or_default().parse().unwrap_or(0);
    anyhow::ensure!(read == rows, "{name} read {read} rows of {rows}: {printed}");
    Ok(measured)
}

fn release_example(name: &str) -> anyhow::Result<std::path::PathBuf> {
    let build = ["build", "--release", "-q", "-p", "netsec", "--example", name];
    run_command(Command::new("cargo").current_dir(project_root()).args(build))?;
    Ok(project_root().join("target/release/examples").join(name))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}
