//! POST /predict (CSV, as a body or a multipart upload) and POST /predict/json.
//!
//! The order of checks costs a bad request as little as possible: the answer format (406),
//! the content type (415) and a model being loaded (503) are known from the headers, before
//! the body is read under its size limit (413) and timeout (408). Small bodies are parsed and
//! scored on the request's own task (a one-row request costs microseconds, less than a hop
//! to another thread); large ones on rayon's pool, one thread per core, where a batch's
//! prediction blocks run too: the async workers stay free for other connections, and no more
//! threads than cores compete for the CPU (the blocking pool would start one per upload).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::answer::{self, Format};
use super::body::{self, Kind};
use super::error::ApiError;
use super::reload::ServedModel;
use super::routes::AppState;
use super::{json_rows, metrics::Metrics};
use crate::dataset::Dataset;
use crate::learn::{Classifier, Model};
use crate::source::{self, Labels};

pub async fn csv(State(state): State<Arc<AppState>>, request: Request) -> Response {
    handle(state, request, &["text/csv", "multipart/form-data"]).await.unwrap_or_else(IntoResponse::into_response)
}

pub async fn json(State(state): State<Arc<AppState>>, request: Request) -> Response {
    handle(state, request, &["application/json"]).await.unwrap_or_else(IntoResponse::into_response)
}

async fn handle(state: Arc<AppState>, request: Request, accepted: &[&str]) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let format = answer::negotiate(&parts.headers)?;
    let kind = body::kind(&parts.headers, accepted)?;
    let model = state.model.get().ok_or_else(not_ready)?;
    let options = &state.options;
    let bytes = body::read(body, &parts.headers, options.body_limit, options.body_timeout).await?;
    let kind_is_json = kind == Kind::Json;
    let (name, bytes) = match kind {
        Kind::Multipart { boundary } => body::multipart_file(bytes, boundary).await?,
        Kind::Csv | Kind::Json => ("upload".to_string(), bytes),
    };
    let inline = bytes.len() <= options.inline_body_limit;
    let job = Job { state: state.clone(), model, name, bytes, kind_is_json, format };
    off_the_runtime(&state, inline, move || job.run()).await
}

/// Runs `score` on this task when the body is small (`inline`), else on rayon's pool in the
/// request's turn (see `AppState::scoring`), so that a large body never holds a tokio worker.
pub(super) async fn off_the_runtime(
    state: &AppState,
    inline: bool,
    score: impl FnOnce() -> Result<Response, ApiError> + Send + 'static,
) -> Result<Response, ApiError> {
    if inline {
        return score();
    }
    // The turn ends with the scoring, even when the client has gone meanwhile.
    let turn = state.scoring.clone().acquire_owned().await.map_err(|e| ApiError::internal(&anyhow::Error::from(e)))?;
    let (answer, answered) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        let _turn = turn;
        // A panic in a rayon task would abort the process: it becomes this request's 500.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(score));
        let _ = answer.send(outcome.unwrap_or_else(|_| Err(ApiError::internal(&anyhow::anyhow!("scoring panicked")))));
    });
    answered.await.map_err(|e| ApiError::internal(&anyhow::Error::from(e)))?
}

pub(super) fn not_ready() -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no model is loaded yet")
        .hint("train one (POST /train, or `netsec pipeline`) or promote a version in the model store")
}

/// Parsing, scoring and rendering one request's rows.
struct Job {
    state: Arc<AppState>,
    model: Arc<ServedModel>,
    name: String,
    bytes: Bytes,
    kind_is_json: bool,
    format: Format,
}

impl Job {
    fn run(self) -> Result<Response, ApiError> {
        let max_rows = self.state.options.max_rows;
        let data = if self.kind_is_json {
            json_rows::parse(&self.model.file.schema, &self.model.feature_index, &self.bytes, max_rows)?
        } else {
            parse_csv(&self.model, &self.name, &self.bytes, max_rows)?
        };
        let predictions = predict(&self.model, &data)?;
        count(&self.state.metrics, &self.model, &predictions);
        Ok(answer::render(self.format, &self.model, &data, &predictions))
    }
}

