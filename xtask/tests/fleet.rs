//! A fleet against moto's server (which `cargo xtask test` starts): the load balancer's and the
//! instances' security groups, the target group and the internet-facing balancer with its HTTPS
//! and redirecting listeners, the fleet role, the launch template, the Auto Scaling group and
//! its scaling policy, made by `apply`, left alone by a second `apply`, repaired after drift
//! and removed by `destroy`. Every setting is read back with the SDK. moto reports every target
//! healthy and drains nothing, and it ignores a launch template's metadata options and instance
//! profile when it launches: target health is not tested here, and the template is checked
//! rather than the instances.

use std::io::Read;

use aws_sdk_autoscaling::types::MetricType;
use aws_sdk_ec2::types::{
    Filter, IpPermission, IpRange, LaunchTemplateBlockDeviceMappingRequest, LaunchTemplateEbsBlockDeviceRequest,
    LaunchTemplateHttpTokensState, LaunchTemplateIamInstanceProfileSpecificationRequest,
    LaunchTemplateInstanceMetadataOptionsRequest, RequestLaunchTemplateData, SecurityGroup, VolumeType,
};
use aws_sdk_elasticloadbalancingv2::types::{
    ActionTypeEnum, Certificate, Listener, ProtocolEnum, RedirectActionStatusCodeEnum,
};
use base64::Engine as _;

mod common;
use common::aws::*;

