//! What the AWS tests share (deploy, bootstrap): an environment file of their own, `cargo
//! xtask` run as the deployer against moto's server, and the SDK configuration the checks use.

use std::path::PathBuf;
use std::process::{Command, Output};

use aws_config::{BehaviorVersion, Region, SdkConfig};

use super::{required, shown, succeed, text};

/// An environment file of the test's own, named `name`, in a temporary folder.
pub struct TestEnv {
    pub name: String,
    pub file: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestEnv {
    pub fn new(name: &str, extra: &str) -> TestEnv {
        let dir = tempfile::tempdir().unwrap();
        let name = format!("{name}{}", std::process::id() % 100_000);
        let file = dir.path().join(format!("{name}.yaml"));
        let yaml = format!(
            "region: us-east-1\nrepository: {{name: netsec-{name}, keep_images: 5}}\nbucket: {{name: netsec-{name}-models}}\n\
             service: {{port: 8080, allowed_cidrs: [203.0.113.0/24]}}\nrunner: {{github_repository: octo/netsec, instance_type: t3.small}}\n{extra}"
        );
        std::fs::write(&file, yaml).unwrap();
        TestEnv { name, file, _dir: dir }
    }

    pub fn path(&self) -> &str {
        self.file.to_str().unwrap()
    }
}

/// `cargo xtask ARGS…` as the deployer, against moto.
pub fn xtask(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command
        .args(args)
        .env("AWS_ENDPOINT_URL", required("NETSEC_TEST_S3_ENDPOINT"))
        .env("AWS_ACCESS_KEY_ID", required("NETSEC_TEST_DEPLOY_ACCESS_KEY_ID"))
        .env("AWS_SECRET_ACCESS_KEY", required("NETSEC_TEST_DEPLOY_SECRET_ACCESS_KEY"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE");
    command
}

pub fn succeeds(command: &mut Command) -> String {
    text(&succeed(command).stdout)
}

pub fn fails(command: &mut Command) -> Output {
    let output = command.output().unwrap();
    assert!(!output.status.success(), "{} should have failed:\n{}", shown(command), text(&output.stdout));
    output
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// The SDK configuration the checks use (the deployer's keys, moto's endpoint).
pub async fn sdk() -> SdkConfig {
    let credentials = aws_credential_types::Credentials::new(
        required("NETSEC_TEST_DEPLOY_ACCESS_KEY_ID"),
        required("NETSEC_TEST_DEPLOY_SECRET_ACCESS_KEY"),
        None,
        None,
        "test",
    );
    let https = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(https)
        .region(Region::new("us-east-1"))
        .endpoint_url(required("NETSEC_TEST_S3_ENDPOINT"))
        .credentials_provider(credentials)
        .load()
        .await
}

/// A policy document as IAM returns it (URL-encoded), parsed.
pub fn decode(document: &str) -> serde_json::Value {
    serde_json::from_str(document)
        .or_else(|_| serde_json::from_str(&percent_encoding::percent_decode_str(document).decode_utf8_lossy()))
        .unwrap_or_else(|e| panic!("not a policy document: {e}: {document}"))
}

/// Findings of parliament (duo-labs' IAM policy linter, with its community auditors) that the
/// project accepts, each with the reason: (issue, the action it names).
const ACCEPTED_FINDINGS: &[(&str, &str)] = &[
    // Pulling an image from ECR starts with an authorization token: no pull without it.
    ("CREDENTIALS_EXPOSURE", "ecr:getauthorizationtoken"),
    // SendCommand is authorized per resource, and the deploy role allows each in a statement of
    // its own: the AWS-owned document (whose ARN has no account, and no tag) in one, the
    // instances tagged for the environment in another. parliament judges each statement alone.
    ("RESOURCE_MISMATCH", "ssm:sendcommand"),
];

/// The actions a finding names (in its location or its details), lower-case.
fn finding_actions(finding: &serde_json::Value) -> Vec<String> {
    let located = finding["location"]["actions"].as_array().cloned().unwrap_or_default();
    let detailed = finding["detail"].as_array().cloned().unwrap_or_default();
    let detailed = detailed.iter().map(|d| d["action"].clone());
    located.into_iter().chain(detailed).filter_map(|a| a.as_str().map(str::to_lowercase)).collect()
}

/// Runs parliament over an identity or bucket policy (not a trust policy: it has no Resource,
/// which parliament reports as malformed) and fails on any finding not in ACCEPTED_FINDINGS.
pub fn lint_policy(what: &str, document: &serde_json::Value) {
    let python = std::path::PathBuf::from(required("NETSEC_PYTHON"));
    let parliament = python.parent().unwrap().join("parliament");
    let output = Command::new(&parliament)
        .args(["--json", "--include-community-auditors", "--string", &document.to_string()])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", parliament.display()));
    let findings: Vec<serde_json::Value> =
        text(&output.stdout).lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert!(output.status.success() || !findings.is_empty(), "parliament failed on {what}: {}", text(&output.stderr));
    let accepted = |finding: &serde_json::Value| {
        let actions = finding_actions(finding);
        !actions.is_empty()
            && actions.iter().all(|a| ACCEPTED_FINDINGS.iter().any(|(issue, ok)| finding["issue"] == *issue && a == ok))
    };
    let unexpected: Vec<&serde_json::Value> = findings.iter().filter(|f| !accepted(f)).collect();
    assert!(unexpected.is_empty(), "parliament on {what}: {unexpected:#?}\n{document:#}");
}

/// A certificate moto issues at once (the harness sets its validation wait to 0).
pub async fn certificate() -> String {
    let acm = aws_sdk_acm::Client::new(&sdk().await);
    let requested = acm.request_certificate().domain_name("netsec.example.com").send().await.unwrap();
    requested.certificate_arn().unwrap().to_string()
}
