//! The Open Inference Protocol's REST routes (KServe's "V2" protocol, which Triton, MLServer
//! and KServe speak): server and model health, model metadata, and inference on JSON tensors.
//!
//! The model is named `netsec`. It takes one input tensor of shape [n, 30] (the features in
//! schema order, any numeric datatype), or one input per feature named after it, of shape [n]
//! or [n, 1]; it gives `label` (INT64, [n]: the label values) and `probabilities` (FP64,
//! [n, 2]: the probability of each class, in the order of `classes` in GET /model). Errors are
//! the protocol's `{"error": "..."}` with a 4xx. The binary tensor extension is not supported:
//! a request using it is refused with what to send instead.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::reload::ServedModel;
use super::routes::AppState;
use super::{body, predict};
use crate::dataset::Dataset;

/// The name clients use for the served model.
pub const MODEL_NAME: &str = "netsec";
/// The one input of shape [n, features].
const INPUT: &str = "input";
const LABEL: &str = "label";
const PROBABILITIES: &str = "probabilities";

/// GET /v2: the server's metadata.
pub async fn server_metadata() -> Response {
    answer(StatusCode::OK, &json!({"name": "netsec", "version": env!("CARGO_PKG_VERSION"), "extensions": []}))
}

/// GET /v2/health/live.
pub async fn live() -> Response {
    answer(StatusCode::OK, &json!({"live": true}))
}

/// GET /v2/health/ready: 200 once a model is loaded, 400 before (the protocol's "4xx is false").
pub async fn server_ready(State(state): State<Arc<AppState>>) -> Response {
    readiness(state.model.get().is_some())
}

/// GET /v2/models/{name}/ready.
pub async fn model_ready(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    match known(&name) {
        Ok(()) => readiness(state.model.get().is_some()),
        Err(error) => error.into_response(),
    }
}