fn fleet_section(certificate: &str) -> String {
    format!(
        "fleet:\n  min: 1\n  max: 3\n  desired: 2\n  instance_type: t3.micro\n  \
         tls: {{certificate_arn: \"{certificate}\"}}\n  scaling: {{metric: ALBRequestCountPerTarget, target: 500}}\n  \
         health: {{path: /ready, interval_seconds: 10, timeout_seconds: 4, deregistration_delay_seconds: 20, \
         grace_period_seconds: 120}}\n  access_logs: {{prefix: alb-logs}}\n"
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
    let attribute = |key: &str| attributes.attributes().iter().find(|a| a.key() == Some(key)).and_then(|a| a.value());
    assert_eq!(attribute("access_logs.s3.enabled"), Some("true"));
    assert_eq!(attribute("access_logs.s3.bucket"), Some(format!("netsec-{}-models", env.name).as_str()));
    assert_eq!(attribute("access_logs.s3.prefix"), Some("alb-logs"));
    check_bucket_policy(env).await;
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

/// The bucket takes nothing without TLS, and the load balancer's access logs under their prefix
/// (moto keeps the policy but does not enforce it: the document is checked).
async fn check_bucket_policy(env: &TestEnv) {
    let config = sdk().await;
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build());
    let bucket = format!("netsec-{}-models", env.name);
    let found = s3.get_bucket_policy().bucket(&bucket).send().await.unwrap();
    let policy: serde_json::Value = serde_json::from_str(found.policy().unwrap()).unwrap();
    let statements = policy["Statement"].as_array().unwrap();
    let deny = statements.iter().find(|s| s["Effect"] == "Deny").expect("a Deny statement");
    assert_eq!(deny["Condition"]["Bool"]["aws:SecureTransport"], "false", "{policy}");
    assert_eq!(deny["Principal"], "*");
    let logs = statements.iter().find(|s| s["Effect"] == "Allow").expect("the access logs' grant");
    assert_eq!(logs["Principal"]["AWS"], "arn:aws:iam::127311923021:root", "us-east-1's load balancers: {policy}");
    assert_eq!(logs["Action"], "s3:PutObject");
    assert_eq!(logs["Resource"], format!("arn:aws:s3:::{bucket}/alb-logs/AWSLogs/123456789012/*"));
    lint_policy("the bucket policy", &policy);
}

/// The launch template's default version, the group (checking instances with `health_check`)
/// and its policy, and the fleet role.
async fn check_instances(env: &TestEnv, health_check: &str) {
    let config = sdk().await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let name = format!("netsec-{}-fleet", env.name);
    let versions = ec2.describe_launch_template_versions().launch_template_name(&name).versions("$Default");
    let versions = versions.send().await.unwrap();
    let data = versions.launch_template_versions()[0].launch_template_data().unwrap();
    let metadata = data.metadata_options().unwrap();
    assert_eq!(metadata.http_tokens(), Some(&LaunchTemplateHttpTokensState::Required), "IMDSv2 only");
    assert_eq!(metadata.http_put_response_hop_limit(), Some(1));
    let root = data.block_device_mappings()[0].ebs().unwrap();
    assert_eq!((root.encrypted(), root.volume_type()), (Some(true), Some(&VolumeType::Gp3)));
    assert_eq!(data.iam_instance_profile().and_then(|p| p.name()), Some(name.as_str()));
    assert_eq!(data.instance_type().map(|t| t.as_str()), Some("t3.micro"));
    // EC2 resolves the parameter at each launch: a newer AMI needs no new version.
    let image = "resolve:ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64";
    assert_eq!(data.image_id(), Some(image));
    let groups = groups(env).await;
    assert_eq!(data.security_group_ids(), [group(&groups, env, "fleet").group_id().unwrap().to_string()]);
    let user_data = base64::engine::general_purpose::STANDARD.decode(data.user_data().unwrap()).unwrap();
    let mut script = String::new();
    flate2::read::GzDecoder::new(user_data.as_slice()).read_to_string(&mut script).unwrap();
    assert!(script.contains(&format!("--name \"/netsec/{}/deploy/current\"", env.name)), "{script}");
    assert!(script.contains("netsec-update.sh deploy \"$image\""), "{script}");

    let autoscaling = aws_sdk_autoscaling::Client::new(&config);
    let found = autoscaling.describe_auto_scaling_groups().auto_scaling_group_names(&name).send().await.unwrap();
    let group = &found.auto_scaling_groups()[0];
    assert_eq!((group.min_size(), group.max_size(), group.desired_capacity()), (Some(1), Some(3), Some(2)));
    let template = group.launch_template().unwrap();
    assert_eq!((template.launch_template_name(), template.version()), (Some(name.as_str()), Some("$Default")));
    assert_eq!((group.health_check_type(), group.health_check_grace_period()), (Some(health_check), Some(120)));
    assert!(group.vpc_zone_identifier().unwrap().split(',').count() >= 2, "{:?}", group.vpc_zone_identifier());
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&config);
    let target_group = elb.describe_target_groups().names(format!("netsec-{}-web", env.name)).send().await.unwrap();
    let target_group = target_group.target_groups()[0].target_group_arn().unwrap().to_string();
    assert_eq!(group.target_group_arns(), std::slice::from_ref(&target_group));
    let env_tag = group.tags().iter().find(|t| t.key() == Some("netsec:env")).unwrap();
    assert_eq!((env_tag.value(), env_tag.propagate_at_launch()), (Some(env.name.as_str()), Some(true)));
    assert_eq!(group.instances().len(), 2, "{:?}", group.instances());

    let policies = autoscaling.describe_policies().auto_scaling_group_name(&name).send().await.unwrap();
    let policy = &policies.scaling_policies()[0];
    assert_eq!(policy.policy_name(), Some(format!("netsec-{}-scaling", env.name).as_str()));
    assert_eq!(policy.policy_type(), Some("TargetTrackingScaling"));
    let tracking = policy.target_tracking_configuration().unwrap();
    assert_eq!(tracking.target_value(), Some(500.0));
    let metric = tracking.predefined_metric_specification().unwrap();
    assert_eq!(metric.predefined_metric_type(), Some(&MetricType::AlbRequestCountPerTarget));
    let label = metric.resource_label().unwrap();
    assert!(label.starts_with(&format!("app/netsec-{}-alb/", env.name)), "{label}");
    assert!(target_group.ends_with(&label[label.find("targetgroup/").unwrap()..]), "{label} for {target_group}");

    let iam = aws_sdk_iam::Client::new(&config);
    let document = iam.get_role_policy().role_name(&name).policy_name(&name).send().await.unwrap();
    let document = decode(document.policy_document());
    let actions = document["Statement"].as_array().unwrap().iter().flat_map(|s| match &s["Action"] {
        serde_json::Value::Array(list) => list.iter().map(|a| a.as_str().unwrap().to_string()).collect(),
        action => vec![action.as_str().unwrap().to_string()],
    });
    let actions: Vec<String> = actions.collect();
    assert!(actions.contains(&"s3:GetObject".to_string()) && actions.contains(&"ecr:BatchGetImage".to_string()));
    for forbidden in ["s3:PutObject", "s3:DeleteObject", "ssm:GetParametersByPath"] {
        assert!(!actions.contains(&forbidden.to_string()), "the fleet role may {forbidden}: {document}");
    }
    lint_policy("the fleet role's policy", &document);
    let runner = format!("netsec-{}-runner", env.name);
    let document = iam.get_role_policy().role_name(&runner).policy_name(&runner).send().await.unwrap();
    lint_policy("the runner role's policy", &decode(document.policy_document()));
}

