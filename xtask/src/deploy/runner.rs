//! The EC2 runner: Amazon Linux 2023 (the AMI its public SSM parameter names), IMDSv2 only,
//! an encrypted root volume, the runner role's instance profile, the service security group,
//! and user data that installs Docker and the GitHub Actions runner (infra/host/user-data.sh).
//!
//! The user data runs on first boot only, so a change to it replaces the instance; so does a
//! change of subnet. The instance type is changed in place (stop, modify, start). A newer AMI
//! is not a reason to replace a running machine: it is used by the next replacement.

use std::time::{Duration, Instant};

use aws_sdk_ec2::types::{
    AttributeValue, BlockDeviceMapping, EbsBlockDevice, Filter, HttpTokensState, IamInstanceProfileSpecification,
    Instance, InstanceMetadataEndpointState, InstanceMetadataOptionsRequest, InstanceStateName, InstanceType,
    ResourceType, Tag, TagSpecification, VolumeType,
};
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::environment::{Environment, ENV_TAG};
use super::plan::{self, Change, Planned};
use crate::aws::{explain, Aws};

pub const INSTANCE: &str = "ec2 instance";
pub const PARAMETER: &str = "ssm parameter";
/// The tag holding the sha256 of the user data the instance was launched with.
const USER_DATA_TAG: &str = "netsec:user-data-sha256";
const USER_DATA_TEMPLATE: &str = include_str!("../../../infra/host/user-data.sh");
/// IMDSv2 answers one hop away: processes on the host, and containers on the host's network
/// (the service's), but not containers behind a bridge.
const METADATA_HOP_LIMIT: i32 = 1;

#[derive(Debug, Clone)]
pub enum Step {
    Launch,
    RequireImdsV2(String),
    InstanceType(String),
    Terminate(String),
    DeleteParameters(Vec<String>),
}

impl Step {
    pub fn describe(&self) -> String {
        match self {
            Step::Launch => "launch (IMDSv2 required, encrypted root volume, runner user data)".into(),
            Step::RequireImdsV2(id) => format!("require IMDSv2 on {id}"),
            Step::InstanceType(id) => format!("stop {id}, change its instance type, start it"),
            Step::Terminate(id) => format!("terminate {id}"),
            Step::DeleteParameters(names) => format!("delete {}", names.join(", ")),
        }
    }

    pub async fn run(&self, aws: &Aws, environment: &Environment) -> anyhow::Result<()> {
        match self {
            Step::Launch => launch(aws, environment).await,
            Step::RequireImdsV2(id) => {
                aws.ec2
                    .modify_instance_metadata_options()
                    .instance_id(id)
                    .http_tokens(HttpTokensState::Required)
                    .http_endpoint(InstanceMetadataEndpointState::Enabled)
                    .http_put_response_hop_limit(METADATA_HOP_LIMIT)
                    .send()
                    .await
                    .map_err(|e| explain(e, "ec2:ModifyInstanceMetadataOptions", id))?;
                Ok(())
            }
            Step::InstanceType(id) => change_type(aws, id, &environment.runner.instance_type).await,
            Step::Terminate(id) => terminate(aws, id).await,
            Step::DeleteParameters(names) => {
                for chunk in names.chunks(10) {
                    aws.ssm
                        .delete_parameters()
                        .set_names(Some(chunk.to_vec()))
                        .send()
                        .await
                        .map_err(|e| explain(e, "ssm:DeleteParameters", &chunk.join(", ")))?;
                }
                Ok(())
            }
        }
    }
}

pub fn ec2_tags(pairs: &[(String, String)]) -> Vec<Tag> {
    pairs.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()
}

/// The user data for the environment, with its {{…}} filled in.
pub fn user_data(environment: &Environment, region: &str) -> String {
    let fills = [
        ("{{REGION}}", region.to_string()),
        ("{{RUNNER_VERSION}}", environment.runner.runner_version.clone()),
        ("{{RUNNER_SHA256}}", environment.runner.runner_sha256.clone()),
        ("{{TOKEN_PARAMETER}}", environment.parameter("runner/registration-token")),
        ("{{GITHUB_REPOSITORY}}", environment.runner.github_repository.clone()),
        ("{{RUNNER_NAME}}", environment.resource_name("runner")),
        ("{{RUNNER_LABELS}}", environment.runner_labels().join(",")),
    ];
    fills.iter().fold(USER_DATA_TEMPLATE.to_string(), |text, (key, value)| text.replace(key, value))
}

