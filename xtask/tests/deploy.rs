//! `cargo xtask plan|apply|destroy|deploy|unlock` against moto's server, which `cargo xtask
//! test` starts (with IAM authentication on: the deployer user may use EC2, ECR, IAM, S3, SSM
//! and STS; the denied user nothing). Each test has an environment of its own, so they run in
//! parallel. What the commands did is checked with the AWS SDK, not with their own output.

use aws_config::SdkConfig;
use aws_sdk_ec2::types::Filter;

mod common;
use common::aws::*;
use common::lossy::{Loss, LossyProxy};
use common::*;

fn tag_filter(env: &TestEnv) -> Filter {
    Filter::builder().name("tag:netsec:env").values(&env.name).build()
}

async fn live_instances(ec2: &aws_sdk_ec2::Client, env: &TestEnv) -> Vec<aws_sdk_ec2::types::Instance> {
    let found = ec2.describe_instances().filters(tag_filter(env)).send().await.unwrap();
    let instances = found.reservations().iter().flat_map(|r| r.instances().iter().cloned());
    instances.filter(|i| i.state().and_then(|s| s.name()).is_some_and(|n| n.as_str() != "terminated")).collect()
}

#[test]
fn apply_creates_exactly_the_environment_and_destroy_removes_it() {
    let env = TestEnv::new("t", "");
    let plan = succeeds(&mut xtask(&["plan", "--env", env.path()]));
    assert!(plan.contains("plan: 6 to create, 0 to update"), "{plan}");

    let applied = succeeds(&mut xtask(&["apply", "--env", env.path()]));
    assert!(applied.contains("+ create"), "{applied}");
    runtime().block_on(check_resources(&env));

    // Nothing changed: no mutating call at all, every resource unchanged.
    let again = succeeds(&mut xtask(&["apply", "--env", env.path()]));
    assert!(again.contains("apply: 0 mutating calls"), "{again}");
    assert!(again.contains("0 to create, 0 to update, 0 to replace, 0 to delete, 6 unchanged"), "{again}");

    // Drift by hand is found and undone.
    runtime().block_on(drift(&env));
    let plan = succeeds(&mut xtask(&["plan", "--env", env.path()]));
    assert!(plan.contains("revoke tcp/22 from 0.0.0.0/0") && plan.contains("turn on versioning"), "{plan}");
    assert!(plan.contains("require IMDSv2"), "{plan}");
    succeeds(&mut xtask(&["apply", "--env", env.path()]));
    runtime().block_on(check_resources(&env));

    let refused = fails(xtask(&["destroy", "--env", env.path()]).stdin(std::process::Stdio::null()));
    assert!(text(&refused.stderr).contains("--yes"), "{}", text(&refused.stderr));
    let destroyed = succeeds(&mut xtask(&["destroy", "--env", env.path(), "--yes"]));
    assert!(destroyed.contains("destroyed environment"), "{destroyed}");
    runtime().block_on(check_nothing_left(&env));
    let again = succeeds(&mut xtask(&["destroy", "--env", env.path(), "--yes"]));
    assert!(again.contains("nothing is tagged"), "{again}");
}

