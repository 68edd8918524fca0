//! `deploy`, `rollback`, `status` and `logs`: the image to ECR, the environment applied, the
//! runner switched over by the on-host update script (health-gated, the old container kept) or,
//! with a fleet, every instance of it batch by batch (rollout.rs); the runner then serves
//! nothing and only trains.
//!
//! ```text
//!  build ─► nothing changed? ─► lock ─► apply ─► push (ECR token) ─► SSM: netsec-update.sh deploy REF@digest
//!                                                 (runner, or the fleet in batches ─► deploy/current)
//!                                                                        └─► history (SSM parameter) ─► unlock
//! ```

use std::collections::BTreeSet;

use aws_sdk_ecr::types::ImageIdentifier;
use aws_sdk_ssm::types::ParameterType;

use super::environment::{Environment, FleetSpec};
use super::history::{Deployment, History};
use super::lock::{self, Lock};
use super::remote::Host;
use super::rollout::{self, Action};
use super::{plan, remote, repository, runner, scaling_group};
use crate::aws::{code, explain, Aws};
use crate::image::{self, ecr, Engine, ImageNames};

#[derive(clap::Args)]
pub struct DeployArgs {
    /// Deploy this image rather than building one: a local image (`NAME[:TAG]`), or one already
    /// in the environment's repository by digest (`REPOSITORY_URI@sha256:…`, what
    /// `cargo xtask image --push … --immutable-tags` prints), which is not pushed again.
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// Deploy even if the runner already serves this image and nothing else changed.
    #[arg(long)]
    pub force: bool,
}

/// The image to deploy: where it is, its id, what it was built from, and its tag in ECR.
struct Candidate {
    origin: Origin,
    id: String,
    /// The inputs digest of a local image that has one (`context::Context::inputs`).
    inputs: Option<String>,
    tag: String,
}

impl Candidate {
    /// Whether `live` already serves this image: the same inputs, or for an image known only
    /// by its digest (or built without an inputs label), the very same image.
    fn is_served_by(&self, live: &Deployment) -> bool {
        match (&self.inputs, &self.origin) {
            (Some(inputs), _) => live.inputs == *inputs,
            (None, Origin::Pushed(reference)) => live.image == *reference,
            (None, Origin::Local { .. }) => live.image_id == self.id,
        }
    }
}

enum Origin {
    /// In the local engine, to be pushed.
    Local { engine: Engine, name: String },
    /// Already in the environment's repository: `uri@digest`.
    Pushed(String),
}

async fn candidate(aws: &Aws, environment: &Environment, args: &DeployArgs) -> anyhow::Result<Candidate> {
    match &args.image {
        Some(reference) if reference.contains("@sha256:") => pushed(aws, environment, reference).await,
        Some(local) => local_candidate(Engine::connect().await?, local.clone(), "image").await,
        None => {
            let engine = Engine::connect().await?;
            let names = ImageNames::new(image::DEFAULT_NAME)?;
            image::build(&engine, &names, false).await?;
            local_candidate(engine, names.sha_tagged(), &names.sha_tag).await
        }
    }
}

async fn local_candidate(engine: Engine, name: String, prefix: &str) -> anyhow::Result<Candidate> {
    let id = engine.image_id(&name).await?;
    let inputs = engine.inputs(&name).await?;
    let tag = ecr::immutable_tag(prefix, inputs.as_deref().unwrap_or(&id));
    Ok(Candidate { origin: Origin::Local { engine, name }, id, inputs, tag })
}

/// An image already pushed: it must be in this environment's repository, and ECR must have it.
/// Its manifest digest names it (the image job pushes a rebuild of the same inputs under the
/// same tag, so with the same digest).
async fn pushed(aws: &Aws, environment: &Environment, reference: &str) -> anyhow::Result<Candidate> {
    let uri = repository::uri(aws, environment).await?;
    let digest = reference
        .strip_prefix(&format!("{uri}@"))
        .ok_or_else(|| anyhow::anyhow!("{reference} is not in the environment's repository {uri}"))?;
    let name = &environment.repository.name;
    let not_found = || anyhow::anyhow!("the repository {name} has no image {digest}: push it first");
    let query = aws.ecr.describe_images().repository_name(name);
    let found = match query.image_ids(ImageIdentifier::builder().image_digest(digest).build()).send().await {
        Ok(found) => found,
        Err(e) if code(&e) == Some("ImageNotFoundException") => return Err(not_found()),
        Err(e) => return Err(explain(e, "ecr:DescribeImages", name)),
    };
    let image = found.image_details().first().ok_or_else(not_found)?;
    let tag = image.image_tags().first().cloned().unwrap_or_else(|| "untagged".into());
    let digest = digest.to_string();
    Ok(Candidate { origin: Origin::Pushed(reference.to_string()), id: digest, inputs: None, tag })
}

