//! `deploy.yml`: on every push to main (or by hand), build the image and push it to the
//! environment's ECR repository, then deploy it by digest (`cargo xtask deploy`, which reaches
//! the runner through SSM Run Command). Both jobs assume the deploy role through OIDC.

use super::model::{map, Branches, Concurrency, Empty, Job, On, Ordered, Step, Workflow};
use super::steps::{aws_credentials, cargo_cache, cargo_env, checkout, hosted, permissions, toolchain};
use crate::deploy::environment::Environment;

/// The header's second line.
pub const SUMMARY: &str =
    "The image built and pushed to ECR, then deployed by digest to the runner: on pushes to main and by hand.";

pub fn workflow(environment: &Environment) -> Workflow {
    let env = &environment.name;
    let mut image = Job::new(
        "Image to ECR",
        hosted(),
        60,
        vec![
            checkout(),
            toolchain(false),
            cargo_cache("image"),
            aws_credentials(),
            // One immutable tag (the repository's tags cannot move); appends
            // `image=<repository uri>@sha256:<digest>` to $GITHUB_OUTPUT. Values reach the
            // script through the environment, never spliced into its text.
            Step::run("Build and push", "cargo xtask image --push \"$NETSEC_ECR_REPOSITORY\" --immutable-tags")
                .id("push")
                .env(map([("NETSEC_ECR_REPOSITORY", "${{ vars.NETSEC_ECR_REPOSITORY }}")])),
        ],
    );
    image.permissions = Some(permissions(true));
    image.outputs = map([("image", "${{ steps.push.outputs.image }}")]);

    let mut deploy = Job::new(
        &format!("Deploy to {env}"),
        hosted(),
        60,
        vec![
            checkout(),
            toolchain(false),
            cargo_cache("deploy"),
            aws_credentials(),
            Step::run("Deploy", &format!("cargo xtask deploy --env {env} --image \"$NETSEC_IMAGE\""))
                .env(map([("NETSEC_IMAGE", "${{ needs.image.outputs.image }}")])),
        ],
    );
    deploy.needs = vec!["image".into()];
    deploy.permissions = Some(permissions(true));
    // No `environment:` here: it would change the OIDC subject to `…:environment:<env>`, and the
    // deploy role trusts the main branch's subject only (see bootstrap/identity.rs).

    Workflow {
        name: format!("Deploy {env}"),
        on: On {
            push: Some(Branches { branches: vec!["main".into()] }),
            workflow_dispatch: Some(Empty {}),
            ..On::default()
        },
        permissions: Ordered::new(),
        // One deploy at a time, and never cancelled halfway: a newer one waits.
        concurrency: Concurrency { group: format!("deploy-{env}"), cancel_in_progress: false },
        env: cargo_env(),
        jobs: Ordered::new().with("image", image).with("deploy", deploy),
    }
}
