//! GET /openapi.json (OpenAPI 3.0, written by hand next to the routes it describes and
//! checked against the running server by the tests) and GET /docs, an HTML page rendered from
//! the same document, so that the two cannot disagree.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{json, Value};

use crate::html::escape;
use crate::schema::Schema;

pub async fn spec() -> impl IntoResponse {
    static TEXT: OnceLock<String> = OnceLock::new();
    let text = TEXT.get_or_init(|| document().to_string());
    ([(header::CONTENT_TYPE, "application/json")], text.as_str())
}

pub async fn docs() -> impl IntoResponse {
    static PAGE: OnceLock<String> = OnceLock::new();
    let page = PAGE.get_or_init(|| render_docs(&document()));
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page.as_str())
}

/// The API description. Feature names come from the embedded schema; a model trained with
/// another schema takes that schema's columns (GET /model lists them).
pub fn document() -> Value {
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "netsec",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Phishing-website classifier: predictions from the model store's current model, \
                            authenticated retraining, health and metrics.",
        },
        "paths": paths(),
        "components": {
            "schemas": schemas(&Schema::embedded()),
            "securitySchemes": {"admin": {"type": "http", "scheme": "bearer",
                "description": "The server's NETSEC_ADMIN_TOKEN. Without it set, the training routes answer 404."}},
            "responses": error_responses(),
        },
    })
}

/// A regular expression that a CSV body of the schema's columns (in schema order, without
/// the label) matches, so that generated requests (schemathesis) are valid CSV.
fn csv_pattern(schema: &Schema) -> String {
    let names: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
    let cell = |values: &[i64]| format!("({})?", values.iter().map(i64::to_string).collect::<Vec<_>>().join("|"));
    let row: Vec<String> = schema.columns.iter().map(|c| cell(&c.values)).collect();
    format!("^{}(\\n{})+\\n?$", names.join(","), row.join(","))
}