fn readiness(ready: bool) -> Response {
    let status = if ready { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    answer(status, &json!({"ready": ready}))
}

/// GET /v2/models/{name}: the model's versions, inputs and outputs.
pub async fn model_metadata(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    let served = known(&name).and_then(|()| loaded(&state));
    match served {
        Ok(model) => answer(StatusCode::OK, &metadata(&model)),
        Err(error) => error.into_response(),
    }
}

fn metadata(model: &ServedModel) -> Value {
    let n = model.file.schema.n_features() as i64;
    json!({
        "name": MODEL_NAME,
        "versions": [model.version],
        "platform": "netsec",
        "inputs": [{"name": INPUT, "datatype": "FP32", "shape": [-1, n]}],
        "outputs": [
            {"name": LABEL, "datatype": "INT64", "shape": [-1]},
            {"name": PROBABILITIES, "datatype": "FP64", "shape": [-1, 2]},
        ],
    })
}

/// POST /v2/models/{name}/infer.
pub async fn infer(State(state): State<Arc<AppState>>, Path(name): Path<String>, request: Request) -> Response {
    infer_checked(state, &name, request).await.unwrap_or_else(IntoResponse::into_response)
}

async fn infer_checked(state: Arc<AppState>, name: &str, request: Request) -> Result<Response, OipError> {
    known(name)?;
    let (parts, body) = request.into_parts();
    refuse_binary_extension(&parts.headers)?;
    // The protocol's bodies are JSON: a request without a Content-Type is taken as JSON.
    if parts.headers.contains_key(header::CONTENT_TYPE) {
        body::kind(&parts.headers, &["application/json"])?;
    }
    let model = loaded(&state)?;
    let options = &state.options;
    let bytes = body::read(body, &parts.headers, options.body_limit, options.body_timeout).await?;
    let mut request: InferRequest = serde_json::from_slice(&bytes)
        .map_err(|e| OipError::bad_request(format!("the body is not an inference request: {e}")))?;
    let data = request.dataset(&model, options.max_rows)?;
    let predictions = predict::predict(&model, &data)?;
    let outputs = request.outputs(&predictions)?;
    // Written out rather than built as a `Value`, which would cost a one-row request a tenth
    // of its throughput.
    let mut body = String::with_capacity(128 + outputs.len());
    let _ = write!(body, "{{\"model_name\":\"{MODEL_NAME}\",\"model_version\":{}", Value::from(model.version.as_str()));
    if let Some(id) = &request.id {
        let _ = write!(body, ",\"id\":{}", Value::from(id.as_str()));
    }
    let _ = write!(body, ",\"outputs\":[{outputs}]}}");
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// Only `netsec` is served.
fn known(name: &str) -> Result<(), OipError> {
    if name == MODEL_NAME {
        return Ok(());
    }
    Err(OipError::new(StatusCode::NOT_FOUND, format!("no model `{name}`: this server serves `{MODEL_NAME}`")))
}

fn loaded(state: &AppState) -> Result<Arc<ServedModel>, OipError> {
    state.model.get().ok_or_else(|| {
        OipError::new(StatusCode::SERVICE_UNAVAILABLE, "no model is loaded yet; retry once GET /v2/health/ready is 200")
    })
}

fn refuse_binary_extension(headers: &HeaderMap) -> Result<(), OipError> {
    if headers.contains_key("inference-header-content-length") {
        return Err(binary_refused());
    }
    Ok(())
}

fn binary_refused() -> OipError {
    OipError::bad_request(
        "the binary tensor extension is not supported: send the tensors as JSON data (tritonclient: \
         set_data_from_numpy(..., binary_data=False) and InferRequestedOutput(..., binary_data=False))",
    )
}

#[derive(Deserialize)]
struct InferRequest {
    id: Option<String>,
    inputs: Vec<InputTensor>,
    #[serde(default)]
    outputs: Vec<RequestedOutput>,
}

#[derive(Deserialize)]
struct InputTensor {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<Value>,
    data: TensorData,
}

/// A tensor's `data`, nested arrays of numbers, flattened row-major as it is read (no
/// `Value` tree); the first thing that is not a number is kept as the problem.
#[derive(Default)]
struct TensorData {
    values: Vec<f32>,
    not_a_number: Option<String>,
}

impl<'de> Deserialize<'de> for TensorData {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut data = TensorData::default();
        Flatten(&mut data).deserialize(deserializer)?;
        Ok(data)
    }
}

struct Flatten<'a>(&'a mut TensorData);

impl<'de> DeserializeSeed<'de> for Flatten<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Flatten<'_> {
    fn number(self, v: f64) {
        self.0.values.push(v as f32);
    }

    fn other(self, what: impl FnOnce() -> String) {
        self.0.not_a_number.get_or_insert_with(what);
    }
}

impl<'de> Visitor<'de> for Flatten<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("numbers in nested arrays")
    }

    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.number(v as f64);
        Ok(())
    }

    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.number(v as f64);
        Ok(())
    }

    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        self.number(v);
        Ok(())
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.other(|| Value::from(v).to_string());
        Ok(())
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.other(|| v.to_string());
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.other(|| "null".into());
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Flatten(&mut *self.0))?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        self.other(|| "an object".into());
        Ok(())
    }
}

#[derive(Deserialize)]
struct RequestedOutput {
    name: String,
    #[serde(default)]
    parameters: Option<Value>,
}

/// Whether a tensor's parameters ask for the binary extension.
fn wants_binary(parameters: &Option<Value>) -> bool {
    parameters.as_ref().is_some_and(|p| p.get("binary_data").and_then(Value::as_bool) == Some(true))
}

