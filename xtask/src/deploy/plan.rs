//! Desired against actual: every resource of an environment is read, compared with what the
//! environment file wants, and turned into the steps that would make them equal. `plan` prints
//! the steps, `apply` carries them out in order, `destroy` removes whatever is tagged.
//!
//! Order matters and is fixed: the roles and their instance profiles and the security groups
//! before the instances and the load balancer that use them, the target group before the
//! balancer's listener that forwards to it, the launch template before the Auto Scaling group
//! that launches from it, the group before its scaling policy; on destroy, the reverse.

use super::environment::Environment;
use super::{
    balancer, bucket, firewall, launch_template, repository, role, runner, scaling_group, scaling_policy, target_group,
};
use crate::aws::Aws;

/// One resource's verdict.
#[derive(Debug)]
pub struct Planned {
    pub kind: &'static str,
    pub name: String,
    pub change: Change,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Create,
    Update,
    Replace,
    Delete,
    Unchanged,
}

impl Change {
    fn sign(self) -> &'static str {
        match self {
            Change::Create => "+ create ",
            Change::Update => "~ update ",
            Change::Replace => "± replace",
            Change::Delete => "- delete ",
            Change::Unchanged => "  no change",
        }
    }
}

/// One call (or a few that belong together) that moves a resource towards what is wanted.
#[derive(Debug, Clone)]
pub enum Step {
    Repository(repository::Step),
    Bucket(bucket::Step),
    Role(role::Step),
    Firewall(firewall::Step),
    TargetGroup(target_group::Step),
    Balancer(balancer::Step),
    LaunchTemplate(launch_template::Step),
    ScalingGroup(scaling_group::Step),
    ScalingPolicy(scaling_policy::Step),
    Runner(runner::Step),
}

impl Step {
    pub fn describe(&self) -> String {
        match self {
            Step::Repository(step) => step.describe(),
            Step::Bucket(step) => step.describe(),
            Step::Role(step) => step.describe(),
            Step::Firewall(step) => step.describe(),
            Step::TargetGroup(step) => step.describe(),
            Step::Balancer(step) => step.describe(),
            Step::LaunchTemplate(step) => step.describe(),
            Step::ScalingGroup(step) => step.describe(),
            Step::ScalingPolicy(step) => step.describe(),
            Step::Runner(step) => step.describe(),
        }
    }

    async fn run(&self, aws: &Aws, environment: &Environment) -> anyhow::Result<()> {
        match self {
            Step::Repository(step) => step.run(aws, environment).await,
            Step::Bucket(step) => step.run(aws, environment).await,
            Step::Role(step) => step.run(aws, environment).await,
            Step::Firewall(step) => step.run(aws, environment).await,
            Step::TargetGroup(step) => step.run(aws, environment).await,
            Step::Balancer(step) => step.run(aws, environment).await,
            Step::LaunchTemplate(step) => step.run(aws, environment).await,
            Step::ScalingGroup(step) => step.run(aws, environment).await,
            Step::ScalingPolicy(step) => step.run(aws, environment).await,
            Step::Runner(step) => step.run(aws, environment).await,
        }
    }
}

impl Planned {
    /// A resource that needs `steps` (none: unchanged; `created`: it does not exist yet).
    pub fn new(kind: &'static str, name: impl Into<String>, created: bool, steps: Vec<Step>) -> Planned {
        let change = match (created, steps.is_empty()) {
            (true, _) => Change::Create,
            (false, true) => Change::Unchanged,
            (false, false) => Change::Update,
        };
        Planned { kind, name: name.into(), change, steps }
    }
}