/// What a deploy leaves: the image the instances start, in `deploy/current`.
async fn deployed(env: &TestEnv) {
    let ssm = aws_sdk_ssm::Client::new(&sdk().await);
    let image = format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/netsec-{}@sha256:{}", env.name, "ab".repeat(32));
    let name = format!("/netsec/{}/deploy/current", env.name);
    let put = ssm.put_parameter().name(name).value(image).r#type(aws_sdk_ssm::types::ParameterType::String);
    put.send().await.unwrap();
}

/// The fleet's instances, as EC2 lists them (not terminated).
async fn fleet_instances(env: &TestEnv) -> usize {
    let ec2 = aws_sdk_ec2::Client::new(&sdk().await);
    let group = Filter::builder().name("tag:aws:autoscaling:groupName").values(format!("netsec-{}-fleet", env.name));
    let live = Filter::builder().name("instance-state-name").values("pending").values("running");
    let found = ec2.describe_instances().filters(group.build()).filters(live.build()).send().await.unwrap();
    found.reservations().iter().map(|r| r.instances().len()).sum()
}

/// The template's default version allowing IMDSv1 (a copy of the current one but for that:
/// moto ignores SourceVersion), the group's maximum raised.
async fn drift_instances(env: &TestEnv) {
    let config = sdk().await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let name = format!("netsec-{}-fleet", env.name);
    let versions = ec2.describe_launch_template_versions().launch_template_name(&name).versions("$Default");
    let versions = versions.send().await.unwrap();
    let current = versions.launch_template_versions()[0].launch_template_data().unwrap();
    let mapping = &current.block_device_mappings()[0];
    let ebs = mapping.ebs().unwrap();
    let root =
        LaunchTemplateBlockDeviceMappingRequest::builder().set_device_name(mapping.device_name().map(Into::into)).ebs(
            LaunchTemplateEbsBlockDeviceRequest::builder()
                .set_encrypted(ebs.encrypted())
                .set_volume_size(ebs.volume_size())
                .set_volume_type(ebs.volume_type().cloned())
                .build(),
        );
    let profile = current.iam_instance_profile().and_then(|p| p.name()).unwrap();
    let metadata = LaunchTemplateInstanceMetadataOptionsRequest::builder()
        .http_tokens(LaunchTemplateHttpTokensState::Optional)
        .http_put_response_hop_limit(1);
    let data = RequestLaunchTemplateData::builder()
        .set_image_id(current.image_id().map(Into::into))
        .set_instance_type(current.instance_type().cloned())
        .iam_instance_profile(LaunchTemplateIamInstanceProfileSpecificationRequest::builder().name(profile).build())
        .metadata_options(metadata.build())
        .block_device_mappings(root.build())
        .set_security_group_ids(Some(current.security_group_ids().to_vec()))
        .set_user_data(current.user_data().map(Into::into));
    let created = ec2
        .create_launch_template_version()
        .launch_template_name(&name)
        .launch_template_data(data.build())
        .send()
        .await
        .unwrap();
    let version = created.launch_template_version().unwrap().version_number().unwrap();
    ec2.modify_launch_template().launch_template_name(&name).default_version(version.to_string()).send().await.unwrap();
    let autoscaling = aws_sdk_autoscaling::Client::new(&config);
    autoscaling.update_auto_scaling_group().auto_scaling_group_name(&name).max_size(5).send().await.unwrap();
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
fn a_fleet_is_applied_kept_repaired_and_destroyed() {
    let certificate = runtime().block_on(certificate());
    let env = TestEnv::new("f", &fleet_section(&certificate));
    let plan = succeeds(&mut xtask(&["plan", "--env", env.path()]));
    assert!(plan.contains("plan: 15 to create, 0 to update"), "{plan}");
    assert!(plan.contains("listen: HTTPS on 443") && plan.contains("redirecting to HTTPS"), "{plan}");
    assert!(plan.contains("track ALBRequestCountPerTarget at 500"), "{plan}");

    succeeds(&mut xtask(&["apply", "--env", env.path()]));
    runtime().block_on(check_front(&env, &certificate));
    // Nothing is deployed yet: the target group would find every instance unhealthy.
    runtime().block_on(check_instances(&env, "EC2"));
    assert_eq!(runtime().block_on(fleet_instances(&env)), 2, "the group launched its instances");

    // Once an image is deployed, the target group's health decides.
    runtime().block_on(deployed(&env));
    let plan = succeeds(&mut xtask(&["plan", "--env", env.path()]));
    assert!(plan.contains("ELB health checks after 120 s"), "{plan}");
    assert!(plan.contains("0 to create, 1 to update"), "{plan}");
    succeeds(&mut xtask(&["apply", "--env", env.path()]));
    runtime().block_on(check_instances(&env, "ELB"));

    // The fleet's instances carry the environment's tag: they are not taken for runners.
    let again = succeeds(&mut xtask(&["apply", "--env", env.path()]));
    assert!(again.contains("apply: 0 mutating calls"), "{again}");
    assert!(again.contains("0 to create, 0 to update, 0 to replace, 0 to delete, 15 unchanged"), "{again}");

    runtime().block_on(drift(&env, &certificate));
    runtime().block_on(drift_instances(&env));
    let plan = succeeds(&mut xtask(&["plan", "--env", env.path()]));
    assert!(plan.contains("revoke tcp/8080 from 0.0.0.0/0"), "{plan}");
    assert!(plan.contains("health check GET /ready"), "{plan}");
    assert!(plan.contains("change the 443 listener"), "{plan}");
    assert!(plan.contains("new default version: IMDSv2 required (instances"), "{plan}");
    assert!(plan.contains("set 1–3 instances"), "{plan}");
    succeeds(&mut xtask(&["apply", "--env", env.path()]));
    runtime().block_on(check_front(&env, &certificate));
    runtime().block_on(check_instances(&env, "ELB"));
    let repaired = succeeds(&mut xtask(&["apply", "--env", env.path()]));
    assert!(repaired.contains("apply: 0 mutating calls"), "{repaired}");

    // `scale` within the file's bounds; outside them it is refused before any call.
    let refused = fails(&mut xtask(&["scale", "--env", env.path(), "--desired", "4"]));
    let stderr = common::text(&refused.stderr);
    assert!(stderr.contains("--desired 4 is outside") && stderr.contains("fleet.max is 3"), "{stderr}");
    let scaled = succeeds(&mut xtask(&["scale", "--env", env.path(), "--desired", "3"]));
    assert!(scaled.contains("desired capacity 2 → 3"), "{scaled}");
    assert_eq!(runtime().block_on(fleet_instances(&env)), 3, "the group launched a third instance");
    let status = succeeds(&mut xtask(&["status", "--env", env.path()]));
    let group = format!("fleet netsec-{}-fleet: 3 instances (min 1, desired 3, max 3), ELB health checks", env.name);
    assert!(status.contains(&group), "{status}");
    assert!(status.contains(&format!("balancer: https://netsec-{}-alb", env.name)), "{status}");
    assert!(status.contains(&format!("deployed: 123456789012.dkr.ecr.us-east-1.amazonaws.com/netsec-{}@", env.name)));
    let instances: Vec<&str> = status.lines().filter(|l| l.trim_start().starts_with("i-")).collect();
    assert_eq!(instances.len(), 3, "{status}");
    assert!(instances.iter().all(|l| l.contains("  us-east-1") && l.contains("InService")), "{status}");
    assert!(instances.iter().all(|l| l.contains("target healthy")), "{status}");

    succeeds(&mut xtask(&["destroy", "--env", env.path(), "--yes"]));
    runtime().block_on(async {
        assert!(groups(&env).await.is_empty(), "security groups left");
        assert_eq!(fleet_instances(&env).await, 0, "fleet instances left");
        let config = sdk().await;
        let elb = aws_sdk_elasticloadbalancingv2::Client::new(&config);
        let balancers = elb.describe_load_balancers().names(format!("netsec-{}-alb", env.name)).send().await;
        assert!(balancers.is_err(), "the load balancer is left");
        let target_groups = elb.describe_target_groups().names(format!("netsec-{}-web", env.name)).send().await;
        assert!(target_groups.is_err(), "the target group is left");
        let name = format!("netsec-{}-fleet", env.name);
        let autoscaling = aws_sdk_autoscaling::Client::new(&config);
        let found = autoscaling.describe_auto_scaling_groups().auto_scaling_group_names(&name).send().await.unwrap();
        assert!(found.auto_scaling_groups().is_empty(), "the Auto Scaling group is left");
        let ec2 = aws_sdk_ec2::Client::new(&config);
        let templates = Filter::builder().name("launch-template-name").values(&name).build();
        let templates = ec2.describe_launch_templates().filters(templates).send().await.unwrap();
        assert!(templates.launch_templates().is_empty(), "the launch template is left");
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

/// An image in the environment's repository, by digest: moto keeps the manifest alone, which
/// is all a deploy by digest reads. (moto digests the layers' digests rather than the manifest,
/// as ECR does: each version gets a layer of its own so that the two differ.)
async fn pushed_image(env: &TestEnv, version: &str) -> String {
    let ecr = aws_sdk_ecr::Client::new(&sdk().await);
    let blob = |kind: &str| format!("sha256:{:0>64}", format!("{kind}{version}"));
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2, "digest": blob("c")},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 2, "digest": blob("a")}],
    });
    let repository = format!("netsec-{}", env.name);
    let put = ecr.put_image().repository_name(&repository).image_manifest(manifest.to_string()).image_tag(version);
    let put = put.send().await.unwrap();
    let digest = put.image().unwrap().image_id().unwrap().image_digest().unwrap();
    format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/{repository}@{digest}")
}

