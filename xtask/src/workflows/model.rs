//! A small typed model of GitHub Actions' workflow syntax: only what the generated workflows
//! use. Field order is output order; empty fields are left out, so the YAML reads like a
//! hand-written file.

use serde::{Serialize, Serializer};

/// A map that keeps its insertion order when serialised (job ids, env, with, …).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ordered<V>(pub Vec<(String, V)>);

impl<V> Ordered<V> {
    pub fn new() -> Self {
        Ordered(Vec::new())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds an entry (builder style); a key given twice is a bug in the generator.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<V>) -> Self {
        let key = key.into();
        assert!(self.0.iter().all(|(k, _)| *k != key), "{key} given twice");
        self.0.push((key, value.into()));
        self
    }
}

impl<V: Serialize> Serialize for Ordered<V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// Builds an [`Ordered`] of strings from pairs.
pub fn map<const N: usize>(pairs: [(&str, &str); N]) -> Ordered<String> {
    pairs.into_iter().fold(Ordered::new(), |map, (k, v)| map.with(k, v))
}

#[derive(Debug, Serialize)]
pub struct Workflow {
    pub name: String,
    pub on: On,
    /// Always written; empty is `{}`: no permission at all unless a job asks for one.
    pub permissions: Ordered<String>,
    pub concurrency: Concurrency,
    #[serde(skip_serializing_if = "Ordered::is_empty")]
    pub env: Ordered<String>,
    pub jobs: Ordered<Job>,
}

/// The events a workflow runs on.
#[derive(Debug, Default, Serialize)]
pub struct On {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push: Option<Branches>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<Branches>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow_dispatch: Option<Empty>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub schedule: Vec<Cron>,
}

/// An event filter; no branches means every branch (`{}`).
#[derive(Debug, Default, Serialize)]
pub struct Branches {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub branches: Vec<String>,
}

/// `{}`: an event with no settings.
#[derive(Debug, Serialize)]
pub struct Empty {}

#[derive(Debug, Serialize)]
pub struct Cron {
    pub cron: String,
}

#[derive(Debug, Serialize)]
pub struct Concurrency {
    pub group: String,
    #[serde(rename = "cancel-in-progress")]
    pub cancel_in_progress: bool,
}

/// `runs-on`: one label (a GitHub-hosted image) or all of a self-hosted runner's labels.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum RunsOn {
    Label(String),
    Labels(Vec<String>),
}

#[derive(Debug, Serialize)]
pub struct Job {
    pub name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
    #[serde(rename = "runs-on")]
    pub runs_on: RunsOn,
    /// `None` inherits the workflow's permissions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Ordered<String>>,
    /// The GitHub deployment environment (its protection rules, secrets and variables).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(rename = "timeout-minutes")]
    pub timeout_minutes: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
    #[serde(skip_serializing_if = "Ordered::is_empty")]
    pub env: Ordered<String>,
    #[serde(skip_serializing_if = "Ordered::is_empty")]
    pub outputs: Ordered<String>,
    pub steps: Vec<Step>,
}

impl Job {
    /// A job with no permissions, environment, concurrency, env or outputs of its own.
    pub fn new(name: &str, runs_on: RunsOn, timeout_minutes: u32, steps: Vec<Step>) -> Job {
        Job {
            name: name.to_string(),
            needs: Vec::new(),
            runs_on,
            permissions: None,
            environment: None,
            timeout_minutes,
            concurrency: None,
            env: Ordered::new(),
            outputs: Ordered::new(),
            steps,
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Step {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `owner/name@<40-hex sha>`: see [`super::uses`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uses: Option<String>,
    #[serde(skip_serializing_if = "Ordered::is_empty")]
    pub with: Ordered<String>,
    #[serde(skip_serializing_if = "Ordered::is_empty")]
    pub env: Ordered<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
}

impl Step {
    /// A `run:` step (bash).
    pub fn run(name: &str, script: &str) -> Step {
        Step { name: name.to_string(), shell: Some("bash".into()), run: Some(script.to_string()), ..Step::default() }
    }

    /// A step using a pinned action.
    pub fn uses(name: &str, action: &str, with: Ordered<String>) -> Step {
        Step { name: name.to_string(), uses: Some(super::uses(action)), with, ..Step::default() }
    }

    pub fn id(mut self, id: &str) -> Step {
        self.id = Some(id.to_string());
        self
    }

    pub fn env(mut self, env: Ordered<String>) -> Step {
        self.env = env;
        self
    }
}
