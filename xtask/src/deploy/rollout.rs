//! The rolling, health-gated update of a fleet (`deploy` and `rollback` when the environment has
//! one). One batch at a time, of at most `fleet.max_unavailable` instances, and never so many
//! healthy ones that fewer than `fleet.min` healthy targets would remain:
//!
//! ```text
//!  deregister the batch ─► wait out the draining ─► SSM: netsec-update.sh deploy REF (each at once)
//!      ─► register ─► wait until the target group finds the batch healthy ─► next batch
//!  a failure: the batch goes back to its previous container and is registered again, later
//!  batches are never touched, the hosts' output and the targets' reasons are printed; exit 1
//! ```
//!
//! The caller writes `deploy/current` only after every batch succeeded; instances that joined
//! while the deploy ran (their user data read the old value) are found by `sweep` and rolled
//! the same way.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use aws_sdk_elasticloadbalancingv2::types::{TargetDescription, TargetHealthStateEnum};
use futures_util::future::join_all;

use super::environment::{Environment, FleetSpec};
use super::remote::{self, Host};
use super::{scaling_group, target_group};
use crate::aws::{explain, Aws};

/// What each instance of a batch runs.
#[derive(Debug, Clone, Copy)]
pub enum Action<'a> {
    /// `netsec-update.sh deploy REF`: the image, pulled by digest.
    Deploy(&'a str),
    /// `netsec-update.sh rollback REF`: a version deployed before. Every instance gets the
    /// same image, whatever container it happens to keep (one launched since has none).
    Rollback(&'a str),
}

impl<'a> Action<'a> {
    fn args(self) -> [&'a str; 2] {
        match self {
            Action::Deploy(reference) => ["deploy", reference],
            Action::Rollback(reference) => ["rollback", reference],
        }
    }
}

/// An instance of the group as the target group sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    pub healthy: bool,
}

/// The next batch among `pending` (the members not yet updated), given every member's health.
/// An unhealthy instance serves nothing, so taking it out costs nothing; a healthy one may go
/// only while more than `min` healthy targets remain. None of `pending` may go: an error that
/// says what to do.
pub fn next_batch(fleet: &FleetSpec, members: &[Member], pending: &[String]) -> anyhow::Result<Vec<String>> {
    let healthy = members.iter().filter(|m| m.healthy).count();
    let mut spare = healthy.saturating_sub(fleet.min as usize);
    let mut batch = Vec::new();
    let is_healthy = |id: &String| members.iter().any(|m| &m.id == id && m.healthy);
    // The unhealthy first: they cost nothing, and an update may well make them healthy.
    let (unhealthy, healthy_pending): (Vec<&String>, Vec<&String>) = pending.iter().partition(|id| !is_healthy(id));
    for id in unhealthy.into_iter().chain(healthy_pending) {
        if batch.len() == fleet.max_unavailable.max(1) as usize {
            break;
        }
        if is_healthy(id) {
            if spare == 0 {
                continue;
            }
            spare -= 1;
        }
        batch.push(id.clone());
    }
    anyhow::ensure!(
        !batch.is_empty(),
        "the fleet has {healthy} healthy targets and fleet.min is {}: updating one more would leave fewer. \
         Raise the count first (`cargo xtask scale --desired {}`), or wait for Auto Scaling to replace the \
         unhealthy instances",
        fleet.min,
        (fleet.min + 1).min(fleet.max)
    );
    Ok(batch)
}

/// Rolls `action` over every in-service instance of the group not in `done`, batch by batch;
/// adds each updated one to `done`.
pub async fn roll(
    aws: &Aws,
    environment: &Environment,
    fleet: &FleetSpec,
    action: Action<'_>,
    done: &mut BTreeSet<String>,
) -> anyhow::Result<()> {
    let targets = TargetGroup::find(aws, environment).await?;
    let rollout = Rollout { aws, environment, fleet, targets };
    for number in 1.. {
        let ids = in_service(aws, environment).await?;
        let pending: Vec<String> = ids.iter().filter(|id| !done.contains(*id)).cloned().collect();
        if pending.is_empty() {
            break;
        }
        let members = rollout.targets.members(aws, &ids).await?;
        let batch = next_batch(fleet, &members, &pending)?;
        let healthy = members.iter().filter(|m| m.healthy).count();
        println!(
            "batch {number}: {} ({healthy} of {} targets healthy, fleet.min {})",
            batch.join(", "),
            ids.len(),
            fleet.min
        );
        rollout.update_batch(&batch, action).await?;
        done.extend(batch);
    }
    Ok(())
}

