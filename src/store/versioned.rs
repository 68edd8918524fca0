//! The store's rules, written once over any [`ObjectStore`]. Under the store's prefix:
//!
//! ```text
//! v0001-20261124T053512Z/model.bin   the model file
//! v0001-20261124T053512Z/model.onnx  its ONNX export, when the model has one (see crate::onnx)
//! v0001-20261124T053512Z/meta.json   its description (VersionMeta)
//! index.json                         every version with its sha256 and size (Index)
//! history.json                       the promotions, for rollback (History)
//! current                            the current version's name
//! .lock                              held by a writer (put, promote, rollback)
//! ```
//!
//! Every object is replaced whole, so readers take no lock and never see a half-written state:
//! a version's objects are written before the index lists it, and `current` is written last. A
//! version whose writer died before the index is not listed, and its number is not reused.
//! Writers exclude each other with `.lock`, created only if absent, which one writer wins.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::objects::{age, join, Multipart, ObjectStore};
use super::sync::{upload_dir, SyncReport};
use super::{check_version_name, verify, version_number, FileDigest, History, Index, VersionInfo, VersionMeta};
use crate::error::InputError;
use crate::model_file::{load_error, ModelFile};

const MODEL: &str = "model.bin";
const ONNX: &str = "model.onnx";
const META: &str = "meta.json";
const INDEX: &str = "index.json";
const HISTORY: &str = "history.json";
const CURRENT: &str = "current";
const LOCK: &str = ".lock";

/// A lock older than this is taken to be left over by a writer that died.
pub const STALE_LOCK: Duration = Duration::from_secs(10 * 60);
/// How long a writer waits for another one before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(120);

/// A store of model versions. Readers never see a half-stored version or a half-switched
/// current version; writers exclude each other. Cheap to clone (the backend is shared).
#[derive(Clone)]
pub struct ModelStore {
    objects: Arc<dyn ObjectStore>,
    /// Where the store's objects are in the backend, without slashes at either end.
    prefix: String,
    /// Where uploaded runs go (`<runs>/<run-id>/`), for stores that keep runs.
    runs: Option<String>,
}

impl ModelStore {
    /// The store under `prefix` in `objects`; runs go under `runs` when given.
    pub fn new(objects: Arc<dyn ObjectStore>, prefix: &str, runs: Option<&str>) -> ModelStore {
        let prefix = prefix.trim_matches('/').to_string();
        ModelStore { objects, prefix, runs: runs.map(str::to_string) }
    }

    /// The backend, for tests that read or damage objects as another program would.
    pub fn objects(&self) -> &dyn ObjectStore {
        self.objects.as_ref()
    }

    /// Where the store is, for messages (e.g. "local model store models").
    pub fn describe(&self) -> String {
        format!("{} model store {}", self.objects.kind(), self.objects.url(&self.prefix))
    }

    /// Every stored version, oldest first.
    pub fn list(&self) -> anyhow::Result<Vec<VersionInfo>> {
        let current = self.current()?;
        let mut versions = self.read_index()?.versions;
        versions.sort_by_key(|v| version_number(&v.version));
        for v in &mut versions {
            v.is_current = current.as_deref() == Some(v.version.as_str());
        }
        Ok(versions)
    }

    /// What the store records about `version`.
    pub fn info(&self, version: &str) -> anyhow::Result<VersionInfo> {
        let versions = self.list()?;
        let info = versions.iter().find(|v| v.version == version);
        Ok(info.cloned().ok_or_else(|| super::unknown_version(version, &versions, &self.describe()))?)
    }

    /// The current version, if one was ever promoted.
    pub fn current(&self) -> anyhow::Result<Option<String>> {
        let Some(text) = self.read_text(CURRENT)? else { return Ok(None) };
        let version = text.trim();
        check_version_name(version).map_err(|_| {
            InputError::in_file(Path::new(&self.url(CURRENT)), format!("`{version}` is not a version name"))
                .hint("promote a version again to repair it")
        })?;
        Ok(Some(version.to_string()))
    }

    /// The bytes of a version's model file, checked against the store's record of it.
    pub fn get_bytes(&self, version: &str) -> anyhow::Result<Vec<u8>> {
        let index = self.read_index()?;
        let record = index.require(version, &self.describe())?;
        let digest = FileDigest { sha256: record.sha256.clone(), bytes: record.bytes };
        self.read_verified(version, MODEL, "model file", &digest)
    }

    /// The bytes of a version's ONNX export, checked against the store's record of it; None
    /// for a version stored without one.
    pub fn get_onnx(&self, version: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let index = self.read_index()?;
        let record = index.require(version, &self.describe())?;
        let Some(digest) = &record.onnx else { return Ok(None) };
        Ok(Some(self.read_verified(version, ONNX, "ONNX file", digest)?))
    }

