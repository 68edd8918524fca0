//! The S3 bucket for models and artifacts: versioned (a bad push can be undone), encrypted at
//! rest (SSE-S3), every public access path blocked, no request without TLS (its policy, which
//! also lets the fleet's load balancer write its access logs), tagged for the environment.

use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration, Delete, ObjectIdentifier,
    PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule, Tag, Tagging, VersioningConfiguration,
};

use super::environment::Environment;
use super::plan::{self, Change, Planned};
use super::policy;
use crate::aws::{code, explain, Aws};

pub const KIND: &str = "s3 bucket";

#[derive(Debug, Clone)]
pub enum Step {
    Create,
    Versioning,
    Encryption,
    BlockPublicAccess,
    Policy,
    Tag(Vec<(String, String)>),
    /// Every object version, then the bucket.
    Delete(String),
}

impl Step {
    pub fn describe(&self) -> String {
        match self {
            Step::Create => "create".into(),
            Step::Versioning => "turn on versioning".into(),
            Step::Encryption => "encrypt new objects (SSE-S3, AES-256)".into(),
            Step::BlockPublicAccess => "block all public access".into(),
            Step::Policy => "set the bucket policy (TLS only; the load balancer's access logs when on)".into(),
            Step::Tag(tags) => format!("tag {}", plan::show_tags(tags)),
            Step::Delete(name) => format!("delete every object version in {name}, then the bucket"),
        }
    }

    pub async fn run(&self, aws: &Aws, environment: &Environment) -> anyhow::Result<()> {
        let name = &environment.bucket.name;
        let arn = format!("arn:aws:s3:::{name}");
        match self {
            Step::Create => {
                let mut create = aws.s3.create_bucket().bucket(name);
                // us-east-1 is the one region that takes no location constraint.
                if aws.region != "us-east-1" {
                    let location = BucketLocationConstraint::from(aws.region.as_str());
                    create = create.create_bucket_configuration(
                        CreateBucketConfiguration::builder().location_constraint(location).build(),
                    );
                }
                create.send().await.map_err(|e| explain(e, "s3:CreateBucket", &arn))?;
            }
            Step::Versioning => {
                let enabled = VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build();
                aws.s3
                    .put_bucket_versioning()
                    .bucket(name)
                    .versioning_configuration(enabled)
                    .send()
                    .await
                    .map_err(|e| explain(e, "s3:PutBucketVersioning", &arn))?;
            }
            Step::Encryption => {
                let default =
                    ServerSideEncryptionByDefault::builder().sse_algorithm(ServerSideEncryption::Aes256).build()?;
                let rule = ServerSideEncryptionRule::builder().apply_server_side_encryption_by_default(default).build();
                let configuration = ServerSideEncryptionConfiguration::builder().rules(rule).build()?;
                aws.s3
                    .put_bucket_encryption()
                    .bucket(name)
                    .server_side_encryption_configuration(configuration)
                    .send()
                    .await
                    .map_err(|e| explain(e, "s3:PutEncryptionConfiguration", &arn))?;
            }
            Step::BlockPublicAccess => {
                let all = PublicAccessBlockConfiguration::builder()
                    .block_public_acls(true)
                    .ignore_public_acls(true)
                    .block_public_policy(true)
                    .restrict_public_buckets(true)
                    .build();
                aws.s3
                    .put_public_access_block()
                    .bucket(name)
                    .public_access_block_configuration(all)
                    .send()
                    .await
                    .map_err(|e| explain(e, "s3:PutBucketPublicAccessBlock", &arn))?;
            }
            Step::Policy => {
                aws.s3
                    .put_bucket_policy()
                    .bucket(name)
                    .policy(policy::bucket_policy(aws, environment).to_string())
                    .send()
                    .await
                    .map_err(|e| explain(e, "s3:PutBucketPolicy", &arn))?;
            }
            Step::Tag(missing) => {
                // PutBucketTagging replaces the whole set: keep the tags others put there.
                let mut pairs = tags_of(aws, name).await?;
                pairs.retain(|(k, _)| !missing.iter().any(|(m, _)| m == k));
                pairs.extend(missing.iter().cloned());
                let tag_set = pairs.iter().map(|(k, v)| Ok(Tag::builder().key(k).value(v).build()?));
                let tagging = Tagging::builder().set_tag_set(Some(tag_set.collect::<anyhow::Result<_>>()?)).build()?;
                aws.s3
                    .put_bucket_tagging()
                    .bucket(name)
                    .tagging(tagging)
                    .send()
                    .await
                    .map_err(|e| explain(e, "s3:PutBucketTagging", &arn))?;
            }
            Step::Delete(bucket) => empty_and_delete(aws, bucket).await?,
        }
        Ok(())
    }
}

pub async fn plan(aws: &Aws, environment: &Environment) -> anyhow::Result<Planned> {
    let name = &environment.bucket.name;
    let wanted_tags = plan::tag_pairs(environment, name);
    if !exists(aws, name).await? {
        let steps = [
            Step::Create,
            Step::Versioning,
            Step::Encryption,
            Step::BlockPublicAccess,
            Step::Policy,
            Step::Tag(wanted_tags),
        ];
        return Ok(Planned::new(KIND, name, true, steps.into_iter().map(plan::Step::Bucket).collect()));
    }
    let mut steps = Vec::new();
    if !versioned(aws, name).await? {
        steps.push(Step::Versioning);
    }
    if !encrypted(aws, name).await? {
        steps.push(Step::Encryption);
    }
    if !public_access_blocked(aws, name).await? {
        steps.push(Step::BlockPublicAccess);
    }
    if bucket_policy(aws, name).await? != Some(policy::bucket_policy(aws, environment)) {
        steps.push(Step::Policy);
    }
    let missing = plan::missing_tags(&wanted_tags, &tags_of(aws, name).await?);
    if !missing.is_empty() {
        steps.push(Step::Tag(missing));
    }
    Ok(Planned::new(KIND, name, false, steps.into_iter().map(plan::Step::Bucket).collect()))
}

