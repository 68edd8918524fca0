//! The shipped DVC pipeline (dvc/dvc.yaml) under DVC from the harness's Python environment:
//! `dvc repro` runs every stage once, then only the stages whose parameters or inputs changed.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

/// A DVC project in a temporary folder with the shipped dvc/ folder and the shared data set.
struct Project {
    root: tempfile::TempDir,
}

impl Project {
    fn new() -> Project {
        let root = tempfile::tempdir().unwrap();
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("dvc");
        let dvc = root.path().join("dvc");
        std::fs::create_dir_all(dvc.join("data")).unwrap();
        for file in ["dvc.yaml", "netsec.yaml"] {
            std::fs::copy(shipped.join(file), dvc.join(file)).unwrap();
        }
        std::fs::copy(common::phishing_csv(), dvc.join("data/phishing.csv")).unwrap();
        let project = Project { root };
        project.dvc(&["init", "--no-scm", "-q"]);
        project
    }

    /// Runs dvc in the project root with netsec and dvc on PATH; asserts that it succeeds.
    fn dvc(&self, args: &[&str]) -> String {
        let netsec_dir = Path::new(env!("CARGO_BIN_EXE_netsec")).parent().unwrap().to_path_buf();
        let venv_bin = common::python().parent().unwrap().to_path_buf();
        let path = std::env::join_paths(
            [netsec_dir, venv_bin.clone()].into_iter().chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
        )
        .unwrap();
        let output = Command::new(venv_bin.join("dvc"))
            .current_dir(self.root.path())
            .args(args)
            .env("PATH", path)
            .env_remove("MLFLOW_TRACKING_URI")
            .env("DVC_NO_ANALYTICS", "1")
            .output()
            .expect("run dvc from the harness's environment (`cargo xtask test` installs it)");
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "dvc {args:?} failed:\n{text}");
        text
    }

    /// `dvc repro`, returning the stages it ran (not the ones it skipped), in order.
    fn repro(&self) -> Vec<String> {
        let output = self.dvc(&["repro", "dvc/dvc.yaml"]);
        output
            .lines()
            .filter_map(|line| line.strip_prefix("Running stage 'dvc/dvc.yaml:"))
            .map(|rest| rest.trim_end_matches("':").to_string())
            .collect()
    }

    /// Changes one key of dvc/netsec.yaml, as a user edits the parameters.
    fn set_param(&self, section: &str, key: &str, value: serde_yaml::Value) {
        let path = self.config_path();
        let mut config: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        config[section][key] = value;
        std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
    }

    fn config_path(&self) -> PathBuf {
        self.root.path().join("dvc/netsec.yaml")
    }

    fn manifest(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.root.path().join("dvc/artifacts/dvc/manifest.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }
}

fn grid(text: &str) -> serde_yaml::Value {
    serde_yaml::from_str(text).unwrap()
}

fn stages(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn dvc_repro_reruns_only_the_stages_whose_parameters_or_inputs_changed() {
    let project = Project::new();
    // The shipped grids are the full search; a debug build gets a small one.
    project.set_param("train", "models", grid(common::SMALL_GRID));
    let all = stages(&["ingest", "validate", "transform", "train", "evaluate", "push"]);
    assert_eq!(project.repro(), all);
    assert!(project.repro().is_empty(), "nothing changed, nothing runs");

    project.set_param("train", "models", grid("{decision_tree: {criterion: [gini]}}"));
    assert_eq!(project.repro(), stages(&["train", "evaluate", "push"]));
    let manifest = project.manifest();
    let names: Vec<&str> = manifest["stages"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["ingest", "validate", "transform", "train", "evaluate", "push"]);
    let recorded = &manifest["config"]["train"]["models"];
    assert_eq!(
        recorded,
        &serde_json::json!({"decision_tree": {"criterion": ["gini"]}}),
        "the run records what trained"
    );

    project.set_param("split", "seed", 7.into());
    assert_eq!(project.repro(), all, "a new split changes everything after it");
    assert_eq!(project.manifest()["config"]["split"]["seed"], 7);
    assert!(project.dvc(&["status", "dvc/dvc.yaml"]).contains("up to date"));
}

#[test]
fn a_stage_refuses_a_configuration_that_changes_what_an_earlier_stage_read() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::phishing_csv();
    let source = data.to_str().unwrap();
    common::netsec(dir.path(), &["--source", source, "ingest", "--run", "named"]);
    common::netsec(dir.path(), &["--source", source, "validate", "--run", "named", "--reconfigure"]);
    let output =
        common::netsec_command(dir.path(), &["--source", source, "transform", "--run", "named", "--reconfigure"])
            .env("NETSEC_SPLIT_SEED", "7")
            .output()
            .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("the configuration changed what the ingest stage read"), "{stderr}");
    assert!(stderr.contains("netsec ingest"), "says what to do: {stderr}");
    assert!(!dir.path().join("artifacts/named/transform").exists(), "the refused stage wrote nothing");

    // A second ingest under the same name starts the run afresh.
    common::netsec(dir.path(), &["--source", source, "ingest", "--run", "named"]);
    assert!(!dir.path().join("artifacts/named/validation").exists());
}
