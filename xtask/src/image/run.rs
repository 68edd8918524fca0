//! `cargo xtask image --run`: the image as a container on the host's network, with the model
//! store mounted and the NETSEC_* variables passed on, left running once `/ready` answers.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder};
use futures_util::StreamExt;

use super::engine::Engine;
use crate::http_status;

/// How long a container gets to answer `/ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts `image` serving on `addr` with `models` at /models; returns the URL once ready.
pub async fn start(engine: &Engine, image: &str, models: &Path, addr: SocketAddr) -> anyhow::Result<String> {
    std::fs::create_dir_all(models)?;
    let models = std::fs::canonicalize(models)?;
    // Registry credentials and the config path are the toolkit's and the image's own.
    let env = std::env::vars()
        .filter(|(k, _)| k.starts_with("NETSEC_") && !k.starts_with("NETSEC_REGISTRY_") && k != "NETSEC_CONFIG")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let name = format!("netsec-{}", addr.port());
    let config = ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: Some(vec!["serve".into(), "--addr".into(), addr.to_string()]),
        env: Some(env),
        host_config: Some(HostConfig {
            network_mode: Some("host".into()),
            binds: Some(vec![format!("{}:/models", models.display())]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let options = CreateContainerOptionsBuilder::default().name(&name).build();
    let created = engine.docker.create_container(Some(options), config).await.map_err(|e| {
        anyhow::anyhow!("cannot create the container {name} ({e}); an old one is removed with `docker rm -f {name}`")
    })?;
    engine.docker.start_container(&created.id, None).await?;
    if let Err(error) = wait_ready(engine, &created.id, addr, READY_TIMEOUT).await {
        eprintln!("xtask: the container's log:\n{}", logs(engine, &created.id).await);
        let options = RemoveContainerOptionsBuilder::default().force(true).build();
        let _ = engine.docker.remove_container(&created.id, Some(options)).await;
        return Err(error);
    }
    eprintln!("xtask: container {name} serves {}; stop it with `docker rm -f {name}`", models.display());
    Ok(format!("http://{addr}"))
}

/// Waits until `/ready` on `addr` answers 200, failing early when the container exits.
pub async fn wait_ready(engine: &Engine, container: &str, addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        if tokio::task::spawn_blocking(move || http_status(addr, "/ready")).await? == Some(200) {
            return Ok(());
        }
        let state = engine.docker.inspect_container(container, None).await?.state.unwrap_or_default();
        if state.running == Some(false) {
            anyhow::bail!("the container exited (code {}) before it was ready", state.exit_code.unwrap_or(-1));
        }
        anyhow::ensure!(started.elapsed() < timeout, "the container was not ready on {addr} within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The container's standard output and error so far.
pub async fn logs(engine: &Engine, container: &str) -> String {
    let options = LogsOptionsBuilder::default().stdout(true).stderr(true).build();
    let mut stream = engine.docker.logs(container, Some(options));
    let mut text = String::new();
    while let Some(Ok(chunk)) = stream.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
    }
    text
}
