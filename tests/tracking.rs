//! The local run record: `tracking.json` and `report.html` in every run, `netsec runs
//! list|show|compare`, and the report rendered by a real browser (Debian's headless Chromium).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{netsec, netsec_command};
use serde_json::Value;

/// A pipeline run (JSON summary) in `dir`, with extra environment variables.
fn pipeline(dir: &Path, env: &[(&str, &str)]) -> Value {
    let source = common::phishing_csv();
    let mut command = netsec_command(dir, &["--log-format", "json", "pipeline", "--source", source.to_str().unwrap()]);
    command.env_remove("MLFLOW_TRACKING_URI").envs(env.iter().copied());
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

fn run_dir(dir: &Path, summary: &Value) -> PathBuf {
    dir.join(summary["run_dir"].as_str().unwrap())
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn stdout(dir: &Path, args: &[&str]) -> String {
    String::from_utf8(netsec(dir, args).stdout).unwrap()
}

#[test]
fn every_run_records_params_metrics_tags_and_artifacts_in_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let summary = pipeline(dir.path(), &[]);
    let run = run_dir(dir.path(), &summary);
    let record = json(&run.join("tracking.json"));
    let manifest = json(&run.join("manifest.json"));
    for file in ["tracking.json", "report.html"] {
        let listed = &manifest["files"][file];
        assert_eq!(listed["sha256"], netsec::artifacts::sha256_file(&run.join(file)).unwrap(), "{file}");
    }
    let tags = &record["run"]["tags"];
    assert_eq!(tags["netsec.run_id"], summary["run_id"]);
    assert_eq!(tags["netsec.git_revision"], manifest["git_revision"]);
    assert_eq!(tags["netsec.data_sha256"], manifest["input"]["sha256"]);
    assert_eq!(tags["netsec.decision"], "accepted", "an empty store accepts");
    let params = &record["run"]["params"];
    assert_eq!(params["split.strategy"], "grouped");
    assert_eq!(params["transform.imputer_k"], "3");
    assert_eq!(params["train.models.random_forest.n_estimators"], "[4,8]");

    // The chosen model's metrics equal the train report's.
    let report = json(&run.join("train/report.json"));
    let metric = |entry: &Value, key: &str| -> Vec<(u64, f64)> {
        let points = entry["metrics"].as_array().unwrap().iter().filter(|m| m["key"] == key);
        points.map(|m| (m["step"].as_u64().unwrap(), m["value"].as_f64().unwrap())).collect()
    };
    assert_eq!(metric(&record["run"], "test_f1"), [(0, report["chosen"]["test"]["f1"].as_f64().unwrap())]);
    assert_eq!(metric(&record["run"], "cv_f1"), [(0, report["chosen"]["cv_f1"].as_f64().unwrap())]);
    assert_eq!(metric(&record["run"], "drift_score/having_IP_Address").len(), 1);

    // One entry per family; the forest's CV F1 per n_estimators as steps, equal to search.json.
    let families: Vec<&str> =
        record["families"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(families, ["decision_tree", "random_forest"]);
    let search = json(&run.join("train/search.json"));
    let forest = &record["families"][1];
    let expected: Vec<(u64, f64)> = search
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["family"] == "random_forest")
        .map(|c| (c["params"]["n_estimators"].as_u64().unwrap(), c["cv_f1"].as_f64().unwrap()))
        .collect();
    assert_eq!(metric(forest, "staged_cv_f1"), expected);
    assert_eq!(record["candidates"].as_array().unwrap().len(), search.as_array().unwrap().len());
    let artifacts: Vec<&str> = record["artifacts"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    for expected in ["train/model.bin", "transform/preprocessor.bin", "validation/report.yaml", "report.html"] {
        assert!(artifacts.contains(&expected), "{artifacts:?}");
    }
}

#[test]
fn runs_list_show_and_compare_read_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let first = pipeline(dir.path(), &[]);
    let second = pipeline(dir.path(), &[("NETSEC_TRAIN_MIN_IMPROVEMENT", "0.5")]);
    let (a, b) = (first["run_id"].as_str().unwrap(), second["run_id"].as_str().unwrap());

    let list = stdout(dir.path(), &["runs", "list"]);
    let lines: Vec<&str> = list.lines().collect();
    assert!(lines[0].contains("best model") && lines[0].contains("test F1"), "{list}");
    assert!(lines[1].starts_with(a) && lines[1].contains("yes"), "{list}");
    assert!(lines[2].starts_with(b) && lines[2].trim_end().ends_with("no"), "the second is rejected: {list}");
    let test_f1 = format!("{:.4}", first["train"]["chosen"]["test"]["f1"].as_f64().unwrap());
    assert!(lines[1].contains(&test_f1), "{list}");

    let show = stdout(dir.path(), &["runs", "show", b]);
    assert!(show.contains("decision    rejected") && show.contains("train.min_improvement"), "{show}");

    let compare = stdout(dir.path(), &["runs", "compare", a, b]);
    let differing = compare.lines().find(|l| l.trim_start().starts_with("train.min_improvement")).unwrap();
    assert!(differing.contains("0.5"), "{compare}");
    assert!(compare.lines().any(|l| l.trim_start().starts_with("test_f1 ")), "{compare}");
    assert!(compare.contains("accepted") && compare.contains("rejected"), "{compare}");

    let missing = netsec_command(dir.path(), &["runs", "show", "nope"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("netsec runs list"));
}

/// Stages run alone record the run too, as far as it got.
#[test]
fn a_stage_run_alone_updates_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let source = common::phishing_csv();
    netsec(dir.path(), &["ingest", "--source", source.to_str().unwrap()]);
    netsec(dir.path(), &["validate"]);
    let run = std::fs::read_dir(dir.path().join("artifacts")).unwrap().next().unwrap().unwrap().path();
    let record = json(&run.join("tracking.json"));
    assert_eq!(record["stages"], serde_json::json!(["ingest", "validate"]));
    assert!(record["outcome"]["best_model"].is_null());
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(html.contains("id=\"drift\"") && html.contains("train stage has not run"));
}

/// What the measuring script finds in the page, once Chromium has laid it out.
const MEASURE: &str = r#"<script>
addEventListener("load", () => {
  const charts = [...document.querySelectorAll("figure")].map(f => {
    const svg = f.querySelector("svg"), box = svg.getBoundingClientRect();
    const marks = [...svg.querySelectorAll("rect,circle,polyline")]
      .filter(m => { const b = m.getBBox(); return b.width > 0 || b.height > 0; }).length;
    return { id: f.id, width: box.width, height: box.height, marks };
  });
  const out = document.createElement("pre");
  out.id = "measured";
  out.textContent = JSON.stringify(charts);
  document.body.appendChild(out);
});
</script>"#;

fn chromium(args: &[&str], profile: &Path) -> std::process::Output {
    let output = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot start chromium ({e}): `apt-get install chromium` (.ci/run does)"));
    assert!(output.status.success(), "chromium: {}", String::from_utf8_lossy(&output.stderr));
    output
}

/// The report opens in a browser with every chart drawn: each figure's SVG has a size and
/// visible marks, and a screenshot of the page is not blank. The report itself has no script;
/// the test measures a copy with a measuring script appended.
#[test]
fn the_report_renders_its_charts_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let summary = pipeline(dir.path(), &[]);
    let run = run_dir(dir.path(), &summary);
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    for external in ["<script", "<link", "src=", "href=", "url("] {
        assert!(!html.contains(external), "the report must be self-contained: {external}");
    }
    let measured_page = dir.path().join("measured.html");
    std::fs::write(&measured_page, html.replace("</body>", &format!("{MEASURE}</body>"))).unwrap();
    let url = format!("file://{}", measured_page.display());
    let dom = String::from_utf8(chromium(&["--dump-dom", &url], &dir.path().join("profile-1")).stdout).unwrap();
    let start = dom.find("<pre id=\"measured\">").expect("the measuring script ran") + "<pre id=\"measured\">".len();
    let end = start + dom[start..].find("</pre>").unwrap();
    let charts: Vec<Value> = serde_json::from_str(&dom[start..end].replace("&quot;", "\"")).unwrap();
    let ids: Vec<&str> = charts.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["drift", "cv", "n-estimators", "confusion", "roc", "importance"]);
    for chart in &charts {
        assert!(chart["width"].as_f64().unwrap() > 100.0 && chart["height"].as_f64().unwrap() > 100.0, "{chart}");
        assert!(chart["marks"].as_u64().unwrap() >= 3, "{chart}");
    }

    // A screenshot of the report itself: most of it is white page, but not all of it.
    let png = dir.path().join("report.png");
    let report_url = format!("file://{}", run.join("report.html").display());
    chromium(
        &[&format!("--screenshot={}", png.display()), "--window-size=1200,3000", &report_url],
        &dir.path().join("profile-2"),
    );
    let script = "import sys\nfrom PIL import Image\nimage = Image.open(sys.stdin.read().strip()).convert('RGB')\n\
                  colors = image.getcolors(1 << 24)\n\
                  print(len(colors), sum(n for n, c in colors if c != (255, 255, 255)) / (image.width * image.height))";
    let out = common::run_python(script, png.to_str().unwrap());
    let mut fields = out.split_whitespace();
    let (colors, inked): (usize, f64) =
        (fields.next().unwrap().parse().unwrap(), fields.next().unwrap().parse().unwrap());
    assert!(colors > 20 && inked > 0.02, "the screenshot looks blank: {colors} colours, {inked} of it not white");
}
