//! A fleet's front against moto's server (which `cargo xtask test` starts): the load balancer's
//! and the instances' security groups, the target group and the internet-facing balancer with
//! its HTTPS and redirecting listeners, made by `apply`, left alone by a second `apply`,
//! repaired after drift and removed by `destroy`. Every setting is read back with the SDK.
//! moto reports every target healthy and drains nothing: target health is not tested here.

use aws_sdk_ec2::types::{Filter, IpPermission, IpRange, SecurityGroup};
use aws_sdk_elasticloadbalancingv2::types::{
    ActionTypeEnum, Certificate, Listener, ProtocolEnum, RedirectActionStatusCodeEnum,
};

mod common;
use common::aws::*;

/// A certificate moto issues at once (the harness sets its validation wait to 0).
async fn certificate() -> String {
    let acm = aws_sdk_acm::Client::new(&sdk().await);
    let requested = acm.request_certificate().domain_name("netsec.example.com").send().await.unwrap();
    requested.certificate_arn().unwrap().to_string()
}

fn fleet_section(certificate: &str) -> String {
    format!(
        "fleet:\n  min: 1\n  max: 3\n  desired: 2\n  tls: {{certificate_arn: \"{certificate}\"}}\n  \
         health: {{path: /ready, interval_seconds: 10, timeout_seconds: 4, deregistration_delay_seconds: 20}}\n"
    )
}

async fn groups(env: &TestEnv) -> Vec<SecurityGroup> {
    let ec2 = aws_sdk_ec2::Client::new(&sdk().await);
    let filter = Filter::builder().name("tag:netsec:env").values(&env.name).build();
    ec2.describe_security_groups().filters(filter).send().await.unwrap().security_groups().to_vec()
}

fn group<'a>(groups: &'a [SecurityGroup], env: &TestEnv, role: &str) -> &'a SecurityGroup {
    let name = format!("netsec-{}-{role}", env.name);
    groups.iter().find(|g| g.group_name() == Some(name.as_str())).unwrap_or_else(|| panic!("no group {name}"))
}

/// (port, CIDR or group id) for every inbound rule.
fn inbound(group: &SecurityGroup) -> Vec<(i32, String)> {
    let mut rules = Vec::new();
    for permission in group.ip_permissions() {
        let port = permission.from_port().unwrap();
        rules.extend(permission.ip_ranges().iter().map(|r| (port, r.cidr_ip().unwrap().to_string())));
        rules.extend(permission.user_id_group_pairs().iter().map(|p| (port, p.group_id().unwrap().to_string())));
    }
    rules.sort();
    rules
}

async fn listeners(elb: &aws_sdk_elasticloadbalancingv2::Client, balancer: &str) -> Vec<Listener> {
    let found = elb.describe_listeners().load_balancer_arn(balancer).send().await.unwrap();
    let mut listeners = found.listeners().to_vec();
    listeners.sort_by_key(|l| l.port());
    listeners
}

