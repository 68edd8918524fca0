//! `cargo xtask bench serve`: wrk against `netsec serve` (release build) on loopback, beside
//! the targets and the Python original's figures (FastAPI + pandas + RandomForest-128).
//!
//! wrk and the server share the machine's cores, as they did when the original was measured.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{cores, release_binary, tempdir};
use crate::{http_status, run_command, shared_dir};

/// Connections wrk keeps open (the issue's figure).
const CONNECTIONS: u32 = 64;

pub struct Settings {
    /// Seconds of each throughput run.
    pub seconds: u32,
    /// Seconds of the memory run.
    pub soak_seconds: u32,
    /// `train.models` for the pipeline run that makes the served model (default: every
    /// family, as `netsec pipeline` chooses).
    pub models: Option<String>,
}

pub fn run(settings: Settings) -> anyhow::Result<()> {
    let netsec = release_binary()?;
    let wrk = ensure_wrk()?;
    let work = tempdir("bench-serve")?;
    let model = train(&netsec, &work, settings.models.as_deref())?;
    let bodies = Bodies::write(&work)?;
    let server = Server::start(&netsec, &work)?;
    println!(
        "\ncargo xtask bench serve: netsec serve (release) with {model}; wrk -t2 -c{CONNECTIONS} on loopback, {} cores shared",
        cores()
    );
    println!("{:<32} {:>10} {:>9} {:>11}   {:<34} original (FastAPI)", "case", "req/s", "p99 ms", "rows/s", "target");
    let one = wrk_run(&wrk, &server.url, &bodies.one_row, settings.seconds)?;
    print_row("one-row CSV upload", &one, 1, "≥ 20,000 req/s, p99 < 5 ms", "95 req/s");
    let batch = wrk_run(&wrk, &server.url, &bodies.thousand_rows, settings.seconds)?;
    print_row("1,000-row CSV, CSV answer", &batch, 1000, "≥ 500,000 rows/s", "7,700 rows/s");
    // The scoring protocols against netsec's own JSON route, one row each, in interleaved
    // rounds: a 10% target needs more than one run of each, as the machine's noise is as large.
    let scripts = [&bodies.one_row_json, &bodies.one_row_mlflow, &bodies.one_row_oip];
    let [json, mlflow, oip] = interleaved(&wrk, &server.url, scripts, settings.seconds)?;
    print_row("one-row JSON /predict/json", &json, 1, "the reference of the next two", "");
    let within = format!("≥ {:.0} req/s (within 10%)", json.requests_per_second * 0.9);
    print_row("one-row MLflow /invocations", &mlflow, 1, &within, "");
    print_row("one-row OIP /v2/.../infer", &oip, 1, &within, "");

    let start = server.rss_bytes()?;
    let soak = wrk_run(&wrk, &server.url, &bodies.mixed, settings.soak_seconds)?;
    let end = server.rss_bytes()?;
    println!(
        "memory over a {} s run ({:.0} req/s, one-row and 1,000-row bodies alternating): RSS {:.1} MiB at start, \
         {:.1} MiB at the end (target: flat)",
        settings.soak_seconds,
        soak.requests_per_second,
        mib(start),
        mib(end)
    );
    server.stop()?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

fn print_row(case: &str, result: &WrkResult, rows: u64, target: &str, original: &str) {
    println!(
        "{case:<32} {:>10.0} {:>9.2} {:>11.0}   {target:<34} {original}",
        result.requests_per_second,
        result.p99.as_secs_f64() * 1e3,
        result.requests_per_second * rows as f64
    );
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// wrk, installed from Debian's packages when missing.
fn ensure_wrk() -> anyhow::Result<PathBuf> {
    let found = |path: &str| Path::new(path).is_file().then(|| PathBuf::from(path));
    if let Some(path) = found("/usr/bin/wrk").or_else(|| found("/usr/local/bin/wrk")) {
        return Ok(path);
    }
    eprintln!("xtask: installing wrk (apt-get)");
    run_command(Command::new("apt-get").args(["install", "-y", "-q", "wrk"]).stdout(Stdio::null())).or_else(|_| {
        run_command(Command::new("apt-get").args(["update", "-q"]).stdout(Stdio::null()))?;
        run_command(Command::new("apt-get").args(["install", "-y", "-q", "wrk"]).stdout(Stdio::null()))
    })?;
    found("/usr/bin/wrk").ok_or_else(|| anyhow::anyhow!("wrk is not installed"))
}

/// Runs the pipeline once into a fresh store and returns what it chose.
fn train(netsec: &Path, work: &Path, models: Option<&str>) -> anyhow::Result<String> {
    let mut command = Command::new(netsec);
    command.args(["--log-format", "json", "pipeline", "--source"]).arg(shared_dir().join("data/phishing.csv"));
    command.arg("--artifacts").arg(work.join("runs")).arg("--store").arg(work.join("models"));
    if let Some(models) = models {
        command.env("NETSEC_TRAIN_MODELS", models);
    }
    let output = command.stderr(Stdio::inherit()).output()?;
    anyhow::ensure!(output.status.success(), "netsec pipeline failed");
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let chosen = &summary["train"]["chosen"];
    let family = chosen["family"].as_str().unwrap_or("the pipeline's model");
    let params = chosen.get("params").map(|p| format!(" {p}")).unwrap_or_default();
    Ok(format!("the pipeline's model ({family}{params})"))
}

/// The request bodies, cut from the shared data set, and wrk scripts posting them.
struct Bodies {
    one_row: Script,
    thousand_rows: Script,
    mixed: Script,
    one_row_json: Script,
    one_row_mlflow: Script,
    one_row_oip: Script,
}

/// A wrk script and the route it posts to.
struct Script {
    lua: PathBuf,
    route: &'static str,
}

impl Bodies {
    fn write(work: &Path) -> anyhow::Result<Bodies> {
        let text = std::fs::read_to_string(shared_dir().join("data/phishing.csv"))?;
        let lines: Vec<&str> = text.lines().collect();
        let csv = |n: usize| lines[..=n].iter().map(|l| format!("{l}\n")).collect::<String>();
        let header: Vec<&str> = lines[0].split(',').collect();
        let columns = &header[..header.len() - 1];
        let cells: Vec<&str> = lines[1].split(',').collect();
        let row = format!("[{}]", cells[..cells.len() - 1].join(","));
        let write = |name: &str, body: String| -> anyhow::Result<PathBuf> {
            let path = work.join(name);
            std::fs::write(&path, body)?;
            Ok(path)
        };
        let one = write("one.csv", csv(1))?;
        let thousand = write("thousand.csv", csv(1000))?;
        let json = write("one.json", format!("[{row}]"))?;
        let mlflow = write(
            "one-mlflow.json",
            format!("{{\"dataframe_split\": {{\"columns\": [{}], \"data\": [{row}]}}}}", columns.join(",")),
        )?;
        let oip = write(
            "one-oip.json",
            format!("{{\"inputs\": [{{\"name\": \"input\", \"shape\": [1, {}], \"datatype\": \"INT64\", \"data\": {row}}}]}}", columns.len()),
        )?;
        let script = |name: &str, bodies: &[&Path], route: &'static str, content_type: &str, accept: &str| {
            let lua = work.join(name);
            std::fs::write(&lua, lua_script(bodies, content_type, accept))?;
            anyhow::Ok(Script { lua, route })
        };
        Ok(Bodies {
            one_row: script("one.lua", &[&one], "/predict", "text/csv", "text/csv")?,
            thousand_rows: script("thousand.lua", &[&thousand], "/predict", "text/csv", "text/csv")?,
            mixed: script("mixed.lua", &[&one, &thousand], "/predict", "text/csv", "text/csv")?,
            one_row_json: script("json.lua", &[&json], "/predict/json", "application/json", "application/json")?,
            one_row_mlflow: script("mlflow.lua", &[&mlflow], "/invocations", "application/json", "application/json")?,
            one_row_oip: script("oip.lua", &[&oip], "/v2/models/netsec/infer", "application/json", "application/json")?,
        })
    }
}

/// A wrk script posting the files in turn with `content_type`, asking for `accept`.
fn lua_script(bodies: &[&Path], content_type: &str, accept: &str) -> String {
    let reads: Vec<String> = bodies
        .iter()
        .map(|p| format!("(function() local f = assert(io.open({:?}, \"rb\")); local b = f:read(\"*a\"); f:close(); return b end)()", p.display().to_string()))
        .collect();
    format!(
        r#"wrk.method = "POST"
wrk.headers["Content-Type"] = "{content_type}"
wrk.headers["Accept"] = "{accept}"
local bodies = {{ {} }}
local requests = {{}}
function init(args)
  for i, body in ipairs(bodies) do
    wrk.body = body
    requests[i] = wrk.format()
  end
end
local n = 0
function request()
  n = n + 1
  return requests[(n % #requests) + 1]
end
"#,
        reads.join(", ")
    )
}

struct WrkResult {
    requests_per_second: f64,
    p99: Duration,
}

fn wrk_run(wrk: &Path, url: &str, script: &Script, seconds: u32) -> anyhow::Result<WrkResult> {
    let output = Command::new(wrk)
        .args(["-t2", &format!("-c{CONNECTIONS}"), &format!("-d{seconds}s"), "--latency", "-s"])
        .arg(&script.lua)
        .arg(format!("{url}{}", script.route))
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(output.status.success(), "wrk failed: {text}{}", String::from_utf8_lossy(&output.stderr));
    anyhow::ensure!(!text.contains("Non-2xx"), "the server answered errors under load:\n{text}");
    let requests_per_second = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no Requests/sec in wrk's output:\n{text}"))?;
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .and_then(|v| parse_duration(v.trim()))
        .ok_or_else(|| anyhow::anyhow!("no 99% latency in wrk's output:\n{text}"))?;
    Ok(WrkResult { requests_per_second, p99 })
}

/// Rounds of the cases are run in turn, each for `seconds`; each case's result is its
/// median round (by req/s).
const ROUNDS: usize = 5;

fn interleaved<const N: usize>(
    wrk: &Path,
    url: &str,
    scripts: [&Script; N],
    seconds: u32,
) -> anyhow::Result<[WrkResult; N]> {
    let mut runs: [Vec<WrkResult>; N] = std::array::from_fn(|_| Vec::with_capacity(ROUNDS));
    for _ in 0..ROUNDS {
        for (script, runs) in scripts.iter().zip(&mut runs) {
            runs.push(wrk_run(wrk, url, script, seconds.div_ceil(2))?);
        }
    }
    Ok(runs.map(|mut runs| {
        runs.sort_by(|a, b| a.requests_per_second.total_cmp(&b.requests_per_second));
        runs.swap_remove(ROUNDS / 2)
    }))
}

/// wrk's durations: `850.00us`, `4.55ms`, `1.20s`.
fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let seconds = match unit {
        "us" => value / 1e6,
        "ms" => value / 1e3,
        "s" => value,
        "m" => value * 60.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(seconds))
}

/// `netsec serve` on a free loopback port, stopped with SIGTERM.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(netsec: &Path, work: &Path) -> anyhow::Result<Server> {
        let addr = free_port()?;
        let child = Command::new(netsec)
            .arg("--store")
            .arg(work.join("models"))
            .args(["serve", "--addr", &addr.to_string()])
            .env_remove("NETSEC_ADMIN_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let server = Server { child, url: format!("http://{addr}") };
        let started = Instant::now();
        while http_status(addr, "/ready") != Some(200) {
            anyhow::ensure!(started.elapsed() < Duration::from_secs(60), "netsec serve did not become ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    fn rss_bytes(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .ok_or_else(|| anyhow::anyhow!("no VmRSS"))?;
        Ok(kib * 1024)
    }

    fn stop(mut self) -> anyhow::Result<()> {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait()?;
        anyhow::ensure!(status.success(), "netsec serve exited with {status} after SIGTERM");
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_durations_parse() {
        assert_eq!(parse_duration("850.00us"), Some(Duration::from_micros(850)));
        assert_eq!(parse_duration("4.55ms"), Some(Duration::from_micros(4550)));
        assert_eq!(parse_duration("1.20s"), Some(Duration::from_millis(1200)));
        assert_eq!(parse_duration("fast"), None);
    }
}
