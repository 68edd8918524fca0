//! The rolling deploy against a real balancer. `cargo xtask deploy` and `rollback` run as they
//! run against AWS, with two endpoints pointed at stand-ins (common/intercept.rs) that pass
//! everything else to moto:
//!
//! - Elastic Load Balancing: RegisterTargets, DeregisterTargets and DescribeTargetHealth reach
//!   HAProxy (Debian `haproxy`) through its runtime API. HAProxy health-checks `GET /ready` as
//!   the target group does and routes only to servers that pass; a deregistered target is put
//!   in maintenance (no new request, those in flight finish) and reported `draining` for the
//!   deregistration delay, then `unused`; a registered one is forced down first, so that it
//!   takes traffic only after `healthy_threshold` checks in a row, as a target group's does.
//! - SSM Run Command: SendCommand runs the update script (infra/host/netsec-update.sh, the one
//!   every command carries) for the instance it names, with that instance's settings, on the
//!   harness's Docker engine; GetCommandInvocation reports it.
//!
//! The fleet's three instances are the ones moto's Auto Scaling group launched; on this one
//! machine each is a service port, two probe ports and container names of its own.
//! Departures from AWS, in the stand-ins only: HAProxy checks every second (an ALB every
//! `interval_seconds`, 5 at least), and images are pulled from the harness's ECR registry for
//! ECR's registry host (the instance's `docker pull` cannot reach ECR from here).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;
use common::aws::*;
use common::host::*;
use common::intercept::{Answer, Handler, Intercept, Request};
use common::*;

/// ECR's registry host for moto's account and region.
const ECR_HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
/// The password in the authorization token moto's ECR hands out.
const ECR_PASSWORD: &str = "123456789012-auth-token";

/// One instance of the fleet as this machine plays it.
struct Slot {
    id: String,
    port: u16,
    probes: [u16; 2],
    prefix: String,
}