impl InferRequest {
    /// The rows the inputs carry, checked against the model's schema.
    fn dataset(&mut self, model: &ServedModel, max_rows: usize) -> Result<Dataset, OipError> {
        if self.inputs.iter().any(|i| wants_binary(&i.parameters)) {
            return Err(binary_refused());
        }
        let schema = &model.file.schema;
        let n_features = schema.n_features();
        let x = match self.inputs.as_mut_slice() {
            [one] if one.name == INPUT => {
                let values = one.values(&[None, Some(n_features)], "inputs[0]")?;
                check_rows(values.len() / n_features.max(1), max_rows)?;
                values
            }
            _ => self.by_feature(model, max_rows)?,
        };
        let mut dataset = Dataset::new(schema.feature_names(), schema.target.name.clone());
        for (at, value) in x.iter().enumerate() {
            let column = &schema.columns[at % n_features];
            if !column.holds(f64::from(*value)) {
                let row = at / n_features;
                return Err(OipError::bad_request(format!(
                    "inputs: row {row}, feature {}: {value} is not one of its codes {:?}",
                    column.name, column.values
                )));
            }
        }
        dataset.x = x;
        Ok(dataset)
    }

    /// One input per feature, each of shape [n] or [n, 1], interleaved into rows.
    fn by_feature(&mut self, model: &ServedModel, max_rows: usize) -> Result<Vec<f32>, OipError> {
        let n_features = model.file.schema.n_features();
        let mut columns: Vec<Option<Vec<f32>>> = vec![None; n_features];
        for (at, input) in self.inputs.iter_mut().enumerate() {
            let field = format!("inputs[{at}]");
            let Some(&j) = model.feature_index.get(&input.name) else {
                return Err(OipError::bad_request(format!(
                    "{field}.name: `{}` is neither a feature nor `{INPUT}` (the one input of shape [n, {n_features}])",
                    input.name
                )));
            };
            let values = match input.shape.len() {
                2 => input.values(&[None, Some(1)], &field)?,
                _ => input.values(&[None], &field)?,
            };
            if columns[j].replace(values).is_some() {
                return Err(OipError::bad_request(format!("{field}.name: `{}` is given twice", input.name)));
            }
        }
        let missing: Vec<&str> = (0..n_features)
            .filter(|&j| columns[j].is_none())
            .map(|j| model.file.schema.columns[j].name.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(OipError::bad_request(format!("inputs: missing features {}", missing.join(", "))));
        }
        let columns: Vec<Vec<f32>> = columns.into_iter().map(Option::unwrap_or_default).collect();
        let rows = columns[0].len();
        if let Some(j) = columns.iter().position(|c| c.len() != rows) {
            let name = &model.file.schema.columns[j].name;
            return Err(OipError::bad_request(format!(
                "inputs: `{name}` has {} rows, the first feature {rows}",
                columns[j].len()
            )));
        }
        check_rows(rows, max_rows)?;
        Ok((0..rows).flat_map(|i| columns.iter().map(move |c| c[i])).collect())
    }

    /// The requested outputs (both when none is named), in the order asked, as the JSON
    /// array's items.
    fn outputs(&self, predictions: &[(i64, f64)]) -> Result<String, OipError> {
        if self.outputs.iter().any(|o| wants_binary(&o.parameters)) {
            return Err(binary_refused());
        }
        let names: Vec<&str> = match self.outputs.as_slice() {
            [] => vec![LABEL, PROBABILITIES],
            requested => requested.iter().map(|o| o.name.as_str()).collect(),
        };
        let n = predictions.len();
        let mut out = String::with_capacity(128 + n * 64);
        for (at, name) in names.iter().enumerate() {
            let comma = if at == 0 { "" } else { "," };
            match *name {
                LABEL => {
                    let _ =
                        write!(out, "{comma}{{\"name\":\"{LABEL}\",\"datatype\":\"INT64\",\"shape\":[{n}],\"data\":");
                    write_numbers(&mut out, predictions.iter().map(|(label, _)| *label));
                }
                PROBABILITIES => {
                    let _ = write!(
                        out,
                        "{comma}{{\"name\":\"{PROBABILITIES}\",\"datatype\":\"FP64\",\"shape\":[{n},2],\"data\":"
                    );
                    // The model gives the probability of the second class; the first is the rest.
                    write_numbers(&mut out, predictions.iter().flat_map(|&(_, p)| [1.0 - p, p]));
                }
                other => {
                    return Err(OipError::bad_request(format!(
                        "outputs[{at}].name: no output `{other}`; the outputs are `{LABEL}` and `{PROBABILITIES}`"
                    )))
                }
            }
            out.push('}');
        }
        Ok(out)
    }
}

