//! The fleet's Application Load Balancer: internet-facing, in the fleet's subnets (two zones
//! at least), behind the `alb` security group; HTTPS on 443 with the file's ACM certificate
//! and TLS policy, forwarding to the target group; HTTP on 80 only redirecting to HTTPS.
//! It drops requests with invalid header fields rather than pass them to the service, and
//! writes its access logs into the environment's bucket when `fleet.access_logs` says so.

use std::time::Duration;

use aws_sdk_acm::types::CertificateStatus;
use aws_sdk_ec2::types::Filter;
use aws_sdk_elasticloadbalancingv2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, Certificate, Listener as AwsListener, LoadBalancer, LoadBalancerAttribute,
    LoadBalancerSchemeEnum, LoadBalancerTypeEnum, ProtocolEnum, RedirectActionConfig, RedirectActionStatusCodeEnum,
};

use super::environment::{Environment, FleetSpec};
use super::firewall::{self, HTTPS_PORT, HTTP_PORT};
use super::plan::{self, Planned};
use crate::aws::{code, explain, retry_while, Aws};

pub const KIND: &str = "elb load balancer";

/// The attributes the balancer must have (others are left as they are): invalid header fields
/// dropped, and the access logs into the environment's bucket when the file asks for them.
fn attributes(environment: &Environment, fleet: &FleetSpec) -> Vec<(&'static str, String)> {
    let mut wanted = vec![("routing.http.drop_invalid_header_fields.enabled", "true".to_string())];
    match &fleet.access_logs {
        Some(logs) => wanted.extend([
            ("access_logs.s3.enabled", "true".to_string()),
            ("access_logs.s3.bucket", environment.bucket.name.clone()),
            ("access_logs.s3.prefix", logs.prefix.clone()),
        ]),
        None => wanted.push(("access_logs.s3.enabled", "false".to_string())),
    }
    wanted
}

/// `netsec-<env>-alb`.
pub fn name(environment: &Environment) -> String {
    environment.resource_name("alb")
}

/// What a listener does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listener {
    /// HTTPS on 443 with this certificate and policy, forwarding to the target group.
    Https { certificate: String, policy: String },
    /// HTTP on 80, answering 301 to the same URL over HTTPS.
    Redirect,
}

impl Listener {
    fn wanted(fleet: &FleetSpec) -> Vec<Listener> {
        let tls = &fleet.tls;
        vec![
            Listener::Https { certificate: tls.certificate_arn.clone(), policy: tls.policy.clone() },
            Listener::Redirect,
        ]
    }

    fn port(&self) -> u16 {
        match self {
            Listener::Https { .. } => HTTPS_PORT,
            Listener::Redirect => HTTP_PORT,
        }
    }

    fn describe(&self) -> String {
        match self {
            Listener::Https { certificate, policy } => {
                format!("HTTPS on {HTTPS_PORT} ({certificate}, {policy}) to the target group")
            }
            Listener::Redirect => format!("HTTP on {HTTP_PORT}, redirecting to HTTPS"),
        }
    }

    /// What `listener` does, if it is one of the two kinds (HTTPS forwarding to `target_group`
    /// alone, or the redirect); anything else is None, and replaced.
    fn actual(listener: &AwsListener, target_group: &str) -> Option<Listener> {
        let [action] = listener.default_actions() else { return None };
        match (listener.protocol()?, listener.port()?) {
            (ProtocolEnum::Https, 443) if forwards_to(action) == Some(target_group) => Some(Listener::Https {
                certificate: listener.certificates().first()?.certificate_arn()?.to_string(),
                policy: listener.ssl_policy()?.to_string(),
            }),
            (ProtocolEnum::Http, 80) if is_https_redirect(action) => Some(Listener::Redirect),
            _ => None,
        }
    }

