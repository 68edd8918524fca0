//! The build context: the files the Dockerfile copies, and nothing else. The binary and the CA
//! certificates are staged in target/image/ (so that a plain `docker build .` finds them too);
//! the context is the Dockerfile plus every source its COPY lines name, packed as a tar in
//! memory, and its digest names the image's inputs.
//!
//! Why the inputs and not the engine's layer ids say whether two images are the same: COPY
//! stamps the folders it creates with the time of the build, so a layer built afresh (a cold
//! cache, a pruned one, or two builds of one context at once) gets a new id from the same files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::project_root;

/// Where the generated inputs of the image are staged, relative to the repository root.
pub const STAGE: &str = "target/image";
/// The host's CA bundle (Debian's `ca-certificates`), which the image carries.
pub const CA_CERTIFICATES: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Copies the binary and the CA certificates into target/image/; returns that folder.
pub fn stage(binary: &Path) -> anyhow::Result<PathBuf> {
    let stage = project_root().join(STAGE);
    std::fs::create_dir_all(&stage)?;
    anyhow::ensure!(
        Path::new(CA_CERTIFICATES).is_file(),
        "{CA_CERTIFICATES} is missing: install Debian's CA certificates (apt-get install ca-certificates)"
    );
    copy(Path::new(CA_CERTIFICATES), &stage.join("ca-certificates.crt"))?;
    copy(binary, &stage.join("netsec"))?;
    Ok(stage)
}

/// Copies through a temporary name of this process's own, so that a staged file is absent or
/// whole even while other builds stage the same file.
fn copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    let partial = to.with_extension(format!("partial-{}", std::process::id()));
    std::fs::copy(from, &partial)
        .map_err(|e| anyhow::anyhow!("cannot copy {} to {}: {e}", from.display(), partial.display()))?;
    std::fs::rename(&partial, to)?;
    Ok(())
}

/// The label that carries an image's inputs digest, set from the build argument `INPUTS`.
pub const INPUTS_LABEL: &str = "netsec.inputs";

/// What the engine is sent.
pub struct Context {
    /// The Dockerfile and every file its COPY lines name, as a tar.
    pub tar: Vec<u8>,
    /// `sha256:` and the tar's sha256: a function of those files' contents alone, so the same
    /// sources give the same inputs on any machine, whatever the engine's cache holds. The
    /// build arguments are left out: they only feed labels.
    pub inputs: String,
}

/// Packs the context from the files as they are now.
pub fn pack() -> anyhow::Result<Context> {
    use sha2::{Digest, Sha256};
    let tar = pack_tar(&project_root())?;
    let inputs = format!("sha256:{}", hex::encode(Sha256::digest(&tar)));
    Ok(Context { tar, inputs })
}

/// The Dockerfile and every file its COPY lines name, as a tar in memory: names sorted, and
/// a fixed time, mode and owner, so that the bytes depend on the files' contents alone.
fn pack_tar(root: &Path) -> anyhow::Result<Vec<u8>> {
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile"))?;
    let mut files = vec![PathBuf::from("Dockerfile")];
    for source in copy_sources(&dockerfile) {
        files.extend(expand(root, Path::new(&source))?);
    }
    let mut tar = tar::Builder::new(Vec::new());
    for file in &files {
        let data = std::fs::read(root.join(file)).map_err(|e| {
            anyhow::anyhow!(
                "the Dockerfile copies {} but it cannot be read ({e}); run `cargo xtask image`",
                file.display()
            )
        })?;
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(if file.ends_with("netsec") { 0o755 } else { 0o644 });
        // A fixed time: the engine's build cache then depends on the contents alone.
        header.set_mtime(1);
        tar.append_data(&mut header, file, data.as_slice())?;
    }
    Ok(tar.into_inner()?)
}

/// A file, or every file under a folder, relative to `root`.
fn expand(root: &Path, path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if !root.join(path).is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(root.join(path))? {
        files.extend(expand(root, &path.join(entry?.file_name()))?);
    }
    files.sort();
    Ok(files)
}

/// The sources of the Dockerfile's COPY instructions (flags and the destination left out).
fn copy_sources(dockerfile: &str) -> Vec<String> {
    let joined = dockerfile.replace("\\\n", " ");
    let mut sources = Vec::new();
    for line in joined.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first().is_some_and(|w| w.eq_ignore_ascii_case("COPY")) && words.len() > 2 {
            let args = words[1..words.len() - 1].iter().filter(|w| !w.starts_with("--"));
            sources.extend(args.map(|w| w.trim_end_matches('/').to_string()));
        }
    }
    sources
}

