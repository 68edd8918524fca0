//! `train.yml`: weekly (or by hand), on the environment's own runner, the image the host serves
//! runs its pipeline on MongoDB's data; the evaluation gate pushes the model to the S3 store
//! only if it is accepted, and the serving container polls the store and reloads it.

use super::model::{map, Concurrency, Cron, Empty, Job, On, Ordered, RunsOn, Step, Workflow};
use crate::deploy::environment::Environment;

/// What the container gets, by name only (`-e NAME`: values come from the step's environment,
/// never from arguments).
const PASSED: [&str; 6] = [
    "MONGODB_URI",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "NETSEC_TRAIN_STORE",
    "AWS_REGION",
];

/// The header's second line.
pub const SUMMARY: &str =
    "The served image's pipeline on MongoDB's data, on the environment's runner: weekly and by hand.";

pub fn workflow(environment: &Environment) -> Workflow {
    let env = &environment.name;
    let passed: String = PASSED.iter().map(|name| format!(" \\\n  -e {name}")).collect();
    // Host network: IMDSv2's hop limit of 1 keeps a bridged container from the instance role,
    // which reads and writes the bucket. /artifacts is scratch space: the S3 store keeps runs.
    // docker's own message (no such container, no access to the engine) stays in the log.
    let script = format!(
        "set -euo pipefail\n\
         if ! image=$(docker container inspect --format '{{{{.Image}}}}' netsec-live); then\n\
         \x20 echo \"::error::no live netsec container on this runner: deploy first: cargo xtask deploy --env {env}\" >&2\n\
         \x20 exit 1\n\
         fi\n\
         echo \"training with $image\"\n\
         docker run --rm --network host \\\n\
         \x20 --mount type=tmpfs,destination=/artifacts,tmpfs-mode=1777{passed} \\\n\
         \x20 \"$image\" pipeline --source mongodb\n"
    );
    let store = format!("s3://${{{{ vars.NETSEC_BUCKET }}}}/{}", environment.bucket.models_prefix.trim_matches('/'));
    let secret = |name: &str| format!("${{{{ secrets.{name} }}}}");
    let step_env = Ordered::new()
        .with("MONGODB_URI", secret("MONGODB_URI"))
        .with("MLFLOW_TRACKING_URI", secret("MLFLOW_TRACKING_URI"))
        .with("MLFLOW_TRACKING_USERNAME", secret("MLFLOW_TRACKING_USERNAME"))
        .with("MLFLOW_TRACKING_PASSWORD", secret("MLFLOW_TRACKING_PASSWORD"))
        .with("NETSEC_TRAIN_STORE", store)
        .with("AWS_REGION", "${{ vars.NETSEC_AWS_REGION }}");
    // No checkout, no toolchain: everything the job runs is in the image the host serves.
    let train = Job::new(
        &format!("Train on {env}'s runner"),
        RunsOn::Labels(environment.runner_labels()),
        120,
        vec![Step::run("Pipeline in the served image", &script).env(step_env)],
    );
    Workflow {
        name: format!("Train {env}"),
        on: On {
            workflow_dispatch: Some(Empty {}),
            schedule: vec![Cron { cron: "17 3 * * 1".into() }],
            ..On::default()
        },
        permissions: map([("contents", "read")]),
        concurrency: Concurrency { group: format!("train-{env}"), cancel_in_progress: false },
        env: Ordered::new(),
        jobs: Ordered::new().with("train", train),
    }
}
