//! `netsec load-data`: a CSV or ARFF file into a MongoDB collection (the Python original's
//! loader script), checked against the schema first, inserted in batches, and counted at the
//! end.
//!
//! With `--replace` the rows go into a temporary collection that is renamed over the old one
//! once complete (`renameCollection` with `dropTarget`, one step on the server), so readers
//! see the old rows or the new ones, never a mix or a half-loaded collection.

use std::path::PathBuf;
use std::time::Duration;

use mongodb::bson::{doc, RawBson, RawDocumentBuf};
use mongodb::{Client, Collection};
use serde::Serialize;

use super::client::{self as mongo, Target};
use crate::dataset::Dataset;
use crate::error::InputError;
use crate::schema::Schema;
use crate::source::{self, Labels};

/// Temporary collections of `--replace` loads are named `<collection>` + this + pid and time.
const TEMP_INFIX: &str = "__netsec_loading_";

pub struct LoadOptions {
    pub input: PathBuf,
    pub target: Target,
    pub batch_size: u32,
    pub replace: bool,
}

/// What a load did.
#[derive(Debug, Serialize)]
pub struct LoadReport {
    pub server: String,
    pub namespace: String,
    pub inserted: u64,
    /// Documents the collection held before: replaced with `--replace`, kept otherwise.
    pub previous: u64,
    pub replaced: bool,
    pub extra_columns: Vec<String>,
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "loaded {} documents into {} on {}", self.inserted, self.namespace, self.server)?;
        match (self.replaced, self.previous) {
            (_, 0) => Ok(()),
            (true, n) => write!(f, " (replacing {n} documents)"),
            (false, n) => write!(f, " (added to {n} documents already there)"),
        }
    }
}

pub fn run(options: &LoadOptions, schema: &Schema) -> anyhow::Result<LoadReport> {
    let input = options.input.to_str().ok_or_else(|| InputError::in_file(&options.input, "the path is not UTF-8"))?;
    if input == source::MONGODB_FROM_ENV || mongo::is_uri(input) {
        return Err(InputError::new("--input must be a CSV or ARFF file").into());
    }
    // Read and checked whole before the server is touched: bad input loads nothing.
    let loaded = source::open(input)?.load(schema, Labels::Optional)?;
    let mut report = mongo::block_on(load(options, &loaded.dataset))??;
    report.extra_columns = loaded.extra_columns;
    Ok(report)
}

async fn load(options: &LoadOptions, data: &Dataset) -> anyhow::Result<LoadReport> {
    let target = &options.target;
    let client = target.connect().await?;
    let database = client.database(&target.database);
    let existing = database.list_collection_names().await.map_err(|e| target.explain(e))?;
    let collection = database.collection::<RawDocumentBuf>(&target.collection);
    let previous = if existing.contains(&target.collection) { count(target, &collection).await? } else { 0 };
    let report = LoadReport {
        server: target.server(),
        namespace: target.namespace(),
        inserted: data.n_rows() as u64,
        previous,
        replaced: options.replace,
        extra_columns: Vec::new(),
    };
    if !options.replace {
        insert_all(options, &collection, data).await?;
        check_count(target, &collection, previous + report.inserted).await?;
        return Ok(report);
    }
    warn_about_leftovers(target, &existing);
    let temp_name = temp_collection(&target.collection);
    let temp = database.collection::<RawDocumentBuf>(&temp_name);
    let loaded = async {
        insert_all(options, &temp, data).await?;
        check_count(target, &temp, report.inserted).await?;
        rename_over(&client, target, &temp_name).await
    };
    if let Err(error) = loaded.await {
        // The old collection was never touched; the partial copy is of no use to anyone.
        if let Err(e) = temp.drop().await {
            tracing::warn!(collection = %temp_name, error = %target.explain(e), "could not drop the partial copy");
        }
        return Err(error);
    }
    Ok(report)
}

/// Inserts every row, a batch at a time, with a progress bar on a terminal.
async fn insert_all(
    options: &LoadOptions,
    collection: &Collection<RawDocumentBuf>,
    data: &Dataset,
) -> anyhow::Result<()> {
    let rows = data.n_rows();
    let progress = progress_bar(rows as u64, collection.name());
    let batch_size = options.batch_size as usize;
    for start in (0..rows).step_by(batch_size) {
        let end = (start + batch_size).min(rows);
        let batch: Vec<RawDocumentBuf> = (start..end).map(|i| document(data, i)).collect();
        collection.insert_many(batch).await.map_err(|e| options.target.explain(e))?;
        progress.set_position(end as u64);
        tracing::info!(inserted = end, total = rows, collection = %collection.name(), "inserted documents");
    }
    progress.finish_and_clear();
    Ok(())
}

/// Row `i` as a document: the schema's columns in its order, codes as integers, missing
/// values as null, then the label when the rows have one.
fn document(data: &Dataset, i: usize) -> RawDocumentBuf {
    let mut document = RawDocumentBuf::new();
    for (name, &value) in data.features.iter().zip(data.row(i)) {
        let value = if value.is_nan() { RawBson::Null } else { RawBson::Int32(value as i32) };
        document.append(name.as_str(), value);
    }
    if data.is_labelled() {
        document.append(data.target.as_str(), RawBson::Int32(data.labels[i] as i32));
    }
    document
}

fn progress_bar(rows: u64, collection: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(rows).with_message(format!("loading {collection}"));
    let style = indicatif::ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} documents, {per_sec}, {eta} left");
    bar.set_style(style.expect("a valid template"));
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

async fn count(target: &Target, collection: &Collection<RawDocumentBuf>) -> anyhow::Result<u64> {
    collection.count_documents(doc! {}).await.map_err(|e| target.explain(e))
}

/// The count check: the collection holds exactly what was meant to be written.
async fn check_count(target: &Target, collection: &Collection<RawDocumentBuf>, expected: u64) -> anyhow::Result<()> {
    let found = count(target, collection).await?;
    anyhow::ensure!(
        found == expected,
        "count check failed: {} on {} holds {found} documents, {expected} expected",
        collection.name(),
        target.server()
    );
    Ok(())
}

fn temp_collection(collection: &str) -> String {
    let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
    format!("{collection}{TEMP_INFIX}{}_{millis}", std::process::id())
}

/// Temporary collections of loads that were killed are left for a person to drop: another
/// load of the same collection may be writing one of them right now.
fn warn_about_leftovers(target: &Target, existing: &[String]) {
    let prefix = format!("{}{TEMP_INFIX}", target.collection);
    for name in existing.iter().filter(|n| n.starts_with(&prefix)) {
        tracing::warn!(
            collection = %name,
            database = %target.database,
            "a temporary collection of an interrupted --replace load; drop it once no load is running"
        );
    }
}

/// Renames the complete copy over the collection, replacing it in one step on the server.
async fn rename_over(client: &Client, target: &Target, temp: &str) -> anyhow::Result<()> {
    let command = doc! {
        "renameCollection": format!("{}.{temp}", target.database),
        "to": target.namespace(),
        "dropTarget": true,
    };
    client.database("admin").run_command(command).await.map_err(|e| target.explain(e))?;
    Ok(())
}
