//! MLflow's scoring protocol, as `mlflow models serve` answers it, so that MLflow's clients
//! (and deployment tools that speak it: SageMaker, Azure ML) can call `netsec serve`.
//!
//! * `POST /invocations`, JSON with exactly one of `dataframe_split` (`{"columns": [...],
//!   "data": [[...]]}`), `dataframe_records` (`[{column: value}]`), `instances` or `inputs`
//!   (a list of records, a list of rows in schema order, or `{column: [values]}`), and an
//!   optional `params` object (this model takes none: ignored, as MLflow ignores params a model
//!   does not declare; anything but an object or null is refused, as MLflow refuses it); or
//!   `text/csv` with a header. A cell is one of its column's codes or `null`
//!   (missing). Columns outside the schema are ignored, as MLflow drops them.
//! * The answer is what MLflow gives for the registered model (see
//!   [`crate::tracking::mlflow_model`]): `{"predictions": [{"label", "probability_<class>"...}]}`.
//! * Errors are MLflow's `{"error_code", "message"}`, the message naming the field.
//! * `GET /ping` is 200 once a model is loaded (404 before, as MLflow's), `GET /version` the
//!   netsec version, both as text.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::body::{self, Kind};
use super::error::ApiError;
use super::predict;
use super::reload::ServedModel;
use super::routes::AppState;
use crate::dataset::Dataset;
use crate::onnx::{probability_column, LABEL};

/// The keys that carry the rows, one of which a JSON body must have.
const FORMATS: [&str; 4] = ["dataframe_split", "dataframe_records", "instances", "inputs"];
const EXPECTED: &str = "send {\"dataframe_split\": {\"columns\": [...], \"data\": [[...]]}}, \
                        {\"dataframe_records\": [{...}]}, {\"instances\": [...]} or {\"inputs\": [...]}, or a CSV with a header";

/// POST /invocations.
pub async fn invocations(State(state): State<Arc<AppState>>, request: Request) -> Response {
    match score(state, request).await {
        Ok(response) => response,
        Err(error) => mlflow_error(error),
    }
}

/// GET /ping: MLflow's health check.
pub async fn ping(State(state): State<Arc<AppState>>) -> Response {
    let status = if state.model.get().is_some() { StatusCode::OK } else { StatusCode::NOT_FOUND };
    (status, [(header::CONTENT_TYPE, "text/plain")], "\n").into_response()
}

/// GET /version.
pub async fn version() -> Response {
    ([(header::CONTENT_TYPE, "text/plain")], env!("CARGO_PKG_VERSION")).into_response()
}

async fn score(state: Arc<AppState>, request: Request) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let kind = body::kind(&parts.headers, &["application/json", "text/csv"])?;
    let model = state.model.get().ok_or_else(predict::not_ready)?;
    let options = &state.options;
    let bytes = body::read(body, &parts.headers, options.body_limit, options.body_timeout).await?;
    let inline = bytes.len() <= options.inline_body_limit;
    let job_state = state.clone();
    predict::off_the_runtime(&state, inline, move || {
        let max_rows = job_state.options.max_rows;
        let data = match kind {
            Kind::Json => parse_json(&model, &bytes, max_rows)?,
            _ => predict::parse_csv(&model, "body", &bytes, max_rows)?,
        };
        let predictions = predict::predict(&model, &data)?;
        predict::count(&job_state.metrics, &model, &predictions);
        Ok(render(&model, &predictions))
    })
    .await
}

/// `{"predictions": [...]}`, one record per row.
fn render(model: &ServedModel, predictions: &[(i64, f64)]) -> Response {
    let classes = &model.file.preprocessor.classes;
    let (negative, positive) = (probability_column(classes[0]), probability_column(classes[1]));
    let mut out = String::with_capacity(32 + predictions.len() * 80);
    out.push_str("{\"predictions\": [");
    for (i, (label, p)) in predictions.iter().enumerate() {
        let comma = if i == 0 { "" } else { ", " };
        let _ = write!(out, "{comma}{{\"{LABEL}\": {label}, \"{negative}\": {}, \"{positive}\": {p}}}", 1.0 - p);
    }
    out.push_str("]}");
    ([(header::CONTENT_TYPE, "application/json")], out).into_response()
}

