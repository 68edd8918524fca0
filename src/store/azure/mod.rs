//! Object storage in an Azure Blob Storage container. Put Blob replaces a block blob
//! atomically, and with `If-None-Match: *` it is granted to one writer only (the others get
//! 409 BlobAlreadyExists): what the store's lock needs.
//!
//! `account.rs` finds the account and its credentials the way Azure's tools do; `client.rs`
//! speaks the REST API (Shared Key signing, SAS, managed identity tokens, retries, errors).

mod account;
mod client;

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context;
use base64::Engine;
use reqwest::Method;

use super::objects::{Head, Listed, Multipart, ObjectStore};
use super::ModelStore;
use crate::error::InputError;
pub use account::Account;
use client::{blocks, element, header, Answer, Client, Request};

/// `az://container/prefix` (or `azure://`), the prefix without slashes at either end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureUrl {
    pub container: String,
    pub prefix: String,
}

impl AzureUrl {
    pub fn parse(location: &str) -> Result<AzureUrl, InputError> {
        let rest = location.strip_prefix("az://").or_else(|| location.strip_prefix("azure://"));
        let (container, prefix) = rest.unwrap_or_default().split_once('/').unwrap_or((rest.unwrap_or_default(), ""));
        let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        let well_formed = (3..=63).contains(&container.len())
            && container.chars().all(valid)
            && !container.starts_with('-')
            && !container.ends_with('-')
            && !container.contains("--");
        if rest.is_none() || !well_formed {
            return Err(InputError::new(format!("`{location}` is not an Azure Blob location")).hint(
                "write az://container/prefix, with a container name of 3 to 63 lowercase letters, digits and single \
                 hyphens",
            ));
        }
        Ok(AzureUrl { container: container.into(), prefix: prefix.trim_matches('/').into() })
    }
}

/// The store at `az://container/prefix` in the account the environment names; nothing is sent
/// until it is used. Runs go to `az://container/artifacts/<run-id>/`.
pub fn open(location: &str) -> anyhow::Result<ModelStore> {
    let url = AzureUrl::parse(location)?;
    let container = AzureContainer::new(Account::from_env()?, &url.container)?;
    Ok(ModelStore::new(Arc::new(container), &url.prefix, Some("artifacts")))
}

/// One container, through one client.
pub struct AzureContainer {
    client: Client,
    container: String,
}

impl AzureContainer {
    pub fn new(account: Account, container: &str) -> anyhow::Result<AzureContainer> {
        Ok(AzureContainer { client: Client::new(account)?, container: container.to_string() })
    }

    /// Creates the container. The store never does (a missing container is an error to fix,
    /// as a missing bucket is); set-up and tests do.
    pub fn create(&self) -> anyhow::Result<()> {
        let path = format!("/{}", self.container);
        let request = Request::new(Method::PUT, &path).query("restype", "container");
        self.call("CreateContainer", "", request, 201, &[])?;
        Ok(())
    }

    fn path(&self, key: &str) -> String {
        format!("/{}/{key}", self.container)
    }

    /// Sends `request` for `key`: the answer when its status is `expected`, None when it is
    /// one of `tolerated` (status, error code), an error saying what to do otherwise.
    fn call(
        &self,
        operation: &str,
        key: &str,
        request: Request,
        expected: u16,
        tolerated: &[(u16, &str)],
    ) -> anyhow::Result<Option<Answer>> {
        let target = self.url(key);
        let answer = self.client.send(operation, &target, &request)?;
        if answer.status == expected {
            return Ok(Some(answer));
        }
        if tolerated.iter().any(|&(status, code)| status == answer.status && code == answer.code) {
            return Ok(None);
        }
        Err(self.client.failure(operation, &target, answer))
    }

    fn put_blob(&self, key: &str, bytes: Vec<u8>, sha256: &str, only_if_absent: bool) -> anyhow::Result<bool> {
        let path = self.path(key);
        let mut request = Request::new(Method::PUT, &path)
            .header("x-ms-blob-type", "BlockBlob")
            .header("x-ms-meta-sha256", sha256)
            .body(bytes);
        if only_if_absent {
            request = request.header("If-None-Match", "*");
        }
        // 409 when the blob exists; 412 is what the If-None-Match rule says in general.
        let exists = [(409, "BlobAlreadyExists"), (412, "ConditionNotMet")];
        Ok(self.call("PutBlob", key, request, 201, &exists)?.is_some())
    }

