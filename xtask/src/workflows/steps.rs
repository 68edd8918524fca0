//! Steps and settings more than one workflow uses.

use super::model::{map, Ordered, RunsOn, Step};

/// GitHub's hosted runner image for every job that is not on the environment's own machine.
pub fn hosted() -> RunsOn {
    RunsOn::Label("ubuntu-24.04".into())
}

/// What CI's `.ci/run` sets too: no colour codes in logs, no incremental state in a one-off build.
pub fn cargo_env() -> Ordered<String> {
    map([("CARGO_TERM_COLOR", "never"), ("CARGO_INCREMENTAL", "0")])
}

pub fn checkout() -> Step {
    // The token stays out of .git/config: no job pushes.
    Step::uses("Check out", "actions/checkout", map([("persist-credentials", "false")]))
}

/// The stable toolchain through rustup (on the hosted image), with the lint components or not.
pub fn toolchain(lint: bool) -> Step {
    let components = if lint { " --component rustfmt,clippy" } else { "" };
    Step::run(
        "Rust toolchain",
        &format!("rustup toolchain install stable --profile minimal{components}\nrustup default stable\n"),
    )
}

/// Cargo's downloads and the target folder, per job (each builds different things) and lock file.
pub fn cargo_cache(job: &str) -> Step {
    let key = format!("${{{{ runner.os }}}}-cargo-{job}-");
    Step::uses(
        "Cargo cache",
        "actions/cache",
        Ordered::new()
            .with("path", "~/.cargo/registry\n~/.cargo/git\ntarget\n")
            .with("key", format!("{key}${{{{ hashFiles('**/Cargo.lock') }}}}"))
            .with("restore-keys", key),
    )
}

/// Short-lived credentials for the deploy role through GitHub's OIDC token (the job needs
/// `id-token: write`): no access key is stored anywhere.
pub fn aws_credentials() -> Step {
    Step::uses(
        "AWS credentials (OIDC)",
        "aws-actions/configure-aws-credentials",
        map([
            ("role-to-assume", "${{ vars.NETSEC_DEPLOY_ROLE_ARN }}"),
            ("aws-region", "${{ vars.NETSEC_AWS_REGION }}"),
        ]),
    )
}

/// `contents: read` and, for the jobs that assume an AWS role, `id-token: write`.
pub fn permissions(id_token: bool) -> Ordered<String> {
    let permissions = map([("contents", "read")]);
    if id_token {
        permissions.with("id-token", "write")
    } else {
        permissions
    }
}