/// The update-script invocations each of the fleet's instances was sent, by instance.
async fn fleet_commands(env: &TestEnv) -> std::collections::BTreeMap<String, Vec<String>> {
    let config = sdk().await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let group = Filter::builder().name("tag:aws:autoscaling:groupName").values(format!("netsec-{}-fleet", env.name));
    let found = ec2.describe_instances().filters(group.build()).send().await.unwrap();
    let ids = found.reservations().iter().flat_map(|r| r.instances()).filter_map(|i| i.instance_id());
    let ssm = aws_sdk_ssm::Client::new(&config);
    let mut sent = std::collections::BTreeMap::new();
    for id in ids {
        let listed = ssm.list_commands().instance_id(id).send().await.unwrap();
        let mut commands: Vec<(i64, String)> = listed
            .commands()
            .iter()
            .filter_map(|c| {
                let script = c.parameters()?.get("commands")?.last()?.clone();
                let invocation = script.split("/opt/netsec/netsec-update.sh ").nth(1)?.to_string();
                Some((c.requested_date_time()?.as_nanos() as i64, invocation))
            })
            .collect();
        commands.sort();
        sent.insert(id.to_string(), commands.into_iter().map(|(_, c)| c).collect());
    }
    sent
}

async fn parameter(env: &TestEnv, name: &str) -> String {
    let ssm = aws_sdk_ssm::Client::new(&sdk().await);
    let found = ssm.get_parameter().name(format!("/netsec/{}/{name}", env.name)).send().await.unwrap();
    found.parameter().unwrap().value().unwrap().to_string()
}

