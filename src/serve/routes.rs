//! The router, the shared state, the request-metrics middleware and the small handlers.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use super::error::ApiError;
use super::metrics::Metrics;
use super::reload::ModelSlot;
use super::train::Trainer;
use super::{inference, invocations, openapi, page, predict, train, Options};

/// What every handler shares.
pub struct AppState {
    pub options: Options,
    pub model: ModelSlot,
    pub metrics: Metrics,
    pub trainer: Trainer,
    /// Wakes the store poller at once (after a training run).
    pub reload_now: tokio::sync::Notify,
    /// One permit per rayon thread: large uploads wait their turn here, first come first
    /// served, holding only their body, instead of piling up parsed rows in rayon's queue.
    pub scoring: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    pub fn new(options: Options) -> AppState {
        let trainer = Trainer::new(options.admin_token.as_ref(), options.train_config.clone());
        AppState {
            options,
            model: ModelSlot::default(),
            metrics: Metrics::default(),
            trainer,
            reload_now: tokio::sync::Notify::new(),
            scoring: Arc::new(tokio::sync::Semaphore::new(rayon::current_num_threads())),
        }
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(page::index))
        .route("/predict", post(predict::csv))
        .route("/predict/json", post(predict::json))
        .route("/train", post(train::start))
        .route("/train/{id}", get(train::status))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/model", get(model))
        .route("/metrics", get(metrics))
        .route("/invocations", post(invocations::invocations))
        .route("/ping", get(invocations::ping))
        .route("/version", get(invocations::version))
        .route("/v2", get(inference::server_metadata))
        .route("/v2/health/live", get(inference::live))
        .route("/v2/health/ready", get(inference::server_ready))
        .route("/v2/models/{name}", get(inference::model_metadata))
        .route("/v2/models/{name}/ready", get(inference::model_ready))
        .route("/v2/models/{name}/infer", post(inference::infer))
        .route("/openapi.json", get(openapi::spec))
        .route("/docs", get(openapi::docs))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// Counts every answer by route and status, times it, and logs it (method, route, status and
/// time only: never headers, which may carry the admin token).
async fn track(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = Metrics::route(request.extensions().get::<MatchedPath>().map(MatchedPath::as_str));
    let method = request.method().clone();
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    let status = response.status();
    state.metrics.record(route, status.as_u16(), elapsed);
    tracing::debug!(%method, route = super::metrics::ROUTES[route], status = status.as_u16(), micros = elapsed.as_micros() as u64, "request");
    response
}

/// GET /health: the process is up and answering.
async fn health() -> Response {
    json_static(StatusCode::OK, r#"{"status":"ok"}"#)
}

/// GET /ready: 200 once a model is loaded (a load balancer sends traffic only then).
async fn ready(State(state): State<Arc<AppState>>) -> Response {
    match state.model.version() {
        Some(version) => {
            let body = serde_json::json!({"ready": true, "model_version": version}).to_string();
            (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        None => json_static(StatusCode::SERVICE_UNAVAILABLE, r#"{"ready":false,"model_version":null}"#),
    }
}

/// GET /model: the served model's version, family, parameters, metrics and schema.
async fn model(State(state): State<Arc<AppState>>) -> Response {
    match state.model.get() {
        Some(model) => {
            let mut response = (StatusCode::OK, model.description.clone()).into_response();
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        None => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no model is loaded yet").into_response(),
    }
}

/// GET /metrics: Prometheus text.
async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let text = state.metrics.render(&state.model);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

async fn not_found(method: Method, uri: axum::http::Uri) -> Response {
    ApiError::new(StatusCode::NOT_FOUND, format!("no route {method} {}", uri.path()))
        .hint("the routes are listed at /docs")
        .into_response()
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> Response {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("{} does not take {method}", uri.path()))
        .hint("the routes and their methods are listed at /docs")
        .into_response()
}

fn json_static(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}
