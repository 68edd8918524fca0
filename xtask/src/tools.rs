//! Command-line tools the tests run, installed into `target/tools` with their registry's own
//! client, at pinned versions, only when missing.

use std::path::PathBuf;
use std::process::Command;

use crate::{project_root, run_command};

/// action-validator (mpalmer/action-validator, its WebAssembly build on npm): checks workflow
/// files against GitHub's schema. The CLI loads the core package, pinned alongside it.
const ACTION_VALIDATOR: [(&str, &str); 2] = [("@action-validator/cli", "0.6.0"), ("@action-validator/core", "0.6.0")];

/// Azurite, the Azure Storage emulator. 3.35 is the last release that runs on Debian 12's
/// Node.js 20 (3.36 wants Node 21 or later).
const AZURITE: [(&str, &str); 1] = [("azurite", "3.35.0")];

/// The `action-validator` program.
pub fn action_validator() -> anyhow::Result<PathBuf> {
    npm_tool("action-validator", &ACTION_VALIDATOR)
}

/// The `azurite-blob` program (the emulator's blob service alone).
pub fn azurite_blob() -> anyhow::Result<PathBuf> {
    npm_tool("azurite-blob", &AZURITE)
}

/// The program `bin` of the npm packages `packages` (name, version), installed together
/// with npm when missing or of another version. Each tool's packages get a prefix of their
/// own, so that installing one never changes another's.
fn npm_tool(bin: &str, packages: &[(&str, &str)]) -> anyhow::Result<PathBuf> {
    let prefix = project_root().join("target/tools").join(packages[0].0.trim_start_matches('@').replace('/', "-"));
    let program = prefix.join("node_modules/.bin").join(bin);
    let installed = |package: &str| {
        let manifest = prefix.join("node_modules").join(package).join("package.json");
        let text = std::fs::read_to_string(manifest).ok()?;
        let value: serde_json::Value = serde_json::from_str(&text).ok()?;
        value["version"].as_str().map(str::to_string)
    };
    if program.is_file() && packages.iter().all(|(package, version)| installed(package).as_deref() == Some(*version)) {
        return Ok(program);
    }
    eprintln!("xtask: installing {bin} into {}", prefix.display());
    std::fs::create_dir_all(&prefix)?;
    let mut npm = Command::new("npm");
    npm.arg("install").arg("--prefix").arg(&prefix);
    npm.args(["--no-audit", "--no-fund", "--ignore-scripts", "--save-exact", "--loglevel=error"]);
    npm.args(packages.iter().map(|(package, version)| format!("{package}@{version}")));
    run_command(&mut npm)
        .map_err(|e| anyhow::anyhow!("{e:#} (npm comes with Debian's npm package: bash .ci/install-packages)"))?;
    anyhow::ensure!(program.is_file(), "npm installed {bin} but {} is missing", program.display());
    Ok(program)
}