fn user_data_sha256(environment: &Environment, region: &str) -> String {
    hex::encode(Sha256::digest(user_data(environment, region).as_bytes()))
}

/// The tag EC2 Auto Scaling puts on the instances it launches.
pub const SCALING_GROUP_TAG: &str = "aws:autoscaling:groupName";

/// The environment's live runner instances (not terminated or terminating). The fleet's
/// instances carry the environment's tag too, but they belong to their Auto Scaling group.
pub async fn instances(aws: &Aws, environment: &Environment) -> anyhow::Result<Vec<Instance>> {
    let found = aws
        .ec2
        .describe_instances()
        .filters(Filter::builder().name(format!("tag:{ENV_TAG}")).values(&environment.name).build())
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .set_values(Some(["pending", "running", "stopping", "stopped"].map(String::from).to_vec()))
                .build(),
        )
        .send()
        .await
        .map_err(|e| explain(e, "ec2:DescribeInstances", &environment.resource_name("runner")))?;
    let instances = found.reservations().iter().flat_map(|r| r.instances().iter().cloned());
    Ok(instances.filter(|i| !i.tags().iter().any(|t| t.key() == Some(SCALING_GROUP_TAG))).collect())
}

/// The runner instance (the newest live one), for deploy, status and logs.
pub async fn current(aws: &Aws, environment: &Environment) -> anyhow::Result<Instance> {
    let mut found = instances(aws, environment).await?;
    found.sort_by_key(|i| i.launch_time().map(|t| t.secs()));
    found.pop().ok_or_else(|| {
        anyhow::anyhow!("environment {} has no runner instance: run `cargo xtask apply`", environment.name)
    })
}

pub async fn plan(aws: &Aws, environment: &Environment) -> anyhow::Result<Vec<Planned>> {
    let name = environment.resource_name("runner");
    let mut found = instances(aws, environment).await?;
    found.sort_by_key(|i| i.launch_time().map(|t| t.secs()));
    let Some(instance) = found.pop() else {
        return Ok(vec![Planned::new(INSTANCE, &name, true, vec![plan::Step::Runner(Step::Launch)])]);
    };
    let id = instance.instance_id().unwrap_or_default().to_string();
    // Older duplicates (a launch that was retried by hand, say) go.
    let mut planned: Vec<Planned> = found.iter().map(terminate_planned).collect();
    let (replace, mut steps) = compare(aws, environment, &instance, &id).await?;
    if let Some(reason) = replace {
        steps = vec![Step::Terminate(id.clone()), Step::Launch];
        let steps = steps.into_iter().map(plan::Step::Runner).collect();
        planned.push(Planned {
            kind: INSTANCE,
            name: format!("{name} ({id}): {reason}"),
            change: Change::Replace,
            steps,
        });
    } else {
        planned.push(Planned::new(
            INSTANCE,
            format!("{name} ({id})"),
            false,
            steps.into_iter().map(plan::Step::Runner).collect(),
        ));
    }
    Ok(planned)
}

/// What differs: a reason to replace the instance, or the in-place steps.
async fn compare(
    aws: &Aws,
    environment: &Environment,
    instance: &Instance,
    id: &str,
) -> anyhow::Result<(Option<String>, Vec<Step>)> {
    let tag =
        |key: &str| instance.tags().iter().find(|t| t.key() == Some(key)).and_then(|t| t.value()).map(str::to_string);
    if tag(USER_DATA_TAG).as_deref() != Some(user_data_sha256(environment, &aws.region).as_str()) {
        return Ok((Some("the user data changed".into()), Vec::new()));
    }
    if let Some(subnet) = &environment.runner.subnet {
        if instance.subnet_id() != Some(subnet.as_str()) {
            return Ok((Some(format!("the subnet changed to {subnet}")), Vec::new()));
        }
    }
    if !root_volume_encrypted(aws, instance).await? {
        return Ok((Some("its root volume is not encrypted".into()), Vec::new()));
    }
    let profile = super::role::Holder::Runner.name(environment);
    if !instance.iam_instance_profile().and_then(|p| p.arn()).is_some_and(|arn| arn.ends_with(&format!("/{profile}"))) {
        return Ok((Some(format!("it does not have the instance profile {profile}")), Vec::new()));
    }
    let group = super::firewall::find(aws, environment, super::firewall::SERVICE).await?.and_then(|g| g.group_id);
    if group.is_none() || !instance.security_groups().iter().any(|g| g.group_id() == group.as_deref()) {
        return Ok((Some("it is not in the service security group".into()), Vec::new()));
    }
    let mut steps = Vec::new();
    if instance.metadata_options().and_then(|m| m.http_tokens()) != Some(&HttpTokensState::Required) {
        steps.push(Step::RequireImdsV2(id.to_string()));
    }
    if instance.instance_type().map(|t| t.as_str()) != Some(environment.runner.instance_type.as_str()) {
        steps.push(Step::InstanceType(id.to_string()));
    }
    Ok((None, steps))
}

