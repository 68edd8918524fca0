//! What the S3 model store and the artifact upload share: `s3://` locations, the client
//! (credentials by the AWS default chain, `AWS_ENDPOINT_URL` honoured, retries with
//! backoff), the few object operations they need, and errors that say what to do.
//!
//! The callers are synchronous; [`S3`] owns a small runtime and blocks on it.

use std::time::SystemTime;

use aws_config::retry::RetryConfig;
use aws_config::BehaviorVersion;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

use crate::error::InputError;
use crate::store::objects::{Head, Listed};

/// Attempts per request (the first and the retries, with exponential backoff and jitter)
/// unless `AWS_MAX_ATTEMPTS` says otherwise.
const MAX_ATTEMPTS: u32 = 5;
/// The region when the default chain finds none (S3 needs one to sign requests; a local
/// stand-in accepts any).
const FALLBACK_REGION: &str = "us-east-1";

/// `s3://bucket/prefix`, the prefix without slashes at either end (possibly empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    pub prefix: String,
}

impl S3Url {
    pub fn parse(location: &str) -> Result<S3Url, InputError> {
        let rest = location.strip_prefix("s3://").unwrap_or_default();
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
        if !location.starts_with("s3://") || bucket.len() < 3 || bucket.len() > 63 || !bucket.chars().all(valid) {
            return Err(InputError::new(format!("`{location}` is not an S3 location")).hint(
                "write s3://bucket/prefix, with a bucket name of 3 to 63 lowercase letters, digits, `-` or `.`",
            ));
        }
        Ok(S3Url { bucket: bucket.into(), prefix: prefix.trim_matches('/').into() })
    }

    /// The key of `name` under the prefix.
    pub fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    /// The URL of `name` under the prefix, for messages.
    pub fn url(&self, name: &str) -> String {
        format!("s3://{}/{}", self.bucket, self.key(name))
    }
}

impl std::fmt::Display for S3Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

/// A client and the runtime it runs on.
pub struct S3 {
    runtime: tokio::runtime::Runtime,
    pub client: Client,
    /// Where requests go, for messages ("AWS" or the endpoint override).
    pub endpoint: String,
}

impl S3 {
    /// A client configured by the AWS default chain (environment, profile, web identity,
    /// container and instance roles), over rustls with ring.
    pub fn connect() -> anyhow::Result<S3> {
        S3::connect_to(None)
    }

