//! The fleet's Auto Scaling group: between `min` and `max` instances launched from the launch
//! template's default version, spread over the fleet's subnets, registered in the target group,
//! replaced when the target group (not only EC2) finds them unhealthy after the grace period.
//!
//! `desired` is where the group starts. After that the scaling policy and `cargo xtask scale`
//! move it, so `plan` does not pull it back; it only keeps it within `min` and `max`.
//!
//! Before the first deploy the instances serve nothing and the target group finds them all
//! unhealthy: with ELB health checks Auto Scaling would replace them again and again. So the
//! group checks EC2's status only until `/netsec/<env>/deploy/current` names an image, and the
//! target group's from then on.

use std::time::{Duration, Instant};

use aws_sdk_autoscaling::types::{AutoScalingGroup, LaunchTemplateSpecification, Tag, TagDescription};

use super::environment::{Environment, FleetSpec};
use super::plan::{self, Change, Planned};
use super::{balancer, launch_template, target_group};
use crate::aws::{explain, while_profile_spreads, Aws};

pub const KIND: &str = "autoscaling group";
/// The template version the group launches from: whichever `apply` made the default.
const TEMPLATE_VERSION: &str = "$Default";
/// Instances are replaced when the load balancer's health check fails, not only EC2's...
const LOAD_BALANCER_HEALTH: &str = "ELB";
/// ...once an image is deployed; before that, when EC2 finds them impaired.
const INSTANCE_HEALTH: &str = "EC2";
/// A group's status while DeleteAutoScalingGroup runs (it has none otherwise).
const DELETING: &str = "Delete in progress";

/// `netsec-<env>-fleet`.
pub fn name(environment: &Environment) -> String {
    environment.resource_name("fleet")
}

/// The group's settings `apply` keeps as the file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    min: i32,
    max: i32,
    template: String,
    /// Sorted subnet ids.
    subnets: Vec<String>,
    health_check_type: String,
    grace_period: i32,
}

impl Settings {
    fn wanted(environment: &Environment, fleet: &FleetSpec, subnets: Vec<String>, deployed: bool) -> Settings {
        Settings {
            min: fleet.min as i32,
            max: fleet.max as i32,
            template: launch_template::name(environment),
            subnets,
            health_check_type: if deployed { LOAD_BALANCER_HEALTH } else { INSTANCE_HEALTH }.into(),
            grace_period: fleet.health.grace_period_seconds as i32,
        }
    }

    fn actual(group: &AutoScalingGroup) -> Settings {
        let template = group.launch_template().filter(|t| t.version() == Some(TEMPLATE_VERSION));
        let mut subnets: Vec<String> = group
            .vpc_zone_identifier()
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        subnets.sort();
        Settings {
            min: group.min_size().unwrap_or_default(),
            max: group.max_size().unwrap_or_default(),
            template: template.and_then(|t| t.launch_template_name()).unwrap_or_default().to_string(),
            subnets,
            health_check_type: group.health_check_type().unwrap_or_default().to_string(),
            grace_period: group.health_check_grace_period().unwrap_or_default(),
        }
    }

    fn describe(&self) -> String {
        format!(
            "{}–{} instances from {} ({TEMPLATE_VERSION}) in {}, {} health checks after {} s",
            self.min,
            self.max,
            self.template,
            self.subnets.join(", "),
            self.health_check_type,
            self.grace_period
        )
    }

    fn template(&self) -> LaunchTemplateSpecification {
        LaunchTemplateSpecification::builder().launch_template_name(&self.template).version(TEMPLATE_VERSION).build()
    }
}

#[derive(Debug, Clone)]
pub enum Step {
    /// With the desired count the file starts the group at.
    Create(Settings, i32),
    /// With the desired count moved within the new bounds, when it falls outside them.
    Update(Settings, Option<i32>),
    AttachTargetGroup,
    DetachTargetGroups(Vec<String>),
    Tag(Vec<(String, String)>),
    /// Terminates the instances with the group, and waits until they are gone.
    Delete(String),
}

impl Step {
    pub fn describe(&self) -> String {
        match self {
            Step::Create(settings, desired) => format!("create, {desired} instances: {}", settings.describe()),
            Step::Update(settings, desired) => {
                let desired = desired.map(|d| format!(" (desired capacity {d})")).unwrap_or_default();
                format!("set {}{desired}", settings.describe())
            }
            Step::AttachTargetGroup => "register its instances in the target group".into(),
            Step::DetachTargetGroups(arns) => format!("stop registering in {}", arns.join(", ")),
            Step::Tag(tags) => format!("tag {} (and the instances it launches)", plan::show_tags(tags)),
            Step::Delete(name) => format!("delete {name} and terminate its instances"),
        }
    }

