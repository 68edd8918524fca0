//! Run folders: `artifacts/<run-id>/`, one per pipeline run, with a `manifest.json` that lists
//! every file (sha256 and size), the config, the input's hash and what built the run.
//!
//! Invariant: a file in a run folder is either absent or complete. Every write goes to a
//! temporary file in the same folder, is fsynced and renamed into place; the manifest is
//! rewritten the same way after each stage, so it only lists files that are whole.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::error::InputError;

pub const MANIFEST: &str = "manifest.json";
pub const GIT_REVISION: &str = env!("NETSEC_GIT_REVISION");

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub run_id: String,
    pub created_at: String,
    pub netsec_version: String,
    pub git_revision: String,
    pub config: Config,
    pub input: Option<InputRecord>,
    pub stages: Vec<StageRecord>,
    /// Path inside the run folder → its hash and size.
    pub files: BTreeMap<String, FileRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputRecord {
    pub source: String,
    pub sha256: String,
    pub rows: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageRecord {
    pub name: String,
    pub completed_at: String,
    pub seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub sha256: String,
    pub bytes: u64,
}

/// What fills one file of [`Run::write_all`].
pub type WriteJob<'a> = Box<dyn FnOnce(&mut dyn Write) -> std::io::Result<()> + Send + 'a>;

/// An open run folder.
#[derive(Debug)]
pub struct Run {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl Run {
    /// A new run folder under `root`, named by the UTC time so that names sort by age.
    pub fn create(root: &Path, config: &Config) -> anyhow::Result<Run> {
        create_root(root)?;
        let now = time::OffsetDateTime::now_utc();
        let stamp = now
            .format(time::macros::format_description!(
                "[year][month][day]T[hour][minute][second]-[subsecond digits:3]Z"
            ))
            .expect("a UTC time formats");
        let (id, dir) = (0..)
            .map(|n| if n == 0 { stamp.clone() } else { format!("{stamp}-{n}") })
            .map(|id| (id.clone(), root.join(&id)))
            .find(|(_, dir)| std::fs::create_dir(dir).is_ok())
            .expect("some run folder name is free");
        Run::start(id, dir, config, now)
    }

    /// The run `name` under `root`, started afresh: an earlier run of that name is removed
    /// first, so that no file of its later stages is mistaken for this run's. Tools that
    /// rerun stages by name (DVC) need one stable folder.
    pub fn create_named(root: &Path, name: &str, config: &Config) -> anyhow::Result<Run> {
        check_run_name(name)?;
        create_root(root)?;
        let dir = root.join(name);
        if dir.join(MANIFEST).is_file() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing the earlier run {}", dir.display()))?;
        } else if dir.exists() {
            return Err(InputError::in_file(&dir, "exists and is not a run folder (it has no manifest)")
                .hint("choose another run name, or move the folder away")
                .into());
        }
        std::fs::create_dir(&dir).with_context(|| format!("creating the run folder {}", dir.display()))?;
        Run::start(name.to_string(), dir, config, time::OffsetDateTime::now_utc())
    }

    fn start(id: String, dir: PathBuf, config: &Config, now: time::OffsetDateTime) -> anyhow::Result<Run> {
        let manifest = Manifest {
            run_id: id,
            created_at: rfc3339(now),
            netsec_version: env!("CARGO_PKG_VERSION").into(),
            git_revision: GIT_REVISION.into(),
            config: config.clone(),
            input: None,
            stages: Vec::new(),
            files: BTreeMap::new(),
        };
        let mut run = Run { dir, manifest };
        run.save_manifest()?;
        Ok(run)
    }

    /// The run `id` under `root`, or the newest one when `id` is None.
    pub fn open(root: &Path, id: Option<&str>) -> anyhow::Result<Run> {
        let id = match id {
            Some(id) => id.to_string(),
            None => latest_run(root)?,
        };
        let dir = root.join(&id);
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(|_| {
            InputError::in_file(&path, "no such run (its manifest is missing)")
                .hint("list the runs with `netsec runs list`, or start one with `netsec ingest`")
        })?;
        let manifest =
            serde_json::from_str(&text).with_context(|| format!("reading the manifest {}", path.display()))?;
        Ok(Run { dir, manifest })
    }

    pub fn id(&self) -> &str {
        &self.manifest.run_id
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }

    /// Writes `relative` atomically through `fill`, and records its hash and size.
    pub fn write(
        &mut self,
        relative: &str,
        fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    ) -> anyhow::Result<()> {
        let record = write_atomic(&self.path(relative), fill)?;
        self.manifest.files.insert(relative.to_string(), record);
        Ok(())
    }

    /// Writes several files at once (in parallel: formatting and fsync overlap), each as
    /// [`Run::write`] does; all of them are recorded, or the first error is returned.
    pub fn write_all(&mut self, jobs: Vec<(&str, WriteJob<'_>)>) -> anyhow::Result<()> {
        use rayon::prelude::*;
        let records: Vec<(String, anyhow::Result<FileRecord>)> = jobs
            .into_par_iter()
            .map(|(relative, fill)| (relative.to_string(), write_atomic(&self.dir.join(relative), fill)))
            .collect();
        for (relative, record) in records {
            self.manifest.files.insert(relative, record?);
        }
        Ok(())
    }

    /// Records a finished stage and saves the manifest.
    pub fn finish_stage(&mut self, name: &str, seconds: f64) -> anyhow::Result<()> {
        self.manifest.stages.retain(|s| s.name != name);
        self.manifest.stages.push(StageRecord {
            name: name.into(),
            completed_at: rfc3339(time::OffsetDateTime::now_utc()),
            seconds,
        });
        self.save_manifest()
    }

    pub fn has_stage(&self, name: &str) -> bool {
        self.manifest.stages.iter().any(|s| s.name == name)
    }

    /// Errors unless `stage` has completed in this run, naming the command that does it.
    pub fn require_stage(&self, stage: &str) -> Result<(), InputError> {
        if self.has_stage(stage) {
            return Ok(());
        }
        Err(InputError::in_file(&self.dir, format!("the {stage} stage has not completed in this run"))
            .hint(format!("run `netsec {stage}` first (or `netsec pipeline`)")))
    }

    /// Saves the manifest (after files written outside a stage, e.g. the tracker's).
    pub fn save_manifest(&mut self) -> anyhow::Result<()> {
        let json = serde_json::to_vec_pretty(&self.manifest)?;
        write_atomic(&self.path(MANIFEST), |w| w.write_all(&json))?;
        Ok(())
    }
}

fn create_root(root: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(root).with_context(|| format!("creating the artifacts folder {}", root.display()))
}

/// A run name is one folder name that sorts and types well: letters, digits, `.`, `_`, `-`.
fn check_run_name(name: &str) -> Result<(), InputError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.starts_with('.') || !name.chars().all(allowed) || name.len() > 100 {
        return Err(InputError::new(format!("{name:?} cannot name a run"))
            .hint("use up to 100 letters, digits, `.`, `_` or `-`, not starting with `.`"));
    }
    Ok(())
}

/// The most recently created run (named runs sort by their manifest's time, not their name).
fn latest_run(root: &Path) -> anyhow::Result<String> {
    #[derive(Deserialize)]
    struct Created {
        created_at: String,
    }
    let entries = std::fs::read_dir(root)
        .map_err(|_| InputError::in_file(root, "no artifacts folder").hint("start a run with `netsec ingest`"))?;
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let text = std::fs::read(e.path().join(MANIFEST)).ok()?;
            let created: Created = serde_json::from_slice(&text).ok()?;
            Some((created.created_at, e.file_name().into_string().ok()?))
        })
        .max()
        .map(|(_, id)| id)
        .ok_or_else(|| InputError::in_file(root, "no runs yet").hint("start one with `netsec ingest`").into())
}

