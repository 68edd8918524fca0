//! Binding (optionally with SO_REUSEPORT), the accept loop, and the graceful stop.
//!
//! The loop is ours rather than `axum::serve` because axum's gives no header-read timeout:
//! hyper's `header_read_timeout` is what closes a connection whose client sends its headers
//! too slowly (slowloris) or sits idle between requests.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket};

use super::Options;

/// Connections waiting to be accepted before the kernel refuses more.
const BACKLOG: u32 = 1024;

/// Binds `addr`; with `reuse_port`, other processes binding with SO_REUSEPORT share the port,
/// which lets a new server start before the old one leaves.
pub fn bind(addr: SocketAddr, reuse_port: bool) -> anyhow::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    if reuse_port {
        socket.set_reuseport(true).context("setting SO_REUSEPORT")?;
    }
    socket.bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    Ok(socket.listen(BACKLOG)?)
}

/// Accepts connections until `shutdown` completes; then closes the listener (new connections
/// are refused), lets every request in flight finish, and returns once all connections have
/// closed or `options.shutdown_timeout` has passed.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    options: &Options,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(options.header_timeout).keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
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
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let open = graceful.count();
    tracing::info!(connections = open, "stopped accepting; waiting for requests in flight");
    if tokio::time::timeout(options.shutdown_timeout, graceful.shutdown()).await.is_err() {
        tracing::warn!("requests still in flight after the shutdown timeout were abandoned");
    }
    Ok(())
}