async fn root_volume_encrypted(aws: &Aws, instance: &Instance) -> anyhow::Result<bool> {
    let root = instance.root_device_name();
    let volume = instance
        .block_device_mappings()
        .iter()
        .find(|m| root.is_none() || m.device_name() == root)
        .and_then(|m| m.ebs())
        .and_then(|ebs| ebs.volume_id());
    let Some(volume) = volume else { return Ok(false) };
    let found = aws
        .ec2
        .describe_volumes()
        .volume_ids(volume)
        .send()
        .await
        .map_err(|e| explain(e, "ec2:DescribeVolumes", volume))?;
    Ok(found.volumes().first().and_then(|v| v.encrypted()).unwrap_or(false))
}

fn terminate_planned(instance: &Instance) -> Planned {
    let id = instance.instance_id().unwrap_or_default().to_string();
    Planned {
        kind: INSTANCE,
        name: id.clone(),
        change: Change::Delete,
        steps: vec![plan::Step::Runner(Step::Terminate(id))],
    }
}

/// Every live instance tagged for the environment, to terminate.
pub async fn teardown(aws: &Aws, environment: &Environment) -> anyhow::Result<Vec<Planned>> {
    Ok(instances(aws, environment).await?.iter().map(terminate_planned).collect())
}

/// The environment's parameters (deploy lock, deploy history, tokens), to delete.
pub async fn teardown_parameters(aws: &Aws, environment: &Environment) -> anyhow::Result<Vec<Planned>> {
    let path = format!("/netsec/{}", environment.name);
    let mut pages = aws.ssm.get_parameters_by_path().path(&path).recursive(true).into_paginator().send();
    let mut names = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| explain(e, "ssm:GetParametersByPath", &path))?;
        names.extend(page.parameters().iter().filter_map(|p| p.name().map(str::to_string)));
    }
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let steps = vec![plan::Step::Runner(Step::DeleteParameters(names))];
    Ok(vec![Planned { kind: PARAMETER, name: format!("{path}/*"), change: Change::Delete, steps }])
}

/// The VPC the environment lives in: the configured subnet's, or the default VPC.
pub async fn vpc(aws: &Aws, environment: &Environment) -> anyhow::Result<String> {
    Ok(subnet_and_vpc(aws, environment).await?.1)
}

async fn subnet_and_vpc(aws: &Aws, environment: &Environment) -> anyhow::Result<(String, String)> {
    let mut query = aws.ec2.describe_subnets();
    query = match &environment.runner.subnet {
        Some(subnet) => query.subnet_ids(subnet),
        None => query.filters(Filter::builder().name("default-for-az").values("true").build()),
    };
    let found = query.send().await.map_err(|e| explain(e, "ec2:DescribeSubnets", "*"))?;
    let subnet = found.subnets().first().ok_or_else(|| {
        anyhow::anyhow!("no subnet: the region has no default VPC; set runner.subnet in the environment file")
    })?;
    Ok((subnet.subnet_id().unwrap_or_default().to_string(), subnet.vpc_id().unwrap_or_default().to_string()))
}

/// The AMI the runner's public SSM parameter names today.
pub(super) async fn ami(aws: &Aws, environment: &Environment) -> anyhow::Result<String> {
    let parameter = &environment.runner.ami_parameter;
    let found =
        aws.ssm.get_parameter().name(parameter).send().await.map_err(|e| explain(e, "ssm:GetParameter", parameter))?;
    found
        .parameter()
        .and_then(|p| p.value())
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("{parameter} has no value"))
}

