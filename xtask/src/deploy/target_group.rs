//! The fleet's target group: the instances on the service port, health-checked on
//! `fleet.health.path` as the file says, drained for `deregistration_delay_seconds` when they
//! leave (a rolling deploy deregisters a batch and waits that long before touching it).

use aws_sdk_elasticloadbalancingv2::types::{Matcher, ProtocolEnum, TargetGroup, TargetGroupAttribute, TargetTypeEnum};

use super::environment::{Environment, FleetSpec};
use super::plan::{self, Planned};
use crate::aws::{code, explain, Aws};

pub const KIND: &str = "elb target group";
const DEREGISTRATION_DELAY: &str = "deregistration_delay.timeout_seconds";
/// The health check asks the port the target serves on.
const TRAFFIC_PORT: &str = "traffic-port";

/// `netsec-<env>-web` (ELB names have at most 32 characters; an environment's, 20).
pub fn name(environment: &Environment) -> String {
    environment.resource_name("web")
}

/// The health check the file asks for, in the API's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    path: String,
    interval: i32,
    timeout: i32,
    healthy: i32,
    unhealthy: i32,
}

impl HealthCheck {
    fn wanted(fleet: &FleetSpec) -> HealthCheck {
        let health = &fleet.health;
        HealthCheck {
            path: health.path.clone(),
            interval: health.interval_seconds as i32,
            timeout: health.timeout_seconds as i32,
            healthy: health.healthy_threshold as i32,
            unhealthy: health.unhealthy_threshold as i32,
        }
    }

    /// The group's check; anything but HTTP on the traffic port expecting 200 counts as other.
    fn actual(group: &TargetGroup) -> Option<HealthCheck> {
        let http = group.health_check_protocol() == Some(&ProtocolEnum::Http)
            && group.health_check_port() == Some(TRAFFIC_PORT)
            && group.matcher().and_then(Matcher::http_code) == Some("200")
            && group.health_check_enabled() != Some(false);
        http.then(|| HealthCheck {
            path: group.health_check_path().unwrap_or_default().to_string(),
            interval: group.health_check_interval_seconds().unwrap_or_default(),
            timeout: group.health_check_timeout_seconds().unwrap_or_default(),
            healthy: group.healthy_threshold_count().unwrap_or_default(),
            unhealthy: group.unhealthy_threshold_count().unwrap_or_default(),
        })
    }

    fn describe(&self) -> String {
        format!(
            "GET {} every {} s (timeout {} s, healthy after {}, unhealthy after {})",
            self.path, self.interval, self.timeout, self.healthy, self.unhealthy
        )
    }
}

#[derive(Debug, Clone)]
pub enum Step {
    Create(HealthCheck),
    SetHealthCheck(HealthCheck),
    SetDeregistrationDelay(u32),
    Delete(String),
}

impl Step {
    pub fn describe(&self) -> String {
        match self {
            Step::Create(check) => format!("create, health check {}", check.describe()),
            Step::SetHealthCheck(check) => format!("health check {}", check.describe()),
            Step::SetDeregistrationDelay(seconds) => format!("drain deregistered targets for {seconds} s"),
            Step::Delete(arn) => format!("delete {arn}"),
        }
    }

    pub async fn run(&self, aws: &Aws, environment: &Environment) -> anyhow::Result<()> {
        let name = name(environment);
        match self {
            Step::Create(check) => create(aws, environment, check).await,
            Step::SetHealthCheck(check) => {
                let arn = arn(aws, environment).await?;
                let call = aws.elb.modify_target_group().target_group_arn(&arn);
                let call = call.health_check_protocol(ProtocolEnum::Http).health_check_port(TRAFFIC_PORT);
                let call = call.health_check_enabled(true).matcher(Matcher::builder().http_code("200").build());
                call.health_check_path(&check.path)
                    .health_check_interval_seconds(check.interval)
                    .health_check_timeout_seconds(check.timeout)
                    .healthy_threshold_count(check.healthy)
                    .unhealthy_threshold_count(check.unhealthy)
                    .send()
                    .await
                    .map_err(|e| explain(e, "elasticloadbalancing:ModifyTargetGroup", &name))?;
                Ok(())
            }
            Step::SetDeregistrationDelay(seconds) => {
                let arn = arn(aws, environment).await?;
                let attribute = TargetGroupAttribute::builder().key(DEREGISTRATION_DELAY).value(seconds.to_string());
                aws.elb
                    .modify_target_group_attributes()
                    .target_group_arn(&arn)
                    .attributes(attribute.build())
                    .send()
                    .await
                    .map_err(|e| explain(e, "elasticloadbalancing:ModifyTargetGroupAttributes", &name))?;
                Ok(())
            }
            Step::Delete(arn) => {
                let deleted = aws.elb.delete_target_group().target_group_arn(arn).send().await;
                deleted.map_err(|e| explain(e, "elasticloadbalancing:DeleteTargetGroup", arn))?;
                Ok(())
            }
        }
    }
}

