//! The instances' IAM roles (trusted by EC2 only, one inline least-privilege policy each) and
//! the instance profiles that hand them to the instances: the runner's always, the fleet's
//! when the environment has a fleet. All live under the IAM path `/netsec/`.

use aws_sdk_iam::types::Tag;
use serde_json::Value;

use super::environment::Environment;
use super::plan::{self, Change, Planned};
use super::policy;
use crate::aws::{code, explain, Aws};

pub const ROLE: &str = "iam role";
pub const PROFILE: &str = "iam instance profile";
const PATH: &str = "/netsec/";

/// Whose role: each holder has a role and an instance profile of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// The GitHub Actions runner (and, without a fleet, the service).
    Runner,
    /// The fleet's instances, launched by Auto Scaling from the launch template.
    Fleet,
}

impl Holder {
    /// The holders the environment wants.
    fn wanted(environment: &Environment) -> Vec<Holder> {
        let mut holders = vec![Holder::Runner];
        holders.extend(environment.fleet.as_ref().map(|_| Holder::Fleet));
        holders
    }

    /// `netsec-<env>-runner` or `netsec-<env>-fleet`: the role's and the profile's name.
    pub fn name(self, environment: &Environment) -> String {
        environment.resource_name(self.noun())
    }

    fn noun(self) -> &'static str {
        match self {
            Holder::Runner => "runner",
            Holder::Fleet => "fleet",
        }
    }

    fn policy(self, aws: &Aws, environment: &Environment) -> Value {
        match self {
            Holder::Runner => policy::runner_policy(aws, environment),
            Holder::Fleet => policy::fleet_policy(aws, environment),
        }
    }

    /// No spaces: see the security group's description (firewall.rs).
    fn description(self, environment: &Environment) -> String {
        match self {
            Holder::Runner => format!("netsec-{}-runner-pulls-the-image-reads-and-writes-models", environment.name),
            Holder::Fleet => format!("netsec-{}-fleet-pulls-the-image-reads-models", environment.name),
        }
    }

    fn summary(self) -> &'static str {
        match self {
            Holder::Runner => "repository pull, bucket prefixes, parameters, SSM agent",
            Holder::Fleet => "repository pull, models read-only, the deployed image's parameter, SSM agent",
        }
    }
}

#[derive(Debug, Clone)]
pub enum Step {
    CreateRole(Holder),
    Trust(Holder),
    Policy(Holder),
    TagRole(Holder, Vec<(String, String)>),
    CreateProfile(Holder),
    AddRoleToProfile(Holder),
    DeleteRole(String),
    DeleteProfile(String),
}

impl Step {
    pub fn describe(&self) -> String {
        match self {
            Step::CreateRole(_) => "create, trusted by ec2.amazonaws.com".into(),
            Step::Trust(_) => "set the trust policy (ec2.amazonaws.com only)".into(),
            Step::Policy(holder) => format!("put the inline policy ({})", holder.summary()),
            Step::TagRole(_, tags) => format!("tag {}", plan::show_tags(tags)),
            Step::CreateProfile(_) => "create".into(),
            Step::AddRoleToProfile(holder) => format!("add the {} role", holder.noun()),
            Step::DeleteRole(name) => format!("delete {name} with its policies"),
            Step::DeleteProfile(name) => format!("delete {name}"),
        }
    }