/// Instances Auto Scaling is still launching (`Pending`, `Pending:Wait`, `Pending:Proceed`):
/// waits until none is left, so that `roll` finds them in service, for at most the group's
/// grace period (their user data may still be running).
pub async fn settle(aws: &Aws, environment: &Environment, fleet: &FleetSpec) -> anyhow::Result<()> {
    let limit = Duration::from_secs(u64::from(fleet.health.grace_period_seconds).max(60));
    let deadline = Instant::now() + limit;
    loop {
        let launching = launching(aws, environment).await?;
        if launching.is_empty() {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} still launching after {} s: run the deploy again once they are in service",
            launching.join(", "),
            limit.as_secs()
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

async fn group_instances(
    aws: &Aws,
    environment: &Environment,
) -> anyhow::Result<Vec<aws_sdk_autoscaling::types::Instance>> {
    let name = scaling_group::name(environment);
    let group = scaling_group::find(aws, &name).await?;
    let group =
        group.ok_or_else(|| anyhow::anyhow!("the fleet's group {name} does not exist: run `cargo xtask apply`"))?;
    Ok(group.instances().to_vec())
}

/// The group's instances in service, in a stable order.
pub async fn in_service(aws: &Aws, environment: &Environment) -> anyhow::Result<Vec<String>> {
    let instances = group_instances(aws, environment).await?;
    let mut ids: Vec<String> = instances
        .iter()
        .filter(|i| i.lifecycle_state().map(|s| s.as_str()) == Some("InService"))
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect();
    ids.sort();
    Ok(ids)
}

async fn launching(aws: &Aws, environment: &Environment) -> anyhow::Result<Vec<String>> {
    let instances = group_instances(aws, environment).await?;
    let starting = |i: &&aws_sdk_autoscaling::types::Instance| {
        i.lifecycle_state().is_some_and(|s| s.as_str().starts_with("Pending"))
    };
    Ok(instances.iter().filter(starting).filter_map(|i| i.instance_id().map(str::to_string)).collect())
}

/// What updating a batch needs: where, by which rules, through which target group.
struct Rollout<'a> {
    aws: &'a Aws,
    environment: &'a Environment,
    fleet: &'a FleetSpec,
    targets: TargetGroup,
}

impl Rollout<'_> {
    /// One batch through its whole cycle; on failure, put back as it was.
    async fn update_batch(&self, batch: &[String], action: Action<'_>) -> anyhow::Result<()> {
        self.targets.deregister(self.aws, batch).await?;
        // From here on the batch is out of service: whatever fails, it goes back in.
        let mut switched = Vec::new();
        let Err(error) = self.switch_out_of_service(batch, action, &mut switched).await else { return Ok(()) };
        self.restore(batch, &switched).await;
        Err(error.context(
            "the batch is back on its previous containers, the instances not yet reached were not touched, and \
             deploy/current is unchanged",
        ))
    }

    /// The part of a batch's update done while it is deregistered: drain, switch (`switched`
    /// collects the instances whose switch went through), register, wait for health.
    async fn switch_out_of_service(
        &self,
        batch: &[String],
        action: Action<'_>,
        switched: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        let (aws, targets) = (self.aws, &self.targets);
        // Connection draining: the balancer sends no new request, and those in flight finish.
        let draining = Duration::from_secs(u64::from(self.fleet.health.deregistration_delay_seconds) + 60);
        targets.wait_for(aws, batch, &[TargetHealthStateEnum::Unused], draining).await?;
        let args = action.args();
        let outputs = join_all(batch.iter().map(|id| on_host(aws, self.environment, id, &args))).await;
        let (ok, failed): (Vec<_>, Vec<_>) = batch.iter().zip(outputs).partition(|(_, ok)| *ok);
        switched.extend(ok.into_iter().map(|(id, _)| id.clone()));
        if !failed.is_empty() {
            let failed: Vec<&str> = failed.iter().map(|(id, _)| id.as_str()).collect();
            anyhow::bail!("the update failed on {} (its output is above)", failed.join(", "));
        }
        targets.register(aws, batch).await?;
        let healthy = targets.wait_for(aws, batch, &[TargetHealthStateEnum::Healthy], healthy_within(self.fleet));
        if let Err(unhealthy) = healthy.await {
            println!("the target group did not find the batch healthy: {unhealthy:#}");
            print_logs(aws, self.environment, batch).await;
            anyhow::bail!("{} did not become healthy in the target group", batch.join(", "));
        }
        Ok(())
    }

    /// Puts a failed batch back: `switched` (those whose update went through) start their kept
    /// previous container again, and the whole batch is registered and waited for. Best effort:
    /// whatever fails here is printed, and the deploy's own error follows.
    async fn restore(&self, batch: &[String], switched: &[String]) {
        let (aws, targets) = (self.aws, &self.targets);
        join_all(switched.iter().map(|id| on_host(aws, self.environment, id, &["rollback"]))).await;
        if let Err(e) = targets.register(aws, batch).await {
            eprintln!("xtask: cannot register {} again: {e:#}", batch.join(", "));
            return;
        }
        match targets.wait_for(aws, batch, &[TargetHealthStateEnum::Healthy], healthy_within(self.fleet)).await {
            Ok(()) => println!("{}: back in service on the previous containers", batch.join(", ")),
            Err(e) => eprintln!("xtask: the restored batch is not healthy yet: {e:#}"),
        }
    }
}

