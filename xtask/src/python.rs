//! The project-local Python environment (target/netsec-py) with the pinned oracle tools.
//! Recreated only when xtask/python-requirements.txt changes.

use std::path::PathBuf;
use std::process::Command;

use crate::{project_root, run_command};

pub struct PythonEnv {
    pub python: PathBuf,
}

impl PythonEnv {
    /// A program the environment installed (e.g. a service's launcher).
    pub fn bin(&self, name: &str) -> PathBuf {
        self.python.with_file_name(name)
    }
}

/// The environment, created or updated as needed.
pub fn ensure() -> anyhow::Result<PythonEnv> {
    let root = project_root();
    let venv = root.join("target/netsec-py");
    let requirements_path = root.join("xtask/python-requirements.txt");
    let requirements = std::fs::read_to_string(&requirements_path)?;
    let stamp = venv.join("netsec-requirements.txt");
    let python = venv.join("bin/python");
    if python.is_file() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&requirements) {
        return Ok(PythonEnv { python });
    }
    eprintln!("xtask: creating the Python environment {} (pinned oracle tools)", venv.display());
    let _ = std::fs::remove_dir_all(&venv);
    run_command(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    let pip = |args: &[&str]| {
        run_command(
            Command::new(&python).args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"]).args(args),
        )
    };
    pip(&["-r", requirements_path.to_str().expect("a UTF-8 path")])?;
    std::fs::write(&stamp, requirements)?;
    Ok(PythonEnv { python })
}