/// MLflow's error body, with the problem, the field and the hint in the message.
fn mlflow_error(error: ApiError) -> Response {
    let code = match error.status.as_u16() {
        413 => "REQUEST_LIMIT_EXCEEDED",
        503 => "TEMPORARILY_UNAVAILABLE",
        400..=499 => "BAD_REQUEST",
        _ => "INTERNAL_ERROR",
    };
    let mut message = error.problem.clone();
    if let Some(hint) = &error.hint {
        let _ = write!(message, " (hint: {hint})");
    }
    let mut response = (
        error.status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"error_code": code, "message": message}).to_string(),
    )
        .into_response();
    if error.close {
        response.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
    }
    response
}

fn parse_json(model: &ServedModel, bytes: &[u8], max_rows: usize) -> Result<Dataset, ApiError> {
    if let Some(data) = common_shape::read(model, bytes, max_rows) {
        return Ok(data);
    }
    let body: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")).hint(EXPECTED))?;
    let Value::Object(fields) = body else {
        return Err(ApiError::bad_request("the body is not a JSON object").hint(EXPECTED));
    };
    let given: Vec<&str> = FORMATS.iter().copied().filter(|f| fields.contains_key(*f)).collect();
    let format = match given.as_slice() {
        [one] => *one,
        [] => return Err(ApiError::bad_request("the body has none of the keys that carry rows").hint(EXPECTED)),
        many => {
            return Err(
                ApiError::bad_request(format!("the body has {}: give only one", many.join(" and "))).hint(EXPECTED)
            )
        }
    };
    // MLflow refuses parameters that are not a dictionary ("Parameters must be a dictionary").
    if fields.get("params").is_some_and(|params| !params.is_object() && !params.is_null()) {
        return Err(ApiError::bad_request("params: not an object").hint("send {\"params\": {}} or leave it out"));
    }
    let mut table = Table::new(model, max_rows);
    let value = &fields[format];
    match format {
        "dataframe_split" => table.split(value)?,
        "dataframe_records" => table.records(value, format)?,
        _ => table.instances(value, format)?,
    }
    if table.data.n_rows() == 0 {
        return Err(ApiError::bad_request(format!("{format}: no rows")).hint(EXPECTED));
    }
    Ok(table.data)
}

/// Rows being read into a dataset, each cell checked against its column's codes.
struct Table<'a> {
    model: &'a ServedModel,
    max_rows: usize,
    data: Dataset,
}

impl<'a> Table<'a> {
    fn new(model: &'a ServedModel, max_rows: usize) -> Self {
        let schema = &model.file.schema;
        Table { model, max_rows, data: Dataset::new(schema.feature_names(), schema.target.name.clone()) }
    }

    fn n_features(&self) -> usize {
        self.model.file.schema.n_features()
    }

    /// `{"columns": [...], "data": [[...]]}` (an `index` is allowed and ignored).
    fn split(&mut self, value: &Value) -> Result<(), ApiError> {
        let field = "dataframe_split";
        let split = value.as_object().ok_or_else(|| bad(field, "is not an object with `columns` and `data`"))?;
        let columns =
            split.get("columns").and_then(Value::as_array).ok_or_else(|| bad(field, "has no `columns` array"))?;
        let mut positions = Vec::with_capacity(columns.len());
        for (i, column) in columns.iter().enumerate() {
            let name = column.as_str().ok_or_else(|| bad(&format!("{field}.columns[{i}]"), "is not a column name"))?;
            positions.push(self.model.feature_index.get(name).copied());
        }
        self.require(positions.iter().flatten().copied(), field)?;
        let rows = split.get("data").and_then(Value::as_array).ok_or_else(|| bad(field, "has no `data` array"))?;
        for (r, row) in rows.iter().enumerate() {
            let field = format!("{field}.data[{r}]");
            let cells = row.as_array().ok_or_else(|| bad(&field, "is not an array of cells"))?;
            if cells.len() != positions.len() {
                return Err(bad(&field, &format!("has {} cells for {} columns", cells.len(), positions.len())));
            }
            let at = self.start_row()?;
            for (c, (cell, position)) in cells.iter().zip(&positions).enumerate() {
                if let Some(j) = *position {
                    self.cell(at, j, cell, || format!("{field}[{c}]"))?;
                }
            }
        }
        Ok(())
    }