/// `[a,b,...]`: finite numbers, as JSON writes them.
fn write_numbers<T: std::fmt::Display>(out: &mut String, numbers: impl Iterator<Item = T>) {
    out.push('[');
    for (i, number) in numbers.enumerate() {
        let comma = if i == 0 { "" } else { "," };
        let _ = write!(out, "{comma}{number}");
    }
    out.push(']');
}

fn check_rows(rows: usize, max_rows: usize) -> Result<(), OipError> {
    if rows == 0 {
        return Err(OipError::bad_request("inputs: the tensors hold no rows"));
    }
    if rows > max_rows {
        let problem = format!("{rows} rows is over the limit of {max_rows} rows per request; split them");
        return Err(OipError::new(StatusCode::PAYLOAD_TOO_LARGE, problem));
    }
    Ok(())
}

impl InputTensor {
    /// The tensor's values, row-major, after checking its datatype, that its shape fits
    /// `expected` (None: any size) and that its data holds exactly as many numbers.
    fn values(&mut self, expected: &[Option<usize>], field: &str) -> Result<Vec<f32>, OipError> {
        const NUMERIC: [&str; 10] =
            ["FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32"];
        if !NUMERIC.contains(&self.datatype.as_str()) {
            return Err(OipError::bad_request(format!(
                "{field}.datatype: `{}` is not a numeric datatype (e.g. FP32 or INT64)",
                self.datatype
            )));
        }
        let fits = self.shape.len() == expected.len()
            && self.shape.iter().zip(expected).all(|(&d, e)| d >= 0 && e.is_none_or(|e| d as usize == e));
        if !fits {
            let wanted: Vec<String> = expected.iter().map(|e| e.map_or("n".into(), |e| e.to_string())).collect();
            return Err(OipError::bad_request(format!(
                "{field}.shape: {:?} is not [{}]",
                self.shape,
                wanted.join(", ")
            )));
        }
        if let Some(what) = &self.data.not_a_number {
            return Err(OipError::bad_request(format!("{field}.data: {what} is not a number")));
        }
        let values = std::mem::take(&mut self.data.values);
        let size: i64 = self.shape.iter().product();
        if values.len() as i64 != size {
            return Err(OipError::bad_request(format!(
                "{field}.data: {} numbers for a shape of {:?} ({size})",
                values.len(),
                self.shape
            )));
        }
        Ok(values)
    }
}

fn answer(status: StatusCode, body: &Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// The protocol's error answer: `{"error": "..."}`, the hint folded into the message.
#[derive(Debug)]
pub struct OipError {
    status: StatusCode,
    error: String,
    /// Close the connection after answering (the body was not read).
    close: bool,
}

impl OipError {
    fn new(status: StatusCode, error: impl Into<String>) -> OipError {
        OipError { status, error: error.into(), close: false }
    }

    fn bad_request(error: impl Into<String>) -> OipError {
        OipError::new(StatusCode::BAD_REQUEST, error)
    }
}

impl From<ApiError> for OipError {
    fn from(error: ApiError) -> OipError {
        let mut text = error.problem.clone();
        if let Some(hint) = &error.hint {
            text.push_str(&format!(" (hint: {hint})"));
        }
        OipError { close: error.close, ..OipError::new(error.status, text) }
    }
}

impl IntoResponse for OipError {
    fn into_response(self) -> Response {
        let mut response = answer(self.status, &json!({"error": self.error}));
        if self.close {
            response.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
        }
        response
    }
}