    pub async fn run(&self, aws: &Aws, environment: &Environment) -> anyhow::Result<()> {
        match self {
            Step::CreateRole(holder) => {
                let name = holder.name(environment);
                aws.iam
                    .create_role()
                    .role_name(&name)
                    .path(PATH)
                    .description(holder.description(environment))
                    .assume_role_policy_document(policy::trust_policy().to_string())
                    .set_tags(Some(tags(&plan::tag_pairs(environment, &name))?))
                    .send()
                    .await
                    .map_err(|e| explain(e, "iam:CreateRole", &role_arn(aws, &name)))?;
            }
            Step::Trust(holder) => {
                let name = holder.name(environment);
                aws.iam
                    .update_assume_role_policy()
                    .role_name(&name)
                    .policy_document(policy::trust_policy().to_string())
                    .send()
                    .await
                    .map_err(|e| explain(e, "iam:UpdateAssumeRolePolicy", &role_arn(aws, &name)))?;
            }
            Step::Policy(holder) => {
                let name = holder.name(environment);
                aws.iam
                    .put_role_policy()
                    .role_name(&name)
                    .policy_name(&name)
                    .policy_document(holder.policy(aws, environment).to_string())
                    .send()
                    .await
                    .map_err(|e| explain(e, "iam:PutRolePolicy", &role_arn(aws, &name)))?;
            }
            Step::TagRole(holder, pairs) => {
                let name = holder.name(environment);
                aws.iam
                    .tag_role()
                    .role_name(&name)
                    .set_tags(Some(tags(pairs)?))
                    .send()
                    .await
                    .map_err(|e| explain(e, "iam:TagRole", &role_arn(aws, &name)))?;
            }
            Step::CreateProfile(holder) => {
                let name = holder.name(environment);
                aws.iam
                    .create_instance_profile()
                    .instance_profile_name(&name)
                    .path(PATH)
                    .set_tags(Some(tags(&plan::tag_pairs(environment, &name))?))
                    .send()
                    .await
                    .map_err(|e| explain(e, "iam:CreateInstanceProfile", &name))?;
            }
            Step::AddRoleToProfile(holder) => {
                let name = holder.name(environment);
                aws.iam
                    .add_role_to_instance_profile()
                    .instance_profile_name(&name)
                    .role_name(&name)
                    .send()
                    .await
                    .map_err(|e| explain(e, "iam:AddRoleToInstanceProfile", &name))?;
            }
            Step::DeleteRole(role) => delete_role(aws, role).await?,
            Step::DeleteProfile(profile) => delete_profile(aws, profile).await?,
        }
        Ok(())
    }
}

fn role_arn(aws: &Aws, name: &str) -> String {
    format!("arn:aws:iam::{}:role{PATH}{name}", aws.account)
}

pub fn tags(pairs: &[(String, String)]) -> anyhow::Result<Vec<Tag>> {
    pairs.iter().map(|(k, v)| Ok(Tag::builder().key(k).value(v).build()?)).collect()
}

fn pairs(tags: &[Tag]) -> Vec<(String, String)> {
    tags.iter().map(|t| (t.key().to_string(), t.value().to_string())).collect()
}

/// Each holder's role and instance profile: two entries of the plan apiece.
pub async fn plan(aws: &Aws, environment: &Environment) -> anyhow::Result<Vec<Planned>> {
    let mut planned = Vec::new();
    for holder in Holder::wanted(environment) {
        planned.push(plan_role(aws, environment, holder).await?);
        planned.push(plan_profile(aws, environment, holder).await?);
    }
    Ok(planned)
}

async fn plan_role(aws: &Aws, environment: &Environment, holder: Holder) -> anyhow::Result<Planned> {
    let name = holder.name(environment);
    let role = match aws.iam.get_role().role_name(&name).send().await {
        Ok(found) => found.role,
        Err(e) if code(&e) == Some("NoSuchEntity") => None,
        Err(e) => return Err(explain(e, "iam:GetRole", &name)),
    };
    let Some(role) = role else {
        return Ok(Planned::new(ROLE, &name, true, wrap(vec![Step::CreateRole(holder), Step::Policy(holder)])));
    };
    let mut steps = Vec::new();
    if role.assume_role_policy_document().and_then(policy::parse_document) != Some(policy::trust_policy()) {
        steps.push(Step::Trust(holder));
    }
    if inline_policy(aws, &name).await? != Some(holder.policy(aws, environment)) {
        steps.push(Step::Policy(holder));
    }
    let missing = plan::missing_tags(&plan::tag_pairs(environment, &name), &pairs(role.tags()));
    if !missing.is_empty() {
        steps.push(Step::TagRole(holder, missing));
    }
    Ok(Planned::new(ROLE, &name, false, wrap(steps)))
}

async fn plan_profile(aws: &Aws, environment: &Environment, holder: Holder) -> anyhow::Result<Planned> {
    let name = holder.name(environment);
    match aws.iam.get_instance_profile().instance_profile_name(&name).send().await {
        Ok(found) => {
            let has_role = found.instance_profile().is_some_and(|p| p.roles().iter().any(|r| r.role_name() == name));
            let steps = if has_role { Vec::new() } else { vec![Step::AddRoleToProfile(holder)] };
            Ok(Planned::new(PROFILE, name, false, wrap(steps)))
        }
        Err(e) if code(&e) == Some("NoSuchEntity") => {
            let steps = vec![Step::CreateProfile(holder), Step::AddRoleToProfile(holder)];
            Ok(Planned::new(PROFILE, name, true, wrap(steps)))
        }
        Err(e) => Err(explain(e, "iam:GetInstanceProfile", &name)),
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
