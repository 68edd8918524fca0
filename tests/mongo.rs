//! The MongoDB source and `netsec load-data`, against the SecantusDB server `cargo xtask test`
//! starts (with authentication on): a run from MongoDB into an S3 store equals the run from
//! the CSV into a folder; a killed `--replace` load leaves the old collection as it was; each
//! failure says what went wrong and never shows the password.

mod common;
mod stand_ins;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use mongodb::bson::{doc, Document};
use serde_json::Value;
use stand_ins::{fail, mongodb_password, mongodb_uri, netsec, succeed, text, unique};

/// Loads `input` into a new database of its own; returns the database's name.
fn load(dir: &Path, input: &Path, collection: &str, extra: &[&str]) -> String {
    let database = unique("netsec");
    let uri = mongodb_uri();
    let mut args = vec!["load-data", "--input", input.to_str().unwrap(), "--uri", &uri];
    args.extend(["--database", &database, "--collection", collection]);
    args.extend_from_slice(extra);
    let output = succeed(&mut netsec(dir, &args));
    let shown = text(&output.stdout) + &text(&output.stderr);
    assert!(shown.contains("loaded 11055 documents"), "{shown}");
    assert!(!shown.contains(mongodb_password()) && shown.contains("netsec:****@"), "{shown}");
    database
}

/// The first `rows` data rows of the shared file, as a CSV in `dir`.
fn head_csv(dir: &Path, rows: usize) -> std::path::PathBuf {
    let text = std::fs::read_to_string(common::phishing_csv()).unwrap();
    let path = dir.join(format!("head{rows}.csv"));
    std::fs::write(&path, text.lines().take(rows + 1).collect::<Vec<_>>().join("\n")).unwrap();
    path
}

fn pipeline(dir: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--log-format", "json", "pipeline"];
    all.extend_from_slice(args);
    serde_json::from_slice(&succeed(&mut netsec(dir, &all)).stdout).unwrap()
}

fn predictions(dir: &Path, store: &str, output: &str) -> String {
    let input = common::phishing_csv();
    succeed(&mut netsec(dir, &["predict", "--store", store, "--input", input.to_str().unwrap(), "--output", output]));
    std::fs::read_to_string(dir.join(output)).unwrap()
}

#[test]
fn a_run_from_mongodb_into_s3_equals_the_csv_run_into_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let csv = common::phishing_csv();
    let database = load(dir.path(), &csv, "NetworkData", &["--batch", "2000"]);
    let bucket = unique("netsec-mongo");
    let s3 = stand_ins::s3();
    stand_ins::create_bucket(&s3, &bucket);
    let s3_store = format!("s3://{bucket}/models");

    let from_csv = pipeline(dir.path(), &["--source", csv.to_str().unwrap(), "--store", "models", "--artifacts", "a1"]);
    let uri = mongodb_uri();
    let from_mongo =
        pipeline(dir.path(), &["--source", &uri, "--database", &database, "--store", &s3_store, "--artifacts", "a2"]);

    for summary in [&from_csv, &from_mongo] {
        assert_eq!(summary["ingest"]["rows"], 11055);
        assert!(summary["push"]["pushed"].as_bool().unwrap(), "{summary}");
    }
    assert_eq!(from_mongo["ingest"]["extra_columns"], serde_json::json!([]), "_id is dropped silently");
    assert_eq!(from_csv["train"]["families"], from_mongo["train"]["families"], "metrics of every family");
    assert_eq!(from_csv["train"]["chosen"], from_mongo["train"]["chosen"]);
    let (run1, run2) = (
        dir.path().join(from_csv["run_dir"].as_str().unwrap()),
        dir.path().join(from_mongo["run_dir"].as_str().unwrap()),
    );
    for file in
        ["ingest/train.csv", "ingest/test.csv", "transform/train.npy", "transform/test.npy", "train/search.json"]
    {
        assert!(std::fs::read(run1.join(file)).unwrap() == std::fs::read(run2.join(file)).unwrap(), "{file} differs");
    }
    assert_eq!(predictions(dir.path(), "models", "p1.csv"), predictions(dir.path(), &s3_store, "p2.csv"));

    // The model went to S3 with the run beside it, and no password went anywhere.
    let version = from_mongo["push"]["version"].as_str().unwrap();
    let current = s3.block_on(s3.get(&bucket, "models/current")).unwrap().unwrap();
    assert_eq!(String::from_utf8(current).unwrap().trim(), version);
    let artifacts = &from_mongo["push"]["artifacts"];
    assert_eq!(
        artifacts["destination"],
        format!("s3://{bucket}/artifacts/{}/", from_mongo["run_id"].as_str().unwrap())
    );
    let manifest = std::fs::read_to_string(run2.join("manifest.json")).unwrap();
    assert!(
        manifest.contains("netsec:****@") && !manifest.contains("p%40ss") && !manifest.contains(mongodb_password())
    );
    assert!(from_mongo["ingest"]["source"]
        .as_str()
        .unwrap()
        .starts_with(&format!("MongoDB collection {database}.NetworkData on mongodb://netsec:****@")));
}

