//! Uploads a folder to object storage, as the Python original's `aws s3 sync` did, without a
//! subprocess: only files whose size or sha256 differ from the object already there, large
//! files in parts, every request retried with backoff by the backend.
//!
//! The sha256 of each uploaded file is stored as object metadata: an S3 ETag is an MD5 only for
//! single-part uploads (and Azure keeps no MD5 for block lists), so neither can say whether an
//! object equals a file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::objects::{join, Multipart, ObjectStore};
use crate::artifacts::sha256_file;

/// What an upload did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncReport {
    pub destination: String,
    pub uploaded: usize,
    /// Files already there with the same size and sha256, not sent again.
    pub unchanged: usize,
    pub bytes_uploaded: u64,
}

/// Uploads every file under `dir` to `prefix/…`, keeping relative paths.
pub fn upload_dir(
    objects: &dyn ObjectStore,
    dir: &Path,
    prefix: &str,
    multipart: Multipart,
) -> anyhow::Result<SyncReport> {
    let destination = objects.url(&join(prefix, ""));
    let mut report = SyncReport { destination, uploaded: 0, unchanged: 0, bytes_uploaded: 0 };
    let listed = objects.list(&join(prefix, ""))?;
    let remote: HashMap<String, u64> = listed.into_iter().map(|o| (o.key, o.size)).collect();
    for (relative, path) in files_under(dir)? {
        let key = join(prefix, &relative);
        let size = std::fs::metadata(&path).with_context(|| format!("reading {}", path.display()))?.len();
        let sha256 = sha256_file(&path).with_context(|| format!("reading {}", path.display()))?;
        if remote.get(&key) == Some(&size) && objects.head(&key)?.and_then(|h| h.sha256).as_deref() == Some(&sha256) {
            report.unchanged += 1;
            continue;
        }
        objects.upload_file(&key, &path, &sha256, multipart)?;
        report.uploaded += 1;
        report.bytes_uploaded += size;
    }
    tracing::info!(destination = %report.destination, uploaded = report.uploaded, unchanged = report.unchanged, "artifacts uploaded");
    Ok(report)
}

/// Files under `dir` as (relative path with `/`, path), sorted, so uploads are in a stable order.
fn files_under(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).with_context(|| format!("listing {}", folder.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path.strip_prefix(dir).expect("under dir").components();
                let relative: Vec<String> = relative.map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
                files.push((relative.join("/"), path));
            }
        }
    }
    files.sort();
    Ok(files)
}
