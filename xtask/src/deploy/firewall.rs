//! The environment's security groups, each letting in exactly its rules and nothing else;
//! outbound stays open (ECR, S3, SSM and GitHub are reached over HTTPS).
//!
//! - `service`, the runner's: the service port from `allowed_cidrs` (not with a fleet: the
//!   runner then only trains), SSH only when `ssh_cidrs` asks for it.
//! - With a fleet, `alb`, the load balancer's: 443 and 80 from `allowed_cidrs`; and `fleet`, the
//!   instances': the service port from the `alb` group only, so nothing reaches an instance
//!   but through the balancer.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{
    Filter, IpPermission, IpRange, ResourceType, SecurityGroup, TagSpecification, UserIdGroupPair,
};

use super::environment::{Environment, ENV_TAG};
use super::plan::{self, Change, Planned};
use crate::aws::{explain, Aws};

pub const KIND: &str = "ec2 security group";
const SSH_PORT: u16 = 22;
pub const HTTPS_PORT: u16 = 443;
pub const HTTP_PORT: u16 = 80;

/// The runner's group.
pub const SERVICE: &str = "service";
/// The load balancer's group.
pub const BALANCER: &str = "alb";
/// The fleet instances' group.
pub const FLEET: &str = "fleet";

/// Where a rule lets traffic in from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    Cidr(String),
    /// Another group of the environment, by its role (`alb`).
    Group(String),
}

/// One inbound rule: TCP `port` from `source`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rule {
    pub port: u16,
    pub source: Source,
}

impl Rule {
    fn cidr(port: u16, cidr: &str) -> Rule {
        Rule { port, source: Source::Cidr(cidr.to_string()) }
    }

    fn describe(&self) -> String {
        match &self.source {
            Source::Cidr(cidr) => format!("tcp/{} from {cidr}", self.port),
            Source::Group(role) => format!("tcp/{} from the {role} group", self.port),
        }
    }
}