#[test]
fn a_killed_replace_load_leaves_the_old_collection_intact() {
    let dir = tempfile::tempdir().unwrap();
    let small = head_csv(dir.path(), 50);
    let database = unique("netsec");
    let uri = mongodb_uri();
    let args = |input: &Path, batch: &str| {
        let input = input.to_str().unwrap().to_string();
        let named = ["--database", &database, "--collection", "NetworkData", "--uri", &uri, "--batch", batch];
        let mut args = vec!["-v".to_string(), "load-data".into(), "--replace".into(), "--input".into(), input];
        args.extend(named.iter().map(|s| s.to_string()));
        args
    };
    let run = |args: Vec<String>| netsec(dir.path(), &args.iter().map(String::as_str).collect::<Vec<_>>());
    succeed(&mut run(args(&small, "1000")));
    assert_eq!(stand_ins::count(&database, "NetworkData"), 50);

    let mut child =
        run(args(&common::phishing_csv(), "100")).stderr(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let started = Instant::now();
    let inserting = lines.by_ref().map_while(Result::ok).find(|line| line.contains("inserted documents"));
    assert!(inserting.is_some(), "the load never started inserting");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(started.elapsed() < Duration::from_secs(120));

    // The old collection is whole; the partial copy sits beside it under its temporary name.
    assert_eq!(stand_ins::count(&database, "NetworkData"), 50);
    let names = stand_ins::collection_names(&database);
    let partial: Vec<&String> = names.iter().filter(|n| n.starts_with("NetworkData__netsec_loading_")).collect();
    assert_eq!(partial.len(), 1, "{names:?}");
    let partial_count = stand_ins::count(&database, partial[0]);
    assert!(partial_count > 0 && partial_count < 11055, "{partial_count}");

    // The next load warns about it and replaces the collection in one step.
    let output = succeed(&mut run(args(&small, "20")));
    assert!(text(&output.stderr).contains("interrupted --replace load"), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("loaded 50 documents") && text(&output.stdout).contains("replacing 50"));
    assert_eq!(stand_ins::count(&database, "NetworkData"), 50);
}

#[test]
fn a_load_without_replace_appends_and_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let small = head_csv(dir.path(), 20);
    let database = unique("netsec");
    let uri = mongodb_uri();
    let load = || {
        let args = ["load-data", "--input", small.to_str().unwrap(), "--database", &database, "--batch", "7"];
        // The URI from the Python original's variable.
        text(&succeed(netsec(dir.path(), &args).env("MONGO_DB_URL", &uri)).stdout)
    };
    assert!(load().starts_with(&format!("loaded 20 documents into {database}.NetworkData on mongodb://netsec:****@")));
    assert!(load().contains("(added to 20 documents already there)"));
    assert_eq!(stand_ins::count(&database, "NetworkData"), 40);
    let stored = stand_ins::with_mongodb(async |client| {
        let collection = client.database(&database).collection::<Document>("NetworkData");
        collection.find_one(doc! {}).await.unwrap().unwrap()
    });
    assert_eq!(stored.len(), 32, "_id, 30 features and the label: {stored}");
    assert_eq!(stored.get_i32("Result").unwrap(), -1);
}