/// Every resource exists with the settings the issue asks for.
async fn check_resources(env: &TestEnv) {
    let config = sdk().await;
    let repository_name = format!("netsec-{}", env.name);
    let ecr = aws_sdk_ecr::Client::new(&config);
    let repositories = ecr.describe_repositories().repository_names(&repository_name).send().await.unwrap();
    let repository = &repositories.repositories()[0];
    assert_eq!(repository.image_tag_mutability().unwrap().as_str(), "IMMUTABLE");
    assert!(repository.image_scanning_configuration().unwrap().scan_on_push());
    let lifecycle = ecr.get_lifecycle_policy().repository_name(&repository_name).send().await.unwrap();
    let rules: serde_json::Value = serde_json::from_str(lifecycle.lifecycle_policy_text().unwrap()).unwrap();
    assert_eq!(rules["rules"][0]["selection"]["countNumber"], 5);
    let tags = ecr.list_tags_for_resource().resource_arn(repository.repository_arn().unwrap()).send().await.unwrap();
    assert!(tags.tags().iter().any(|t| t.key() == "netsec:env" && t.value() == env.name));

    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build());
    let bucket = format!("netsec-{}-models", env.name);
    let versioning = s3.get_bucket_versioning().bucket(&bucket).send().await.unwrap();
    assert_eq!(versioning.status().unwrap().as_str(), "Enabled");
    let encryption = s3.get_bucket_encryption().bucket(&bucket).send().await.unwrap();
    let rule = &encryption.server_side_encryption_configuration().unwrap().rules()[0];
    assert_eq!(rule.apply_server_side_encryption_by_default().unwrap().sse_algorithm().as_str(), "AES256");
    let block = s3.get_public_access_block().bucket(&bucket).send().await.unwrap();
    let block = block.public_access_block_configuration().unwrap();
    assert_eq!(
        [
            block.block_public_acls(),
            block.ignore_public_acls(),
            block.block_public_policy(),
            block.restrict_public_buckets()
        ],
        [Some(true); 4]
    );
    let tagging = s3.get_bucket_tagging().bucket(&bucket).send().await.unwrap();
    assert!(tagging.tag_set().iter().any(|t| t.key() == "netsec:env" && t.value() == env.name));

    check_role(&config, env, &repository_name, &bucket).await;
    check_instance(&config, env).await;
}

async fn check_role(config: &SdkConfig, env: &TestEnv, repository: &str, bucket: &str) {
    let iam = aws_sdk_iam::Client::new(config);
    let role_name = format!("netsec-{}-runner", env.name);
    let role = iam.get_role().role_name(&role_name).send().await.unwrap();
    let trust = decode(role.role().unwrap().assume_role_policy_document().unwrap());
    assert_eq!(trust["Statement"][0]["Principal"]["Service"], "ec2.amazonaws.com");
    let policy = iam.get_role_policy().role_name(&role_name).policy_name(&role_name).send().await.unwrap();
    let policy = decode(policy.policy_document());
    let statements = policy["Statement"].as_array().unwrap();
    let by_sid = |sid: &str| statements.iter().find(|s| s["Sid"] == sid).unwrap_or_else(|| panic!("no {sid}"));
    assert_eq!(by_sid("EcrPull")["Resource"], format!("arn:aws:ecr:us-east-1:123456789012:repository/{repository}"));
    for resource in by_sid("BucketObjects")["Resource"].as_array().unwrap() {
        let resource = resource.as_str().unwrap();
        assert!(resource.starts_with(&format!("arn:aws:s3:::{bucket}/")) && resource.ends_with("/*"), "{resource}");
    }
    assert_eq!(by_sid("BucketList")["Resource"], format!("arn:aws:s3:::{bucket}"));
    // "*" only where the action has no resource-level permissions.
    for statement in statements.iter().filter(|s| s["Resource"] == "*") {
        assert!(["EcrLogin", "SsmAgent"].contains(&statement["Sid"].as_str().unwrap()), "{statement}");
    }
    let actions = statements.iter().flat_map(|s| match &s["Action"] {
        serde_json::Value::Array(all) => all.iter().map(|a| a.as_str().unwrap().to_string()).collect(),
        one => vec![one.as_str().unwrap().to_string()],
    });
    assert!(actions.clone().all(|a| !a.ends_with(":*") && a != "*"), "no wildcard actions");
    assert!(
        !actions.clone().any(|a| a.starts_with("ecr:Put") || a.starts_with("iam:")),
        "the runner cannot push or grant"
    );
    let profile = iam.get_instance_profile().instance_profile_name(&role_name).send().await.unwrap();
    assert_eq!(profile.instance_profile().unwrap().roles()[0].role_name(), role_name);
}

