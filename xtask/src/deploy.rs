//! The AWS environment as code: `plan`, `apply`, `destroy`, `deploy`, `status`, `logs`,
//! `rollback`, `unlock` and `scale`, for an environment described in `infra/<env>.yaml`.
//!
//! ```text
//!  environment (infra/<env>.yaml) ─► plan (read every resource, diff) ─► apply (steps in order)
//!                                      repository · bucket · role + profile · firewall
//!                                      · (a fleet: target group · balancer · launch template
//!                                        · auto scaling group · scaling policy) · runner
//!  deploy = image ─► lock ─► apply ─► ECR push ─► remote (SSM Run Command: netsec-update.sh) ─► history
//! ```
//!
//! Every AWS call goes through [`crate::aws::Aws`], whose call log lets `apply` prove it made no
//! mutating call when nothing had changed.

mod balancer;
mod bucket;
mod elb;
pub mod environment;
mod firewall;
mod fleet;
mod history;
mod launch_template;
mod lock;
pub mod plan;
pub mod policy;
mod release;
mod remote;
pub mod repository;
pub mod role;
mod rollout;
mod runner;
mod scaling_group;
mod scaling_policy;
mod target_group;

use environment::Environment;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Desired against actual, resource by resource: create, update, replace, delete or no change.
    Plan(EnvArg),
    /// Carry the plan out; with nothing to change, no mutating call is made.
    Apply(EnvArg),
    /// Remove every resource tagged for the environment (asks first, unless --yes).
    Destroy {
        #[command(flatten)]
        env: EnvArg,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
    },
    /// Build the image, push it to ECR, apply, and switch the runner over, health-gated (with a
    /// fleet: its instances, batch by batch).
    Deploy {
        #[command(flatten)]
        env: EnvArg,
        #[command(flatten)]
        args: release::DeployArgs,
    },
    /// The resources, the deploy history, and what the runner (or each fleet instance) serves.
    Status(EnvArg),
    /// The live container's last log lines.
    Logs {
        #[command(flatten)]
        env: EnvArg,
        #[arg(long, default_value_t = 200)]
        lines: u32,
        /// One instance of the fleet (or the runner); without it, every instance of the fleet
        /// in service, or the runner when there is no fleet.
        #[arg(long, value_name = "ID")]
        instance: Option<String>,
    },
    /// Back to the previous container, or to a deployed VERSION (a tag or digest from `status`);
    /// a fleet batch by batch.
    Rollback {
        #[command(flatten)]
        env: EnvArg,
        #[arg(long, value_name = "VERSION")]
        to: Option<String>,
    },
    /// Remove a deploy lock left behind by a deploy that died.
    Unlock(EnvArg),
    /// Set a fleet's desired instance count, within the file's `fleet.min` and `fleet.max`.
    Scale {
        #[command(flatten)]
        env: EnvArg,
        #[arg(long, value_name = "N")]
        desired: u32,
    },
}

#[derive(clap::Args)]
pub struct EnvArg {
    /// The environment: `infra/<ENV>.yaml`, or a path to such a file.
    #[arg(long = "env", value_name = "ENV")]
    pub name: String,
}

pub fn run(command: Command) -> anyhow::Result<()> {
    crate::image::block_on(async {
        match command {
            Command::Plan(env) => {
                let environment = Environment::load(&env.name)?;
                let aws = crate::aws::Aws::connect(&environment).await?;
                plan::print(&plan::plan(&aws, &environment).await?);
                Ok(())
            }
            Command::Apply(env) => apply(&Environment::load(&env.name)?).await,
            Command::Destroy { env, yes } => destroy(&Environment::load(&env.name)?, yes).await,
            Command::Deploy { env, args } => release::deploy(&Environment::load(&env.name)?, &args).await,
            Command::Status(env) => release::status(&Environment::load(&env.name)?).await,
            Command::Logs { env, lines, instance } => {
                release::logs(&Environment::load(&env.name)?, lines, instance.as_deref()).await
            }
            Command::Rollback { env, to } => release::rollback(&Environment::load(&env.name)?, to.as_deref()).await,
            Command::Scale { env, desired } => fleet::scale(&Environment::load(&env.name)?, desired).await,
            Command::Unlock(env) => {
                let environment = Environment::load(&env.name)?;
                lock::unlock(&crate::aws::Aws::connect(&environment).await?, &environment).await
            }
        }
    })
}

pub async fn apply(environment: &Environment) -> anyhow::Result<()> {
    let aws = crate::aws::Aws::connect(environment).await?;
    let planned = plan::plan(&aws, environment).await?;
    let mark = aws.calls.mark();
    if plan::print(&planned) {
        plan::apply(&aws, environment, &planned).await?;
    }
    println!("apply: {} mutating calls", aws.calls.mutations_since(mark).len());
    Ok(())
}

async fn destroy(environment: &Environment, yes: bool) -> anyhow::Result<()> {
    let aws = crate::aws::Aws::connect(environment).await?;
    let planned = plan::teardown(&aws, environment).await?;
    if !plan::print(&planned) {
        println!("nothing is tagged {}={}", environment::ENV_TAG, environment.name);
        return Ok(());
    }
    if !yes && !confirmed(environment)? {
        anyhow::bail!("not destroyed");
    }
    plan::apply(&aws, environment, &planned).await?;
    println!("destroyed environment {}", environment.name);
    Ok(())
}

/// Asks for the environment's name on the terminal.
fn confirmed(environment: &Environment) -> anyhow::Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    anyhow::ensure!(
        std::io::stdin().is_terminal(),
        "destroy asks for confirmation on a terminal: pass --yes to skip it"
    );
    print!("type the environment's name ({}) to destroy all of the above: ", environment.name);
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer.trim() == environment.name)
}
