//! A model store in an S3 bucket, laid out as the local store is, under a prefix:
//!
//! ```text
//! s3://bucket/prefix/
//!   v0001-20261124T053512Z/model.bin   the model file
//!   v0001-20261124T053512Z/meta.json   its description (VersionMeta)
//!   index.json                         every version with its sha256 and size (Index)
//!   history.json                       the promotions, for rollback (History)
//!   current                            the current version's name
//!   .lock                              held by a writer (put, promote, rollback)
//! ```
//!
//! S3 replaces an object atomically, so no temporary names are needed: a version's objects
//! are written before the index lists it, and `current` is written last. A version whose
//! writer died before the index is not listed, and its number is not reused. Writers exclude
//! each other with `.lock`, created with a conditional write (`If-None-Match: *`), which S3
//! grants to one writer only.
//!
//! The bucket client (`client.rs`: `s3://` locations, credentials, retries, conditional
//! writes) and the run folders' upload (`sync.rs`: changed files only, multipart for large
//! ones) live here, in the store's room: the artifact upload of a run goes through the store.

pub mod client;
pub mod sync;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::local::{LOCK_WAIT, STALE_LOCK};
use super::{check_version_name, verify, version_number, History, Index, ModelStore, VersionInfo, VersionMeta};
use crate::error::InputError;
use crate::model_file::ModelFile;
use client::{age, S3Url, S3};
use sync::SyncReport;

const MODEL: &str = "model.bin";
const META: &str = "meta.json";
const INDEX: &str = "index.json";
const HISTORY: &str = "history.json";
const CURRENT: &str = "current";
const LOCK: &str = ".lock";
/// S3 requests cost more than file checks: poll the lock less often than the local store.
const LOCK_POLL: Duration = Duration::from_millis(250);

pub struct S3Store {
    s3: S3,
    url: S3Url,
}

impl S3Store {
    /// The store at `s3://bucket/prefix`; nothing is sent until it is used.
    pub fn open(location: &str) -> anyhow::Result<S3Store> {
        S3Store::open_on(location, None)
    }

    /// As [`S3Store::open`], on the endpoint given rather than the one `AWS_ENDPOINT_URL` names.
    pub fn open_on(location: &str, endpoint: Option<&str>) -> anyhow::Result<S3Store> {
        Ok(S3Store { url: S3Url::parse(location)?, s3: S3::connect_to(endpoint)? })
    }

    fn read(&self, name: &str) -> anyhow::Result<Option<Vec<u8>>> {
        self.s3.block_on(self.s3.get(&self.url.bucket, &self.url.key(name)))
    }

    fn write(&self, name: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
        self.s3.block_on(self.s3.put(&self.url.bucket, &self.url.key(name), bytes))
    }

    fn read_text(&self, name: &str) -> anyhow::Result<Option<String>> {
        let Some(bytes) = self.read(name)? else { return Ok(None) };
        let text =
            String::from_utf8(bytes).map_err(|_| InputError::new(format!("{} is not UTF-8", self.url.url(name))))?;
        Ok(Some(text))
    }

    fn read_index(&self) -> anyhow::Result<Index> {
        match self.read_text(INDEX)? {
            Some(text) => Index::parse(&text, &self.location(INDEX)),
            None => Ok(Index::default()),
        }
    }

    fn read_history(&self) -> anyhow::Result<History> {
        let Some(text) = self.read_text(HISTORY)? else { return Ok(History::default()) };
        let parsed = serde_json::from_str(&text);
        Ok(parsed.map_err(|e| InputError::in_file(&self.location(HISTORY), format!("does not parse: {e}")))?)
    }

    fn write_json(&self, name: &str, value: &impl serde::Serialize) -> anyhow::Result<()> {
        self.write(name, serde_json::to_vec_pretty(value)?)
    }

    /// An object's URL as a path, for the messages shared with the local store.
    fn location(&self, name: &str) -> PathBuf {
        PathBuf::from(self.url.url(name))
    }

    /// Version numbers in use under the prefix, recorded or not.
    fn taken_numbers(&self) -> anyhow::Result<Vec<u32>> {
        let prefix = self.url.key("");
        let objects = self.s3.block_on(self.s3.list(&self.url.bucket, &prefix))?;
        let names = objects.iter().filter_map(|o| o.key.strip_prefix(&prefix)?.split('/').next().map(str::to_string));
        Ok(names.filter_map(|n| version_number(&n)).collect())
    }

