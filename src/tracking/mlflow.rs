//! Sending a run record to an MLflow tracking server over its REST API (MLflow's own server,
//! or a hosted one such as DagsHub's): the experiment by name (created if missing), one parent
//! run per pipeline run and a nested run per model family (tag `mlflow.parentRunId`), params,
//! metrics and tags in `log-batch` requests within MLflow's limits, staged metrics as steps,
//! artifacts through the server's artifact proxy, and the accepted model as a new version of
//! a registered model: an MLflow Model directory (see [`super::mlflow_model`]) tagged with its
//! store version, given the alias `champion` (`NETSEC_MLFLOW_ALIAS`), which `netsec models
//! promote` and `rollback` move with the store's current version ([`move_alias`]).
//!
//! Every request is retried with exponential backoff on network errors, 429 and 5xx. When the
//! server still fails, the run stays whole locally and `mlflow.json` in the run folder says
//! what happened; `netsec runs sync RUN` sends it again (deleting the runs a failed attempt
//! left half-written, so the server never shows a run twice).
//! Credentials (`MLFLOW_TRACKING_TOKEN`, or `MLFLOW_TRACKING_USERNAME` and
//! `MLFLOW_TRACKING_PASSWORD`) go into request headers only: never into logs, messages or files.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::mlflow_model;
use super::record::{Entry, MetricPoint, Record};
use crate::artifacts::Run;
use crate::error::InputError;
use crate::model_file::ModelFile;

/// The sync state of a run, in its folder.
pub const STATE: &str = "mlflow.json";

/// MLflow's limits on one `log-batch` request.
const MAX_METRICS: usize = 1000;
const MAX_PARAMS: usize = 100;
const MAX_TAGS: usize = 100;
/// Longer param values are refused (MLflow 2.x/3.x: 6000 characters); longer ones are cut.
const MAX_PARAM_CHARS: usize = 6000;

/// Where and how to send, from the environment (MLflow's own variable names).
#[derive(Clone)]
pub struct Settings {
    /// The server's base URL, without credentials.
    pub uri: String,
    pub experiment: String,
    pub registered_model: String,
    /// The alias of the registered version that is the store's current one.
    pub alias: String,
    auth: Auth,
    pub retries: u32,
    pub timeout: Duration,
    /// The first backoff delay; each retry doubles it.
    pub backoff: Duration,
}

#[derive(Clone)]
enum Auth {
    None,
    Bearer(String),
    Basic(String, String),
}

impl std::fmt::Debug for Settings {
    // Hand-written so that no credential can reach a log line through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let auth = match self.auth {
            Auth::None => "none",
            Auth::Bearer(_) => "bearer token",
            Auth::Basic(..) => "basic",
        };
        f.debug_struct("Settings")
            .field("uri", &self.uri)
            .field("experiment", &self.experiment)
            .field("auth", &auth)
            .finish()
    }
}

