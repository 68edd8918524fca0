//! Where the data comes from. Every source yields the same [`Loaded`] table, checked against
//! the schema as it is read, so later stages never see a value the schema does not allow.

mod arff;
mod csv;
pub mod mongo;
mod table;

use std::path::{Path, PathBuf};

use crate::config::{Config, MongoConfig};
use crate::dataset::Dataset;
use crate::error::InputError;
use crate::schema::Schema;

pub use self::csv::{parse_bytes as parse_csv_bytes, CsvFile};
pub use arff::ArffFile;
pub use mongo::MongoSource;
pub use table::TableBuilder;

/// A table read from a source, with what was noticed while reading it.
#[derive(Debug)]
pub struct Loaded {
    pub dataset: Dataset,
    /// Columns the source had that the schema does not: reported, then dropped.
    pub extra_columns: Vec<String>,
    /// sha256 of the source's bytes, so a run records exactly what it trained on.
    pub sha256: String,
}

/// Whether rows must carry the target column: training needs labels, scoring does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Labels {
    Required,
    Optional,
}

pub trait Source {
    /// What the source is, for logs and the run manifest (never with credentials).
    fn describe(&self) -> String;
    fn load(&self, schema: &Schema, labels: Labels) -> anyhow::Result<Loaded>;
}

/// The `--source` value that means "the MongoDB server whose URI is in the environment"
/// (MONGODB_URI or MONGO_DB_URL), so that a password need not be on the command line.
pub const MONGODB_FROM_ENV: &str = "mongodb";

/// Opens the configured source, with the configured MongoDB database and collection.
pub fn open_configured(config: &Config) -> anyhow::Result<Box<dyn Source>> {
    open_with(&config.source, &config.mongo)
}

/// Opens the source a `--source` value names: a `.arff` file, any other file as CSV, or a
/// MongoDB collection (default database and collection; see [`open_configured`]).
pub fn open(spec: &str) -> anyhow::Result<Box<dyn Source>> {
    open_with(spec, &MongoConfig::default())
}

fn open_with(spec: &str, mongo: &MongoConfig) -> anyhow::Result<Box<dyn Source>> {
    if spec == MONGODB_FROM_ENV || mongo::client::is_uri(spec) {
        let uri = mongo::client::resolve_uri((spec != MONGODB_FROM_ENV).then_some(spec))?;
        return Ok(Box::new(MongoSource::new(uri, mongo)));
    }
    let path = PathBuf::from(spec);
    let is_arff = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("arff"));
    Ok(if is_arff { Box::new(arff::ArffFile { path }) } else { Box::new(csv::CsvFile { path }) })
}

/// Reads a whole source file, turning the usual mistakes into errors that say what to do.
fn read_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(|e| {
        let problem = if e.kind() == std::io::ErrorKind::NotFound {
            "no such file".to_string()
        } else {
            format!("cannot read it: {e}")
        };
        InputError::in_file(path, problem).hint("check the path given with --source")
    })?;
    if meta.is_dir() {
        return Err(InputError::in_file(path, "is a directory, not a file")
            .hint("give the path of a CSV or ARFF file")
            .into());
    }
    let bytes = std::fs::read(path).map_err(|e| InputError::in_file(path, format!("cannot read it: {e}")))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(InputError::in_file(path, "the file is empty")
            .hint("a header row naming the columns and at least one data row are needed")
            .into());
    }
    Ok(bytes)
}

/// A `--source` value as it may be recorded and shown: a URI's password is masked.
pub fn redacted(spec: &str) -> String {
    mongo::client::redact(spec)
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