/// A group the environment wants: its role (`service`, `alb`, `fleet`) and inbound rules.
#[derive(Debug, Clone)]
pub struct Wanted {
    pub role: &'static str,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
pub enum Step {
    Create(&'static str),
    Allow(&'static str, Vec<Rule>),
    Revoke(&'static str, Vec<Rule>),
    Delete(String),
}

impl Step {
    pub fn describe(&self) -> String {
        let show = |rules: &[Rule]| rules.iter().map(Rule::describe).collect::<Vec<_>>().join(", ");
        match self {
            Step::Create(_) => "create (no inbound rule yet)".into(),
            Step::Allow(_, rules) => format!("allow {}", show(rules)),
            Step::Revoke(_, rules) => format!("revoke {}", show(rules)),
            Step::Delete(id) => format!("delete {id}"),
        }
    }

    pub async fn run(&self, aws: &Aws, environment: &Environment) -> anyhow::Result<()> {
        match self {
            Step::Create(role) => create(aws, environment, role).await,
            Step::Allow(role, rules) => {
                let id = group_id(aws, environment, role).await?;
                let permissions = permissions(aws, environment, rules).await?;
                let call =
                    aws.ec2.authorize_security_group_ingress().group_id(&id).set_ip_permissions(Some(permissions));
                call.send().await.map_err(|e| explain(e, "ec2:AuthorizeSecurityGroupIngress", &id))?;
                Ok(())
            }
            Step::Revoke(role, rules) => {
                let id = group_id(aws, environment, role).await?;
                let permissions = permissions(aws, environment, rules).await?;
                let call = aws.ec2.revoke_security_group_ingress().group_id(&id).set_ip_permissions(Some(permissions));
                call.send().await.map_err(|e| explain(e, "ec2:RevokeSecurityGroupIngress", &id))?;
                Ok(())
            }
            Step::Delete(id) => delete(aws, id).await,
        }
    }
}

async fn create(aws: &Aws, environment: &Environment, role: &str) -> anyhow::Result<()> {
    let name = environment.resource_name(role);
    let vpc = super::runner::vpc(aws, environment).await?;
    let tags = TagSpecification::builder()
        .resource_type(ResourceType::SecurityGroup)
        .set_tags(Some(super::runner::ec2_tags(&plan::tag_pairs(environment, &name))))
        .build();
    aws.ec2
        .create_security_group()
        .group_name(&name)
        // Words joined by `-`, as in every EC2 and IAM value here: moto checks the signature
        // of a form body re-encoded with `+` for spaces (the SDK sends %20).
        .description(format!("netsec-{}-{role}-inbound", environment.name))
        .vpc_id(vpc)
        .tag_specifications(tags)
        .send()
        .await
        .map_err(|e| explain(e, "ec2:CreateSecurityGroup", &name))?;
    Ok(())
}

/// The groups the environment wants, in the order they are made (a group before the groups
/// whose rules name it).
pub fn wanted(environment: &Environment) -> Vec<Wanted> {
    let service = &environment.service;
    let from_allowed = |port: u16| service.allowed_cidrs.iter().map(move |cidr| Rule::cidr(port, cidr));
    // With a fleet the runner only trains: the service port is open on the fleet alone.
    let mut runner: Vec<Rule> =
        if environment.fleet.is_some() { Vec::new() } else { from_allowed(service.port).collect() };
    runner.extend(service.ssh_cidrs.iter().map(|cidr| Rule::cidr(SSH_PORT, cidr)));
    let mut groups = Vec::new();
    if environment.fleet.is_some() {
        let balancer = from_allowed(HTTPS_PORT).chain(from_allowed(HTTP_PORT)).collect();
        let fleet = vec![Rule { port: service.port, source: Source::Group(BALANCER.into()) }];
        groups.push(Wanted { role: BALANCER, rules: balancer });
        groups.push(Wanted { role: FLEET, rules: fleet });
    }
    groups.push(Wanted { role: SERVICE, rules: runner });
    for group in &mut groups {
        group.rules.sort();
        group.rules.dedup();
    }
    groups
}

async fn permissions(aws: &Aws, environment: &Environment, rules: &[Rule]) -> anyhow::Result<Vec<IpPermission>> {
    let mut permissions = Vec::new();
    for rule in rules {
        let permission =
            IpPermission::builder().ip_protocol("tcp").from_port(rule.port.into()).to_port(rule.port.into());
        permissions.push(match &rule.source {
            Source::Cidr(cidr) => permission.ip_ranges(IpRange::builder().cidr_ip(cidr).build()).build(),
            Source::Group(role) => {
                let id = group_id(aws, environment, role).await?;
                permission.user_id_group_pairs(UserIdGroupPair::builder().group_id(id).build()).build()
            }
        });
    }
    Ok(permissions)
}

/// A group's inbound rules, one per port and source (any other protocol or a port range counts
/// as a rule to revoke, shown with its first port; a group outside the environment by its id).
fn actual_rules(group: &SecurityGroup, roles: &BTreeMap<String, String>) -> Vec<Rule> {
    let mut rules = Vec::new();
    for permission in group.ip_permissions() {
        let port = permission.from_port().unwrap_or(-1).clamp(0, u16::MAX.into()) as u16;
        for range in permission.ip_ranges() {
            rules.push(Rule::cidr(port, range.cidr_ip().unwrap_or_default()));
        }
        for pair in permission.user_id_group_pairs() {
            let id = pair.group_id().unwrap_or_default();
            let role = roles.get(id).cloned().unwrap_or_else(|| id.to_string());
            rules.push(Rule { port, source: Source::Group(role) });
        }
    }
    rules.sort();
    rules
}

/// Every group tagged for the environment.
async fn tagged(aws: &Aws, environment: &Environment) -> anyhow::Result<Vec<SecurityGroup>> {
    let found = aws
        .ec2
        .describe_security_groups()
        .filters(Filter::builder().name(format!("tag:{ENV_TAG}")).values(&environment.name).build())
        .send()
        .await
        .map_err(|e| explain(e, "ec2:DescribeSecurityGroups", "*"))?;
    Ok(found.security_groups().to_vec())
}

/// Group id → role, for the environment's groups (`netsec-<env>-<role>`).
fn roles(environment: &Environment, groups: &[SecurityGroup]) -> BTreeMap<String, String> {
    let prefix = environment.resource_name("");
    let role = |g: &SecurityGroup| g.group_name()?.strip_prefix(&prefix).map(str::to_string);
    groups.iter().filter_map(|g| Some((g.group_id()?.to_string(), role(g)?))).collect()
}

/// The environment's group of `role`, found by name and tag.
pub async fn find(aws: &Aws, environment: &Environment, role: &str) -> anyhow::Result<Option<SecurityGroup>> {
    let name = environment.resource_name(role);
    Ok(tagged(aws, environment).await?.into_iter().find(|g| g.group_name() == Some(name.as_str())))
}

pub async fn group_id(aws: &Aws, environment: &Environment, role: &str) -> anyhow::Result<String> {
    let group = find(aws, environment, role).await?;
    group
        .and_then(|g| g.group_id)
        .ok_or_else(|| anyhow::anyhow!("the security group {} does not exist", environment.resource_name(role)))
}

pub async fn plan(aws: &Aws, environment: &Environment) -> anyhow::Result<Vec<Planned>> {
    let groups = tagged(aws, environment).await?;
    let roles = roles(environment, &groups);
    let mut planned = Vec::new();
    for wanted in wanted(environment) {
        let name = environment.resource_name(wanted.role);
        let steps = match groups.iter().find(|g| g.group_name() == Some(name.as_str())) {
            None => {
                let mut steps = vec![Step::Create(wanted.role)];
                steps.extend((!wanted.rules.is_empty()).then_some(Step::Allow(wanted.role, wanted.rules)));
                planned.push(Planned::new(KIND, name, true, steps.into_iter().map(plan::Step::Firewall).collect()));
                continue;
            }
            Some(group) => changes(wanted, &actual_rules(group, &roles)),
        };
        planned.push(Planned::new(KIND, name, false, steps.into_iter().map(plan::Step::Firewall).collect()));
    }
    Ok(planned)
}

/// What turns `actual` into the rules `wanted` has: revoke the extra, allow the missing.
fn changes(wanted: Wanted, actual: &[Rule]) -> Vec<Step> {
    let missing: Vec<Rule> = wanted.rules.iter().filter(|r| !actual.contains(r)).cloned().collect();
    let extra: Vec<Rule> = actual.iter().filter(|r| !wanted.rules.contains(r)).cloned().collect();
    let mut steps = Vec::new();
    steps.extend((!extra.is_empty()).then_some(Step::Revoke(wanted.role, extra)));
    steps.extend((!missing.is_empty()).then_some(Step::Allow(wanted.role, missing)));
    steps
}

/// Every security group tagged for the environment; a group that another one's rules name
/// goes after it (AWS refuses to delete a group still referenced).
pub async fn teardown(aws: &Aws, environment: &Environment) -> anyhow::Result<Vec<Planned>> {
    let mut groups = tagged(aws, environment).await?;
    let referenced = |id: &str, groups: &[SecurityGroup]| {
        groups
            .iter()
            .flat_map(|g| g.ip_permissions())
            .flat_map(|p| p.user_id_group_pairs())
            .any(|pair| pair.group_id() == Some(id))
    };
    let order: Vec<bool> = groups.iter().map(|g| referenced(g.group_id().unwrap_or_default(), &groups)).collect();
    let mut ordered: Vec<(bool, SecurityGroup)> = order.into_iter().zip(groups.drain(..)).collect();
    ordered.sort_by_key(|(referenced, _)| *referenced);
    Ok(ordered
        .into_iter()
        .map(|(_, group)| {
            let id = group.group_id().unwrap_or_default().to_string();
            let name = group.group_name().unwrap_or_default().to_string();
            Planned { kind: KIND, name, change: Change::Delete, steps: vec![plan::Step::Firewall(Step::Delete(id))] }
        })
        .collect())
}

/// Deletes a group; an instance that is still shutting down holds it for a while.
async fn delete(aws: &Aws, id: &str) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        match aws.ec2.delete_security_group().group_id(id).send().await {
            Ok(_) => return Ok(()),
            Err(e) if crate::aws::code(&e) == Some("DependencyViolation") && std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            }
            Err(e) => return Err(explain(e, "ec2:DeleteSecurityGroup", id)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fleet_opens_the_balancer_to_the_networks_and_the_instances_to_the_balancer_only() {
        let fleet = Environment::load("fleet").unwrap();
        let groups = wanted(&fleet);
        let roles: Vec<&str> = groups.iter().map(|g| g.role).collect();
        assert_eq!(roles, [BALANCER, FLEET, SERVICE], "the balancer's group before the group that names it");
        let everyone = |port| Rule::cidr(port, "0.0.0.0/0");
        assert_eq!(groups[0].rules, [everyone(HTTP_PORT), everyone(HTTPS_PORT)]);
        assert_eq!(groups[1].rules, [Rule { port: 8080, source: Source::Group(BALANCER.into()) }]);
        assert_eq!(groups[2].rules, [], "the runner serves nothing beside a fleet");
        assert_eq!(wanted(&Environment::load("dev").unwrap()).len(), 1, "no fleet, one group");
    }

    #[test]
    fn drift_is_revoked_and_what_is_missing_allowed() {
        let wanted = Wanted { role: FLEET, rules: vec![Rule { port: 8080, source: Source::Group(BALANCER.into()) }] };
        let actual = [Rule::cidr(8080, "0.0.0.0/0")];
        let steps = changes(wanted, &actual);
        let described: Vec<String> = steps.iter().map(Step::describe).collect();
        assert_eq!(described, ["revoke tcp/8080 from 0.0.0.0/0", "allow tcp/8080 from the alb group"]);
    }
}