    /// Takes the writer lock, waiting up to `wait` for another writer and breaking a lock
    /// older than [`STALE_LOCK`]. Public so that tests can hold it.
    pub fn lock(&self, wait: Duration) -> anyhow::Result<S3Lock<'_>> {
        let key = self.url.key(LOCK);
        let bucket = &self.url.bucket;
        let deadline = Instant::now() + wait;
        loop {
            let holder = format!("pid {} since {}\n", std::process::id(), crate::model_file::now_rfc3339());
            if self.s3.block_on(self.s3.put_if_absent(bucket, &key, holder.into_bytes()))? {
                return Ok(S3Lock { store: self });
            }
            let head = self.s3.block_on(self.s3.head(bucket, &key))?;
            if let Some(modified) = head.and_then(|h| h.last_modified).filter(|&t| age(t) >= STALE_LOCK) {
                tracing::warn!(lock = %self.url.url(LOCK), minutes = age(modified).as_secs() / 60, "breaking a stale model store lock");
                self.s3.block_on(self.s3.delete(bucket, &key))?;
                continue;
            }
            if Instant::now() >= deadline {
                let hint = format!("wait for the other writer; if none is running, delete {}", self.url.url(LOCK));
                return Err(InputError::in_file(&self.location(LOCK), "the model store is locked by another writer")
                    .hint(hint)
                    .into());
            }
            std::thread::sleep(LOCK_POLL);
        }
    }
}

/// The store's writer lock, deleted on drop.
pub struct S3Lock<'s> {
    store: &'s S3Store,
}

impl Drop for S3Lock<'_> {
    fn drop(&mut self) {
        let (s3, url) = (&self.store.s3, &self.store.url);
        if let Err(e) = s3.block_on(s3.delete(&url.bucket, &url.key(LOCK))) {
            tracing::warn!(lock = %url.url(LOCK), error = %e, "could not release the model store lock");
        }
    }
}

impl ModelStore for S3Store {
    fn describe(&self) -> String {
        format!("S3 model store {}", self.url)
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
        let Some(text) = self.read_text(CURRENT)? else { return Ok(None) };
        let version = text.trim();
        check_version_name(version).map_err(|_| {
            InputError::in_file(&self.location(CURRENT), format!("`{version}` is not a version name"))
                .hint("promote a version again to repair it")
        })?;
        Ok(Some(version.to_string()))
    }

    fn get_bytes(&self, version: &str) -> anyhow::Result<Vec<u8>> {
        let index = self.read_index()?;
        let record = index.require(version, &self.describe())?;
        let name = format!("{version}/{MODEL}");
        let bytes = self.read(&name)?.ok_or_else(|| {
            InputError::in_file(&self.location(&name), "the stored model file is missing")
                .hint("use another version, or store the model again from its run")
        })?;
        verify(&bytes, record, &self.location(&name))?;
        Ok(bytes)
    }

    fn put(&self, model: &ModelFile) -> anyhow::Result<String> {
        // Encoded before taking the lock: it is the slow part.
        let bytes = model.to_bytes();
        let _lock = self.lock(LOCK_WAIT)?;
        let mut index = self.read_index()?;
        let number = index.next_number(self.taken_numbers()?);
        let version = super::version_name(number, time::OffsetDateTime::now_utc());
        let info = VersionInfo::new(model, &version, &bytes);
        self.write(&format!("{version}/{MODEL}"), bytes)?;
        self.write_json(&format!("{version}/{META}"), &VersionMeta::new(info.clone(), model))?;
        index.versions.push(info);
        self.write_json(INDEX, &index)?;
        Ok(version)
    }

    fn promote(&self, version: &str) -> anyhow::Result<Option<String>> {
        // As in the local store: versions are never removed, and a damaged file is refused
        // before it can become current.
        self.get(version)?;
        let _lock = self.lock(LOCK_WAIT)?;
        let previous = self.current()?;
        if previous.as_deref() == Some(version) {
            return Ok(previous);
        }
        let mut history = self.read_history()?;
        history.record(version, previous.clone());
        self.write_json(HISTORY, &history)?;
        self.write(CURRENT, format!("{version}\n").into_bytes())?;
        Ok(previous)
    }

    fn rollback(&self) -> anyhow::Result<String> {
        let _lock = self.lock(LOCK_WAIT)?;
        let mut history = self.read_history()?;
        let target = history.roll_back(self.current()?.as_deref())?;
        // `current` before the history: see History::roll_back for why this order is safe.
        self.write(CURRENT, format!("{target}\n").into_bytes())?;
        self.write_json(HISTORY, &history)?;
        Ok(target)
    }

    fn model_location(&self, version: &str) -> String {
        self.url.url(&format!("{version}/{MODEL}"))
    }

    /// A run's folder goes to `s3://bucket/artifacts/<run-id>/`, beside the store's prefix,
    /// where the Python original's `aws s3 sync` put it.
    fn upload_run(&self, run_dir: &Path, run_id: &str) -> anyhow::Result<Option<SyncReport>> {
        let destination = S3Url { bucket: self.url.bucket.clone(), prefix: format!("artifacts/{run_id}") };
        Ok(Some(sync::upload_dir(&self.s3, run_dir, &destination)?))
    }
}
