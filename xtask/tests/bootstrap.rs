//! `cargo xtask bootstrap` against moto (AWS) and the GitHub stand-in of common/github.rs:
//! what it creates on both sides, that a second run duplicates nothing, that secrets open with
//! the repository's key and never show, and that GitHub's refusals are explained.

use std::process::{Command, Stdio};

mod common;
use common::aws::*;
use common::github::{FakeGitHub, TOKEN, TOKEN_WITHOUT_REPO_SCOPE};
use common::*;

const REPO: &str = "octo/netsec";
const MONGODB_URI: &str = "mongodb://trainer:Very-Secret-42@mongo.example:27017/WASNIK";

fn bootstrap(env: &TestEnv, github: &FakeGitHub, token: &str) -> Command {
    let mut command = xtask(&["bootstrap", "--env", env.path(), "--repo", REPO]);
    command
        .env("GITHUB_API_URL", github.url())
        .env("GITHUB_TOKEN", token)
        .env("MONGODB_URI", MONGODB_URI)
        .env_remove("NETSEC_ADMIN_TOKEN")
        .env_remove("MLFLOW_TRACKING_URI")
        .env_remove("MLFLOW_TRACKING_USERNAME")
        .env_remove("MLFLOW_TRACKING_PASSWORD")
        .stdin(Stdio::null());
    command
}

/// The xtask process blocks; the stand-in answers from the runtime's other threads.
async fn run(mut command: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap()
}

fn stdout_of(output: &std::process::Output, what: &str) -> String {
    assert!(output.status.success(), "{what} failed:\n{}\n{}", text(&output.stdout), text(&output.stderr));
    text(&output.stdout)
}

