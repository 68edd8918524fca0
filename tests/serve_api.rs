//! `netsec serve` over real HTTP: every endpoint, each answer format, the admin token and
//! training, and the metrics.

mod serve_common;

use std::time::Duration;

use reqwest::blocking::multipart;
use reqwest::StatusCode;
use serde_json::Value;
use serve_common::*;

fn post_csv(
    server: &TestServer,
    body: impl Into<reqwest::blocking::Body>,
    accept: &str,
) -> reqwest::blocking::Response {
    let request = client().post(server.url("/predict")).header("content-type", "text/csv").header("accept", accept);
    request.body(body).send().unwrap()
}

fn post_json(server: &TestServer, body: &str) -> reqwest::blocking::Response {
    let request = client().post(server.url("/predict/json")).header("content-type", "application/json");
    request.body(body.to_string()).send().unwrap()
}

#[test]
fn health_ready_model_page_docs_and_openapi() {
    let dir = tempfile::tempdir().unwrap();
    let (store, version) = store_with_model(dir.path());
    let server = TestServer::start(options(dir.path()), store);
    let get = |path: &str| client().get(server.url(path)).send().unwrap();

    let health: Value = get("/health").json().unwrap();
    assert_eq!(health["status"], "ok");
    let ready = get("/ready");
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(ready.json::<Value>().unwrap()["model_version"], version.as_str());

    let model: Value = get("/model").json().unwrap();
    assert_eq!((model["version"].as_str(), model["family"].as_str()), (Some(version.as_str()), Some("decision_tree")));
    assert_eq!(model["schema"]["features"].as_array().unwrap().len(), 30);
    assert_eq!(model["classes"], serde_json::json!([-1, 1]));
    assert_eq!(model["params"]["max_depth"], 6);

    let page = get("/");
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let page = page.text().unwrap();
    assert!(page.contains("<form id=\"upload\"") && page.contains("/predict/json"));
    assert!(!page.contains("src=\"http") && !page.contains("href=\"http"), "the page loads nothing from outside");

    let spec: Value = get("/openapi.json").json().unwrap();
    let paths: Vec<&String> = spec["paths"].as_object().unwrap().keys().collect();
    for route in ["/", "/predict", "/predict/json", "/train", "/train/{id}", "/health", "/ready", "/model", "/metrics"]
    {
        assert!(paths.iter().any(|p| *p == route), "{route} is not in the OpenAPI document");
    }
    let docs = get("/docs").text().unwrap();
    assert!(docs.contains("/predict/json") && docs.contains("Bearer"));
}

#[test]
fn csv_predictions_in_each_format_equal_netsec_predict() {
    let dir = tempfile::tempdir().unwrap();
    let (store, version) = store_with_model(dir.path());
    let server = TestServer::start(options(dir.path()), store);
    let csv = csv_rows(40);

    // The CSV answer is byte for byte what `netsec predict` writes for the same input.
    let answer = post_csv(&server, csv.clone(), "text/csv");
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.headers()["x-model-version"], version.as_str());
    let served = answer.text().unwrap();
    let (input, output) = (dir.path().join("in.csv"), dir.path().join("out.csv"));
    std::fs::write(&input, &csv).unwrap();
    netsec::predict::run(dir.path().join("models").to_str().unwrap(), &input, &output).unwrap();
    assert_eq!(served, std::fs::read_to_string(&output).unwrap());

    let json: Value = post_csv(&server, csv.clone(), "application/json").json().unwrap();
    assert_eq!(json["rows"], 40);
    let predictions = json["predictions"].as_array().unwrap();
    for (line, p) in served.lines().skip(1).zip(predictions) {
        let fields: Vec<&str> = line.rsplitn(3, ',').collect();
        assert_eq!(p["prediction"].as_i64().unwrap().to_string(), fields[1]);
        assert_eq!(format!("{:.6}", p["probability"].as_f64().unwrap()), fields[0]);
    }

    let html = post_csv(&server, csv.clone(), "text/html").text().unwrap();
    assert_eq!(html.matches("<tr>").count(), 41, "a header row and 40 rows");

    // A browser's multipart upload gets the same predictions.
    let form = multipart::Form::new().part("file", multipart::Part::text(csv).file_name("sites.csv"));
    let uploaded = client().post(server.url("/predict")).header("accept", "text/csv").multipart(form).send().unwrap();
    assert_eq!(uploaded.status(), StatusCode::OK);
    assert_eq!(uploaded.text().unwrap(), served);
}

