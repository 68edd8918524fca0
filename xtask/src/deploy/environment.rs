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
    /// Instances behind a load balancer, instead of the runner serving alone.
    pub fleet: Option<FleetSpec>,
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

/// A fleet: an Auto Scaling group of instances behind an Application Load Balancer that takes
/// HTTPS (port 80 only redirects), health-checks the service and drains what it deregisters.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSpec {
    pub min: u32,
    pub max: u32,
    pub desired: u32,
    #[serde(default = "default_instance_type")]
    pub instance_type: String,
    /// Instances a rolling deploy takes out of service at once.
    #[serde(default = "default_max_unavailable")]
    pub max_unavailable: u32,
    /// Availability Zone → subnet id, two zones at least; the default VPC's default subnets
    /// when absent. Zones are named so that a single-zone fleet is refused before any AWS call.
    #[serde(default)]
    pub subnets: std::collections::BTreeMap<String, String>,
    /// Target tracking; none keeps `desired` until `scale` changes it.
    pub scaling: Option<ScalingSpec>,
    pub tls: TlsSpec,
    #[serde(default)]
    pub health: HealthSpec,
    /// The balancer's access logs, into the environment's bucket.
    pub access_logs: Option<AccessLogsSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScalingSpec {
    pub metric: ScalingMetric,
    /// Requests per target per minute, or average CPU per cent.
    pub target: f64,
}

/// The metrics target tracking can follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ScalingMetric {
    #[serde(rename = "ALBRequestCountPerTarget")]
    RequestCountPerTarget,
    #[serde(rename = "ASGAverageCPUUtilization")]
    AverageCpuUtilization,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    /// An ACM certificate in the environment's region.
    pub certificate_arn: String,
    #[serde(default = "default_tls_policy")]
    pub policy: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSpec {
    #[serde(default = "default_health_path")]
    pub path: String,
    #[serde(default = "default_health_interval")]
    pub interval_seconds: u32,
    #[serde(default = "default_health_timeout")]
    pub timeout_seconds: u32,
    #[serde(default = "default_threshold")]
    pub healthy_threshold: u32,
    #[serde(default = "default_threshold")]
    pub unhealthy_threshold: u32,
    /// Connection draining: how long a deregistered instance keeps its open requests.
    #[serde(default = "default_deregistration_delay")]
    pub deregistration_delay_seconds: u32,
    /// How long a new instance may take to become healthy before Auto Scaling replaces it.
    #[serde(default = "default_grace_period")]
    pub grace_period_seconds: u32,
}