/// How long a registered target may take to pass `healthy_threshold` checks in a row: the
/// balancer's first check comes within an interval, each check may take its timeout.
fn healthy_within(fleet: &FleetSpec) -> Duration {
    let health = &fleet.health;
    let checks = u64::from(health.healthy_threshold) + 1;
    Duration::from_secs(checks * u64::from(health.interval_seconds + health.timeout_seconds) + 30)
}

/// Runs the update script on one instance, printing its output headed by the instance;
/// whether it succeeded.
async fn on_host(aws: &Aws, environment: &Environment, id: &str, args: &[&str]) -> bool {
    match remote::update_script(aws, environment, Host::Fleet, id, args).await {
        Ok(output) => {
            print!("{}", prefixed(id, &output.stdout));
            eprint!("{}", prefixed(id, &output.stderr));
            if !output.succeeded() {
                eprintln!("{id}: the update ended {}", output.status);
            }
            output.succeeded()
        }
        Err(e) => {
            eprintln!("{id}: {e:#}");
            false
        }
    }
}

fn prefixed(id: &str, text: &str) -> String {
    text.lines().map(|line| format!("{id}: {line}\n")).collect()
}

/// The live container's last lines on each instance, for a batch the balancer found unhealthy.
async fn print_logs(aws: &Aws, environment: &Environment, batch: &[String]) {
    for id in batch {
        println!("{id}: the live container's last 100 lines:");
        on_host(aws, environment, id, &["logs", "100"]).await;
    }
}

/// The fleet's target group, by ARN, with the service port its targets are registered on.
struct TargetGroup {
    arn: String,
    port: i32,
}

impl TargetGroup {
    async fn find(aws: &Aws, environment: &Environment) -> anyhow::Result<TargetGroup> {
        let arn = target_group::arn(aws, environment).await?;
        Ok(TargetGroup { arn, port: i32::from(environment.service.port) })
    }

    fn targets(&self, ids: &[String]) -> Vec<TargetDescription> {
        ids.iter().map(|id| TargetDescription::builder().id(id).port(self.port).build()).collect()
    }

    async fn deregister(&self, aws: &Aws, ids: &[String]) -> anyhow::Result<()> {
        let request = aws.elb.deregister_targets().target_group_arn(&self.arn);
        request
            .set_targets(Some(self.targets(ids)))
            .send()
            .await
            .map_err(|e| explain(e, "elasticloadbalancing:DeregisterTargets", &self.arn))?;
        Ok(())
    }

    async fn register(&self, aws: &Aws, ids: &[String]) -> anyhow::Result<()> {
        let request = aws.elb.register_targets().target_group_arn(&self.arn);
        request
            .set_targets(Some(self.targets(ids)))
            .send()
            .await
            .map_err(|e| explain(e, "elasticloadbalancing:RegisterTargets", &self.arn))?;
        Ok(())
    }

