//! The fleet's scaling policy: target tracking on requests per instance (counted by the load
//! balancer for the fleet's target group) or on the group's average CPU. Auto Scaling makes and
//! owns the CloudWatch alarms; none is made here. Without `fleet.scaling` there is no policy and
//! the group stays at the size it is given.

use aws_sdk_autoscaling::types::{
    MetricType, PredefinedMetricSpecification, ScalingPolicy, TargetTrackingConfiguration,
};

use super::environment::{Environment, ScalingMetric, ScalingSpec};
use super::plan::{self, Change, Planned};
use super::{balancer, scaling_group, target_group};
use crate::aws::{explain, Aws};

pub const KIND: &str = "autoscaling policy";
const TARGET_TRACKING: &str = "TargetTrackingScaling";

/// `netsec-<env>-scaling`.
pub fn name(environment: &Environment) -> String {
    environment.resource_name("scaling")
}

/// What the policy tracks, in the API's terms.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracking {
    metric: MetricType,
    /// `app/<balancer>/<id>/targetgroup/<group>/<id>` for requests per target; none for CPU.
    resource_label: Option<String>,
    target: f64,
}

impl Tracking {
    fn actual(policy: &ScalingPolicy) -> Option<Tracking> {
        let tracking = policy.target_tracking_configuration()?;
        let metric = tracking.predefined_metric_specification()?;
        let metric_type = metric.predefined_metric_type()?.clone();
        (policy.policy_type() == Some(TARGET_TRACKING)).then(|| Tracking {
            metric: metric_type,
            resource_label: metric.resource_label().map(str::to_string),
            target: tracking.target_value().unwrap_or_default(),
        })
    }

    fn configuration(&self) -> TargetTrackingConfiguration {
        let metric = PredefinedMetricSpecification::builder()
            .predefined_metric_type(self.metric.clone())
            .set_resource_label(self.resource_label.clone());
        TargetTrackingConfiguration::builder()
            .predefined_metric_specification(metric.build())
            .target_value(self.target)
            .build()
    }

    fn describe(&self) -> String {
        format!("track {} at {}", self.metric.as_str(), self.target)
    }
}

/// The label CloudWatch knows a target group's request count by: the balancer's ARN from
/// `app/` on, then the target group's from `targetgroup/` on.
fn resource_label(balancer_arn: &str, target_group_arn: &str) -> Option<String> {
    let balancer = balancer_arn.split_once(":loadbalancer/")?.1;
    let group = target_group_arn.find("targetgroup/").map(|at| &target_group_arn[at..])?;
    Some(format!("{balancer}/{group}"))
}

async fn wanted(aws: &Aws, environment: &Environment, scaling: &ScalingSpec) -> anyhow::Result<Tracking> {
    let (metric, resource_label) = match scaling.metric {
        ScalingMetric::AverageCpuUtilization => (MetricType::AsgAverageCpuUtilization, None),
        ScalingMetric::RequestCountPerTarget => {
            let balancer = balancer::find(aws, environment).await?.and_then(|b| b.load_balancer_arn);
            let group = target_group::find(aws, environment).await?.and_then(|g| g.target_group_arn);
            // Before the first apply there is no ARN yet: the step works it out when it runs.
            let label = balancer.zip(group).and_then(|(b, g)| resource_label(&b, &g));
            (MetricType::AlbRequestCountPerTarget, label)
        }
    };
    Ok(Tracking { metric, resource_label, target: scaling.target })
}

#[derive(Debug, Clone)]
pub enum Step {
    Put(Tracking),
    Delete(String),
}

impl Step {
    pub fn describe(&self) -> String {
        match self {
            Step::Put(tracking) => tracking.describe(),
            Step::Delete(name) => format!("delete {name} (the group keeps its size)"),
        }
    }

    pub async fn run(&self, aws: &Aws, environment: &Environment) -> anyhow::Result<()> {
        let (group, name) = (scaling_group::name(environment), name(environment));
        match self {
            Step::Put(_) => {
                let scaling = environment.fleet.as_ref().and_then(|f| f.scaling.as_ref());
                let scaling = scaling.ok_or_else(|| anyhow::anyhow!("the environment has no fleet.scaling"))?;
                let tracking = wanted(aws, environment, scaling).await?;
                anyhow::ensure!(
                    tracking.metric != MetricType::AlbRequestCountPerTarget || tracking.resource_label.is_some(),
                    "tracking requests per target needs the load balancer and the target group: run `cargo xtask apply`"
                );
                aws.autoscaling
                    .put_scaling_policy()
                    .auto_scaling_group_name(&group)
                    .policy_name(&name)
                    .policy_type(TARGET_TRACKING)
                    .target_tracking_configuration(tracking.configuration())
                    .send()
                    .await
                    .map_err(|e| explain(e, "autoscaling:PutScalingPolicy", &name))?;
            }
            Step::Delete(policy) => {
                aws.autoscaling
                    .delete_policy()
                    .auto_scaling_group_name(&group)
                    .policy_name(policy)
                    .send()
                    .await
                    .map_err(|e| explain(e, "autoscaling:DeletePolicy", policy))?;
            }
        }
        Ok(())
    }
}

/// The group's policies (none when the group does not exist yet).
async fn policies(aws: &Aws, environment: &Environment) -> anyhow::Result<Vec<ScalingPolicy>> {
    let group = scaling_group::name(environment);
    if scaling_group::find(aws, &group).await?.is_none() {
        return Ok(Vec::new());
    }
    let found = aws
        .autoscaling
        .describe_policies()
        .auto_scaling_group_name(&group)
        .send()
        .await
        .map_err(|e| explain(e, "autoscaling:DescribePolicies", &group))?;
    Ok(found.scaling_policies().to_vec())
}

/// The policy `fleet.scaling` asks for, and any other policy on the group to delete (the
/// group's policies go with it on destroy).
pub async fn plan(aws: &Aws, environment: &Environment) -> anyhow::Result<Vec<Planned>> {
    let Some(fleet) = &environment.fleet else { return Ok(Vec::new()) };
    let name = name(environment);
    let existing = policies(aws, environment).await?;
    let mut planned: Vec<Planned> = existing
        .iter()
        .filter_map(|p| p.policy_name())
        .filter(|policy| fleet.scaling.is_none() || *policy != name)
        .map(|policy| Planned {
            kind: KIND,
            name: policy.to_string(),
            change: Change::Delete,
            steps: vec![plan::Step::ScalingPolicy(Step::Delete(policy.to_string()))],
        })
        .collect();
    let Some(scaling) = &fleet.scaling else { return Ok(planned) };
    let wanted = wanted(aws, environment, scaling).await?;
    let current = existing.iter().find(|p| p.policy_name() == Some(name.as_str()));
    let steps = match current.and_then(Tracking::actual) {
        Some(actual) if actual == wanted => Vec::new(),
        _ => vec![plan::Step::ScalingPolicy(Step::Put(wanted))],
    };
    planned.push(Planned::new(KIND, name, current.is_none(), steps));
    Ok(planned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resource_label_joins_the_balancer_and_the_target_group() {
        let balancer =
            "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/netsec-fleet-alb/50dc6c495c0c9188";
        let group = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/netsec-fleet-web/73e2d6bc24d8a067";
        assert_eq!(
            resource_label(balancer, group).as_deref(),
            Some("app/netsec-fleet-alb/50dc6c495c0c9188/targetgroup/netsec-fleet-web/73e2d6bc24d8a067")
        );
        assert_eq!(resource_label("arn:aws:s3:::bucket", group), None);
    }
}
