//! How GitHub Actions gets into AWS without stored keys: the account's IAM OpenID Connect
//! provider for GitHub's token issuer, and the environment's deploy role, which only workflow
//! runs on the repository's main branch may assume (AssumeRoleWithWebIdentity).
//!
//! The deploy role may do what deploy.yml's jobs do and no more: push to the environment's
//! repository, read what `plan` reads, run the update script on the environment's instances
//! through SSM, and keep the deploy lock and history. Changing the environment itself (`apply`
//! with changes, `destroy`) stays with an administrator's credentials.

use serde_json::{json, Value};

use crate::aws::{code, explain, Aws};
use crate::deploy::environment::{Environment, ENV_TAG};
use crate::deploy::policy;

/// The issuer of GitHub Actions' OIDC tokens.
const ISSUER: &str = "token.actions.githubusercontent.com";
/// The audience configure-aws-credentials asks for.
const AUDIENCE: &str = "sts.amazonaws.com";
/// The certificate thumbprints GitHub publishes for its issuer (IAM now trusts the issuer's CA
/// by itself for GitHub, but older accounts and the API still take the list).
const THUMBPRINTS: [&str; 2] = ["6938fd4d98bab03faadb97b34396831e3780aea1", "1c58a3a8518e8759bf075b76b750d4f2df264fcd"];
const PATH: &str = "/netsec/";

/// The OIDC provider's ARN, after creating it if the account has none (one per account,
/// shared by every environment: `destroy` leaves it), with our audience added if missing.
pub async fn ensure_oidc_provider(aws: &Aws) -> anyhow::Result<String> {
    let arn = format!("arn:aws:iam::{}:oidc-provider/{ISSUER}", aws.account);
    let listed = aws
        .iam
        .list_open_id_connect_providers()
        .send()
        .await
        .map_err(|e| explain(e, "iam:ListOpenIDConnectProviders", "*"))?;
    if !listed.open_id_connect_provider_list().iter().any(|p| p.arn() == Some(arn.as_str())) {
        aws.iam
            .create_open_id_connect_provider()
            .url(format!("https://{ISSUER}"))
            .client_id_list(AUDIENCE)
            .set_thumbprint_list(Some(THUMBPRINTS.iter().map(ToString::to_string).collect()))
            .send()
            .await
            .map_err(|e| explain(e, "iam:CreateOpenIDConnectProvider", &arn))?;
        println!("+ oidc provider {ISSUER}");
        return Ok(arn);
    }
    let found = aws
        .iam
        .get_open_id_connect_provider()
        .open_id_connect_provider_arn(&arn)
        .send()
        .await
        .map_err(|e| explain(e, "iam:GetOpenIDConnectProvider", &arn))?;
    if found.client_id_list().iter().any(|c| c == AUDIENCE) {
        println!("  oidc provider {ISSUER}: unchanged");
    } else {
        aws.iam
            .add_client_id_to_open_id_connect_provider()
            .open_id_connect_provider_arn(&arn)
            .client_id(AUDIENCE)
            .send()
            .await
            .map_err(|e| explain(e, "iam:AddClientIDToOpenIDConnectProvider", &arn))?;
        println!("~ oidc provider {ISSUER}: audience {AUDIENCE} added");
    }
    Ok(arn)
}

/// Who may assume the deploy role: workflow runs of `repo` on its main branch, nothing else
/// (not pull requests, not other branches, not tags, not GitHub deployment environments).
pub fn trust_policy(provider_arn: &str, repo: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": provider_arn},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                format!("{ISSUER}:aud"): AUDIENCE,
                format!("{ISSUER}:sub"): format!("repo:{repo}:ref:refs/heads/main"),
            }},
        }]
    })
}

/// What deploy.yml's jobs may do.
pub fn deploy_policy(aws: &Aws, environment: &Environment) -> Value {
    let mut policy = base_deploy_policy(aws, environment);
    if let Some(fleet) = &environment.fleet {
        let statements = policy["Statement"].as_array_mut().expect("a list of statements");
        let arn = |service: &str, resource: &str| aws.arn(service, resource);
        statements.extend(fleet_statements(&arn, environment, &fleet.tls.certificate_arn));
    }
    policy
}

/// What a fleet adds: exactly the calls of a rolling deploy (rollout.rs) on this fleet. Run
/// Command on its instances is granted by the environment tag they carry (RunCommandOnInstances),
/// and `deploy/current` is under the deploy parameters (LockAndHistory).
fn fleet_statements(arn: &dyn Fn(&str, &str) -> String, environment: &Environment, certificate: &str) -> Vec<Value> {
    let target_group = arn("elasticloadbalancing", &format!("targetgroup/{}/*", environment.resource_name("web")));
    let group =
        arn("autoscaling", &format!("autoScalingGroup:*:autoScalingGroupName/{}", environment.resource_name("fleet")));
    vec![
        json!({
            // `plan` checks that the fleet's certificate is issued.
            "Sid": "FleetCertificateRead",
            "Effect": "Allow",
            "Action": "acm:DescribeCertificate",
            "Resource": certificate,
        }),
        json!({
            "Sid": "RolloutTargets",
            "Effect": "Allow",
            "Action": ["elasticloadbalancing:DeregisterTargets", "elasticloadbalancing:RegisterTargets"],
            "Resource": target_group,
        }),
        json!({
            // Describe calls take no resource.
            "Sid": "RolloutHealth",
            "Effect": "Allow",
            "Action": "elasticloadbalancing:DescribeTargetHealth",
            "Resource": "*",
        }),
        json!({
            // The first deploy turns the group's health checks over to the target group.
            "Sid": "RolloutHealthChecks",
            "Effect": "Allow",
            "Action": "autoscaling:UpdateAutoScalingGroup",
            "Resource": group,
        }),
    ]
}

