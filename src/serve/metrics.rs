//! Prometheus metrics, kept in atomics (a request adds to counters and never takes a lock
//! shared with other requests, except one short one for the predicted classes) and rendered
//! as the text exposition format on GET /metrics.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::reload::ModelSlot;

/// The routes, as the router names them; anything else (404s) is counted as `unmatched`.
pub const ROUTES: [&str; 21] = [
    "/",
    "/predict",
    "/predict/json",
    "/train",
    "/train/{id}",
    "/health",
    "/ready",
    "/model",
    "/metrics",
    "/invocations",
    "/ping",
    "/version",
    "/v2",
    "/v2/health/live",
    "/v2/health/ready",
    "/v2/models/{name}",
    "/v2/models/{name}/ready",
    "/v2/models/{name}/infer",
    "/openapi.json",
    "/docs",
    "unmatched",
];

/// Upper bounds of the latency buckets, in seconds (the targets are around 1-5 ms).
const BUCKETS: [f64; 15] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// Status codes 100..=599, one counter each.
const STATUSES: usize = 500;

struct RouteStats {
    statuses: Box<[AtomicU64]>,
    /// Non-cumulative counts per bucket; the last one is +Inf.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Default for RouteStats {
    fn default() -> Self {
        RouteStats {
            statuses: (0..STATUSES).map(|_| AtomicU64::new(0)).collect(),
            buckets: Default::default(),
            sum_nanos: AtomicU64::new(0),
        }
    }
}

pub struct Metrics {
    routes: Vec<RouteStats>,
    /// Rows predicted, by predicted label value.
    predictions: Mutex<BTreeMap<i64, u64>>,
    pub train_runs: AtomicU64,
    started: Instant,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            routes: ROUTES.iter().map(|_| RouteStats::default()).collect(),
            predictions: Mutex::default(),
            train_runs: AtomicU64::new(0),
            started: Instant::now(),
        }
    }
}

impl Metrics {
    /// The index of a matched route path in [`ROUTES`].
    pub fn route(matched: Option<&str>) -> usize {
        matched.and_then(|path| ROUTES.iter().position(|r| *r == path)).unwrap_or(ROUTES.len() - 1)
    }

    pub fn record(&self, route: usize, status: u16, elapsed: Duration) {
        let stats = &self.routes[route];
        if let Some(counter) = stats.statuses.get(usize::from(status).wrapping_sub(100)) {
            counter.fetch_add(1, Relaxed);
        }
        let seconds = elapsed.as_secs_f64();
        let bucket = BUCKETS.iter().position(|&b| seconds <= b).unwrap_or(BUCKETS.len());
        stats.buckets[bucket].fetch_add(1, Relaxed);
        stats.sum_nanos.fetch_add(elapsed.as_nanos().min(u128::from(u64::MAX)) as u64, Relaxed);
    }

    /// Adds one request's predictions: `(label value, rows)` pairs.
    pub fn count_predictions(&self, counts: &[(i64, u64)]) {
        let mut predictions = self.predictions.lock().expect("not poisoned");
        for &(label, n) in counts {
            *predictions.entry(label).or_default() += n;
        }
    }

    pub fn render(&self, model: &ModelSlot) -> String {
        let mut out = String::with_capacity(8192);
        self.render_requests(&mut out);
        self.render_latency(&mut out);
        header(&mut out, "netsec_predictions_total", "counter", "Rows predicted, by predicted class (label value).");
        for (label, n) in self.predictions.lock().expect("not poisoned").iter() {
            let _ = writeln!(out, "netsec_predictions_total{{class=\"{label}\"}} {n}");
        }
        render_model(&mut out, model);
        header(&mut out, "netsec_train_runs_total", "counter", "Training runs started through POST /train.");
        let _ = writeln!(out, "netsec_train_runs_total {}", self.train_runs.load(Relaxed));
        header(&mut out, "netsec_uptime_seconds", "gauge", "Seconds since the server started.");
        let _ = writeln!(out, "netsec_uptime_seconds {:.3}", self.started.elapsed().as_secs_f64());
        out
    }

