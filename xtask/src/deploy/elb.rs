//! What the fleet's Elastic Load Balancing resources (the balancer, the target group) share:
//! their tags, and finding the ones tagged for an environment.

use aws_sdk_elasticloadbalancingv2::types::Tag;

use super::environment::Environment;
use super::plan::{self, Change, Planned};
use crate::aws::{explain, Aws};

/// DescribeTags takes at most 20 resources a call.
const TAGS_PER_CALL: usize = 20;

/// The environment's tags, as the ELB API takes them.
pub fn tags(environment: &Environment, name: &str) -> Vec<Tag> {
    let pairs = plan::tag_pairs(environment, name);
    pairs.iter().map(|(key, value)| Tag::builder().key(key).value(value).build()).collect()
}

/// The resources among `arns` (load balancers or target groups) tagged for the environment.
pub async fn tagged_for(aws: &Aws, environment: &Environment, arns: &[String]) -> anyhow::Result<Vec<String>> {
    let mut tagged = Vec::new();
    for chunk in arns.chunks(TAGS_PER_CALL) {
        let found = aws
            .elb
            .describe_tags()
            .set_resource_arns(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| explain(e, "elasticloadbalancing:DescribeTags", "*"))?;
        for description in found.tag_descriptions() {
            let pairs: Vec<(String, String)> = description
                .tags()
                .iter()
                .map(|t| (t.key().unwrap_or_default().to_string(), t.value().unwrap_or_default().to_string()))
                .collect();
            if plan::is_tagged_for(environment, &pairs) {
                tagged.extend(description.resource_arn().map(str::to_string));
            }
        }
    }
    Ok(tagged)
}

/// The resources (ARN, name) tagged for the environment, each planned for deletion by the step
/// `delete` makes of its ARN.
pub async fn deletions(
    aws: &Aws,
    environment: &Environment,
    kind: &'static str,
    resources: Vec<(String, String)>,
    delete: impl Fn(String) -> plan::Step,
) -> anyhow::Result<Vec<Planned>> {
    let arns: Vec<String> = resources.iter().map(|(arn, _)| arn.clone()).collect();
    let tagged = tagged_for(aws, environment, &arns).await?;
    let tagged = resources.into_iter().filter(|(arn, _)| tagged.contains(arn));
    Ok(tagged.map(|(arn, name)| Planned { kind, name, change: Change::Delete, steps: vec![delete(arn)] }).collect())
}
