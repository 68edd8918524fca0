//! Records the git revision the binary was built from (NETSEC_GIT_REVISION wins, for builds
//! from a context without .git such as an image build).
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=NETSEC_GIT_REVISION");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    let revision = std::env::var("NETSEC_GIT_REVISION").ok().or_else(git_revision);
    println!("cargo:rustc-env=NETSEC_GIT_REVISION={}", revision.as_deref().unwrap_or("unknown"));
}

fn git_revision() -> Option<String> {
    let output = Command::new("git").args(["rev-parse", "HEAD"]).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}
