//! The fleet's launch template, what Auto Scaling launches every instance from: the AMI the
//! runner's SSM parameter names at each launch (`resolve:ssm:`), IMDSv2 required, an encrypted
//! gp3 root volume, the fleet role's instance profile, the instances' security group, and user
//! data that starts the deployed image (infra/host/fleet-user-data.sh).
//!
//! A template's versions cannot change: a difference makes a new version and makes it the
//! default, which the group launches from ("$Default"). Instances already running keep the
//! version they were launched from until they are replaced.

use std::io::{Read, Write};

use aws_sdk_ec2::types::{
    Filter, InstanceType, LaunchTemplate, LaunchTemplateBlockDeviceMappingRequest, LaunchTemplateEbsBlockDeviceRequest,
    LaunchTemplateHttpTokensState, LaunchTemplateIamInstanceProfileSpecificationRequest,
    LaunchTemplateInstanceMetadataEndpointState, LaunchTemplateInstanceMetadataOptionsRequest,
    LaunchTemplateTagSpecificationRequest, RequestLaunchTemplateData, ResourceType, ResponseLaunchTemplateData,
    TagSpecification, VolumeType,
};
use base64::Engine as _;

use super::environment::{Environment, ENV_TAG};
use super::plan::{self, Change, Planned};
use super::role::Holder;
use super::{firewall, runner};
use crate::aws::{explain, Aws};

pub const KIND: &str = "ec2 launch template";
const USER_DATA_TEMPLATE: &str = include_str!("../../../infra/host/fleet-user-data.sh");
const UPDATE_SCRIPT: &str = include_str!("../../../infra/host/netsec-update.sh");
/// IMDSv2 one hop away: the host and the service's container, which uses the host's network.
const METADATA_HOP_LIMIT: i32 = 1;

/// `netsec-<env>-fleet`.
pub fn name(environment: &Environment) -> String {
    environment.resource_name("fleet")
}

/// What an instance is launched with, as far as the plan compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    image: String,
    instance_type: String,
    profile: String,
    /// Tokens required, the endpoint on, one hop.
    imds_v2_only: bool,
    root: RootVolume,
    security_group: String,
    user_data: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct RootVolume {
    device: String,
    gib: i32,
    encrypted: bool,
    gp3: bool,
}

impl Template {
    /// What the file asks for. The image is the AMI parameter itself, which EC2 resolves at
    /// each launch: a newer AMI needs no new version (and no `apply` by the deploy role).
    async fn wanted(aws: &Aws, environment: &Environment, security_group: String) -> anyhow::Result<Template> {
        let today = runner::ami(aws, environment).await?;
        let fleet = environment.fleet.as_ref().ok_or_else(|| anyhow::anyhow!("the environment has no fleet"))?;
        Ok(Template {
            root: RootVolume {
                device: runner::root_device(aws, &today).await,
                gib: environment.runner.root_volume_gib,
                encrypted: true,
                gp3: true,
            },
            image: format!("resolve:ssm:{}", environment.runner.ami_parameter),
            instance_type: fleet.instance_type.clone(),
            profile: Holder::Fleet.name(environment),
            imds_v2_only: true,
            security_group,
            user_data: user_data(environment, &aws.region),
        })
    }

    fn actual(data: &ResponseLaunchTemplateData) -> Template {
        let metadata = data.metadata_options();
        let imds_v2_only = metadata.is_some_and(|m| {
            m.http_tokens() == Some(&LaunchTemplateHttpTokensState::Required)
                && m.http_endpoint() != Some(&LaunchTemplateInstanceMetadataEndpointState::Disabled)
                && m.http_put_response_hop_limit() == Some(METADATA_HOP_LIMIT)
        });
        let root = data.block_device_mappings().first();
        let ebs = root.and_then(|m| m.ebs());
        let profile = data.iam_instance_profile();
        let profile = profile.and_then(|p| p.name().or_else(|| p.arn().and_then(|arn| arn.rsplit('/').next())));
        Template {
            image: data.image_id().unwrap_or_default().to_string(),
            instance_type: data.instance_type().map(|t| t.as_str().to_string()).unwrap_or_default(),
            profile: profile.unwrap_or_default().to_string(),
            imds_v2_only,
            root: RootVolume {
                device: root.and_then(|m| m.device_name()).unwrap_or_default().to_string(),
                gib: ebs.and_then(|e| e.volume_size()).unwrap_or_default(),
                encrypted: ebs.and_then(|e| e.encrypted()) == Some(true),
                gp3: ebs.and_then(|e| e.volume_type()) == Some(&VolumeType::Gp3),
            },
            security_group: data.security_group_ids().first().cloned().unwrap_or_default(),
            user_data: data.user_data().and_then(decode_user_data).unwrap_or_default(),
        }
    }

