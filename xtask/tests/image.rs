//! The service image against a real Docker engine and registry, which `cargo xtask test`
//! starts (dockerd, docker-registry with htpasswd). Without an engine these tests say why and
//! are skipped — or fail, when NETSEC_REQUIRE_DOCKER=1 (CI). Without the harness they fail.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{LogsOptionsBuilder, RemoveContainerOptionsBuilder};
use bollard::Docker;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

mod common;
use common::*;

/// `cargo xtask` (this build of it) against the harness's engine, without registry credentials.
fn xtask(host: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command.current_dir(root()).args(args).env("DOCKER_HOST", host);
    for name in ["NETSEC_REGISTRY_USER", "NETSEC_REGISTRY_PASSWORD", "NETSEC_REGISTRY_TOKEN"] {
        command.env_remove(name);
    }
    command
}

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
}

fn docker(host: &str) -> Docker {
    block_on(async { Docker::connect_with_host(host).unwrap().negotiate_version().await.unwrap() })
}

/// The image every test uses, built once by `cargo xtask image`.
struct Built {
    /// `repository:<sha>`
    name: String,
    repository: String,
    id: String,
    /// The inputs digest xtask printed.
    inputs: String,
    stdout: String,
}

/// The `built <id> inputs <digest>` line of `cargo xtask image`: the id and the inputs digest.
fn built_line(stdout: &str) -> (String, String) {
    let line = stdout.lines().find_map(|l| l.strip_prefix("built ")).expect("a `built` line");
    let (id, inputs) = line.split_once(" inputs ").unwrap_or_else(|| panic!("no inputs digest: {line}"));
    (id.to_string(), inputs.to_string())
}

fn built(host: &str) -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let repository = format!("netsec-test-{}", std::process::id());
        let output = succeed(&mut xtask(host, &["image", "--tag", &repository]));
        let stdout = text(&output.stdout);
        let (id, inputs) = built_line(&stdout);
        let name = stdout.lines().find_map(|l| l.strip_prefix("tagged ")).expect("a `tagged` line").to_string();
        Built { name, repository, id, inputs, stdout }
    })
}

/// A folder the image's user owns (it runs as uid 10001).
fn owned_dir(parent: &Path, name: &str) -> PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    chown_tree(&dir);
    dir
}

/// A container, removed (forcibly) when dropped.
struct Container {
    docker: Docker,
    id: String,
}

