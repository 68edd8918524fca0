//! The Docker engine: connecting (DOCKER_HOST, API version negotiated), building from the
//! in-memory context with the engine's stream as progress, and tagging.

use std::collections::HashMap;
use std::io::Write;

use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine as _;
use bollard::query_parameters::{BuildImageOptionsBuilder, TagImageOptionsBuilder};
use bollard::{BollardRequest, Docker};
use futures_util::StreamExt;

use super::context;

pub struct Engine {
    pub docker: Docker,
}

impl Engine {
    /// The engine `DOCKER_HOST` names (the local socket otherwise), at the highest API version
    /// both sides speak.
    pub async fn connect() -> anyhow::Result<Engine> {
        let host = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
        let docker = Docker::connect_with_defaults()
            .map_err(|e| anyhow::anyhow!("cannot use the Docker engine at {host}: {e}"))?
            .with_request_modifier(url_safe_registry_auth);
        let docker = docker.negotiate_version().await.map_err(|e| {
            anyhow::anyhow!("the Docker engine at {host} does not answer ({e}); start it or set DOCKER_HOST")
        })?;
        Ok(Engine { docker })
    }

    /// Builds the image from the packed context, tags it with every name, returns its id.
    pub async fn build(
        &self,
        names: &ImageNames,
        context: context::Context,
        build_args: &HashMap<String, String>,
        no_cache: bool,
    ) -> anyhow::Result<String> {
        let tar = context.tar;
        eprintln!("xtask: sending a build context of {:.1} MB ({})", tar.len() as f64 / 1e6, context.inputs);
        let options = BuildImageOptionsBuilder::default()
            .dockerfile("Dockerfile")
            .t(&names.sha_tagged())
            .buildargs(build_args)
            .rm(true)
            .forcerm(true)
            .nocache(no_cache)
            .build();
        let mut stream = self.docker.build_image(options, None, Some(bollard::body_full(tar.into())));
        let mut id = None;
        while let Some(info) = stream.next().await {
            // The first errorDetail (bollard turns it into an error) ends the build.
            let info = info.map_err(|e| anyhow::anyhow!("the image build failed: {}", stream_error(e)))?;
            if let Some(text) = &info.stream {
                eprint!("{text}");
                let _ = std::io::stderr().flush();
            }
            if let Some(aux_id) = info.aux.and_then(|aux| aux.id) {
                id = Some(aux_id);
            }
        }
        let id = match id {
            Some(id) => id,
            None => self.image_id(&names.sha_tagged()).await?,
        };
        for name in &names.all()[1..] {
            self.tag(&id, name).await?;
        }
        Ok(id)
    }

    /// Tags the image `source` (an id or a name) as `target` (`repository:tag`).
    pub async fn tag(&self, source: &str, target: &str) -> anyhow::Result<()> {
        let (repo, tag) = split_tag(target);
        let options = TagImageOptionsBuilder::default().repo(repo).tag(tag).build();
        self.docker.tag_image(source, Some(options)).await.map_err(|e| anyhow::anyhow!("cannot tag {target}: {e}"))
    }

    /// The digest of the inputs the image was built from (its `netsec.inputs` label), or None
    /// for an image built without it (a plain `docker build .`).
    pub async fn inputs(&self, name: &str) -> anyhow::Result<Option<String>> {
        let image = self.docker.inspect_image(name).await.map_err(|e| anyhow::anyhow!("no image {name}: {e}"))?;
        let labels = image.config.and_then(|c| c.labels).unwrap_or_default();
        Ok(labels.get(context::INPUTS_LABEL).filter(|v| v.starts_with("sha256:")).cloned())
    }

    pub async fn image_id(&self, name: &str) -> anyhow::Result<String> {
        let image = self.docker.inspect_image(name).await.map_err(|e| anyhow::anyhow!("no image {name}: {e}"))?;
        image.id.ok_or_else(|| anyhow::anyhow!("the engine gave no id for {name}"))
    }
}

/// The message of an engine error, without bollard's wrapping.
pub fn stream_error(error: bollard::errors::Error) -> String {
    match error {
        bollard::errors::Error::DockerStreamError { error } => error,
        bollard::errors::Error::DockerResponseServerError { message, .. } => message,
        other => other.to_string(),
    }
}

/// `repository:tag` split at the tag's colon (a registry's port colon comes before a `/`).
pub fn split_tag(name: &str) -> (&str, &str) {
    match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (name, "latest"),
    }
}

/// The names an image gets: `NAME:<sha>[-dirty]`, `NAME:latest`, and an explicit tag.
pub struct ImageNames {
    pub repository: String,
    pub sha_tag: String,
    pub extra_tag: Option<String>,
}

impl ImageNames {
    pub fn new(tag: &str) -> anyhow::Result<ImageNames> {
        let (repository, extra) = match tag.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag)),
            _ => (tag, None),
        };
        anyhow::ensure!(!repository.is_empty(), "--tag {tag:?} names no repository");
        let revision = context::git_revision()?;
        let extra_tag = extra.filter(|t| *t != "latest" && *t != revision.short).map(str::to_string);
        Ok(ImageNames { repository: repository.into(), sha_tag: revision.short, extra_tag })
    }

    pub fn sha_tagged(&self) -> String {
        format!("{}:{}", self.repository, self.sha_tag)
    }

    /// The tags pushed: the sha and `latest` (an explicit tag too).
    pub fn tags(&self) -> Vec<String> {
        let mut tags = vec![self.sha_tag.clone(), "latest".to_string()];
        tags.extend(self.extra_tag.clone());
        tags
    }

    /// Every full name, the sha one first.
    pub fn all(&self) -> Vec<String> {
        self.tags().iter().map(|tag| format!("{}:{tag}", self.repository)).collect()
    }
}

/// bollard encodes X-Registry-Auth in standard base64, but the engine decodes it as URL-safe
/// base64 and, when that fails (a `+` or `/` in the encoding), pushes and pulls with no
/// credentials at all. Every request's header is re-encoded before it leaves.
pub fn url_safe_registry_auth(mut request: BollardRequest) -> BollardRequest {
    let value = request.headers().get("X-Registry-Auth").and_then(|v| STANDARD.decode(v.as_bytes()).ok());
    if let Some(json) = value {
        let encoded = http::HeaderValue::from_str(&URL_SAFE.encode(json)).expect("base64 is a valid header value");
        request.headers_mut().insert("X-Registry-Auth", encoded);
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_split_after_a_registry_port() {
        assert_eq!(split_tag("127.0.0.1:5000/netsec:abc"), ("127.0.0.1:5000/netsec", "abc"));
        assert_eq!(split_tag("127.0.0.1:5000/netsec"), ("127.0.0.1:5000/netsec", "latest"));
        assert_eq!(split_tag("netsec"), ("netsec", "latest"));
    }

    #[test]
    fn the_registry_auth_header_is_re_encoded_url_safe() {
        let json = br#"{"username":"AWS","password":"6y6tdvvz?4y>u>zq?h"}"#;
        let standard = STANDARD.encode(json);
        assert!(standard.contains('+') && standard.contains('/'), "{standard}");
        let request = http::Request::builder()
            .header("X-Registry-Auth", &standard)
            .body(bollard::body_full(Default::default()))
            .unwrap();
        let header = url_safe_registry_auth(request).headers()["X-Registry-Auth"].to_str().unwrap().to_string();
        assert!(!header.contains('+') && !header.contains('/'), "{header}");
        assert_eq!(URL_SAFE.decode(header).unwrap(), json);
    }
}
