//! `netsec serve`: the HTTP service. Scores CSV uploads and JSON rows with the model store's
//! current model, retrains on an authenticated request, reloads the model when the store's
//! `current` changes, and reports itself (health, readiness, Prometheus metrics, OpenAPI).
//!
//! ```text
//!  listener (accept, header timeout, graceful stop) ─► routes ─► predict / train / page / …
//!                                                        │
//!  reload (polls the store) ─► ModelSlot (Arc, swapped atomically) ◄── every prediction
//! ```
//!
//! The model is an `Arc` behind [`arc_swap`]: a request takes it with one atomic load and keeps
//! it to the end, so a reload never blocks or disturbs requests in flight.

mod answer;
mod body;
mod error;
mod inference;
mod invocations;
mod json_rows;
mod listener;
mod metrics;
mod openapi;
mod page;
mod predict;
mod reload;
mod routes;
mod train;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::store::{self, ModelStore};

pub use reload::{ModelSlot, ServedModel};

/// The default size limit of a request body: 50 MB.
pub const DEFAULT_BODY_LIMIT: usize = 50_000_000;

/// `netsec serve`'s options (the store is the global `--store`, or `train.store`).
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:8080", value_name = "HOST:PORT")]
    pub addr: SocketAddr,
    /// Bind with SO_REUSEPORT, so that a new process can take over the port before this one
    /// leaves (both accept connections meanwhile).
    #[arg(long)]
    pub reuse_port: bool,
    /// Also serve on this address, bound without SO_REUSEPORT: a port of this process alone,
    /// where a health check reaches it and not another process sharing --addr (an update
    /// probes the new process there before stopping the old one). With it, --addr listens
    /// only once a model is loaded (/ready): until then its connections all go to the other
    /// processes sharing the port.
    #[arg(long, value_name = "HOST:PORT")]
    pub probe_addr: Option<SocketAddr>,
    /// Largest request body, e.g. 50MB, 8MiB or 1000000 (bytes); larger ones get 413.
    #[arg(long, default_value = "50MB", value_parser = parse_size)]
    pub body_limit: usize,
    /// Most rows one request may score; more get 413.
    #[arg(long, default_value_t = 1_000_000)]
    pub max_rows: usize,
    /// Seconds between two looks at the store's current version.
    #[arg(long, default_value_t = 5.0, value_parser = parse_seconds)]
    pub poll_interval: f64,
    /// Seconds a client has to send a request's headers (also how long an idle connection
    /// is kept open).
    #[arg(long, default_value_t = 30.0, value_parser = parse_seconds)]
    pub header_timeout: f64,
    /// Seconds a client has to send a request's whole body; slower ones get 408.
    #[arg(long, default_value_t = 60.0, value_parser = parse_seconds)]
    pub body_timeout: f64,
    /// Seconds requests in flight get to finish after SIGTERM.
    #[arg(long, default_value_t = 30.0, value_parser = parse_seconds)]
    pub shutdown_timeout: f64,
    /// Seconds after SIGTERM during which every answer says `Connection: close`, so that
    /// keep-alive clients reconnect (to a process sharing the port) before the idle
    /// connections are closed; it ends early once no connection is open. Counted within
    /// --shutdown-timeout.
    #[arg(long, default_value_t = 2.0, value_parser = parse_seconds)]
    pub drain_timeout: f64,
    /// Threads that serve connections: they read requests, score small ones and write the
    /// answers, while large uploads are scored on a pool of one thread per core. Default: one
    /// per core (or TOKIO_WORKER_THREADS).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub io_threads: Option<u16>,
}

