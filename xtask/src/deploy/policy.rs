//! The runner's IAM policy documents, least privilege: pull from this one repository, read and
//! write this bucket's two prefixes, read this environment's parameters, and what the SSM agent
//! needs to take Run Command (the AWS-managed AmazonSSMManagedInstanceCore also reads every
//! parameter in the account; this does not).

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
    let prefixes = [&environment.bucket.models_prefix, &environment.bucket.artifacts_prefix];
    let objects: Vec<String> = prefixes.iter().map(|p| format!("arn:aws:s3:::{bucket}/{p}/*")).collect();
    let listed: Vec<String> = prefixes.iter().flat_map(|p| [p.to_string(), format!("{p}/*")]).collect();
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                // GetAuthorizationToken has no resource-level permissions.
                "Sid": "EcrLogin",
                "Effect": "Allow",
                "Action": "ecr:GetAuthorizationToken",
                "Resource": "*",
            },
            {
                "Sid": "EcrPull",
                "Effect": "Allow",
                "Action": ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                "Resource": aws.arn("ecr", &format!("repository/{}", environment.repository.name)),
            },
            {
                "Sid": "BucketList",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": format!("arn:aws:s3:::{bucket}"),
                "Condition": {"StringLike": {"s3:prefix": listed}},
            },
            {
                "Sid": "BucketObjects",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                "Resource": objects,
            },
            {
                "Sid": "EnvironmentParameters",
                "Effect": "Allow",
                "Action": ["ssm:GetParameter", "ssm:GetParametersByPath"],
                "Resource": aws.arn("ssm", &format!("parameter/netsec/{}/*", environment.name)),
            },
            {
                // The SSM agent's own channel (Run Command); these take no resource ARNs.
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
            },
        ]
    })
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
    fn documents_come_back_decoded() {
        let encoded = "%7B%22Version%22%3A%222012-10-17%22%7D";
        assert_eq!(parse_document(encoded), Some(json!({"Version": "2012-10-17"})));
        assert_eq!(parse_document("{\"a\":1}"), Some(json!({"a": 1})));
    }
}