impl Container {
    fn start(docker: &Docker, image: &str, cmd: &[&str], binds: Vec<String>, env: Vec<String>) -> Container {
        let config = ContainerCreateBody {
            image: Some(image.into()),
            cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
            env: Some(env),
            host_config: Some(HostConfig {
                network_mode: Some("host".into()),
                binds: Some(binds),
                extra_hosts: Some(vec!["netsec-test.internal:127.0.0.1".into()]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let id = block_on(async {
            let created = docker.create_container(None, config).await.unwrap();
            docker.start_container(&created.id, None).await.unwrap();
            created.id
        });
        Container { docker: docker.clone(), id }
    }

    /// Waits for the container to exit; its exit code.
    fn wait(&self, timeout: Duration) -> i64 {
        let started = Instant::now();
        loop {
            let state = block_on(self.docker.inspect_container(&self.id, None)).unwrap().state.unwrap();
            if state.running == Some(false) {
                return state.exit_code.unwrap();
            }
            assert!(started.elapsed() < timeout, "the container still runs after {timeout:?}:\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn logs(&self) -> String {
        block_on(async {
            let options = LogsOptionsBuilder::default().stdout(true).stderr(true).build();
            let chunks: Vec<_> = self.docker.logs(&self.id, Some(options)).collect().await;
            chunks.into_iter().filter_map(Result::ok).map(|c| text(&c.into_bytes())).collect()
        })
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let options = RemoveContainerOptionsBuilder::default().force(true).build();
        let _ = block_on(self.docker.remove_container(&self.id, Some(options)));
    }
}

/// A client for the container's HTTP port. Built in a workspace, reqwest has netsec's
/// `rustls-no-provider` feature, so a crypto provider must be installed first (ring, as netsec).
fn http_client() -> reqwest::blocking::Client {
    install_ring();
    reqwest::blocking::Client::new()
}

fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn wait_ready(url: &str, container: &Container) {
    let started = Instant::now();
    let client = http_client();
    while client.get(format!("{url}/ready")).send().map(|r| r.status().as_u16()).ok() != Some(200) {
        assert!(started.elapsed() < Duration::from_secs(30), "not ready within 30 s:\n{}", container.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn netsec_version() -> String {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let line = manifest.lines().find(|l| l.starts_with("version = ")).unwrap();
    line.trim_start_matches("version = ").trim_matches('"').to_string()
}

#[test]
fn the_image_has_its_labels_user_entrypoint_and_is_small() {
    let host = require_engine!();
    let built = built(&host);
    let image = block_on(docker(&host).inspect_image(&built.name)).unwrap();
    assert_eq!(image.id.as_deref(), Some(built.id.as_str()));
    let latest = block_on(docker(&host).inspect_image(&format!("{}:latest", built.repository))).unwrap();
    assert_eq!(latest.id, image.id, "latest and the sha tag name one image");
    let config = image.config.unwrap();
    let labels = config.labels.unwrap();
    let label = |key: &str| labels.get(&format!("org.opencontainers.image.{key}")).cloned().unwrap_or_default();
    let head = text(&succeed(Command::new("git").current_dir(root()).args(["rev-parse", "HEAD"])).stdout);
    assert!(label("revision").starts_with(head.trim()), "revision {} vs HEAD {head}", label("revision"));
    assert!(built.name.ends_with(&format!(":{}", &head.trim()[..12])) || built.name.contains("-dirty"));
    assert_eq!(label("version"), netsec_version());
    let created = label("created");
    assert!(created.len() >= 20 && created.contains('T') && created.ends_with('Z'), "created {created:?}");
    assert!(!label("source").is_empty() && !label("source").contains('@'), "source {:?}", label("source"));
    assert_eq!(config.user.as_deref(), Some("10001:10001"));
    assert_eq!(config.entrypoint, Some(vec!["/usr/local/bin/netsec".to_string()]));
    assert_eq!(config.cmd, Some(vec!["serve".to_string()]));
    assert_eq!(labels.get("netsec.inputs"), Some(&built.inputs), "the inputs digest is a label");
    assert!(built.inputs.starts_with("sha256:") && built.inputs.len() == 71, "{}", built.inputs);
    let size = image.size.unwrap();
    assert!(size <= 25_000_000, "the image is {size} bytes, over 25 MB");
    assert!(built.stdout.contains(&format!("tagged {}:latest", built.repository)));
}

/// The engine's layer ids are not a function of the sources (COPY stamps the folders it makes
/// with the build's time), so "the same image" is the same inputs: a rebuild with no layer
/// cache, as on a fresh CI machine, has the inputs digest of the first build.
#[test]
fn a_rebuild_without_the_layer_cache_has_the_same_inputs() {
    let host = require_engine!();
    let built = built(&host);
    let name = format!("{}-cold", built.repository);
    let output = succeed(&mut xtask(&host, &["image", "--tag", &name, "--no-cache"]));
    let (id, inputs) = built_line(&text(&output.stdout));
    assert_ne!(id, built.id, "a new build is a new image (its created label)");
    assert_eq!(inputs, built.inputs, "the same sources are the same inputs");
    let layers = |image: &str| block_on(docker(&host).inspect_image(image)).unwrap().root_fs.unwrap().layers;
    // Shown, not asserted: the engine decides whether a fresh layer repeats an old one's id.
    eprintln!("layers: first build {:?}, cold rebuild {:?}", layers(&built.id), layers(&id));
    let inspected = block_on(docker(&host).inspect_image(&id)).unwrap();
    assert_eq!(inspected.config.unwrap().labels.unwrap().get("netsec.inputs"), Some(&inputs));
}

#[test]
fn the_container_serves_and_scores_a_csv_as_netsec_predict_does() {
    let host = require_engine!();
    let built = built(&host);
    let dir = tempfile::tempdir().unwrap();
    let store = model_store(dir.path());
    let addr = free_addr();
    let docker = docker(&host);
    let binds = vec![format!("{}:/models:ro", store.display())];
    let container = Container::start(&docker, &built.name, &["serve", "--addr", &addr.to_string()], binds, Vec::new());
    let url = format!("http://{addr}");
    wait_ready(&url, &container);

    let rows = shared_rows(20);
    let answer = http_client()
        .post(format!("{url}/predict"))
        .header("Content-Type", "text/csv")
        .header("Accept", "text/csv")
        .body(rows.clone())
        .send()
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let scored = answer.text().unwrap();
    assert_eq!(scored.lines().count(), 21, "{scored}");

    std::fs::write(dir.path().join("rows.csv"), &rows).unwrap();
    let mut predict = Command::new(staged_netsec());
    predict
        .current_dir(dir.path())
        .arg("--store")
        .arg(&store)
        .args(["predict", "--input", "rows.csv", "--output", "out.csv"]);
    succeed(&mut predict);
    assert_eq!(
        scored,
        std::fs::read_to_string(dir.path().join("out.csv")).unwrap(),
        "the container scores as netsec predict"
    );
}

#[test]
fn the_training_payload_runs_in_a_container() {
    let host = require_engine!();
    let built = built(&host);
    let dir = tempfile::tempdir().unwrap();
    let (models, artifacts) = (owned_dir(dir.path(), "models"), owned_dir(dir.path(), "artifacts"));
    let binds = vec![
        format!("{}:/data:ro", shared_data().display()),
        format!("{}:/models", models.display()),
        format!("{}:/artifacts", artifacts.display()),
    ];
    let env = vec![format!("NETSEC_TRAIN_MODELS={ONE_TREE}")];
    let container = Container::start(&docker(&host), &built.name, &["pipeline"], binds, env);
    assert_eq!(container.wait(Duration::from_secs(300)), 0, "{}", container.logs());
    assert!(models.join("current").is_file(), "no current model:\n{}", container.logs());
    let runs: Vec<_> = std::fs::read_dir(&artifacts).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert!(runs[0].join("manifest.json").is_file() && runs[0].join("train/model.bin").is_file());
}

/// `--run`: ready, then the URL; a container that cannot start shows its log.
#[test]
fn run_waits_for_ready_and_shows_the_log_of_a_failed_start() {
    let host = require_engine!();
    let built = built(&host);
    let dir = tempfile::tempdir().unwrap();
    let store = model_store(dir.path());
    let addr = free_addr().to_string();
    let name = format!("{}-run", built.repository);
    let args = ["image", "--tag", &name, "--run", "--addr", &addr, "--models"];
    let output = succeed(xtask(&host, &args).arg(&store));
    let docker = docker(&host);
    let container = Container { docker: docker.clone(), id: format!("netsec-{}", addr.rsplit(':').next().unwrap()) };
    assert!(text(&output.stdout).contains(&format!("running at http://{addr}")), "{}", text(&output.stdout));
    let ready = http_client().get(format!("http://{addr}/ready")).send().unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    drop(container);

    let addr = free_addr().to_string();
    let args = ["image", "--tag", &name, "--run", "--addr", &addr, "--models"];
    let output = xtask(&host, &args).arg(&store).env("NETSEC_TRAIN_FOLDS", "many").output().unwrap();
    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("exited") && stderr.contains("NETSEC_TRAIN_FOLDS"), "{stderr}");
}

/// The credentials of the harness's registry.
fn registry() -> (String, String, String) {
    (required("NETSEC_TEST_REGISTRY"), required("NETSEC_TEST_REGISTRY_USER"), required("NETSEC_TEST_REGISTRY_PASSWORD"))
}

fn registry_get(url: &str, user: &str, password: &str) -> Vec<u8> {
    let answer = http_client()
        .get(url)
        .basic_auth(user, Some(password))
        .header("Accept", "application/vnd.docker.distribution.manifest.v2+json")
        .send()
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200, "GET {url}");
    answer.bytes().unwrap().to_vec()
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn push_then_pull_back_by_digest_gives_the_built_image() {
    let host = require_engine!();
    let built = built(&host);
    let (registry, user, password) = registry();
    // A name of its own: each build gets a new `created` label, so a new id.
    let name = format!("{}-push", built.repository);
    let mut command = xtask(&host, &["image", "--tag", &name, "--push", &registry]);
    let output = succeed(command.env("NETSEC_REGISTRY_USER", &user).env("NETSEC_REGISTRY_PASSWORD", &password));
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    let (id, _) = built_line(&stdout);
    let id = id.as_str();
    assert!(!stdout.contains(&password) && !stderr.contains(&password), "the password was printed");
    let pushed: Vec<(&str, &str)> =
        stdout.lines().filter_map(|l| l.strip_prefix("pushed ")).filter_map(|l| l.split_once(" digest ")).collect();
    assert_eq!(pushed.len(), 2, "the sha and latest tags: {stdout}");
    assert_eq!(pushed[0].1, pushed[1].1, "both tags name one manifest");
    let digest = pushed[0].1;

    // Pulled back from the registry by digest, the manifest and its blobs are the built image.
    let repository = format!("http://{registry}/v2/{name}");
    let manifest = registry_get(&format!("{repository}/manifests/{digest}"), &user, &password);
    assert_eq!(sha256(&manifest), digest);
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    assert_eq!(config_digest, id, "the image id is its config's digest");
    let config = registry_get(&format!("{repository}/blobs/{config_digest}"), &user, &password);
    assert_eq!(sha256(&config), id);
    let config: serde_json::Value = serde_json::from_slice(&config).unwrap();
    let local = block_on(docker(&host).inspect_image(id)).unwrap();
    let diff_ids: Vec<String> = serde_json::from_value(config["rootfs"]["diff_ids"].clone()).unwrap();
    assert_eq!(Some(diff_ids), local.root_fs.unwrap().layers);
    for layer in manifest["layers"].as_array().unwrap() {
        let layer_digest = layer["digest"].as_str().unwrap();
        let blob = registry_get(&format!("{repository}/blobs/{layer_digest}"), &user, &password);
        assert_eq!(sha256(&blob), layer_digest);
    }
}

#[test]
fn a_wrong_password_fails_with_a_clear_error() {
    let host = require_engine!();
    let built = built(&host);
    let (registry, user, _) = registry();
    let wrong = "not+the/password?>";
    let name = format!("{}-wrong", built.repository);
    let mut command = xtask(&host, &["image", "--tag", &name, "--push", &registry]);
    let output = command.env("NETSEC_REGISTRY_USER", &user).env("NETSEC_REGISTRY_PASSWORD", wrong).output().unwrap();
    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("was refused") && stderr.contains("NETSEC_REGISTRY_PASSWORD"), "{stderr}");
    assert!(!stderr.contains(wrong) && !text(&output.stdout).contains(wrong), "the password was printed");
}

/// Why `cargo xtask image` re-encodes X-Registry-Auth: with bollard's own standard-base64
/// header the engine drops the credentials (the test password's encoding holds `+` and `/`).
#[test]
fn bollards_own_registry_header_loses_the_credentials() {
    use bollard::auth::DockerCredentials;
    use bollard::query_parameters::{PushImageOptionsBuilder, TagImageOptionsBuilder};
    let host = require_engine!();
    let built = built(&host);
    let (registry, user, password) = registry();
    let repository = format!("{registry}/{}-plain", built.repository);
    let docker = docker(&host);
    block_on(
        docker.tag_image(&built.name, Some(TagImageOptionsBuilder::default().repo(&repository).tag("plain").build())),
    )
    .unwrap();
    let credentials = DockerCredentials {
        username: Some(user),
        password: Some(password),
        serveraddress: Some(registry),
        ..Default::default()
    };
    let options = PushImageOptionsBuilder::default().tag("plain").build();
    let results: Vec<_> = block_on(docker.push_image(&repository, Some(options), Some(credentials)).collect());
    let error = results.into_iter().find_map(Result::err).expect("the push fails without URL-safe base64");
    let message = error.to_string().to_lowercase();
    assert!(message.contains("auth") || message.contains("unauthorized"), "{message}");
}

/// An HTTPS server on 127.0.0.1 for `netsec-test.internal`, with a certificate from a CA of
/// its own; it appends a line to a file for every request that got through the handshake.
const TLS_SERVER: &str = r#"
import http.server, ssl, sys
cert, key, seen = sys.argv[1:4]
class Handler(http.server.BaseHTTPRequestHandler):
    def answer(self):
        with open(seen, "a") as f: f.write(f"{self.command} {self.path}\n")
        self.send_response(404); self.send_header("Content-Length", "0"); self.end_headers()
    do_GET = do_PUT = do_HEAD = do_POST = answer
    def log_message(self, *args): pass
server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// A CA and a server certificate for `netsec-test.internal` signed by it, made with openssl.
fn test_ca(dir: &Path) {
    let openssl = |args: &[&str]| succeed(Command::new("openssl").current_dir(dir).args(args));
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        &[
            &["req", "-x509"],
            &ec[..],
            &["-subj", "/CN=netsec test CA", "-days", "2", "-keyout", "ca.key", "-out", "ca.pem"],
        ]
        .concat(),
    );
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=DNS:netsec-test.internal\nbasicConstraints=CA:FALSE\n")
        .unwrap();
    openssl(
        &[
            &["req", "-new"],
            &ec[..],
            &["-subj", "/CN=netsec-test.internal", "-keyout", "server.key", "-out", "server.csr"],
        ]
        .concat(),
    );
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.pem",
    ]);
}

/// A file of the image, read through a created (never started) container.
fn file_in_image(docker: &Docker, image: &str, path: &str) -> Vec<u8> {
    use bollard::query_parameters::DownloadFromContainerOptionsBuilder;
    use std::io::Read;
    let config = ContainerCreateBody { image: Some(image.into()), ..Default::default() };
    let id = block_on(docker.create_container(None, config)).unwrap().id;
    let container = Container { docker: docker.clone(), id };
    let options = DownloadFromContainerOptionsBuilder::default().path(path).build();
    let chunks: Vec<_> = block_on(docker.download_from_container(&container.id, Some(options)).collect());
    let archive: Vec<u8> = chunks.into_iter().flat_map(|c| c.unwrap().to_vec()).collect();
    let mut archive = tar::Archive::new(archive.as_slice());
    let mut entry = archive.entries().unwrap().next().expect("one file").unwrap();
    let mut data = Vec::new();
    entry.read_to_end(&mut data).unwrap();
    data
}

/// The TLS server, stopped when dropped.
struct TlsServer(std::process::Child);

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `netsec models list` in the image against an S3 endpoint named by a host name that only
/// the container's /etc/hosts knows, with `bundle` mounted over the image's CA certificates
/// (or the image's own); returns the container's exit code and log.
fn list_models_over_tls(host: &str, image: &str, port: &str, bundle: Option<&Path>) -> (i64, String) {
    let binds = bundle.map(|b| format!("{}:/etc/ssl/certs/ca-certificates.crt:ro", b.display())).into_iter().collect();
    let env = vec![
        format!("AWS_ENDPOINT_URL=https://netsec-test.internal:{port}"),
        "AWS_ACCESS_KEY_ID=netsec-test".into(),
        "AWS_SECRET_ACCESS_KEY=netsec-test".into(),
        "AWS_REGION=us-east-1".into(),
        "AWS_EC2_METADATA_DISABLED=true".into(),
        "AWS_MAX_ATTEMPTS=1".into(),
    ];
    let cmd = ["--store", "s3://netsec-test/models", "models", "list"];
    let container = Container::start(&docker(host), image, &cmd, binds, env);
    (container.wait(Duration::from_secs(60)), container.logs())
}

/// The static binary resolves names through the container's /etc/hosts and verifies TLS
/// endpoints against the certificate store at the image's path: with a bundle holding the
/// server's CA there, requests arrive; with the image's own bundle (public CAs), the
/// handshake is refused and none do.
#[test]
fn the_image_resolves_host_names_and_verifies_tls_with_its_certificate_store() {
    use std::io::BufRead;
    let host = require_engine!();
    let built = built(&host);
    let dir = tempfile::tempdir().unwrap();
    test_ca(dir.path());
    let seen = dir.path().join("seen.txt");
    let mut child = Command::new("python3")
        .args(["-c", TLS_SERVER])
        .args([dir.path().join("server.pem"), dir.path().join("server.key"), seen.clone()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut port).unwrap();
    let _server = TlsServer(child);
    let port = port.trim().to_string();
    assert!(port.parse::<u16>().is_ok(), "the TLS server did not start: {port:?}");
    let bundle = file_in_image(&docker(&host), &built.name, "/etc/ssl/certs/ca-certificates.crt");
    assert_eq!(
        bundle,
        std::fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap(),
        "the image carries the host's CAs"
    );

    let (_, log) = list_models_over_tls(&host, &built.name, &port, Some(&dir.path().join("ca.pem")));
    let requests = std::fs::read_to_string(&seen).unwrap_or_default();
    assert!(requests.contains("/netsec-test"), "no request reached the TLS server by name:\n{log}");

    std::fs::remove_file(&seen).unwrap();
    let (code, log) = list_models_over_tls(&host, &built.name, &port, None);
    assert_ne!(code, 0, "{log}");
    assert!(!seen.exists(), "a request passed an unknown CA:\n{log}");
}
