//! What was deployed, newest last: an SSM parameter per environment, so that `status`,
//! `rollback --to` and "nothing changed" work from any machine, not only the one that deployed.

use aws_sdk_ssm::types::ParameterType;
use serde::{Deserialize, Serialize};

use super::environment::Environment;
use crate::aws::{explain, Aws};

/// Entries kept: a standard parameter holds at most 4 KB.
const KEPT: usize = 12;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    /// The reference the runner pulled: `<repository uri>@sha256:…`.
    pub image: String,
    /// The local image id (the config digest, new with every build).
    pub image_id: String,
    /// The digest of the inputs the image was built from (its `netsec.inputs` label), empty
    /// for an image deployed by digest. Records written before it had `content`, a digest of
    /// the engine's layer ids, which is ignored.
    #[serde(default)]
    pub inputs: String,
    /// The tag pushed (`<git sha>-<inputs digest prefix>`).
    pub tag: String,
    /// Seconds since the Unix epoch.
    pub at: u64,
    pub by: String,
    /// `deploy` or `rollback`.
    pub action: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct History {
    pub deployments: Vec<Deployment>,
}

fn parameter(environment: &Environment) -> String {
    environment.parameter("deploy/history")
}

impl History {
    pub async fn read(aws: &Aws, environment: &Environment) -> anyhow::Result<History> {
        let name = parameter(environment);
        match aws.parameter(&name).await? {
            Some(value) => serde_json::from_str(&value)
                .map_err(|e| anyhow::anyhow!("the deploy history {name} is not readable: {e}")),
            None => Ok(History::default()),
        }
    }

    /// What the runner serves, as far as the last successful deploy or rollback knows.
    pub fn live(&self) -> Option<&Deployment> {
        self.deployments.last()
    }

    /// The deployment `version` names: a tag, a digest (`sha256:…`, or its start) or a whole
    /// image reference; without one, the deployment before the live one.
    pub fn find(&self, version: Option<&str>) -> anyhow::Result<&Deployment> {
        let Some(version) = version else {
            let live = self.live().map(|d| d.image.as_str());
            return self
                .deployments
                .iter()
                .rev()
                .find(|d| Some(d.image.as_str()) != live)
                .ok_or_else(|| anyhow::anyhow!("there is no earlier deployment to roll back to"));
        };
        let digest = |d: &Deployment| d.image.rsplit('@').next().unwrap_or_default().to_string();
        self.deployments
            .iter()
            .rev()
            .find(|d| {
                d.tag == version
                    || d.image == version
                    || digest(d).trim_start_matches("sha256:").starts_with(version.trim_start_matches("sha256:"))
            })
            .ok_or_else(|| {
                anyhow::anyhow!("no deployment {version:?} in the history (`cargo xtask status` lists them)")
            })
    }

    pub async fn record(mut self, aws: &Aws, environment: &Environment, deployment: Deployment) -> anyhow::Result<()> {
        self.deployments.push(deployment);
        let excess = self.deployments.len().saturating_sub(KEPT);
        self.deployments.drain(..excess);
        let name = parameter(environment);
        aws.ssm
            .put_parameter()
            .name(&name)
            .r#type(ParameterType::String)
            .value(serde_json::to_string(&self)?)
            .overwrite(true)
            .send()
            .await
            .map_err(|e| explain(e, "ssm:PutParameter", &name))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(image: &str, tag: &str) -> Deployment {
        Deployment {
            image: image.into(),
            image_id: String::new(),
            inputs: String::new(),
            tag: tag.into(),
            at: 0,
            by: String::new(),
            action: "deploy".into(),
        }
    }

    #[test]
    fn versions_are_found_by_tag_digest_or_reference() {
        let history =
            History { deployments: vec![deployment("r@sha256:aaa111", "one"), deployment("r@sha256:bbb222", "two")] };
        assert_eq!(history.find(None).unwrap().tag, "one", "the one before the live one");
        assert_eq!(history.find(Some("two")).unwrap().tag, "two");
        assert_eq!(history.find(Some("sha256:aaa")).unwrap().tag, "one");
        assert_eq!(history.find(Some("bbb2")).unwrap().tag, "two");
        assert!(history.find(Some("ccc")).is_err());
        assert!(History::default().find(None).is_err());
    }
}
