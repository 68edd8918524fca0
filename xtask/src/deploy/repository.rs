//! The ECR repository the service image goes to: immutable tags (a digest's tag never moves),
//! scan on push, AES-256 encryption, and a lifecycle rule that keeps the last N images.

use aws_sdk_ecr::types::{
    EncryptionConfiguration, EncryptionType, ImageScanningConfiguration, ImageTagMutability, Repository, Tag,
};

use super::environment::Environment;
use super::plan::{self, Change, Planned};
use crate::aws::{code, explain, Aws};

pub const KIND: &str = "ecr repository";

#[derive(Debug, Clone)]
pub enum Step {
    Create,
    ImmutableTags,
    ScanOnPush,
    Lifecycle,
    Tag(Vec<(String, String)>),
    Delete(String),
}

impl Step {
    pub fn describe(&self) -> String {
        match self {
            Step::Create => "create (immutable tags, scan on push, AES-256)".into(),
            Step::ImmutableTags => "make tags immutable".into(),
            Step::ScanOnPush => "turn on scan on push".into(),
            Step::Lifecycle => "set the lifecycle policy (keep the last images)".into(),
            Step::Tag(tags) => format!("tag {}", plan::show_tags(tags)),
            Step::Delete(name) => format!("delete {name} and its images"),
        }
    }

    pub async fn run(&self, aws: &Aws, environment: &Environment) -> anyhow::Result<()> {
        let name = &environment.repository.name;
        match self {
            Step::Create => {
                aws.ecr
                    .create_repository()
                    .repository_name(name)
                    .image_tag_mutability(ImageTagMutability::Immutable)
                    .image_scanning_configuration(scanning())
                    .encryption_configuration(
                        EncryptionConfiguration::builder().encryption_type(EncryptionType::Aes256).build()?,
                    )
                    .set_tags(Some(tags(&plan::tag_pairs(environment, name))?))
                    .send()
                    .await
                    .map_err(|e| explain(e, "ecr:CreateRepository", name))?;
            }
            Step::ImmutableTags => {
                aws.ecr
                    .put_image_tag_mutability()
                    .repository_name(name)
                    .image_tag_mutability(ImageTagMutability::Immutable)
                    .send()
                    .await
                    .map_err(|e| explain(e, "ecr:PutImageTagMutability", name))?;
            }
            Step::ScanOnPush => {
                aws.ecr
                    .put_image_scanning_configuration()
                    .repository_name(name)
                    .image_scanning_configuration(scanning())
                    .send()
                    .await
                    .map_err(|e| explain(e, "ecr:PutImageScanningConfiguration", name))?;
            }
            Step::Lifecycle => {
                aws.ecr
                    .put_lifecycle_policy()
                    .repository_name(name)
                    .lifecycle_policy_text(lifecycle_policy(environment).to_string())
                    .send()
                    .await
                    .map_err(|e| explain(e, "ecr:PutLifecyclePolicy", name))?;
            }
            Step::Tag(pairs) => {
                let arn = aws.arn("ecr", &format!("repository/{name}"));
                aws.ecr
                    .tag_resource()
                    .resource_arn(&arn)
                    .set_tags(Some(tags(pairs)?))
                    .send()
                    .await
                    .map_err(|e| explain(e, "ecr:TagResource", name))?;
            }
            Step::Delete(other) => {
                aws.ecr
                    .delete_repository()
                    .repository_name(other)
                    .force(true)
                    .send()
                    .await
                    .map_err(|e| explain(e, "ecr:DeleteRepository", other))?;
            }
        }
        Ok(())
    }
}

fn scanning() -> ImageScanningConfiguration {
    ImageScanningConfiguration::builder().scan_on_push(true).build()
}

fn tags(pairs: &[(String, String)]) -> anyhow::Result<Vec<Tag>> {
    pairs.iter().map(|(k, v)| Ok(Tag::builder().key(k).value(v).build()?)).collect()
}

/// Expire images beyond the newest `keep_images`, whatever their tags.
pub fn lifecycle_policy(environment: &Environment) -> serde_json::Value {
    serde_json::json!({
        "rules": [{
            "rulePriority": 1,
            "description": format!("keep the last {} images", environment.repository.keep_images),
            "selection": {
                "tagStatus": "any",
                "countType": "imageCountMoreThan",
                "countNumber": environment.repository.keep_images,
            },
            "action": {"type": "expire"},
        }]
    })
}

