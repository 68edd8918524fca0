//! Local stand-ins for the real services the tests talk to, started and stopped by the harness.
//!
//! Adding a service is one function that starts it and returns a [`Service`]: the process to
//! stop and the environment variables that tell the tests where it is. Every service binds to
//! 127.0.0.1 on a free port and keeps its state in a temporary folder removed at the end.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::python::PythonEnv;

pub struct Service {
    pub name: &'static str,
    /// Variables that point the tests at the service.
    pub env: Vec<(String, String)>,
    process: Option<Child>,
    state_dir: Option<PathBuf>,
}

impl Service {
    pub fn new(name: &'static str, process: Child, state_dir: PathBuf, env: Vec<(String, String)>) -> Service {
        Service { name, env, process: Some(process), state_dir: Some(state_dir) }
    }
}

/// Stops a process: SIGTERM first so it can flush; the harness does not wait long.
fn terminate(mut process: Child) {
    // Every service runs in a process group of its own (`own_group`): the signal goes to the
    // group, so the workers a server forks (MLflow's uvicorn and job consumers) stop with it.
    let group = -(process.id() as i32);
    unsafe { libc::kill(group, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && matches!(process.try_wait(), Ok(None)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    unsafe { libc::kill(group, libc::SIGKILL) };
    let _ = process.wait();
}

/// Detaches whatever is still mounted under `dir` (dockerd leaves its default network
/// namespace mounted in its exec root, and a mount point cannot be removed).
fn unmount_below(dir: &Path) {
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else { return };
    for point in mounts.lines().filter_map(|line| line.split(' ').nth(1)) {
        if Path::new(point).starts_with(dir) {
            if let Ok(point) = std::ffi::CString::new(point) {
                unsafe { libc::umount2(point.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }
}

/// Starts `command` as the leader of a new process group, for [`terminate`].
fn own_group(command: &mut Command) -> &mut Command {
    std::os::unix::process::CommandExt::process_group(command, 0)
}

impl Drop for Service {
    fn drop(&mut self) {
        let Some(process) = self.process.take() else { return };
        terminate(process);
        if let Some(dir) = self.state_dir.take() {
            unmount_below(&dir);
            let _ = std::fs::remove_dir_all(dir);
        }
        eprintln!("xtask: stopped {}", self.name);
    }
}

/// The services the test suite needs, started in order; dropped (stopped) in reverse.
pub fn start_all(python: &PythonEnv) -> anyhow::Result<Vec<Service>> {
    let mut services = vec![mongodb(python)?, moto(python)?, mlflow(python)?, azurite()?];
    // Not every machine can run an engine (it needs root and the docker.io package): the
    // image tests then report the reason as skipped, or fail when NETSEC_REQUIRE_DOCKER=1.
    match docker_registry().and_then(|registry| Ok([registry, ecr_registry()?, dockerd()?])) {
        Ok(image_services) => services.extend(image_services),
        Err(error) => {
            eprintln!("xtask: no Docker engine and registry, the image tests will be skipped: {error:#}");
            let env = vec![(DOCKER_UNAVAILABLE.into(), format!("{error:#}"))];
            services.push(Service { name: "dockerd", env, process: None, state_dir: None });
        }
    }
    Ok(services)
}

/// Set instead of NETSEC_TEST_DOCKER_HOST when the engine could not start: why.
pub const DOCKER_UNAVAILABLE: &str = "NETSEC_TEST_DOCKER_UNAVAILABLE";

/// Docker: dockerd with no networking of its own (no iptables, no bridge: containers use the
/// host's network) and vfs storage, its socket in a short folder under /tmp (a unix socket's
/// path has at most 107 bytes). Exports DOCKER_HOST and NETSEC_TEST_DOCKER_HOST.
pub fn dockerd() -> anyhow::Result<Service> {
    anyhow::ensure!(unsafe { libc::geteuid() } == 0, "dockerd needs root");
    let dir = PathBuf::from(format!("/tmp/netsec-dockerd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let socket = dir.join("docker.sock");
    let mut command = Command::new("dockerd");
    command.args(["--iptables=false", "--ip6tables=false", "--bridge=none", "--storage-driver=vfs", "--host"]);
    command.arg(format!("unix://{}", socket.display()));
    command.arg("--data-root").arg(dir.join("data")).arg("--exec-root").arg(dir.join("exec"));
    command.arg("--pidfile").arg(dir.join("pid"));
    let log = dir.join("dockerd.log");
    let file = std::fs::File::create(&log)?;
    command.stdin(Stdio::null()).stdout(file.try_clone()?).stderr(file);
    let process = own_group(&mut command)
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start dockerd (apt-get install docker.io): {e}"))?;
    let mut service = Service::new("dockerd", process, dir, Vec::new());
    wait_for_engine(&socket, Duration::from_secs(60))
        .map_err(|e| anyhow::anyhow!("{e} (its log: {})", log.display()))?;
    let host = format!("unix://{}", socket.display());
    eprintln!("xtask: started dockerd on {host}");
    service.env = vec![("DOCKER_HOST".into(), host.clone()), ("NETSEC_TEST_DOCKER_HOST".into(), host)];
    Ok(service)
}

/// Waits until the engine answers `GET /_ping` on its socket.
fn wait_for_engine(socket: &Path, timeout: Duration) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(mut stream) = std::os::unix::net::UnixStream::connect(socket) {
            let mut answer = String::new();
            let asked =
                stream.write_all(b"GET /_ping HTTP/1.0\r\n\r\n").and_then(|_| stream.read_to_string(&mut answer));
            if asked.is_ok() && answer.starts_with("HTTP/1.0 200") {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    anyhow::bail!("dockerd did not answer on {} within {timeout:?}", socket.display())
}

/// The registry's user, as ECR's, and a password whose base64 encodings (the `auth` field
/// `AWS:password`, and the X-Registry-Auth JSON) hold both `+` and `/`: it is refused unless
/// the header is URL-safe base64, which the engine expects.
pub const REGISTRY_USER: &str = "AWS";
pub const REGISTRY_PASSWORD: &str = "6y6tdvvz?4y>u>zq?h";

/// A registry (Debian's docker-registry, the distribution project's) with htpasswd
/// authentication, as ECR authenticates pushes. Exports NETSEC_TEST_REGISTRY (host:port),
/// NETSEC_TEST_REGISTRY_USER and NETSEC_TEST_REGISTRY_PASSWORD.
pub fn docker_registry() -> anyhow::Result<Service> {
    let (mut service, address) = registry("registry", REGISTRY_PASSWORD)?;
    service.env = vec![
        ("NETSEC_TEST_REGISTRY".into(), address),
        ("NETSEC_TEST_REGISTRY_USER".into(), REGISTRY_USER.into()),
        ("NETSEC_TEST_REGISTRY_PASSWORD".into(), REGISTRY_PASSWORD.into()),
    ];
    Ok(service)
}

/// The password in the token moto's ECR GetAuthorizationToken returns (`<account>-auth-token`,
/// for moto's default account).
const MOTO_ECR_PASSWORD: &str = "123456789012-auth-token";

/// ECR's registry for the deploy tests: a registry that takes the credentials moto's ECR
/// hands out, so that `deploy` pushes for real with the token it got from (moto's) ECR.
/// Exports NETSEC_TEST_ECR_REGISTRY (host:port).
pub fn ecr_registry() -> anyhow::Result<Service> {
    let (mut service, address) = registry("ecr-registry", MOTO_ECR_PASSWORD)?;
    service.env = vec![("NETSEC_TEST_ECR_REGISTRY".into(), address)];
    Ok(service)
}

/// docker-registry on a free port with user AWS and `password`; returns it and its host:port.
fn registry(name: &'static str, password: &str) -> anyhow::Result<(Service, String)> {
    let (port, dir) = (free_port()?, state_dir(name)?);
    // The password goes through standard input, never a process argument.
    let mut htpasswd = Command::new("htpasswd")
        .args(["-Bin", REGISTRY_USER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start htpasswd (apt-get install apache2-utils): {e}"))?;
    std::io::Write::write_all(&mut htpasswd.stdin.take().expect("piped"), password.as_bytes())?;
    let output = htpasswd.wait_with_output()?;
    anyhow::ensure!(output.status.success(), "htpasswd failed");
    std::fs::write(dir.join("htpasswd"), output.stdout)?;
    let config = format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {data}\n\
         http:\n  addr: 127.0.0.1:{port}\nauth:\n  htpasswd:\n    realm: netsec-test\n    path: {htpasswd}\n",
        data = dir.join("data").display(),
        htpasswd = dir.join("htpasswd").display(),
    );
    std::fs::write(dir.join("config.yml"), config)?;
    let mut command = Command::new("docker-registry");
    command.arg("serve").arg(dir.join("config.yml"));
    let process = spawn_listening(name, &mut command, &dir.join("registry.log"), port)
        .map_err(|e| anyhow::anyhow!("{e:#} (apt-get install docker-registry)"))?;
    eprintln!("xtask: started {name} on 127.0.0.1:{port}");
    Ok((Service::new(name, process, dir, Vec::new()), format!("127.0.0.1:{port}")))
}

/// The user the MongoDB stand-in requires, and a password that needs escaping in a URI (the
/// tests check that it is never printed).
const MONGODB_USER: &str = "netsec";
const MONGODB_PASSWORD: &str = "t3st:p@ss/w0rd";

/// Creates the user while the server still runs without authentication.
const CREATE_MONGODB_USER: &str = r#"
import sys, pymongo
client = pymongo.MongoClient(f"mongodb://127.0.0.1:{sys.argv[1]}/", serverSelectionTimeoutMS=20000)
client.admin.command("createUser", sys.argv[2], pwd=sys.argv[3], roles=["root"])
"#;

/// MongoDB: SecantusDB (a MongoDB-wire server on WiredTiger) from the harness's environment,
/// with authentication on. It provisions users only while authentication is off, so it is
/// started once to create the user and again with `--auth`.
/// Exports NETSEC_TEST_MONGODB_URI (with the credentials).
pub fn mongodb(python: &PythonEnv) -> anyhow::Result<Service> {
    let (port, dir) = (free_port()?, state_dir("mongodb")?);
    let start = |auth: bool| -> anyhow::Result<Child> {
        let mut command = Command::new(python.bin("secantusd-py"));
        command.args(["--host", "127.0.0.1", "--port", &port.to_string(), "--log-level", "WARNING", "--storage-path"]);
        command.arg(dir.join("data")).args(auth.then_some("--auth"));
        spawn_listening("SecantusDB", &mut command, &dir.join("server.log"), port)
    };
    let setup = start(false)?;
    let created = Command::new(&python.python)
        .args(["-c", CREATE_MONGODB_USER, &port.to_string(), MONGODB_USER, MONGODB_PASSWORD])
        .status();
    terminate(setup);
    anyhow::ensure!(created?.success(), "creating the SecantusDB user failed");
    let process = start(true)?;
    let password = MONGODB_PASSWORD.replace(':', "%3A").replace('@', "%40").replace('/', "%2F");
    let uri = format!("mongodb://{MONGODB_USER}:{password}@127.0.0.1:{port}/?authSource=admin");
    eprintln!("xtask: started SecantusDB on 127.0.0.1:{port}");
    Ok(Service::new("SecantusDB", process, dir, vec![("NETSEC_TEST_MONGODB_URI".into(), uri)]))
}

/// Creates three IAM users (one allowed everything on S3, one nothing, one what `cargo xtask
/// deploy` needs), then turns on moto's
/// request authentication, so that S3 checks signatures and permissions as AWS does.
const PROVISION_MOTO: &str = r#"
import sys, json, urllib.request, boto3
endpoint = sys.argv[1]
iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                   aws_access_key_id="setup", aws_secret_access_key="setup")
def user(name, actions):
    iam.create_user(UserName=name)
    statement = {"Effect": "Allow", "Action": actions, "Resource": "*"}
    policy = json.dumps({"Version": "2012-10-17", "Statement": [statement]})
    iam.put_user_policy(UserName=name, PolicyName=name, PolicyDocument=policy)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return [key["AccessKeyId"], key["SecretAccessKey"]]
keys = {"allowed": user("netsec-test", ["s3:*"]), "denied": user("netsec-denied", ["iam:GetUser"]),
        "deployer": user("netsec-deployer", ["acm:*", "autoscaling:*", "ec2:*", "ecr:*", "elasticloadbalancing:*",
                                             "iam:*", "s3:*", "ssm:*", "sts:*"])}
urllib.request.urlopen(urllib.request.Request(endpoint + "/moto-api/reset-auth", data=b"0", method="POST",
                                              headers={"Content-Type": "text/plain"}))
print(json.dumps(keys))
"#;

/// `moto_server`, with four behaviours corrected where moto 5.2 departs from AWS:
/// - GetBucketVersioning's root is `VersioningConfiguration`
///   (docs.aws.amazon.com/AmazonS3/latest/API/API_GetBucketVersioning.html), not
///   `GetBucketVersioningResponse`; the Rust SDK checks the root element and cannot read moto's.
/// - SendCommand with `InstanceIds` and no `Targets` goes to those instances only
///   (docs.aws.amazon.com/systems-manager/latest/APIReference/API_SendCommand.html). moto turns
///   the empty target list into an empty EC2 filter, which matches every instance in the
///   region, so a command for one environment's runner was recorded on every other runner.
/// - CreateLaunchTemplateVersion takes `UserData` as base64, as CreateLaunchTemplate does
///   (docs.aws.amazon.com/AWSEC2/latest/APIReference/API_RequestLaunchTemplateData.html). moto
///   decodes it for CreateLaunchTemplate only, so the next instance Auto Scaling launched from
///   a second version failed (HTTP 500).
/// - A Query-protocol request's signature covers the body as sent
///   (docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html). moto signs the
///   parameters again as botocore would encode them (a space as `+`), so any request the Rust
///   SDK sends with a space in a value (`%20`) was refused as AuthFailure/SignatureDoesNotMatch.
///   The raw body is kept for the check; what moto's handlers see is unchanged.
const MOTO_SERVER: &str = r#"
import sys
from moto.core.responses import BaseResponse
from moto.core.types import Base64EncodedString
from moto.ec2.models.launch_templates import LaunchTemplate
from moto.ec2.utils import parse_user_data
from moto.s3.responses import S3Response
from moto.ssm.models import Command
from moto.server import main

def get_bucket_versioning(self):
    status = self.backend.get_bucket_versioning(self.bucket_name)
    inner = f"<Status>{status}</Status>" if status else ""
    body = ('<?xml version="1.0" encoding="UTF-8"?>'
            f'<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{inner}</VersioningConfiguration>')
    return 200, {"Content-Type": "application/xml"}, body

S3Response.get_bucket_versioning = get_bucket_versioning

instance_ids_from_targets = Command._get_instance_ids_from_targets
Command._get_instance_ids_from_targets = lambda self: instance_ids_from_targets(self) if self.targets else []

create_version = LaunchTemplate.create_version
def create_version_decoded(self, data, description):
    user_data = data.get("UserData")
    if user_data is not None and not isinstance(user_data, Base64EncodedString):
        data = dict(data, UserData=parse_user_data(user_data))
    return create_version(self, data, description)
LaunchTemplate.create_version = create_version_decoded

setup_class = BaseResponse.setup_class
def setup_class_keeping_the_form(self, request, *args, **kwargs):
    # Query-protocol services only: S3 reads its own bodies, and a gzip'd form is unpacked later.
    form = (request.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded")
            and "gzip" not in request.headers.get("Content-Encoding", "")
            and getattr(self, "service_name", None) != "s3")
    # Cached, the body is still what werkzeug parses the form from.
    raw = request.get_data(cache=True) if form else None
    setup_class(self, request, *args, **kwargs)
    if form:
        # Uncached, werkzeug hands a form's body to nobody: moto's handlers saw it empty.
        self.raw_body, self.body = raw, ""
BaseResponse.setup_class = setup_class_keeping_the_form
sys.exit(main(sys.argv[1:]))
"#;

/// AWS S3: moto's server from the harness's environment, with authentication on.
/// Exports NETSEC_TEST_S3_ENDPOINT, AWS_REGION, the allowed user's AWS_ACCESS_KEY_ID and
/// AWS_SECRET_ACCESS_KEY, and the denied user's as NETSEC_TEST_S3_DENIED_ACCESS_KEY_ID and
/// NETSEC_TEST_S3_DENIED_SECRET_ACCESS_KEY, and the deployer's as NETSEC_TEST_DEPLOY_ACCESS_KEY_ID
/// and NETSEC_TEST_DEPLOY_SECRET_ACCESS_KEY.
pub fn moto(python: &PythonEnv) -> anyhow::Result<Service> {
    let (port, dir) = (free_port()?, state_dir("moto")?);
    let mut command = Command::new(&python.python);
    command.args(["-c", MOTO_SERVER, "-H", "127.0.0.1", "-p", &port.to_string()]);
    // A certificate moto issues (RequestCertificate) stays PENDING_VALIDATION for this many
    // seconds, standing in for DNS validation; the fleet tests use theirs at once.
    command.env("MOTO_ACM_VALIDATION_WAIT", "0");
    let process = spawn_listening("moto", &mut command, &dir.join("server.log"), port)?;
    // From here on, a failure stops the server (the Service's drop).
    let mut service = Service::new("moto", process, dir, Vec::new());
    let endpoint = format!("http://127.0.0.1:{port}");
    let output = Command::new(&python.python).args(["-c", PROVISION_MOTO, &endpoint]).output()?;
    anyhow::ensure!(output.status.success(), "provisioning moto failed: {}", String::from_utf8_lossy(&output.stderr));
    let keys: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let key = |user: &str, i: usize| keys[user][i].as_str().unwrap_or_default().to_string();
    eprintln!("xtask: started moto on 127.0.0.1:{port}");
    service.env = vec![
        ("NETSEC_TEST_S3_ENDPOINT".into(), endpoint),
        ("AWS_REGION".into(), "us-east-1".into()),
        // Nothing may probe the instance metadata address from this machine.
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ("AWS_ACCESS_KEY_ID".into(), key("allowed", 0)),
        ("AWS_SECRET_ACCESS_KEY".into(), key("allowed", 1)),
        ("NETSEC_TEST_S3_DENIED_ACCESS_KEY_ID".into(), key("denied", 0)),
        ("NETSEC_TEST_S3_DENIED_SECRET_ACCESS_KEY".into(), key("denied", 1)),
        ("NETSEC_TEST_DEPLOY_ACCESS_KEY_ID".into(), key("deployer", 0)),
        ("NETSEC_TEST_DEPLOY_SECRET_ACCESS_KEY".into(), key("deployer", 1)),
    ];
    Ok(service)
}

/// MLflow: its tracking server from the harness's environment, with a SQLite store and
/// artifacts served through its proxy (`mlflow-artifacts:` URIs), as a hosted server gives them.
/// Exports NETSEC_TEST_MLFLOW_URI.
pub fn mlflow(python: &PythonEnv) -> anyhow::Result<Service> {
    let (port, dir) = (free_port()?, state_dir("mlflow")?);
    let mut command = mlflow_command(python, port, &dir);
    let process = spawn_listening("MLflow", &mut command, &dir.join("server.log"), port)?;
    eprintln!("xtask: started MLflow on 127.0.0.1:{port}");
    let uri = format!("http://127.0.0.1:{port}");
    Ok(Service::new("MLflow", process, dir, vec![("NETSEC_TEST_MLFLOW_URI".into(), uri)]))
}

/// `mlflow server` on `port` keeping its state in `dir` (one worker: this machine has 2 cores).
fn mlflow_command(python: &PythonEnv, port: u16, dir: &Path) -> Command {
    let mut command = Command::new(python.bin("mlflow"));
    command.args(["server", "--host", "127.0.0.1", "--port", &port.to_string(), "--workers", "1"]);
    command.arg("--backend-store-uri").arg(format!("sqlite:///{}", dir.join("mlflow.db").display()));
    command.arg("--artifacts-destination").arg(dir.join("artifacts"));
    command
}

/// Azurite's blob service, with an account and a random key of the harness's own (the
/// emulator's well-known development account is then disabled), its blobs on disk. Exports
/// NETSEC_TEST_AZURE_CONNECTION_STRING, the connection string a user would copy from Azure.
pub fn azurite() -> anyhow::Result<Service> {
    use base64::Engine;
    const ACCOUNT: &str = "netsectest";
    let program = crate::tools::azurite_blob()?;
    let (port, dir) = (free_port()?, state_dir("azurite")?);
    let mut secret = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut secret)?;
    let key = base64::engine::general_purpose::STANDARD.encode(secret);
    let mut command = Command::new(program);
    command.args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string(), "--disableTelemetry"]);
    command.arg("--location").arg(dir.join("data")).arg("--debug").arg(dir.join("debug.log"));
    // The key goes through the environment, never the command line.
    command.env("AZURITE_ACCOUNTS", format!("{ACCOUNT}:{key}"));
    let process = spawn_listening("Azurite", &mut command, &dir.join("azurite.log"), port)?;
    eprintln!("xtask: started Azurite on 127.0.0.1:{port}");
    let connection = format!(
        "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={key};BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT};"
    );
    Ok(Service::new("Azurite", process, dir, vec![("NETSEC_TEST_AZURE_CONNECTION_STRING".into(), connection)]))
}

/// A fresh folder for a service's state and log, removed when the service stops.
fn state_dir(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("netsec-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Starts `command` with its output going to `log` (read it when a service misbehaves) and
/// waits until it listens on `port`; stops it if it never does.
fn spawn_listening(name: &str, command: &mut Command, log: &Path, port: u16) -> anyhow::Result<Child> {
    let file = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    command.stdin(Stdio::null()).stdout(file.try_clone()?).stderr(file);
    let mut process = own_group(command).spawn().map_err(|e| anyhow::anyhow!("cannot start {command:?}: {e}"))?;
    if let Err(error) = wait_for_port(name, &mut process, port, Duration::from_secs(60)) {
        terminate(process);
        anyhow::bail!("{error} (its log: {})", log.display());
    }
    Ok(process)
}

/// A free TCP port on the loopback interface.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until `port` accepts connections while `process` runs, or fails after `timeout`. A
/// process that has exited fails at once: it could not start (its port taken by another
/// process between `free_port` and its bind, say), and what answers there is not the service.
fn wait_for_port(name: &str, process: &mut Child, port: u16, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(status) = process.try_wait()? {
            anyhow::bail!("{name} exited ({status}) before it listened on 127.0.0.1:{port}");
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    anyhow::bail!("{name} did not listen on 127.0.0.1:{port} within {timeout:?}")
}