    fn read_verified(&self, version: &str, name: &str, what: &str, digest: &FileDigest) -> anyhow::Result<Vec<u8>> {
        let key = format!("{version}/{name}");
        let location = self.url(&key);
        let bytes = self.read(&key)?.ok_or_else(|| {
            InputError::in_file(Path::new(&location), format!("the stored {what} is missing"))
                .hint("use another version, or store the model again from its run")
        })?;
        verify(&bytes, digest, what, Path::new(&location))?;
        Ok(bytes)
    }

    /// A version's model file, checked and decoded.
    pub fn get(&self, version: &str) -> anyhow::Result<ModelFile> {
        let bytes = self.get_bytes(version)?;
        let location = self.model_location(version);
        Ok(ModelFile::from_bytes(&bytes).map_err(|e| load_error(Path::new(&location), &e))?)
    }

    /// Where a version's model file is, for messages.
    pub fn model_location(&self, version: &str) -> String {
        self.url(&format!("{version}/{MODEL}"))
    }

    /// Stores a model file as a new version and returns its name. Does not switch current.
    pub fn put(&self, model: &ModelFile) -> anyhow::Result<String> {
        // Encoded before taking the lock: it is the slow part. A model the ONNX export cannot
        // write (an imputer with k > 3) is stored without one; `models show` says so.
        let bytes = model.to_bytes();
        let onnx = crate::onnx::export(model).ok();
        let _lock = self.lock(LOCK_WAIT)?;
        let mut index = self.read_index()?;
        let number = index.next_number(self.taken_numbers()?);
        let version = super::version_name(number, time::OffsetDateTime::now_utc());
        let info = VersionInfo::new(model, &version, &bytes, onnx.as_deref());
        self.write(&format!("{version}/{MODEL}"), bytes)?;
        if let Some(onnx) = onnx {
            self.write(&format!("{version}/{ONNX}"), onnx)?;
        }
        self.write_json(&format!("{version}/{META}"), &VersionMeta::new(info.clone(), model))?;
        index.versions.push(info);
        self.write_json(INDEX, &index)?;
        Ok(version)
    }

    /// Makes `version` current, atomically; returns the version current before.
    pub fn promote(&self, version: &str) -> anyhow::Result<Option<String>> {
        // Versions are never removed, so one checked before the lock still exists under it;
        // a damaged file is refused before it can become current.
        self.get(version)?;
        let _lock = self.lock(LOCK_WAIT)?;
        let previous = self.current()?;
        if previous.as_deref() == Some(version) {
            return Ok(previous);
        }
        let mut history: History = self.read_json(HISTORY)?;
        history.record(version, previous.clone());
        self.write_json(HISTORY, &history)?;
        self.write(CURRENT, format!("{version}\n").into_bytes())?;
        Ok(previous)
    }

    /// Makes current again the version that was current before the last promotion, and
    /// returns it; an error when there is none.
    pub fn rollback(&self) -> anyhow::Result<String> {
        let _lock = self.lock(LOCK_WAIT)?;
        let mut history: History = self.read_json(HISTORY)?;
        let target = history.roll_back(self.current()?.as_deref())?;
        // `current` before the history: see History::roll_back for why this order is safe.
        self.write(CURRENT, format!("{target}\n").into_bytes())?;
        self.write_json(HISTORY, &history)?;
        Ok(target)
    }

    /// Uploads a run's folder to `<runs>/<run-id>/` (for the cloud stores, `artifacts/` at the
    /// bucket's or container's root, where the Python original's `aws s3 sync` put it); None
    /// when the store keeps no runs (a folder store: the run folder is already on this disk).
    pub fn upload_run(&self, run_dir: &Path, run_id: &str) -> anyhow::Result<Option<SyncReport>> {
        let Some(runs) = &self.runs else { return Ok(None) };
        Ok(Some(upload_dir(self.objects(), run_dir, &join(runs, run_id), Multipart::default())?))
    }

