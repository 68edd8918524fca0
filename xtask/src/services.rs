//! Local stand-ins for the real services the tests talk to, started and stopped by the harness.
//!
//! Adding a service is one function that starts it and returns a [`Service`]: the process to
//! stop and the environment variables that tell the tests where it is. Every service binds to
//! 127.0.0.1 on a free port and keeps its state in a temporary folder removed at the end.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

pub struct Service {
    pub name: &'static str,
    /// Variables that point the tests at the service.
    pub env: Vec<(String, String)>,
    process: Option<Child>,
    state_dir: Option<PathBuf>,
}

impl Service {
    #[allow(dead_code)] // the first service (a later issue) will use it
    pub fn new(name: &'static str, process: Child, state_dir: PathBuf, env: Vec<(String, String)>) -> Service {
        Service { name, env, process: Some(process), state_dir: Some(state_dir) }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            // SIGTERM first so the service can flush; the harness does not wait long.
            unsafe { libc::kill(process.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(process.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = process.kill();
            let _ = process.wait();
        }
        if let Some(dir) = self.state_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
        eprintln!("xtask: stopped {}", self.name);
    }
}

/// The services the test suite needs, started in order; dropped (stopped) in reverse.
pub fn start_all() -> anyhow::Result<Vec<Service>> {
    // Later issues add MongoDB (SecantusDB), moto, mlflow, dockerd and a registry here.
    Ok(Vec::new())
}

/// A free TCP port on the loopback interface.
#[allow(dead_code)]
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until something accepts connections on `port`, or fails after `timeout`.
#[allow(dead_code)]
pub fn wait_for_port(name: &str, port: u16, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    anyhow::bail!("{name} did not listen on 127.0.0.1:{port} within {timeout:?}")
}