    /// What differs from `actual`, in the plan's words.
    fn differences(&self, actual: &Template) -> Vec<String> {
        let mut changed = Vec::new();
        let mut differ = |differs: bool, what: String| changed.extend(differs.then_some(what));
        differ(self.image != actual.image, format!("image {}", self.image));
        differ(self.instance_type != actual.instance_type, format!("instance type {}", self.instance_type));
        differ(self.profile != actual.profile, format!("instance profile {}", self.profile));
        differ(self.imds_v2_only != actual.imds_v2_only, "IMDSv2 required".into());
        differ(self.root != actual.root, format!("encrypted gp3 root volume of {} GiB", self.root.gib));
        differ(self.security_group != actual.security_group, format!("security group {}", self.security_group));
        differ(self.user_data != actual.user_data, "user data".into());
        changed
    }

    fn request(&self, environment: &Environment) -> RequestLaunchTemplateData {
        let root = LaunchTemplateBlockDeviceMappingRequest::builder().device_name(&self.root.device).ebs(
            LaunchTemplateEbsBlockDeviceRequest::builder()
                .encrypted(self.root.encrypted)
                .volume_size(self.root.gib)
                .volume_type(VolumeType::Gp3)
                .delete_on_termination(true)
                .build(),
        );
        let metadata = LaunchTemplateInstanceMetadataOptionsRequest::builder()
            .http_tokens(LaunchTemplateHttpTokensState::Required)
            .http_endpoint(LaunchTemplateInstanceMetadataEndpointState::Enabled)
            .http_put_response_hop_limit(METADATA_HOP_LIMIT);
        // Auto Scaling tags the instances (the group's tags propagate); the volumes only this can.
        let volume_tags = LaunchTemplateTagSpecificationRequest::builder()
            .resource_type(ResourceType::Volume)
            .set_tags(Some(runner::ec2_tags(&plan::tag_pairs(environment, &name(environment)))));
        RequestLaunchTemplateData::builder()
            .image_id(&self.image)
            .instance_type(InstanceType::from(self.instance_type.as_str()))
            .iam_instance_profile(
                LaunchTemplateIamInstanceProfileSpecificationRequest::builder().name(&self.profile).build(),
            )
            .metadata_options(metadata.build())
            .block_device_mappings(root.build())
            .security_group_ids(&self.security_group)
            .user_data(encode_user_data(&self.user_data))
            .tag_specifications(volume_tags.build())
            .build()
    }
}

/// The fleet's user data with its {{…}} filled in. The update script goes in last, verbatim:
/// its own `{{…}}` are Docker format strings.
pub fn user_data(environment: &Environment, region: &str) -> String {
    let fills = [
        ("{{REGION}}", region.to_string()),
        ("{{CURRENT_PARAMETER}}", environment.parameter("deploy/current")),
        ("{{BUCKET}}", environment.bucket.name.clone()),
        ("{{MODELS_PREFIX}}", environment.bucket.models_prefix.clone()),
        ("{{PORT}}", environment.service.port.to_string()),
        ("{{READY_TIMEOUT}}", environment.service.ready_timeout_seconds.to_string()),
    ];
    let text = fills.iter().fold(USER_DATA_TEMPLATE.to_string(), |text, (key, value)| text.replace(key, value));
    text.replace("{{UPDATE_SCRIPT}}", UPDATE_SCRIPT.trim_end())
}

