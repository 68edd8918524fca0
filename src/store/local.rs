//! A model store in a local folder:
//!
//! ```text
//! models/
//!   v0001-20261124T053512Z/model.bin   the model file
//!   v0001-20261124T053512Z/meta.json   its description (VersionMeta)
//!   index.json                         every version with its sha256 and size (Index)
//!   history.json                       the promotions, for rollback (History)
//!   current                            the current version's name
//!   .lock                              held by a writer (put, promote, rollback)
//! ```
//!
//! Readers take no lock and never see a half-written state: a version folder is written under
//! a temporary name and renamed into place before the index lists it, and every file is
//! replaced atomically (`write_atomic`), `current` last. Writers exclude each other with
//! `.lock`.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{check_version_name, verify, version_number, History, Index, ModelStore, VersionInfo, VersionMeta};
use crate::artifacts::write_atomic;
use crate::error::InputError;
use crate::model_file::ModelFile;

const MODEL: &str = "model.bin";
const META: &str = "meta.json";
const INDEX: &str = "index.json";
const HISTORY: &str = "history.json";
const CURRENT: &str = "current";
const LOCK: &str = ".lock";
/// Version folders being written; never listed, removed by the next writer.
const TEMP_PREFIX: &str = ".tmp-";

/// A lock older than this is taken to be left over by a writer that died.
pub const STALE_LOCK: Duration = Duration::from_secs(10 * 60);
/// How long a writer waits for another one before giving up.
pub(super) const LOCK_WAIT: Duration = Duration::from_secs(120);
const LOCK_POLL: Duration = Duration::from_millis(20);

#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// The store in folder `root`; the folder is created by the first `put`.
    pub fn open(root: &Path) -> anyhow::Result<LocalStore> {
        if root.exists() && !root.is_dir() {
            return Err(InputError::in_file(root, "the model store is not a folder")
                .hint("give the path of a folder (it is created when the first model is stored)")
                .into());
        }
        Ok(LocalStore { root: root.to_path_buf() })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn read_index(&self) -> anyhow::Result<Index> {
        let path = self.root.join(INDEX);
        match read_text(&path)? {
            Some(text) => Index::parse(&text, &path),
            None => Ok(Index::default()),
        }
    }

    fn read_history(&self) -> anyhow::Result<History> {
        read_json(&self.root.join(HISTORY))
    }

    fn write_json(&self, name: &str, value: &impl Serialize) -> anyhow::Result<()> {
        let json = serde_json::to_vec_pretty(value)?;
        write_atomic(&self.root.join(name), |w| w.write_all(&json))?;
        Ok(())
    }

    fn write_current(&self, version: &str) -> anyhow::Result<()> {
        write_atomic(&self.root.join(CURRENT), |w| writeln!(w, "{version}"))?;
        Ok(())
    }

    fn lock(&self) -> anyhow::Result<StoreLock> {
        fs::create_dir_all(&self.root).with_context(|| format!("creating the model store {}", self.root.display()))?;
        StoreLock::acquire(self.root.join(LOCK), LOCK_WAIT)
    }

    /// Names of the entries of the store folder.
    fn entries(&self) -> anyhow::Result<Vec<String>> {
        let entries = fs::read_dir(&self.root).with_context(|| format!("listing {}", self.root.display()))?;
        Ok(entries.filter_map(Result::ok).filter_map(|e| e.file_name().into_string().ok()).collect())
    }

    /// Removes version folders that writers left half-written when they died. Only called
    /// under the lock, so no living writer is using them.
    fn remove_leftovers(&self) -> anyhow::Result<()> {
        for name in self.entries()?.into_iter().filter(|n| n.starts_with(TEMP_PREFIX)) {
            let folder = self.root.join(&name);
            tracing::warn!(folder = %folder.display(), "removing a version left half-written by an interrupted writer");
            fs::remove_dir_all(&folder).with_context(|| format!("removing {}", folder.display()))?;
        }
        Ok(())
    }

    /// Writes the version folder under a temporary name, then renames it into place: the
    /// folder `version` exists only complete.
    fn write_version(&self, version: &str, bytes: &[u8], meta: &VersionMeta) -> anyhow::Result<()> {
        let temp = self.root.join(format!("{TEMP_PREFIX}{version}"));
        write_atomic(&temp.join(MODEL), |w| w.write_all(bytes))?;
        let json = serde_json::to_vec_pretty(meta)?;
        write_atomic(&temp.join(META), |w| w.write_all(&json))?;
        let target = self.root.join(version);
        fs::rename(&temp, &target).with_context(|| format!("renaming {} to {}", temp.display(), target.display()))?;
        File::open(&self.root)?.sync_all().with_context(|| format!("syncing {}", self.root.display()))
    }
}

impl ModelStore for LocalStore {
    fn describe(&self) -> String {
        format!("local model store {}", self.root.display())
    }

    fn list(&self) -> anyhow::Result<Vec<VersionInfo>> {
        let current = self.current()?;
        let mut versions = self.read_index()?.versions;
        versions.sort_by_key(|v| version_number(&v.version));
        for v in &mut versions {
            v.is_current = current.as_deref() == Some(v.version.as_str());
        }
        Ok(versions)
    }

    fn current(&self) -> anyhow::Result<Option<String>> {
        let path = self.root.join(CURRENT);
        let Some(text) = read_text(&path)? else { return Ok(None) };
        let version = text.trim();
        check_version_name(version).map_err(|_| {
            InputError::in_file(&path, format!("`{version}` is not a version name"))
                .hint("promote a version again to repair it")
        })?;
        Ok(Some(version.to_string()))
    }