    pub async fn run(&self, aws: &Aws, environment: &Environment) -> anyhow::Result<()> {
        let name = name(environment);
        match self {
            Step::Create(settings, desired) => create(aws, environment, settings, *desired).await,
            Step::Update(settings, desired) => {
                let request = aws
                    .autoscaling
                    .update_auto_scaling_group()
                    .auto_scaling_group_name(&name)
                    .min_size(settings.min)
                    .max_size(settings.max)
                    .set_desired_capacity(*desired)
                    .launch_template(settings.template())
                    .vpc_zone_identifier(settings.subnets.join(","))
                    .health_check_type(&settings.health_check_type)
                    .health_check_grace_period(settings.grace_period);
                let updated = while_profile_spreads(|| request.clone().send()).await;
                updated.map_err(|e| explain(e, "autoscaling:UpdateAutoScalingGroup", &name))?;
                Ok(())
            }
            Step::AttachTargetGroup => {
                let arn = target_group::arn(aws, environment).await?;
                aws.autoscaling
                    .attach_load_balancer_target_groups()
                    .auto_scaling_group_name(&name)
                    .target_group_arns(arn)
                    .send()
                    .await
                    .map_err(|e| explain(e, "autoscaling:AttachLoadBalancerTargetGroups", &name))?;
                Ok(())
            }
            Step::DetachTargetGroups(arns) => {
                aws.autoscaling
                    .detach_load_balancer_target_groups()
                    .auto_scaling_group_name(&name)
                    .set_target_group_arns(Some(arns.clone()))
                    .send()
                    .await
                    .map_err(|e| explain(e, "autoscaling:DetachLoadBalancerTargetGroups", &name))?;
                Ok(())
            }
            Step::Tag(pairs) => {
                aws.autoscaling
                    .create_or_update_tags()
                    .set_tags(Some(tags(&name, pairs)))
                    .send()
                    .await
                    .map_err(|e| explain(e, "autoscaling:CreateOrUpdateTags", &name))?;
                Ok(())
            }
            Step::Delete(group) => delete(aws, environment, group).await,
        }
    }
}

/// The group's tags, each propagated to the instances it launches (so that they are found as
/// the environment's, and `destroy` can tell them apart from the runner by Auto Scaling's own).
fn tags(group: &str, pairs: &[(String, String)]) -> Vec<Tag> {
    pairs
        .iter()
        .map(|(key, value)| {
            Tag::builder()
                .resource_id(group)
                .resource_type("auto-scaling-group")
                .key(key)
                .value(value)
                .propagate_at_launch(true)
                .build()
        })
        .collect()
}

fn pairs<'a>(tags: impl Iterator<Item = &'a TagDescription>) -> Vec<(String, String)> {
    tags.map(|t| (t.key().unwrap_or_default().to_string(), t.value().unwrap_or_default().to_string())).collect()
}

async fn create(aws: &Aws, environment: &Environment, settings: &Settings, desired: i32) -> anyhow::Result<()> {
    let name = name(environment);
    let target_group = target_group::arn(aws, environment).await?;
    let request = aws
        .autoscaling
        .create_auto_scaling_group()
        .auto_scaling_group_name(&name)
        .launch_template(settings.template())
        .min_size(settings.min)
        .max_size(settings.max)
        .desired_capacity(desired)
        .vpc_zone_identifier(settings.subnets.join(","))
        .target_group_arns(target_group)
        .health_check_type(&settings.health_check_type)
        .health_check_grace_period(settings.grace_period)
        .set_tags(Some(tags(&name, &plan::tag_pairs(environment, &name))));
    // Auto Scaling checks the template's instance profile, which apply has just made.
    let created = while_profile_spreads(|| request.clone().send()).await;
    created.map_err(|e| explain(e, "autoscaling:CreateAutoScalingGroup", &name))?;
    Ok(())
}

/// The group named `name`, unless it is gone or going.
pub async fn find(aws: &Aws, name: &str) -> anyhow::Result<Option<AutoScalingGroup>> {
    Ok(describe(aws, name).await?.filter(|group| !is_being_deleted(group)))
}