    /// Takes the writer lock, waiting up to `wait` for another writer and breaking a lock
    /// older than [`STALE_LOCK`]. Public so that tests can hold it.
    pub fn lock(&self, wait: Duration) -> anyhow::Result<StoreLock<'_>> {
        let key = self.key(LOCK);
        let deadline = Instant::now() + wait;
        loop {
            let holder = format!("pid {} since {}\n", std::process::id(), crate::model_file::now_rfc3339());
            if self.objects.put_if_absent(&key, holder.into_bytes())? {
                return Ok(StoreLock { store: self });
            }
            let head = self.objects.head(&key)?;
            if let Some(modified) = head.and_then(|h| h.last_modified).filter(|&t| age(t) >= STALE_LOCK) {
                let minutes = age(modified).as_secs() / 60;
                tracing::warn!(lock = %self.url(LOCK), minutes, "breaking a stale model store lock");
                self.objects.delete(&key)?;
                continue;
            }
            if Instant::now() >= deadline {
                let hint = format!("wait for the other writer; if none is running, delete {}", self.url(LOCK));
                return Err(InputError::in_file(
                    Path::new(&self.url(LOCK)),
                    "the model store is locked by another writer",
                )
                .hint(hint)
                .into());
            }
            std::thread::sleep(self.objects.lock_poll());
        }
    }

    fn key(&self, name: &str) -> String {
        join(&self.prefix, name)
    }

    fn url(&self, name: &str) -> String {
        self.objects.url(&self.key(name))
    }

    fn read(&self, name: &str) -> anyhow::Result<Option<Vec<u8>>> {
        self.objects.get(&self.key(name))
    }

    fn write(&self, name: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
        self.objects.put(&self.key(name), bytes)
    }

    fn write_json(&self, name: &str, value: &impl serde::Serialize) -> anyhow::Result<()> {
        self.write(name, serde_json::to_vec_pretty(value)?)
    }

    fn read_text(&self, name: &str) -> anyhow::Result<Option<String>> {
        let Some(bytes) = self.read(name)? else { return Ok(None) };
        let text = String::from_utf8(bytes)
            .map_err(|_| InputError::in_file(Path::new(&self.url(name)), "the file is not UTF-8 text"))?;
        Ok(Some(text))
    }

    fn read_index(&self) -> anyhow::Result<Index> {
        match self.read_text(INDEX)? {
            Some(text) => Index::parse(&text, Path::new(&self.url(INDEX))),
            None => Ok(Index::default()),
        }
    }

    /// A JSON object's value, the default when it does not exist.
    fn read_json<T: DeserializeOwned + Default>(&self, name: &str) -> anyhow::Result<T> {
        let Some(text) = self.read_text(name)? else { return Ok(T::default()) };
        let parsed = serde_json::from_str(&text);
        Ok(parsed.map_err(|e| InputError::in_file(Path::new(&self.url(name)), format!("does not parse: {e}")))?)
    }

    /// Version numbers in use under the prefix, recorded or not.
    fn taken_numbers(&self) -> anyhow::Result<Vec<u32>> {
        let prefix = self.key("");
        let objects = self.objects.list(&prefix)?;
        let names = objects.iter().filter_map(|o| o.key.strip_prefix(&prefix)?.split('/').next().map(str::to_string));
        Ok(names.filter_map(|n| version_number(&n)).collect())
    }
}

/// The store's writer lock, deleted on drop.
pub struct StoreLock<'s> {
    store: &'s ModelStore,
}

impl Drop for StoreLock<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.store.objects.delete(&self.store.key(LOCK)) {
            tracing::warn!(lock = %self.store.url(LOCK), error = %e, "could not release the model store lock");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::folder::Folder;

    fn store_in(dir: &Path) -> ModelStore {
        ModelStore::new(Arc::new(Folder::open(&dir.join("models")).unwrap()), "", None)
    }

    #[test]
    fn a_held_lock_makes_others_wait_and_is_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let (first, second) = (store_in(dir.path()), store_in(dir.path()));
        let held = first.lock(Duration::ZERO).unwrap();
        let error = second.lock(Duration::from_millis(50)).err().unwrap();
        assert!(error.to_string().contains("locked by another writer"), "{error}");
        drop(held);
        assert!(!dir.path().join("models/.lock").exists());
        drop(second.lock(Duration::ZERO).unwrap());
    }

    #[test]
    fn a_stale_lock_is_broken() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path());
        let path = dir.path().join("models/.lock");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let file = std::fs::File::create(&path).unwrap();
        file.set_modified(std::time::SystemTime::now() - STALE_LOCK - Duration::from_secs(1)).unwrap();
        let lock = store.lock(Duration::ZERO).unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().starts_with("pid "));
        drop(lock);
    }

    #[test]
    fn an_empty_or_missing_store_lists_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path());
        assert!(store.list().unwrap().is_empty());
        assert_eq!(store.current().unwrap(), None);
        assert!(store.rollback().unwrap_err().to_string().contains("nothing to roll back"));
        assert_eq!(store.describe(), format!("local model store {}", dir.path().join("models").display()));
    }
}
