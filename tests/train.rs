//! Training, the evaluation gate, the model store commands and `netsec predict`, through the
//! binary (with a grid small enough for a debug build).

mod common;

use std::path::Path;

use common::{netsec, netsec_command};
use serde_json::Value;

fn pipeline(dir: &Path, extra: &[&str]) -> Value {
    let source = common::phishing_csv();
    let mut args = vec!["--log-format", "json", "pipeline", "--source", source.to_str().unwrap()];
    args.extend_from_slice(extra);
    serde_json::from_slice(&netsec(dir, &args).stdout).unwrap()
}

fn versions(dir: &Path) -> Vec<Value> {
    let output = netsec(dir, &["--log-format", "json", "models", "list"]);
    serde_json::from_slice::<Vec<Value>>(&output.stdout).unwrap()
}

fn current(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("models/current")).unwrap().trim().to_string()
}

/// The first model is accepted; the same data and seed again gives the same F1, which is no
/// improvement, so the second is rejected and the store keeps its current model.
#[test]
fn the_gate_accepts_a_first_model_and_rejects_one_that_does_not_improve() {
    let dir = tempfile::tempdir().unwrap();
    let first = pipeline(dir.path(), &[]);
    assert_eq!(first["evaluate"]["accepted"], true);
    let chosen = &first["train"]["chosen"];
    assert!(chosen["cv_f1"].as_f64().unwrap() > 0.9, "{chosen}");
    assert!(chosen["test"]["f1"].as_f64().unwrap() > 0.9, "{chosen}");
    let version = first["push"]["version"].as_str().unwrap().to_string();
    assert_eq!(current(dir.path()), version);

    let second = pipeline(dir.path(), &[]);
    assert_eq!(second["evaluate"]["accepted"], false);
    assert_eq!(second["evaluate"]["current_version"], version.as_str());
    assert_eq!(second["evaluate"]["new_f1"], second["evaluate"]["current_f1"]);
    assert!(second["evaluate"]["reasons"][0].as_str().unwrap().contains("does not improve"));
    assert_eq!(second["push"]["pushed"], false);
    assert_eq!(current(dir.path()), version);
    assert_eq!(versions(dir.path()).len(), 1);
}

/// Selection uses cross-validated F1 only: the chosen family is the one with the best CV F1.
#[test]
fn the_chosen_model_has_the_best_cross_validated_f1() {
    let dir = tempfile::tempdir().unwrap();
    let summary = pipeline(dir.path(), &["--split", "random"]);
    let train = &summary["train"];
    let best = train["families"].as_array().unwrap().iter().map(|f| f["cv_f1"].as_f64().unwrap()).fold(0.0, f64::max);
    assert_eq!(train["chosen"]["cv_f1"].as_f64().unwrap(), best);
    assert_eq!(train["grouped_folds"], false);
    let search: Vec<Value> = serde_json::from_slice(
        &std::fs::read(dir.path().join(summary["run_dir"].as_str().unwrap()).join("train/search.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(search.len(), 4, "2 decision trees + a forest scored at 4 and 8 trees");
    assert!(search.iter().all(|c| c["fold_f1"].as_array().unwrap().len() == 3));
}

#[test]
fn an_unreachable_expected_score_fails_the_run_and_pushes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let source = common::phishing_csv();
    let output = netsec_command(dir.path(), &["pipeline", "--source", source.to_str().unwrap()])
        .env("NETSEC_TRAIN_EXPECTED_SCORE", "0.999")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("below train.expected_score 0.999"), "{stderr}");
    assert!(!dir.path().join("models/current").exists());
}

#[test]
fn overfitting_warns_or_fails_as_configured() {
    let dir = tempfile::tempdir().unwrap();
    let source = common::phishing_csv();
    let args = ["pipeline", "--source", source.to_str().unwrap()];
    let warned = netsec_command(dir.path(), &args).env("NETSEC_TRAIN_OVERFIT_THRESHOLD", "0.001").output().unwrap();
    assert!(warned.status.success());
    assert!(String::from_utf8_lossy(&warned.stdout).contains("overfits"));
    let failed = netsec_command(dir.path(), &args)
        .env("NETSEC_TRAIN_OVERFIT_THRESHOLD", "0.001")
        .env("NETSEC_TRAIN_FAIL_ON_OVERFIT", "true")
        .output()
        .unwrap();
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr).contains("train.fail_on_overfit is set"));
}