/// gzip, then base64 (cloud-init recognises gzip and unpacks it).
fn encode_user_data(text: &str) -> String {
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    // Writing to a Vec cannot fail.
    gzip.write_all(text.as_bytes()).expect("gzip into memory");
    base64::engine::general_purpose::STANDARD.encode(gzip.finish().expect("gzip into memory"))
}

/// User data as the API returns it: base64 of gzip or of plain text.
fn decode_user_data(encoded: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut text = String::new();
        flate2::read::GzDecoder::new(bytes.as_slice()).read_to_string(&mut text).ok()?;
        Some(text)
    } else {
        String::from_utf8(bytes).ok()
    }
}

#[derive(Debug, Clone)]
pub enum Step {
    Create,
    NewDefaultVersion(Vec<String>),
    Delete(String),
}

impl Step {
    pub fn describe(&self) -> String {
        match self {
            Step::Create => {
                "create (IMDSv2 required, encrypted gp3 root volume, fleet role, user data starting the deployed image)"
                    .into()
            }
            Step::NewDefaultVersion(changes) => format!(
                "new default version: {} (instances launched from now on get it; running ones keep theirs)",
                changes.join(", ")
            ),
            Step::Delete(id) => format!("delete {id}"),
        }
    }

    pub async fn run(&self, aws: &Aws, environment: &Environment) -> anyhow::Result<()> {
        let name = name(environment);
        match self {
            Step::Create => {
                let template = wanted(aws, environment).await?;
                let tags = runner::ec2_tags(&plan::tag_pairs(environment, &name));
                let tags = TagSpecification::builder().resource_type(ResourceType::LaunchTemplate).set_tags(Some(tags));
                aws.ec2
                    .create_launch_template()
                    .launch_template_name(&name)
                    .version_description("cargo xtask apply")
                    .launch_template_data(template.request(environment))
                    .tag_specifications(tags.build())
                    .send()
                    .await
                    .map_err(|e| explain(e, "ec2:CreateLaunchTemplate", &name))?;
            }
            Step::NewDefaultVersion(changes) => {
                let template = wanted(aws, environment).await?;
                let created = aws
                    .ec2
                    .create_launch_template_version()
                    .launch_template_name(&name)
                    .version_description(format!("cargo xtask apply: {}", changes.join(", ")))
                    .launch_template_data(template.request(environment))
                    .send()
                    .await
                    .map_err(|e| explain(e, "ec2:CreateLaunchTemplateVersion", &name))?;
                let version = created.launch_template_version().and_then(|v| v.version_number()).ok_or_else(|| {
                    anyhow::anyhow!("ec2:CreateLaunchTemplateVersion on {name} returned no version number")
                })?;
                aws.ec2
                    .modify_launch_template()
                    .launch_template_name(&name)
                    .default_version(version.to_string())
                    .send()
                    .await
                    .map_err(|e| explain(e, "ec2:ModifyLaunchTemplate", &name))?;
            }
            Step::Delete(id) => {
                let deleted = aws.ec2.delete_launch_template().launch_template_id(id).send().await;
                deleted.map_err(|e| explain(e, "ec2:DeleteLaunchTemplate", id))?;
            }
        }
        Ok(())
    }
}

async fn wanted(aws: &Aws, environment: &Environment) -> anyhow::Result<Template> {
    let group = firewall::group_id(aws, environment, firewall::FLEET).await?;
    Template::wanted(aws, environment, group).await
}

/// The template named for the environment, if any.
async fn find(aws: &Aws, environment: &Environment) -> anyhow::Result<Option<LaunchTemplate>> {
    let found = templates(aws, "launch-template-name", &name(environment)).await?;
    Ok(found.into_iter().next())
}

/// The templates matching one filter.
async fn templates(aws: &Aws, filter: &str, value: &str) -> anyhow::Result<Vec<LaunchTemplate>> {
    let found = aws
        .ec2
        .describe_launch_templates()
        .filters(Filter::builder().name(filter).values(value).build())
        .send()
        .await
        .map_err(|e| explain(e, "ec2:DescribeLaunchTemplates", value))?;
    Ok(found.launch_templates().to_vec())
}

