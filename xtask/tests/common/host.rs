//! A Docker host for the tests that run the on-host update script (host_update.rs, and the
//! fleet's instances in rollout.rs): the harness's engine, a docker CLI configuration logged in
//! to its registry, the image `cargo xtask image` builds and images derived from it; and wrk
//! sending requests throughout an update.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};

use super::*;

/// A port free when picked and never handed out twice by this test binary: once a listener
/// is closed, bind(0) may return its port again, and two services on one port would share it
/// (the service listens with SO_REUSEPORT).
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if GIVEN.lock().unwrap().insert(port) {
            return port;
        }
    }
}

/// The engine and registry of the harness, and a docker CLI configuration logged in to it.
pub struct Host {
    pub engine: String,
    pub registry: String,
    pub config: tempfile::TempDir,
    /// The image `cargo xtask image` built (`name:<sha>`).
    pub image: String,
}

impl Host {
    /// The docker CLI against the harness's engine, with the logged-in configuration.
    pub fn docker(&self) -> Command {
        let mut command = Command::new("docker");
        command.env("DOCKER_HOST", &self.engine).env("DOCKER_CONFIG", self.config.path());
        command.env("DOCKER_BUILDKIT", "0");
        command
    }

    /// Builds `FROM image` plus `lines`, pushes it to the registry as `repository:tag`, and
    /// returns its reference by digest.
    pub fn derived(&self, repository: &str, tag: &str, lines: &str) -> String {
        let name = format!("{}/{repository}:{tag}", self.registry);
        self.build(&name, lines);
        succeed(self.docker().args(["push", "-q", &name]));
        let digests =
            succeed(self.docker().args(["image", "inspect", "-f", "{{range .RepoDigests}}{{.}} {{end}}", &name]));
        let prefix = format!("{}/{repository}@sha256:", self.registry);
        let reference = text(&digests.stdout).split_whitespace().find(|d| d.starts_with(&prefix)).map(String::from);
        reference.unwrap_or_else(|| panic!("no digest of {name} in {}", text(&digests.stdout)))
    }

    /// Builds `FROM image` plus `lines` as the local image `name`.
    pub fn build(&self, name: &str, lines: &str) {
        let mut build = self.docker();
        build.args(["build", "-q", "-t", name, "-"]).stdin(Stdio::piped()).stdout(Stdio::piped());
        build.stderr(Stdio::piped());
        let mut child = build.spawn().unwrap();
        let dockerfile = format!("FROM {}\n{lines}\n", self.image);
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), dockerfile.as_bytes()).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "docker build failed:\n{}", text(&output.stderr));
    }

    /// Logs the configuration in to `registry` (the password through standard input, as on the
    /// real host).
    pub fn login(&self, registry: &str, user: &str, password: &str) {
        let mut login = self.docker();
        login.args(["login", "--username", user, "--password-stdin", registry]);
        let mut child = login.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), password.as_bytes()).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "docker login to {registry} failed:\n{}", text(&output.stderr));
    }
}

pub fn host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| {
        let engine = required("NETSEC_TEST_DOCKER_HOST");
        let registry = required("NETSEC_TEST_REGISTRY");
        let repository = format!("netsec-hosttest-{}", std::process::id());
        let mut build = Command::new(env!("CARGO_BIN_EXE_xtask"));
        build.current_dir(root()).args(["image", "--tag", &repository]).env("DOCKER_HOST", &engine);
        let stdout = text(&succeed(&mut build).stdout);
        let image = stdout.lines().find_map(|l| l.strip_prefix("tagged ")).expect("a `tagged` line").to_string();
        let host = Host { engine, registry, config: tempfile::tempdir().unwrap(), image };
        host.login(&host.registry, &required("NETSEC_TEST_REGISTRY_USER"), &required("NETSEC_TEST_REGISTRY_PASSWORD"));
        host
    })
}

/// wrk posting a one-row CSV to /predict (as `cargo xtask bench serve` does) until
/// `stop_wrk`, so that the load lasts as long as the work however slow the machine is (10
/// minutes at most). A request may take 10 s before it counts as failed.
pub fn start_wrk(dir: &Path, url: &str) -> Child {
    let csv = shared_rows(1);
    let body = dir.join("one.csv");
    std::fs::write(&body, csv).unwrap();
    let script = dir.join("one.lua");
    let lua = format!(
        "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"text/csv\"\nwrk.headers[\"Accept\"] = \"text/csv\"\n\
         local f = assert(io.open({:?}, \"rb\"))\nwrk.body = f:read(\"*a\")\nf:close()\n",
        body.display().to_string()
    );
    std::fs::write(&script, lua).unwrap();
    Command::new("wrk")
        .args(["-t1", "-c8", "-d600s", "--timeout", "10s", "--latency", "-s"])
        .arg(&script)
        .arg(format!("{url}/predict"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wrk (apt-get install wrk; .ci/run installs it)")
}

/// Stops wrk as Ctrl-C does (it then prints its report) and returns what it printed.
pub fn stop_wrk(wrk: Child) -> Output {
    succeed(Command::new("kill").args(["-INT", &wrk.id().to_string()]));
    wrk.wait_with_output().unwrap()
}

/// The number in wrk's `N requests in …` line.
pub fn wrk_requests(report: &str) -> u64 {
    let line = report.lines().find(|l| l.contains(" requests in ")).unwrap_or_else(|| panic!("{report}"));
    line.split_whitespace().next().unwrap().parse().unwrap()
}
