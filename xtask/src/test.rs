//! `cargo xtask test`: the one test command.

use std::process::Command;

use crate::{project_root, python, run_command, services, tools};

pub fn run(cargo_args: &[String]) -> anyhow::Result<()> {
    let python = python::ensure()?;
    let action_validator = tools::action_validator()?;
    let services = services::start_all(&python)?;
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(project_root()).args(["test", "--workspace", "--no-fail-fast"]).args(cargo_args);
    command.env("NETSEC_PYTHON", &python.python);
    command.env("NETSEC_ACTION_VALIDATOR", action_validator);
    for service in &services {
        command.envs(service.env.iter().map(|(k, v)| (k, v)));
    }
    let result = run_command(&mut command);
    drop(services);
    result
}
