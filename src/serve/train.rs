//! POST /train and GET /train/{id}: a training run (the whole pipeline) in the background,
//! one at a time, for holders of the admin token only.
//!
//! The original let anyone start a training run with a GET. Here the routes exist only when
//! `NETSEC_ADMIN_TOKEN` is set (404 otherwise), and the token is compared in constant time:
//! both sides are hashed first, so neither the content nor the length of the secret shows in
//! the comparison's timing. The token is never logged.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::routes::AppState;
use super::Secret;
use crate::config::Config;
use crate::pipeline;

/// Finished runs remembered for GET /train/{id}.
const KEEP_RUNS: usize = 100;

#[derive(Debug, Clone, Serialize)]
pub struct TrainRun {
    pub id: String,
    /// `running`, `succeeded` or `failed`.
    pub state: &'static str,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// The pipeline's summary (as `netsec --log-format json pipeline` prints it).
    pub summary: Option<serde_json::Value>,
    pub error: Option<String>,
}

pub struct Trainer {
    token_sha256: Option<[u8; 32]>,
    config: Config,
    runs: Mutex<VecDeque<TrainRun>>,
    next: AtomicU64,
}

impl Trainer {
    pub fn new(token: Option<&Secret>, config: Config) -> Trainer {
        Trainer {
            token_sha256: token.map(|t| Sha256::digest(t.0.as_bytes()).into()),
            config,
            runs: Mutex::default(),
            next: AtomicU64::new(1),
        }
    }

    pub fn enabled(&self) -> bool {
        self.token_sha256.is_some()
    }

    /// 404 when training is off, 401 without the right bearer token.
    fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(expected) = &self.token_sha256 else {
            return Err(ApiError::new(StatusCode::NOT_FOUND, "training over HTTP is off on this server")
                .hint("the server's operator turns it on by setting NETSEC_ADMIN_TOKEN"));
        };
        let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer);
        let Some(given) = given else {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "an admin token is required")
                .hint("send `Authorization: Bearer <NETSEC_ADMIN_TOKEN>`"));
        };
        let given: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        if bool::from(given.ct_eq(expected)) {
            Ok(())
        } else {
            Err(ApiError::new(StatusCode::UNAUTHORIZED, "the admin token is wrong"))
        }
    }

    /// Registers a new run, or returns the id of the one still running.
    fn begin(&self) -> Result<TrainRun, String> {
        let mut runs = self.runs.lock().expect("not poisoned");
        if let Some(running) = runs.iter().find(|r| r.state == "running") {
            return Err(running.id.clone());
        }
        let number = self.next.fetch_add(1, Ordering::Relaxed);
        let started_at = crate::model_file::now_rfc3339();
        let id = format!("{}-{number}", started_at.replace([':', '-'], "").trim_end_matches('Z'));
        let run = TrainRun { id, state: "running", started_at, finished_at: None, summary: None, error: None };
        if runs.len() == KEEP_RUNS {
            runs.pop_front();
        }
        runs.push_back(run.clone());
        Ok(run)
    }

    fn finish(&self, id: &str, result: anyhow::Result<pipeline::Summary>) {
        let mut runs = self.runs.lock().expect("not poisoned");
        let Some(run) = runs.iter_mut().find(|r| r.id == id) else { return };
        run.finished_at = Some(crate::model_file::now_rfc3339());
        match result {
            Ok(summary) => {
                run.state = "succeeded";
                run.summary = serde_json::to_value(&summary).ok();
                tracing::info!(id, run = summary.run_id, "training run finished");
            }
            Err(error) => {
                run.state = "failed";
                run.error = Some(format!("{error:#}"));
                tracing::error!(id, error = format!("{error:#}"), "training run failed");
            }
        }
    }

    fn get(&self, id: &str) -> Option<TrainRun> {
        self.runs.lock().expect("not poisoned").iter().find(|r| r.id == id).cloned()
    }
}

/// `Bearer <token>` (the scheme is case-insensitive).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// POST /train: 202 with the run's id and where to follow it; 409 while another runs.
pub async fn start(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(error) = state.trainer.authorize(&headers) {
        return error.into_response();
    }
    let run = match state.trainer.begin() {
        Ok(run) => run,
        Err(running) => {
            return ApiError::new(StatusCode::CONFLICT, format!("training run {running} is still running"))
                .hint(format!("follow it at /train/{running}"))
                .into_response();
        }
    };
    state.metrics.train_runs.fetch_add(1, Ordering::Relaxed);
    tracing::info!(id = run.id, "training run started");
    let (background, id, config) = (state.clone(), run.id.clone(), state.trainer.config.clone());
    tokio::spawn(async move {
        let result = tokio::task::spawn_blocking(move || pipeline::run_all(config)).await;
        let result = result.unwrap_or_else(|panic| Err(anyhow::anyhow!("the training run panicked: {panic}")));
        background.trainer.finish(&id, result);
        // A pushed model is served without waiting for the next poll.
        background.reload_now.notify_one();
    });
    let location = format!("/train/{}", run.id);
    let mut response = (StatusCode::ACCEPTED, axum::Json(&run)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// GET /train/{id}: the run's state, and its summary or error once it has finished.
pub async fn status(State(state): State<Arc<AppState>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Err(error) = state.trainer.authorize(&headers) {
        return error.into_response();
    }
    match state.trainer.get(&id) {
        Some(run) => axum::Json(run).into_response(),
        None => ApiError::new(StatusCode::NOT_FOUND, format!("no training run `{id}`"))
            .hint("use the id POST /train answered with")
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_auth(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn only_the_right_bearer_token_passes() {
        let trainer = Trainer::new(Some(&Secret("s3cret".into())), Config::default());
        assert!(trainer.authorize(&with_auth("Bearer s3cret")).is_ok());
        assert!(trainer.authorize(&with_auth("bearer  s3cret ")).is_ok());
        for wrong in ["Bearer s3cre", "Bearer s3cret2", "Basic s3cret", "s3cret", "Bearer "] {
            assert_eq!(trainer.authorize(&with_auth(wrong)).unwrap_err().status, StatusCode::UNAUTHORIZED, "{wrong}");
        }
        assert_eq!(trainer.authorize(&HeaderMap::new()).unwrap_err().status, StatusCode::UNAUTHORIZED);
        let off = Trainer::new(None, Config::default());
        assert_eq!(off.authorize(&with_auth("Bearer s3cret")).unwrap_err().status, StatusCode::NOT_FOUND);
    }

    #[test]
    fn one_run_at_a_time() {
        let trainer = Trainer::new(Some(&Secret("t".into())), Config::default());
        let first = trainer.begin().unwrap();
        assert_eq!(trainer.begin().unwrap_err(), first.id);
        trainer.finish(&first.id, Err(anyhow::anyhow!("no data")));
        let run = trainer.get(&first.id).unwrap();
        assert_eq!((run.state, run.error.as_deref()), ("failed", Some("no data")));
        assert_ne!(trainer.begin().unwrap().id, first.id);
    }
}
