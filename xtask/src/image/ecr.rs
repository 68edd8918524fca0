//! Pushing to Amazon ECR: credentials from GetAuthorizationToken on every push (no aws CLI, no
//! stored password), the tag an immutable repository needs, and the stand-in registry the
//! tests use for ECR's registry host.

use crate::aws::explain;

use super::registry::Credentials;

/// Stands in for ECR's registry host when set (`host:port`): the tests push to a local
/// registry that takes the credentials ECR's GetAuthorizationToken hands out.
pub const REGISTRY_OVERRIDE: &str = "NETSEC_ECR_REGISTRY";

/// The region of an ECR registry host (`<account>.dkr.ecr.<region>.amazonaws.com`), or None
/// for any other registry.
pub fn region(host: &str) -> Option<&str> {
    let rest = host.strip_suffix(".amazonaws.com")?;
    let (account, region) = rest.split_once(".dkr.ecr.")?;
    let valid = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) && !region.contains('.');
    valid.then_some(region)
}

/// Registry credentials from a fresh ECR authorization token (valid for 12 hours).
pub async fn credentials(ecr: &aws_sdk_ecr::Client) -> anyhow::Result<Credentials> {
    let answer =
        ecr.get_authorization_token().send().await.map_err(|e| explain(e, "ecr:GetAuthorizationToken", "*"))?;
    let token = answer
        .authorization_data()
        .first()
        .and_then(|d| d.authorization_token())
        .ok_or_else(|| anyhow::anyhow!("ECR gave no authorization token"))?;
    Credentials::from_token(token)
}

/// Where a push to the ECR `repository` (`host/path`) really goes: the same, unless
/// NETSEC_ECR_REGISTRY names a stand-in host.
pub fn target(repository: &str) -> String {
    match std::env::var(REGISTRY_OVERRIDE).ok().filter(|v| !v.is_empty()) {
        Some(host) => {
            let path = repository.split_once('/').map_or(repository, |(_, path)| path);
            eprintln!("xtask: {REGISTRY_OVERRIDE}={host}: pushing there instead of ECR's registry host");
            format!("{host}/{path}")
        }
        None => repository.to_string(),
    }
}

/// The one tag an image gets in a repository whose tags are immutable: `<prefix>-<inputs>`
/// (the first 12 hex digits of its inputs digest). `latest` could never move; a rebuild of the
/// same inputs is the same image, so it has the same tag and is not pushed again.
pub fn immutable_tag(prefix: &str, inputs: &str) -> String {
    let short = inputs.trim_start_matches("sha256:").chars().take(12).collect::<String>();
    format!("{prefix}-{short}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ecr_hosts_have_a_region() {
        assert_eq!(region("123456789012.dkr.ecr.eu-west-1.amazonaws.com"), Some("eu-west-1"));
        assert_eq!(region("127.0.0.1:5000"), None);
        assert_eq!(region("ghcr.io"), None);
        assert_eq!(region("12345.dkr.ecr.eu-west-1.amazonaws.com"), None);
    }

    #[test]
    fn the_immutable_tag_joins_the_prefix_and_the_short_inputs_digest() {
        assert_eq!(immutable_tag("abc1234", "sha256:0123456789abcdef0123"), "abc1234-0123456789ab");
    }
}
