//! The runner's security group: the service port from the configured networks only, SSH only
//! when `ssh_cidrs` asks for it, nothing else inbound. Outbound stays open (ECR, S3, SSM and
//! GitHub are reached over HTTPS).

use aws_sdk_ec2::types::{Filter, IpPermission, IpRange, ResourceType, SecurityGroup, TagSpecification};

use super::environment::Environment;
use super::plan::{self, Change, Planned};
use crate::aws::{explain, Aws};

pub const KIND: &str = "ec2 security group";
const SSH_PORT: u16 = 22;

/// One inbound rule: TCP `port` from `cidr`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rule {
    pub port: u16,
    pub cidr: String,
}

#[derive(Debug, Clone)]
pub enum Step {
    Create,
    Allow(Vec<Rule>),
    Revoke(Vec<Rule>),
    Delete(String),
}

impl Step {
    pub fn describe(&self) -> String {
        let show = |rules: &[Rule]| rules.iter().map(|r| format!("tcp/{} from {}", r.port, r.cidr)).collect::<Vec<_>>();
        match self {
            Step::Create => "create (no inbound rule yet)".into(),
            Step::Allow(rules) => format!("allow {}", show(rules).join(", ")),
            Step::Revoke(rules) => format!("revoke {}", show(rules).join(", ")),
            Step::Delete(id) => format!("delete {id}"),
        }
    }

    pub async fn run(&self, aws: &Aws, environment: &Environment) -> anyhow::Result<()> {
        let name = environment.resource_name("service");
        match self {
            Step::Create => {
                let vpc = super::runner::vpc(aws, environment).await?;
                let tags = TagSpecification::builder()
                    .resource_type(ResourceType::SecurityGroup)
                    .set_tags(Some(super::runner::ec2_tags(&plan::tag_pairs(environment, &name))))
                    .build();
                aws.ec2
                    .create_security_group()
                    .group_name(&name)
                    // Words joined by `-`, as in every EC2 and IAM value here: moto checks the
                    // signature of a form body re-encoded with `+` for spaces (the SDK sends %20).
                    .description(format!("netsec-{}-service-port-from-the-allowed-networks", environment.name))
                    .vpc_id(vpc)
                    .tag_specifications(tags)
                    .send()
                    .await
                    .map_err(|e| explain(e, "ec2:CreateSecurityGroup", &name))?;
            }
            Step::Allow(rules) => {
                let id = group_id(aws, environment).await?;
                aws.ec2
                    .authorize_security_group_ingress()
                    .group_id(&id)
                    .set_ip_permissions(Some(permissions(rules)))
                    .send()
                    .await
                    .map_err(|e| explain(e, "ec2:AuthorizeSecurityGroupIngress", &id))?;
            }
            Step::Revoke(rules) => {
                let id = group_id(aws, environment).await?;
                aws.ec2
                    .revoke_security_group_ingress()
                    .group_id(&id)
                    .set_ip_permissions(Some(permissions(rules)))
                    .send()
                    .await
                    .map_err(|e| explain(e, "ec2:RevokeSecurityGroupIngress", &id))?;
            }
            Step::Delete(id) => delete(aws, id).await?,
        }
        Ok(())
    }
}

/// The inbound rules the environment wants.
pub fn wanted_rules(environment: &Environment) -> Vec<Rule> {
    let service = &environment.service;
    let mut rules: Vec<Rule> =
        service.allowed_cidrs.iter().map(|cidr| Rule { port: service.port, cidr: cidr.clone() }).collect();
    rules.extend(service.ssh_cidrs.iter().map(|cidr| Rule { port: SSH_PORT, cidr: cidr.clone() }));
    rules.sort();
    rules.dedup();
    rules
}

fn permissions(rules: &[Rule]) -> Vec<IpPermission> {
    rules
        .iter()
        .map(|rule| {
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(rule.port.into())
                .to_port(rule.port.into())
                .ip_ranges(IpRange::builder().cidr_ip(&rule.cidr).build())
                .build()
        })
        .collect()
}

/// The group's inbound rules, one per port and network (any other protocol or a port range
/// counts as a rule to revoke, shown with its first port).
fn actual_rules(group: &SecurityGroup) -> Vec<Rule> {
    let mut rules = Vec::new();
    for permission in group.ip_permissions() {
        let port = permission.from_port().unwrap_or(-1).clamp(0, u16::MAX.into()) as u16;
        for range in permission.ip_ranges() {
            rules.push(Rule { port, cidr: range.cidr_ip().unwrap_or_default().to_string() });
        }
    }
    rules.sort();
    rules
}

/// The environment's group, found by name in its VPC.
pub async fn find(aws: &Aws, environment: &Environment) -> anyhow::Result<Option<SecurityGroup>> {
    let name = environment.resource_name("service");
    let found = aws
        .ec2
        .describe_security_groups()
        .filters(Filter::builder().name("group-name").values(&name).build())
        .filters(
            Filter::builder().name(format!("tag:{}", super::environment::ENV_TAG)).values(&environment.name).build(),
        )
        .send()
        .await
        .map_err(|e| explain(e, "ec2:DescribeSecurityGroups", &name))?;
    Ok(found.security_groups().first().cloned())
}

pub async fn group_id(aws: &Aws, environment: &Environment) -> anyhow::Result<String> {
    let group = find(aws, environment).await?;
    group
        .and_then(|g| g.group_id)
        .ok_or_else(|| anyhow::anyhow!("the security group {} does not exist", environment.resource_name("service")))
}

pub async fn plan(aws: &Aws, environment: &Environment) -> anyhow::Result<Planned> {
    let name = environment.resource_name("service");
    let wanted = wanted_rules(environment);
    let Some(group) = find(aws, environment).await? else {
        let mut steps = vec![Step::Create];
        steps.extend((!wanted.is_empty()).then_some(Step::Allow(wanted)));
        return Ok(Planned::new(KIND, name, true, steps.into_iter().map(plan::Step::Firewall).collect()));
    };
    let actual = actual_rules(&group);
    let missing: Vec<Rule> = wanted.iter().filter(|r| !actual.contains(r)).cloned().collect();
    let extra: Vec<Rule> = actual.iter().filter(|r| !wanted.contains(r)).cloned().collect();
    let mut steps = Vec::new();
    steps.extend((!extra.is_empty()).then_some(Step::Revoke(extra)));
    steps.extend((!missing.is_empty()).then_some(Step::Allow(missing)));
    Ok(Planned::new(KIND, name, false, steps.into_iter().map(plan::Step::Firewall).collect()))
}

/// Every security group tagged for the environment.
pub async fn teardown(aws: &Aws, environment: &Environment) -> anyhow::Result<Vec<Planned>> {
    let found = aws
        .ec2
        .describe_security_groups()
        .filters(
            Filter::builder().name(format!("tag:{}", super::environment::ENV_TAG)).values(&environment.name).build(),
        )
        .send()
        .await
        .map_err(|e| explain(e, "ec2:DescribeSecurityGroups", "*"))?;
    Ok(found
        .security_groups()
        .iter()
        .map(|group| {
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
