//! Records the git revision the binary was built from (NETSEC_GIT_REVISION wins, for builds
//! from a context without .git such as an image build).
use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=NETSEC_GIT_REVISION");
    // Where git keeps HEAD and the branches, asked of git: in a worktree `.git` is a file, and
    // a path that does not exist would make cargo rerun this script (and rebuild) every time.
    for what in ["HEAD", "refs/heads", "packed-refs"] {
        if let Some(path) = git(&["rev-parse", "--git-path", what]).filter(|p| Path::new(p).exists()) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let revision = std::env::var("NETSEC_GIT_REVISION").ok().or_else(|| git(&["rev-parse", "HEAD"]));
    println!("cargo:rustc-env=NETSEC_GIT_REVISION={}", revision.as_deref().unwrap_or("unknown"));
}

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}