/// CSV rows with the model's schema, as `netsec predict` reads them (the label column is
/// optional), except that extra columns are refused rather than dropped: a client sending
/// them has most likely mixed up its files.
pub(super) fn parse_csv(model: &ServedModel, name: &str, bytes: &[u8], max_rows: usize) -> Result<Dataset, ApiError> {
    let (data, extra) = source::parse_csv_bytes(&model.file.schema, name, bytes, Labels::Optional).map_err(|e| {
        let missing =
            e.problem.strip_prefix("missing columns: ").map(|list| list.split(", ").map(String::from).collect());
        let mut error = ApiError::from(e);
        error.missing_columns = missing.unwrap_or_default();
        error
    })?;
    if !extra.is_empty() {
        let mut error = ApiError::bad_request(format!("columns not in the model's schema: {}", extra.join(", ")))
            .hint("remove them; the model's columns are listed by GET /model");
        (error.line, error.extra_columns) = (Some(1), extra);
        return Err(error);
    }
    if data.n_rows() > max_rows {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{} rows is over the limit of {max_rows} rows per request", data.n_rows()),
        )
        .hint("split the rows over several requests"));
    }
    Ok(data)
}

/// `(label value, probability of the positive class)` per row, as
/// [`crate::model_file::ModelFile::predict_dataset`] gives them.
pub fn predict(model: &ServedModel, data: &Dataset) -> Result<Vec<(i64, f64)>, ApiError> {
    let file = &model.file;
    if data.x.iter().any(|v| v.is_nan()) {
        return file.predict_dataset(data).map_err(ApiError::from_anyhow);
    }
    // Without a missing cell the imputer would copy the rows unchanged: skip it, and with it
    // a round trip through its thread pool that would cost a one-row request more than the
    // prediction itself.
    let (classes, probabilities) = classify(&file.model, &data.x);
    Ok(classes.into_iter().map(|c| file.preprocessor.classes[usize::from(c)]).zip(probabilities).collect())
}

/// Classes and probabilities of class 1. Forests and trees decide a class as their
/// probability above 0.5 (ties to class 0, as scikit-learn's argmax), so one pass gives both,
/// which halves their cost; the other families decide from their raw score, so they get their
/// own `predict` (a sigmoid rounding to 0.5 must not change a class).
fn classify(model: &Model, rows: &[f32]) -> (Vec<u8>, Vec<f64>) {
    let probabilities = model.predict_proba(rows);
    let classes = match model {
        Model::RandomForest(_) | Model::DecisionTree(_) => probabilities.iter().map(|&p| u8::from(p > 0.5)).collect(),
        _ => model.predict(rows),
    };
    (classes, probabilities)
}

pub(super) fn count(metrics: &Metrics, model: &ServedModel, predictions: &[(i64, f64)]) {
    let positives = predictions.iter().filter(|(label, _)| *label == model.positive).count() as u64;
    let negative = model.file.preprocessor.classes[0];
    metrics.count_predictions(&[(model.positive, positives), (negative, predictions.len() as u64 - positives)]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learn::{ModelConfig, Samples};
    use crate::synth::{generate, SynthOptions};

    /// The one-pass shortcut gives exactly what the families' own `predict` gives.
    #[test]
    fn one_pass_classes_equal_each_familys_predict() {
        let schema = crate::schema::Schema::embedded();
        let data = generate(&schema, SynthOptions { rows: 400, ..SynthOptions::default() });
        let labels: Vec<u8> = data.labels.iter().map(|&l| schema.encode_label(l).unwrap()).collect();
        let samples = Samples::new(&data.x, data.n_features(), &labels).unwrap();
        for config in [
            r#"{"random_forest": {"n_estimators": 16}}"#,
            r#"{"decision_tree": {"max_depth": 3}}"#,
            r#"{"gradient_boosting": {"n_estimators": 8}}"#,
            r#"{"ada_boost": {"n_estimators": 8}}"#,
            r#"{"logistic_regression": {}}"#,
        ] {
            let model = serde_json::from_str::<ModelConfig>(config).unwrap().fit(&samples).unwrap();
            let (classes, probabilities) = classify(&model, &data.x);
            assert_eq!(classes, model.predict(&data.x), "{config}");
            assert_eq!(probabilities, model.predict_proba(&data.x), "{config}");
        }
    }
}