#[test]
fn json_rows_as_objects_or_arrays_match_the_csv_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store_with_model(dir.path());
    let server = TestServer::start(options(dir.path()), store);
    let csv = csv_rows(25);
    let from_csv: Value = post_csv(&server, csv.clone(), "application/json").json().unwrap();

    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').map(|name| name.trim_matches('"')).collect();
    let rows: Vec<Vec<i64>> = lines.map(|l| l.split(',').map(|v| v.parse().unwrap()).collect()).collect();
    let objects: Vec<Value> = rows
        .iter()
        .map(|row| Value::Object(header.iter().zip(row).map(|(k, v)| (k.to_string(), Value::from(*v))).collect()))
        .collect();
    let arrays: Vec<Value> = rows.iter().map(|row| Value::from(row[..30].to_vec())).collect();
    assert_eq!(header[30], "Result", "the shared file's label is its last column");

    for body in [Value::from(objects), serde_json::json!({ "rows": arrays })] {
        let answer = post_json(&server, &body.to_string());
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(answer.json::<Value>().unwrap()["predictions"], from_csv["predictions"]);
    }
}

#[test]
fn missing_cells_are_imputed_as_netsec_predict_does() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store_with_model(dir.path());
    let server = TestServer::start(options(dir.path()), store);
    let csv = csv_rows(10).replacen(",1,", ",,", 4).replacen(",-1,", ",na,", 3);
    let served = post_csv(&server, csv.clone(), "text/csv").text().unwrap();
    let (input, output) = (dir.path().join("in.csv"), dir.path().join("out.csv"));
    std::fs::write(&input, &csv).unwrap();
    netsec::predict::run(dir.path().join("models").to_str().unwrap(), &input, &output).unwrap();
    assert_eq!(served, std::fs::read_to_string(&output).unwrap());
    let one_missing = r#"[[null,1,1,1,1,-1,0,1,-1,1,1,-1,1,0,-1,-1,1,1,0,1,1,1,1,-1,-1,0,-1,1,1,1]]"#;
    assert_eq!(post_json(&server, one_missing).status(), StatusCode::OK);
}

