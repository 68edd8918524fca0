//! The instances' IAM policy documents, least privilege. The runner: pull from this one
//! repository, read and write this bucket's two prefixes, read this environment's parameters,
//! and what the SSM agent needs to take Run Command. A fleet instance: the same pull and agent,
//! read the models, read the deployed image's parameter. (The AWS-managed
//! AmazonSSMManagedInstanceCore also reads every parameter in the account; these do not.)

use serde_json::{json, Value};

use super::environment::Environment;
use crate::aws::Aws;

/// Who may assume the runner's role: the EC2 service, for the instance profile.
pub fn trust_policy() -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }]
    })
}

/// What the runner may do.
pub fn runner_policy(aws: &Aws, environment: &Environment) -> Value {
    let bucket = &environment.bucket.name;
    let prefixes = [environment.bucket.models_prefix.as_str(), environment.bucket.artifacts_prefix.as_str()];
    let objects: Vec<String> = prefixes.iter().map(|p| format!("arn:aws:s3:::{bucket}/{p}/*")).collect();
    let [login, pull] = image_pull(aws, environment);
    document(vec![
        login,
        pull,
        bucket_list(environment, &prefixes),
        json!({
            "Sid": "BucketObjects",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            "Resource": objects,
        }),
        json!({
            "Sid": "EnvironmentParameters",
            "Effect": "Allow",
            "Action": ["ssm:GetParameter", "ssm:GetParametersByPath"],
            "Resource": aws.arn("ssm", &format!("parameter/netsec/{}/*", environment.name)),
        }),
        ssm_agent(),
    ])
}