/// Every resource of the environment, in the order `apply` goes.
pub async fn plan(aws: &Aws, environment: &Environment) -> anyhow::Result<Vec<Planned>> {
    let mut planned = vec![repository::plan(aws, environment).await?, bucket::plan(aws, environment).await?];
    planned.extend(role::plan(aws, environment).await?);
    planned.extend(firewall::plan(aws, environment).await?);
    planned.extend(target_group::plan(aws, environment).await?);
    planned.extend(balancer::plan(aws, environment).await?);
    planned.extend(launch_template::plan(aws, environment).await?);
    planned.extend(scaling_group::plan(aws, environment).await?);
    planned.extend(scaling_policy::plan(aws, environment).await?);
    planned.extend(runner::plan(aws, environment).await?);
    // Resources tagged for the environment that it no longer names (a renamed bucket, say).
    for extra in teardown(aws, environment).await? {
        let known = planned.iter().any(|p| p.kind == extra.kind && p.name == extra.name)
            // bootstrap's deploy role is the environment's too (destroy removes it).
            || (extra.kind == role::ROLE && extra.name == environment.deploy_role());
        if !known && !matches!(extra.kind, runner::INSTANCE | runner::PARAMETER) {
            planned.push(extra);
        }
    }
    Ok(planned)
}

/// What `destroy` would remove: every resource tagged for the environment, the instances
/// first (the fleet's with their group, which takes its scaling policy along).
pub async fn teardown(aws: &Aws, environment: &Environment) -> anyhow::Result<Vec<Planned>> {
    let mut planned = scaling_group::teardown(aws, environment).await?;
    planned.extend(launch_template::teardown(aws, environment).await?);
    planned.extend(runner::teardown(aws, environment).await?);
    planned.extend(balancer::teardown(aws, environment).await?);
    planned.extend(target_group::teardown(aws, environment).await?);
    planned.extend(firewall::teardown(aws, environment).await?);
    planned.extend(role::teardown(aws, environment).await?);
    planned.extend(bucket::teardown(aws, environment).await?);
    planned.extend(repository::teardown(aws, environment).await?);
    planned.extend(runner::teardown_parameters(aws, environment).await?);
    Ok(planned)
}

/// Prints the plan, resource by resource, and a summary line; returns whether anything changes.
pub fn print(planned: &[Planned]) -> bool {
    for resource in planned {
        println!("{} {:<22} {}", resource.change.sign(), resource.kind, resource.name);
        for step in &resource.steps {
            println!("      · {}", step.describe());
        }
    }
    let count = |change: Change| planned.iter().filter(|p| p.change == change).count();
    println!(
        "plan: {} to create, {} to update, {} to replace, {} to delete, {} unchanged",
        count(Change::Create),
        count(Change::Update),
        count(Change::Replace),
        count(Change::Delete),
        count(Change::Unchanged)
    );
    planned.iter().any(|p| !p.steps.is_empty())
}

/// Carries the steps out in order, stopping at the first failure (what was done stays done,
/// and the next `plan` shows what is left).
pub async fn apply(aws: &Aws, environment: &Environment, planned: &[Planned]) -> anyhow::Result<()> {
    for resource in planned.iter().filter(|p| !p.steps.is_empty()) {
        for step in &resource.steps {
            eprintln!("xtask: {} {}: {}", resource.kind, resource.name, step.describe());
            step.run(aws, environment).await?;
        }
    }
    Ok(())
}

/// `netsec:env=<env>` (and `Name`) as the EC2 API's tag type.
pub fn tag_pairs(environment: &Environment, name: &str) -> Vec<(String, String)> {
    vec![
        (super::environment::ENV_TAG.to_string(), environment.name.clone()),
        ("Name".to_string(), name.to_string()),
        ("netsec:managed-by".to_string(), "cargo-xtask".to_string()),
    ]
}

/// The tags `wanted` that `actual` lacks or holds with another value.
pub fn missing_tags(wanted: &[(String, String)], actual: &[(String, String)]) -> Vec<(String, String)> {
    wanted.iter().filter(|pair| !actual.contains(pair)).cloned().collect()
}

/// Whether `tags` mark a resource of `environment`.
pub fn is_tagged_for(environment: &Environment, tags: &[(String, String)]) -> bool {
    tags.iter().any(|(k, v)| k == super::environment::ENV_TAG && *v == environment.name)
}

/// `k=v, k=v`, for the plan.
pub fn show_tags(pairs: &[(String, String)]) -> String {
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
}