#[test]
fn without_a_model_the_server_is_alive_but_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let store = netsec::store::folder_store(&dir.path().join("models")).unwrap();
    let server = TestServer::start(options(dir.path()), store);
    assert_eq!(client().get(server.url("/health")).send().unwrap().status(), StatusCode::OK);
    assert_eq!(client().get(server.url("/ready")).send().unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(client().get(server.url("/model")).send().unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
    let answer = post_csv(&server, csv_rows(1), "text/csv");
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(answer.text().unwrap().contains("no model is loaded yet"));
}

#[test]
fn training_needs_the_token_runs_once_at_a_time_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store_with_model(dir.path());
    let off = TestServer::start(options(dir.path()), store.clone());
    let answer = client().post(off.url("/train")).bearer_auth("anything").send().unwrap();
    assert_eq!(answer.status(), StatusCode::NOT_FOUND, "without NETSEC_ADMIN_TOKEN the route is off");
    drop(off);

    let server = TestServer::start(with_token(options(dir.path()), "admin-token-123"), store);
    let train = || client().post(server.url("/train"));
    let missing = train().send().unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    assert_eq!(train().bearer_auth("admin-token-12").send().unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(train().bearer_auth("admin-token-1234").send().unwrap().status(), StatusCode::UNAUTHORIZED);

    let started = train().bearer_auth("admin-token-123").send().unwrap();
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let location = started.headers()["location"].to_str().unwrap().to_string();
    let run: Value = started.json().unwrap();
    assert_eq!((run["state"].as_str(), location), (Some("running"), format!("/train/{}", run["id"].as_str().unwrap())));
    let again = train().bearer_auth("admin-token-123").send().unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT);

    let status_url = server.url(&format!("/train/{}", run["id"].as_str().unwrap()));
    assert_eq!(client().get(&status_url).send().unwrap().status(), StatusCode::UNAUTHORIZED);
    let mut last = Value::Null;
    let finished = eventually(Duration::from_secs(120), || {
        last = client().get(&status_url).bearer_auth("admin-token-123").send().unwrap().json().unwrap();
        last["state"] != "running"
    });
    assert!(finished, "the training run did not finish: {last}");
    assert_eq!(last["state"], "succeeded", "{last}");
    assert!(last["summary"]["run_id"].as_str().is_some_and(|id| !id.is_empty()), "{last}");
    assert!(last["finished_at"].is_string());
    let unknown = client().get(server.url("/train/nope")).bearer_auth("admin-token-123").send().unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    // Once the run is over, another may start.
    let second: Value = train().bearer_auth("admin-token-123").send().unwrap().json().unwrap();
    let second_url = server.url(&format!("/train/{}", second["id"].as_str().unwrap()));
    assert!(eventually(Duration::from_secs(120), || {
        let run: Value = client().get(&second_url).bearer_auth("admin-token-123").send().unwrap().json().unwrap();
        run["state"] != "running"
    }));
}

#[test]
fn metrics_count_requests_latency_predictions_and_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let (store, version) = store_with_model(dir.path());
    let server = TestServer::start(options(dir.path()), store);
    for _ in 0..3 {
        assert_eq!(post_csv(&server, csv_rows(10), "text/csv").status(), StatusCode::OK);
    }
    assert_eq!(post_json(&server, "[").status(), StatusCode::BAD_REQUEST);
    client().get(server.url("/no/such/route")).send().unwrap();
    let text = client().get(server.url("/metrics")).send().unwrap().text().unwrap();
    let value = |prefix: &str| -> f64 {
        let line = text.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no `{prefix}` in\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(value("netsec_http_requests_total{route=\"/predict\",status=\"200\"}"), 3.0);
    assert_eq!(value("netsec_http_requests_total{route=\"/predict/json\",status=\"400\"}"), 1.0);
    assert_eq!(value("netsec_http_requests_total{route=\"unmatched\",status=\"404\"}"), 1.0);
    assert_eq!(value("netsec_http_request_duration_seconds_count{route=\"/predict\"}"), 3.0);
    assert_eq!(value("netsec_http_request_duration_seconds_bucket{route=\"/predict\",le=\"+Inf\"}"), 3.0);
    let by_class = value("netsec_predictions_total{class=\"-1\"}") + value("netsec_predictions_total{class=\"1\"}");
    assert_eq!(by_class, 30.0);
    assert_eq!(value(&format!("netsec_model_info{{version=\"{version}\",family=\"decision_tree\"}}")), 1.0);
}

#[test]
fn reuse_port_lets_two_servers_share_a_port() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store_with_model(dir.path());
    let mut first = options(dir.path());
    first.reuse_port = true;
    let one = TestServer::start(first.clone(), store.clone());
    first.addr = one.addr;
    let two = TestServer::start(first, store);
    assert_eq!(two.addr, one.addr);
    for server in [&one, &two] {
        assert_eq!(client().get(server.url("/health")).send().unwrap().status(), StatusCode::OK);
    }
    // Without the option the port is taken.
    let mut plain = options(dir.path());
    plain.addr = one.addr;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let store: std::sync::Arc<netsec::store::ModelStore> =
        std::sync::Arc::new(netsec::store::folder_store(&dir.path().join("models")).unwrap());
    let refused = runtime.block_on(netsec::serve::Server::bind(plain, store));
    assert!(refused.is_err_and(|e| e.to_string().contains("cannot listen on")));
}