/// The rolling deploy's bookkeeping against moto (whose targets are always healthy: the
/// health-gated behaviour is tested against a real balancer elsewhere): every instance in
/// service is updated once, one batch at a time; `deploy/current` names the image only then,
/// and the group's health checks turn to the target group; nothing changed, nothing is done;
/// `rollback` rolls the fleet back the same way.
#[test]
fn a_fleet_is_deployed_and_rolled_back_batch_by_batch() {
    let certificate = runtime().block_on(certificate());
    let section = format!(
        "fleet:\n  min: 2\n  max: 4\n  desired: 3\n  max_unavailable: 1\n  tls: {{certificate_arn: \"{certificate}\"}}\n  \
         health: {{interval_seconds: 5, timeout_seconds: 2, deregistration_delay_seconds: 0}}\n"
    );
    let env = TestEnv::new("r", &section);
    succeeds(&mut xtask(&["apply", "--env", env.path()]));
    let (first, second) = runtime().block_on(async { (pushed_image(&env, "1").await, pushed_image(&env, "2").await) });
    assert_ne!(first, second);

    let deployed = succeeds(&mut xtask(&["deploy", "--env", env.path(), "--image", &first]));
    for batch in ["batch 1: i-", "batch 2: i-", "batch 3: i-"] {
        assert!(deployed.contains(batch), "three batches of one: {deployed}");
    }
    assert!(deployed.contains("(3 of 3 targets healthy, fleet.min 2)"), "{deployed}");
    assert!(!deployed.contains("batch 4"), "{deployed}");
    assert!(deployed.contains(&format!("deployed {first} to {} (3 fleet instances)", env.name)), "{deployed}");
    let sent = runtime().block_on(fleet_commands(&env));
    assert_eq!(sent.len(), 3, "{sent:?}");
    for commands in sent.values() {
        assert_eq!(commands, &[format!("'deploy' '{first}'")], "each instance once: {sent:?}");
    }
    assert_eq!(runtime().block_on(parameter(&env, "deploy/current")), first);
    runtime().block_on(async {
        let autoscaling = aws_sdk_autoscaling::Client::new(&sdk().await);
        let name = format!("netsec-{}-fleet", env.name);
        let found = autoscaling.describe_auto_scaling_groups().auto_scaling_group_names(&name).send().await.unwrap();
        assert_eq!(found.auto_scaling_groups()[0].health_check_type(), Some("ELB"), "the target group decides now");
    });

    let again = succeeds(&mut xtask(&["deploy", "--env", env.path(), "--image", &first]));
    assert!(again.contains("nothing to deploy") && again.contains("(0 mutating calls)"), "{again}");

    succeeds(&mut xtask(&["deploy", "--env", env.path(), "--image", &second]));
    assert_eq!(runtime().block_on(parameter(&env, "deploy/current")), second);
    let rolled = succeeds(&mut xtask(&["rollback", "--env", env.path()]));
    assert!(rolled.contains("batch 3: i-") && rolled.contains(&format!("back to {first}")), "{rolled}");
    assert_eq!(runtime().block_on(parameter(&env, "deploy/current")), first);
    let sent = runtime().block_on(fleet_commands(&env));
    for commands in sent.values() {
        let expected = [format!("'deploy' '{first}'"), format!("'deploy' '{second}'"), format!("'rollback' '{first}'")];
        assert_eq!(commands, &expected, "{sent:?}");
    }
    let history = runtime().block_on(parameter(&env, "deploy/history"));
    assert_eq!(history.matches("\"action\":\"rollback\"").count(), 1, "{history}");

    let status = succeeds(&mut xtask(&["status", "--env", env.path()]));
    assert!(status.contains("(trains; the fleet serves)") && status.contains(&format!("deployed: {first}")));
    let stray = fails(&mut xtask(&["logs", "--env", env.path(), "--instance", "i-00000000000000000"]));
    let stderr = common::text(&stray.stderr);
    assert!(stderr.contains("is not one of environment") && stderr.contains("the fleet's in service i-"), "{stderr}");
    succeeds(&mut xtask(&["destroy", "--env", env.path(), "--yes"]));
}