async fn check_instance(config: &SdkConfig, env: &TestEnv) {
    let ec2 = aws_sdk_ec2::Client::new(config);
    let instances = live_instances(&ec2, env).await;
    assert_eq!(instances.len(), 1, "one runner");
    let instance = &instances[0];
    assert_eq!(instance.metadata_options().unwrap().http_tokens().unwrap().as_str(), "required", "IMDSv2");
    assert_eq!(instance.instance_type().unwrap().as_str(), "t3.small");
    assert!(instance.iam_instance_profile().unwrap().arn().unwrap().ends_with(&format!("/netsec-{}-runner", env.name)));
    let volume = instance.block_device_mappings()[0].ebs().unwrap().volume_id().unwrap();
    let volumes = ec2.describe_volumes().volume_ids(volume).send().await.unwrap();
    assert_eq!(volumes.volumes()[0].encrypted(), Some(true), "encrypted root volume");
    let user_data = ec2
        .describe_instance_attribute()
        .instance_id(instance.instance_id().unwrap())
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
        .send()
        .await
        .unwrap();
    let user_data = user_data.user_data().and_then(|u| u.value()).unwrap();
    let user_data = text(&base64::Engine::decode(&base64::engine::general_purpose::STANDARD, user_data).unwrap());
    assert!(user_data.contains("dnf install -y docker") && user_data.contains("https://github.com/octo/netsec"));
    assert!(user_data.contains(&format!("/netsec/{}/runner/registration-token", env.name)));

    let groups = ec2.describe_security_groups().filters(tag_filter(env)).send().await.unwrap();
    let group = &groups.security_groups()[0];
    assert!(instance.security_groups().iter().any(|g| g.group_id() == group.group_id()));
    for permission in group.ip_permissions() {
        assert_eq!(permission.from_port(), Some(8080), "only the service port is open");
        let cidrs: Vec<_> = permission.ip_ranges().iter().filter_map(|r| r.cidr_ip()).collect();
        assert_eq!(cidrs, ["203.0.113.0/24"]);
    }
}

/// Changes made behind the tool's back: SSH from anywhere, versioning suspended, IMDSv1.
async fn drift(env: &TestEnv) {
    let config = sdk().await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let groups = ec2.describe_security_groups().filters(tag_filter(env)).send().await.unwrap();
    let ssh = aws_sdk_ec2::types::IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(22)
        .to_port(22)
        .ip_ranges(aws_sdk_ec2::types::IpRange::builder().cidr_ip("0.0.0.0/0").build())
        .build();
    let group = groups.security_groups()[0].group_id().unwrap();
    ec2.authorize_security_group_ingress().group_id(group).ip_permissions(ssh).send().await.unwrap();
    let instance = live_instances(&ec2, env).await.remove(0);
    ec2.modify_instance_metadata_options()
        .instance_id(instance.instance_id().unwrap())
        .http_tokens(aws_sdk_ec2::types::HttpTokensState::Optional)
        .send()
        .await
        .unwrap();
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build());
    let suspended = aws_sdk_s3::types::VersioningConfiguration::builder()
        .status(aws_sdk_s3::types::BucketVersioningStatus::Suspended)
        .build();
    s3.put_bucket_versioning()
        .bucket(format!("netsec-{}-models", env.name))
        .versioning_configuration(suspended)
        .send()
        .await
        .unwrap();
}

async fn check_nothing_left(env: &TestEnv) {
    let config = sdk().await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    assert!(live_instances(&ec2, env).await.is_empty(), "instances left");
    let groups = ec2.describe_security_groups().filters(tag_filter(env)).send().await.unwrap();
    assert!(groups.security_groups().is_empty(), "security groups left");
    let ecr = aws_sdk_ecr::Client::new(&config);
    let repository = ecr.describe_repositories().repository_names(format!("netsec-{}", env.name)).send().await;
    assert!(repository.is_err(), "the repository is left");
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build());
    let buckets = s3.list_buckets().send().await.unwrap();
    assert!(!buckets.buckets().iter().any(|b| b.name().unwrap_or_default().contains(&env.name)), "the bucket is left");
    let iam = aws_sdk_iam::Client::new(&config);
    assert!(iam.get_role().role_name(format!("netsec-{}-runner", env.name)).send().await.is_err(), "the role is left");
    let profile = iam.get_instance_profile().instance_profile_name(format!("netsec-{}-runner", env.name)).send().await;
    assert!(profile.is_err(), "the instance profile is left");
}

