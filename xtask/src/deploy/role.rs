//! The runner's IAM role (trusted by EC2 only, one inline least-privilege policy) and the
//! instance profile that hands it to the instance. Both live under the IAM path `/netsec/`.

use aws_sdk_iam::types::Tag;

use super::environment::Environment;
use super::plan::{self, Change, Planned};
use super::policy;
use crate::aws::{code, explain, Aws};

pub const ROLE: &str = "iam role";
pub const PROFILE: &str = "iam instance profile";
const PATH: &str = "/netsec/";

#[derive(Debug, Clone)]
pub enum Step {
    CreateRole,
    Trust,
    Policy,
    TagRole(Vec<(String, String)>),
    CreateProfile,
    AddRoleToProfile,
    DeleteRole(String),
    DeleteProfile(String),
}

impl Step {
    pub fn describe(&self) -> String {
        match self {
            Step::CreateRole => "create, trusted by ec2.amazonaws.com".into(),
            Step::Trust => "set the trust policy (ec2.amazonaws.com only)".into(),
            Step::Policy => "put the inline policy (repository pull, bucket prefixes, parameters, SSM agent)".into(),
            Step::TagRole(tags) => format!("tag {}", plan::show_tags(tags)),
            Step::CreateProfile => "create".into(),
            Step::AddRoleToProfile => "add the runner role".into(),
            Step::DeleteRole(name) => format!("delete {name} with its policies"),
            Step::DeleteProfile(name) => format!("delete {name}"),
        }
    }

    pub async fn run(&self, aws: &Aws, environment: &Environment) -> anyhow::Result<()> {
        let name = environment.resource_name("runner");
        let arn = format!("arn:aws:iam::{}:role{PATH}{name}", aws.account);
        match self {
            Step::CreateRole => {
                aws.iam
                    .create_role()
                    .role_name(&name)
                    .path(PATH)
                    // No spaces: see the security group's description (firewall.rs).
                    .description(format!("netsec-{}-runner-pulls-the-image-reads-and-writes-models", environment.name))
                    .assume_role_policy_document(policy::trust_policy().to_string())
                    .set_tags(Some(tags(&plan::tag_pairs(environment, &name))?))
                    .send()
                    .await
                    .map_err(|e| explain(e, "iam:CreateRole", &arn))?;
            }
            Step::Trust => {
                aws.iam
                    .update_assume_role_policy()
                    .role_name(&name)
                    .policy_document(policy::trust_policy().to_string())
                    .send()
                    .await
                    .map_err(|e| explain(e, "iam:UpdateAssumeRolePolicy", &arn))?;
            }
            Step::Policy => {
                aws.iam
                    .put_role_policy()
                    .role_name(&name)
                    .policy_name(&name)
                    .policy_document(policy::runner_policy(aws, environment).to_string())
                    .send()
                    .await
                    .map_err(|e| explain(e, "iam:PutRolePolicy", &arn))?;
            }
            Step::TagRole(pairs) => {
                aws.iam
                    .tag_role()
                    .role_name(&name)
                    .set_tags(Some(tags(pairs)?))
                    .send()
                    .await
                    .map_err(|e| explain(e, "iam:TagRole", &arn))?;
            }
            Step::CreateProfile => {
                aws.iam
                    .create_instance_profile()
                    .instance_profile_name(&name)
                    .path(PATH)
                    .set_tags(Some(tags(&plan::tag_pairs(environment, &name))?))
                    .send()
                    .await
                    .map_err(|e| explain(e, "iam:CreateInstanceProfile", &arn))?;
            }
            Step::AddRoleToProfile => {
                aws.iam
                    .add_role_to_instance_profile()
                    .instance_profile_name(&name)
                    .role_name(&name)
                    .send()
                    .await
                    .map_err(|e| explain(e, "iam:AddRoleToInstanceProfile", &arn))?;
            }
            Step::DeleteRole(role) => delete_role(aws, role).await?,
            Step::DeleteProfile(profile) => delete_profile(aws, profile).await?,
        }
        Ok(())
    }
}

pub fn tags(pairs: &[(String, String)]) -> anyhow::Result<Vec<Tag>> {
    pairs.iter().map(|(k, v)| Ok(Tag::builder().key(k).value(v).build()?)).collect()
}

fn pairs(tags: &[Tag]) -> Vec<(String, String)> {
    tags.iter().map(|t| (t.key().to_string(), t.value().to_string())).collect()
}

/// The role and the instance profile: two entries of the plan.
pub async fn plan(aws: &Aws, environment: &Environment) -> anyhow::Result<Vec<Planned>> {
    let name = environment.resource_name("runner");
    let role = match aws.iam.get_role().role_name(&name).send().await {
        Ok(found) => found.role,
        Err(e) if code(&e) == Some("NoSuchEntity") => None,
        Err(e) => return Err(explain(e, "iam:GetRole", &name)),
    };
    let role_steps = match role {
        None => vec![Step::CreateRole, Step::Policy],
        Some(role) => {
            let mut steps = Vec::new();
            if role.assume_role_policy_document().and_then(policy::parse_document) != Some(policy::trust_policy()) {
                steps.push(Step::Trust);
            }
            if inline_policy(aws, &name).await? != Some(policy::runner_policy(aws, environment)) {
                steps.push(Step::Policy);
            }
            let missing = plan::missing_tags(&plan::tag_pairs(environment, &name), &pairs(role.tags()));
            if !missing.is_empty() {
                steps.push(Step::TagRole(missing));
            }
            steps
        }
    };
    let role_planned =
        Planned::new(ROLE, &name, role_steps.first().is_some_and(|s| matches!(s, Step::CreateRole)), wrap(role_steps));
    let profile_planned = plan_profile(aws, &name).await?;
    Ok(vec![role_planned, profile_planned])
}