#[test]
fn models_promote_and_rollback_switch_the_current_version() {
    let dir = tempfile::tempdir().unwrap();
    let first = pipeline(dir.path(), &[]);
    let v1 = first["push"]["version"].as_str().unwrap().to_string();
    // A different seed gives a different model; force it in with a negative improvement bar.
    let mut command = netsec_command(dir.path(), &["--log-format", "json", "pipeline", "--source"]);
    command.arg(common::phishing_csv()).env("NETSEC_SPLIT_SEED", "7").env("NETSEC_TRAIN_MIN_IMPROVEMENT", "-1");
    let second: Value = serde_json::from_slice(&command.output().unwrap().stdout).unwrap();
    let v2 = second["push"]["version"].as_str().map(str::to_string);
    let Some(v2) = v2 else { panic!("the second model was not pushed: {second}") };
    assert_eq!(current(dir.path()), v2);
    let listed = versions(dir.path());
    assert_eq!(listed.len(), 2);

    netsec(dir.path(), &["models", "rollback"]);
    assert_eq!(current(dir.path()), v1);
    netsec(dir.path(), &["models", "promote", &v2]);
    assert_eq!(current(dir.path()), v2);
    let shown = String::from_utf8(netsec(dir.path(), &["models", "show", &v1]).stdout).unwrap();
    assert!(shown.contains(&v1), "{shown}");

    let missing = netsec_command(dir.path(), &["models", "promote", "v0099-20260101T000000Z"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(2), "{}", String::from_utf8_lossy(&missing.stderr));
}

/// `predict` adds the label and its probability; rows without the label column are fine; bad
/// rows are refused like ingest refuses them.
#[test]
fn predict_scores_a_csv_with_the_current_model() {
    let dir = tempfile::tempdir().unwrap();
    pipeline(dir.path(), &[]);
    let csv = std::fs::read_to_string(common::phishing_csv()).unwrap();
    let unlabelled: String =
        csv.lines().take(101).map(|line| line.rsplit_once(',').unwrap().0.to_string() + "\n").collect();
    std::fs::write(dir.path().join("in.csv"), &unlabelled).unwrap();
    netsec(dir.path(), &["predict", "--input", "in.csv", "--output", "out.csv"]);
    let out = std::fs::read_to_string(dir.path().join("out.csv")).unwrap();
    let mut lines = out.lines();
    assert!(lines.next().unwrap().ends_with("Statistical_report,prediction,probability"));
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 100);
    for row in rows {
        let fields: Vec<&str> = row.split(',').collect();
        assert_eq!(fields.len(), 32, "{row}");
        assert!(["-1", "1"].contains(&fields[30]), "{row}");
        let p: f64 = fields[31].parse().unwrap();
        assert!((0.5..=1.0).contains(&p), "the probability of the predicted label: {row}");
    }

    std::fs::write(dir.path().join("bad.csv"), unlabelled.replacen("\n-1,", "\nx,", 1)).unwrap();
    let bad =
        netsec_command(dir.path(), &["predict", "--input", "bad.csv", "--output", "bad-out.csv"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("line 2") && stderr.contains("`x` is not an integer"), "{stderr}");
    assert!(!dir.path().join("bad-out.csv").exists());
}

#[test]
fn predict_without_a_model_says_how_to_get_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.csv"), "a\n1\n").unwrap();
    let output = netsec_command(dir.path(), &["predict", "--input", "in.csv", "--output", "out.csv"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no current model"));
}