    /// A list of records (objects keyed by column).
    fn records(&mut self, value: &Value, field: &str) -> Result<(), ApiError> {
        let rows = value.as_array().ok_or_else(|| bad(field, "is not an array of records"))?;
        for (r, row) in rows.iter().enumerate() {
            let field = format!("{field}[{r}]");
            let record = row.as_object().ok_or_else(|| bad(&field, "is not an object keyed by column"))?;
            self.record(record, &field)?;
        }
        Ok(())
    }

    /// A list of records, a list of rows in schema order, or `{column: [values]}`.
    fn instances(&mut self, value: &Value, field: &str) -> Result<(), ApiError> {
        match value {
            Value::Object(columns) => self.columns(columns, field),
            Value::Array(rows) => {
                for (r, row) in rows.iter().enumerate() {
                    let field = format!("{field}[{r}]");
                    match row {
                        Value::Object(record) => self.record(record, &field)?,
                        Value::Array(cells) => self.positional(cells, &field)?,
                        _ => return Err(bad(&field, "is neither a record nor an array of cells")),
                    }
                }
                Ok(())
            }
            _ => Err(bad(field, "is neither a list of rows nor an object of columns")),
        }
    }

    fn record(&mut self, record: &Map<String, Value>, field: &str) -> Result<(), ApiError> {
        let index = &self.model.feature_index;
        self.require(record.keys().filter_map(|k| index.get(k).copied()), field)?;
        let at = self.start_row()?;
        for (name, cell) in record {
            if let Some(&j) = self.model.feature_index.get(name) {
                self.cell(at, j, cell, || format!("{field}.{name}"))?;
            }
        }
        Ok(())
    }

    fn positional(&mut self, cells: &[Value], field: &str) -> Result<(), ApiError> {
        if cells.len() != self.n_features() {
            let problem = format!("has {} cells; a row in schema order has {}", cells.len(), self.n_features());
            return Err(bad(field, &problem));
        }
        let at = self.start_row()?;
        for (j, cell) in cells.iter().enumerate() {
            self.cell(at, j, cell, || format!("{field}[{j}]"))?;
        }
        Ok(())
    }

    fn columns(&mut self, columns: &Map<String, Value>, field: &str) -> Result<(), ApiError> {
        let index = &self.model.feature_index;
        self.require(columns.keys().filter_map(|k| index.get(k).copied()), field)?;
        let mut given: Vec<(usize, &Vec<Value>, String)> = Vec::new();
        for (name, values) in columns {
            let Some(&j) = index.get(name) else { continue };
            let column_field = format!("{field}.{name}");
            let values = values.as_array().ok_or_else(|| bad(&column_field, "is not an array of values"))?;
            given.push((j, values, column_field));
        }
        let rows = given[0].1.len();
        if let Some((_, values, column_field)) = given.iter().find(|(_, v, _)| v.len() != rows) {
            return Err(bad(column_field, &format!("has {} values, another column {rows}", values.len())));
        }
        for r in 0..rows {
            let at = self.start_row()?;
            for (j, values, column_field) in &given {
                self.cell(at, *j, &values[r], || format!("{column_field}[{r}]"))?;
            }
        }
        Ok(())
    }

    /// Fails unless the given features cover the schema.
    fn require(&self, present: impl Iterator<Item = usize>, field: &str) -> Result<(), ApiError> {
        let mut seen = vec![false; self.n_features()];
        present.for_each(|j| seen[j] = true);
        let missing: Vec<String> = self
            .model
            .file
            .schema
            .columns
            .iter()
            .zip(&seen)
            .filter(|(_, &s)| !s)
            .map(|(c, _)| c.name.clone())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut error = bad(field, &format!("missing columns: {}", missing.join(", ")))
            .hint("name every feature of the model's schema (GET /model)");
        error.missing_columns = missing;
        Err(error)
    }