/// The Dockerfile's ARGs, all behind labels: the OCI ones and the inputs digest.
pub fn build_args(binary: &Path, context: &Context) -> anyhow::Result<HashMap<String, String>> {
    let created = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339)?;
    Ok(HashMap::from([
        ("INPUTS".into(), context.inputs.clone()),
        ("SOURCE".into(), source_url()),
        ("REVISION".into(), git_revision()?.full),
        ("VERSION".into(), super::binary::version(binary)?),
        ("CREATED".into(), created),
    ]))
}

pub struct Revision {
    /// The commit's full sha, with `-dirty` when the tree has uncommitted changes.
    pub full: String,
    /// Its first 12 digits, with `-dirty` likewise: the image's tag.
    pub short: String,
}

pub fn git_revision() -> anyhow::Result<Revision> {
    let sha = git(&["rev-parse", "HEAD"])?;
    let dirty = if git(&["status", "--porcelain"])?.is_empty() { "" } else { "-dirty" };
    Ok(Revision { short: format!("{}{dirty}", &sha[..12.min(sha.len())]), full: format!("{sha}{dirty}") })
}

fn git(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("git").current_dir(project_root()).args(args).output()?;
    anyhow::ensure!(
        output.status.success(),
        "git {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// The `origin` remote without any credentials in it, or `unknown`.
fn source_url() -> String {
    let url = git(&["remote", "get-url", "origin"]).unwrap_or_default();
    let url = match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('/') {
            Some((authority, path)) => {
                format!("{scheme}://{}/{path}", authority.rsplit_once('@').map_or(authority, |(_, host)| host))
            }
            None => url.clone(),
        },
        None => url,
    };
    if url.is_empty() {
        "unknown".into()
    } else {
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_sources_leave_out_flags_and_destinations() {
        let dockerfile = "FROM scratch\nCOPY a b /etc/\ncopy --chown=1:1 c/ \\\n  /d\nCMD [\"x\"]\n";
        assert_eq!(copy_sources(dockerfile), ["a", "b", "c"]);
    }

    #[test]
    fn the_tar_depends_on_the_files_contents_alone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\nCOPY a b/ /x/\n").unwrap();
        std::fs::create_dir(dir.path().join("b")).unwrap();
        for (name, text) in [("a", "one"), ("b/d", "two"), ("b/c", "three")] {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let first = pack_tar(dir.path()).unwrap();
        // Rewritten with the same bytes (new times), and a folder listed in another order.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::remove_file(dir.path().join("b/d")).unwrap();
        std::fs::write(dir.path().join("b/d"), "two").unwrap();
        std::fs::write(dir.path().join("a"), "one").unwrap();
        assert_eq!(pack_tar(dir.path()).unwrap(), first);
        std::fs::write(dir.path().join("b/c"), "three!").unwrap();
        assert_ne!(pack_tar(dir.path()).unwrap(), first, "a changed file changes the inputs");
    }

    /// The build arguments change only labels (so the inputs digest can leave them out), and
    /// INPUTS is the label the deploy reads.
    #[test]
    fn every_build_argument_only_feeds_a_label() {
        let dockerfile = std::fs::read_to_string(project_root().join("Dockerfile")).unwrap();
        let joined = dockerfile.replace("\\\n", " ");
        let args: Vec<&str> = joined
            .lines()
            .filter_map(|l| l.strip_prefix("ARG "))
            .map(|a| a.split('=').next().unwrap().trim())
            .collect();
        assert!(args.contains(&"INPUTS"), "{args:?}");
        for line in joined.lines().filter(|l| !l.starts_with("ARG ") && !l.starts_with('#')) {
            for arg in &args {
                let used = line.contains(&format!("${{{arg}}}")) || line.contains(&format!("${arg}"));
                assert!(!used || line.starts_with("LABEL "), "ARG {arg} is used outside a label: {line}");
            }
        }
        assert!(joined.contains(&format!("{INPUTS_LABEL}=\"${{INPUTS}}\"")), "the inputs label is set from INPUTS");
    }

    #[test]
    fn the_project_dockerfile_names_files_that_exist_or_are_staged() {
        let dockerfile = std::fs::read_to_string(project_root().join("Dockerfile")).unwrap();
        let sources = copy_sources(&dockerfile);
        assert!(sources.iter().any(|s| s == "target/image/netsec"), "{sources:?}");
        for source in sources.iter().filter(|s| !s.starts_with(STAGE)) {
            assert!(project_root().join(source).exists(), "the Dockerfile copies {source}, which is missing");
        }
    }
}