impl Settings {
    /// The settings when `MLFLOW_TRACKING_URI` is an http(s) URL; None when it is unset or names
    /// something else (MLflow's local `file:` and `sqlite:` stores are Python-only, and the
    /// run folder already is the local record).
    pub fn from_env() -> anyhow::Result<Option<Settings>> {
        Self::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Option<Settings>> {
        let Some(uri) = get("MLFLOW_TRACKING_URI") else { return Ok(None) };
        if !(uri.starts_with("http://") || uri.starts_with("https://")) {
            return Ok(None);
        }
        let (uri, userinfo) = split_userinfo(&uri);
        let auth = match (get("MLFLOW_TRACKING_TOKEN"), get("MLFLOW_TRACKING_USERNAME"), userinfo) {
            (Some(token), _, _) => Auth::Bearer(token),
            (None, Some(user), _) => Auth::Basic(user, get("MLFLOW_TRACKING_PASSWORD").unwrap_or_default()),
            (None, None, Some((user, password))) => Auth::Basic(user, password),
            (None, None, None) => Auth::None,
        };
        let number = |name: &str, default: u64| -> anyhow::Result<u64> {
            match get(name) {
                None => Ok(default),
                Some(v) => v.trim().parse().map_err(|_| {
                    InputError::new(format!("{name}={v} is not a whole number"))
                        .hint("unset it or give a number")
                        .into()
                }),
            }
        };
        Ok(Some(Settings {
            uri: uri.trim_end_matches('/').to_string(),
            experiment: get("MLFLOW_EXPERIMENT_NAME").unwrap_or_else(|| "netsec".into()),
            registered_model: get("NETSEC_MLFLOW_REGISTERED_MODEL").unwrap_or_else(|| "netsec".into()),
            alias: get("NETSEC_MLFLOW_ALIAS").unwrap_or_else(|| "champion".into()),
            auth,
            retries: number("MLFLOW_HTTP_REQUEST_MAX_RETRIES", 4)? as u32,
            timeout: Duration::from_secs(number("MLFLOW_HTTP_REQUEST_TIMEOUT", 30)?),
            backoff: Duration::from_millis(number("NETSEC_MLFLOW_BACKOFF_MS", 500)?),
        }))
    }
}

/// `http://user:password@host/` → (`http://host/`, the user and password, percent-decoded).
fn split_userinfo(uri: &str) -> (String, Option<(String, String)>) {
    let Some((scheme, rest)) = uri.split_once("://") else { return (uri.to_string(), None) };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else { return (uri.to_string(), None) };
    let (user, password) = rest[..at].split_once(':').unwrap_or((&rest[..at], ""));
    (format!("{scheme}://{}", &rest[at + 1..]), Some((crate::percent_decode(user), crate::percent_decode(password))))
}

/// What happened to a run on a server, kept in the run folder (`mlflow.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncState {
    /// `sent` or `failed`.
    pub status: String,
    pub tracking_uri: String,
    pub experiment: String,
    pub experiment_id: Option<String>,
    /// The parent run, and a nested run per family.
    pub run_id: Option<String>,
    pub family_runs: BTreeMap<String, String>,
    pub artifacts: Vec<String>,
    pub registered_model: Option<RegisteredVersion>,
    pub error: Option<String>,
    pub attempted_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisteredVersion {
    pub name: String,
    pub version: String,
}

impl SyncState {
    pub fn sent(&self) -> bool {
        self.status == "sent"
    }

    pub fn describe(&self) -> String {
        match (&self.error, &self.run_id) {
            (None, Some(run)) => {
                let model = self
                    .registered_model
                    .as_ref()
                    .map(|m| format!("; registered model {} version {}", m.name, m.version))
                    .unwrap_or_default();
                format!("sent to {} (experiment {}, run {run}){model}", self.tracking_uri, self.experiment)
            }
            (error, _) => format!(
                "NOT sent to {}: {}; re-send with `netsec runs sync RUN`",
                self.tracking_uri,
                error.as_deref().unwrap_or("unknown")
            ),
        }
    }
}

/// The sync state of a run, if it was ever sent.
pub fn load_state(run: &Run) -> Option<SyncState> {
    serde_json::from_slice(&std::fs::read(run.path(STATE)).ok()?).ok()
}

/// Sends the run's record and artifacts (and registers the model it pushed to the store, if
/// any), then records the outcome in the run folder. A server that fails does not make this
/// fail: the returned state says so.
pub fn send(run: &mut Run, record: &Record, settings: &Settings) -> anyhow::Result<SyncState> {
    let previous = load_state(run);
    let client = Client::new(settings)?;
    let mut state = SyncState {
        status: "failed".into(),
        tracking_uri: settings.uri.clone(),
        experiment: settings.experiment.clone(),
        attempted_at: crate::artifacts::now_rfc3339(),
        ..SyncState::default()
    };
    let result = (|| -> anyhow::Result<()> {
        if let Some(previous) = previous.filter(|p| !p.sent()) {
            client.delete_leftovers(&previous)?;
        }
        client.send(run, record, &mut state)
    })();
    match result {
        Ok(()) => state.status = "sent".into(),
        Err(error) => {
            let message = format!("{error:#}");
            tracing::warn!(server = settings.uri, "MLflow tracking failed: {message}");
            state.error = Some(message);
        }
    }
    let json = serde_json::to_vec_pretty(&state)?;
    run.write(STATE, |w| w.write_all(&json))?;
    run.save_manifest()?;
    Ok(state)
}

/// A blocking HTTP client for one server, with retries.
struct Client<'a> {
    http: reqwest::blocking::Client,
    settings: &'a Settings,
}

