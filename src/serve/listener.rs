//! Binding (optionally with SO_REUSEPORT), the accept loop, and the graceful stop.
//!
//! The loop is ours rather than `axum::serve` because axum's gives no header-read timeout:
//! hyper's `header_read_timeout` is what closes a connection whose client sends its headers
//! too slowly (slowloris) or sits idle between requests.
//!
//! Start and stop are made for a hand-over between two processes sharing the port
//! (SO_REUSEPORT), the new one started beside the old one, which is then stopped:
//!
//! ```text
//!  start (with a probe port) ─► probe port listens; service port bound ─► model loaded ─► service port listens
//!  shutdown ─► close the listeners ─► drain: every answer says `Connection: close`, until no
//!              (new connections go     connection is left or --drain-timeout has passed
//!               to the other process)   ─► close what is idle, wait for the rest (--shutdown-timeout)
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::Response;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Notify;

use super::Options;

/// Connections waiting to be accepted before the kernel refuses more.
const BACKLOG: u32 = 1024;

/// How often the drain looks whether connections are still open (hyper-util's graceful
/// watcher counts them but cannot wait for the count to fall without closing them).
const DRAIN_POLL: Duration = Duration::from_millis(10);

/// Binds `addr`; with `reuse_port`, other processes binding with SO_REUSEPORT share the port,
/// which lets a new server start before the old one leaves.
pub fn bind(addr: SocketAddr, reuse_port: bool) -> anyhow::Result<TcpListener> {
    Ok(bind_socket(addr, reuse_port)?.listen(BACKLOG)?)
}

/// Binds `addr` without listening yet: the address is ours (or refused) at once, but no
/// connection comes to the socket before it listens.
fn bind_socket(addr: SocketAddr, reuse_port: bool) -> anyhow::Result<TcpSocket> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    if reuse_port {
        socket.set_reuseport(true).context("setting SO_REUSEPORT")?;
    }
    socket.bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    Ok(socket)
}

/// The service listener and, optionally, the probe listener: a port of this process alone
/// (bound without SO_REUSEPORT), so that a probe reaches this process and not another one
/// sharing the service port.
///
/// With a probe listener, the service port listens only once the server is ready: until then
/// the process sharing the port (the one being replaced) gets all of its connections, rather
/// than a share of them being answered 503 by a server that has no model (or never will).
pub struct Listeners {
    addr: SocketAddr,
    /// The service socket, bound, while it waits for the server to be ready.
    waiting: Option<TcpSocket>,
    service: Option<TcpListener>,
    probe: Option<TcpListener>,
}

/// What the accept loop waits for.
enum Event {
    Accepted(std::io::Result<TcpStream>),
    Ready,
    Shutdown,
}

impl Listeners {
    /// Binds the service address and the probe address (if any). Without a probe listener
    /// the service socket listens at once; with one, after [`Listeners::listen`].
    pub fn bind(addr: SocketAddr, reuse_port: bool, probe: Option<SocketAddr>) -> anyhow::Result<Listeners> {
        let socket = bind_socket(addr, reuse_port)?;
        let addr = socket.local_addr()?;
        let probe = probe.map(|probe| bind(probe, false)).transpose()?;
        let mut listeners = Listeners { addr, waiting: Some(socket), service: None, probe };
        if listeners.probe.is_none() {
            listeners.listen()?;
        }
        Ok(listeners)
    }

    pub fn service_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn probe_addr(&self) -> Option<SocketAddr> {
        self.probe.as_ref().map(|probe| probe.local_addr().expect("a bound listener has an address"))
    }

    /// Starts listening on the service socket (if it was waiting).
    pub fn listen(&mut self) -> anyhow::Result<()> {
        if let Some(socket) = self.waiting.take() {
            let listener = socket.listen(BACKLOG).with_context(|| format!("cannot listen on {}", self.addr))?;
            self.service = Some(listener);
        }
        Ok(())
    }

    /// The next connection from either listener, the server turning ready (while the service
    /// socket waits for it), or the shutdown.
    async fn next(&self, ready: &Notify, shutdown: Pin<&mut impl Future<Output = ()>>) -> Event {
        tokio::select! {
            accepted = accept(&self.service) => Event::Accepted(accepted),
            accepted = accept(&self.probe) => Event::Accepted(accepted),
            () = ready.notified(), if self.waiting.is_some() => Event::Ready,
            () = shutdown => Event::Shutdown,
        }
    }
}

/// The next connection of `listener`; pending forever without one.
async fn accept(listener: &Option<TcpListener>) -> std::io::Result<TcpStream> {
    match listener {
        Some(listener) => listener.accept().await.map(|(stream, _)| stream),
        None => std::future::pending().await,
    }
}

/// Accepts connections until `shutdown` completes (the service socket starts listening when
/// `ready` is notified, if it waits for that); then closes the listeners (new connections
/// are refused, or go to another process sharing the port), drains the open connections (see
/// the module's documentation), and returns once all connections have closed or
/// `options.shutdown_timeout` has passed.
pub async fn serve(
    mut listeners: Listeners,
    router: axum::Router,
    options: &Options,
    ready: &Notify,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let draining = Arc::new(AtomicBool::new(false));
    let router = router.layer(middleware::from_fn_with_state(draining.clone(), close_when_draining));
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(options.header_timeout).keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let stream = match listeners.next(ready, shutdown.as_mut()).await {
            Event::Shutdown => break,
            Event::Ready => {
                listeners.listen()?;
                tracing::info!(addr = %listeners.service_addr(), "ready: listening on the service address");
                continue;
            }
            Event::Accepted(Ok(stream)) => stream,
            Event::Accepted(Err(error)) => {
                // Out of file descriptors and the like: back off rather than spin.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Answers are small and written whole: do not let Nagle hold them back.
        let _ = stream.set_nodelay(true);
        let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    drop(listeners);
    let started = Instant::now();
    draining.store(true, Ordering::Relaxed);
    tracing::info!(connections = graceful.count(), "stopped accepting; draining the open connections");
    drain(&graceful, options.drain_timeout.min(options.shutdown_timeout)).await;
    // What is left: idle connections are closed now, requests in flight get the rest of the
    // shutdown timeout.
    let rest = options.shutdown_timeout.saturating_sub(started.elapsed());
    tracing::info!(connections = graceful.count(), "waiting for requests in flight");
    if tokio::time::timeout(rest, graceful.shutdown()).await.is_err() {
        tracing::warn!("requests still in flight after the shutdown timeout were abandoned");
    }
    Ok(())
}

/// Waits until no connection is open or `limit` has passed. Meanwhile every answer closes its
/// connection, so a keep-alive client learns of the stop from an answer and reconnects (to
/// the other process sharing the port) instead of having its next request cut off: closing
/// an idle keep-alive connection at once races with the client writing its next request,
/// which then fails.
async fn drain(graceful: &GracefulShutdown, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while graceful.count() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(DRAIN_POLL).await;
    }
}

/// While draining, every answer carries `Connection: close`: hyper closes the connection
/// once the answer is written.
async fn close_when_draining(State(draining): State<Arc<AtomicBool>>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    if draining.load(Ordering::Relaxed) {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
