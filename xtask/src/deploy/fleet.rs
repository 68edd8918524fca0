//! A fleet's instances as Auto Scaling and the target group see them (`status`), and its size
//! (`scale`). The group and the target group themselves are made by `apply` (scaling_group.rs,
//! target_group.rs).

use aws_sdk_autoscaling::types::AutoScalingGroup;
use aws_sdk_elasticloadbalancingv2::types::{TargetDescription, TargetHealthDescription};

use super::environment::{Environment, FleetSpec};
use super::{remote, scaling_group, target_group};
use crate::aws::{explain, Aws};

/// The fleet's group, or why there is none.
async fn group(aws: &Aws, environment: &Environment) -> anyhow::Result<AutoScalingGroup> {
    let name = scaling_group::name(environment);
    let group = scaling_group::find(aws, &name).await?;
    group.ok_or_else(|| anyhow::anyhow!("the fleet's group {name} does not exist: run `cargo xtask apply`"))
}

fn fleet(environment: &Environment) -> anyhow::Result<&FleetSpec> {
    environment.fleet.as_ref().ok_or_else(|| {
        anyhow::anyhow!("environment {} has no fleet: add a `fleet:` section (see infra/fleet.yaml)", environment.name)
    })
}

/// `scale --desired N`: within the file's `min` and `max` (checked here: Auto Scaling refuses
/// a count outside the group's bounds too, but says less).
pub async fn scale(environment: &Environment, desired: u32) -> anyhow::Result<()> {
    let spec = fleet(environment)?;
    anyhow::ensure!(
        (spec.min..=spec.max).contains(&desired),
        "--desired {desired} is outside the fleet's bounds: fleet.min is {} and fleet.max is {} in the environment \
         file; change them there and `cargo xtask apply` first",
        spec.min,
        spec.max
    );
    let aws = Aws::connect(environment).await?;
    let group = group(&aws, environment).await?;
    let name = group.auto_scaling_group_name().unwrap_or_default();
    let before = group.desired_capacity().unwrap_or_default();
    if before == desired as i32 {
        println!("{name}: desired capacity is {desired} already");
        return Ok(());
    }
    aws.autoscaling
        .set_desired_capacity()
        .auto_scaling_group_name(name)
        .desired_capacity(desired as i32)
        .honor_cooldown(false)
        .send()
        .await
        .map_err(|e| explain(e, "autoscaling:SetDesiredCapacity", name))?;
    println!("{name}: desired capacity {before} → {desired} (Auto Scaling launches or terminates instances)");
    if spec.scaling.is_some() {
        println!("note: the scaling policy moves the count again as the load changes");
    }
    Ok(())
}

/// The target group's view of `instances`: (state, reason) by instance id.
async fn target_health(
    aws: &Aws,
    environment: &Environment,
    instances: &[String],
) -> anyhow::Result<Vec<TargetHealthDescription>> {
    let arn = target_group::arn(aws, environment).await?;
    let port = i32::from(environment.service.port);
    let targets = instances.iter().map(|id| TargetDescription::builder().id(id).port(port).build());
    let found = aws
        .elb
        .describe_target_health()
        .target_group_arn(&arn)
        .set_targets(Some(targets.collect()))
        .send()
        .await
        .map_err(|e| explain(e, "elasticloadbalancing:DescribeTargetHealth", &arn))?;
    Ok(found.target_health_descriptions().to_vec())
}

/// `status` for a fleet: the group's size and health checks, then each instance with its zone,
/// Auto Scaling's view, the target group's (with the reason when not healthy), and what it
/// serves (its update script's `status`, through SSM).
pub async fn status(aws: &Aws, environment: &Environment) -> anyhow::Result<()> {
    let group = group(aws, environment).await?;
    println!(
        "fleet {}: {} instances (min {}, desired {}, max {}), {} health checks",
        group.auto_scaling_group_name().unwrap_or_default(),
        group.instances().len(),
        group.min_size().unwrap_or_default(),
        group.desired_capacity().unwrap_or_default(),
        group.max_size().unwrap_or_default(),
        group.health_check_type().unwrap_or_default()
    );
    if let Some(dns) = super::balancer::find(aws, environment).await?.and_then(|b| b.dns_name) {
        println!("balancer: https://{dns}");
    }
    let deployed = aws.parameter(&environment.parameter("deploy/current")).await?;
    println!("deployed: {}", deployed.as_deref().unwrap_or("nothing yet"));
    let ids: Vec<String> = group.instances().iter().filter_map(|i| i.instance_id().map(str::to_string)).collect();
    let health = if ids.is_empty() { Vec::new() } else { target_health(aws, environment, &ids).await? };
    for instance in group.instances() {
        let id = instance.instance_id().unwrap_or_default();
        let target =
            health.iter().find(|h| h.target().and_then(|t| t.id()) == Some(id)).and_then(|h| h.target_health());
        let target = match target {
            Some(t) => {
                let state = t.state().map(|s| s.as_str()).unwrap_or("unknown");
                match (t.reason(), t.description()) {
                    (Some(reason), Some(description)) => format!("{state} ({}: {description})", reason.as_str()),
                    (Some(reason), None) => format!("{state} ({})", reason.as_str()),
                    _ => state.to_string(),
                }
            }
            None => "not registered".to_string(),
        };
        println!(
            "  {id}  {}  {} / {}  target {target}  serves {}",
            instance.availability_zone().unwrap_or_default(),
            instance.lifecycle_state().map(|s| s.as_str()).unwrap_or_default(),
            instance.health_status().unwrap_or_default(),
            serving(aws, environment, id).await
        );
    }
    Ok(())
}

/// The image the instance's live container runs, as its update script reports it.
async fn serving(aws: &Aws, environment: &Environment, id: &str) -> String {
    match remote::update_script(aws, environment, remote::Host::Fleet, id, &["status"]).await {
        Ok(output) => live_image(&output.stdout).unwrap_or_else(|| format!("nothing ({})", output.status)),
        Err(e) => format!("unknown ({e:#})"),
    }
}

/// The IMAGE_REF of the `live` line of `netsec-update.sh status`.
fn live_image(status: &str) -> Option<String> {
    status.lines().find_map(|line| {
        let fields: Vec<&str> = line.split('\t').collect();
        (fields.first() == Some(&"live")).then(|| fields.get(2).map(|f| f.to_string())).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_live_image_is_read_from_the_update_scripts_status() {
        let status = "previous\tnetsec-previous\tr/netsec@sha256:aa\tsha256:1\texited\n\
                      live\tnetsec-live\tr/netsec@sha256:bb\tsha256:2\trunning\nready 200 {\"status\":\"ready\"}\n";
        assert_eq!(live_image(status).as_deref(), Some("r/netsec@sha256:bb"));
        assert_eq!(live_image("ready 503 no\n"), None);
    }
}