/// Every resource of the fleet's front, setting by setting.
async fn check_front(env: &TestEnv, certificate: &str) {
    let groups = groups(env).await;
    let (alb, fleet) = (group(&groups, env, "alb"), group(&groups, env, "fleet"));
    let network = "203.0.113.0/24".to_string();
    assert_eq!(inbound(alb), [(80, network.clone()), (443, network)]);
    assert_eq!(inbound(fleet), [(8080, alb.group_id().unwrap().to_string())], "the instances take the balancer only");

    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&sdk().await);
    let name = format!("netsec-{}-web", env.name);
    let found = elb.describe_target_groups().names(&name).send().await.unwrap();
    let target_group = &found.target_groups()[0];
    assert_eq!((target_group.protocol(), target_group.port()), (Some(&ProtocolEnum::Http), Some(8080)));
    assert_eq!(target_group.health_check_path(), Some("/ready"));
    assert_eq!(target_group.health_check_interval_seconds(), Some(10));
    assert_eq!(target_group.health_check_timeout_seconds(), Some(4));
    assert_eq!(target_group.healthy_threshold_count(), Some(3));
    assert_eq!(target_group.matcher().and_then(|m| m.http_code()), Some("200"));
    let target_group_arn = target_group.target_group_arn().unwrap();
    let attributes = elb.describe_target_group_attributes().target_group_arn(target_group_arn).send().await.unwrap();
    let delay = attributes.attributes().iter().find(|a| a.key() == Some("deregistration_delay.timeout_seconds"));
    assert_eq!(delay.and_then(|a| a.value()), Some("20"));

    let name = format!("netsec-{}-alb", env.name);
    let found = elb.describe_load_balancers().names(&name).send().await.unwrap();
    let balancer = &found.load_balancers()[0];
    assert_eq!(balancer.scheme().map(|s| s.as_str()), Some("internet-facing"));
    assert_eq!(balancer.r#type().map(|t| t.as_str()), Some("application"));
    assert_eq!(balancer.security_groups(), [alb.group_id().unwrap().to_string()]);
    let zones: std::collections::BTreeSet<_> = balancer.availability_zones().iter().map(|z| z.zone_name()).collect();
    assert!(zones.len() >= 2, "{zones:?}");
    let balancer_arn = balancer.load_balancer_arn().unwrap();
    let attributes = elb.describe_load_balancer_attributes().load_balancer_arn(balancer_arn).send().await.unwrap();
    let dropped =
        attributes.attributes().iter().find(|a| a.key() == Some("routing.http.drop_invalid_header_fields.enabled"));
    assert_eq!(dropped.and_then(|a| a.value()), Some("true"));
    let tags = elb.describe_tags().resource_arns(balancer_arn).send().await.unwrap();
    let tags = tags.tag_descriptions()[0].tags();
    assert!(tags.iter().any(|t| t.key() == Some("netsec:env") && t.value() == Some(env.name.as_str())));

    let listeners = listeners(&elb, balancer_arn).await;
    assert_eq!(listeners.len(), 2, "{listeners:?}");
    let (http, https) = (&listeners[0], &listeners[1]);
    assert_eq!((https.protocol(), https.port()), (Some(&ProtocolEnum::Https), Some(443)));
    assert_eq!(https.ssl_policy(), Some("ELBSecurityPolicy-TLS13-1-2-2021-06"));
    assert_eq!(https.certificates()[0].certificate_arn(), Some(certificate));
    let forward = &https.default_actions()[0];
    assert_eq!(forward.r#type(), Some(&ActionTypeEnum::Forward));
    assert_eq!(forward.target_group_arn(), Some(target_group_arn));
    assert_eq!((http.protocol(), http.port()), (Some(&ProtocolEnum::Http), Some(80)));
    let redirect = http.default_actions()[0].redirect_config().expect("port 80 only redirects");
    assert_eq!((redirect.protocol(), redirect.port()), (Some("HTTPS"), Some("443")));
    assert_eq!(redirect.status_code(), Some(&RedirectActionStatusCodeEnum::Http301));
}

/// Changes behind the tool's back: the instances opened to everyone, another health-check
/// path, an older TLS policy on the HTTPS listener.
async fn drift(env: &TestEnv, certificate: &str) {
    let config = sdk().await;
    let groups = groups(env).await;
    let everyone = IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(8080)
        .to_port(8080)
        .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
        .build();
    let fleet = group(&groups, env, "fleet").group_id().unwrap();
    let ec2 = aws_sdk_ec2::Client::new(&config);
    ec2.authorize_security_group_ingress().group_id(fleet).ip_permissions(everyone).send().await.unwrap();

    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&config);
    let found = elb.describe_target_groups().names(format!("netsec-{}-web", env.name)).send().await.unwrap();
    let target_group = found.target_groups()[0].target_group_arn().unwrap();
    elb.modify_target_group().target_group_arn(target_group).health_check_path("/").send().await.unwrap();
    let found = elb.describe_load_balancers().names(format!("netsec-{}-alb", env.name)).send().await.unwrap();
    let https = listeners(&elb, found.load_balancers()[0].load_balancer_arn().unwrap()).await.remove(1);
    elb.modify_listener()
        .listener_arn(https.listener_arn().unwrap())
        .certificates(Certificate::builder().certificate_arn(certificate).build())
        .ssl_policy("ELBSecurityPolicy-2016-08")
        .send()
        .await
        .unwrap();
}

#[test]
fn a_fleet_front_is_applied_kept_repaired_and_destroyed() {
    let certificate = runtime().block_on(certificate());
    let env = TestEnv::new("f", &fleet_section(&certificate));
    let plan = succeeds(&mut xtask(&["plan", "--env", env.path()]));
    assert!(plan.contains("plan: 10 to create, 0 to update"), "{plan}");
    assert!(plan.contains("listen: HTTPS on 443") && plan.contains("redirecting to HTTPS"), "{plan}");

    succeeds(&mut xtask(&["apply", "--env", env.path()]));
    runtime().block_on(check_front(&env, &certificate));

    let again = succeeds(&mut xtask(&["apply", "--env", env.path()]));
    assert!(again.contains("apply: 0 mutating calls"), "{again}");
    assert!(again.contains("0 to create, 0 to update, 0 to replace, 0 to delete, 10 unchanged"), "{again}");

    runtime().block_on(drift(&env, &certificate));
    let plan = succeeds(&mut xtask(&["plan", "--env", env.path()]));
    assert!(plan.contains("revoke tcp/8080 from 0.0.0.0/0"), "{plan}");
    assert!(plan.contains("health check GET /ready"), "{plan}");
    assert!(plan.contains("change the 443 listener"), "{plan}");
    succeeds(&mut xtask(&["apply", "--env", env.path()]));
    runtime().block_on(check_front(&env, &certificate));
    let repaired = succeeds(&mut xtask(&["apply", "--env", env.path()]));
    assert!(repaired.contains("apply: 0 mutating calls"), "{repaired}");

    succeeds(&mut xtask(&["destroy", "--env", env.path(), "--yes"]));
    runtime().block_on(async {
        assert!(groups(&env).await.is_empty(), "security groups left");
        let elb = aws_sdk_elasticloadbalancingv2::Client::new(&sdk().await);
        let balancers = elb.describe_load_balancers().names(format!("netsec-{}-alb", env.name)).send().await;
        assert!(balancers.is_err(), "the load balancer is left");
        let target_groups = elb.describe_target_groups().names(format!("netsec-{}-web", env.name)).send().await;
        assert!(target_groups.is_err(), "the target group is left");
    });
}

#[test]
fn a_certificate_that_is_not_there_stops_the_plan_before_any_change() {
    let missing = "arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-0000-0000-000000000000";
    let env = TestEnv::new("c", &fleet_section(missing));
    let failed = fails(&mut xtask(&["apply", "--env", env.path()]));
    let stderr = common::text(&failed.stderr);
    assert!(stderr.contains("fleet.tls.certificate_arn") && stderr.contains("request or import it"), "{stderr}");
    runtime().block_on(async { assert!(groups(&env).await.is_empty(), "apply changed something") });
}
