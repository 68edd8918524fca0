//! The on-host update script (`infra/host/netsec-update.sh`) for real, with the harness's
//! Docker engine as the host and its registry as the image source: an update under load loses
//! no request, and a new image that never gets ready is removed while the old one serves on.
//! Without an engine these tests say why and are skipped — or fail, when
//! NETSEC_REQUIRE_DOCKER=1 (CI). Without the harness they fail.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

mod common;
use common::host::*;
use common::*;

/// One service on the host: its ports, container prefix and model store; its containers are
/// removed when dropped, whatever happened.
struct Service {
    host: &'static Host,
    prefix: String,
    port: u16,
    probes: [u16; 2],
    dir: tempfile::TempDir,
    models: PathBuf,
}

impl Service {
    fn new(host: &'static Host, name: &str) -> Service {
        let dir = tempfile::tempdir().unwrap();
        let models = model_store(dir.path());
        let prefix = format!("nh{}-{name}", std::process::id());
        Service { host, prefix, port: free_port(), probes: [free_port(), free_port()], dir, models }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `bash infra/host/netsec-update.sh ARGS` with this service's settings.
    fn script(&self, args: &[&str]) -> Command {
        let mut command = Command::new("bash");
        command.current_dir(root()).arg("infra/host/netsec-update.sh").args(args);
        command.env("DOCKER_HOST", &self.host.engine).env("DOCKER_CONFIG", self.host.config.path());
        command.env("NETSEC_PORT", self.port.to_string());
        command.env("NETSEC_PROBE_PORTS", format!("{} {}", self.probes[0], self.probes[1]));
        command.env("NETSEC_CONTAINER_PREFIX", &self.prefix).env("NETSEC_MODELS_DIR", &self.models);
        // Not the machine's own settings, if it has any.
        command.env("NETSEC_ENV_FILE", self.dir.path().join("no-service.env"));
        command.env("NETSEC_STOP_TIMEOUT", "20").env_remove("NETSEC_ECR_REGION").env_remove("NETSEC_EXTRA_ARGS");
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        succeed(&mut self.script(args))
    }

    /// `status`, as (role, image reference, state) per container.
    fn status(&self) -> (Vec<(String, String, String)>, String) {
        let output = self.script(&["status"]).output().unwrap();
        let stdout = text(&output.stdout);
        let mut containers = Vec::new();
        let mut ready = String::new();
        for line in stdout.lines() {
            let fields: Vec<&str> = line.split('\t').collect();
            if fields[0] == "ready" {
                ready = fields[1..].join(" ");
            } else {
                assert_eq!(fields.len(), 5, "{line:?}");
                assert_eq!(fields[1], format!("{}-{}", self.prefix, fields[0]), "{line:?}");
                containers.push((fields[0].to_string(), fields[2].to_string(), fields[4].to_string()));
            }
        }
        assert_eq!(output.status.success(), ready.starts_with("200 "), "{stdout}");
        (containers, ready)
    }

    fn ready_status(&self) -> Option<u16> {
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
        client.get(format!("http://{}/ready", self.addr())).send().ok().map(|r| r.status().as_u16())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let mut list = self.host.docker();
        let filter = format!("label=netsec.prefix={}", self.prefix);
        let Ok(output) = list.args(["ps", "-aq", "--filter", &filter]).output() else { return };
        let ids: Vec<String> = text(&output.stdout).split_whitespace().map(String::from).collect();
        if !ids.is_empty() {
            let _ = self.host.docker().args(["rm", "-f"]).args(&ids).output();
        }
    }
}

fn last_line(output: &Output) -> String {
    text(&output.stdout).lines().last().unwrap_or_default().to_string()
}

#[test]
fn an_update_and_a_rollback_under_load_lose_no_request() {
    let _host = require_engine!();
    install_ring();
    let host = host();
    let repository = format!("netsec-hosttest-{}", std::process::id());
    let first = host.derived(&repository, "first", "LABEL netsec.test=first");
    let second = host.derived(&repository, "second", "LABEL netsec.test=second");
    assert_ne!(first, second);
    let service = Service::new(host, "zero");
    let live = format!("{}-live", service.prefix);

    // The first deploy: nothing ran before.
    let output = service.run(&["deploy", &first]);
    assert_eq!(last_line(&output), format!("netsec-update: live {first} ({live})"), "{}", text(&output.stdout));
    assert_eq!(service.ready_status(), Some(200));

    // wrk throughout an update and a rollback.
    let work = tempfile::tempdir().unwrap();
    let mut wrk = start_wrk(work.path(), &format!("http://{}", service.addr()));
    std::thread::sleep(Duration::from_secs(2));
    let output = service.run(&["deploy", &second]);
    assert_eq!(last_line(&output), format!("netsec-update: live {second} ({live})"), "{}", text(&output.stdout));
    let (containers, ready) = service.status();
    assert!(ready.starts_with("200 "), "{ready}");
    assert!(containers.contains(&("live".into(), second.clone(), "running".into())), "{containers:?}");
    assert!(containers.contains(&("previous".into(), first.clone(), "exited".into())), "{containers:?}");
    assert_eq!(containers.len(), 2, "{containers:?}");

    let output = service.run(&["rollback"]);
    assert_eq!(last_line(&output), format!("netsec-update: live {first} ({live})"), "{}", text(&output.stdout));
    assert!(wrk.try_wait().unwrap().is_none(), "wrk stopped on its own during the update");
    let (containers, _) = service.status();
    assert!(containers.contains(&("live".into(), first.clone(), "running".into())), "{containers:?}");
    assert!(containers.contains(&("previous".into(), second.clone(), "exited".into())), "{containers:?}");

    let report = stop_wrk(wrk);
    let stdout = text(&report.stdout);
    assert!(report.status.success(), "wrk failed:\n{stdout}{}", text(&report.stderr));
    eprintln!("wrk through a deploy and a rollback:\n{stdout}");
    assert!(!stdout.contains("Socket errors"), "connections failed during the update:\n{stdout}");
    assert!(!stdout.contains("Non-2xx"), "error answers during the update:\n{stdout}");
    assert!(wrk_requests(&stdout) > 1000, "too few requests to tell:\n{stdout}");

    let logs = service.run(&["logs", "5"]);
    assert!(!text(&logs.stdout).is_empty());
}

#[test]
fn a_new_image_that_never_gets_ready_is_removed_and_the_old_one_serves_on() {
    let _host = require_engine!();
    install_ring();
    let host = host();
    let repository = format!("netsec-hosttest-{}", std::process::id());
    let good = host.derived(&repository, "good", "LABEL netsec.test=good");
    // Listening, but with an empty model store: never ready (the script's arguments do not
    // name the store, so they cannot undo this).
    let broken = host.derived(&repository, "broken", "ENV NETSEC_TRAIN_STORE=/nonexistent-empty-store");
    let service = Service::new(host, "broken");
    service.run(&["deploy", &good]);

    let mut update = service.script(&["deploy", &broken]);
    let child = update.env("NETSEC_READY_TIMEOUT", "10").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // The old one answers throughout (the candidate does not open the shared port before it
    // is ready).
    let (done_tx, done) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let output = child.wait_with_output().unwrap();
        let _ = done_tx.send(());
        output
    });
    let mut probes = 0;
    while done.try_recv().is_err() {
        assert_eq!(service.ready_status(), Some(200), "the old container stopped answering during the update");
        probes += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = waiter.join().unwrap();
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert!(probes > 10, "{probes} probes");
    assert!(stderr.contains("was not ready within 10s"), "{stderr}");
    assert!(stderr.contains("opens once a model is loaded"), "the candidate's log is shown:\n{stderr}");
    assert!(
        stderr.contains("HTTP 503") && stderr.contains("\"ready\":false"),
        "the probe answers are shown:\n{stderr}"
    );
    assert!(stderr.contains(&format!("{}-live ({good}) still serves", service.prefix)), "{stderr}");

    let (containers, ready) = service.status();
    assert!(ready.starts_with("200 "), "{ready}");
    assert_eq!(containers, vec![("live".into(), good.clone(), "running".into())]);
    assert_eq!(service.ready_status(), Some(200));
}
