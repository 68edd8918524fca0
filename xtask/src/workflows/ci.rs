//! `ci.yml`: formatting, lints and the generated workflows on every push to main and every pull
//! request, then the README's test command with the services the harness starts.

use super::model::Step;
use super::model::{map, Branches, Concurrency, Job, On, Ordered, Workflow};
use super::steps::{cargo_cache, cargo_env, checkout, hosted, toolchain};

/// The header's second line.
pub const SUMMARY: &str =
    "Formatting, lints and the generated workflows, then every test: on pushes to main and pull requests.";

/// The README's test command (a test checks that the README still says so).
pub const TEST_COMMAND: &str = "cargo xtask test";

/// The tests read the data set beside the repository (`../shared/data/phishing.csv`), which is
/// never committed: on GitHub's runners it is downloaded from where the repository's variable
/// NETSEC_SHARED_DATA_URL says.
const SHARED_DATA: &str = r#"set -euo pipefail
data=../shared/data/phishing.csv
if [ ! -f "$data" ]; then
  if [ -z "${NETSEC_SHARED_DATA_URL:-}" ]; then
    echo "::error::the tests read $data, which is not in the repository: set the repository variable NETSEC_SHARED_DATA_URL to a URL of it"
    exit 1
  fi
  mkdir -p "$(dirname "$data")"
  curl --fail --silent --show-error --location --retry 3 --output "$data" "$NETSEC_SHARED_DATA_URL"
fi
"#;

fn shared_data() -> Step {
    Step::run("Shared data set", SHARED_DATA)
        .env(map([("NETSEC_SHARED_DATA_URL", "${{ vars.NETSEC_SHARED_DATA_URL }}")]))
}

pub fn workflow() -> Workflow {
    let lint = Job::new(
        "Format, lints, generated workflows",
        hosted(),
        45,
        vec![
            checkout(),
            toolchain(true),
            cargo_cache("lint"),
            Step::run("Format", "cargo fmt --all -- --check"),
            Step::run("Clippy", "cargo clippy --workspace --all-targets -- -D warnings"),
            Step::run("Workflows are generated", "cargo xtask workflows --check"),
        ],
    );
    let test = Job::new(
        "Tests",
        hosted(),
        90,
        vec![
            checkout(),
            toolchain(false),
            cargo_cache("test"),
            // The same list .ci/run installs: Docker engine, registry, wrk, Chromium, npm, ….
            Step::run("System packages", "sudo bash .ci/install-packages"),
            shared_data(),
            // As root: the harness starts its own dockerd. `env PATH` keeps rustup's cargo,
            // which sudo's secure_path would drop.
            Step::run("Test", &format!("sudo --preserve-env env \"PATH=$PATH\" {TEST_COMMAND}"))
                .env(map([("NETSEC_REQUIRE_DOCKER", "1")])),
        ],
    );
    Workflow {
        name: "CI".into(),
        on: On {
            push: Some(Branches { branches: vec!["main".into()] }),
            pull_request: Some(Branches::default()),
            ..On::default()
        },
        permissions: map([("contents", "read")]),
        concurrency: Concurrency { group: "ci-${{ github.ref }}".into(), cancel_in_progress: true },
        env: cargo_env(),
        jobs: Ordered::new().with("lint", lint).with("test", test),
    }
}