/// A secret that never shows in `Debug` output (and so in no log line).
#[derive(Clone)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Everything the server needs, for the binary and for tests.
#[derive(Debug, Clone)]
pub struct Options {
    pub addr: SocketAddr,
    pub reuse_port: bool,
    /// A second listener of this process alone (no SO_REUSEPORT), for probes.
    pub probe_addr: Option<SocketAddr>,
    pub body_limit: usize,
    pub max_rows: usize,
    pub poll_interval: Duration,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub shutdown_timeout: Duration,
    /// How long the stop waits for keep-alive clients to take their `Connection: close`
    /// before closing idle connections (within `shutdown_timeout`).
    pub drain_timeout: Duration,
    /// Bodies up to this size are scored on the request's own task; larger ones on rayon's
    /// pool, so that a big upload never stalls the small requests sharing a worker.
    pub inline_body_limit: usize,
    /// `NETSEC_ADMIN_TOKEN`: POST /train and GET /train/{id} exist only when set.
    pub admin_token: Option<Secret>,
    /// The configuration POST /train runs the pipeline with.
    pub train_config: Config,
}

impl Options {
    /// The defaults of `netsec serve`, training with `train_config`.
    pub fn new(train_config: Config) -> Options {
        Options {
            addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
            reuse_port: false,
            probe_addr: None,
            body_limit: DEFAULT_BODY_LIMIT,
            max_rows: 1_000_000,
            poll_interval: Duration::from_secs(5),
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(2),
            // About 100 rows of CSV: a few tens of microseconds of scoring.
            inline_body_limit: 8 * 1024,
            admin_token: None,
            train_config,
        }
    }

    fn from_args(config: Config, args: &ServeArgs, admin_token: Option<String>) -> Options {
        Options {
            addr: args.addr,
            reuse_port: args.reuse_port,
            probe_addr: args.probe_addr,
            body_limit: args.body_limit,
            max_rows: args.max_rows,
            poll_interval: Duration::from_secs_f64(args.poll_interval),
            header_timeout: Duration::from_secs_f64(args.header_timeout),
            body_timeout: Duration::from_secs_f64(args.body_timeout),
            shutdown_timeout: Duration::from_secs_f64(args.shutdown_timeout),
            drain_timeout: Duration::from_secs_f64(args.drain_timeout),
            admin_token: admin_token.filter(|t| !t.is_empty()).map(Secret),
            ..Options::new(config)
        }
    }
}

/// `netsec serve`: runs until SIGTERM or Ctrl-C, then lets requests in flight finish.
pub fn run(config: Config, args: ServeArgs) -> anyhow::Result<()> {
    let options = Options::from_args(config, &args, std::env::var("NETSEC_ADMIN_TOKEN").ok());
    let store: Arc<ModelStore> = Arc::new(store::open(&options.train_config.train.store)?);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.io_threads {
        runtime.worker_threads(n.into());
    }
    let runtime = runtime.enable_all().build()?;
    let result = runtime.block_on(async {
        // A clone: the last reference stays out here, because a store's client (its own
        // runtime, or blocking reqwest's) must not be dropped inside an async context.
        let server = Server::bind(options, store.clone()).await?;
        let training = if server.state.trainer.enabled() { "on" } else { "off (NETSEC_ADMIN_TOKEN is not set)" };
        let addr = server.local_addr();
        match server.probe_addr() {
            Some(probe) if server.state.model.version().is_none() => eprintln!(
                "netsec serve: probe listener on http://{probe}; http://{addr} opens once a model is loaded (POST /train: {training})"
            ),
            Some(probe) => {
                eprintln!("netsec serve: listening on http://{addr} (POST /train: {training}), probe listener on http://{probe}")
            }
            None => eprintln!("netsec serve: listening on http://{addr} (POST /train: {training})"),
        }
        server.run(shutdown_signal()).await
    });
    // A training run still going is abandoned: the pipeline writes atomically, so its run
    // folder and the store stay consistent.
    runtime.shutdown_timeout(Duration::from_secs(1));
    drop(store);
    result
}

/// A bound server, not yet serving; tests bind to port 0 and read the port from here.
pub struct Server {
    listeners: listener::Listeners,
    state: Arc<routes::AppState>,
    store: Arc<ModelStore>,
}