fn base_deploy_policy(aws: &Aws, environment: &Environment) -> Value {
    let repository = aws.arn("ecr", &format!("repository/{}", environment.repository.name));
    let bucket = format!("arn:aws:s3:::{}", environment.bucket.name);
    let iam = |what: &str| format!("arn:aws:iam::{}:{what}{PATH}*", aws.account);
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "EcrPush",
                "Effect": "Allow",
                "Action": [
                    "ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:CompleteLayerUpload",
                    "ecr:DescribeImages", "ecr:DescribeRepositories", "ecr:GetLifecyclePolicy",
                    "ecr:InitiateLayerUpload", "ecr:ListTagsForResource", "ecr:PutImage", "ecr:UploadLayerPart",
                ],
                "Resource": repository,
            },
            {
                // `plan` looks for repositories tagged for the environment (strays) too.
                "Sid": "EcrFind",
                "Effect": "Allow",
                "Action": ["ecr:DescribeRepositories", "ecr:ListTagsForResource"],
                "Resource": aws.arn("ecr", "repository/*"),
            },
            {
                // These take no resource ARN.
                "Sid": "ReadOnlyUnscoped",
                "Effect": "Allow",
                "Action": [
                    "ecr:GetAuthorizationToken", "ec2:DescribeImages", "ec2:DescribeInstances",
                    "ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeVolumes",
                    "s3:ListAllMyBuckets", "ssm:GetCommandInvocation", "ssm:ListCommands",
                    // `plan` looks for a fleet's balancer, target group, launch template, Auto
                    // Scaling group and policy in every environment (strays too); these
                    // Describe calls take no resource.
                    "elasticloadbalancing:DescribeListeners", "elasticloadbalancing:DescribeLoadBalancerAttributes",
                    "elasticloadbalancing:DescribeLoadBalancers", "elasticloadbalancing:DescribeTags",
                    "elasticloadbalancing:DescribeTargetGroupAttributes", "elasticloadbalancing:DescribeTargetGroups",
                    "autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribePolicies",
                    "ec2:DescribeLaunchTemplateVersions", "ec2:DescribeLaunchTemplates",
                ],
                "Resource": "*",
            },
            {
                // `plan` reads every bucket's tags to find the environment's (there is no tag query).
                "Sid": "BucketRead",
                "Effect": "Allow",
                "Action": [
                    "s3:GetBucketPolicy", "s3:GetBucketTagging", "s3:GetBucketVersioning",
                    "s3:GetEncryptionConfiguration", "s3:GetBucketPublicAccessBlock", "s3:ListBucket",
                ],
                "Resource": [bucket, "arn:aws:s3:::*".to_string()],
            },
            {
                "Sid": "RolesRead",
                "Effect": "Allow",
                "Action": ["iam:GetRole", "iam:GetRolePolicy", "iam:ListRoleTags", "iam:GetInstanceProfile"],
                "Resource": [iam("role"), iam("instance-profile")],
            },
            {
                // Listing takes no resource: scoped to a path, it would be refused altogether.
                "Sid": "RolesList",
                "Effect": "Allow",
                "Action": ["iam:ListInstanceProfiles", "iam:ListRoles"],
                "Resource": "*",
            },
            {
                "Sid": "Parameters",
                "Effect": "Allow",
                "Action": ["ssm:GetParameter", "ssm:GetParametersByPath"],
                "Resource": [
                    aws.arn("ssm", &format!("parameter/netsec/{}", environment.name)),
                    aws.arn("ssm", &format!("parameter/netsec/{}/*", environment.name)),
                    format!("arn:aws:ssm:{}::parameter{}", aws.region, environment.runner.ami_parameter),
                ],
            },
            {
                "Sid": "LockAndHistory",
                "Effect": "Allow",
                "Action": ["ssm:PutParameter", "ssm:DeleteParameter"],
                "Resource": aws.arn("ssm", &format!("parameter/netsec/{}/deploy/*", environment.name)),
            },
            {
                "Sid": "RunCommandDocument",
                "Effect": "Allow",
                "Action": "ssm:SendCommand",
                "Resource": format!("arn:aws:ssm:{}::document/AWS-RunShellScript", aws.region),
            },
            {
                "Sid": "RunCommandOnInstances",
                "Effect": "Allow",
                "Action": "ssm:SendCommand",
                "Resource": aws.arn("ec2", "instance/*"),
                "Condition": {"StringEquals": {format!("ssm:resourceTag/{ENV_TAG}"): environment.name.clone()}},
            },
        ]
    })
}