/// The group named `name`, even while it is being deleted.
async fn describe(aws: &Aws, name: &str) -> anyhow::Result<Option<AutoScalingGroup>> {
    let found = aws
        .autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .map_err(|e| explain(e, "autoscaling:DescribeAutoScalingGroups", name))?;
    Ok(found.auto_scaling_groups().first().cloned())
}

fn is_being_deleted(group: &AutoScalingGroup) -> bool {
    group.status() == Some(DELETING)
}

/// ForceDelete terminates the instances (after their targets drain); the group is gone once
/// they are, and only then can the instances' security group go. A group already being deleted
/// is only waited for.
async fn delete(aws: &Aws, environment: &Environment, group: &str) -> anyhow::Result<()> {
    if !describe(aws, group).await?.is_some_and(|g| is_being_deleted(&g)) {
        aws.autoscaling
            .delete_auto_scaling_group()
            .auto_scaling_group_name(group)
            .force_delete(true)
            .send()
            .await
            .map_err(|e| explain(e, "autoscaling:DeleteAutoScalingGroup", group))?;
    }
    let draining = environment.fleet.as_ref().map_or(0, |f| f.health.deregistration_delay_seconds);
    let limit = Duration::from_secs(600 + u64::from(draining));
    let deadline = Instant::now() + limit;
    while let Some(found) = describe(aws, group).await? {
        let left = found.instances().len();
        anyhow::ensure!(
            Instant::now() < deadline,
            "{group} is still being deleted after {} s ({left} instances left): run `cargo xtask destroy` again",
            limit.as_secs()
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    Ok(())
}

/// The group the fleet wants (none without a fleet: `teardown` then finds it extra).
pub async fn plan(aws: &Aws, environment: &Environment) -> anyhow::Result<Option<Planned>> {
    let Some(fleet) = &environment.fleet else { return Ok(None) };
    let name = name(environment);
    let subnets = balancer::subnets(aws, environment, fleet).await?;
    let deployed = aws.parameter(&environment.parameter("deploy/current")).await?.is_some();
    let wanted = Settings::wanted(environment, fleet, subnets, deployed);
    let wrap = |steps: Vec<Step>| steps.into_iter().map(plan::Step::ScalingGroup).collect();
    let Some(group) = find(aws, &name).await? else {
        return Ok(Some(Planned::new(KIND, name, true, wrap(vec![Step::Create(wanted, fleet.desired as i32)]))));
    };
    let mut steps = Vec::new();
    if Settings::actual(&group) != wanted {
        let desired = group.desired_capacity().unwrap_or_default();
        let clamped = desired.clamp(wanted.min, wanted.max);
        steps.push(Step::Update(wanted, (clamped != desired).then_some(clamped)));
    }
    let target_group = target_group::find(aws, environment).await?.and_then(|g| g.target_group_arn);
    let attached = group.target_group_arns();
    if !target_group.as_ref().is_some_and(|arn| attached.contains(arn)) {
        steps.push(Step::AttachTargetGroup);
    }
    let others: Vec<String> = attached.iter().filter(|arn| Some(*arn) != target_group.as_ref()).cloned().collect();
    if !others.is_empty() {
        steps.push(Step::DetachTargetGroups(others));
    }
    // A tag that does not propagate leaves the instances untagged: it counts as missing.
    let propagated = group.tags().iter().filter(|t| t.propagate_at_launch() == Some(true));
    let missing = plan::missing_tags(&plan::tag_pairs(environment, &name), &pairs(propagated));
    if !missing.is_empty() {
        steps.push(Step::Tag(missing));
    }
    Ok(Some(Planned::new(KIND, name, false, wrap(steps))))
}

/// Every group tagged for the environment (first of all: its instances hold the security
/// group, and it launches from the template).
pub async fn teardown(aws: &Aws, environment: &Environment) -> anyhow::Result<Vec<Planned>> {
    let mut pages = aws.autoscaling.describe_auto_scaling_groups().into_paginator().items().send();
    let mut planned = Vec::new();
    while let Some(group) =
        pages.try_next().await.map_err(|e| explain(e, "autoscaling:DescribeAutoScalingGroups", "*"))?
    {
        if plan::is_tagged_for(environment, &pairs(group.tags().iter())) {
            let name = group.auto_scaling_group_name().unwrap_or_default().to_string();
            let steps = vec![plan::Step::ScalingGroup(Step::Delete(name.clone()))];
            planned.push(Planned { kind: KIND, name, change: Change::Delete, steps });
        }
    }
    Ok(planned)
}