    /// Appends a row of missing cells; returns its first cell's position.
    fn start_row(&mut self) -> Result<usize, ApiError> {
        if self.data.n_rows() == self.max_rows {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("more than {} rows in one request", self.max_rows),
            )
            .hint("split the rows over several requests"));
        }
        let at = self.data.x.len();
        self.data.x.extend(std::iter::repeat_n(f32::NAN, self.n_features()));
        Ok(at)
    }

    /// One cell: a code of its column, or null for missing.
    /// `field` names the cell in an error; it is made only then, as most cells are fine.
    fn cell(&mut self, at: usize, j: usize, cell: &Value, field: impl FnOnce() -> String) -> Result<(), ApiError> {
        let column = &self.model.file.schema.columns[j];
        let value = match cell {
            Value::Null => return Ok(()),
            Value::Number(n) => n.as_f64().filter(|&v| column.holds(v)).map(|v| v as f32),
            _ => None,
        };
        let Some(value) = value else {
            let codes: Vec<String> = column.values.iter().map(i64::to_string).collect();
            return Err(bad(&field(), &format!("{cell} is not one of the codes of {}", column.name))
                .hint(format!("this column holds one of {}; null means missing", codes.join(", "))));
        };
        self.data.x[at + j] = value;
        Ok(())
    }
}

fn bad(field: &str, problem: &str) -> ApiError {
    let mut error = ApiError::bad_request(format!("{field}: {problem}")).hint(EXPECTED);
    error.field = Some(field.to_string());
    error
}

/// The shapes clients send most, read into typed rows without a `Value` tree (which would
/// cost a one-row request a third of its throughput): pandas' `dataframe_split`, and rows in
/// schema order under `inputs` or `instances`. Any other shape, and any problem, is left to
/// the general path, which names the field at fault.
mod common_shape {
    use serde::Deserialize;
    use serde_json::{Map, Value};

    use super::ServedModel;
    use crate::dataset::Dataset;

    /// A cell: a number or null (missing); anything else fails the typed read.
    type Rows = Vec<Vec<Option<f64>>>;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body<'a> {
        #[serde(borrow)]
        dataframe_split: Option<Split<'a>>,
        inputs: Option<Rows>,
        instances: Option<Rows>,
        #[serde(rename = "params")]
        _params: Option<Map<String, Value>>,
    }

    #[derive(Deserialize)]
    struct Split<'a> {
        #[serde(borrow)]
        columns: Vec<&'a str>,
        data: Rows,
        #[serde(default, rename = "index")]
        _index: Option<serde::de::IgnoredAny>,
    }

    pub(super) fn read(model: &ServedModel, bytes: &[u8], max_rows: usize) -> Option<Dataset> {
        let body: Body = serde_json::from_slice(bytes).ok()?;
        let schema = &model.file.schema;
        let (positions, rows): (Vec<Option<usize>>, Rows) = match body {
            Body { dataframe_split: Some(split), inputs: None, instances: None, .. } => {
                let positions = split.columns.iter().enumerate().map(|(i, c)| position(model, i, c)).collect();
                (positions, split.data)
            }
            Body { dataframe_split: None, inputs: Some(rows), instances: None, .. }
            | Body { dataframe_split: None, inputs: None, instances: Some(rows), .. } => {
                ((0..schema.n_features()).map(Some).collect(), rows)
            }
            _ => return None,
        };
        let mut covered = vec![false; schema.n_features()];
        positions.iter().flatten().for_each(|&j| covered[j] = true);
        if rows.is_empty() || rows.len() > max_rows || covered.contains(&false) {
            return None;
        }
        let mut data = Dataset::new(schema.feature_names(), schema.target.name.clone());
        data.x = vec![f32::NAN; rows.len() * schema.n_features()];
        for (row, values) in data.x.chunks_mut(schema.n_features()).zip(&rows) {
            if values.len() != positions.len() {
                return None;
            }
            for (cell, position) in values.iter().zip(&positions) {
                if let (Some(v), Some(j)) = (cell, position) {
                    row[*j] = schema.columns[*j].holds(*v).then_some(*v as f32)?;
                }
            }
        }
        Some(data)
    }

    /// The feature `name` is, looked up by hash only when it is not at `i` in the schema
    /// (pandas writes the columns in the order they were trained in).
    fn position(model: &ServedModel, i: usize, name: &str) -> Option<usize> {
        let columns = &model.file.schema.columns;
        if columns.get(i).is_some_and(|c| c.name == name) {
            return Some(i);
        }
        model.feature_index.get(name).copied()
    }
}