    /// As [`S3::connect`], with the endpoint given rather than taken from `AWS_ENDPOINT_URL`.
    pub fn connect_to(endpoint: Option<&str>) -> anyhow::Result<S3> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let https =
            aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(CryptoMode::Ring)).build_https();
        // The loader's own region chain, which runs on the client given here.
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(https);
        if let Some(endpoint) = endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if std::env::var_os("AWS_MAX_ATTEMPTS").is_none() {
            loader = loader.retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS));
        }
        let shared = runtime.block_on(loader.load());
        let endpoint = shared.endpoint_url().map_or_else(|| "AWS".to_string(), str::to_string);
        // A custom endpoint (a local stand-in) has no per-bucket host names.
        let mut config = aws_sdk_s3::config::Builder::from(&shared).force_path_style(shared.endpoint_url().is_some());
        if shared.region().is_none() {
            config = config.region(aws_config::Region::new(FALLBACK_REGION));
        }
        Ok(S3 { runtime, client: Client::from_conf(config.build()), endpoint })
    }

    pub fn block_on<T>(&self, work: impl std::future::Future<Output = T>) -> T {
        self.runtime.block_on(work)
    }

    /// An object's bytes, None when there is no such key.
    pub async fn get(&self, bucket: &str, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let response = match self.client.get_object().bucket(bucket).key(key).send().await {
            Ok(response) => response,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(self.explain(e, "GetObject", bucket, key)),
        };
        let body = response.body.collect().await.map_err(|e| {
            anyhow::anyhow!("reading s3://{bucket}/{key} from {}: {}", self.endpoint, DisplayErrorContext(&e))
        })?;
        Ok(Some(body.into_bytes().to_vec()))
    }

    /// Writes an object whole (S3 replaces objects atomically), with its sha256 as metadata.
    pub async fn put(&self, bucket: &str, key: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
        let sha256 = crate::store::sha256_hex(&bytes);
        let request = self.client.put_object().bucket(bucket).key(key).metadata("sha256", sha256);
        request.body(ByteStream::from(bytes)).send().await.map_err(|e| self.explain(e, "PutObject", bucket, key))?;
        Ok(())
    }

    /// Writes an object only if there is none (a conditional write, `If-None-Match: *`);
    /// false when one exists.
    pub async fn put_if_absent(&self, bucket: &str, key: &str, bytes: Vec<u8>) -> anyhow::Result<bool> {
        let request = self.client.put_object().bucket(bucket).key(key).if_none_match("*");
        match request.body(ByteStream::from(bytes)).send().await {
            Ok(_) => Ok(true),
            // 412 when the object exists; 409 when a concurrent conditional write is racing.
            Err(e) if matches!(status(&e), Some(412 | 409)) => Ok(false),
            Err(e) => Err(self.explain(e, "PutObject", bucket, key)),
        }
    }

    pub async fn delete(&self, bucket: &str, key: &str) -> anyhow::Result<()> {
        let request = self.client.delete_object().bucket(bucket).key(key);
        request.send().await.map_err(|e| self.explain(e, "DeleteObject", bucket, key))?;
        Ok(())
    }

    /// What HEAD says about an object, None when there is no such key.
    pub async fn head(&self, bucket: &str, key: &str) -> anyhow::Result<Option<Head>> {
        let response = match self.client.head_object().bucket(bucket).key(key).send().await {
            Ok(response) => response,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => return Ok(None),
            Err(e) => return Err(self.explain(e, "HeadObject", bucket, key)),
        };
        Ok(Some(Head {
            size: response.content_length().unwrap_or(0).max(0) as u64,
            sha256: response.metadata().and_then(|m| m.get("sha256")).cloned(),
            last_modified: response.last_modified().and_then(|t| SystemTime::try_from(*t).ok()),
        }))
    }

    /// Every object under `prefix` (which should end with `/`), following continuation.
    pub async fn list(&self, bucket: &str, prefix: &str) -> anyhow::Result<Vec<Listed>> {
        let mut pages = self.client.list_objects_v2().bucket(bucket).prefix(prefix).into_paginator().send();
        let mut objects = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.explain(e, "ListObjectsV2", bucket, prefix))?;
            objects.extend(page.contents().iter().map(|o| Listed {
                key: o.key().unwrap_or_default().to_string(),
                size: o.size().unwrap_or(0).max(0) as u64,
            }));
        }
        Ok(objects)
    }

    /// An SDK error as a message naming the operation, the object and what to do.
    pub fn explain<E>(&self, error: SdkError<E>, operation: &str, bucket: &str, key: &str) -> anyhow::Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let object = format!("s3://{bucket}/{key}");
        let code = error.as_service_error().and_then(|e| e.code()).map(str::to_string);
        match (code.as_deref(), status(&error)) {
            (Some("NoSuchBucket"), _) => InputError::new(format!(
                "the bucket `{bucket}` does not exist ({operation} {object} at {})",
                self.endpoint
            ))
            .hint("create the bucket, or check its name and the region (AWS_REGION)")
            .into(),
            (Some("AccessDenied" | "AllAccessDisabled"), _) | (None, Some(403)) => {
                InputError::new(format!("access denied: {operation} {object} at {}", self.endpoint))
                    .hint(format!(
                        "the credentials the AWS default chain found (AWS_ACCESS_KEY_ID, AWS_PROFILE, a role) need the \
                         s3:{operation} permission on {object}"
                    ))
                    .into()
            }
            (Some(code @ ("InvalidAccessKeyId" | "SignatureDoesNotMatch" | "ExpiredToken" | "InvalidToken")), _) => {
                InputError::new(format!(
                    "S3 refused the credentials ({code}) for {operation} {object} at {}",
                    self.endpoint
                ))
                .hint("check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the profile) the AWS default chain uses")
                .into()
            }
            (Some(code), _) => {
                let message = error.as_service_error().and_then(|e| e.message()).unwrap_or_default().to_string();
                anyhow::anyhow!("S3 {operation} {object} at {} failed: {code}: {message}", self.endpoint)
            }
            (None, _) => {
                let kind = match &error {
                    SdkError::TimeoutError(_) => "timed out",
                    SdkError::DispatchFailure(_) => "could not be sent",
                    _ => "failed",
                };
                anyhow::anyhow!(
                    "S3 {operation} {object} {kind} at {} after retries with backoff: {}\n  \
                     hint: check the network, AWS_ENDPOINT_URL and the AWS credentials; AWS_MAX_ATTEMPTS sets the attempts",
                    self.endpoint,
                    DisplayErrorContext(&error)
                )
            }
        }
    }
}

/// The HTTP status of an error response, if there was a response.
fn status<E>(error: &SdkError<E>) -> Option<u16> {
    error.raw_response().map(|r| r.status().as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_into_bucket_and_prefix() {
        let url = S3Url::parse("s3://my-bucket/models/prod/").unwrap();
        assert_eq!((url.bucket.as_str(), url.prefix.as_str()), ("my-bucket", "models/prod"));
        assert_eq!(url.key("index.json"), "models/prod/index.json");
        assert_eq!(S3Url::parse("s3://my-bucket").unwrap().key("current"), "current");
        for bad in ["s3://", "s3://B/x", "s3://a/x", "gs://bucket/x"] {
            assert!(S3Url::parse(bad).unwrap_err().to_string().contains("not an S3 location"), "{bad}");
        }
    }
}