/// An MLflow error answer: `{"error_code": ..., "message": ...}`.
#[derive(Debug)]
struct ApiError {
    status: u16,
    code: String,
    message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the server answered {} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl<'a> Client<'a> {
    fn new(settings: &'a Settings) -> anyhow::Result<Self> {
        // reqwest is built without a crypto provider: use ring, as the S3 client does.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::blocking::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("netsec/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Client { http, settings })
    }

    /// One request, retried on network errors, 429 and 5xx with doubling delays.
    fn request(&self, method: reqwest::Method, path: &str, body: Body) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.settings.uri);
        let mut delay = self.settings.backoff;
        let mut attempt = 0;
        loop {
            let mut request = self.http.request(method.clone(), &url);
            request = match &self.settings.auth {
                Auth::None => request,
                Auth::Bearer(token) => request.bearer_auth(token),
                Auth::Basic(user, password) => request.basic_auth(user, Some(password)),
            };
            request = match &body {
                Body::None => request,
                Body::Json(value) => request.json(value),
                Body::Bytes(bytes) => request.body(bytes.clone()).header("Content-Type", "application/octet-stream"),
            };
            let outcome = match request.send() {
                Ok(response) => answer(response),
                Err(error) => Err(Failure::Retry(anyhow::anyhow!("{}", describe_network_error(&error)))),
            };
            match outcome {
                Ok(value) => return Ok(value),
                Err(Failure::Final(error)) => return Err(error.context(format!("{method} {path}"))),
                Err(Failure::Retry(error)) if attempt >= self.settings.retries => {
                    return Err(error.context(format!("{method} {path} (tried {} times)", attempt + 1)));
                }
                Err(Failure::Retry(error)) => {
                    tracing::info!("MLflow {method} {path} failed ({error:#}); retrying in {delay:?}");
                    std::thread::sleep(delay);
                    delay *= 2;
                    attempt += 1;
                }
            }
        }
    }

    fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.request(reqwest::Method::POST, path, Body::Json(body))
    }

    fn send(&self, run: &Run, record: &Record, state: &mut SyncState) -> anyhow::Result<()> {
        let experiment_id = self.experiment()?;
        state.experiment_id = Some(experiment_id.clone());
        let (parent, artifact_uri) = self.create_run(&experiment_id, &record.run, None)?;
        state.run_id = Some(parent.clone());
        for family in &record.families {
            let (id, _) = self.create_run(&experiment_id, family, Some(&parent))?;
            state.family_runs.insert(family.name.clone(), id.clone());
            self.log(&id, family)?;
            self.finish_run(&id)?;
        }
        self.log(&parent, &record.run)?;
        for artifact in &record.artifacts {
            let bytes = std::fs::read(run.path(artifact))?;
            self.upload(&artifact_uri, &experiment_id, &parent, artifact, bytes)?;
            state.artifacts.push(artifact.clone());
        }
        if let Some(store_version) = &record.outcome.version {
            let model = ModelFile::load(&run.path(crate::stages::train::MODEL))?;
            for (name, bytes) in mlflow_model::files(&model)? {
                self.upload(&artifact_uri, &experiment_id, &parent, &format!("{}/{name}", mlflow_model::DIR), bytes)?;
            }
            let source = format!("{}/{}", artifact_uri.trim_end_matches('/'), mlflow_model::DIR);
            let tags = [(STORE_VERSION_TAG, store_version.as_str()), ("netsec.run_id", record.run_id.as_str())];
            let registered = self.register(&source, &parent, &tags)?;
            self.set_alias(&registered.version)?;
            state.registered_model = Some(registered);
        }
        self.finish_run(&parent)
    }

    /// The experiment's id, creating it when it does not exist.
    fn experiment(&self) -> anyhow::Result<String> {
        let name = &self.settings.experiment;
        let path = format!("/api/2.0/mlflow/experiments/get-by-name?experiment_name={}", url_encode(name));
        match self.request(reqwest::Method::GET, &path, Body::None) {
            Ok(found) => return text_at(&found, "/experiment/experiment_id"),
            Err(e) if api_code(&e) == Some("RESOURCE_DOES_NOT_EXIST") => {}
            Err(e) => return Err(e),
        }
        match self.post("/api/2.0/mlflow/experiments/create", json!({ "name": name })) {
            Ok(created) => text_at(&created, "/experiment_id"),
            // Another client created it meanwhile.
            Err(e) if api_code(&e) == Some("RESOURCE_ALREADY_EXISTS") => {
                text_at(&self.request(reqwest::Method::GET, &path, Body::None)?, "/experiment/experiment_id")
            }
            Err(e) => Err(e),
        }
    }

    /// A new run (nested under `parent` when given): its id and artifact URI.
    fn create_run(&self, experiment_id: &str, entry: &Entry, parent: Option<&str>) -> anyhow::Result<(String, String)> {
        let mut tags: Vec<Value> = Vec::new();
        if let Some(parent) = parent {
            tags.push(json!({ "key": "mlflow.parentRunId", "value": parent }));
        }
        let body = json!({
            "experiment_id": experiment_id,
            "run_name": entry.name,
            "start_time": now_millis(),
            "tags": tags,
        });
        let created = self.post("/api/2.0/mlflow/runs/create", body)?;
        Ok((text_at(&created, "/run/info/run_id")?, text_at(&created, "/run/info/artifact_uri")?))
    }

    /// Params, tags and metrics in batches within MLflow's limits.
    fn log(&self, run_id: &str, entry: &Entry) -> anyhow::Result<()> {
        let timestamp = now_millis();
        let params: Vec<Value> =
            entry.params.iter().map(|(k, v)| json!({ "key": k, "value": truncate(v, MAX_PARAM_CHARS) })).collect();
        let tags: Vec<Value> = entry.tags.iter().map(|(k, v)| json!({ "key": k, "value": v })).collect();
        let metrics: Vec<Value> = entry.metrics.iter().map(|m| metric_json(m, timestamp)).collect();
        for batch in batches(&params, &tags, &metrics) {
            let body = json!({ "run_id": run_id, "params": batch.0, "tags": batch.1, "metrics": batch.2 });
            self.post("/api/2.0/mlflow/runs/log-batch", body)?;
        }
        Ok(())
    }

    fn finish_run(&self, run_id: &str) -> anyhow::Result<()> {
        let body = json!({ "run_id": run_id, "status": "FINISHED", "end_time": now_millis() });
        self.post("/api/2.0/mlflow/runs/update", body).map(drop)
    }

    /// PUT through the artifact proxy (`mlflow-artifacts:` URIs, what `mlflow server` and
    /// DagsHub give runs).
    fn upload(
        &self,
        artifact_uri: &str,
        experiment: &str,
        run: &str,
        path: &str,
        bytes: Vec<u8>,
    ) -> anyhow::Result<()> {
        let target = artifact_target(artifact_uri, experiment, run, path);
        let path = format!("/api/2.0/mlflow-artifacts/artifacts/{}", encode_path(&target));
        self.request(reqwest::Method::PUT, &path, Body::Bytes(bytes)).map(drop)
    }

    /// A new version of the registered model (created when missing) with the run as source.
    fn register(&self, source: &str, run_id: &str, tags: &[(&str, &str)]) -> anyhow::Result<RegisteredVersion> {
        let name = &self.settings.registered_model;
        match self.post("/api/2.0/mlflow/registered-models/create", json!({ "name": name })) {
            Ok(_) => {}
            Err(e) if api_code(&e) == Some("RESOURCE_ALREADY_EXISTS") => {}
            Err(e) => return Err(e),
        }
        let tags: Vec<Value> = tags.iter().map(|(k, v)| json!({ "key": k, "value": v })).collect();
        let body = json!({ "name": name, "source": source, "run_id": run_id, "tags": tags });
        let created = self.post("/api/2.0/mlflow/model-versions/create", body)?;
        Ok(RegisteredVersion { name: name.clone(), version: text_at(&created, "/model_version/version")? })
    }

    /// Points the alias at `version` of the registered model (moving it if it is elsewhere).
    fn set_alias(&self, version: &str) -> anyhow::Result<()> {
        let (name, alias) = (&self.settings.registered_model, &self.settings.alias);
        let body = json!({ "name": name, "alias": alias, "version": version });
        self.post("/api/2.0/mlflow/registered-models/alias", body).map(drop)
    }

    /// The registered version tagged with `store_version`, if any (the newest, should a store
    /// version have been registered twice by re-sending its run).
    fn version_of(&self, store_version: &str) -> anyhow::Result<Option<String>> {
        let filter = format!("name='{}'", self.settings.registered_model.replace('\'', "\\'"));
        let mut page_token: Option<String> = None;
        let mut found: Option<u64> = None;
        loop {
            let mut path =
                format!("/api/2.0/mlflow/model-versions/search?filter={}&max_results=200", url_encode(&filter));
            if let Some(token) = &page_token {
                path.push_str(&format!("&page_token={}", url_encode(token)));
            }
            let page = self.request(reqwest::Method::GET, &path, Body::None)?;
            for version in page["model_versions"].as_array().into_iter().flatten() {
                let tagged = version["tags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|t| t["key"] == STORE_VERSION_TAG && t["value"] == store_version);
                let number = version["version"].as_str().and_then(|v| v.parse::<u64>().ok());
                if let (true, Some(number)) = (tagged, number) {
                    found = found.max(Some(number));
                }
            }
            page_token = page["next_page_token"].as_str().filter(|t| !t.is_empty()).map(str::to_string);
            if page_token.is_none() {
                return Ok(found.map(|n| n.to_string()));
            }
        }
    }

    /// Deletes the runs an attempt that failed half-way created (gone already is fine).
    fn delete_leftovers(&self, previous: &SyncState) -> anyhow::Result<()> {
        for run_id in previous.family_runs.values().chain(&previous.run_id) {
            match self.post("/api/2.0/mlflow/runs/delete", json!({ "run_id": run_id })) {
                Ok(_) => {}
                Err(e) if api_code(&e) == Some("RESOURCE_DOES_NOT_EXIST") => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// The tag of a registered version that names its version in netsec's model store.
pub const STORE_VERSION_TAG: &str = "netsec.store_version";

/// Moves the alias to the registered version of `store_version` (after `netsec models
/// promote` or `rollback`); returns that registered version, or None when no registered
/// version carries the store version (a model pushed while MLflow was not configured), in
/// which case the alias stays where it is.
pub fn move_alias(settings: &Settings, store_version: &str) -> anyhow::Result<Option<RegisteredVersion>> {
    let client = Client::new(settings)?;
    let Some(version) = client.version_of(store_version)? else { return Ok(None) };
    client.set_alias(&version)?;
    Ok(Some(RegisteredVersion { name: settings.registered_model.clone(), version }))
}

enum Body {
    None,
    Json(Value),
    Bytes(Vec<u8>),
}

enum Failure {
    Retry(anyhow::Error),
    Final(anyhow::Error),
}

fn answer(response: reqwest::blocking::Response) -> Result<Value, Failure> {
    let status = response.status();
    let text = response.text().unwrap_or_default();
    if status.is_success() {
        return Ok(serde_json::from_str(&text).unwrap_or(Value::Null));
    }
    let parsed: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let error = ApiError {
        status: status.as_u16(),
        code: parsed["error_code"].as_str().unwrap_or("").to_string(),
        message: parsed["message"].as_str().map(str::to_string).unwrap_or_else(|| text.chars().take(300).collect()),
    };
    let hint = match status.as_u16() {
        401 | 403 => " (check MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD)",
        _ => "",
    };
    let error = anyhow::Error::new(error).context(format!("MLflow refused the request{hint}"));
    if status.as_u16() == 429 || status.is_server_error() {
        Err(Failure::Retry(error))
    } else {
        Err(Failure::Final(error))
    }
}

/// A network error without the URL (which names the server, already in the message).
fn describe_network_error(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(error);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}

fn api_code(error: &anyhow::Error) -> Option<&str> {
    error.chain().find_map(|e| e.downcast_ref::<ApiError>()).map(|e| e.code.as_str())
}

fn text_at(value: &Value, pointer: &str) -> anyhow::Result<String> {
    match value.pointer(pointer) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => anyhow::bail!(
            "the MLflow answer has no {pointer}: {}",
            value.to_string().chars().take(300).collect::<String>()
        ),
    }
}

fn metric_json(m: &MetricPoint, timestamp: u64) -> Value {
    json!({ "key": m.key, "value": m.value, "timestamp": timestamp, "step": m.step })
}

/// Splits params, tags and metrics into requests of at most 100 params, 100 tags and 1000
/// metrics (and 1000 entities in all).
/// One `log-batch` request's params, tags and metrics.
type Batch<'v> = (&'v [Value], &'v [Value], &'v [Value]);

fn batches<'v>(params: &'v [Value], tags: &'v [Value], metrics: &'v [Value]) -> Vec<Batch<'v>> {
    let mut out = Vec::new();
    let (mut p, mut t, mut m) = (params, tags, metrics);
    while !(p.is_empty() && t.is_empty() && m.is_empty()) || out.is_empty() {
        let (pn, tn) = (p.len().min(MAX_PARAMS), t.len().min(MAX_TAGS));
        let mn = m.len().min(MAX_METRICS - pn - tn);
        out.push((&p[..pn], &t[..tn], &m[..mn]));
        (p, t, m) = (&p[pn..], &t[tn..], &m[mn..]);
    }
    out
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// The proxied artifact path: what follows `mlflow-artifacts:` (with or without an authority)
/// in the run's artifact URI, then the file's path.
fn artifact_target(artifact_uri: &str, experiment: &str, run: &str, path: &str) -> String {
    let base = match artifact_uri.strip_prefix("mlflow-artifacts:") {
        Some(rest) => match rest.strip_prefix("//") {
            Some(with_authority) => with_authority.find('/').map_or("", |i| &with_authority[i..]).to_string(),
            None => rest.to_string(),
        },
        None => format!("{experiment}/{run}/artifacts"),
    };
    format!("{}/{path}", base.trim_matches('/'))
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

fn encode_path(path: &str) -> String {
    path.split('/').map(url_encode).collect::<Vec<_>>().join("/")
}

fn now_millis() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_stay_within_mlflows_limits() {
        let values = |n: usize| (0..n).map(|i| json!(i)).collect::<Vec<_>>();
        let (p, t, m) = (values(250), values(30), values(2500));
        let out = batches(&p, &t, &m);
        assert!(out.iter().all(|(p, t, m)| p.len() <= 100 && t.len() <= 100 && m.len() <= 1000));
        assert!(out.iter().all(|(p, t, m)| p.len() + t.len() + m.len() <= 1000));
        let total = |f: fn(&Batch) -> usize| out.iter().map(f).sum::<usize>();
        assert_eq!((total(|b| b.0.len()), total(|b| b.1.len()), total(|b| b.2.len())), (250, 30, 2500));
        assert_eq!(batches(&[], &[], &[]).len(), 1, "one (empty) request still marks the run");
    }

    #[test]
    fn credentials_come_from_the_environment_or_the_uri_and_never_print() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        };
        let s =
            Settings::from_lookup(env(&[("MLFLOW_TRACKING_URI", "https://u:p%40ss@example.org/x/")])).unwrap().unwrap();
        assert_eq!(s.uri, "https://example.org/x");
        assert!(matches!(&s.auth, Auth::Basic(u, p) if u == "u" && p == "p@ss"));
        assert!(!format!("{s:?}").contains("p@ss"));
        let s = Settings::from_lookup(env(&[("MLFLOW_TRACKING_URI", "http://h"), ("MLFLOW_TRACKING_TOKEN", "secret")]))
            .unwrap()
            .unwrap();
        assert!(matches!(&s.auth, Auth::Bearer(t) if t == "secret") && !format!("{s:?}").contains("secret"));
        assert!(Settings::from_lookup(env(&[("MLFLOW_TRACKING_URI", "file:///tmp/mlruns")])).unwrap().is_none());
        assert!(Settings::from_lookup(env(&[])).unwrap().is_none());
    }

    #[test]
    fn artifact_paths_follow_the_runs_artifact_uri() {
        assert_eq!(
            artifact_target("mlflow-artifacts:/1/abc/artifacts", "1", "abc", "train/model.bin"),
            "1/abc/artifacts/train/model.bin"
        );
        assert_eq!(
            artifact_target("mlflow-artifacts://host:5000/1/abc/artifacts", "1", "abc", "r.html"),
            "1/abc/artifacts/r.html"
        );
        assert_eq!(artifact_target("s3://b/1/abc/artifacts", "1", "abc", "r.html"), "1/abc/artifacts/r.html");
        assert_eq!(encode_path("a b/c"), "a%20b/c");
    }
}