    /// A large file as blocks of `part_size`, then the block list. Blocks never committed are
    /// invisible, and the service discards them after a week: there is no upload to abort.
    fn put_in_blocks(&self, key: &str, path: &Path, size: u64, sha256: &str, part_size: u64) -> anyhow::Result<()> {
        let mut file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let blob = self.path(key);
        let mut ids = Vec::new();
        for (index, offset) in (0..size).step_by(part_size as usize).enumerate() {
            let mut chunk = vec![0; part_size.min(size - offset) as usize];
            file.read_exact(&mut chunk).with_context(|| format!("reading {}", path.display()))?;
            // Every block id of a blob has the same length.
            let id = base64::engine::general_purpose::STANDARD.encode(format!("block-{index:08}"));
            let request = Request::new(Method::PUT, &blob).query("comp", "block").query("blockid", &id).body(chunk);
            self.call("PutBlock", key, request, 201, &[])?;
            ids.push(id);
        }
        let latest: String = ids.iter().map(|id| format!("<Latest>{id}</Latest>")).collect();
        let list = format!("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>{latest}</BlockList>");
        let request = Request::new(Method::PUT, &blob)
            .query("comp", "blocklist")
            .header("x-ms-meta-sha256", sha256)
            .body(list.into_bytes());
        self.call("PutBlockList", key, request, 201, &[])?;
        Ok(())
    }
}

const NOT_FOUND: [(u16, &str); 1] = [(404, "BlobNotFound")];

impl ObjectStore for AzureContainer {
    fn kind(&self) -> &'static str {
        "Azure Blob"
    }

    fn url(&self, key: &str) -> String {
        format!("az://{}/{key}", self.container)
    }

    fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let path = self.path(key);
        let Some(answer) = self.call("GetBlob", key, Request::new(Method::GET, &path), 200, &NOT_FOUND)? else {
            return Ok(None);
        };
        let bytes = answer.response.bytes().map_err(|e| {
            anyhow::anyhow!("reading {} from {}: {}", self.url(key), self.client.account.endpoint, e.without_url())
        })?;
        Ok(Some(bytes.to_vec()))
    }

    fn put(&self, key: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
        let sha256 = super::sha256_hex(&bytes);
        self.put_blob(key, bytes, &sha256, false).map(drop)
    }

    fn put_if_absent(&self, key: &str, bytes: Vec<u8>) -> anyhow::Result<bool> {
        let sha256 = super::sha256_hex(&bytes);
        self.put_blob(key, bytes, &sha256, true)
    }

    fn delete(&self, key: &str) -> anyhow::Result<()> {
        let path = self.path(key);
        self.call("DeleteBlob", key, Request::new(Method::DELETE, &path), 202, &NOT_FOUND)?;
        Ok(())
    }

    fn head(&self, key: &str) -> anyhow::Result<Option<Head>> {
        let path = self.path(key);
        let request = Request::new(Method::HEAD, &path);
        let Some(answer) = self.call("GetBlobProperties", key, request, 200, &NOT_FOUND)? else { return Ok(None) };
        let response = &answer.response;
        let size = header(response, "Content-Length").and_then(|v| v.parse().ok()).unwrap_or(0);
        let last_modified: Option<SystemTime> =
            header(response, "Last-Modified").and_then(|v| httpdate::parse_http_date(&v).ok());
        Ok(Some(Head { size, sha256: header(response, "x-ms-meta-sha256"), last_modified }))
    }

    fn list(&self, prefix: &str) -> anyhow::Result<Vec<Listed>> {
        let container = format!("/{}", self.container);
        let mut listed = Vec::new();
        let mut marker = String::new();
        loop {
            let mut request = Request::new(Method::GET, &container).query("restype", "container").query("comp", "list");
            if !prefix.is_empty() {
                request = request.query("prefix", prefix);
            }
            if !marker.is_empty() {
                request = request.query("marker", &marker);
            }
            let answer = self.call("ListBlobs", prefix, request, 200, &[])?.context("ListBlobs tolerates no error")?;
            let xml = answer.response.text().context("reading a blob listing")?;
            for blob in blocks(&xml, "Blob") {
                let size = element(blob, "Content-Length").and_then(|v| v.parse().ok()).unwrap_or(0);
                listed.extend(element(blob, "Name").map(|key| Listed { key, size }));
            }
            marker = element(&xml, "NextMarker").unwrap_or_default();
            if marker.is_empty() {
                return Ok(listed);
            }
        }
    }

    fn upload_file(&self, key: &str, path: &Path, sha256: &str, multipart: Multipart) -> anyhow::Result<()> {
        let size = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len();
        if size > multipart.threshold {
            return self.put_in_blocks(key, path, size, sha256, multipart.part_size);
        }
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        self.put_blob(key, bytes, sha256, false).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_into_container_and_prefix() {
        let url = AzureUrl::parse("az://models/team/prod/").unwrap();
        assert_eq!((url.container.as_str(), url.prefix.as_str()), ("models", "team/prod"));
        assert_eq!(AzureUrl::parse("azure://my-models").unwrap().prefix, "");
        for bad in ["az://", "az://ab/x", "az://Models/x", "az://a--b/x", "az://-ab/x", "s3://models"] {
            assert!(AzureUrl::parse(bad).unwrap_err().to_string().contains("not an Azure Blob location"), "{bad}");
        }
    }
}