fn paths() -> Value {
    let csv = json!({"type": "string", "pattern": csv_pattern(&Schema::embedded()),
        "description": "A header naming the feature columns, then one row per site"});
    let predict_answers = json!({
        "application/json": {"schema": {"$ref": "#/components/schemas/Predictions"}},
        "text/csv": {"schema": {"type": "string"}},
        "text/html": {"schema": {"type": "string"}},
    });
    let refusals = |codes: &[&str]| -> serde_json::Map<String, Value> {
        codes.iter().map(|c| (c.to_string(), json!({"$ref": format!("#/components/responses/E{c}")}))).collect()
    };
    let with = |ok: Value, codes: &[&str]| {
        let mut responses = refusals(codes);
        responses.insert("200".into(), ok);
        Value::Object(responses)
    };
    let predict_codes = ["400", "406", "408", "413", "415", "503"];
    let model_name = json!({"name": "name", "in": "path", "required": true,
        "schema": {"type": "string", "enum": [super::inference::MODEL_NAME]}, "description": "The model's name: netsec"});
    json!({
        "/": {"get": {"summary": "The web page: CSV upload and a one-site form", "operationId": "page",
            "responses": {"200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}}}},
        "/predict": {"post": {
            "summary": "Score CSV rows",
            "operationId": "predictCsv",
            "description": "A CSV with a header naming the model's feature columns (any order; the label column \
                            may be present; no other column). Empty cells and `na` are missing. The answer format \
                            follows Accept: JSON (default), CSV (the rows with `prediction` and `probability` \
                            added) or an HTML table. `probability` is that of the predicted label.",
            "requestBody": {"required": true, "content": {
                "text/csv": {"schema": csv},
                "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {"file": csv},
                    "additionalProperties": false}},
            }},
            "responses": with(json!({"description": "The predictions", "content": predict_answers,
                "headers": {"x-model-version": {"schema": {"type": "string"}}}}), &predict_codes),
        }},
        "/predict/json": {"post": {
            "summary": "Score JSON rows",
            "operationId": "predictJson",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RowsBody"}}}},
            "responses": with(json!({"description": "The predictions", "content": predict_answers,
                "headers": {"x-model-version": {"schema": {"type": "string"}}}}), &predict_codes),
        }},
        "/train": {"post": {
            "summary": "Start a training run (the whole pipeline) in the background",
            "operationId": "train",
            "security": [{"admin": []}],
            "responses": {
                "202": {"description": "Started", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TrainRun"}}},
                        "headers": {"Location": {"schema": {"type": "string"}}},
                        "links": {"TrainStatus": {"operationId": "trainStatus", "parameters": {"id": "$response.body#/id"}}}},
                "401": {"$ref": "#/components/responses/E401"},
                "404": {"$ref": "#/components/responses/E404"},
                "409": {"$ref": "#/components/responses/E409"},
            },
        }},
        "/train/{id}": {"get": {
            "summary": "A training run's state, and its summary or error once finished",
            "operationId": "trainStatus",
            "security": [{"admin": []}],
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
            "responses": with(json!({"description": "The run", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TrainRun"}}}}), &["401", "404"]),
        }},
        "/health": {"get": {"summary": "Liveness", "operationId": "health", "responses": {"200": {"description": "Alive",
            "content": {"application/json": {"schema": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string", "enum": ["ok"]}}}}}}}}},
        "/ready": {"get": {"summary": "Readiness: a model is loaded", "operationId": "ready", "responses": {
            "200": {"description": "Ready", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Ready"}}}},
            "503": {"description": "No model loaded yet", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Ready"}}}},
        }}},
        "/model": {"get": {"summary": "The served model: version, family, parameters, metrics, schema", "operationId": "model",
            "responses": with(json!({"description": "The model", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Model"}}}}), &["503"])}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "operationId": "metrics", "responses": {"200": {"description": "Prometheus text exposition format",
            "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/v2": {"get": {"summary": "Open Inference Protocol: the server's metadata", "operationId": "oipServer",
            "responses": {"200": {"description": "The server", "content": json_body("OipServer")}}}},
        "/v2/health/live": {"get": {"summary": "Open Inference Protocol: liveness", "operationId": "oipLive",
            "responses": {"200": {"description": "Live", "content": json_body("OipLive")}}}},
        "/v2/health/ready": {"get": {"summary": "Open Inference Protocol: readiness (a model is loaded)", "operationId": "oipReady",
            "responses": {"200": {"description": "Ready", "content": json_body("OipReady")},
                          "400": {"description": "Not ready (the protocol's 4xx for false)", "content": json_body("OipReady")}}}},
        "/v2/models/{name}": {"get": {"summary": "Open Inference Protocol: the model's versions, inputs and outputs",
            "operationId": "oipModel", "parameters": [model_name.clone()],
            "responses": {"200": {"description": "The model", "content": json_body("OipModel")},
                          "404": oip_error("No such model"), "503": oip_error("No model loaded yet")}}},
        "/v2/models/{name}/ready": {"get": {"summary": "Open Inference Protocol: the model's readiness", "operationId": "oipModelReady",
            "parameters": [model_name.clone()],
            "responses": {"200": {"description": "Ready", "content": json_body("OipReady")},
                          "400": {"description": "Not ready", "content": json_body("OipReady")},
                          "404": oip_error("No such model")}}},
        "/v2/models/{name}/infer": {"post": {
            "summary": "Open Inference Protocol: inference on JSON tensors",
            "operationId": "oipInfer",
            "description": "One input of shape [n, 30] (the features in schema order) or one input per feature \
                            (named after it, shape [n] or [n, 1]); outputs `label` (INT64, [n]) and `probabilities` \
                            (FP64, [n, 2], in the order of GET /model's classes). The binary tensor extension is \
                            not supported.",
            "parameters": [model_name],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OipInferRequest"}}}},
            "responses": {"200": {"description": "The outputs", "content": json_body("OipInferResponse")},
                "400": oip_error("Malformed request: the message names the field"),
                "404": oip_error("No such model"),
                "408": oip_error("The body did not arrive within the body timeout"),
                "413": oip_error("The body or the number of rows is over the limit"),
                "415": oip_error("The Content-Type is not JSON"),
                "503": oip_error("No model loaded yet")},
        }},
        "/invocations": {"post": {
            "summary": "MLflow's scoring protocol (as `mlflow models serve` answers it)",
            "operationId": "mlflowInvocations",
            "description": "JSON with one of `dataframe_split`, `dataframe_records`, `instances` or `inputs` (and an \
                            optional `params`, ignored: the model takes none), or a CSV with a header. Cells are codes or \
                            null (missing); columns outside the schema are ignored. The answer is the registered MLflow \
                            model's: a record per row with `label` and the probability of each class.",
            "requestBody": {"required": true, "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/MlflowRequest"}},
                "text/csv": {"schema": csv.clone()}}},
            "responses": {"200": {"description": "The predictions", "content": json_body("MlflowPredictions")},
                "400": mlflow_error("Malformed request: the message names the field"),
                "408": mlflow_error("The body did not arrive within the body timeout"),
                "413": mlflow_error("The body or the number of rows is over the limit"),
                "415": mlflow_error("The Content-Type is neither JSON nor CSV"),
                "503": mlflow_error("No model loaded yet")},
        }},
        "/ping": {"get": {"summary": "MLflow's health check", "operationId": "mlflowPing",
            "responses": {"200": {"description": "A model is loaded", "content": {"text/plain": {"schema": {"type": "string"}}}},
                "404": {"description": "No model is loaded yet (as MLflow answers)", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/version": {"get": {"summary": "The server's version", "operationId": "mlflowVersion",
            "responses": {"200": {"description": "netsec's version", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/openapi.json": {"get": {"summary": "This document", "operationId": "openapi", "responses": {"200": {"description": "OpenAPI 3.0",
            "content": {"application/json": {"schema": {"type": "object"}}}}}}},
        "/docs": {"get": {"summary": "This document as a web page", "operationId": "docs", "responses": {"200": {"description": "HTML",
            "content": {"text/html": {"schema": {"type": "string"}}}}}}},
    })
}

/// A JSON body of the schema `name` in components.
fn json_body(name: &str) -> Value {
    json!({"application/json": {"schema": {"$ref": format!("#/components/schemas/{name}")}}})
}

/// An MLflow scoring error answer.
fn mlflow_error(why: &str) -> Value {
    json!({"description": why, "content": json_body("MlflowError")})
}

/// An Open Inference Protocol error answer.
fn oip_error(why: &str) -> Value {
    json!({"description": why, "content": json_body("OipError")})
}

fn error_responses() -> Value {
    let reasons = [
        ("400", "Malformed input: the error names the line and column (CSV) or the field (JSON), and lists missing or extra columns"),
        ("401", "The admin token is missing or wrong"),
        ("404", "Not found (the training routes: training over HTTP is off, or no such run)"),
        ("406", "None of the accepted answer formats is available"),
        ("408", "The body did not arrive within the body timeout"),
        ("409", "A training run is already running"),
        ("413", "The body or the number of rows is over the limit"),
        ("415", "The Content-Type is not accepted by this route"),
        ("503", "No model is loaded yet"),
    ];
    let body = json!({"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}});
    reasons.iter().map(|(code, why)| (format!("E{code}"), json!({"description": why, "content": body}))).collect()
}

fn schemas(schema: &Schema) -> Value {
    let code = |values: &[i64]| json!({"type": "integer", "nullable": true, "enum": values.iter().map(|&v| json!(v)).chain([Value::Null]).collect::<Vec<_>>()});
    let properties: serde_json::Map<String, Value> =
        schema.columns.iter().map(|c| (c.name.clone(), code(&c.values))).collect();
    let mut object_properties = properties.clone();
    object_properties.insert(schema.target.name.clone(), json!({"description": "The label; ignored if present"}));
    let n = schema.n_features();
    // OpenAPI 3.0 cannot give each array position its own type: items take any column's code.
    let mut codes: Vec<i64> = schema.columns.iter().flat_map(|c| c.values.iter().copied()).collect();
    codes.sort_unstable();
    codes.dedup();
    let names: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
    let mut prediction_columns = vec![crate::onnx::LABEL.to_string()];
    prediction_columns.extend(schema.target.values.iter().map(|&c| crate::onnx::probability_column(c)));
    let mut prediction_properties = serde_json::Map::new();
    prediction_properties.insert(crate::onnx::LABEL.into(), json!({"type": "integer", "description": "A label value"}));
    for column in &prediction_columns[1..] {
        prediction_properties.insert(column.clone(), json!({"type": "number", "minimum": 0, "maximum": 1}));
    }
    json!({
        "RowObject": {"type": "object", "required": names, "properties": object_properties, "additionalProperties": false},
        "RowArray": {"type": "array", "minItems": n, "maxItems": n, "description": "The features in schema order",
            "items": code(&codes)},
        "Row": {"oneOf": [{"$ref": "#/components/schemas/RowObject"}, {"$ref": "#/components/schemas/RowArray"}]},
        "RowsBody": {"oneOf": [
            {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Row"}},
            {"type": "object", "required": ["rows"], "additionalProperties": false,
             "properties": {"rows": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Row"}}}},
        ]},
        "Predictions": {"type": "object", "required": ["model_version", "rows", "predictions"], "properties": {
            "model_version": {"type": "string"},
            "rows": {"type": "integer", "minimum": 1},
            "predictions": {"type": "array", "items": {"type": "object", "required": ["prediction", "probability"], "properties": {
                "prediction": {"type": "integer", "description": "A label value"},
                "probability": {"type": "number", "minimum": 0, "maximum": 1, "description": "Probability of the predicted label"},
            }}},
        }},
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["problem"], "properties": {
            "problem": {"type": "string"},
            "line": {"type": "integer"},
            "column": {"type": "string"},
            "field": {"type": "string"},
            "missing_columns": {"type": "array", "items": {"type": "string"}},
            "extra_columns": {"type": "array", "items": {"type": "string"}},
            "hint": {"type": "string"},
        }}}},
        "OipServer": {"type": "object", "required": ["name", "version", "extensions"], "properties": {
            "name": {"type": "string"}, "version": {"type": "string"}, "extensions": {"type": "array", "items": {"type": "string"}}}},
        "OipLive": {"type": "object", "required": ["live"], "properties": {"live": {"type": "boolean"}}},
        "OipReady": {"type": "object", "required": ["ready"], "properties": {"ready": {"type": "boolean"}}},
        "OipTensorMetadata": {"type": "object", "required": ["name", "datatype", "shape"], "properties": {
            "name": {"type": "string"}, "datatype": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer"}}}},
        "OipModel": {"type": "object", "required": ["name", "versions", "platform", "inputs", "outputs"], "properties": {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": {"$ref": "#/components/schemas/OipTensorMetadata"}},
            "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/OipTensorMetadata"}}}},
        "OipInferRequest": {"type": "object", "required": ["inputs"], "properties": {
            "id": {"type": "string", "nullable": true, "description": "Echoed in the answer; null is no id"},
            "inputs": {"type": "array", "minItems": 1, "maxItems": 1, "description": "Shown in its one-input, one-row form",
                "items": {"type": "object", "required": ["name", "shape", "datatype", "data"], "properties": {
                    "name": {"type": "string", "enum": ["input"]},
                    "shape": {"type": "array", "items": {"type": "integer"}, "enum": [[1, n]]},
                    "datatype": {"type": "string", "enum": ["FP32", "FP64", "INT32", "INT64"]},
                    "data": {"type": "array", "minItems": n, "maxItems": n, "items": {"type": "integer", "enum": codes}}}}},
            "outputs": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string", "enum": ["label", "probabilities"]}}}}}},
        "OipInferResponse": {"type": "object", "required": ["model_name", "model_version", "outputs"], "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "outputs": {"type": "array", "items": {"type": "object", "required": ["name", "datatype", "shape", "data"], "properties": {
                "name": {"type": "string"}, "datatype": {"type": "string"},
                "shape": {"type": "array", "items": {"type": "integer"}},
                "data": {"type": "array", "items": {"type": "number"}}}}}}},
        "OipError": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
        // MLflow's scoring server ignores keys and columns it does not know; so does netsec.
        "MlflowRecord": {"type": "object", "required": names, "properties": properties,
            "description": "Keyed by column; columns outside the schema are ignored"},
        "MlflowRow": {"oneOf": [{"$ref": "#/components/schemas/MlflowRecord"}, {"$ref": "#/components/schemas/RowArray"}]},
        "MlflowRequest": {"oneOf": mlflow_formats(&names)},
        "MlflowPredictions": {"type": "object", "required": ["predictions"], "properties": {
            "predictions": {"type": "array", "items": {"type": "object", "required": prediction_columns,
                "properties": prediction_properties}}}},
        "MlflowError": {"type": "object", "required": ["error_code", "message"], "properties": {
            "error_code": {"type": "string"}, "message": {"type": "string"}}},
        "TrainRun": {"type": "object", "required": ["id", "state", "started_at"], "properties": {
            "id": {"type": "string"},
            "state": {"type": "string", "enum": ["running", "succeeded", "failed"]},
            "started_at": {"type": "string"},
            "finished_at": {"type": "string", "nullable": true},
            "summary": {"type": "object", "nullable": true, "description": "The pipeline's summary"},
            "error": {"type": "string", "nullable": true},
        }},
        "Ready": {"type": "object", "required": ["ready", "model_version"], "properties": {
            "ready": {"type": "boolean"}, "model_version": {"type": "string", "nullable": true}}},
        "Model": {"type": "object", "required": ["version", "family", "classes", "positive_class", "schema"], "properties": {
            "version": {"type": "string"},
            "family": {"type": "string"},
            "params": {},
            "test_f1": {"type": "number", "nullable": true},
            "metrics": {},
            "created_at": {"type": "string"},
            "run_id": {"type": "string"},
            "data_sha256": {"type": "string"},
            "netsec_version": {"type": "string"},
            "git_revision": {"type": "string"},
            "loaded_at": {"type": "string"},
            "classes": {"type": "array", "items": {"type": "integer"}},
            "positive_class": {"type": "integer"},
            "schema": {"type": "object"},
        }},
    })
}

/// The four JSON forms of `/invocations`: each has its key and none of the others' (MLflow
/// refuses a body with two), plus an optional `params`; other keys are ignored, as MLflow's.
fn mlflow_formats(names: &[&str]) -> Vec<Value> {
    let rows = |items: &str| json!({"type": "array", "minItems": 1, "items": {"$ref": format!("#/components/schemas/{items}")}});
    let forms = [
        (
            "dataframe_split",
            json!({"type": "object", "required": ["columns", "data"], "properties": {
            "columns": {"type": "array", "items": {"type": "string"}, "enum": [names]},
            "data": rows("RowArray")}}),
        ),
        ("dataframe_records", rows("MlflowRecord")),
        ("instances", rows("MlflowRow")),
        ("inputs", rows("MlflowRow")),
    ];
    forms
        .iter()
        .map(|(key, body)| {
            let others: Vec<Value> =
                forms.iter().filter(|(k, _)| k != key).map(|(k, _)| json!({"required": [k]})).collect();
            json!({"type": "object", "required": [key], "not": {"anyOf": others}, "properties": {
                *key: body, "params": {"type": "object", "nullable": true, "description": "Ignored: the model takes no parameters"}}})
        })
        .collect()
}

/// The document as a readable page: each operation with its request types and answers.
fn render_docs(doc: &Value) -> String {
    let mut out = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>netsec API</title><style>\
         body{font-family:system-ui,sans-serif;max-width:60rem;margin:0 auto;padding:1rem}\
         h2{font-family:monospace;font-size:1.05rem;margin-top:1.6rem}.m{color:#fff;background:#357;padding:1px 6px;border-radius:3px}\
         td{padding:2px 8px;vertical-align:top}</style></head><body><h1>netsec API</h1>\
         <p>The machine-readable document is at <a href=\"/openapi.json\">/openapi.json</a>. Errors are JSON: \
         <code>{\"error\": {\"problem\", \"line\", \"column\", \"field\", \"missing_columns\", \"extra_columns\", \"hint\"}}</code>.</p>",
    );
    let responses = &doc["components"]["responses"];
    for (path, operations) in doc["paths"].as_object().into_iter().flatten() {
        for (method, op) in operations.as_object().into_iter().flatten() {
            out += &format!("<h2><span class=\"m\">{}</span> {}</h2>", method.to_uppercase(), escape(path));
            out += &format!("<p><b>{}</b></p>", escape(op["summary"].as_str().unwrap_or("")));
            if let Some(text) = op["description"].as_str() {
                out += &format!("<p>{}</p>", escape(text));
            }
            if op.get("security").is_some() {
                out += "<p>Requires <code>Authorization: Bearer &lt;NETSEC_ADMIN_TOKEN&gt;</code>.</p>";
            }
            if let Some(content) = op["requestBody"]["content"].as_object() {
                let types: Vec<String> = content.keys().map(|k| format!("<code>{}</code>", escape(k))).collect();
                out += &format!("<p>Body: {}</p>", types.join(", "));
            }
            out += "<table>";
            for (code, answer) in op["responses"].as_object().into_iter().flatten() {
                let answer =
                    answer["$ref"].as_str().and_then(|r| r.rsplit('/').next()).map_or(answer, |n| &responses[n]);
                out += &format!(
                    "<tr><td>{code}</td><td>{}</td></tr>",
                    escape(answer["description"].as_str().unwrap_or(""))
                );
            }
            out += "</table>";
        }
    }
    out + "</body></html>\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_resolves() {
        let doc = document();
        let text = doc.to_string();
        for reference in text.split("\"$ref\":\"").skip(1).map(|r| &r[..r.find('"').unwrap()]) {
            let pointer = reference.strip_prefix('#').unwrap();
            assert!(doc.pointer(pointer).is_some(), "unresolved {reference}");
        }
        let page = render_docs(&doc);
        assert!(page.contains("/predict/json") && page.contains("The body or the number of rows is over the limit"));
    }
}