    /// (id, state, reason) for each of `ids`.
    async fn health(&self, aws: &Aws, ids: &[String]) -> anyhow::Result<Vec<(String, TargetHealthStateEnum, String)>> {
        let found = aws
            .elb
            .describe_target_health()
            .target_group_arn(&self.arn)
            .set_targets(Some(self.targets(ids)))
            .send()
            .await
            .map_err(|e| explain(e, "elasticloadbalancing:DescribeTargetHealth", &self.arn))?;
        let described = found.target_health_descriptions().iter().map(|d| {
            let id = d.target().and_then(|t| t.id()).unwrap_or_default().to_string();
            let health = d.target_health();
            let state = health.and_then(|h| h.state()).cloned().unwrap_or(TargetHealthStateEnum::Unavailable);
            let reason = health.and_then(|h| h.description()).unwrap_or_default().to_string();
            (id, state, reason)
        });
        Ok(described.collect())
    }

    async fn members(&self, aws: &Aws, ids: &[String]) -> anyhow::Result<Vec<Member>> {
        let health = self.health(aws, ids).await?;
        let healthy = |id: &String| health.iter().any(|(i, s, _)| i == id && *s == TargetHealthStateEnum::Healthy);
        Ok(ids.iter().map(|id| Member { id: id.clone(), healthy: healthy(id) }).collect())
    }

    /// Polls until every one of `ids` is in one of the `wanted` states, or fails with each one's
    /// state and reason after `timeout`.
    async fn wait_for(
        &self,
        aws: &Aws,
        ids: &[String],
        wanted: &[TargetHealthStateEnum],
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let states = self.health(aws, ids).await?;
            if states.len() == ids.len() && states.iter().all(|(_, state, _)| wanted.contains(state)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                let shown: Vec<String> =
                    states.iter().map(|(id, state, reason)| format!("{id} {} ({reason})", state.as_str())).collect();
                anyhow::bail!("after {} s: {}", timeout.as_secs(), shown.join(", "));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(min: u32, max_unavailable: u32) -> FleetSpec {
        let yaml = format!(
            "{{min: {min}, max: 6, desired: 3, max_unavailable: {max_unavailable}, \
             tls: {{certificate_arn: 'arn:aws:acm:us-east-1:123456789012:certificate/x'}}}}"
        );
        serde_yaml::from_str(&yaml).unwrap()
    }

    fn members(health: &[bool]) -> Vec<Member> {
        health.iter().enumerate().map(|(i, &healthy)| Member { id: format!("i-{i}"), healthy }).collect()
    }

    fn ids(members: &[Member]) -> Vec<String> {
        members.iter().map(|m| m.id.clone()).collect()
    }

    #[test]
    fn a_batch_is_at_most_max_unavailable_and_keeps_min_healthy() {
        let all = members(&[true, true, true]);
        assert_eq!(next_batch(&fleet(1, 1), &all, &ids(&all)).unwrap(), ["i-0"]);
        assert_eq!(next_batch(&fleet(1, 2), &all, &ids(&all)).unwrap(), ["i-0", "i-1"]);
        // Three healthy and min 2: one may go, whatever max_unavailable allows.
        assert_eq!(next_batch(&fleet(2, 3), &all, &ids(&all)).unwrap(), ["i-0"]);
    }

    #[test]
    fn unhealthy_instances_go_first_and_cost_nothing() {
        let mixed = members(&[true, false, true]);
        // One healthy above min 1... and the unhealthy one besides.
        assert_eq!(next_batch(&fleet(2, 2), &mixed, &ids(&mixed)).unwrap(), ["i-1"]);
        assert_eq!(next_batch(&fleet(1, 3), &mixed, &ids(&mixed)).unwrap(), ["i-1", "i-0"]);
        // Before the first deploy nothing is healthy: every instance may be updated.
        let none = members(&[false, false, false]);
        assert_eq!(next_batch(&fleet(1, 1), &none, &ids(&none)).unwrap(), ["i-0"]);
    }

    #[test]
    fn a_fleet_at_its_minimum_is_not_touched() {
        let at_min = members(&[true, true]);
        let refused = next_batch(&fleet(2, 1), &at_min, &ids(&at_min)).unwrap_err().to_string();
        assert!(refused.contains("2 healthy targets and fleet.min is 2"), "{refused}");
        assert!(refused.contains("scale --desired 3"), "{refused}");
    }

    #[test]
    fn only_pending_instances_are_taken() {
        let all = members(&[true, true, true]);
        let pending = vec!["i-2".to_string()];
        assert_eq!(next_batch(&fleet(1, 2), &all, &pending).unwrap(), ["i-2"]);
    }
}
