//! The object storage a model store sits on: a flat namespace of keys (`a/b/c`, `/` only a
//! convention) whose values are replaced whole. Each backend — a folder, an S3 bucket, an
//! Azure Blob container — implements these few operations, and the store's rules
//! ([`super::ModelStore`]) are written once on top of them.
//!
//! What every implementation guarantees, and the store relies on:
//! - a reader sees an object whole or not at all (`put` replaces atomically);
//! - of the writers racing to `put_if_absent` one key, exactly one wins;
//! - every error says which object, where, and what to do.

use std::path::Path;
use std::time::{Duration, SystemTime};

/// An object as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub size: u64,
}

/// What is known of one object without reading it.
#[derive(Debug, Clone)]
pub struct Head {
    pub size: u64,
    /// The `sha256` metadata netsec writes on every object it uploads, where the backend keeps
    /// metadata (a folder does not).
    pub sha256: Option<String>,
    pub last_modified: Option<SystemTime>,
}

/// When a file goes up in parts, and how large the parts are. S3 wants parts of at least
/// 5 MiB (all but the last) and at most 10,000 of them; Azure's blocks may be up to 4000 MiB.
#[derive(Debug, Clone, Copy)]
pub struct Multipart {
    pub threshold: u64,
    pub part_size: u64,
}

impl Default for Multipart {
    fn default() -> Self {
        Multipart { threshold: 16 << 20, part_size: 8 << 20 }
    }
}

pub trait ObjectStore: Send + Sync {
    /// The kind of storage, for messages: "local", "S3", "Azure Blob".
    fn kind(&self) -> &'static str;

    /// Where `key` is, for messages (a path, `s3://…`, `az://…`); `""` is the root.
    fn url(&self, key: &str) -> String;

    /// An object's bytes, None when there is none.
    fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>>;

    /// Writes an object whole, replacing any, with its sha256 as metadata where kept.
    fn put(&self, key: &str, bytes: Vec<u8>) -> anyhow::Result<()>;

    /// Writes an object only if there is none; false when one exists.
    fn put_if_absent(&self, key: &str, bytes: Vec<u8>) -> anyhow::Result<bool>;

    /// Removes an object; nothing happens when there is none.
    fn delete(&self, key: &str) -> anyhow::Result<()>;

    /// What is known of an object, None when there is none.
    fn head(&self, key: &str) -> anyhow::Result<Option<Head>>;

    /// Every object whose key starts with `prefix`, in no particular order.
    fn list(&self, prefix: &str) -> anyhow::Result<Vec<Listed>>;

    /// Uploads a file as `key` (whose size and sha256 the caller measured): in parts above
    /// `multipart.threshold` where the backend has parts, never leaving parts behind on failure.
    fn upload_file(&self, key: &str, path: &Path, sha256: &str, multipart: Multipart) -> anyhow::Result<()>;

    /// How often a writer waiting for the store's lock asks again: requests cost more than
    /// file checks.
    fn lock_poll(&self) -> Duration {
        Duration::from_millis(250)
    }
}

/// `name` under `prefix` (a prefix without slashes at either end, possibly empty).
pub fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}/{name}")
    }
}

/// How long ago `time` was (zero for a time in the future: clocks differ).
pub fn age(time: SystemTime) -> Duration {
    time.elapsed().unwrap_or_default()
}