/// Creates the deploy role, or brings its trust and policy back to what they must be; returns
/// its ARN. Tagged for the environment, so `destroy` removes it.
pub async fn ensure_deploy_role(
    aws: &Aws,
    environment: &Environment,
    provider_arn: &str,
    repo: &str,
) -> anyhow::Result<String> {
    let name = environment.deploy_role();
    let arn = format!("arn:aws:iam::{}:role{PATH}{name}", aws.account);
    let trust = trust_policy(provider_arn, repo);
    let wanted = deploy_policy(aws, environment);
    let existing = match aws.iam.get_role().role_name(&name).send().await {
        Ok(found) => found.role,
        Err(e) if code(&e) == Some("NoSuchEntity") => None,
        Err(e) => return Err(explain(e, "iam:GetRole", &arn)),
    };
    let mut changes = Vec::new();
    match existing {
        None => {
            create_role(aws, environment, &name, &trust).await.map_err(|e| explain(e, "iam:CreateRole", &arn))?;
            changes.push("created");
        }
        Some(role) if role.assume_role_policy_document().and_then(policy::parse_document) != Some(trust.clone()) => {
            aws.iam
                .update_assume_role_policy()
                .role_name(&name)
                .policy_document(trust.to_string())
                .send()
                .await
                .map_err(|e| explain(e, "iam:UpdateAssumeRolePolicy", &arn))?;
            changes.push("trust policy set");
        }
        Some(_) => {}
    }
    if crate::deploy::role::inline_policy(aws, &name).await? != Some(wanted.clone()) {
        aws.iam
            .put_role_policy()
            .role_name(&name)
            .policy_name(&name)
            .policy_document(wanted.to_string())
            .send()
            .await
            .map_err(|e| explain(e, "iam:PutRolePolicy", &arn))?;
        changes.push("policy set");
    }
    match changes.as_slice() {
        [] => println!("  iam role {name}: unchanged"),
        _ => println!("~ iam role {name}: {}", changes.join(", ")),
    }
    Ok(arn)
}

async fn create_role(
    aws: &Aws,
    environment: &Environment,
    name: &str,
    trust: &Value,
) -> Result<(), aws_sdk_iam::error::SdkError<aws_sdk_iam::operation::create_role::CreateRoleError>> {
    let tags = crate::deploy::role::tags(&crate::deploy::plan::tag_pairs(environment, name)).unwrap_or_default();
    aws.iam
        .create_role()
        .role_name(name)
        .path(PATH)
        // No spaces: moto re-encodes them (see firewall.rs).
        .description(format!("GitHub-Actions-deploys-netsec-{}", environment.name))
        .assume_role_policy_document(trust.to_string())
        .set_tags(Some(tags))
        .send()
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_main_branch_of_the_repository_is_trusted() {
        let trust = trust_policy("arn:aws:iam::1:oidc-provider/token.actions.githubusercontent.com", "octo/netsec");
        let statement = &trust["Statement"][0];
        assert_eq!(statement["Action"], "sts:AssumeRoleWithWebIdentity");
        let condition = &statement["Condition"]["StringEquals"];
        assert_eq!(condition["token.actions.githubusercontent.com:sub"], "repo:octo/netsec:ref:refs/heads/main");
        assert_eq!(condition["token.actions.githubusercontent.com:aud"], "sts.amazonaws.com");
        assert!(statement["Condition"].get("StringLike").is_none(), "no wildcard subjects");
    }

    #[test]
    fn a_fleet_adds_the_rollouts_calls_on_its_own_target_group_and_group_only() {
        let environment = Environment::load("fleet").unwrap();
        let arn = |service: &str, resource: &str| format!("arn:aws:{service}:eu-west-1:123456789012:{resource}");
        let statements = fleet_statements(&arn, &environment, "arn:aws:acm:eu-west-1:123456789012:certificate/c");
        let by_sid = |sid: &str| statements.iter().find(|s| s["Sid"] == sid).unwrap_or_else(|| panic!("no {sid}"));
        let targets = by_sid("RolloutTargets");
        assert_eq!(
            targets["Resource"],
            "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/netsec-fleet-web/*"
        );
        let group = by_sid("RolloutHealthChecks");
        assert_eq!(group["Action"], "autoscaling:UpdateAutoScalingGroup");
        assert_eq!(
            group["Resource"],
            "arn:aws:autoscaling:eu-west-1:123456789012:autoScalingGroup:*:autoScalingGroupName/netsec-fleet-fleet"
        );
        let unscoped: Vec<&Value> = statements.iter().filter(|s| s["Resource"] == "*").collect();
        assert_eq!(unscoped.len(), 1, "only DescribeTargetHealth, which takes no resource: {unscoped:?}");
        assert_eq!(unscoped[0]["Action"], "elasticloadbalancing:DescribeTargetHealth");
    }
}
