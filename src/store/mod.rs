//! The versioned model store: every accepted model file is kept as a numbered version, and one
//! of them is *current* (the one serving loads). Storing a version never changes which one is
//! current; promoting does, and rollback goes back to the one current before.
//!
//! The store's rules are written once, in [`versioned`], over a small object-storage interface
//! ([`objects`]) with one implementation per backend: [`folder`] (a local folder) and [`s3`]
//! (a bucket). What the rules share with the rest of netsec lives here: version names, the
//! index and history records, the checks and the rendering.

pub mod azure;
pub mod folder;
pub mod objects;
pub mod s3;
pub mod sync;
pub mod versioned;

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::InputError;
use crate::model_file::ModelFile;

pub use folder::Folder;
pub use sync::SyncReport;
pub use versioned::ModelStore;

/// Opens the store at `location`: a local folder (created on the first `put`),
/// `s3://bucket/prefix`, or `az://container/prefix` (also `azure://`).
pub fn open(location: &str) -> anyhow::Result<ModelStore> {
    if location.starts_with("s3://") {
        return s3::open(location, None);
    }
    if location.starts_with("az://") || location.starts_with("azure://") {
        return azure::open(location);
    }
    if location.is_empty() || location.contains("://") {
        return Err(InputError::new(format!("`{location}` is not a model store location"))
            .hint("give a local folder, e.g. `models`, s3://bucket/prefix or az://container/prefix")
            .into());
    }
    folder_store(Path::new(location))
}

/// The store in the local folder `root` (created on the first `put`); it keeps no runs.
pub fn folder_store(root: &Path) -> anyhow::Result<ModelStore> {
    Ok(ModelStore::new(Arc::new(Folder::open(root)?), "", None))
}

/// One stored version, as `list` reports it and the index records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub version: String,
    /// When the model file was made (RFC 3339).
    pub created_at: String,
    pub run_id: String,
    pub family: String,
    pub test_f1: Option<f64>,
    /// sha256 and size of the stored model file.
    pub sha256: String,
    pub bytes: u64,
    /// The version's ONNX export (`model.onnx`), when it has one: versions stored by netsec
    /// before 0.x, and models the export cannot write, have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onnx: Option<FileDigest>,
    /// Filled in by `list` from the store's current version, never stored: `current` is the
    /// one place that says which version is current.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_current: bool,
}

impl VersionInfo {
    pub fn new(model: &ModelFile, version: &str, bytes: &[u8], onnx: Option<&[u8]>) -> VersionInfo {
        VersionInfo {
            version: version.into(),
            created_at: model.created_at.clone(),
            run_id: model.run_id.clone(),
            family: model.family.clone(),
            test_f1: model.test_f1(),
            sha256: sha256_hex(bytes),
            bytes: bytes.len() as u64,
            onnx: onnx.map(FileDigest::of),
            is_current: false,
        }
    }
}

/// sha256 and size of a stored file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    pub sha256: String,
    pub bytes: u64,
}

impl FileDigest {
    pub fn of(bytes: &[u8]) -> FileDigest {
        FileDigest { sha256: sha256_hex(bytes), bytes: bytes.len() as u64 }
    }
}

/// The description stored beside each version's model file, so that a version can be read
/// (and the index rebuilt) without decoding the model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionMeta {
    #[serde(flatten)]
    pub info: VersionInfo,
    pub format_version: u32,
    pub netsec_version: String,
    pub git_revision: String,
    pub data_sha256: String,
    pub params: serde_json::Value,
    pub metrics: serde_json::Value,
}

impl VersionMeta {
    pub fn new(info: VersionInfo, model: &ModelFile) -> VersionMeta {
        VersionMeta {
            info,
            format_version: model.format_version,
            netsec_version: model.netsec_version.clone(),
            git_revision: model.git_revision.clone(),
            data_sha256: model.data_sha256.clone(),
            params: model.params.clone(),
            metrics: model.metrics.clone(),
        }
    }
}

