//! Command-line tools the tests run, installed into `target/tools` with their registry's own
//! client, at pinned versions, only when missing.

use std::path::PathBuf;
use std::process::Command;

use crate::{project_root, run_command};

/// action-validator (mpalmer/action-validator, its WebAssembly build on npm): checks workflow
/// files against GitHub's schema. The CLI loads the core package, pinned alongside it.
const ACTION_VALIDATOR: [(&str, &str); 2] = [("@action-validator/cli", "0.6.0"), ("@action-validator/core", "0.6.0")];

/// The `action-validator` program, installed with npm when missing or of another version.
pub fn action_validator() -> anyhow::Result<PathBuf> {
    let prefix = project_root().join("target/tools");
    let program = prefix.join("node_modules/.bin/action-validator");
    let installed = |package: &str| {
        let manifest = prefix.join("node_modules").join(package).join("package.json");
        let text = std::fs::read_to_string(manifest).ok()?;
        let value: serde_json::Value = serde_json::from_str(&text).ok()?;
        value["version"].as_str().map(str::to_string)
    };
    if program.is_file()
        && ACTION_VALIDATOR.iter().all(|(package, version)| installed(package).as_deref() == Some(*version))
    {
        return Ok(program);
    }
    eprintln!("xtask: installing action-validator into {}", prefix.display());
    std::fs::create_dir_all(&prefix)?;
    let mut npm = Command::new("npm");
    npm.arg("install").arg("--prefix").arg(&prefix);
    npm.args(["--no-audit", "--no-fund", "--ignore-scripts", "--save-exact", "--loglevel=error"]);
    npm.args(ACTION_VALIDATOR.iter().map(|(package, version)| format!("{package}@{version}")));
    run_command(&mut npm)
        .map_err(|e| anyhow::anyhow!("{e:#} (npm comes with Debian's npm package: bash .ci/install-packages)"))?;
    anyhow::ensure!(program.is_file(), "npm installed action-validator but {} is missing", program.display());
    Ok(program)
}
