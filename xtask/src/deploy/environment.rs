//! An environment: `infra/<env>.yaml`, what `plan`, `apply` and `deploy` build in AWS.
//!
//! The file says what is wanted; the names of the resources follow from the environment's
//! name (`netsec-<env>-…`) so that two environments in one account never collide, and every
//! resource carries the tag `netsec:env=<env>` by which `destroy` finds them.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The tag every resource of an environment carries.
pub const ENV_TAG: &str = "netsec:env";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// The environment's name: lower-case letters, digits and `-`; the file's name by default.
    #[serde(default)]
    pub name: String,
    /// The AWS region; the AWS default chain's (AWS_REGION, the profile) when absent.
    pub region: Option<String>,
    pub repository: RepositorySpec,
    pub bucket: BucketSpec,
    pub service: ServiceSpec,
    pub runner: RunnerSpec,
    #[serde(default)]
    pub deploy: DeploySpec,
}

/// The ECR repository: scan on push and immutable tags always; the last `keep_images` kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositorySpec {
    pub name: String,
    #[serde(default = "default_keep_images")]
    pub keep_images: u32,
}

/// The S3 bucket for models and artifacts: versioned, encrypted, no public access.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketSpec {
    /// Bucket names are global across AWS accounts: pick one nobody else has.
    pub name: String,
    #[serde(default = "default_models_prefix")]
    pub models_prefix: String,
    #[serde(default = "default_artifacts_prefix")]
    pub artifacts_prefix: String,
}

/// The service on the runner and who may reach it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    #[serde(default = "default_port")]
    pub port: u16,
    /// Networks (CIDR) allowed to the service port; none means nobody from outside.
    #[serde(default)]
    pub allowed_cidrs: Vec<String>,
    /// Networks allowed to SSH (port 22); none (the default) opens no SSH at all.
    #[serde(default)]
    pub ssh_cidrs: Vec<String>,
    /// Seconds a new container has to answer /ready before the update is abandoned.
    #[serde(default = "default_ready_timeout")]
    pub ready_timeout_seconds: u32,
}

/// The EC2 machine that runs the service and the GitHub Actions runner.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunnerSpec {
    #[serde(default = "default_instance_type")]
    pub instance_type: String,
    /// The public SSM parameter naming the AMI (Amazon Linux 2023 by default).
    #[serde(default = "default_ami_parameter")]
    pub ami_parameter: String,
    #[serde(default = "default_volume_gib")]
    pub root_volume_gib: i32,
    /// A subnet id; the default VPC's first default subnet when absent.
    pub subnet: Option<String>,
    /// `OWNER/NAME` of the GitHub repository whose Actions runner this machine becomes.
    pub github_repository: String,
    /// Labels the runner registers with (`self-hosted` and the environment's name are added).
    #[serde(default)]
    pub labels: Vec<String>,
    /// The actions/runner release installed, and its archive's sha256 (linux-x64).
    #[serde(default = "default_runner_version")]
    pub runner_version: String,
    #[serde(default = "default_runner_sha256")]
    pub runner_sha256: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploySpec {
    /// Minutes after which a deploy lock left behind (a killed deploy) may be taken over.
    #[serde(default = "default_lock_minutes")]
    pub lock_minutes: u32,
    /// Seconds to wait for the SSM command on the runner.
    #[serde(default = "default_command_timeout")]
    pub command_timeout_seconds: u32,
}

impl Default for DeploySpec {
    fn default() -> Self {
        DeploySpec { lock_minutes: default_lock_minutes(), command_timeout_seconds: default_command_timeout() }
    }
}

fn default_keep_images() -> u32 {
    20
}
fn default_models_prefix() -> String {
    "models".into()
}
fn default_artifacts_prefix() -> String {
    "artifacts".into()
}
fn default_port() -> u16 {
    8080
}
fn default_ready_timeout() -> u32 {
    60
}
fn default_instance_type() -> String {
    "t3.small".into()
}
fn default_ami_parameter() -> String {
    "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64".into()
}
fn default_volume_gib() -> i32 {
    20
}
fn default_runner_version() -> String {
    "2.321.0".into()
}
fn default_runner_sha256() -> String {
    "ba46ba7ce3a4d7236b16fbe44419fb453bc08f866b24f04d549ec89f1722a29e".into()
}
fn default_lock_minutes() -> u32 {
    30
}
fn default_command_timeout() -> u32 {
    600
}

