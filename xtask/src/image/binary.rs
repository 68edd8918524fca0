//! The image's binary: netsec linked statically against glibc (`+crt-static`), so that it runs
//! on `FROM scratch`. The explicit `--target` keeps these artifacts apart from the normal
//! release build in a shared target folder (and RUSTFLAGS off the build scripts).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::project_root;

/// The one target there is here (there is no musl target on this machine kind).
pub const TARGET: &str = "x86_64-unknown-linux-gnu";

fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(project_root());
    command
}

/// Builds the static binary, checks it (no OpenSSL anywhere, no program interpreter) and
/// returns its path.
pub fn static_binary() -> anyhow::Result<PathBuf> {
    check_no_openssl()?;
    let mut command = cargo();
    command.args([
        "build",
        "--release",
        "--target",
        TARGET,
        "-p",
        "netsec",
        "--message-format=json-render-diagnostics",
    ]);
    command.env("CARGO_ENCODED_RUSTFLAGS", rustflags().join("\x1f")).env_remove("RUSTFLAGS");
    // Symbols and debug info would triple the image; this build is only for the image.
    command.env("CARGO_PROFILE_RELEASE_DEBUG", "0").env("CARGO_PROFILE_RELEASE_STRIP", "symbols");
    // One codegen unit per crate: a slower build, and a smaller binary (the image's target
    // is 25 MB) that is at least as fast.
    command.env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1");
    let output = command.stderr(Stdio::inherit()).output()?;
    anyhow::ensure!(output.status.success(), "building the static netsec binary failed ({})", output.status);
    let binary = executable(&String::from_utf8_lossy(&output.stdout))
        .ok_or_else(|| anyhow::anyhow!("cargo reported no netsec executable"))?;
    anyhow::ensure!(
        !has_interpreter(&std::fs::read(&binary)?)?,
        "{} is dynamically linked (it names a program interpreter)",
        binary.display()
    );
    Ok(binary)
}

/// Static linking, and the build machine's paths (the checkout's, cargo's home) replaced by
/// fixed ones: panic locations name source files, and the binary, so the image's inputs
/// digest, must be the same whichever folder the sources were built in.
fn rustflags() -> Vec<String> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")));
    let mut flags = vec!["-C".to_string(), "target-feature=+crt-static".to_string()];
    let remaps = [Some((project_root(), "/netsec")), cargo_home.map(|home| (home, "/cargo"))];
    for (from, to) in remaps.into_iter().flatten() {
        flags.push(format!("--remap-path-prefix={}={to}", from.display()));
    }
    flags
}

/// The `netsec` executable among cargo's JSON messages.
fn executable(messages: &str) -> Option<PathBuf> {
    messages.lines().filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok()).find_map(|message| {
        let is_netsec = message["reason"] == "compiler-artifact" && message["target"]["name"] == "netsec";
        is_netsec.then(|| message["executable"].as_str().map(PathBuf::from)).flatten()
    })
}

/// rustls only: no crate of the workspace may pull in OpenSSL (for the image's target).
fn check_no_openssl() -> anyhow::Result<()> {
    let output = cargo()
        .args(["tree", "--workspace", "--target", TARGET, "-e", "normal,build", "--prefix", "none", "-f", "{p}"])
        .stderr(Stdio::inherit())
        .output()?;
    anyhow::ensure!(output.status.success(), "cargo tree failed");
    let tree = String::from_utf8_lossy(&output.stdout);
    let openssl: Vec<&str> =
        tree.lines().filter(|l| l.starts_with("openssl ") || l.starts_with("openssl-sys ")).collect();
    anyhow::ensure!(openssl.is_empty(), "the workspace depends on OpenSSL ({}); use rustls", openssl.join(", "));
    Ok(())
}

/// Whether an ELF64 file has a PT_INTERP program header (i.e. needs a dynamic loader).
fn has_interpreter(elf: &[u8]) -> anyhow::Result<bool> {
    const PT_INTERP: u32 = 3;
    anyhow::ensure!(elf.len() > 64 && elf.starts_with(b"\x7fELF\x02\x01"), "not a 64-bit little-endian ELF file");
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into()?) as usize;
    let (entry_size, count) = (u16_at(0x36), u16_at(0x38));
    anyhow::ensure!(phoff + entry_size * count <= elf.len(), "truncated ELF program headers");
    Ok((0..count).any(|i| {
        let at = phoff + i * entry_size;
        u32::from_le_bytes(elf[at..at + 4].try_into().expect("4 bytes")) == PT_INTERP
    }))
}

/// The version the binary reports (`netsec 0.1.0` → `0.1.0`), for the image's label.
pub fn version(binary: &Path) -> anyhow::Result<String> {
    let output = Command::new(binary).arg("--version").output()?;
    anyhow::ensure!(output.status.success(), "{} --version failed", binary.display());
    let text = String::from_utf8_lossy(&output.stdout);
    text.split_whitespace().nth(1).map(str::to_string).ok_or_else(|| anyhow::anyhow!("unexpected --version: {text}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_executable_has_an_interpreter() {
        let this = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(has_interpreter(&this).unwrap(), "test binaries are linked dynamically");
        assert!(has_interpreter(b"#!/bin/sh\n").is_err());
    }

    #[test]
    fn the_executable_is_found_among_cargo_messages() {
        let messages = r#"{"reason":"compiler-artifact","target":{"name":"serde"},"executable":null}
{"reason":"compiler-artifact","target":{"name":"netsec"},"executable":"/t/release/netsec"}
{"reason":"build-finished","success":true}"#;
        assert_eq!(executable(messages), Some(PathBuf::from("/t/release/netsec")));
        assert_eq!(executable(""), None);
    }
}
