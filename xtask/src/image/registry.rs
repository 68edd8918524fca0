//! Pushing to a registry with credentials from the environment (never from arguments, never
//! printed): NETSEC_REGISTRY_USER and NETSEC_REGISTRY_PASSWORD, or NETSEC_REGISTRY_TOKEN, the
//! `authorizationToken` ECR's GetAuthorizationToken returns (base64 of `AWS:password`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::PushImageOptionsBuilder;
use futures_util::StreamExt;

use super::engine::{stream_error, Engine, ImageNames};

pub struct Credentials {
    pub user: String,
    password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ***)", self.user)
    }
}

impl Credentials {
    /// The registry credentials the environment holds, if any.
    pub fn from_env() -> anyhow::Result<Option<Credentials>> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if let Some(token) = var("NETSEC_REGISTRY_TOKEN") {
            return Credentials::from_token(&token).map(Some).map_err(|_| {
                anyhow::anyhow!("NETSEC_REGISTRY_TOKEN is not a registry token (base64 of user:password, as ECR gives)")
            });
        }
        match (var("NETSEC_REGISTRY_USER"), var("NETSEC_REGISTRY_PASSWORD")) {
            (Some(user), Some(password)) => Ok(Some(Credentials { user, password })),
            (None, None) => Ok(None),
            _ => anyhow::bail!("set both NETSEC_REGISTRY_USER and NETSEC_REGISTRY_PASSWORD (or neither)"),
        }
    }

    /// ECR's `authorizationToken`: base64 of `user:password`.
    pub fn from_token(token: &str) -> anyhow::Result<Credentials> {
        let decoded = STANDARD.decode(token.trim()).ok().and_then(|b| String::from_utf8(b).ok());
        let (user, password) = decoded
            .as_deref()
            .and_then(|t| t.split_once(':'))
            .ok_or_else(|| anyhow::anyhow!("not a registry token (base64 of user:password)"))?;
        Ok(Credentials { user: user.into(), password: password.into() })
    }

    fn for_server(&self, server: &str) -> DockerCredentials {
        DockerCredentials {
            username: Some(self.user.clone()),
            password: Some(self.password.clone()),
            serveraddress: Some(server.to_string()),
            ..Default::default()
        }
    }
}

pub struct Pushed {
    pub reference: String,
    pub digest: String,
    /// The registry had the tag already, so nothing was sent.
    pub already_there: bool,
}

impl std::fmt::Display for Pushed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.already_there {
            false => write!(f, "pushed {} digest {}", self.reference, self.digest),
            true => {
                write!(f, "unchanged {} digest {} (the registry has these inputs already)", self.reference, self.digest)
            }
        }
    }
}

/// The repository an image goes to: REGISTRY/NAME, or REGISTRY itself when it has a path.
pub fn repository(registry: &str, names: &ImageNames) -> String {
    let registry = registry.trim_end_matches('/');
    if registry.contains('/') {
        return registry.to_string();
    }
    let name = names.repository.rsplit('/').next().unwrap_or(&names.repository);
    format!("{registry}/{name}")
}

/// Pushes an immutable tag (one that names one set of inputs) unless the registry has it: then
/// the image there was built from the same inputs, and its digest is the answer. Asking costs
/// one manifest request; pushing again would be refused by an immutable repository.
pub async fn push_once(
    engine: &Engine,
    source: &str,
    repository: &str,
    tag: &str,
    credentials: Option<&Credentials>,
) -> anyhow::Result<Pushed> {
    let reference = format!("{repository}:{tag}");
    let server = repository.split('/').next().unwrap_or(repository);
    let found = engine.docker.inspect_registry_image(&reference, credentials.map(|c| c.for_server(server))).await;
    match found.ok().and_then(|found| found.descriptor.digest) {
        Some(digest) => Ok(Pushed { reference, digest, already_there: true }),
        // Not there (or the registry would not say): push, which reports any real failure.
        None => push_tag(engine, source, repository, tag, credentials).await,
    }
}

/// Tags the local image `source` as `repository:tag` and pushes that tag.
pub async fn push_tag(
    engine: &Engine,
    source: &str,
    repository: &str,
    tag: &str,
    credentials: Option<&Credentials>,
) -> anyhow::Result<Pushed> {
    let server = repository.split('/').next().unwrap_or(repository).to_string();
    let reference = format!("{repository}:{tag}");
    engine.tag(source, &reference).await?;
    eprintln!("xtask: pushing {reference}");
    let options = PushImageOptionsBuilder::default().tag(tag).build();
    let mut stream = engine.docker.push_image(repository, Some(options), credentials.map(|c| c.for_server(&server)));
    let mut digest = None;
    while let Some(info) = stream.next().await {
        let info = info.map_err(|e| refused(&reference, &server, credentials, stream_error(e)))?;
        if let Some(status) = info.status {
            digest = digest.or_else(|| {
                status.split("digest: ").nth(1).and_then(|d| d.split_whitespace().next()).map(str::to_string)
            });
        }
    }
    let digest = digest.ok_or_else(|| anyhow::anyhow!("the engine reported no digest for {reference}"))?;
    Ok(Pushed { reference, digest, already_there: false })
}

/// A push failure, with what to check when the registry refused the credentials.
fn refused(reference: &str, server: &str, credentials: Option<&Credentials>, message: String) -> anyhow::Error {
    let lower = message.to_lowercase();
    // "unauthorized: authentication required", "no basic auth credentials", "denied: …"
    if !(lower.contains("auth") || lower.contains("denied")) {
        return anyhow::anyhow!("pushing {reference} failed: {message}");
    }
    let hint = match credentials {
        Some(c) => format!(
            "the registry refused user {:?}: check NETSEC_REGISTRY_USER and NETSEC_REGISTRY_PASSWORD \
             (for ECR: user AWS and a fresh token, or NETSEC_REGISTRY_TOKEN)",
            c.user
        ),
        None => "no credentials were given: set NETSEC_REGISTRY_USER and NETSEC_REGISTRY_PASSWORD".to_string(),
    };
    anyhow::anyhow!("pushing {reference} to {server} was refused ({message}); {hint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> ImageNames {
        ImageNames { repository: "netsec".into(), sha_tag: "abc".into(), extra_tag: None }
    }

    #[test]
    fn a_registry_host_gets_the_image_name_a_path_is_kept() {
        assert_eq!(repository("127.0.0.1:5000", &names()), "127.0.0.1:5000/netsec");
        assert_eq!(
            repository("1.dkr.ecr.us-east-1.amazonaws.com/netsec-prod/", &names()),
            "1.dkr.ecr.us-east-1.amazonaws.com/netsec-prod"
        );
    }

    #[test]
    fn credentials_never_show_their_password() {
        let credentials = Credentials { user: "AWS".into(), password: "s3cret".into() };
        assert!(!format!("{credentials:?}").contains("s3cret"));
        let error = refused("r:t", "host", Some(&credentials), "unauthorized: authentication required".into());
        assert!(error.to_string().contains("NETSEC_REGISTRY_PASSWORD") && !error.to_string().contains("s3cret"));
    }
}
