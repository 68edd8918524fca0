//! `cargo xtask bench image`: the service image's size, how long `cargo xtask image` takes with
//! a warm cargo cache (engine layer cache warm, then off), and container start to `/ready`,
//! beside the targets and the Python original's image (python:3.10-slim + awscli, over 1.2 GB).
//!
//! Uses the engine DOCKER_HOST names, or starts one of its own as the test harness does.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::RemoveContainerOptionsBuilder;

use super::tempdir;
use crate::image::{self, block_on, Engine, ImageNames};
use crate::{run_command, services, shared_dir};

const BUILDS: usize = 3;
const STARTS: usize = 5;

pub fn run() -> anyhow::Result<()> {
    let _engine_service = match std::env::var("DOCKER_HOST") {
        Ok(_) => None,
        Err(_) => {
            let service = services::dockerd()?;
            for (key, value) in &service.env {
                std::env::set_var(key, value);
            }
            Some(service)
        }
    };
    let work = tempdir("bench-image")?;
    let result = block_on(measure(&work));
    let _ = std::fs::remove_dir_all(&work);
    let figures = result?;
    println!("\ncargo xtask bench image: the service image through the Docker Engine API ({} cores)", super::cores());
    println!("{:<44} {:>10}   {:<12} original", "measure", "netsec", "target");
    println!("{:<44} {:>7.1} MB   {:<12} over 1.2 GB", "image size", figures.size_bytes as f64 / 1e6, "≤ 25 MB");
    let seconds = |d: Duration| format!("{:.2} s", d.as_secs_f64());
    println!(
        "{:<44} {:>10}   {:<12} docker build in CI",
        "build, warm cargo and layer caches",
        seconds(figures.build_warm),
        ""
    );
    println!("{:<44} {:>10}", "build, warm cargo cache, no layer cache", seconds(figures.build_no_cache));
    let ms = figures.start_to_ready.as_secs_f64() * 1e3;
    println!("{:<44} {:>7.0} ms   {:<12}", "container start to /ready (median)", ms, "≤ 300 ms");
    println!(
        "(builds: median of {BUILDS}, the whole `cargo xtask image` work; start: create + start, median of {STARTS})"
    );
    Ok(())
}

struct Figures {
    size_bytes: i64,
    build_warm: Duration,
    build_no_cache: Duration,
    start_to_ready: Duration,
}

async fn measure(work: &Path) -> anyhow::Result<Figures> {
    let engine = Engine::connect().await?;
    let names = ImageNames::new(&format!("netsec-bench-{}", std::process::id()))?;
    // The first build warms cargo's cache and the engine's.
    let id = image::build(&engine, &names, false).await?.id;
    let mut timings = (Vec::new(), Vec::new());
    for _ in 0..BUILDS {
        timings.0.push(timed(image::build(&engine, &names, false)).await?);
        timings.1.push(timed(image::build(&engine, &names, true)).await?);
    }
    let size_bytes = engine.docker.inspect_image(&id).await?.size.unwrap_or_default();
    let models = model_store(work)?;
    let mut starts = Vec::new();
    for _ in 0..STARTS {
        starts.push(start_to_ready(&engine, &names.sha_tagged(), &models).await?);
    }
    Ok(Figures {
        size_bytes,
        build_warm: median(timings.0),
        build_no_cache: median(timings.1),
        start_to_ready: median(starts),
    })
}

async fn timed<T>(future: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<Duration> {
    let started = Instant::now();
    future.await?;
    Ok(started.elapsed())
}

fn median(mut durations: Vec<Duration>) -> Duration {
    durations.sort();
    durations[durations.len() / 2]
}

/// A model store from one quick pipeline run of the staged static binary (one tree), owned
/// by the image's user.
fn model_store(work: &Path) -> anyhow::Result<std::path::PathBuf> {
    let store = work.join("models");
    let mut command = Command::new(crate::project_root().join("target/image/netsec"));
    command.current_dir(work).env("NETSEC_TRAIN_MODELS", "{decision_tree: {criterion: [gini]}}");
    command.arg("--store").arg(&store).arg("--artifacts").arg(work.join("artifacts"));
    command.arg("pipeline").arg("--source").arg(shared_dir().join("data/phishing.csv"));
    run_command(command.stdout(std::process::Stdio::null()))?;
    run_command(Command::new("chown").args(["-R", "10001:10001"]).arg(&store))?;
    Ok(store)
}

/// Create + start of a serving container, until `/ready` answers 200; the container is removed.
async fn start_to_ready(engine: &Engine, image: &str, models: &Path) -> anyhow::Result<Duration> {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let config = ContainerCreateBody {
        image: Some(image.into()),
        cmd: Some(vec!["serve".into(), "--addr".into(), addr.to_string()]),
        host_config: Some(HostConfig {
            network_mode: Some("host".into()),
            binds: Some(vec![format!("{}:/models:ro", models.display())]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let started = Instant::now();
    let id = engine.docker.create_container(None, config).await?.id;
    let result = async {
        engine.docker.start_container(&id, None).await?;
        image::wait_ready(engine, &id, addr, Duration::from_secs(30)).await
    }
    .await;
    let elapsed = started.elapsed();
    if result.is_err() {
        eprintln!("xtask: the container's log:\n{}", image::logs(engine, &id).await);
    }
    let _ =
        engine.docker.remove_container(&id, Some(RemoveContainerOptionsBuilder::default().force(true).build())).await;
    result.map(|_| elapsed)
}
