//! One file on its way to one object: a single PutObject, or above the threshold a multipart
//! upload, aborted on failure so that no invisible parts stay billed.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::Context;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use super::client::S3;
use crate::store::objects::Multipart;

pub struct Upload<'a> {
    pub s3: &'a S3,
    pub bucket: &'a str,
    pub key: &'a str,
    pub path: &'a Path,
    pub sha256: &'a str,
}

impl Upload<'_> {
    pub async fn send(&self, multipart: Multipart) -> anyhow::Result<()> {
        let size = std::fs::metadata(self.path).with_context(|| format!("reading {}", self.path.display()))?.len();
        if size > multipart.threshold {
            self.in_parts(size, multipart.part_size).await
        } else {
            self.whole().await
        }
    }

    /// A single PutObject; the body is read from the file again on a retry.
    async fn whole(&self) -> anyhow::Result<()> {
        let body =
            ByteStream::from_path(self.path).await.with_context(|| format!("reading {}", self.path.display()))?;
        let request = self.s3.client.put_object().bucket(self.bucket).key(self.key).metadata("sha256", self.sha256);
        request.body(body).send().await.map_err(|e| self.s3.explain(e, "PutObject", self.bucket, self.key))?;
        Ok(())
    }

    async fn in_parts(&self, size: u64, part_size: u64) -> anyhow::Result<()> {
        let created = self.s3.client.create_multipart_upload().bucket(self.bucket).key(self.key);
        let created = created.metadata("sha256", self.sha256).send().await;
        let created = created.map_err(|e| self.s3.explain(e, "CreateMultipartUpload", self.bucket, self.key))?;
        let upload_id = created.upload_id().context("S3 returned no upload id")?.to_string();
        match self.send_parts(&upload_id, size, part_size).await {
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

    async fn send_parts(&self, upload_id: &str, size: u64, part_size: u64) -> anyhow::Result<()> {
        let mut file = std::fs::File::open(self.path).with_context(|| format!("opening {}", self.path.display()))?;
        let mut parts = Vec::new();
        for (index, offset) in (0..size).step_by(part_size as usize).enumerate() {
            let length = part_size.min(size - offset);
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