/// The repository as ECR has it, or None.
pub async fn describe(aws: &Aws, name: &str) -> anyhow::Result<Option<Repository>> {
    match aws.ecr.describe_repositories().repository_names(name).send().await {
        Ok(found) => Ok(found.repositories().first().cloned()),
        Err(e) if code(&e) == Some("RepositoryNotFoundException") => Ok(None),
        Err(e) => Err(explain(e, "ecr:DescribeRepositories", name)),
    }
}

pub async fn plan(aws: &Aws, environment: &Environment) -> anyhow::Result<Planned> {
    let name = &environment.repository.name;
    let Some(repository) = describe(aws, name).await? else {
        let steps = vec![super::plan::Step::Repository(Step::Create), super::plan::Step::Repository(Step::Lifecycle)];
        return Ok(Planned::new(KIND, name, true, steps));
    };
    let mut steps = Vec::new();
    if repository.image_tag_mutability() != Some(&ImageTagMutability::Immutable) {
        steps.push(Step::ImmutableTags);
    }
    if !repository.image_scanning_configuration().is_some_and(|c| c.scan_on_push()) {
        steps.push(Step::ScanOnPush);
    }
    if lifecycle(aws, name).await? != Some(lifecycle_policy(environment)) {
        steps.push(Step::Lifecycle);
    }
    let actual = tags_of(aws, repository.repository_arn().unwrap_or_default()).await?;
    let missing = plan::missing_tags(&plan::tag_pairs(environment, name), &actual);
    if !missing.is_empty() {
        steps.push(Step::Tag(missing));
    }
    Ok(Planned::new(KIND, name, false, steps.into_iter().map(super::plan::Step::Repository).collect()))
}

async fn lifecycle(aws: &Aws, name: &str) -> anyhow::Result<Option<serde_json::Value>> {
    match aws.ecr.get_lifecycle_policy().repository_name(name).send().await {
        Ok(found) => Ok(found.lifecycle_policy_text().and_then(|text| serde_json::from_str(text).ok())),
        Err(e) if code(&e) == Some("LifecyclePolicyNotFoundException") => Ok(None),
        Err(e) => Err(explain(e, "ecr:GetLifecyclePolicy", name)),
    }
}

async fn tags_of(aws: &Aws, arn: &str) -> anyhow::Result<Vec<(String, String)>> {
    match aws.ecr.list_tags_for_resource().resource_arn(arn).send().await {
        Ok(found) => Ok(found.tags().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect()),
        // Deleted since it was listed.
        Err(e) if code(&e) == Some("RepositoryNotFoundException") => Ok(Vec::new()),
        Err(e) => Err(explain(e, "ecr:ListTagsForResource", arn)),
    }
}

/// Every repository tagged for the environment, to delete.
pub async fn teardown(aws: &Aws, environment: &Environment) -> anyhow::Result<Vec<Planned>> {
    let mut pages = aws.ecr.describe_repositories().into_paginator().items().send();
    let mut planned = Vec::new();
    while let Some(repository) = pages.try_next().await.map_err(|e| explain(e, "ecr:DescribeRepositories", "*"))? {
        let tags = tags_of(aws, repository.repository_arn().unwrap_or_default()).await?;
        if plan::is_tagged_for(environment, &tags) {
            let name = repository.repository_name().unwrap_or_default().to_string();
            let step = super::plan::Step::Repository(Step::Delete(name.clone()));
            planned.push(Planned { kind: KIND, name, change: Change::Delete, steps: vec![step] });
        }
    }
    Ok(planned)
}

/// The repository's URI (`<account>.dkr.ecr.<region>.amazonaws.com/<name>`).
pub async fn uri(aws: &Aws, environment: &Environment) -> anyhow::Result<String> {
    let name = &environment.repository.name;
    let repository = describe(aws, name)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the ECR repository {name} does not exist: run `cargo xtask apply` first"))?;
    Ok(repository.repository_uri().unwrap_or_default().to_string())
}
