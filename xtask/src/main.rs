//! Project automation, run as `cargo xtask <command>` (see .cargo/config.toml).
//!
//! - `test`: the one test command: Python oracles, local services, `cargo test --workspace`.
//! - `bench`: benchmarks printed side by side with the reference figures they must beat.
//! - `image`: the service image, built (and pushed, and run) through the Docker Engine API.
//! - `plan`, `apply`, `destroy`, `deploy`, `status`, `logs`, `rollback`, `unlock`: the AWS
//!   environment of `infra/<env>.yaml` and the service on its runner.
//! - `workflows`: the GitHub Actions workflows, generated from `infra/<env>.yaml`.

mod aws;
mod bench;
mod bootstrap;
mod deploy;
mod image;
mod python;
mod services;
mod test;
mod tools;
mod workflows;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "netsec project automation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every test: creates the pinned Python environment, starts the local services the
    /// tests need, runs `cargo test --workspace`, stops everything.
    Test {
        /// Extra arguments for `cargo test` (after `--`), e.g. a test name filter.
        #[arg(last = true)]
        cargo_args: Vec<String>,
    },
    /// Benchmarks with the reference figures they must beat.
    Bench {
        #[command(subcommand)]
        suite: bench::Suite,
    },
    /// Build the service image (the top-level Dockerfile) through the Docker Engine API; tag it
    /// with the git sha and `latest`; optionally push it and run it.
    Image(image::ImageArgs),
    /// Generate the GitHub Actions workflows (workflows/ and .github/workflows/) from
    /// infra/<env>.yaml; --check fails when a committed copy differs.
    Workflows(workflows::WorkflowsArgs),
    #[command(flatten)]
    Deploy(deploy::Command),
    /// Set up a repository and an environment for the workflows in one go: the OIDC provider
    /// and deploy role, the environment applied, Actions variables and sealed secrets, a
    /// runner registration token. Secret values come from the environment or a hidden prompt.
    Bootstrap(bootstrap::BootstrapArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Test { cargo_args } => test::run(&cargo_args),
        Command::Bench { suite } => bench::run(suite),
        Command::Image(args) => image::run(args),
        Command::Workflows(args) => workflows::run(args),
        Command::Deploy(command) => deploy::run(command),
        Command::Bootstrap(args) => bootstrap::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (xtask's parent).
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask is in the workspace").to_path_buf()
}

/// The shared folder beside the repository (data set, design notes).
pub fn shared_dir() -> PathBuf {
    project_root().join("../shared")
}

/// Runs a command to completion, failing with its name when it fails.
pub fn run_command(command: &mut std::process::Command) -> anyhow::Result<()> {
    // Named by program and arguments only: a Command's Debug form lists the environment it
    // was given, and that holds the services' credentials.
    let shown = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let status = command.status().map_err(|e| anyhow::anyhow!("cannot start {shown}: {e}"))?;
    anyhow::ensure!(status.success(), "{shown} failed ({status})");
    Ok(())
}

/// The status of a GET, with a bare HTTP/1.1 exchange (xtask needs no HTTP client for this).
pub fn http_status(addr: std::net::SocketAddr, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.split_whitespace().nth(1)?.parse().ok()
}