pub async fn deploy(environment: &Environment, args: &DeployArgs) -> anyhow::Result<()> {
    let aws = Aws::connect(environment).await?;
    let candidate = candidate(&aws, environment, args).await?;
    let planned = plan::plan(&aws, environment).await?;
    let history = History::read(&aws, environment).await?;
    let changes = plan::print(&planned);
    // A rebuild of the same sources is a new image id (labels, creation time) and, from a cold
    // cache, new layer ids, but the same inputs: nothing to deploy.
    let unchanged = history.live().filter(|live| !changes && !args.force && candidate.is_served_by(live));
    if let Some(live) = unchanged {
        let mutations = aws.calls.mutations_since(0).len();
        println!(
            "nothing to deploy: the {} serves {} built from the same inputs ({mutations} mutating calls)",
            if environment.fleet.is_some() { "fleet" } else { "runner" },
            live.image
        );
        return Ok(());
    }
    let lock = Lock::take(&aws, environment).await?;
    let outcome = deploy_locked(&aws, environment, &planned, &candidate, history).await;
    // The lock goes whatever happened; a failure to release it is reported after the outcome.
    let released = lock.release(&aws).await;
    outcome?;
    released
}

async fn deploy_locked(
    aws: &Aws,
    environment: &Environment,
    planned: &[plan::Planned],
    candidate: &Candidate,
    history: History,
) -> anyhow::Result<()> {
    plan::apply(aws, environment, planned).await?;
    let reference = match &candidate.origin {
        Origin::Local { engine, name } => push(aws, engine, environment, name, &candidate.tag).await?,
        Origin::Pushed(reference) => reference.clone(),
    };
    let target = match &environment.fleet {
        Some(fleet) => roll_fleet(aws, environment, fleet, Action::Deploy(&reference)).await?,
        None => {
            let instance = instance_id(aws, environment).await?;
            switch(aws, environment, &instance, &["deploy", &reference]).await?;
            instance
        }
    };
    let deployment = Deployment {
        image: reference.clone(),
        image_id: candidate.id.clone(),
        inputs: candidate.inputs.clone().unwrap_or_default(),
        tag: candidate.tag.clone(),
        at: lock::now(),
        by: lock::whoami(),
        action: "deploy".into(),
    };
    history.record(aws, environment, deployment).await?;
    println!("deployed {reference} to {} ({target})", environment.name);
    Ok(())
}

/// Pushes the local image to the environment's repository with a fresh ECR token (unless the
/// repository has its tag, so its inputs, already); returns the reference by digest
/// (`<repository uri>@sha256:…`).
async fn push(aws: &Aws, engine: &Engine, environment: &Environment, name: &str, tag: &str) -> anyhow::Result<String> {
    let uri = repository::uri(aws, environment).await?;
    let credentials = ecr::credentials(&aws.ecr).await?;
    let pushed = image::push_once(engine, name, &ecr::target(&uri), tag, Some(&credentials)).await?;
    println!("{pushed}");
    Ok(format!("{uri}@{}", pushed.digest))
}

async fn instance_id(aws: &Aws, environment: &Environment) -> anyhow::Result<String> {
    let instance = runner::current(aws, environment).await?;
    Ok(instance.instance_id().unwrap_or_default().to_string())
}

/// Rolls `action` over the fleet (rollout.rs), then names its image in `deploy/current`, from
/// which instances launched later start, and which turns the group's health checks over to
/// the target group; then rolls the instances that joined meanwhile (they started the image
/// named before). Returns what was updated, for the summary line.
async fn roll_fleet(
    aws: &Aws,
    environment: &Environment,
    fleet: &FleetSpec,
    action: Action<'_>,
) -> anyhow::Result<String> {
    let mut done = BTreeSet::new();
    rollout::settle(aws, environment, fleet).await?;
    rollout::roll(aws, environment, fleet, action, &mut done).await?;
    let (Action::Deploy(image) | Action::Rollback(image)) = action;
    let current = environment.parameter("deploy/current");
    aws.ssm
        .put_parameter()
        .name(&current)
        .r#type(ParameterType::String)
        .value(image)
        .overwrite(true)
        .send()
        .await
        .map_err(|e| explain(e, "ssm:PutParameter", &current))?;
    if let Some(group) = scaling_group::plan(aws, environment).await? {
        plan::apply(aws, environment, &[group]).await?;
    }
    rollout::settle(aws, environment, fleet).await?;
    rollout::roll(aws, environment, fleet, action, &mut done).await?;
    Ok(format!("{} fleet instances", done.len()))
}