/// HAProxy over the slots' service ports, standing in for the load balancer.
struct Balancer {
    process: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Balancer {
    fn start(slots: &[Slot], rise: u32, fall: u32) -> Balancer {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let servers: String = slots.iter().map(|s| format!("  server {} 127.0.0.1:{} check\n", s.id, s.port)).collect();
        // No retry: an ALB does not resend a request that failed on a target either.
        let config = format!(
            "global\n  stats socket {socket} level admin\n  maxconn 512\n\
             defaults\n  mode http\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n  retries 0\n\
             frontend web\n  bind 127.0.0.1:{port}\n  default_backend fleet\n\
             backend fleet\n  balance roundrobin\n  option httpchk GET /ready\n  http-check expect status 200\n  \
             default-server inter 1s rise {rise} fall {fall}\n{servers}",
            socket = dir.path().join("admin.sock").display()
        );
        let file = dir.path().join("haproxy.cfg");
        std::fs::write(&file, config).unwrap();
        let log = std::fs::File::create(dir.path().join("haproxy.log")).unwrap();
        let process = Command::new("haproxy")
            .arg("-f")
            .arg(&file)
            .arg("-db")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("haproxy (apt-get install haproxy; .ci/run installs it)");
        let balancer = Balancer { process, dir, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() || !balancer.socket().exists() {
            assert!(Instant::now() < deadline, "haproxy did not start: {}", balancer.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        balancer
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("admin.sock")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
    }

    /// One runtime API command, and its answer.
    fn command(&self, line: &str) -> String {
        let mut stream = UnixStream::connect(self.socket()).unwrap();
        stream.write_all(format!("{line}\n").as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    }

    /// Each server's status (`UP`, `DOWN`, `MAINT`, `UP 1/2`…) by name.
    fn statuses(&self) -> BTreeMap<String, String> {
        let stat = self.command("show stat");
        let mut lines = stat.lines();
        let header: Vec<&str> = lines.next().unwrap_or_default().trim_start_matches("# ").split(',').collect();
        let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
        let (proxy, server, status) = (column("pxname"), column("svname"), column("status"));
        lines
            .map(|line| line.split(',').collect::<Vec<_>>())
            .filter(|f| f.len() > status && f[proxy] == "fleet" && f[server] != "BACKEND")
            .map(|f| (f[server].to_string(), f[status].to_string()))
            .collect()
    }

    fn healthy(&self) -> usize {
        self.statuses().values().filter(|s| s.starts_with("UP")).count()
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// The target group's register/deregister/health calls, carried out on HAProxy.
struct TargetGroup {
    balancer: Arc<Balancer>,
    port: u16,
    delay: Duration,
    deregistered: Mutex<BTreeMap<String, Instant>>,
}

impl TargetGroup {
    fn register(&self, id: &str) {
        self.balancer.command(&format!("set server fleet/{id} health down"));
        self.balancer.command(&format!("set server fleet/{id} state ready"));
        self.deregistered.lock().unwrap().remove(id);
    }

    fn deregister(&self, id: &str) {
        self.balancer.command(&format!("set server fleet/{id} state maint"));
        self.deregistered.lock().unwrap().insert(id.to_string(), Instant::now());
    }

    /// DescribeTargetHealth's `TargetHealthDescriptions` for `ids`.
    fn describe(&self, ids: &[String]) -> String {
        let statuses = self.balancer.statuses();
        let deregistered = self.deregistered.lock().unwrap();
        let members: String = ids
            .iter()
            .map(|id| {
                let (state, reason, description) = match deregistered.get(id) {
                    Some(at) if at.elapsed() < self.delay => {
                        ("draining", "Target.DeregistrationInProgress", "Target deregistration is in progress".into())
                    }
                    Some(_) => {
                        ("unused", "Target.NotRegistered", "Target is not registered to the target group".into())
                    }
                    None => match statuses.get(id) {
                        Some(status) if status.starts_with("UP") => ("healthy", "", String::new()),
                        status => (
                            "unhealthy",
                            "Target.FailedHealthChecks",
                            format!("Health checks failed ({})", status.map_or("unknown", |s| s.as_str())),
                        ),
                    },
                };
                let reason = if reason.is_empty() {
                    String::new()
                } else {
                    format!("<Reason>{reason}</Reason><Description>{description}</Description>")
                };
                format!(
                    "<member><Target><Id>{id}</Id><Port>{port}</Port></Target><HealthCheckPort>{port}</HealthCheckPort>\
                     <TargetHealth><State>{state}</State>{reason}</TargetHealth></member>",
                    port = self.port
                )
            })
            .collect();
        format!("<TargetHealthDescriptions>{members}</TargetHealthDescriptions>")
    }
}

fn elb_handler(targets: Arc<TargetGroup>) -> Handler {
    Arc::new(move |request: &Request| {
        let form = request.form();
        let action = form.get("Action")?.clone();
        let ids: Vec<String> = (1..).map_while(|n| form.get(&format!("Targets.member.{n}.Id")).cloned()).collect();
        let result = match action.as_str() {
            "RegisterTargets" => {
                ids.iter().for_each(|id| targets.register(id));
                String::new()
            }
            "DeregisterTargets" => {
                ids.iter().for_each(|id| targets.deregister(id));
                String::new()
            }
            "DescribeTargetHealth" => targets.describe(&ids),
            _ => return None,
        };
        Some(Answer(
            200,
            "text/xml",
            format!(
                "<{action}Response xmlns=\"http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/\">\
                 <{action}Result>{result}</{action}Result><ResponseMetadata><RequestId>stand-in</RequestId>\
                 </ResponseMetadata></{action}Response>"
            ),
        ))
    })
}

/// What a command reported.
#[derive(Clone)]
struct Invocation {
    instance: String,
    status: &'static str,
    stdout: String,
    stderr: String,
}

/// The fleet's instances as Run Command reaches them.
struct Instances {
    slots: Vec<Slot>,
    host: &'static Host,
    ecr: String,
    models: PathBuf,
    work: PathBuf,
    next: AtomicUsize,
    commands: Mutex<BTreeMap<String, Invocation>>,
    /// (instance, the update script's arguments) in the order sent.
    sent: Mutex<Vec<(String, Vec<String>)>>,
}

impl Instances {
    fn send(self: &Arc<Self>, body: &serde_json::Value) -> Option<Answer> {
        let instance = body["InstanceIds"][0].as_str()?.to_string();
        let slot = self.slots.iter().position(|s| s.id == instance)?;
        let commands = body["Parameters"]["commands"].as_array()?;
        let (timeout, args) = invocation(commands.last()?.as_str()?);
        self.sent.lock().unwrap().push((instance.clone(), args.clone()));
        let id = format!("stand-in-{}", self.next.fetch_add(1, Ordering::SeqCst));
        let running =
            Invocation { instance: instance.clone(), status: "InProgress", stdout: "".into(), stderr: "".into() };
        self.commands.lock().unwrap().insert(id.clone(), running);
        let (this, command) = (self.clone(), id.clone());
        std::thread::spawn(move || {
            let done = this.run(&this.slots[slot], &timeout, &args);
            this.commands.lock().unwrap().insert(command, done);
        });
        let answer = serde_json::json!({"Command": {"CommandId": id, "InstanceIds": [instance], "Status": "Pending"}});
        Some(Answer(200, "application/x-amz-json-1.1", answer.to_string()))
    }

    fn invocation(&self, body: &serde_json::Value) -> Answer {
        let id = body["CommandId"].as_str().unwrap_or_default();
        match self.commands.lock().unwrap().get(id) {
            Some(found) => {
                let answer = serde_json::json!({
                    "CommandId": id, "InstanceId": found.instance, "Status": found.status,
                    "StandardOutputContent": found.stdout, "StandardErrorContent": found.stderr,
                });
                Answer(200, "application/x-amz-json-1.1", answer.to_string())
            }
            None => Answer(
                400,
                "application/x-amz-json-1.1",
                serde_json::json!({"__type": "InvocationDoesNotExist", "message": id}).to_string(),
            ),
        }
    }

    /// The update script with the instance's settings, as the host's own copy runs it.
    fn run(&self, slot: &Slot, timeout: &str, args: &[String]) -> Invocation {
        let local = |text: &str| text.replace(&format!("{ECR_HOST}/"), &format!("{}/", self.ecr));
        let mut command = Command::new("bash");
        command.current_dir(root()).arg("infra/host/netsec-update.sh").args(args.iter().map(|a| local(a)));
        command.env("DOCKER_HOST", &self.host.engine).env("DOCKER_CONFIG", self.host.config.path());
        command.env("NETSEC_PORT", slot.port.to_string()).env("NETSEC_READY_TIMEOUT", timeout);
        command.env("NETSEC_PROBE_PORTS", format!("{} {}", slot.probes[0], slot.probes[1]));
        command.env("NETSEC_CONTAINER_PREFIX", &slot.prefix).env("NETSEC_MODELS_DIR", &self.models);
        command.env("NETSEC_ENV_FILE", self.work.join("no-service.env")).env("NETSEC_STOP_TIMEOUT", "10");
        command.env_remove("NETSEC_ECR_REGION").env_remove("NETSEC_EXTRA_ARGS");
        let output = command.output().unwrap();
        let ecr_again = |bytes: &[u8]| text(bytes).replace(&format!("{}/", self.ecr), &format!("{ECR_HOST}/"));
        Invocation {
            instance: slot.id.clone(),
            status: if output.status.success() { "Success" } else { "Failed" },
            stdout: ecr_again(&output.stdout),
            stderr: ecr_again(&output.stderr),
        }
    }

    /// The script arguments each instance was sent, by instance.
    fn sent_to(&self, instance: &str) -> Vec<Vec<String>> {
        let sent = self.sent.lock().unwrap();
        sent.iter().filter(|(i, _)| i == instance).map(|(_, args)| args.clone()).collect()
    }
}

impl Drop for Instances {
    fn drop(&mut self) {
        for slot in &self.slots {
            let filter = format!("label=netsec.prefix={}", slot.prefix);
            let Ok(listed) = self.host.docker().args(["ps", "-aq", "--filter", &filter]).output() else { continue };
            let ids: Vec<String> = text(&listed.stdout).split_whitespace().map(String::from).collect();
            if !ids.is_empty() {
                let _ = self.host.docker().args(["rm", "-f"]).args(&ids).output();
            }
        }
    }
}

fn ssm_handler(instances: Arc<Instances>) -> Handler {
    Arc::new(move |request: &Request| match request.header("X-Amz-Target")? {
        "AmazonSSM.SendCommand" => instances.send(&request.json()),
        "AmazonSSM.GetCommandInvocation" => Some(instances.invocation(&request.json())),
        _ => None,
    })
}

/// The ready timeout and the script's arguments in the command's last line
/// (`NETSEC_…=… /opt/netsec/netsec-update.sh 'deploy' 'REF'`).
fn invocation(line: &str) -> (String, Vec<String>) {
    let (settings, words) = line.split_once("/opt/netsec/netsec-update.sh ").expect("the update script's invocation");
    let timeout = settings.split_whitespace().find_map(|w| w.strip_prefix("NETSEC_READY_TIMEOUT=")).unwrap();
    (timeout.to_string(), shell_words(words))
}

/// Words as the shell splits them, for the quoting remote.rs writes (`'…'`, `\'`).
fn shell_words(text: &str) -> Vec<String> {
    let (mut words, mut word, mut in_word) = (Vec::new(), String::new(), false);
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                word.extend(chars.by_ref().take_while(|&q| q != '\''));
            }
            '\\' => {
                in_word = true;
                word.extend(chars.next());
            }
            ' ' if in_word => {
                words.push(std::mem::take(&mut word));
                in_word = false;
            }
            ' ' => {}
            other => {
                in_word = true;
                word.push(other);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// The fewest healthy servers seen while it ran, polling every 100 ms.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<usize>,
}

impl Sampler {
    fn start(balancer: Arc<Balancer>) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut fewest = usize::MAX;
            while !flag.load(Ordering::SeqCst) {
                fewest = fewest.min(balancer.healthy());
                std::thread::sleep(Duration::from_millis(100));
            }
            fewest
        });
        Sampler { stop, thread }
    }

    fn fewest(self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

async fn group_instances(env: &TestEnv) -> Vec<String> {
    let autoscaling = aws_sdk_autoscaling::Client::new(&sdk().await);
    let name = format!("netsec-{}-fleet", env.name);
    let found = autoscaling.describe_auto_scaling_groups().auto_scaling_group_names(&name).send().await.unwrap();
    let mut ids: Vec<String> =
        found.auto_scaling_groups()[0].instances().iter().map(|i| i.instance_id().unwrap().to_string()).collect();
    ids.sort();
    ids
}

async fn current(env: &TestEnv) -> String {
    let ssm = aws_sdk_ssm::Client::new(&sdk().await);
    let found = ssm.get_parameter().name(format!("/netsec/{}/deploy/current", env.name)).send().await.unwrap();
    found.parameter().unwrap().value().unwrap().to_string()
}

/// Builds `name:version`, a variant of the image with inputs of its own (so that it is a new
/// version to deploy, with a tag of its own: the inputs' first 12 hex digits), plus `lines`.
fn variant(host: &Host, name: &str, version: &str, lines: &str) -> String {
    let inputs: String = version.bytes().map(|b| format!("{b:02x}")).collect();
    let image = format!("{name}:{version}");
    host.build(&image, &format!("LABEL netsec.inputs=sha256:{inputs:0<64}\n{lines}"));
    image
}

/// The reference `deploy` printed in its `deployed REF to …` line.
fn deployed(stdout: &str) -> String {
    let line = stdout.lines().find_map(|l| l.strip_prefix("deployed ")).unwrap_or_else(|| panic!("{stdout}"));
    line.split(' ').next().unwrap().to_string()
}

#[test]
fn a_rolling_deploy_behind_a_real_balancer_loses_no_request_and_a_bad_image_stops_at_its_batch() {
    let _engine = require_engine!();
    install_ring();
    let host = host();
    let ecr = required("NETSEC_TEST_ECR_REGISTRY");
    host.login(&ecr, "AWS", ECR_PASSWORD);
    let certificate = runtime().block_on(certificate());
    let section = format!(
        "fleet:\n  min: 2\n  max: 3\n  desired: 3\n  max_unavailable: 1\n  tls: {{certificate_arn: \"{certificate}\"}}\n  \
         health: {{interval_seconds: 5, timeout_seconds: 2, healthy_threshold: 2, unhealthy_threshold: 2, \
         deregistration_delay_seconds: 3}}\n"
    );
    let env = TestEnv::new("b", &section);
    succeeds(&mut xtask(&["apply", "--env", env.path()]));

    let ids = runtime().block_on(group_instances(&env));
    assert_eq!(ids.len(), 3, "{ids:?}");
    let pid = std::process::id();
    let slots: Vec<Slot> = ids
        .iter()
        .enumerate()
        .map(|(k, id)| Slot {
            id: id.clone(),
            port: free_port(),
            probes: [free_port(), free_port()],
            prefix: format!("nr{pid}-{k}"),
        })
        .collect();
    let work = tempfile::tempdir().unwrap();
    let balancer = Arc::new(Balancer::start(&slots, 2, 2));
    let targets = Arc::new(TargetGroup {
        balancer: balancer.clone(),
        port: 8080,
        delay: Duration::from_secs(3),
        deregistered: Mutex::new(BTreeMap::new()),
    });
    let instances = Arc::new(Instances {
        slots,
        host,
        ecr: ecr.clone(),
        models: model_store(work.path()),
        work: work.path().to_path_buf(),
        next: AtomicUsize::new(0),
        commands: Mutex::new(BTreeMap::new()),
        sent: Mutex::new(Vec::new()),
    });
    let moto = required("NETSEC_TEST_S3_ENDPOINT");
    let elb = Intercept::start(&moto, elb_handler(targets.clone()));
    let ssm = Intercept::start(&moto, ssm_handler(instances.clone()));
    let xtask_via_stand_ins = |args: &[&str]| {
        let mut command = xtask(args);
        command.env("DOCKER_HOST", &host.engine).env("NETSEC_ECR_REGISTRY", &ecr).current_dir(root());
        command.env("AWS_ENDPOINT_URL_SSM", &ssm.url).env("AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2", &elb.url);
        command
    };
    let name = format!("netsec-rollout-{pid}");
    let image_one = variant(host, &name, "one", "");
    let image_two = variant(host, &name, "two", "");
    // Listening, but with an empty model store: never ready.
    let image_broken = variant(host, &name, "broken", "ENV NETSEC_TRAIN_STORE=/nonexistent-empty-store");

    // The first deploy: nothing served before.
    let first = succeeds(&mut xtask_via_stand_ins(&["deploy", "--env", env.path(), "--image", &image_one]));
    let one = deployed(&first);
    assert_eq!(runtime().block_on(current(&env)), one);
    assert_eq!(balancer.healthy(), 3, "{:?}\n{first}", balancer.statuses());

    // Under load: a deploy and a rollback, batch by batch.
    let sampler = Sampler::start(balancer.clone());
    let mut wrk = start_wrk(work.path(), &format!("http://127.0.0.1:{}", balancer.port));
    std::thread::sleep(Duration::from_secs(2));
    let second = succeeds(&mut xtask_via_stand_ins(&["deploy", "--env", env.path(), "--image", &image_two]));
    let two = deployed(&second);
    assert_ne!(one, two);
    assert!(second.contains("batch 3: ") && !second.contains("batch 4"), "{second}");
    assert_eq!(runtime().block_on(current(&env)), two);
    let rolled = succeeds(&mut xtask_via_stand_ins(&["rollback", "--env", env.path()]));
    assert!(rolled.contains(&format!("back to {one}")), "{rolled}");
    assert_eq!(runtime().block_on(current(&env)), one);

    // An image that never gets ready: the first batch goes back, the others are never touched.
    let refused = fails(&mut xtask_via_stand_ins(&["deploy", "--env", env.path(), "--image", &image_broken]));
    let (stdout, stderr) = (text(&refused.stdout), text(&refused.stderr));
    assert!(stderr.contains("the update failed on") && stderr.contains("deploy/current is unchanged"), "{stderr}");
    assert!(stderr.contains("was not ready within"), "the host's report is shown: {stderr}");
    assert!(stdout.contains("batch 1: ") && !stdout.contains("batch 2: "), "{stdout}");
    assert!(stdout.contains("back in service on the previous containers"), "{stdout}");
    assert_eq!(runtime().block_on(current(&env)), one);
    let deadline = Instant::now() + Duration::from_secs(30);
    while balancer.healthy() < 3 {
        assert!(Instant::now() < deadline, "the batch is not back: {:?}", balancer.statuses());
        std::thread::sleep(Duration::from_millis(200));
    }

    assert!(wrk.try_wait().unwrap().is_none(), "wrk stopped on its own");
    let report = stop_wrk(wrk);
    let fewest = sampler.fewest();
    let wrk_out = text(&report.stdout);
    eprintln!("wrk through HAProxy during a rolling deploy, a rollback and a failed deploy:\n{wrk_out}");
    assert!(!wrk_out.contains("Socket errors"), "connections failed:\n{wrk_out}");
    assert!(!wrk_out.contains("Non-2xx"), "error answers:\n{wrk_out}");
    assert!(wrk_requests(&wrk_out) > 1000, "too few requests to tell:\n{wrk_out}");
    assert!(fewest >= 2, "{fewest} healthy targets at one point, below fleet.min");

    // Who was sent what: every instance each version once; the bad image the first batch only.
    let args = |action: &str, reference: &str| vec![action.to_string(), reference.to_string()];
    let repository = format!("{ECR_HOST}/netsec-{}@sha256:", env.name);
    for (k, id) in ids.iter().enumerate() {
        let sent = instances.sent_to(id);
        let expected = [args("deploy", &one), args("deploy", &two), args("rollback", &one)];
        assert_eq!(sent[..3.min(sent.len())], expected, "{id}: {sent:?}");
        let bad = &sent[3..];
        if k == 0 {
            assert!(bad.len() == 1 && bad[0][0] == "deploy" && bad[0][1].starts_with(&repository), "{id}: {sent:?}");
            assert!(bad[0][1] != one && bad[0][1] != two, "{id}: {sent:?}");
        } else {
            assert!(bad.is_empty(), "{id} was never to be reached: {sent:?}");
        }
    }

    let logs =
        succeeds(&mut xtask_via_stand_ins(&["logs", "--env", env.path(), "--instance", &ids[1], "--lines", "5"]));
    assert!(!logs.trim().is_empty(), "the live container's log");
    succeeds(&mut xtask(&["destroy", "--env", env.path(), "--yes"]));
}