    async fn default_action(&self, aws: &Aws, environment: &Environment) -> anyhow::Result<Action> {
        Ok(match self {
            Listener::Https { .. } => {
                let target_group = super::target_group::arn(aws, environment).await?;
                Action::builder().r#type(ActionTypeEnum::Forward).target_group_arn(target_group).build()
            }
            Listener::Redirect => {
                // Every part given, so that what AWS answers compares equal to what was sent.
                let redirect = RedirectActionConfig::builder()
                    .protocol("HTTPS")
                    .port(HTTPS_PORT.to_string())
                    .host("#{host}")
                    .path("/#{path}")
                    .query("#{query}")
                    .status_code(RedirectActionStatusCodeEnum::Http301);
                Action::builder().r#type(ActionTypeEnum::Redirect).redirect_config(redirect.build()).build()
            }
        })
    }
}

/// The one target group a forward action sends to.
fn forwards_to(action: &Action) -> Option<&str> {
    if action.r#type() != Some(&ActionTypeEnum::Forward) {
        return None;
    }
    let forward = action.forward_config().map(|f| f.target_groups()).unwrap_or_default();
    match (action.target_group_arn(), forward) {
        (Some(arn), _) => Some(arn),
        (None, [only]) => only.target_group_arn(),
        _ => None,
    }
}

fn is_https_redirect(action: &Action) -> bool {
    let Some(redirect) = action.redirect_config() else { return false };
    action.r#type() == Some(&ActionTypeEnum::Redirect)
        && redirect.protocol() == Some("HTTPS")
        && redirect.port() == Some("443")
        && redirect.status_code() == Some(&RedirectActionStatusCodeEnum::Http301)
}