/// Runs the update script on the runner; its output is shown either way, and a failure is an
/// error.
async fn switch(aws: &Aws, environment: &Environment, instance: &str, args: &[&str]) -> anyhow::Result<()> {
    let output = remote::update_script(aws, environment, Host::Runner, instance, args).await?;
    print!("{}", output.stdout);
    eprint!("{}", output.stderr);
    anyhow::ensure!(
        output.succeeded(),
        "the update on {instance} ended {}: the old container keeps serving (its output is above)",
        output.status
    );
    Ok(())
}

/// `rollback`: the kept previous container back (no version), or a deployed version again.
pub async fn rollback(environment: &Environment, to: Option<&str>) -> anyhow::Result<()> {
    let aws = Aws::connect(environment).await?;
    let lock = Lock::take(&aws, environment).await?;
    let outcome = rollback_locked(&aws, environment, to).await;
    let released = lock.release(&aws).await;
    outcome?;
    released
}

async fn rollback_locked(aws: &Aws, environment: &Environment, to: Option<&str>) -> anyhow::Result<()> {
    let history = History::read(aws, environment).await?;
    let target = history.find(to)?.clone();
    if let Some(fleet) = &environment.fleet {
        roll_fleet(aws, environment, fleet, Action::Rollback(&target.image)).await?;
    } else {
        let instance = instance_id(aws, environment).await?;
        let args: Vec<&str> = match to {
            None => vec!["rollback"],
            Some(_) => vec!["rollback", &target.image],
        };
        switch(aws, environment, &instance, &args).await?;
    }
    let deployment = Deployment { at: lock::now(), by: lock::whoami(), action: "rollback".into(), ..target.clone() };
    history.record(aws, environment, deployment).await?;
    println!("rolled {} back to {}", environment.name, target.image);
    Ok(())
}

/// `status`: the resources, the deploy history and lock, a fleet's instances, and what the
/// runner says it serves.
pub async fn status(environment: &Environment) -> anyhow::Result<()> {
    let aws = Aws::connect(environment).await?;
    println!("environment {} (account {}, region {})", environment.name, aws.account, aws.region);
    plan::print(&plan::plan(&aws, environment).await?);
    let history = History::read(&aws, environment).await?;
    for deployment in history.deployments.iter().rev() {
        println!(
            "{:>8} {} {} by {} (t={})",
            deployment.action, deployment.tag, deployment.image, deployment.by, deployment.at
        );
    }
    if let Some(holder) = lock::read(&aws, environment).await? {
        println!("locked by {} (expires in {} s)", holder.owner, holder.expires.saturating_sub(lock::now()));
    }
    let instance = runner::current(&aws, environment).await?;
    let id = instance.instance_id().unwrap_or_default();
    let state = instance.state().and_then(|s| s.name()).map(|n| n.as_str().to_string()).unwrap_or_default();
    let address = instance.public_ip_address().unwrap_or("no public address");
    if environment.fleet.is_some() {
        println!("runner {id}: {state}, {address} (trains; the fleet serves)");
        return super::fleet::status(&aws, environment).await;
    }
    println!("runner {id}: {state}, {address}");
    let output = remote::update_script(&aws, environment, Host::Runner, id, &["status"]).await?;
    print!("{}", output.stdout);
    anyhow::ensure!(output.succeeded(), "the status command on {id} ended {}: {}", output.status, output.stderr);
    Ok(())
}

/// `logs`: the live container's last lines, on the runner, on one instance of the fleet
/// (`--instance`), or on each of its instances in service.
pub async fn logs(environment: &Environment, lines: u32, instance: Option<&str>) -> anyhow::Result<()> {
    let aws = Aws::connect(environment).await?;
    let runner = instance_id(&aws, environment).await?;
    let fleet = match environment.fleet {
        Some(_) => rollout::in_service(&aws, environment).await?,
        None => Vec::new(),
    };
    let hosts: Vec<(Host, String)> = match instance {
        Some(id) if id == runner => vec![(Host::Runner, runner)],
        Some(id) if fleet.iter().any(|f| f == id) => vec![(Host::Fleet, id.to_string())],
        Some(id) => anyhow::bail!(
            "{id} is not one of environment {}'s instances: the runner is {runner}{}",
            environment.name,
            if fleet.is_empty() { String::new() } else { format!(", the fleet's in service {}", fleet.join(", ")) }
        ),
        None if fleet.is_empty() => vec![(Host::Runner, runner)],
        None => fleet.into_iter().map(|id| (Host::Fleet, id)).collect(),
    };
    let count = lines.to_string();
    for (host, id) in &hosts {
        if hosts.len() > 1 {
            println!("==> {id} <==");
        }
        let output = remote::update_script(&aws, environment, *host, id, &["logs", &count]).await?;
        print!("{}", output.stdout);
        eprint!("{}", output.stderr);
        anyhow::ensure!(output.succeeded(), "the logs command on {id} ended {}", output.status);
    }
    Ok(())
}
