//! Uploads a folder to S3, as the Python original's `aws s3 sync` did, without a subprocess:
//! only files whose size or sha256 differ from the object already there, large files in
//! parts (multipart upload), and every request retried with backoff by the SDK.
//!
//! The sha256 of each uploaded file is stored as object metadata: an ETag is an MD5 only for
//! single-part uploads, so it cannot say whether a multipart object equals a file.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::Context;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use serde::{Deserialize, Serialize};

use super::client::{S3Url, S3};
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

/// When a file goes up in parts, and how large the parts are. S3 wants parts of at least
/// 5 MiB (all but the last) and at most 10,000 of them.
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

/// Uploads every file under `dir` to `destination`, keeping relative paths.
pub fn upload_dir(s3: &S3, dir: &Path, destination: &S3Url) -> anyhow::Result<SyncReport> {
    upload_dir_with(s3, dir, destination, Multipart::default())
}

pub fn upload_dir_with(s3: &S3, dir: &Path, destination: &S3Url, multipart: Multipart) -> anyhow::Result<SyncReport> {
    let files = files_under(dir)?;
    let mut report = SyncReport { destination: destination.url(""), uploaded: 0, unchanged: 0, bytes_uploaded: 0 };
    s3.block_on(async {
        let bucket = &destination.bucket;
        let listed = s3.list(bucket, &destination.key("")).await?;
        let remote: HashMap<String, u64> = listed.into_iter().map(|o| (o.key, o.size)).collect();
        for (relative, path) in files {
            let key = destination.key(&relative);
            let size = std::fs::metadata(&path).with_context(|| format!("reading {}", path.display()))?.len();
            let sha256 = sha256_file(&path).with_context(|| format!("reading {}", path.display()))?;
            if remote.get(&key) == Some(&size) && unchanged(s3, bucket, &key, &sha256).await? {
                report.unchanged += 1;
                continue;
            }
            let file = Upload { s3, bucket, key: &key, path: &path, size, sha256: &sha256 };
            if size > multipart.threshold {
                file.in_parts(multipart.part_size).await?;
            } else {
                file.whole().await?;
            }
            report.uploaded += 1;
            report.bytes_uploaded += size;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    tracing::info!(destination = %report.destination, uploaded = report.uploaded, unchanged = report.unchanged, "artifacts uploaded");
    Ok(report)
}

/// Whether the object (of the same size) carries the same sha256.
async fn unchanged(s3: &S3, bucket: &str, key: &str, sha256: &str) -> anyhow::Result<bool> {
    let head = s3.head(bucket, key).await?;
    Ok(head.and_then(|h| h.sha256).as_deref() == Some(sha256))
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

/// One file on its way to one object.
struct Upload<'a> {
    s3: &'a S3,
    bucket: &'a str,
    key: &'a str,
    path: &'a Path,
    size: u64,
    sha256: &'a str,
}

impl Upload<'_> {
    /// A single PutObject; the body is read from the file again on a retry.
    async fn whole(&self) -> anyhow::Result<()> {
        let body =
            ByteStream::from_path(self.path).await.with_context(|| format!("reading {}", self.path.display()))?;
        let request = self.s3.client.put_object().bucket(self.bucket).key(self.key).metadata("sha256", self.sha256);
        request.body(body).send().await.map_err(|e| self.s3.explain(e, "PutObject", self.bucket, self.key))?;
        Ok(())
    }

    /// A multipart upload, aborted on failure so that no invisible parts stay billed.
    async fn in_parts(&self, part_size: u64) -> anyhow::Result<()> {
        let created = self.s3.client.create_multipart_upload().bucket(self.bucket).key(self.key);
        let created = created.metadata("sha256", self.sha256).send().await;
        let created = created.map_err(|e| self.s3.explain(e, "CreateMultipartUpload", self.bucket, self.key))?;
        let upload_id = created.upload_id().context("S3 returned no upload id")?.to_string();
        match self.send_parts(&upload_id, part_size).await {
            Ok(()) => Ok(()),
            Err(error) => {
                let abort = self.s3.client.abort_multipart_upload().bucket(self.bucket).key(self.key);
                if let Err(e) = abort.upload_id(&upload_id).send().await {
                    let e = self.s3.explain(e, "AbortMultipartUpload", self.bucket, self.key);
                    tracing::warn!(key = self.key, error = %e, "could not abort a failed multipart upload");
                }
                Err(error)
            }
        }
    }

    async fn send_parts(&self, upload_id: &str, part_size: u64) -> anyhow::Result<()> {
        let mut file = std::fs::File::open(self.path).with_context(|| format!("opening {}", self.path.display()))?;
        let mut parts = Vec::new();
        for (index, offset) in (0..self.size).step_by(part_size as usize).enumerate() {
            let length = part_size.min(self.size - offset);
            let mut chunk = vec![0; length as usize];
            file.seek(SeekFrom::Start(offset))?;
            file.read_exact(&mut chunk).with_context(|| format!("reading {}", self.path.display()))?;
            let number = index as i32 + 1;
            let request = self.s3.client.upload_part().bucket(self.bucket).key(self.key).upload_id(upload_id);
            let sent = request.part_number(number).body(ByteStream::from(chunk)).send().await;
            let sent = sent.map_err(|e| self.s3.explain(e, "UploadPart", self.bucket, self.key))?;
            parts
                .push(CompletedPart::builder().part_number(number).set_e_tag(sent.e_tag().map(str::to_string)).build());
        }
        let completed = CompletedMultipartUpload::builder().set_parts(Some(parts)).build();
        let request = self.s3.client.complete_multipart_upload().bucket(self.bucket).key(self.key);
        let request = request.upload_id(upload_id).multipart_upload(completed);
        request.send().await.map_err(|e| self.s3.explain(e, "CompleteMultipartUpload", self.bucket, self.key))?;
        Ok(())
    }
}