    fn render_requests(&self, out: &mut String) {
        header(out, "netsec_http_requests_total", "counter", "HTTP requests answered, by route and status.");
        for (route, stats) in ROUTES.iter().zip(&self.routes) {
            for (i, counter) in stats.statuses.iter().enumerate() {
                let n = counter.load(Relaxed);
                if n > 0 {
                    let _ = writeln!(out, "netsec_http_requests_total{{route=\"{route}\",status=\"{}\"}} {n}", i + 100);
                }
            }
        }
    }

    fn render_latency(&self, out: &mut String) {
        let name = "netsec_http_request_duration_seconds";
        header(out, name, "histogram", "Time from a request's arrival to its answer's headers, by route.");
        for (route, stats) in ROUTES.iter().zip(&self.routes) {
            let counts: Vec<u64> = stats.buckets.iter().map(|b| b.load(Relaxed)).collect();
            let total: u64 = counts.iter().sum();
            if total == 0 {
                continue;
            }
            let mut cumulative = 0;
            for (bound, n) in BUCKETS.iter().zip(&counts) {
                cumulative += n;
                let _ = writeln!(out, "{name}_bucket{{route=\"{route}\",le=\"{bound}\"}} {cumulative}");
            }
            let _ = writeln!(out, "{name}_bucket{{route=\"{route}\",le=\"+Inf\"}} {total}");
            let sum = stats.sum_nanos.load(Relaxed) as f64 / 1e9;
            let _ = writeln!(out, "{name}_sum{{route=\"{route}\"}} {sum}");
            let _ = writeln!(out, "{name}_count{{route=\"{route}\"}} {total}");
        }
    }
}

fn render_model(out: &mut String, model: &ModelSlot) {
    header(out, "netsec_model_info", "gauge", "The model being served (1), by version and family.");
    if let Some(m) = model.get() {
        let _ = writeln!(out, "netsec_model_info{{version=\"{}\",family=\"{}\"}} 1", m.version, m.file.family);
    }
    header(out, "netsec_model_loaded", "gauge", "1 when a model is loaded (the server is ready).");
    let _ = writeln!(out, "netsec_model_loaded {}", u8::from(model.get().is_some()));
    header(out, "netsec_model_reloads_total", "counter", "Model versions loaded from the store, or refused.");
    let _ = writeln!(out, "netsec_model_reloads_total{{result=\"loaded\"}} {}", model.loads.load(Relaxed));
    let _ = writeln!(out, "netsec_model_reloads_total{{result=\"refused\"}} {}", model.refusals.load(Relaxed));
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_latencies_and_predictions_render_as_prometheus_text() {
        let metrics = Metrics::default();
        let predict = Metrics::route(Some("/predict"));
        metrics.record(predict, 200, Duration::from_micros(300));
        metrics.record(predict, 200, Duration::from_millis(3));
        metrics.record(Metrics::route(Some("/nowhere")), 404, Duration::from_micros(50));
        metrics.count_predictions(&[(1, 3), (-1, 2)]);
        metrics.count_predictions(&[(1, 1)]);
        let text = metrics.render(&ModelSlot::default());
        for line in [
            "netsec_http_requests_total{route=\"/predict\",status=\"200\"} 2",
            "netsec_http_requests_total{route=\"unmatched\",status=\"404\"} 1",
            "netsec_http_request_duration_seconds_bucket{route=\"/predict\",le=\"0.0005\"} 1",
            "netsec_http_request_duration_seconds_bucket{route=\"/predict\",le=\"0.005\"} 2",
            "netsec_http_request_duration_seconds_count{route=\"/predict\"} 2",
            "netsec_predictions_total{class=\"-1\"} 2",
            "netsec_predictions_total{class=\"1\"} 4",
            "netsec_model_loaded 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing `{line}` in\n{text}");
        }
    }
}