/// What a fleet instance may do: less than the runner, as it trains nothing and takes no
/// token. It reads the models (the server's hot reload) and the one parameter naming the
/// deployed image (its user data starts that image).
pub fn fleet_policy(aws: &Aws, environment: &Environment) -> Value {
    let bucket = &environment.bucket.name;
    let models = environment.bucket.models_prefix.as_str();
    let [login, pull] = image_pull(aws, environment);
    document(vec![
        login,
        pull,
        bucket_list(environment, &[models]),
        json!({
            "Sid": "ModelsRead",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": format!("arn:aws:s3:::{bucket}/{models}/*"),
        }),
        json!({
            "Sid": "DeployedImage",
            "Effect": "Allow",
            "Action": "ssm:GetParameter",
            "Resource": aws.arn("ssm", &format!("parameter{}", environment.parameter("deploy/current"))),
        }),
        ssm_agent(),
    ])
}

fn document(statements: Vec<Value>) -> Value {
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// Logging in to ECR and pulling from the environment's repository only.
fn image_pull(aws: &Aws, environment: &Environment) -> [Value; 2] {
    [
        json!({
            // GetAuthorizationToken has no resource-level permissions.
            "Sid": "EcrLogin",
            "Effect": "Allow",
            "Action": "ecr:GetAuthorizationToken",
            "Resource": "*",
        }),
        json!({
            "Sid": "EcrPull",
            "Effect": "Allow",
            "Action": ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            "Resource": aws.arn("ecr", &format!("repository/{}", environment.repository.name)),
        }),
    ]
}

/// Listing the bucket under `prefixes` only.
fn bucket_list(environment: &Environment, prefixes: &[&str]) -> Value {
    let listed: Vec<String> = prefixes.iter().flat_map(|p| [p.to_string(), format!("{p}/*")]).collect();
    json!({
        "Sid": "BucketList",
        "Effect": "Allow",
        "Action": "s3:ListBucket",
        "Resource": format!("arn:aws:s3:::{}", environment.bucket.name),
        "Condition": {"StringLike": {"s3:prefix": listed}},
    })
}

/// The SSM agent's own channel (Run Command); these actions take no resource ARNs.
fn ssm_agent() -> Value {
    json!({
        "Sid": "SsmAgent",
        "Effect": "Allow",
        "Action": [
            "ssm:UpdateInstanceInformation",
            "ssmmessages:CreateControlChannel",
            "ssmmessages:CreateDataChannel",
            "ssmmessages:OpenControlChannel",
            "ssmmessages:OpenDataChannel",
            "ec2messages:AcknowledgeMessage",
            "ec2messages:DeleteMessage",
            "ec2messages:FailMessage",
            "ec2messages:GetEndpoint",
            "ec2messages:GetMessages",
            "ec2messages:SendReply",
        ],
        "Resource": "*",
    })
}

/// The bucket's own policy: no request without TLS, whoever makes it; with the fleet's access
/// logs on, Elastic Load Balancing may write them under their prefix (and nowhere else).
pub fn bucket_policy(aws: &Aws, environment: &Environment) -> Value {
    let bucket = format!("arn:aws:s3:::{}", environment.bucket.name);
    let mut statements = vec![json!({
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [bucket.clone(), format!("{bucket}/*")],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    })];
    if let Some(logs) = environment.fleet.as_ref().and_then(|f| f.access_logs.as_ref()) {
        statements.push(json!({
            "Sid": "LoadBalancerAccessLogs",
            "Effect": "Allow",
            "Principal": log_delivery(&aws.region),
            "Action": "s3:PutObject",
            "Resource": format!("{bucket}/{}/AWSLogs/{}/*", logs.prefix, aws.account),
        }));
    }
    document(statements)
}

/// Who writes a load balancer's access logs: in the Regions opened before August 2022, Elastic
/// Load Balancing's account of that Region; in later ones, its log-delivery service principal
/// (docs.aws.amazon.com/elasticloadbalancing/latest/application/enable-access-logging.html).
fn log_delivery(region: &str) -> Value {
    const ACCOUNTS: &[(&str, &str)] = &[
        ("us-east-1", "127311923021"),
        ("us-east-2", "033677994240"),
        ("us-west-1", "027434742980"),
        ("us-west-2", "797873946194"),
        ("af-south-1", "098369216593"),
        ("ap-east-1", "754344448648"),
        ("ap-southeast-3", "589379963580"),
        ("ap-south-1", "718504428378"),
        ("ap-northeast-3", "383597477331"),
        ("ap-northeast-2", "600734575887"),
        ("ap-southeast-1", "114774131450"),
        ("ap-southeast-2", "783225319266"),
        ("ap-northeast-1", "582318560864"),
        ("ca-central-1", "985666609251"),
        ("eu-central-1", "054676820928"),
        ("eu-west-1", "156460612806"),
        ("eu-west-2", "652711504416"),
        ("eu-south-1", "635631232127"),
        ("eu-west-3", "009996457667"),
        ("eu-north-1", "897822967062"),
        ("me-south-1", "076674570225"),
        ("sa-east-1", "507241528517"),
        ("us-gov-west-1", "048591011584"),
        ("us-gov-east-1", "190560391635"),
    ];
    match ACCOUNTS.iter().find(|(name, _)| *name == region) {
        Some((_, account)) => {
            let partition = if region.starts_with("us-gov-") { "aws-us-gov" } else { "aws" };
            json!({"AWS": format!("arn:{partition}:iam::{account}:root")})
        }
        None => json!({"Service": "logdelivery.elasticloadbalancing.amazonaws.com"}),
    }
}

/// A policy document as IAM returns it, parsed (None when it is not JSON).
pub fn parse_document(text: &str) -> Option<Value> {
    // IAM hands documents back URL-encoded (RFC 3986).
    let decoded = percent_encoding::percent_decode_str(text).decode_utf8_lossy();
    serde_json::from_str(text).ok().or_else(|| serde_json::from_str(&decoded).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_logs_are_delivered_by_the_regions_balancer_account_or_service() {
        assert_eq!(log_delivery("eu-west-1"), json!({"AWS": "arn:aws:iam::156460612806:root"}));
        assert_eq!(log_delivery("us-gov-west-1"), json!({"AWS": "arn:aws-us-gov:iam::048591011584:root"}));
        assert_eq!(log_delivery("eu-central-2"), json!({"Service": "logdelivery.elasticloadbalancing.amazonaws.com"}));
    }

    #[test]
    fn documents_come_back_decoded() {
        let encoded = "%7B%22Version%22%3A%222012-10-17%22%7D";
        assert_eq!(parse_document(encoded), Some(json!({"Version": "2012-10-17"})));
        assert_eq!(parse_document("{\"a\":1}"), Some(json!({"a": 1})));
    }
}