#[test]
fn access_denied_names_the_action_and_the_resource() {
    let env = TestEnv::new("d", "");
    let denied = fails(
        xtask(&["plan", "--env", env.path()])
            .env("AWS_ACCESS_KEY_ID", required("NETSEC_TEST_S3_DENIED_ACCESS_KEY_ID"))
            .env("AWS_SECRET_ACCESS_KEY", required("NETSEC_TEST_S3_DENIED_SECRET_ACCESS_KEY")),
    );
    let message = text(&denied.stderr);
    assert!(message.contains("access denied: ecr:DescribeRepositories on netsec-"), "{message}");
}

#[test]
fn missing_credentials_and_region_are_explained() {
    let env = TestEnv::new("c", "");
    let no_credentials = fails(
        xtask(&["plan", "--env", env.path()])
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env("AWS_CONFIG_FILE", "/nonexistent/config")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials"),
    );
    assert!(text(&no_credentials.stderr).contains("no AWS credentials"), "{}", text(&no_credentials.stderr));

    let no_region_file = env.file.with_file_name("r.yaml");
    let without_region = std::fs::read_to_string(&env.file).unwrap().replace("region: us-east-1\n", "");
    std::fs::write(&no_region_file, without_region).unwrap();
    let no_region = fails(
        xtask(&["plan", "--env", no_region_file.to_str().unwrap()])
            .env_remove("AWS_REGION")
            .env_remove("AWS_DEFAULT_REGION")
            .env("AWS_CONFIG_FILE", "/nonexistent/config"),
    );
    assert!(text(&no_region.stderr).contains("no AWS region"), "{}", text(&no_region.stderr));
}

/// How many SSM commands the environment's runner has been sent.
fn commands_sent(env: &TestEnv) -> usize {
    runtime().block_on(async {
        let config = sdk().await;
        let instance = live_instances(&aws_sdk_ec2::Client::new(&config), env).await.remove(0);
        let ssm = aws_sdk_ssm::Client::new(&config);
        let listed = ssm.list_commands().instance_id(instance.instance_id().unwrap()).send().await.unwrap();
        listed.commands().len()
    })
}

/// SendCommand has no idempotency token, so the SDK's retry could run an update twice; a lost
/// request is sent again, a lost answer is found by the command's marker instead.
#[test]
fn a_command_whose_request_or_answer_is_lost_runs_exactly_once() {
    let env = TestEnv::new("s", "");
    succeeds(&mut xtask(&["apply", "--env", env.path()]));
    for loss in [Loss::Answer, Loss::Request] {
        let proxy = LossyProxy::start(&required("NETSEC_TEST_S3_ENDPOINT"), "AmazonSSM.SendCommand", loss);
        let before = commands_sent(&env);
        let status = succeed(xtask(&["status", "--env", env.path()]).env("AWS_ENDPOINT_URL", &proxy.url));
        let stderr = text(&status.stderr);
        assert!(proxy.lost() && stderr.contains("got no answer"), "{loss:?}: {stderr}");
        assert_eq!(commands_sent(&env), before + 1, "{loss:?}: one command, {stderr}");
        let found = stderr.contains("not sending it again");
        assert_eq!(found, matches!(loss, Loss::Answer), "{loss:?}: {stderr}");
    }
}