/// Every version of a store, with the hash and size its model file must have.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Index {
    pub format: u32,
    pub versions: Vec<VersionInfo>,
}

impl Default for Index {
    fn default() -> Self {
        Index { format: Index::FORMAT, versions: Vec::new() }
    }
}

impl Index {
    pub const FORMAT: u32 = 1;

    pub fn parse(text: &str, location: &Path) -> anyhow::Result<Index> {
        let index: Index = serde_json::from_str(text)
            .map_err(|e| InputError::in_file(location, format!("the store index does not parse: {e}")))?;
        if index.format != Index::FORMAT {
            let problem = format!("store index format {} (this build reads {})", index.format, Index::FORMAT);
            return Err(InputError::in_file(location, problem).hint("use the netsec that wrote the store").into());
        }
        Ok(index)
    }

    /// The record of `version`, or an error naming the versions there are.
    pub fn require(&self, version: &str, store: &str) -> Result<&VersionInfo, InputError> {
        check_version_name(version)?;
        self.versions
            .iter()
            .find(|v| v.version == version)
            .ok_or_else(|| unknown_version(version, &self.versions, store))
    }

    /// The number of the next version: above every recorded one and above `taken` (names in
    /// use without a record, e.g. a version stored by a writer that died before the index).
    pub fn next_number(&self, taken: impl IntoIterator<Item = u32>) -> u32 {
        let recorded = self.versions.iter().filter_map(|v| version_number(&v.version));
        recorded.chain(taken).max().unwrap_or(0) + 1
    }
}

fn unknown_version(version: &str, versions: &[VersionInfo], store: &str) -> InputError {
    let names: Vec<&str> = versions.iter().map(|v| v.version.as_str()).collect();
    let hint = match names.as_slice() {
        [] => "the store is empty: train a model to store one".to_string(),
        names => format!("the store holds {}", names.join(", ")),
    };
    InputError::new(format!("no version `{version}` in the {store}")).hint(hint)
}

/// The promotions, newest last, for rollback.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct History {
    pub promotions: Vec<Promotion>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Promotion {
    pub version: String,
    /// The version current before; None for the first promotion.
    pub previous: Option<String>,
    pub promoted_at: String,
}

impl History {
    pub fn record(&mut self, version: &str, previous: Option<String>) {
        let promoted_at = crate::model_file::now_rfc3339();
        self.promotions.push(Promotion { version: version.into(), previous, promoted_at });
    }

    /// Removes the last promotion and returns the version to make current again.
    ///
    /// Promotions are written to the history before `current` is switched, and rollbacks
    /// switch `current` before they rewrite the history; so after a crash the history may end
    /// with promotions whose version is not current. Those did not complete (or were rolled
    /// back) and are dropped here, which makes both interruptions harmless.
    pub fn roll_back(&mut self, current: Option<&str>) -> Result<String, InputError> {
        while self.promotions.last().is_some_and(|p| Some(p.version.as_str()) != current) {
            self.promotions.pop();
        }
        let last = self.promotions.pop().ok_or_else(|| {
            InputError::new("nothing to roll back: no promotion is recorded").hint("promote a version first")
        })?;
        last.previous.ok_or_else(|| {
            InputError::new(format!("nothing to roll back to: {} was the first version promoted", last.version))
                .hint("promote another version instead")
        })
    }
}