async fn exists(aws: &Aws, name: &str) -> anyhow::Result<bool> {
    match aws.s3.head_bucket().bucket(name).send().await {
        Ok(_) => Ok(true),
        Err(e) if matches!(code(&e), Some("NotFound" | "NoSuchBucket")) => Ok(false),
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 403) => anyhow::bail!(
            "the bucket {name} exists but these credentials may not use it (bucket names are global: another \
             account may own it); pick another `bucket.name`"
        ),
        Err(e) => Err(explain(e, "s3:ListBucket", &format!("arn:aws:s3:::{name}"))),
    }
}

async fn versioned(aws: &Aws, name: &str) -> anyhow::Result<bool> {
    let found = aws
        .s3
        .get_bucket_versioning()
        .bucket(name)
        .send()
        .await
        .map_err(|e| explain(e, "s3:GetBucketVersioning", name))?;
    Ok(found.status() == Some(&BucketVersioningStatus::Enabled))
}

async fn encrypted(aws: &Aws, name: &str) -> anyhow::Result<bool> {
    match aws.s3.get_bucket_encryption().bucket(name).send().await {
        Ok(found) => Ok(found
            .server_side_encryption_configuration()
            .is_some_and(|c| c.rules().iter().any(|rule| rule.apply_server_side_encryption_by_default().is_some()))),
        Err(e) if code(&e) == Some("ServerSideEncryptionConfigurationNotFoundError") => Ok(false),
        Err(e) => Err(explain(e, "s3:GetEncryptionConfiguration", name)),
    }
}

async fn public_access_blocked(aws: &Aws, name: &str) -> anyhow::Result<bool> {
    match aws.s3.get_public_access_block().bucket(name).send().await {
        Ok(found) => Ok(found.public_access_block_configuration().is_some_and(|c| {
            [c.block_public_acls(), c.ignore_public_acls(), c.block_public_policy(), c.restrict_public_buckets()]
                .iter()
                .all(|flag| *flag == Some(true))
        })),
        Err(e) if code(&e) == Some("NoSuchPublicAccessBlockConfiguration") => Ok(false),
        Err(e) => Err(explain(e, "s3:GetBucketPublicAccessBlock", name)),
    }
}

async fn bucket_policy(aws: &Aws, name: &str) -> anyhow::Result<Option<serde_json::Value>> {
    match aws.s3.get_bucket_policy().bucket(name).send().await {
        Ok(found) => Ok(found.policy().and_then(policy::parse_document)),
        Err(e) if code(&e) == Some("NoSuchBucketPolicy") => Ok(None),
        Err(e) => Err(explain(e, "s3:GetBucketPolicy", name)),
    }
}

async fn tags_of(aws: &Aws, name: &str) -> anyhow::Result<Vec<(String, String)>> {
    match aws.s3.get_bucket_tagging().bucket(name).send().await {
        Ok(found) => Ok(found.tag_set().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect()),
        // A bucket deleted since it was listed has no tags either.
        Err(e) if matches!(code(&e), Some("NoSuchTagSet" | "NoSuchBucket")) => Ok(Vec::new()),
        Err(e) => Err(explain(e, "s3:GetBucketTagging", name)),
    }
}

/// Every bucket tagged for the environment, to delete with all its object versions.
pub async fn teardown(aws: &Aws, environment: &Environment) -> anyhow::Result<Vec<Planned>> {
    let listed = aws.s3.list_buckets().send().await.map_err(|e| explain(e, "s3:ListAllMyBuckets", "*"))?;
    let mut planned = Vec::new();
    for name in listed.buckets().iter().filter_map(|b| b.name()) {
        if plan::is_tagged_for(environment, &tags_of(aws, name).await?) {
            let step = plan::Step::Bucket(Step::Delete(name.to_string()));
            planned.push(Planned { kind: KIND, name: name.to_string(), change: Change::Delete, steps: vec![step] });
        }
    }
    Ok(planned)
}

/// A versioned bucket is deleted only when no version and no delete marker is left.
async fn empty_and_delete(aws: &Aws, bucket: &str) -> anyhow::Result<()> {
    loop {
        let listed = aws
            .s3
            .list_object_versions()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| explain(e, "s3:ListBucketVersions", bucket))?;
        let versions = listed.versions().iter().map(|v| (v.key(), v.version_id()));
        let markers = listed.delete_markers().iter().map(|m| (m.key(), m.version_id()));
        let objects = versions
            .chain(markers)
            .map(|(key, version)| {
                Ok(ObjectIdentifier::builder()
                    .set_key(key.map(str::to_string))
                    .set_version_id(version.map(str::to_string))
                    .build()?)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        if objects.is_empty() {
            break;
        }
        let delete = Delete::builder().set_objects(Some(objects)).quiet(true).build()?;
        aws.s3
            .delete_objects()
            .bucket(bucket)
            .delete(delete)
            .send()
            .await
            .map_err(|e| explain(e, "s3:DeleteObjectVersion", bucket))?;
    }
    aws.s3.delete_bucket().bucket(bucket).send().await.map_err(|e| explain(e, "s3:DeleteBucket", bucket))?;
    Ok(())
}