/// Puts a deploy lock held by someone else until `expires` (seconds since the epoch).
fn hold_lock(env: &TestEnv, expires: u64) {
    runtime().block_on(async {
        let ssm = aws_sdk_ssm::Client::new(&sdk().await);
        ssm.put_parameter()
            .name(format!("/netsec/{}/deploy/lock", env.name))
            .r#type(aws_sdk_ssm::types::ParameterType::String)
            .value(format!(r#"{{"owner": "alice@laptop pid 7", "taken": 0, "expires": {expires}}}"#))
            .send()
            .await
            .unwrap();
    });
}

#[test]
fn a_held_lock_stops_a_second_deploy_until_it_expires_or_is_removed() {
    let env = TestEnv::new("l", "");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    hold_lock(&env, now + 3600);
    let locked = fails(&mut xtask(&["rollback", "--env", env.path()]));
    assert!(text(&locked.stderr).contains("is being deployed by alice@laptop pid 7"), "{}", text(&locked.stderr));
    let unlocked = succeeds(&mut xtask(&["unlock", "--env", env.path()]));
    assert!(unlocked.contains("removed the deploy lock of alice@laptop pid 7"), "{unlocked}");

    // Unlocked, the rollback gets as far as the (empty) history, and gives the lock back.
    let no_history = fails(&mut xtask(&["rollback", "--env", env.path()]));
    assert!(text(&no_history.stderr).contains("no earlier deployment"), "{}", text(&no_history.stderr));
    assert!(succeeds(&mut xtask(&["unlock", "--env", env.path()])).contains("is not locked"));

    // An expired lock (a deploy that was killed) is taken over.
    hold_lock(&env, now - 1);
    let taken_over = fails(&mut xtask(&["rollback", "--env", env.path()]));
    assert!(
        text(&taken_over.stderr).contains("taking over the expired deploy lock of alice"),
        "{}",
        text(&taken_over.stderr)
    );
    assert!(succeeds(&mut xtask(&["unlock", "--env", env.path()])).contains("is not locked"));
}

#[test]
fn deploy_pushes_to_ecr_switches_through_ssm_and_then_has_nothing_to_do() {
    let host = require_engine!();
    let env = TestEnv::new("p", "");
    let registry = required("NETSEC_TEST_ECR_REGISTRY");
    let deploy = || {
        let mut command = xtask(&["deploy", "--env", env.path()]);
        command.env("DOCKER_HOST", &host).env("NETSEC_ECR_REGISTRY", &registry).current_dir(root());
        command
    };
    let first_run = succeed(&mut deploy());
    let (first, first_log) = (text(&first_run.stdout), text(&first_run.stderr));
    let pushed = first.lines().find(|l| l.starts_with("pushed ")).unwrap_or_else(|| panic!("{first}"));
    let digest = pushed.rsplit(' ').next().unwrap().to_string();
    assert!(digest.starts_with("sha256:"), "{pushed}");
    let tag = pushed.split(' ').nth(1).unwrap().rsplit(':').next().unwrap().to_string();
    assert_eq!(registry_digest(&registry, &format!("netsec-{}", env.name), &tag), digest, "the push was real");

    runtime().block_on(async {
        let config = sdk().await;
        let ssm = aws_sdk_ssm::Client::new(&config);
        let instance = live_instances(&aws_sdk_ec2::Client::new(&config), &env).await.remove(0);
        let id = instance.instance_id().unwrap();
        let commands = ssm.list_commands().instance_id(id).send().await.unwrap();
        let ours: Vec<_> = commands.commands().iter().filter(|c| c.instance_ids().contains(&id.to_string())).collect();
        let sent: Vec<_> = ours.iter().map(|c| (c.comment(), c.requested_date_time().map(|t| t.secs()))).collect();
        assert_eq!(ours.len(), 1, "one SSM command for one deploy: {sent:?}\n{first_log}");
        assert_eq!(ours[0].instance_ids(), [id.to_string()], "the command goes to this runner only");
        assert_eq!(ours[0].document_name(), Some("AWS-RunShellScript"));
        let script = ours[0].parameters().unwrap()["commands"].join("\n");
        let reference = format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/netsec-{}@{digest}", env.name);
        assert!(script.contains(&format!("'deploy' '{reference}'")), "pull by digest: {script}");
        assert!(script.contains("NETSEC_ECR_REGION=us-east-1"), "the host logs in with its own role");
        assert!(!script.contains("auth-token"), "no registry credentials in the command");
        let history = ssm.get_parameter().name(format!("/netsec/{}/deploy/history", env.name)).send().await.unwrap();
        assert!(history.parameter().unwrap().value().unwrap().contains(&reference));
        let lock = ssm.get_parameter().name(format!("/netsec/{}/deploy/lock", env.name)).send().await;
        assert!(lock.is_err(), "the lock is released");
    });

    let second = succeeds(&mut deploy());
    assert!(second.contains("nothing to deploy") && second.contains("(0 mutating calls)"), "{second}");
    // The same sources built with no layer cache (as on a fresh CI machine, or beside other
    // builds) have new layer ids but the same inputs: still nothing to deploy.
    let cold = format!("netsec-cold-{}", env.name);
    let mut rebuild = xtask(&["image", "--tag", &cold, "--no-cache"]);
    succeeds(rebuild.env("DOCKER_HOST", &host).current_dir(root()));
    let mut deploy_cold = deploy();
    deploy_cold.args(["--image", &cold]);
    let third = succeeds(&mut deploy_cold);
    assert!(third.contains("nothing to deploy") && third.contains("(0 mutating calls)"), "{third}");

    let status = succeeds(&mut xtask(&["status", "--env", env.path()]));
    assert!(status.contains("6 unchanged") && status.contains(&digest) && status.contains("runner i-"), "{status}");
    let tag = status.lines().find_map(|l| l.trim().strip_prefix("deploy ")).unwrap().split(' ').next().unwrap();
    let rolled = succeeds(&mut xtask(&["rollback", "--env", env.path(), "--to", tag]));
    assert!(rolled.contains("rolled ") && rolled.contains(&digest), "{rolled}");
    runtime().block_on(async {
        let config = sdk().await;
        let ssm = aws_sdk_ssm::Client::new(&config);
        // This runner's commands only: other tests' runners get `status` commands too.
        let instance = live_instances(&aws_sdk_ec2::Client::new(&config), &env).await.remove(0);
        let commands = ssm.list_commands().instance_id(instance.instance_id().unwrap()).send().await.unwrap();
        let scripts = commands.commands().iter().filter_map(|c| c.parameters()?.get("commands").map(|l| l.join("\n")));
        assert!(scripts.clone().any(|s| s.contains("'rollback' '123456789012.dkr.ecr.")), "rollback by digest");
        assert!(scripts.clone().any(|s| s.ends_with("'status'")), "status asks the host");
    });

    succeeds(&mut xtask(&["destroy", "--env", env.path(), "--yes"]));
    runtime().block_on(async {
        let ssm = aws_sdk_ssm::Client::new(&sdk().await);
        let left =
            ssm.get_parameters_by_path().path(format!("/netsec/{}", env.name)).recursive(true).send().await.unwrap();
        assert!(left.parameters().is_empty(), "the deploy history and lock parameters go too");
    });
}

/// The manifest digest the registry holds for `repository:tag`.
fn registry_digest(registry: &str, repository: &str, tag: &str) -> String {
    let answer = manifest_request(registry, repository, tag, reqwest::Method::HEAD);
    answer.headers()["docker-content-digest"].to_str().unwrap().to_string()
}

/// The manifest the registry holds for `repository:tag`, and its media type.
fn registry_manifest(registry: &str, repository: &str, tag: &str) -> (String, String) {
    let answer = manifest_request(registry, repository, tag, reqwest::Method::GET);
    let media_type = answer.headers()["content-type"].to_str().unwrap().to_string();
    (answer.text().unwrap(), media_type)
}

/// A manifest request (registry API v2, basic auth as ECR's token gives it).
fn manifest_request(
    registry: &str,
    repository: &str,
    tag: &str,
    method: reqwest::Method,
) -> reqwest::blocking::Response {
    install_ring();
    let accept = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
                  application/vnd.docker.distribution.manifest.v2+json";
    let answer = reqwest::blocking::Client::new()
        .request(method, format!("http://{registry}/v2/{repository}/manifests/{tag}"))
        .basic_auth("AWS", Some("123456789012-auth-token"))
        .header("Accept", accept)
        .send()
        .unwrap();
    assert!(answer.status().is_success(), "{}", answer.status());
    answer
}

/// deploy.yml's two jobs: `image --push` to the environment's repository (an ECR token from
/// the default chain, one immutable tag, the reference written to GITHUB_OUTPUT), then
/// `deploy --image` with that reference, which neither builds nor pushes.
#[test]
fn an_image_pushed_by_the_image_job_deploys_by_digest() {
    let host = require_engine!();
    let env = TestEnv::new("i", "");
    let registry = required("NETSEC_TEST_ECR_REGISTRY");
    succeeds(&mut xtask(&["apply", "--env", env.path()]));
    let repository = format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/netsec-{}", env.name);
    let outputs = tempfile::NamedTempFile::new().unwrap();
    let mut push = xtask(&["image", "--push", &repository, "--immutable-tags"]);
    push.env("DOCKER_HOST", &host)
        .env("NETSEC_ECR_REGISTRY", &registry)
        .env("GITHUB_OUTPUT", outputs.path())
        .env("AWS_REGION", "us-east-1")
        .env_remove("NETSEC_REGISTRY_USER")
        .env_remove("NETSEC_REGISTRY_PASSWORD")
        .env_remove("NETSEC_REGISTRY_TOKEN")
        .current_dir(root());
    let pushed = succeeds(&mut push);
    assert_eq!(pushed.lines().filter(|l| l.starts_with("pushed ")).count(), 1, "one tag, no latest: {pushed}");
    let written = std::fs::read_to_string(outputs.path()).unwrap();
    let reference = written.trim().strip_prefix("image=").unwrap_or_else(|| panic!("{written}")).to_string();
    assert!(reference.starts_with(&format!("{repository}@sha256:")), "{reference}");

    // The stand-in registry and moto's ECR API are two servers: tell ECR what the registry holds.
    let tag = pushed.lines().find_map(|l| l.strip_prefix("pushed ")).unwrap().split(' ').next().unwrap();
    let tag = tag.rsplit(':').next().unwrap();
    let (manifest, media_type) = registry_manifest(&registry, &format!("netsec-{}", env.name), tag);
    runtime().block_on(async {
        let ecr = aws_sdk_ecr::Client::new(&sdk().await);
        let put = ecr.put_image().repository_name(format!("netsec-{}", env.name)).image_tag(tag);
        let put = put.image_manifest(manifest).image_manifest_media_type(media_type);
        put.image_digest(reference.split('@').nth(1).unwrap()).send().await.unwrap();
    });

    let deploy = |image: &str| {
        let mut command = xtask(&["deploy", "--env", env.path(), "--image", image]);
        command.env_remove("DOCKER_HOST").env("NETSEC_ECR_REGISTRY", &registry);
        command
    };
    let deployed = succeeds(&mut deploy(&reference));
    assert!(!deployed.contains("pushed "), "nothing is pushed again: {deployed}");
    assert!(deployed.contains(&format!("deployed {reference}")), "{deployed}");
    let again = succeeds(&mut deploy(&reference));
    assert!(again.contains("nothing to deploy"), "{again}");

    // The image job again for the same sources, from a cold layer cache as on a fresh runner:
    // its tag names the same inputs, so nothing is pushed and the reference is the same.
    std::fs::write(outputs.path(), "").unwrap();
    let repeated = succeeds(push.arg("--no-cache"));
    assert!(!repeated.contains("pushed "), "the registry has these inputs: {repeated}");
    assert!(repeated.contains(&format!("unchanged {registry}/netsec-{}:{tag} digest", env.name)), "{repeated}");
    let written = std::fs::read_to_string(outputs.path()).unwrap();
    assert_eq!(written.trim().strip_prefix("image="), Some(reference.as_str()));
    let third = succeeds(&mut deploy(&reference));
    assert!(third.contains("nothing to deploy"), "{third}");

    let digest = reference.split('@').nth(1).unwrap();
    let elsewhere = fails(&mut deploy(&format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/other@{digest}")));
    assert!(text(&elsewhere.stderr).contains("is not in the environment's repository"), "{}", text(&elsewhere.stderr));
    let missing = format!("{repository}@sha256:{}", "0".repeat(64));
    let unknown = fails(&mut deploy(&missing));
    assert!(text(&unknown.stderr).contains("push it first"), "{}", text(&unknown.stderr));
    succeeds(&mut xtask(&["destroy", "--env", env.path(), "--yes"]));
}
