//! Every kind of bad input exits with code 2 and one message naming the file, the line, the
//! column and what to do, and leaves no run folder behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const HEADER: &str = "having_IP_Address,URL_Length,Shortining_Service,having_At_Symbol,double_slash_redirecting,Prefix_Suffix,having_Sub_Domain,SSLfinal_State,Domain_registeration_length,Favicon,port,HTTPS_token,Request_URL,URL_of_Anchor,Links_in_tags,SFH,Submitting_to_email,Abnormal_URL,Redirect,on_mouseover,RightClick,popUpWidnow,Iframe,age_of_domain,DNSRecord,web_traffic,Page_Rank,Google_Index,Links_pointing_to_page,Statistical_report,Result";
const ROW: &str = "-1,1,1,1,-1,-1,-1,-1,-1,1,1,-1,1,-1,1,-1,-1,-1,0,1,1,1,1,-1,-1,-1,-1,1,1,-1,-1";

struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new() -> Case {
        Case { dir: tempfile::tempdir().unwrap() }
    }

    fn file(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn artifacts(&self) -> PathBuf {
        self.dir.path().join("artifacts")
    }

    fn ingest(&self, source: &Path) -> Output {
        Command::new(env!("CARGO_BIN_EXE_netsec"))
            .current_dir(self.dir.path())
            .arg("ingest")
            .arg("--source")
            .arg(source)
            .arg("--artifacts")
            .arg(self.artifacts())
            .output()
            .unwrap()
    }

    /// Runs ingest on `contents` and checks the failure: exit 2, the expected words, no run.
    fn rejects(&self, contents: &str, expected: &[&str]) {
        let source = self.file("data.csv", contents.as_bytes());
        let output = self.ingest(&source);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("data.csv"), "the message names the file: {stderr}");
        assert!(stderr.contains("hint:"), "the message says what to do: {stderr}");
        for word in expected {
            assert!(stderr.contains(word), "expected {word:?} in: {stderr}");
        }
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert_eq!(stderr.trim_end().lines().filter(|l| l.starts_with("error:")).count(), 1, "{stderr}");
        let runs = std::fs::read_dir(self.artifacts()).map(|d| d.count()).unwrap_or(0);
        assert_eq!(runs, 0, "bad input must not leave a run folder");
    }
}

fn with_row(row: &str) -> String {
    format!("{HEADER}\n{ROW}\n{row}\n")
}

#[test]
fn wrong_field_count() {
    Case::new().rejects(&with_row("-1,1,1"), &["line 3", "3 fields but the header has 31"]);
}

#[test]
fn non_numeric_value() {
    let row = ROW.replacen("-1", "abc", 1);
    Case::new().rejects(&with_row(&row), &["line 3", "column `having_IP_Address`", "`abc` is not an integer"]);
}

#[test]
fn value_outside_the_schema() {
    let row = ROW.replacen("-1", "7", 1);
    Case::new()
        .rejects(&with_row(&row), &["line 3", "column `having_IP_Address`", "7 is not an allowed value", "-1, 0, 1"]);
}

#[test]
fn empty_file() {
    Case::new().rejects("", &["the file is empty"]);
}

#[test]
fn header_only() {
    Case::new().rejects(&format!("{HEADER}\n"), &["no data rows"]);
}

#[test]
fn missing_target_column() {
    let header = HEADER.trim_end_matches(",Result");
    let row = ROW.rsplit_once(',').unwrap().0;
    Case::new().rejects(&format!("{header}\n{row}\n"), &["line 1", "target column `Result` is missing"]);
}

#[test]
fn missing_label_value() {
    let row = format!("{},", ROW.rsplit_once(',').unwrap().0);
    Case::new().rejects(&with_row(&row), &["line 3", "column `Result`", "label is missing"]);
}

#[test]
fn missing_feature_column() {
    let header = HEADER.replacen("URL_Length,", "", 1);
    let row = ROW.replacen("1,", "", 1);
    Case::new().rejects(&format!("{header}\n{row}\n"), &["missing columns: URL_Length"]);
}

#[test]
fn duplicate_header() {
    let header = HEADER.replacen("URL_Length", "having_IP_Address", 1);
    Case::new().rejects(&format!("{header}\n{ROW}\n"), &["line 1", "`having_IP_Address` twice"]);
}

#[test]
fn a_directory_instead_of_a_file() {
    let case = Case::new();
    let dir = case.dir.path().join("data.csv");
    std::fs::create_dir(&dir).unwrap();
    let output = case.ingest(&dir);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is a directory, not a file"), "{stderr}");
}

#[test]
fn a_missing_file() {
    let case = Case::new();
    let output = case.ingest(&case.dir.path().join("nope.csv"));
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no such file"));
}

#[test]
fn unbalanced_quotes_are_a_row_with_too_few_fields() {
    let row = format!("\"{ROW}");
    Case::new().rejects(&with_row(&row), &["line 3"]);
}

/// BOM, CRLF line ends, quoted fields and `na` cells are not errors: they read as the plain file.
#[test]
fn bom_crlf_and_quotes_read_like_the_plain_file() {
    let case = Case::new();
    let plain = format!("{HEADER}\n{ROW}\n{}\n", ROW.replacen("-1", "", 1));
    let quoted_header: Vec<String> = HEADER.split(',').map(|h| format!("\"{h}\"")).collect();
    let quoted_row: Vec<String> = ROW.split(',').map(|v| format!("\"{v}\"")).collect();
    let fancy = format!(
        "\u{feff}{}\r\n{}\r\n{}\r\n",
        quoted_header.join(","),
        quoted_row.join(","),
        ROW.replacen("-1", "na", 1)
    );
    let read = |name: &str, text: &str| {
        let source = case.file(name, text.as_bytes());
        let output = case.ingest(&source);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let runs: Vec<_> = std::fs::read_dir(case.artifacts()).unwrap().map(|e| e.unwrap().path()).collect();
        let newest = runs.into_iter().max().unwrap();
        std::fs::read_to_string(newest.join("feature_store/data.csv")).unwrap()
    };
    let from_plain = read("plain.csv", &plain);
    std::thread::sleep(std::time::Duration::from_millis(5));
    assert_eq!(read("fancy.csv", &fancy), from_plain);
}

#[test]
fn an_unknown_config_key_names_the_key_and_the_file() {
    let case = Case::new();
    let config = case.file("netsec.yaml", b"split:\n  sead: 1\n");
    let output =
        Command::new(env!("CARGO_BIN_EXE_netsec")).arg("--config").arg(&config).arg("pipeline").output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("sead") && stderr.contains("netsec.yaml") && stderr.contains("line 2"), "{stderr}");
}