    fn get_bytes(&self, version: &str) -> anyhow::Result<Vec<u8>> {
        let index = self.read_index()?;
        let record = index.require(version, &self.describe())?;
        let path = self.root.join(version).join(MODEL);
        let bytes = fs::read(&path).map_err(|e| {
            InputError::in_file(&path, format!("the stored model file cannot be read: {e}"))
                .hint("use another version, or store the model again from its run")
        })?;
        verify(&bytes, record, &path)?;
        Ok(bytes)
    }

    fn put(&self, model: &ModelFile) -> anyhow::Result<String> {
        // Encoded before taking the lock: it is the slow part.
        let bytes = model.to_bytes();
        let _lock = self.lock()?;
        self.remove_leftovers()?;
        let mut index = self.read_index()?;
        // A folder renamed into place by a writer that died before the index keeps its number.
        let number = index.next_number(self.entries()?.iter().filter_map(|n| version_number(n)));
        let version = super::version_name(number, time::OffsetDateTime::now_utc());
        let info = VersionInfo::new(model, &version, &bytes);
        self.write_version(&version, &bytes, &VersionMeta::new(info.clone(), model))?;
        index.versions.push(info);
        self.write_json(INDEX, &index)?;
        Ok(version)
    }

    fn promote(&self, version: &str) -> anyhow::Result<Option<String>> {
        // Versions are never removed, so one checked before the lock still exists under it;
        // a damaged file is refused before it can become current.
        self.get(version)?;
        let _lock = self.lock()?;
        let previous = self.current()?;
        if previous.as_deref() == Some(version) {
            return Ok(previous);
        }
        let mut history = self.read_history()?;
        history.record(version, previous.clone());
        self.write_json(HISTORY, &history)?;
        self.write_current(version)?;
        Ok(previous)
    }

    fn rollback(&self) -> anyhow::Result<String> {
        let _lock = self.lock()?;
        let mut history = self.read_history()?;
        let target = history.roll_back(self.current()?.as_deref())?;
        // `current` before the history: see History::roll_back for why this order is safe.
        self.write_current(&target)?;
        self.write_json(HISTORY, &history)?;
        Ok(target)
    }

    fn model_location(&self, version: &str) -> String {
        self.root.join(version).join(MODEL).display().to_string()
    }
}

/// A file's text, None when it does not exist.
fn read_text(path: &Path) -> anyhow::Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::Error::new(e).context(format!("reading {}", path.display()))),
    }
}

/// A JSON file's value, the default when it does not exist.
fn read_json<T: DeserializeOwned + Default>(path: &Path) -> anyhow::Result<T> {
    let Some(text) = read_text(path)? else { return Ok(T::default()) };
    Ok(serde_json::from_str(&text).map_err(|e| InputError::in_file(path, format!("does not parse: {e}")))?)
}

/// The store's writer lock: the file exists while a writer holds it, and is removed on drop.
#[derive(Debug)]
struct StoreLock {
    path: PathBuf,
}

impl StoreLock {
    /// Takes the lock, waiting up to `wait` for another writer, and breaking a stale lock.
    fn acquire(path: PathBuf, wait: Duration) -> anyhow::Result<StoreLock> {
        let deadline = Instant::now() + wait;
        loop {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut file) => {
                    // Who holds it, for whoever finds it left over.
                    let _ = writeln!(file, "pid {} since {}", std::process::id(), crate::model_file::now_rfc3339());
                    return Ok(StoreLock { path });
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(anyhow::Error::new(e).context(format!("creating the lock {}", path.display()))),
            }
            if break_if_stale(&path) {
                continue;
            }
            if Instant::now() >= deadline {
                let hint = format!("wait for the other writer; if none is running, remove {}", path.display());
                return Err(InputError::in_file(&path, "the model store is locked by another writer")
                    .hint(hint)
                    .into());
            }
            std::thread::sleep(LOCK_POLL);
        }
    }
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Removes the lock if it is older than [`STALE_LOCK`]; true when it did.
fn break_if_stale(path: &Path) -> bool {
    let age = fs::metadata(path).and_then(|m| m.modified()).map(|t| t.elapsed().unwrap_or_default());
    match age {
        Ok(age) if age >= STALE_LOCK => {
            tracing::warn!(lock = %path.display(), minutes = age.as_secs() / 60, "breaking a stale model store lock");
            fs::remove_file(path).is_ok()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_makes_others_wait_and_is_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK);
        let held = StoreLock::acquire(path.clone(), Duration::ZERO).unwrap();
        let error = StoreLock::acquire(path.clone(), Duration::from_millis(50)).unwrap_err();
        assert!(error.to_string().contains("locked by another writer"), "{error}");
        drop(held);
        assert!(!path.exists());
        StoreLock::acquire(path, Duration::ZERO).unwrap();
    }

    #[test]
    fn a_stale_lock_is_broken() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK);
        let file = File::create(&path).unwrap();
        file.set_modified(std::time::SystemTime::now() - STALE_LOCK - Duration::from_secs(1)).unwrap();
        let lock = StoreLock::acquire(path.clone(), Duration::ZERO).unwrap();
        assert!(fs::read_to_string(&path).unwrap().starts_with("pid "));
        drop(lock);
    }

    #[test]
    fn an_empty_or_missing_store_lists_nothing_and_a_file_is_no_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(&dir.path().join("models")).unwrap();
        assert!(store.list().unwrap().is_empty());
        assert_eq!(store.current().unwrap(), None);
        assert!(store.rollback().unwrap_err().to_string().contains("nothing to roll back"));
        let file = dir.path().join("file");
        fs::write(&file, "").unwrap();
        assert!(LocalStore::open(&file).unwrap_err().to_string().contains("not a folder"));
    }
}