/// Checks bytes read from the store against its record; `what` names the file for the message
/// (e.g. "model file").
pub fn verify(bytes: &[u8], record: &FileDigest, what: &str, location: &Path) -> Result<(), InputError> {
    let found = FileDigest::of(bytes);
    if found == *record {
        return Ok(());
    }
    let problem = format!(
        "the stored {what} differs from the store's record (sha256 {}, {} bytes; recorded {}, {} bytes): \
         it was altered or damaged after it was stored",
        found.sha256, found.bytes, record.sha256, record.bytes
    );
    Err(InputError::in_file(location, problem).hint("use another version, or store the model again from its run"))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A version's name: `v` + its number (at least four digits) + the UTC time it was stored,
/// e.g. `v0001-20261124T053512Z`. Sort versions by [`version_number`], not by name, past 9999.
pub fn version_name(number: u32, at: time::OffsetDateTime) -> String {
    let stamp = at
        .to_offset(time::UtcOffset::UTC)
        .format(time::macros::format_description!("[year][month][day]T[hour][minute][second]Z"))
        .expect("a UTC time formats");
    format!("v{number:04}-{stamp}")
}

/// The number of a well-formed version name, None for anything else (temporary folders,
/// stray files).
pub fn version_number(name: &str) -> Option<u32> {
    let (number, stamp) = name.strip_prefix('v')?.split_once('-')?;
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let (date, time) = stamp.strip_suffix('Z')?.split_once('T')?;
    let well_formed = number.len() >= 4 && digits(number) && date.len() == 8 && time.len() == 6;
    (well_formed && digits(date) && digits(time)).then(|| number.parse().ok()).flatten()
}

/// Refuses anything but a version name, so that a name can never reach outside the store.
pub fn check_version_name(version: &str) -> Result<u32, InputError> {
    version_number(version).ok_or_else(|| {
        InputError::new(format!("`{version}` is not a version name"))
            .hint("version names look like v0001-20261124T053512Z")
    })
}

/// The versions as a table, the current one marked with `*`.
pub fn render_list(versions: &[VersionInfo]) -> String {
    if versions.is_empty() {
        return "no versions stored yet\n".into();
    }
    let header = ["", "VERSION", "CREATED", "RUN", "FAMILY", "TEST F1"].map(String::from);
    let rows = versions.iter().map(|v| {
        let marker = if v.is_current { "*" } else { "" };
        [marker, &v.version, &v.created_at, &v.run_id, &v.family, &f1(v.test_f1)].map(String::from)
    });
    table(std::iter::once(header).chain(rows).collect())
}

/// One version in full.
pub fn render_show(model: &ModelFile, info: &VersionInfo) -> String {
    let json = |v: &serde_json::Value| serde_json::to_string(v).unwrap_or_default();
    let classes = &model.preprocessor.classes;
    let pairs = [
        ("version", format!("{}{}", info.version, if info.is_current { " (current)" } else { "" })),
        ("created", model.created_at.clone()),
        ("run", model.run_id.clone()),
        ("family", model.family.clone()),
        ("params", json(&model.params)),
        ("test F1", f1(model.test_f1())),
        ("metrics", json(&model.metrics)),
        ("features", format!("{} columns", model.preprocessor.features.len())),
        ("classes", format!("{classes:?} (probabilities are of {})", classes[1])),
        ("data sha256", model.data_sha256.clone()),
        ("built by", format!("netsec {} ({})", model.netsec_version, model.git_revision)),
        ("file", format!("{} bytes, sha256 {}, format {}", info.bytes, info.sha256, model.format_version)),
        (
            "onnx",
            info.onnx.as_ref().map_or_else(
                || "none stored (`netsec models export` converts the model file)".into(),
                |d| format!("{} bytes, sha256 {}", d.bytes, d.sha256),
            ),
        ),
    ];
    pairs.iter().map(|(key, value)| format!("{key:<12} {value}\n")).collect()
}

fn f1(score: Option<f64>) -> String {
    score.map_or_else(|| "-".into(), |f| format!("{f:.4}"))
}

/// Left-aligned columns two spaces apart, without trailing spaces.
fn table<const N: usize>(rows: Vec<[String; N]>) -> String {
    let widths: Vec<usize> = (0..N).map(|j| rows.iter().map(|r| r[j].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, &w)| format!("{cell:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(version: &str, test_f1: Option<f64>, is_current: bool) -> VersionInfo {
        VersionInfo {
            version: version.into(),
            created_at: "2026-11-24T05:35:12Z".into(),
            run_id: "20261124T053500-123Z".into(),
            family: "random_forest".into(),
            test_f1,
            sha256: "00".repeat(32),
            bytes: 10,
            onnx: None,
            is_current,
        }
    }

    #[test]
    fn version_names_carry_a_number_and_nothing_else_passes() {
        let at = time::macros::datetime!(2026-11-24 05:35:12 UTC);
        assert_eq!(version_name(1, at), "v0001-20261124T053512Z");
        assert_eq!(version_number("v0001-20261124T053512Z"), Some(1));
        assert_eq!(version_number(&version_name(12345, at)), Some(12345));
        for bad in ["v1-20261124T053512Z", ".tmp-v0001-20261124T053512Z", "v0001-2026112T053512Z", "../v0001", ""] {
            assert_eq!(version_number(bad), None, "{bad}");
        }
        assert!(check_version_name("../../etc").unwrap_err().to_string().contains("not a version name"));
    }

    #[test]
    fn next_number_skips_recorded_and_taken_numbers() {
        let mut index = Index::default();
        assert_eq!(index.next_number([]), 1);
        index.versions.push(info("v0002-20261124T053512Z", None, false));
        assert_eq!(index.next_number([]), 3);
        assert_eq!(index.next_number([7]), 8);
    }

    #[test]
    fn rollback_walks_back_and_drops_interrupted_promotions() {
        let mut history = History::default();
        assert!(history.roll_back(None).unwrap_err().problem.contains("no promotion"));
        history.record("a", None);
        history.record("b", Some("a".into()));
        // A promotion of c that crashed before `current` was switched.
        history.record("c", Some("b".into()));
        assert_eq!(history.roll_back(Some("b")).unwrap(), "a");
        assert!(history.roll_back(Some("a")).unwrap_err().problem.contains("a was the first version promoted"));
    }

    #[test]
    fn unknown_versions_are_named_with_those_there_are() {
        let index = Index { format: 1, versions: vec![info("v0001-20261124T053512Z", None, false)] };
        let error = index.require("v0002-20261124T053512Z", "local model store models").unwrap_err();
        let expected = "no version `v0002-20261124T053512Z` in the local model store models\n  \
                        hint: the store holds v0001-20261124T053512Z";
        assert_eq!(error.to_string(), expected);
    }

    #[test]
    fn the_list_is_a_table_marking_the_current_version() {
        let list = render_list(&[
            info("v0001-20261124T053512Z", None, false),
            info("v0002-20261124T060000Z", Some(0.96123), true),
        ]);
        let lines: Vec<&str> = list.lines().collect();
        assert_eq!(
            lines[0],
            "   VERSION                 CREATED               RUN                   FAMILY         TEST F1"
        );
        assert_eq!(lines[1], "   v0001-20261124T053512Z  2026-11-24T05:35:12Z  20261124T053500-123Z  random_forest  -");
        assert!(lines[2].starts_with("*  v0002") && lines[2].ends_with("0.9612"), "{}", lines[2]);
        assert_eq!(render_list(&[]), "no versions stored yet\n");
    }

    #[test]
    fn is_current_is_not_stored() {
        let json = serde_json::to_string(&info("v0001-20261124T053512Z", None, false)).unwrap();
        assert!(!json.contains("is_current"));
        let back: VersionInfo = serde_json::from_str(&json).unwrap();
        assert!(!back.is_current);
    }

    #[test]
    fn bad_s3_locations_and_other_schemes_are_refused_clearly() {
        let error = open("s3://B/models").err().unwrap();
        assert!(error.to_string().contains("not an S3 location"), "{error}");
        assert_eq!(crate::error::exit_code(&error), 2);
        assert!(open("gs://bucket").err().unwrap().to_string().contains("not a model store location"));
    }
}