async fn plan_profile(aws: &Aws, name: &str) -> anyhow::Result<Planned> {
    match aws.iam.get_instance_profile().instance_profile_name(name).send().await {
        Ok(found) => {
            let has_role = found.instance_profile().is_some_and(|p| p.roles().iter().any(|r| r.role_name() == name));
            let steps = if has_role { Vec::new() } else { vec![Step::AddRoleToProfile] };
            Ok(Planned::new(PROFILE, name, false, wrap(steps)))
        }
        Err(e) if code(&e) == Some("NoSuchEntity") => {
            Ok(Planned::new(PROFILE, name, true, wrap(vec![Step::CreateProfile, Step::AddRoleToProfile])))
        }
        Err(e) => Err(explain(e, "iam:GetInstanceProfile", name)),
    }
}

fn wrap(steps: Vec<Step>) -> Vec<plan::Step> {
    steps.into_iter().map(plan::Step::Role).collect()
}

pub async fn inline_policy(aws: &Aws, role: &str) -> anyhow::Result<Option<serde_json::Value>> {
    match aws.iam.get_role_policy().role_name(role).policy_name(role).send().await {
        Ok(found) => Ok(policy::parse_document(found.policy_document())),
        Err(e) if code(&e) == Some("NoSuchEntity") => Ok(None),
        Err(e) => Err(explain(e, "iam:GetRolePolicy", role)),
    }
}

/// The roles and instance profiles under `/netsec/` tagged for the environment.
pub async fn teardown(aws: &Aws, environment: &Environment) -> anyhow::Result<Vec<Planned>> {
    let mut planned = Vec::new();
    let profiles = aws
        .iam
        .list_instance_profiles()
        .path_prefix(PATH)
        .send()
        .await
        .map_err(|e| explain(e, "iam:ListInstanceProfiles", PATH))?;
    for profile in profiles.instance_profiles() {
        let name = profile.instance_profile_name();
        if plan::is_tagged_for(environment, &pairs(profile.tags())) {
            let step = plan::Step::Role(Step::DeleteProfile(name.to_string()));
            planned.push(Planned { kind: PROFILE, name: name.to_string(), change: Change::Delete, steps: vec![step] });
        }
    }
    let roles = aws.iam.list_roles().path_prefix(PATH).send().await.map_err(|e| explain(e, "iam:ListRoles", PATH))?;
    for role in roles.roles() {
        let name = role.role_name();
        let tags = match aws.iam.list_role_tags().role_name(name).send().await {
            Ok(found) => pairs(found.tags()),
            // Deleted since it was listed.
            Err(e) if code(&e) == Some("NoSuchEntity") => Vec::new(),
            Err(e) => return Err(explain(e, "iam:ListRoleTags", name)),
        };
        if plan::is_tagged_for(environment, &tags) {
            let step = plan::Step::Role(Step::DeleteRole(name.to_string()));
            planned.push(Planned { kind: ROLE, name: name.to_string(), change: Change::Delete, steps: vec![step] });
        }
    }
    Ok(planned)
}

/// A role can only go once no policy is attached or inline and no profile holds it.
async fn delete_role(aws: &Aws, role: &str) -> anyhow::Result<()> {
    let inline = aws
        .iam
        .list_role_policies()
        .role_name(role)
        .send()
        .await
        .map_err(|e| explain(e, "iam:ListRolePolicies", role))?;
    for name in inline.policy_names() {
        aws.iam
            .delete_role_policy()
            .role_name(role)
            .policy_name(name)
            .send()
            .await
            .map_err(|e| explain(e, "iam:DeleteRolePolicy", role))?;
    }
    let attached = aws
        .iam
        .list_attached_role_policies()
        .role_name(role)
        .send()
        .await
        .map_err(|e| explain(e, "iam:ListAttachedRolePolicies", role))?;
    for arn in attached.attached_policies().iter().filter_map(|p| p.policy_arn()) {
        aws.iam
            .detach_role_policy()
            .role_name(role)
            .policy_arn(arn)
            .send()
            .await
            .map_err(|e| explain(e, "iam:DetachRolePolicy", role))?;
    }
    let profiles = aws
        .iam
        .list_instance_profiles_for_role()
        .role_name(role)
        .send()
        .await
        .map_err(|e| explain(e, "iam:ListInstanceProfilesForRole", role))?;
    for profile in profiles.instance_profiles() {
        remove_role(aws, profile.instance_profile_name(), role).await?;
    }
    aws.iam.delete_role().role_name(role).send().await.map_err(|e| explain(e, "iam:DeleteRole", role))?;
    Ok(())
}

async fn delete_profile(aws: &Aws, profile: &str) -> anyhow::Result<()> {
    let found = aws
        .iam
        .get_instance_profile()
        .instance_profile_name(profile)
        .send()
        .await
        .map_err(|e| explain(e, "iam:GetInstanceProfile", profile))?;
    for role in found.instance_profile().map(|p| p.roles()).unwrap_or_default() {
        remove_role(aws, profile, role.role_name()).await?;
    }
    aws.iam
        .delete_instance_profile()
        .instance_profile_name(profile)
        .send()
        .await
        .map_err(|e| explain(e, "iam:DeleteInstanceProfile", profile))?;
    Ok(())
}

async fn remove_role(aws: &Aws, profile: &str, role: &str) -> anyhow::Result<()> {
    aws.iam
        .remove_role_from_instance_profile()
        .instance_profile_name(profile)
        .role_name(role)
        .send()
        .await
        .map_err(|e| explain(e, "iam:RemoveRoleFromInstanceProfile", profile))?;
    Ok(())
}