#[test]
fn an_unreachable_server_is_reported_with_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let uri = format!("mongodb://netsec:hunter2@127.0.0.1:{port}/");
    let started = Instant::now();
    let stderr = fail(netsec(dir.path(), &["pipeline", "--source", &uri]).env("NETSEC_MONGO_TIMEOUT_SECONDS", "1"), 1);
    assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
    assert!(
        stderr.contains(&format!("cannot reach the MongoDB server mongodb://netsec:****@127.0.0.1:{port}/ within 1s")),
        "{stderr}"
    );
    assert!(stderr.contains("mongo.timeout_seconds") && !stderr.contains("hunter2"), "{stderr}");
    assert!(!dir.path().join("artifacts").exists(), "no run for a source that could not be read");
}

#[test]
fn a_wrong_password_fails_authentication_without_being_printed() {
    let dir = tempfile::tempdir().unwrap();
    let uri = mongodb_uri().replace("t3st%3Ap%40ss%2Fw0rd", "wr0ng%2Fs3cret");
    assert_ne!(uri, mongodb_uri(), "the harness's password changed: update this test");
    for args in [vec!["pipeline", "--source", &uri], vec!["load-data", "--input", "x.csv", "--uri", &uri]] {
        std::fs::copy(common::phishing_csv(), dir.path().join("x.csv")).unwrap();
        let stderr = fail(&mut netsec(dir.path(), &args), 2);
        assert!(
            stderr.contains("MongoDB authentication failed for user `netsec` on mongodb://netsec:****@"),
            "{stderr}"
        );
        assert!(!stderr.contains("wr0ng") && !stderr.contains("s3cret"), "{stderr}");
    }
}

#[test]
fn a_missing_database_or_collection_or_an_empty_collection_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let uri = mongodb_uri();
    let database = unique("netsec");
    let pipeline = |database: &str, collection: &str| {
        fail(
            &mut netsec(
                dir.path(),
                &["pipeline", "--source", &uri, "--database", database, "--collection", collection],
            ),
            2,
        )
    };
    let stderr = pipeline(&database, "NetworkData");
    assert!(stderr.contains(&format!("database `{database}` does not exist on mongodb://netsec:****@")), "{stderr}");
    insert(&database, "other", vec![doc! { "x": 1 }]);
    let stderr = pipeline(&database, "NetworkData");
    assert!(stderr.contains(&format!("no collection `NetworkData` in database `{database}`")), "{stderr}");
    stand_ins::with_mongodb(async |client| client.database(&database).create_collection("empty").await.unwrap());
    let stderr = pipeline(&database, "empty");
    assert!(stderr.contains("collection `empty` in database") && stderr.contains("is empty"), "{stderr}");
    assert!(stderr.contains("netsec load-data"), "{stderr}");
}

fn insert(database: &str, collection: &str, documents: Vec<Document>) {
    stand_ins::insert(database, collection, documents);
}

#[test]
fn a_document_missing_a_column_or_with_a_bad_code_is_named_by_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let small = head_csv(dir.path(), 5);
    let database = unique("netsec");
    let uri = mongodb_uri();
    succeed(&mut netsec(
        dir.path(),
        &["load-data", "--input", small.to_str().unwrap(), "--uri", &uri, "--database", &database],
    ));
    let bad = |change: &dyn Fn(&mut Document)| {
        let mut document = stand_ins::with_mongodb(async |client| {
            client.database(&database).collection::<Document>("NetworkData").find_one(doc! {}).await.unwrap().unwrap()
        });
        document.insert("_id", "bad-row");
        change(&mut document);
        let collection = unique("c");
        insert(&database, &collection, vec![document]);
        fail(
            &mut netsec(
                dir.path(),
                &["pipeline", "--source", &uri, "--database", &database, "--collection", &collection],
            ),
            2,
        )
    };
    let stderr = bad(&|d| _ = d.remove("SSLfinal_State"));
    assert!(stderr.contains(", document 1 (_id \"bad-row\"): has no field `SSLfinal_State`"), "{stderr}");
    assert!(stderr.contains("hint: every document needs every schema column"), "{stderr}");
    let stderr = bad(&|d| _ = d.insert("URL_Length", 7));
    assert!(stderr.contains("(_id \"bad-row\"), field `URL_Length`: 7 is not an allowed value"), "{stderr}");
}
