//! `cargo xtask bootstrap --env E --repo OWNER/NAME`: a repository and an AWS environment set
//! up for the generated workflows in one command, and the same command again changes only
//! what drifted.
//!
//! ```text
//!  GitHub access ─► secret values ─► OIDC provider ─► deploy role ─► runner token + admin token (SSM)
//!      ─► apply the environment ─► Actions variables ─► Actions secrets (sealed)
//! ```
//!
//! The runner's registration token is stored before `apply` because the instance reads it on
//! its first boot. Every secret value is read (or prompted for) before anything changes.

mod github;
mod identity;
mod sealed;
mod values;

use crate::aws::{explain, Aws};
use crate::deploy::{environment::Environment, repository, EnvArg};
use github::{GitHub, Outcome};

#[derive(clap::Args)]
pub struct BootstrapArgs {
    #[command(flatten)]
    env: EnvArg,
    /// The GitHub repository whose workflows deploy the environment (`OWNER/NAME`; it must be
    /// the environment file's `runner.github_repository`).
    #[arg(long, value_name = "OWNER/NAME")]
    repo: String,
}

/// The Actions variables the workflows read.
pub const VARIABLES: [&str; 4] =
    ["NETSEC_AWS_REGION", "NETSEC_DEPLOY_ROLE_ARN", "NETSEC_ECR_REPOSITORY", "NETSEC_BUCKET"];

/// The Actions secrets, besides NETSEC_ADMIN_TOKEN, and what each is for (the prompt says it).
pub const OPTIONAL_SECRETS: [(&str, &str); 4] = [
    ("MONGODB_URI", "the training data's MongoDB, for train.yml"),
    ("MLFLOW_TRACKING_URI", "the MLflow tracking server or DagsHub"),
    ("MLFLOW_TRACKING_USERNAME", "MLflow user"),
    ("MLFLOW_TRACKING_PASSWORD", "MLflow password or token"),
];

const ADMIN_TOKEN: &str = "NETSEC_ADMIN_TOKEN";

pub fn run(args: BootstrapArgs) -> anyhow::Result<()> {
    let environment = Environment::load(&args.env.name)?;
    let expected = &environment.runner.github_repository;
    anyhow::ensure!(
        expected.eq_ignore_ascii_case(&args.repo),
        "--repo {} but the environment file's runner.github_repository is {expected}: the runner registers \
         with that repository; make them agree",
        args.repo
    );
    crate::image::block_on(bootstrap(&environment, &args.repo))
}

async fn bootstrap(environment: &Environment, repo: &str) -> anyhow::Result<()> {
    let github = GitHub::connect(repo)?;
    github.check_access().await?;
    let secrets = collect_secrets()?;
    let aws = Aws::connect(environment).await?;

    let provider = identity::ensure_oidc_provider(&aws).await?;
    let role_arn = identity::ensure_deploy_role(&aws, environment, &provider, repo).await?;
    let runner_token = github.runner_registration_token().await?;
    put_secure(&aws, &environment.parameter("runner/registration-token"), &runner_token).await?;
    let admin_token = admin_token(&aws, environment).await?;

    crate::deploy::apply(environment).await?;

    let repository = repository::uri(&aws, environment).await?;
    let variables = [&aws.region, &role_arn, &repository, &environment.bucket.name];
    for (name, value) in VARIABLES.iter().zip(variables) {
        println!("variable {name}: {}", github.set_variable(name, value).await?);
    }
    let key = github.secrets_key().await?;
    println!("secret {ADMIN_TOKEN}: {}", github.set_secret(&key, ADMIN_TOKEN, &admin_token).await?);
    for (name, value) in secrets {
        match value {
            Some(value) => println!("secret {name}: {}", github.set_secret(&key, name, &value).await?),
            None => println!("secret {name}: skipped (not set: export it, or run bootstrap at a terminal)"),
        }
    }
    println!("bootstrapped {} for {}", environment.name, github.repo());
    Ok(())
}

fn collect_secrets() -> anyhow::Result<Vec<(&'static str, Option<String>)>> {
    OPTIONAL_SECRETS.iter().map(|(name, what)| Ok((*name, values::from_env_or_prompt(name, what)?))).collect()
}

/// The service's admin token: NETSEC_ADMIN_TOKEN when set, else the one the environment
/// already has (GitHub cannot give a secret back), else a new one; stored where the runner's
/// service reads it.
async fn admin_token(aws: &Aws, environment: &Environment) -> anyhow::Result<String> {
    let parameter = environment.parameter("service/admin-token");
    let token = match std::env::var(ADMIN_TOKEN).ok().filter(|v| !v.is_empty()) {
        Some(token) => token,
        None => match aws.parameter(&parameter).await? {
            Some(existing) => existing,
            None => values::new_token()?,
        },
    };
    put_secure(aws, &parameter, &token).await?;
    Ok(token)
}

/// Stores `value` as a SecureString (KMS-encrypted) unless it is already there.
async fn put_secure(aws: &Aws, name: &str, value: &str) -> anyhow::Result<Outcome> {
    let outcome = match aws.parameter(name).await? {
        Some(existing) if existing == value => Outcome::Unchanged,
        Some(_) => Outcome::Updated,
        None => Outcome::Created,
    };
    if outcome != Outcome::Unchanged {
        aws.ssm
            .put_parameter()
            .name(name)
            .value(value)
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .overwrite(true)
            .send()
            .await
            .map_err(|e| explain(e, "ssm:PutParameter", name))?;
    }
    println!("parameter {name}: {outcome}");
    Ok(outcome)
}