async fn parameter(ssm: &aws_sdk_ssm::Client, name: &str) -> String {
    let found = ssm.get_parameter().name(name).with_decryption(true).send().await.unwrap();
    let parameter = found.parameter().unwrap();
    assert_eq!(parameter.r#type(), Some(&aws_sdk_ssm::types::ParameterType::SecureString), "{name}");
    parameter.value().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_sets_up_github_and_aws_and_a_second_run_changes_nothing_twice() {
    // With a fleet: the deploy role's policy holds the rolling deploy's statements too.
    let fleet =
        format!("fleet:\n  min: 1\n  max: 2\n  desired: 2\n  tls: {{certificate_arn: \"{}\"}}\n", certificate().await);
    let env = TestEnv::new("b", &fleet);
    let github = FakeGitHub::start(REPO).await;
    let first = stdout_of(&run(bootstrap(&env, &github, TOKEN)).await, "bootstrap");
    assert!(first.contains("bootstrapped"), "{first}");
    assert!(!first.contains("Very-Secret-42"), "a secret value was printed:\n{first}");

    // GitHub: the four variables, and the secrets, sealed for the repository's key.
    let role_arn = format!("arn:aws:iam::123456789012:role/netsec/netsec-{}-deploy", env.name);
    let variables = github.state.lock().unwrap().variables.clone();
    assert_eq!(variables["NETSEC_AWS_REGION"], "us-east-1");
    assert_eq!(variables["NETSEC_DEPLOY_ROLE_ARN"], role_arn);
    assert_eq!(
        variables["NETSEC_ECR_REPOSITORY"],
        format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/netsec-{}", env.name)
    );
    assert_eq!(variables["NETSEC_BUCKET"], format!("netsec-{}-models", env.name));
    assert_eq!(github.secret("MONGODB_URI").as_deref(), Some(MONGODB_URI));
    assert!(github.secret("MLFLOW_TRACKING_PASSWORD").is_none(), "unset secrets are skipped");
    assert!(first.contains("secret MLFLOW_TRACKING_PASSWORD: skipped"), "{first}");

    let config = sdk().await;
    let ssm = aws_sdk_ssm::Client::new(&config);
    let admin_token = parameter(&ssm, &format!("/netsec/{}/service/admin-token", env.name)).await;
    assert_eq!(admin_token.len(), 64, "a generated token");
    assert_eq!(github.secret("NETSEC_ADMIN_TOKEN"), Some(admin_token.clone()), "the service and CI share one token");
    let runner_token = parameter(&ssm, &format!("/netsec/{}/runner/registration-token", env.name)).await;
    assert_eq!(github.state.lock().unwrap().runner_tokens, [runner_token]);

    // AWS: the OIDC provider and the deploy role, trusted by the main branch only.
    check_identity(&config, &env).await;

    // Again: the variables and the role are left alone, the provider is not duplicated, the
    // admin token is kept; secrets are rewritten in place (GitHub cannot compare them).
    let before = github.requests("POST /repos/octo/netsec/actions/variables") + github.requests("PATCH ");
    let second = stdout_of(&run(bootstrap(&env, &github, TOKEN)).await, "the second bootstrap");
    assert_eq!(github.requests("POST /repos/octo/netsec/actions/variables") + github.requests("PATCH "), before);
    for name in ["NETSEC_AWS_REGION", "NETSEC_DEPLOY_ROLE_ARN", "NETSEC_ECR_REPOSITORY", "NETSEC_BUCKET"] {
        assert!(second.contains(&format!("variable {name}: unchanged")), "{second}");
    }
    assert!(second.contains("secret MONGODB_URI: updated") && second.contains("apply: 0 mutating calls"), "{second}");
    assert!(second.contains(&format!("iam role netsec-{}-deploy: unchanged", env.name)), "{second}");
    assert_eq!(github.secret("NETSEC_ADMIN_TOKEN"), Some(admin_token));
    let iam = aws_sdk_iam::Client::new(&config);
    let providers = iam.list_open_id_connect_providers().send().await.unwrap();
    let github_providers = providers
        .open_id_connect_provider_list()
        .iter()
        .filter(|p| p.arn().unwrap_or_default().ends_with("oidc-provider/token.actions.githubusercontent.com"));
    assert_eq!(github_providers.count(), 1);

    // The deploy role belongs to the environment: `plan` does not call it a stray, `destroy` removes it.
    let plan = stdout_of(&run(xtask(&["plan", "--env", env.path()])).await, "plan");
    assert!(plan.contains("0 to delete"), "{plan}");
    stdout_of(&run(xtask(&["destroy", "--env", env.path(), "--yes"])).await, "destroy");
    assert!(iam.get_role().role_name(format!("netsec-{}-deploy", env.name)).send().await.is_err());
}

async fn check_identity(config: &aws_config::SdkConfig, env: &TestEnv) {
    let iam = aws_sdk_iam::Client::new(config);
    let arn = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com";
    let provider = iam.get_open_id_connect_provider().open_id_connect_provider_arn(arn).send().await.unwrap();
    assert_eq!(provider.client_id_list(), ["sts.amazonaws.com"]);
    assert_eq!(provider.url(), Some("token.actions.githubusercontent.com"));

    let name = format!("netsec-{}-deploy", env.name);
    let role = iam.get_role().role_name(&name).send().await.unwrap();
    let role = role.role().unwrap();
    assert!(role.tags().iter().any(|t| t.key() == "netsec:env" && t.value() == env.name));
    let trust = decode(role.assume_role_policy_document().unwrap());
    let statement = &trust["Statement"][0];
    assert_eq!(statement["Principal"]["Federated"], arn);
    assert_eq!(statement["Action"], "sts:AssumeRoleWithWebIdentity");
    let condition = &statement["Condition"]["StringEquals"];
    assert_eq!(condition["token.actions.githubusercontent.com:sub"], "repo:octo/netsec:ref:refs/heads/main");
    assert_eq!(condition["token.actions.githubusercontent.com:aud"], "sts.amazonaws.com");

    let policy = iam.get_role_policy().role_name(&name).policy_name(&name).send().await.unwrap();
    let policy = decode(policy.policy_document());
    lint_policy("the deploy role's policy", &policy);
    let statements = policy["Statement"].as_array().unwrap();
    let actions = |s: &serde_json::Value| match &s["Action"] {
        serde_json::Value::Array(all) => all.iter().map(|a| a.as_str().unwrap().to_string()).collect::<Vec<_>>(),
        one => vec![one.as_str().unwrap().to_string()],
    };
    for statement in statements {
        for action in actions(statement) {
            assert!(!action.contains('*'), "no wildcard actions: {action}");
            let mutating = ["Create", "Delete", "Run", "Terminate", "Modify", "Attach", "Pass", "Update"];
            // The lock's, and the fleet group's health-check switch (scoped to the group below).
            let allowed = ["ssm:DeleteParameter", "autoscaling:UpdateAutoScalingGroup"];
            let verb = action.split(':').nth(1).unwrap();
            assert!(
                allowed.contains(&action.as_str()) || !mutating.iter().any(|m| verb.starts_with(m)),
                "the deploy role cannot change the environment: {action}"
            );
        }
    }
    let by_sid = |sid: &str| statements.iter().find(|s| s["Sid"] == sid).unwrap_or_else(|| panic!("no {sid}"));
    let push = by_sid("EcrPush");
    assert_eq!(push["Resource"], format!("arn:aws:ecr:us-east-1:123456789012:repository/netsec-{}", env.name));
    let run_command = by_sid("RunCommandOnInstances");
    assert_eq!(run_command["Condition"]["StringEquals"]["ssm:resourceTag/netsec:env"], env.name.as_str());
    let targets = by_sid("RolloutTargets");
    let target_group =
        format!("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/netsec-{}-web/*", env.name);
    assert_eq!(targets["Resource"], target_group);
    let group = by_sid("RolloutHealthChecks");
    assert!(group["Resource"].as_str().unwrap().ends_with(&format!("autoScalingGroupName/netsec-{}-fleet", env.name)));
    let writes = by_sid("LockAndHistory");
    assert_eq!(
        writes["Resource"],
        format!("arn:aws:ssm:us-east-1:123456789012:parameter/netsec/{}/deploy/*", env.name)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_refusals_are_explained_before_anything_changes() {
    let env = TestEnv::new("g", "");
    let github = FakeGitHub::start(REPO).await;
    let failed = |output: std::process::Output| {
        assert!(!output.status.success(), "should have failed:\n{}", text(&output.stdout));
        text(&output.stderr)
    };

    let wrong = failed(run(bootstrap(&env, &github, "ghp_wrong")).await);
    assert!(wrong.contains("GitHub rejected GITHUB_TOKEN (Bad credentials)"), "{wrong}");
    let scopes = failed(run(bootstrap(&env, &github, TOKEN_WITHOUT_REPO_SCOPE)).await);
    assert!(scopes.contains("[read:org]") && scopes.contains("needs `repo`"), "{scopes}");
    let mut missing = bootstrap(&env, &github, TOKEN);
    missing.env_remove("GITHUB_TOKEN");
    let missing = failed(run(missing).await);
    assert!(missing.contains("set GITHUB_TOKEN"), "{missing}");

    let mut elsewhere = xtask(&["bootstrap", "--env", env.path(), "--repo", "octo/other"]);
    elsewhere.env("GITHUB_API_URL", github.url()).env("GITHUB_TOKEN", TOKEN);
    let elsewhere = failed(run(elsewhere).await);
    assert!(elsewhere.contains("runner.github_repository is octo/netsec"), "{elsewhere}");

    // Nothing was asked of GitHub's Actions API, and AWS was not touched.
    assert_eq!(github.requests("POST ") + github.requests("PUT ") + github.requests("PATCH "), 0);
    let iam = aws_sdk_iam::Client::new(&sdk().await);
    assert!(iam.get_role().role_name(format!("netsec-{}-deploy", env.name)).send().await.is_err());
}
