//! Object storage in an S3 bucket. S3 replaces an object atomically, and a conditional write
//! (`If-None-Match: *`) is granted to one writer only: what the store's lock needs.
//!
//! The client (`client.rs`: `s3://` locations, the AWS default chain, retries, errors as
//! messages) and the multipart upload of large files (`multipart.rs`) live here, in the
//! store's room.

pub mod client;
mod multipart;

use std::path::Path;
use std::sync::Arc;

use super::objects::{Head, Listed, Multipart, ObjectStore};
use super::ModelStore;
use client::{S3Url, S3};

/// One bucket, through one client.
pub struct S3Bucket {
    s3: S3,
    bucket: String,
}

impl S3Bucket {
    pub fn new(s3: S3, bucket: &str) -> S3Bucket {
        S3Bucket { s3, bucket: bucket.to_string() }
    }
}

/// The store at `s3://bucket/prefix`, on the endpoint given or the one `AWS_ENDPOINT_URL`
/// names; nothing is sent until it is used. Runs go to `s3://bucket/artifacts/<run-id>/`.
pub fn open(location: &str, endpoint: Option<&str>) -> anyhow::Result<ModelStore> {
    let url = S3Url::parse(location)?;
    let bucket = S3Bucket::new(S3::connect_to(endpoint)?, &url.bucket);
    Ok(ModelStore::new(Arc::new(bucket), &url.prefix, Some("artifacts")))
}

impl ObjectStore for S3Bucket {
    fn kind(&self) -> &'static str {
        "S3"
    }

    fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        self.s3.block_on(self.s3.get(&self.bucket, key))
    }

    fn put(&self, key: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
        self.s3.block_on(self.s3.put(&self.bucket, key, bytes))
    }

    fn put_if_absent(&self, key: &str, bytes: Vec<u8>) -> anyhow::Result<bool> {
        self.s3.block_on(self.s3.put_if_absent(&self.bucket, key, bytes))
    }

    fn delete(&self, key: &str) -> anyhow::Result<()> {
        self.s3.block_on(self.s3.delete(&self.bucket, key))
    }

    fn head(&self, key: &str) -> anyhow::Result<Option<Head>> {
        self.s3.block_on(self.s3.head(&self.bucket, key))
    }

    fn list(&self, prefix: &str) -> anyhow::Result<Vec<Listed>> {
        self.s3.block_on(self.s3.list(&self.bucket, prefix))
    }

    fn upload_file(&self, key: &str, path: &Path, sha256: &str, multipart: Multipart) -> anyhow::Result<()> {
        let file = multipart::Upload { s3: &self.s3, bucket: &self.bucket, key, path, sha256 };
        self.s3.block_on(file.send(multipart))
    }
}