async fn launch(aws: &Aws, environment: &Environment) -> anyhow::Result<()> {
    let name = environment.resource_name("runner");
    let (subnet, _) = subnet_and_vpc(aws, environment).await?;
    let group = super::firewall::group_id(aws, environment, super::firewall::SERVICE).await?;
    let image = ami(aws, environment).await?;
    let mut tags = plan::tag_pairs(environment, &name);
    let volume_tags = ec2_tags(&tags);
    tags.push((USER_DATA_TAG.into(), user_data_sha256(environment, &aws.region)));
    let root = BlockDeviceMapping::builder()
        .device_name(root_device(aws, &image).await)
        .ebs(
            EbsBlockDevice::builder()
                .encrypted(true)
                .volume_size(environment.runner.root_volume_gib)
                .volume_type(VolumeType::Gp3)
                .delete_on_termination(true)
                .build(),
        )
        .build();
    let metadata = InstanceMetadataOptionsRequest::builder()
        .http_tokens(HttpTokensState::Required)
        .http_endpoint(InstanceMetadataEndpointState::Enabled)
        .http_put_response_hop_limit(METADATA_HOP_LIMIT)
        .build();
    let request = aws
        .ec2
        .run_instances()
        .image_id(&image)
        .instance_type(InstanceType::from(environment.runner.instance_type.as_str()))
        .min_count(1)
        .max_count(1)
        .subnet_id(subnet)
        .security_group_ids(group)
        .iam_instance_profile(IamInstanceProfileSpecification::builder().name(&name).build())
        .metadata_options(metadata)
        .block_device_mappings(root)
        .user_data(base64::engine::general_purpose::STANDARD.encode(user_data(environment, &aws.region)))
        .tag_specifications(
            TagSpecification::builder().resource_type(ResourceType::Instance).set_tags(Some(ec2_tags(&tags))).build(),
        )
        .tag_specifications(
            TagSpecification::builder().resource_type(ResourceType::Volume).set_tags(Some(volume_tags)).build(),
        );
    let launched = crate::aws::while_profile_spreads(|| request.clone().send()).await;
    launched.map_err(|e| explain(e, "ec2:RunInstances", &name))?;
    Ok(())
}

/// The AMI's root device (Amazon Linux's is /dev/xvda, used when the AMI does not say).
pub(super) async fn root_device(aws: &Aws, image: &str) -> String {
    let found = aws.ec2.describe_images().image_ids(image).send().await.ok();
    found
        .and_then(|f| f.images().first().and_then(|i| i.root_device_name()).map(str::to_string))
        .unwrap_or_else(|| "/dev/xvda".to_string())
}

async fn terminate(aws: &Aws, id: &str) -> anyhow::Result<()> {
    aws.ec2
        .terminate_instances()
        .instance_ids(id)
        .send()
        .await
        .map_err(|e| explain(e, "ec2:TerminateInstances", id))?;
    wait_for_state(aws, id, InstanceStateName::Terminated).await
}

async fn change_type(aws: &Aws, id: &str, instance_type: &str) -> anyhow::Result<()> {
    aws.ec2.stop_instances().instance_ids(id).send().await.map_err(|e| explain(e, "ec2:StopInstances", id))?;
    wait_for_state(aws, id, InstanceStateName::Stopped).await?;
    aws.ec2
        .modify_instance_attribute()
        .instance_id(id)
        .instance_type(AttributeValue::builder().value(instance_type).build())
        .send()
        .await
        .map_err(|e| explain(e, "ec2:ModifyInstanceAttribute", id))?;
    aws.ec2.start_instances().instance_ids(id).send().await.map_err(|e| explain(e, "ec2:StartInstances", id))?;
    Ok(())
}

/// Polls until the instance is in `wanted` (ten minutes at most).
async fn wait_for_state(aws: &Aws, id: &str, wanted: InstanceStateName) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let found = aws
            .ec2
            .describe_instances()
            .instance_ids(id)
            .send()
            .await
            .map_err(|e| explain(e, "ec2:DescribeInstances", id))?;
        let state = found.reservations().iter().flat_map(|r| r.instances()).find_map(|i| i.state()?.name().cloned());
        if state.as_ref() == Some(&wanted) {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "{id} is still {state:?}, not {wanted:?}, after ten minutes");
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}