/// The current UTC time, RFC 3339.
pub fn now_rfc3339() -> String {
    rfc3339(time::OffsetDateTime::now_utc())
}

fn rfc3339(time: time::OffsetDateTime) -> String {
    time.format(&time::format_description::well_known::Rfc3339).expect("a UTC time formats")
}

/// Writes `path` so that it is either absent or complete: temp file, fsync, rename, fsync dir.
pub fn write_atomic<'a>(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()> + 'a,
) -> anyhow::Result<FileRecord> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let temp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut writer = HashingWriter::new(BufWriter::new(File::create(&temp)?));
        fill(&mut writer)?;
        let (file, record) = writer.finish()?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        File::open(dir)?.sync_all()?;
        Ok::<_, std::io::Error>(record)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        anyhow::Error::new(e).context(format!("writing {}", path.display()))
    })
}

/// Hashes what passes through, so that recording a file's sha256 never reads it back.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter { inner, hasher: Sha256::new(), bytes: 0 }
    }
}

impl HashingWriter<BufWriter<File>> {
    fn finish(self) -> std::io::Result<(File, FileRecord)> {
        let file = self.inner.into_inner().map_err(|e| e.into_error())?;
        let record = FileRecord { sha256: hex::encode(self.hasher.finalize()), bytes: self.bytes };
        Ok((file, record))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// sha256 of a file on disk, for checking a manifest.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut file = File::open(path)?;
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        match std::io::Read::read(&mut file, &mut buffer)? {
            0 => return Ok(hex::encode(hasher.finalize())),
            n => hasher.update(&buffer[..n]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_recorded_with_their_hash_and_a_failed_write_leaves_nothing() {
        let root = tempfile::tempdir().unwrap();
        let mut run = Run::create(root.path(), &Config::default()).unwrap();
        run.write("a/b.txt", |w| w.write_all(b"hello")).unwrap();
        let record = &run.manifest.files["a/b.txt"];
        assert_eq!(record.bytes, 5);
        assert_eq!(record.sha256, sha256_file(&run.path("a/b.txt")).unwrap());

        let failed = run.write("c.txt", |w| {
            w.write_all(b"partial")?;
            Err(std::io::Error::other("killed"))
        });
        assert!(failed.is_err());
        let names: Vec<_> = std::fs::read_dir(&run.dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(!names.iter().any(|n| n.to_string_lossy().contains("c.txt")), "{names:?}");
    }

    #[test]
    fn a_named_run_starts_afresh_and_counts_as_the_newest() {
        let root = tempfile::tempdir().unwrap();
        let mut named = Run::create_named(root.path(), "dvc", &Config::default()).unwrap();
        named.write("validation/report.json", |w| w.write_all(b"{}")).unwrap();
        named.finish_stage("validate", 0.1).unwrap();
        let timed = Run::create(root.path(), &Config::default()).unwrap();
        assert_eq!(Run::open(root.path(), None).unwrap().id(), timed.id(), "by creation time, not by name");

        let again = Run::create_named(root.path(), "dvc", &Config::default()).unwrap();
        assert!(!again.has_stage("validate"));
        assert!(!again.path("validation").exists(), "no file of the earlier run remains");
        assert_eq!(Run::open(root.path(), None).unwrap().id(), "dvc");
    }

    #[test]
    fn a_run_name_is_one_plain_folder_name_and_never_takes_over_another_folder() {
        let root = tempfile::tempdir().unwrap();
        for bad in ["", "../up", "a/b", ".hidden", "spa ce"] {
            let error = Run::create_named(root.path(), bad, &Config::default()).unwrap_err().to_string();
            assert!(error.contains("cannot name a run"), "{bad:?}: {error}");
        }
        std::fs::create_dir(root.path().join("notes")).unwrap();
        std::fs::write(root.path().join("notes/keep.txt"), "mine").unwrap();
        let error = Run::create_named(root.path(), "notes", &Config::default()).unwrap_err().to_string();
        assert!(error.contains("not a run folder"), "{error}");
        assert!(root.path().join("notes/keep.txt").is_file());
    }

    #[test]
    fn runs_reopen_by_id_or_as_the_latest() {
        let root = tempfile::tempdir().unwrap();
        let mut first = Run::create(root.path(), &Config::default()).unwrap();
        first.finish_stage("ingest", 0.1).unwrap();
        let second = Run::create(root.path(), &Config::default()).unwrap();
        assert_eq!(Run::open(root.path(), None).unwrap().id(), second.id());
        let reopened = Run::open(root.path(), Some(first.id())).unwrap();
        assert!(reopened.has_stage("ingest"));
        assert!(second.require_stage("ingest").is_err());
    }
}