async fn create(aws: &Aws, environment: &Environment, check: &HealthCheck) -> anyhow::Result<()> {
    let name = name(environment);
    let vpc = super::runner::vpc(aws, environment).await?;
    aws.elb
        .create_target_group()
        .name(&name)
        .protocol(ProtocolEnum::Http)
        .port(environment.service.port.into())
        .vpc_id(vpc)
        .target_type(TargetTypeEnum::Instance)
        .health_check_enabled(true)
        .health_check_protocol(ProtocolEnum::Http)
        .health_check_port(TRAFFIC_PORT)
        .health_check_path(&check.path)
        .health_check_interval_seconds(check.interval)
        .health_check_timeout_seconds(check.timeout)
        .healthy_threshold_count(check.healthy)
        .unhealthy_threshold_count(check.unhealthy)
        .matcher(Matcher::builder().http_code("200").build())
        .set_tags(Some(super::elb::tags(environment, &name)))
        .send()
        .await
        .map_err(|e| explain(e, "elasticloadbalancing:CreateTargetGroup", &name))?;
    Ok(())
}

/// The environment's target group, by name.
pub async fn find(aws: &Aws, environment: &Environment) -> anyhow::Result<Option<TargetGroup>> {
    let name = name(environment);
    match aws.elb.describe_target_groups().names(&name).send().await {
        Ok(found) => Ok(found.target_groups().first().cloned()),
        Err(e) if code(&e) == Some("TargetGroupNotFound") => Ok(None),
        Err(e) => Err(explain(e, "elasticloadbalancing:DescribeTargetGroups", &name)),
    }
}

pub async fn arn(aws: &Aws, environment: &Environment) -> anyhow::Result<String> {
    let group = find(aws, environment).await?;
    group.and_then(|g| g.target_group_arn).ok_or_else(|| {
        anyhow::anyhow!("the target group {} does not exist: run `cargo xtask apply`", name(environment))
    })
}

async fn deregistration_delay(aws: &Aws, arn: &str) -> anyhow::Result<Option<u32>> {
    let found = aws
        .elb
        .describe_target_group_attributes()
        .target_group_arn(arn)
        .send()
        .await
        .map_err(|e| explain(e, "elasticloadbalancing:DescribeTargetGroupAttributes", arn))?;
    let value = found.attributes().iter().find(|a| a.key() == Some(DEREGISTRATION_DELAY)).and_then(|a| a.value());
    Ok(value.and_then(|v| v.parse().ok()))
}

/// The target group the fleet wants (none without a fleet: `teardown` then finds it extra).
pub async fn plan(aws: &Aws, environment: &Environment) -> anyhow::Result<Option<Planned>> {
    let Some(fleet) = &environment.fleet else { return Ok(None) };
    let name = name(environment);
    let wanted = HealthCheck::wanted(fleet);
    let delay = fleet.health.deregistration_delay_seconds;
    let Some(group) = find(aws, environment).await? else {
        let steps = vec![Step::Create(wanted), Step::SetDeregistrationDelay(delay)];
        return Ok(Some(Planned::new(KIND, name, true, steps.into_iter().map(plan::Step::TargetGroup).collect())));
    };
    let port = i32::from(environment.service.port);
    anyhow::ensure!(
        group.port() == Some(port),
        "the target group {name} forwards to port {}, the file says service.port {port}: a target group's port \
         cannot change; `cargo xtask destroy` the environment and apply it again",
        group.port().unwrap_or_default()
    );
    let mut steps = Vec::new();
    if HealthCheck::actual(&group).as_ref() != Some(&wanted) {
        steps.push(Step::SetHealthCheck(wanted));
    }
    if deregistration_delay(aws, group.target_group_arn().unwrap_or_default()).await? != Some(delay) {
        steps.push(Step::SetDeregistrationDelay(delay));
    }
    Ok(Some(Planned::new(KIND, name, false, steps.into_iter().map(plan::Step::TargetGroup).collect())))
}

/// Every target group tagged for the environment (after the balancer: one in use by a
/// listener cannot go).
pub async fn teardown(aws: &Aws, environment: &Environment) -> anyhow::Result<Vec<Planned>> {
    let mut pages = aws.elb.describe_target_groups().into_paginator().items().send();
    let mut groups = Vec::new();
    while let Some(group) =
        pages.try_next().await.map_err(|e| explain(e, "elasticloadbalancing:DescribeTargetGroups", "*"))?
    {
        groups.push((group.target_group_arn.unwrap_or_default(), group.target_group_name.unwrap_or_default()));
    }
    super::elb::deletions(aws, environment, KIND, groups, |arn| plan::Step::TargetGroup(Step::Delete(arn))).await
}
