//! The GitHub side of a bootstrap, through octocrab: Actions variables (created or updated in
//! place), Actions secrets (sealed with the repository's public key), and a runner
//! registration token. The token comes from GITHUB_TOKEN; GITHUB_API_URL points elsewhere
//! (GitHub Enterprise, or the tests' stand-in).

use octocrab::Octocrab;

use super::sealed;

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Updated,
    Unchanged,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Created => "created",
            Outcome::Updated => "updated",
            Outcome::Unchanged => "unchanged",
        })
    }
}

pub struct GitHub {
    crab: Octocrab,
    owner: String,
    name: String,
}

/// The repository's key for sealing secrets.
pub struct SecretsKey {
    id: String,
    key: String,
}

impl GitHub {
    /// A client for `repo` (`OWNER/NAME`) with the token in GITHUB_TOKEN.
    pub fn connect(repo: &str) -> anyhow::Result<GitHub> {
        let (owner, name) = split_repo(repo)?;
        let token = std::env::var("GITHUB_TOKEN").ok().filter(|t| !t.trim().is_empty()).ok_or_else(|| {
            anyhow::anyhow!(
                "no GitHub token: set GITHUB_TOKEN (a classic token with the `repo` scope, or a fine-grained \
                 one for {repo} with Administration, Secrets and Variables: read and write)"
            )
        })?;
        let mut builder = Octocrab::builder().personal_token(token.trim().to_string());
        if let Some(url) = std::env::var("GITHUB_API_URL").ok().filter(|u| !u.is_empty()) {
            builder = builder.base_uri(url.as_str()).map_err(|e| anyhow::anyhow!("GITHUB_API_URL {url:?}: {e}"))?;
        }
        let crab = builder.build().map_err(|e| anyhow::anyhow!("cannot set up the GitHub client: {e}"))?;
        Ok(GitHub { crab, owner, name })
    }

    pub fn repo(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    /// Fails early when the token is refused, cannot see the repository, or (a classic token,
    /// whose scopes GitHub lists in X-OAuth-Scopes) lacks the `repo` scope.
    pub async fn check_access(&self) -> anyhow::Result<()> {
        let route = format!("/repos/{}/{}", self.owner, self.name);
        let response = self.crab._get(route).await.map_err(|e| self.explain(e, "reading the repository"))?;
        let response =
            octocrab::map_github_error(response).await.map_err(|e| self.explain(e, "reading the repository"))?;
        let scopes = response.headers().get("x-oauth-scopes").and_then(|v| v.to_str().ok());
        if let Some(scopes) = scopes {
            let has_repo = scopes.split(',').any(|s| s.trim() == "repo");
            anyhow::ensure!(
                has_repo,
                "GITHUB_TOKEN has the scopes [{scopes}] but bootstrap needs `repo` (secrets, variables and \
                 runner tokens of {}): make a token with it",
                self.repo()
            );
        }
        Ok(())
    }

    /// Creates the variable, or updates it when its value differs.
    pub async fn set_variable(&self, name: &str, value: &str) -> anyhow::Result<Outcome> {
        let variables = self.crab.repos(&self.owner, &self.name);
        let variables = variables.variables();
        let action = format!("setting the variable {name}");
        match variables.get(name).await {
            Ok(found) if found.value == value => Ok(Outcome::Unchanged),
            Ok(_) => {
                variables.update(name, value).await.map_err(|e| self.explain(e, &action))?;
                Ok(Outcome::Updated)
            }
            Err(e) if status(&e) == Some(404) => {
                variables.create(name, value).await.map_err(|e| self.explain(e, &action))?;
                Ok(Outcome::Created)
            }
            Err(e) => Err(self.explain(e, &action)),
        }
    }

    pub async fn secrets_key(&self) -> anyhow::Result<SecretsKey> {
        let key = self.crab.repos(&self.owner, &self.name).secrets().get_public_key().await;
        let key = key.map_err(|e| self.explain(e, "reading the Actions secrets public key"))?;
        Ok(SecretsKey { id: key.key_id, key: key.key })
    }

    /// Seals `value` with the repository's key and stores it (GitHub cannot say whether a
    /// secret's value changed: it is written every time, in place).
    pub async fn set_secret(&self, key: &SecretsKey, name: &str, value: &str) -> anyhow::Result<Outcome> {
        use octocrab::models::repos::secrets::{CreateRepositorySecret, CreateRepositorySecretResponse};
        let encrypted_value = sealed::seal(&key.key, value.as_bytes())?;
        let secret = CreateRepositorySecret { encrypted_value: &encrypted_value, key_id: &key.id };
        let answer = self.crab.repos(&self.owner, &self.name).secrets().create_or_update_secret(name, &secret).await;
        match answer.map_err(|e| self.explain(e, &format!("setting the secret {name}")))? {
            CreateRepositorySecretResponse::Created => Ok(Outcome::Created),
            CreateRepositorySecretResponse::Updated => Ok(Outcome::Updated),
        }
    }

    /// A token for the runner's `config.sh` (GitHub lets it live one hour).
    pub async fn runner_registration_token(&self) -> anyhow::Result<String> {
        let token = self.crab.actions().create_repo_runner_registration_token(&self.owner, &self.name).await;
        Ok(token.map_err(|e| self.explain(e, "creating a runner registration token"))?.token)
    }

    /// An error GitHub answered, with what to do about it.
    fn explain(&self, error: octocrab::Error, action: &str) -> anyhow::Error {
        let repo = self.repo();
        let octocrab::Error::GitHub { source, .. } = &error else {
            return anyhow::anyhow!("{action} on GitHub ({repo}) failed: {error}");
        };
        let message = &source.message;
        let accepted = source
            .headers
            .as_ref()
            .and_then(|h| h.get("x-accepted-oauth-scopes"))
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(|v| format!(" (this call needs the scopes: {v})"))
            .unwrap_or_default();
        match source.status_code.as_u16() {
            401 => anyhow::anyhow!("GitHub rejected GITHUB_TOKEN ({message}): it is wrong, expired or revoked"),
            403 => anyhow::anyhow!(
                "GitHub refused {action} in {repo} (403: {message}){accepted}: the token needs the `repo` scope \
                 (classic) or Administration, Secrets and Variables: read and write (fine-grained)"
            ),
            404 => anyhow::anyhow!(
                "GitHub answered 404 for {action}: {repo} does not exist or GITHUB_TOKEN cannot see it \
                 (a fine-grained token must be granted this repository)"
            ),
            code => anyhow::anyhow!("{action} in {repo} failed: GitHub answered {code}: {message}"),
        }
    }
}

fn status(error: &octocrab::Error) -> Option<u16> {
    match error {
        octocrab::Error::GitHub { source, .. } => Some(source.status_code.as_u16()),
        _ => None,
    }
}

/// `OWNER/NAME`, each part non-empty and made of GitHub's name characters.
pub fn split_repo(repo: &str) -> anyhow::Result<(String, String)> {
    let valid = |part: &str| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    match repo.split_once('/') {
        Some((owner, name)) if valid(owner) && valid(name) => Ok((owner.to_string(), name.to_string())),
        _ => anyhow::bail!("--repo {repo:?} is not OWNER/NAME"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_are_owner_slash_name() {
        assert_eq!(split_repo("octo/netsec").unwrap(), ("octo".into(), "netsec".into()));
        for bad in ["octo", "octo/", "/netsec", "octo/net/sec", "octo/net sec"] {
            assert!(split_repo(bad).is_err(), "{bad}");
        }
    }
}