#[derive(Debug, Clone)]
pub enum Step {
    Create(Vec<String>),
    SetSecurityGroup,
    SetSubnets(Vec<String>),
    SetAttributes(Vec<(&'static str, String)>),
    Listen(Listener),
    Relisten(String, Listener),
    StopListening(String, u16),
    Delete(String),
}

impl Step {
    pub fn describe(&self) -> String {
        match self {
            Step::Create(subnets) => format!("create, internet-facing, in {}", subnets.join(", ")),
            Step::SetSecurityGroup => "only the alb security group".into(),
            Step::SetSubnets(subnets) => format!("subnets {}", subnets.join(", ")),
            Step::SetAttributes(wanted) => {
                let pairs: Vec<String> = wanted.iter().map(|(k, v)| format!("{k}={v}")).collect();
                pairs.join(", ")
            }
            Step::Listen(listener) => format!("listen: {}", listener.describe()),
            Step::Relisten(_, listener) => format!("change the {} listener: {}", listener.port(), listener.describe()),
            Step::StopListening(_, port) => format!("stop listening on {port}"),
            Step::Delete(arn) => format!("delete {arn}"),
        }
    }

    pub async fn run(&self, aws: &Aws, environment: &Environment) -> anyhow::Result<()> {
        let name = name(environment);
        let action = |call: &str| format!("elasticloadbalancing:{call}");
        match self {
            Step::Create(subnets) => {
                let group = firewall::group_id(aws, environment, firewall::BALANCER).await?;
                let call = aws.elb.create_load_balancer().name(&name).r#type(LoadBalancerTypeEnum::Application);
                call.scheme(LoadBalancerSchemeEnum::InternetFacing)
                    .set_subnets(Some(subnets.clone()))
                    .security_groups(group)
                    .set_tags(Some(super::elb::tags(environment, &name)))
                    .send()
                    .await
                    .map_err(|e| explain(e, &action("CreateLoadBalancer"), &name))?;
            }
            Step::SetSecurityGroup => {
                let group = firewall::group_id(aws, environment, firewall::BALANCER).await?;
                let arn = arn(aws, environment).await?;
                let call = aws.elb.set_security_groups().load_balancer_arn(arn).security_groups(group);
                call.send().await.map_err(|e| explain(e, &action("SetSecurityGroups"), &name))?;
            }
            Step::SetSubnets(subnets) => {
                let arn = arn(aws, environment).await?;
                let call = aws.elb.set_subnets().load_balancer_arn(arn).set_subnets(Some(subnets.clone()));
                call.send().await.map_err(|e| explain(e, &action("SetSubnets"), &name))?;
            }
            Step::SetAttributes(wanted) => {
                let arn = arn(aws, environment).await?;
                let attributes =
                    wanted.iter().map(|(key, value)| LoadBalancerAttribute::builder().key(*key).value(value).build());
                let call = aws.elb.modify_load_balancer_attributes().load_balancer_arn(arn);
                let call = call.set_attributes(Some(attributes.collect()));
                // With access logs on, ELB first checks that it may write to the bucket, whose
                // policy this apply may have put moments ago: not yet in force, it is refused.
                let set = retry_while(Duration::from_secs(60), bucket_not_writable_yet, || call.clone().send()).await;
                set.map_err(|e| explain(e, &action("ModifyLoadBalancerAttributes"), &name))?;
            }
            Step::Listen(listener) => listen(aws, environment, None, listener).await?,
            Step::Relisten(arn, listener) => listen(aws, environment, Some(arn), listener).await?,
            Step::StopListening(arn, _) => {
                let call = aws.elb.delete_listener().listener_arn(arn);
                call.send().await.map_err(|e| explain(e, &action("DeleteListener"), arn))?;
            }
            Step::Delete(arn) => {
                let call = aws.elb.delete_load_balancer().load_balancer_arn(arn);
                call.send().await.map_err(|e| explain(e, &action("DeleteLoadBalancer"), arn))?;
            }
        }
        Ok(())
    }
}

fn bucket_not_writable_yet<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> bool {
    code(error) == Some("InvalidConfigurationRequest") && error.message().is_some_and(|m| m.contains("Access Denied"))
}

/// Creates the listener, or changes the one at `existing` into it.
async fn listen(
    aws: &Aws,
    environment: &Environment,
    existing: Option<&String>,
    listener: &Listener,
) -> anyhow::Result<()> {
    let default_action = listener.default_action(aws, environment).await?;
    let (protocol, certificate, policy) = match listener {
        Listener::Https { certificate, policy } => {
            let certificate = Certificate::builder().certificate_arn(certificate).build();
            (ProtocolEnum::Https, Some(vec![certificate]), Some(policy.clone()))
        }
        Listener::Redirect => (ProtocolEnum::Http, None, None),
    };
    let port = i32::from(listener.port());
    let name = name(environment);
    match existing {
        None => {
            let call = aws.elb.create_listener().load_balancer_arn(arn(aws, environment).await?);
            let call = call.protocol(protocol).port(port).default_actions(default_action);
            let call = call.set_certificates(certificate).set_ssl_policy(policy);
            call.send().await.map_err(|e| explain(e, "elasticloadbalancing:CreateListener", &name))?;
        }
        Some(arn) => {
            let call = aws.elb.modify_listener().listener_arn(arn).protocol(protocol).port(port);
            let call = call.default_actions(default_action).set_certificates(certificate).set_ssl_policy(policy);
            call.send().await.map_err(|e| explain(e, "elasticloadbalancing:ModifyListener", arn))?;
        }
    }
    Ok(())
}

/// The environment's balancer, by name.
pub async fn find(aws: &Aws, environment: &Environment) -> anyhow::Result<Option<LoadBalancer>> {
    let name = name(environment);
    match aws.elb.describe_load_balancers().names(&name).send().await {
        Ok(found) => Ok(found.load_balancers().first().cloned()),
        Err(e) if code(&e) == Some("LoadBalancerNotFound") => Ok(None),
        Err(e) => Err(explain(e, "elasticloadbalancing:DescribeLoadBalancers", &name)),
    }
}

async fn arn(aws: &Aws, environment: &Environment) -> anyhow::Result<String> {
    let balancer = find(aws, environment).await?;
    balancer.and_then(|b| b.load_balancer_arn).ok_or_else(|| {
        anyhow::anyhow!("the load balancer {} does not exist: run `cargo xtask apply`", name(environment))
    })
}

/// The certificate must exist in the region and be issued: a listener cannot use it otherwise.
async fn check_certificate(aws: &Aws, fleet: &FleetSpec) -> anyhow::Result<()> {
    let arn = &fleet.tls.certificate_arn;
    let found = match aws.acm.describe_certificate().certificate_arn(arn).send().await {
        Ok(found) => found,
        Err(e) if code(&e) == Some("ResourceNotFoundException") => anyhow::bail!(
            "fleet.tls.certificate_arn: there is no certificate {arn} in {}: request or import it in ACM",
            aws.region
        ),
        Err(e) => return Err(explain(e, "acm:DescribeCertificate", arn)),
    };
    let status = found.certificate().and_then(|c| c.status());
    anyhow::ensure!(
        status == Some(&CertificateStatus::Issued),
        "fleet.tls.certificate_arn: the certificate {arn} is {}, not ISSUED: finish its validation in ACM first",
        status.map_or("of unknown status", |s| s.as_str())
    );
    Ok(())
}

/// The subnets the balancer goes in: the file's (each in the zone the file says, all in the
/// VPC of the environment's security groups), or one default subnet per zone.
pub(super) async fn subnets(aws: &Aws, environment: &Environment, fleet: &FleetSpec) -> anyhow::Result<Vec<String>> {
    let vpc = super::runner::vpc(aws, environment).await?;
    let mut query = aws.ec2.describe_subnets();
    query = match fleet.subnets.is_empty() {
        true => query.filters(Filter::builder().name("default-for-az").values("true").build()),
        false => query.set_subnet_ids(Some(fleet.subnets.values().cloned().collect())),
    };
    let found = query.send().await.map_err(|e| explain(e, "ec2:DescribeSubnets", "*"))?;
    let mut by_zone = std::collections::BTreeMap::new();
    for subnet in found.subnets() {
        let (id, zone) = (subnet.subnet_id().unwrap_or_default(), subnet.availability_zone().unwrap_or_default());
        if let Some(wanted) = fleet.subnets.iter().find(|(_, s)| *s == id).map(|(zone, _)| zone) {
            anyhow::ensure!(wanted == zone, "fleet.subnets.{wanted}: {id} is in {zone}, not {wanted}");
        }
        anyhow::ensure!(
            subnet.vpc_id() == Some(vpc.as_str()),
            "fleet.subnets: {id} is in {}, but the environment's security groups are in {vpc} (runner.subnet's VPC)",
            subnet.vpc_id().unwrap_or_default()
        );
        by_zone.entry(zone.to_string()).or_insert_with(|| id.to_string());
    }
    anyhow::ensure!(
        by_zone.len() >= 2,
        "the load balancer needs subnets in two Availability Zones, and {} has them in {}: set fleet.subnets",
        aws.region,
        by_zone.len()
    );
    let mut subnets: Vec<String> = by_zone.into_values().collect();
    subnets.sort();
    Ok(subnets)
}

/// The balancer and its listeners as the file wants them (none without a fleet: `teardown`
/// then finds the balancer extra).
pub async fn plan(aws: &Aws, environment: &Environment) -> anyhow::Result<Option<Planned>> {
    let Some(fleet) = &environment.fleet else { return Ok(None) };
    check_certificate(aws, fleet).await?;
    let name = name(environment);
    let subnets = subnets(aws, environment, fleet).await?;
    let wrap = |steps: Vec<Step>| steps.into_iter().map(plan::Step::Balancer).collect();
    let Some(balancer) = find(aws, environment).await? else {
        let mut steps = vec![Step::Create(subnets), Step::SetAttributes(attributes(environment, fleet))];
        steps.extend(Listener::wanted(fleet).into_iter().map(Step::Listen));
        return Ok(Some(Planned::new(KIND, name, true, wrap(steps))));
    };
    let arn = balancer.load_balancer_arn().unwrap_or_default();
    anyhow::ensure!(
        balancer.scheme() == Some(&LoadBalancerSchemeEnum::InternetFacing),
        "the load balancer {name} is internal: it cannot become internet-facing; delete it and apply again"
    );
    let mut steps = Vec::new();
    let group = firewall::find(aws, environment, firewall::BALANCER).await?.and_then(|g| g.group_id);
    if group.is_none_or(|group| balancer.security_groups() != [group]) {
        steps.push(Step::SetSecurityGroup);
    }
    let mut actual_subnets: Vec<String> =
        balancer.availability_zones().iter().filter_map(|z| z.subnet_id().map(str::to_string)).collect();
    actual_subnets.sort();
    if actual_subnets != subnets {
        steps.push(Step::SetSubnets(subnets));
    }
    let wanted = attributes(environment, fleet);
    if !has_attributes(aws, arn, &wanted).await? {
        steps.push(Step::SetAttributes(wanted));
    }
    steps.extend(listener_steps(aws, environment, fleet, arn).await?);
    Ok(Some(Planned::new(KIND, name, false, wrap(steps))))
}

async fn has_attributes(aws: &Aws, arn: &str, wanted: &[(&str, String)]) -> anyhow::Result<bool> {
    let found = aws
        .elb
        .describe_load_balancer_attributes()
        .load_balancer_arn(arn)
        .send()
        .await
        .map_err(|e| explain(e, "elasticloadbalancing:DescribeLoadBalancerAttributes", arn))?;
    let actual = found.attributes();
    Ok(wanted.iter().all(|(key, value)| actual.iter().any(|a| a.key() == Some(key) && a.value() == Some(value))))
}

/// Each wanted listener created or corrected on its port; a listener on any other port goes.
async fn listener_steps(
    aws: &Aws,
    environment: &Environment,
    fleet: &FleetSpec,
    balancer: &str,
) -> anyhow::Result<Vec<Step>> {
    let found = aws
        .elb
        .describe_listeners()
        .load_balancer_arn(balancer)
        .send()
        .await
        .map_err(|e| explain(e, "elasticloadbalancing:DescribeListeners", balancer))?;
    let target_group = super::target_group::find(aws, environment).await?.and_then(|g| g.target_group_arn);
    let target_group = target_group.unwrap_or_default();
    let wanted = Listener::wanted(fleet);
    let mut steps = Vec::new();
    for listener in &wanted {
        let on_port = found.listeners().iter().find(|l| l.port() == Some(i32::from(listener.port())));
        match on_port {
            None => steps.push(Step::Listen(listener.clone())),
            Some(actual) if Listener::actual(actual, &target_group).as_ref() != Some(listener) => {
                steps.push(Step::Relisten(actual.listener_arn().unwrap_or_default().to_string(), listener.clone()));
            }
            Some(_) => {}
        }
    }
    for extra in found.listeners() {
        let port = extra.port().unwrap_or_default();
        if !wanted.iter().any(|l| i32::from(l.port()) == port) {
            let arn = extra.listener_arn().unwrap_or_default().to_string();
            steps.push(Step::StopListening(arn, u16::try_from(port).unwrap_or_default()));
        }
    }
    Ok(steps)
}

/// Every load balancer tagged for the environment (its listeners go with it).
pub async fn teardown(aws: &Aws, environment: &Environment) -> anyhow::Result<Vec<Planned>> {
    let mut pages = aws.elb.describe_load_balancers().into_paginator().items().send();
    let mut balancers = Vec::new();
    while let Some(balancer) =
        pages.try_next().await.map_err(|e| explain(e, "elasticloadbalancing:DescribeLoadBalancers", "*"))?
    {
        balancers
            .push((balancer.load_balancer_arn.unwrap_or_default(), balancer.load_balancer_name.unwrap_or_default()));
    }
    super::elb::deletions(aws, environment, KIND, balancers, |arn| plan::Step::Balancer(Step::Delete(arn))).await
}