async fn default_version(aws: &Aws, name: &str) -> anyhow::Result<Option<ResponseLaunchTemplateData>> {
    let found = aws
        .ec2
        .describe_launch_template_versions()
        .launch_template_name(name)
        .versions("$Default")
        .send()
        .await
        .map_err(|e| explain(e, "ec2:DescribeLaunchTemplateVersions", name))?;
    Ok(found.launch_template_versions().first().and_then(|v| v.launch_template_data()).cloned())
}

/// The template the fleet wants (none without a fleet: `teardown` then finds it extra).
pub async fn plan(aws: &Aws, environment: &Environment) -> anyhow::Result<Option<Planned>> {
    if environment.fleet.is_none() {
        return Ok(None);
    }
    let name = name(environment);
    let wrap = |step| vec![plan::Step::LaunchTemplate(step)];
    if find(aws, environment).await?.is_none() {
        return Ok(Some(Planned::new(KIND, name, true, wrap(Step::Create))));
    }
    // The instances' group exists when the template does (apply makes it first), but a group
    // deleted by hand shows as a difference rather than an error.
    let group = firewall::find(aws, environment, firewall::FLEET).await?.and_then(|g| g.group_id);
    let wanted = Template::wanted(aws, environment, group.unwrap_or_default()).await?;
    let actual = default_version(aws, &name).await?.map(|data| Template::actual(&data));
    let changes = match &actual {
        Some(actual) => wanted.differences(actual),
        None => vec!["a default version".to_string()],
    };
    let steps = if changes.is_empty() { Vec::new() } else { wrap(Step::NewDefaultVersion(changes)) };
    Ok(Some(Planned::new(KIND, name, false, steps)))
}

/// Every launch template tagged for the environment (after the group that launches from it).
pub async fn teardown(aws: &Aws, environment: &Environment) -> anyhow::Result<Vec<Planned>> {
    let found = templates(aws, &format!("tag:{ENV_TAG}"), &environment.name).await?;
    Ok(found
        .iter()
        .map(|template| {
            let id = template.launch_template_id().unwrap_or_default().to_string();
            let name = template.launch_template_name().unwrap_or_default().to_string();
            let steps = vec![plan::Step::LaunchTemplate(Step::Delete(id))];
            Planned { kind: KIND, name, change: Change::Delete, steps }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_round_trips_through_gzip_and_base64() {
        let text = "#!/bin/bash\necho {{.Config.Image}}\n".repeat(500);
        assert_eq!(decode_user_data(&encode_user_data(&text)).as_deref(), Some(text.as_str()));
        let plain = base64::engine::general_purpose::STANDARD.encode("#!/bin/bash\ntrue\n");
        assert_eq!(decode_user_data(&plain).as_deref(), Some("#!/bin/bash\ntrue\n"));
        assert_eq!(decode_user_data("not base64!"), None);
    }

    #[test]
    fn the_fleet_user_data_fits_ec2s_limit_once_compressed() {
        let environment = Environment::load("fleet").unwrap();
        let text = user_data(&environment, "eu-west-1");
        assert!(text.contains(UPDATE_SCRIPT.trim_end()), "the update script goes in verbatim");
        assert!(text.contains("--name \"/netsec/fleet/deploy/current\""), "{text}");
        assert!(text.contains("NETSEC_PORT=8080 NETSEC_READY_TIMEOUT=60"), "{text}");
        let unfilled =
            text.match_indices("{{").any(|(at, _)| text[at + 2..].starts_with(|c: char| c.is_ascii_uppercase()));
        assert!(!unfilled, "a fill is left: {text}");
        // EC2 refuses user data over 16 KB (before base64); uncompressed it is over.
        assert!(text.len() > 16 * 1024);
        let raw = base64::engine::general_purpose::STANDARD.decode(encode_user_data(&text)).unwrap();
        assert!(raw.len() < 16 * 1024, "{} bytes", raw.len());
    }
}