impl Server {
    /// Binds the address and loads the store's current model (if it has one and it passes
    /// its checks; otherwise the server starts unready and keeps polling).
    pub async fn bind(options: Options, store: Arc<ModelStore>) -> anyhow::Result<Server> {
        let mut listeners = listener::Listeners::bind(options.addr, options.reuse_port, options.probe_addr)?;
        let state = Arc::new(routes::AppState::new(options));
        reload::reload_once(&state, &store).await;
        if state.model.version().is_some() {
            listeners.listen()?;
        }
        Ok(Server { listeners, state, store })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listeners.service_addr()
    }

    /// The probe listener's address (`--probe-addr`), if there is one.
    pub fn probe_addr(&self) -> Option<SocketAddr> {
        self.listeners.probe_addr()
    }

    /// Serves until `shutdown` completes, then stops accepting and waits (up to the shutdown
    /// timeout) for the requests in flight.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let (stop_polling, polling_stopped) = tokio::sync::watch::channel(false);
        let poller = tokio::spawn(reload::poll(self.state.clone(), self.store.clone(), polling_stopped));
        let router = routes::router(self.state.clone());
        let result =
            listener::serve(self.listeners, router, &self.state.options, &self.state.model.loaded, shutdown).await;
        let _ = stop_polling.send(true);
        let _ = poller.await;
        result
    }
}

/// Completes on SIGTERM or Ctrl-C (SIGINT).
async fn shutdown_signal() {
    let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the server");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = terminate.recv() => eprintln!("netsec serve: SIGTERM, finishing the requests in flight"),
        _ = tokio::signal::ctrl_c() => eprintln!("netsec serve: interrupted, finishing the requests in flight"),
    }
}

/// A size with an optional unit: `50MB`, `8MiB`, `512k`, `1000000`.
fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| format!("`{text}` is not a size (e.g. 50MB, 8MiB, 1000000)"))?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        other => return Err(format!("unknown size unit `{other}` (use B, KB, MB, GB, KiB, MiB or GiB)")),
    };
    let bytes = number * scale;
    if !(1.0..=usize::MAX as f64).contains(&bytes) {
        return Err(format!("`{text}` is not a usable size"));
    }
    Ok(bytes as usize)
}

/// Seconds, positive and finite.
fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s < 1e9 => Ok(s),
        _ => Err(format!("`{text}` is not a positive number of seconds")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_decimal_and_binary_units() {
        assert_eq!(parse_size("50MB"), Ok(50_000_000));
        assert_eq!(parse_size("8MiB"), Ok(8 << 20));
        assert_eq!(parse_size("512k"), Ok(512_000));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("10 parsecs").unwrap_err().contains("unknown size unit"));
        assert!(parse_size("0").is_err());
        assert!(parse_size("MB").is_err());
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let mut options = Options::new(Config::default());
        options.admin_token = Some(Secret("hunter2-token".into()));
        assert!(!format!("{options:?}").contains("hunter2"));
    }

    #[test]
    fn io_threads_are_one_or_more() {
        #[derive(clap::Parser)]
        struct Serve {
            #[command(flatten)]
            args: ServeArgs,
        }
        let parse = |n: &str| <Serve as clap::Parser>::try_parse_from(["serve", "--io-threads", n]).map(|s| s.args);
        assert_eq!(parse("3").unwrap().io_threads, Some(3));
        assert!(parse("0").is_err());
    }

    #[test]
    fn an_empty_token_turns_training_off() {
        let args = ServeArgs {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            reuse_port: false,
            probe_addr: None,
            body_limit: 1,
            max_rows: 1,
            poll_interval: 1.0,
            header_timeout: 1.0,
            body_timeout: 1.0,
            shutdown_timeout: 1.0,
            drain_timeout: 1.0,
            io_threads: None,
        };
        assert!(Options::from_args(Config::default(), &args, Some(String::new())).admin_token.is_none());
        assert!(Options::from_args(Config::default(), &args, Some("t".into())).admin_token.is_some());
    }
}