impl Environment {
    /// `--env E`: `infra/E.yaml`, or a path to a YAML file.
    pub fn load(env: &str) -> anyhow::Result<Environment> {
        let path = Self::path(env);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("cannot read the environment file {}: {e}", path.display()))?;
        let mut environment: Environment = serde_yaml::from_str(&text).map_err(|e| {
            let at = e.location().map(|l| format!(" (line {}, column {})", l.line(), l.column())).unwrap_or_default();
            anyhow::anyhow!("{} is not a valid environment file{at}: {e}", path.display())
        })?;
        if environment.name.is_empty() {
            environment.name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
        }
        environment.validate().map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(environment)
    }

    fn path(env: &str) -> PathBuf {
        let given = Path::new(env);
        if given.extension().is_some() || env.contains('/') {
            return given.to_path_buf();
        }
        crate::project_root().join("infra").join(format!("{env}.yaml"))
    }

    fn validate(&self) -> anyhow::Result<()> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 20
            && self.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        anyhow::ensure!(name_ok, "the environment name {:?} must be 1–20 lower-case letters, digits or `-`", self.name);
        for cidr in self.service.allowed_cidrs.iter().chain(&self.service.ssh_cidrs) {
            check_cidr(cidr)?;
        }
        let (owner, repo) = self.runner.github_repository.split_once('/').unwrap_or_default();
        anyhow::ensure!(
            !owner.is_empty() && !repo.is_empty() && !repo.contains('/'),
            "runner.github_repository {:?} must be OWNER/NAME",
            self.runner.github_repository
        );
        anyhow::ensure!(self.repository.keep_images >= 1, "repository.keep_images must be at least 1");
        anyhow::ensure!(
            self.runner.root_volume_gib >= 8,
            "runner.root_volume_gib must be at least 8 (the AMI's own size)"
        );
        Ok(())
    }

    /// `netsec-<env>-<what>`: the name of the environment's IAM role, group, instance, ….
    pub fn resource_name(&self, what: &str) -> String {
        format!("netsec-{}-{what}", self.name)
    }

    /// Where the environment keeps its deploy state in SSM Parameter Store.
    pub fn parameter(&self, what: &str) -> String {
        format!("/netsec/{}/{what}", self.name)
    }

    /// The role GitHub Actions deploys with (made by `cargo xtask bootstrap`, removed by
    /// `destroy`): `netsec-<env>-deploy`.
    pub fn deploy_role(&self) -> String {
        self.resource_name("deploy")
    }

    /// The runner's labels: `self-hosted`, `netsec-<env>` and the configured ones.
    pub fn runner_labels(&self) -> Vec<String> {
        let mut labels = vec!["self-hosted".to_string(), self.resource_name("runner")];
        labels.extend(self.runner.labels.iter().filter(|l| !labels.contains(l)).cloned().collect::<Vec<_>>());
        labels
    }
}

/// An IPv4 CIDR block, e.g. `203.0.113.0/24`.
fn check_cidr(cidr: &str) -> anyhow::Result<()> {
    let (address, bits) = cidr.split_once('/').unwrap_or((cidr, ""));
    let valid = address.parse::<std::net::Ipv4Addr>().is_ok() && bits.parse::<u8>().is_ok_and(|b| b <= 32);
    anyhow::ensure!(valid, "{cidr:?} is not an IPv4 CIDR block such as 203.0.113.0/24");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worked_example_loads() {
        let dev = Environment::load("dev").unwrap();
        assert_eq!(dev.name, "dev");
        assert!(dev.service.ssh_cidrs.is_empty(), "the example opens no SSH");
        assert!(!dev.service.allowed_cidrs.iter().any(|c| c == "0.0.0.0/0"));
        assert_eq!(dev.resource_name("runner"), "netsec-dev-runner");
        assert_eq!(dev.runner_labels()[..2], ["self-hosted".to_string(), "netsec-dev-runner".to_string()]);
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path.to_str().unwrap().to_string()
        };
        let base = "repository: {name: r}\nbucket: {name: b}\nrunner: {github_repository: o/r}\n";
        let bad_cidr = write("a.yaml", &format!("{base}service: {{allowed_cidrs: [10.0.0.0/33]}}\n"));
        assert!(Environment::load(&bad_cidr).unwrap_err().to_string().contains("10.0.0.0/33"));
        let unknown = write("b.yaml", &format!("{base}service: {{}}\ncolour: blue\n"));
        assert!(Environment::load(&unknown).unwrap_err().to_string().contains("colour"));
        let bad_name = write("Prod_1.yaml", &format!("{base}service: {{}}\n"));
        assert!(Environment::load(&bad_name).unwrap_err().to_string().contains("Prod_1"));
    }
}