impl Default for HealthSpec {
    fn default() -> Self {
        HealthSpec {
            path: default_health_path(),
            interval_seconds: default_health_interval(),
            timeout_seconds: default_health_timeout(),
            healthy_threshold: default_threshold(),
            unhealthy_threshold: default_threshold(),
            deregistration_delay_seconds: default_deregistration_delay(),
            grace_period_seconds: default_grace_period(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogsSpec {
    /// The key prefix in the environment's bucket.
    #[serde(default = "default_access_logs_prefix")]
    pub prefix: String,
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
fn default_max_unavailable() -> u32 {
    1
}
fn default_tls_policy() -> String {
    "ELBSecurityPolicy-TLS13-1-2-2021-06".into()
}
fn default_health_path() -> String {
    "/ready".into()
}
fn default_health_interval() -> u32 {
    15
}
fn default_health_timeout() -> u32 {
    5
}
fn default_threshold() -> u32 {
    3
}
fn default_deregistration_delay() -> u32 {
    30
}
fn default_grace_period() -> u32 {
    180
}
fn default_access_logs_prefix() -> String {
    "alb-logs".into()
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
        if let Some(fleet) = &self.fleet {
            fleet.validate(self.region.as_deref())?;
        }
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

impl FleetSpec {
    /// Every rule that needs no AWS call; each message names the key.
    fn validate(&self, region: Option<&str>) -> anyhow::Result<()> {
        let ensure = |ok: bool, message: String| if ok { Ok(()) } else { Err(anyhow::anyhow!(message)) };
        ensure(self.max >= 1, "fleet.max must be at least 1".into())?;
        ensure(
            self.min <= self.desired && self.desired <= self.max,
            format!("fleet: min ({}) ≤ desired ({}) ≤ max ({}) does not hold", self.min, self.desired, self.max),
        )?;
        ensure(self.max_unavailable >= 1, "fleet.max_unavailable must be at least 1".into())?;
        let (family, size) = self.instance_type.split_once('.').unwrap_or_default();
        ensure(
            !family.is_empty()
                && !size.is_empty()
                && self.instance_type.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'),
            format!("fleet.instance_type {:?} is not an EC2 instance type such as t3.small", self.instance_type),
        )?;
        ensure(
            self.desired.saturating_sub(self.max_unavailable) >= self.min.max(1),
            format!(
                "fleet: a deploy takes fleet.max_unavailable ({}) of fleet.desired ({}) out of service, which \
                 leaves fewer than fleet.min ({}) and at least one; raise desired or lower max_unavailable",
                self.max_unavailable, self.desired, self.min
            ),
        )?;
        let region = region.ok_or_else(|| {
            anyhow::anyhow!("a fleet needs `region:` in the file (its certificate and zones must be of that region)")
        })?;
        self.validate_subnets(region)?;
        self.validate_tls(region)?;
        self.health.validate()?;
        if let Some(scaling) = &self.scaling {
            ensure(
                scaling.target.is_finite() && scaling.target > 0.0,
                format!("fleet.scaling.target must be a positive number, not {}", scaling.target),
            )?;
            if scaling.metric == ScalingMetric::AverageCpuUtilization {
                ensure(scaling.target <= 100.0, "fleet.scaling.target is a CPU percentage: at most 100".into())?;
            }
        }
        if let Some(logs) = &self.access_logs {
            let prefix = &logs.prefix;
            let valid = !prefix.is_empty()
                && !prefix.starts_with('/')
                && !prefix.ends_with('/')
                && !prefix.contains("AWSLogs")
                && prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_/.".contains(&b));
            ensure(valid, format!("fleet.access_logs.prefix {prefix:?} must be a key prefix such as alb-logs (no leading or trailing `/`, no `AWSLogs`)"))?;
        }
        Ok(())
    }

    fn validate_subnets(&self, region: &str) -> anyhow::Result<()> {
        if self.subnets.is_empty() {
            return Ok(());
        }
        anyhow::ensure!(
            self.subnets.len() >= 2,
            "fleet.subnets names one Availability Zone: a load balancer needs subnets in two zones at least"
        );
        for (zone, subnet) in &self.subnets {
            let in_region = zone.strip_prefix(region).is_some_and(|rest| {
                !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            });
            anyhow::ensure!(
                in_region,
                "fleet.subnets: {zone:?} is not an Availability Zone of {region} (such as {region}a)"
            );
            let valid = subnet
                .strip_prefix("subnet-")
                .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()));
            anyhow::ensure!(valid, "fleet.subnets.{zone}: {subnet:?} is not a subnet id (subnet-0123abcd)");
        }
        let mut ids: Vec<&String> = self.subnets.values().collect();
        ids.sort();
        ids.dedup();
        anyhow::ensure!(ids.len() == self.subnets.len(), "fleet.subnets names one subnet for two zones");
        Ok(())
    }

    fn validate_tls(&self, region: &str) -> anyhow::Result<()> {
        let arn = &self.tls.certificate_arn;
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let shaped = parts.len() == 6
            && parts[0] == "arn"
            && parts[1].starts_with("aws")
            && parts[2] == "acm"
            && parts[4].len() == 12
            && parts[4].bytes().all(|b| b.is_ascii_digit())
            && parts[5].strip_prefix("certificate/").is_some_and(|id| !id.is_empty());
        anyhow::ensure!(
            shaped,
            "fleet.tls.certificate_arn {arn:?} is not an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/ID)"
        );
        anyhow::ensure!(
            parts[3] == region,
            "fleet.tls.certificate_arn is in {}, but a load balancer in {region} can only use a certificate of {region}",
            parts[3]
        );
        anyhow::ensure!(
            self.tls.policy.starts_with("ELBSecurityPolicy-"),
            "fleet.tls.policy {:?} is not an ELB security policy (such as ELBSecurityPolicy-TLS13-1-2-2021-06)",
            self.tls.policy
        );
        Ok(())
    }
}

impl HealthSpec {
    /// Elastic Load Balancing's own limits, checked before any call.
    fn validate(&self) -> anyhow::Result<()> {
        let within = |key: &str, value: u32, low: u32, high: u32| {
            anyhow::ensure!((low..=high).contains(&value), "fleet.health.{key} is {value}: it must be {low} to {high}");
            Ok(())
        };
        anyhow::ensure!(
            self.path.starts_with('/') && !self.path.contains(char::is_whitespace),
            "fleet.health.path {:?} must be a path such as /ready",
            self.path
        );
        within("interval_seconds", self.interval_seconds, 5, 300)?;
        within("timeout_seconds", self.timeout_seconds, 2, 120)?;
        anyhow::ensure!(
            self.timeout_seconds < self.interval_seconds,
            "fleet.health.timeout_seconds must be less than fleet.health.interval_seconds"
        );
        within("healthy_threshold", self.healthy_threshold, 2, 10)?;
        within("unhealthy_threshold", self.unhealthy_threshold, 2, 10)?;
        within("deregistration_delay_seconds", self.deregistration_delay_seconds, 0, 3600)?;
        within("grace_period_seconds", self.grace_period_seconds, 0, 7200)
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
    fn the_fleet_example_loads_with_every_key() {
        let fleet = Environment::load("fleet").unwrap();
        let spec = fleet.fleet.expect("a fleet");
        assert_eq!((spec.min, spec.desired, spec.max, spec.max_unavailable), (2, 3, 6, 1));
        assert_eq!(spec.subnets.len(), 2);
        assert_eq!(spec.scaling.unwrap().metric, ScalingMetric::RequestCountPerTarget);
        assert_eq!(spec.tls.policy, "ELBSecurityPolicy-TLS13-1-2-2021-06");
        assert_eq!(spec.health.path, "/ready");
        assert_eq!(spec.access_logs.unwrap().prefix, "alb-logs");
        assert!(Environment::load("dev").unwrap().fleet.is_none(), "dev stays one runner");
    }

    /// Each bad fleet setting is refused by `load`, before any AWS call, naming the file and
    /// the key.
    #[test]
    fn bad_fleet_settings_are_refused_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let example = std::fs::read_to_string(crate::project_root().join("infra/fleet.yaml")).unwrap();
        let cases = [
            ("    eu-west-1b: subnet-0f1e2d3c4b5a69788\n", "", "one Availability Zone"),
            (
                "    eu-west-1b: subnet-0f1e2d3c4b5a69788",
                "    eu-west-1b: subnet-0a1b2c3d4e5f60718",
                "one subnet for two zones",
            ),
            ("    eu-west-1b:", "    us-east-1b:", "not an Availability Zone of eu-west-1"),
            ("  min: 2", "  min: 7", "≤ max"),
            ("  desired: 3", "  desired: 2", "fleet.max_unavailable"),
            ("arn:aws:acm:eu-west-1:", "arn:aws:acm:us-east-1:", "certificate of eu-west-1"),
            ("certificate_arn: arn:aws:acm", "certificate_arn: arn:aws:iam", "fleet.tls.certificate_arn"),
            ("allowed_cidrs: [0.0.0.0/0]", "allowed_cidrs: [0.0.0.0/40]", "0.0.0.0/40"),
            ("    interval_seconds: 15", "    interval_seconds: 15\n    colour: blue", "colour"),
            ("    timeout_seconds: 5", "    timeout_seconds: 20", "less than fleet.health.interval_seconds"),
            ("    path: /ready", "    path: ready", "fleet.health.path"),
            ("    target: 6000", "    target: -1", "fleet.scaling.target"),
            ("metric: ALBRequestCountPerTarget", "metric: Requests", "Requests"),
            ("    prefix: alb-logs", "    prefix: /logs/", "fleet.access_logs.prefix"),
            ("region: eu-west-1\n", "", "needs `region:`"),
        ];
        for (i, (from, to, expected)) in cases.into_iter().enumerate() {
            assert!(example.contains(from), "case {i}: the example has no {from:?}");
            let path = dir.path().join(format!("fleet{i}.yaml"));
            std::fs::write(&path, example.replacen(from, to, 1)).unwrap();
            let error = Environment::load(path.to_str().unwrap()).unwrap_err().to_string();
            assert!(error.contains(expected), "case {i}: {error}");
            assert!(error.contains(&format!("fleet{i}.yaml")), "case {i}: the file is named: {error}");
        }
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
