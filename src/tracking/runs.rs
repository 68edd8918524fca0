//! `netsec runs list | show RUN | compare RUN RUN`: the local run history, read from the run
//! records under the artifacts root.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::record::{Entry, Record};
use crate::artifacts::{Run, MANIFEST};
use crate::error::InputError;

/// Every run under `root` (oldest first) with its record, if it has one.
pub fn all(root: &Path) -> anyhow::Result<Vec<(String, Option<Record>)>> {
    let entries = match std::fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("reading {}", root.display()))),
    };
    let mut ids: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().join(MANIFEST).is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    ids.sort();
    Ok(ids
        .into_iter()
        .map(|id| {
            let record = Run::open(root, Some(&id)).ok().and_then(|run| super::load(&run).ok());
            (id, record)
        })
        .collect())
}

/// The table of `netsec runs list`.
pub fn render_list(runs: &[(String, Option<Record>)]) -> String {
    let mut out = format!(
        "{:<24} {:<20} {:<28} {:<20} {:>7} {:>7}  {}\n",
        "run", "date", "source", "best model", "CV F1", "test F1", "accepted"
    );
    let number = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
    for (id, record) in runs {
        let Some(r) = record else {
            let _ = writeln!(out, "{id:<24} (no tracking record)");
            continue;
        };
        let o = &r.outcome;
        let accepted = match o.accepted {
            Some(true) => format!("yes{}", o.version.as_ref().map(|v| format!(" ({v})")).unwrap_or_default()),
            Some(false) => "no".into(),
            None => "-".into(),
        };
        let _ = writeln!(
            out,
            "{id:<24} {:<20} {:<28} {:<20} {:>7} {:>7}  {accepted}",
            r.created_at.get(..19).unwrap_or(&r.created_at).replace('T', " "),
            shorten(&r.source, 28),
            o.best_model.as_deref().unwrap_or("-"),
            number(o.cv_f1),
            number(o.test_f1),
        );
    }
    if runs.is_empty() {
        out.push_str("(no runs yet: start one with `netsec pipeline`)\n");
    }
    out
}

/// The long end of a text that is too wide (sources are paths: their end says most).
fn shorten(text: &str, width: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= width {
        return text.to_string();
    }
    let tail: String = chars[chars.len() - (width - 1)..].iter().collect();
    format!("…{tail}")
}

/// `netsec runs show RUN`.
pub fn render_show(record: &Record, sync: Option<&super::mlflow::SyncState>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "run         {}", record.run_id);
    let _ = writeln!(out, "created     {}", record.created_at);
    let _ = writeln!(out, "source      {}", record.source);
    let _ = writeln!(out, "stages      {}", record.stages.join(", "));
    let o = &record.outcome;
    if let Some(best) = &o.best_model {
        let _ = writeln!(
            out,
            "best model  {best}: CV F1 {:.4}, test F1 {:.4}",
            o.cv_f1.unwrap_or(f64::NAN),
            o.test_f1.unwrap_or(f64::NAN)
        );
    }
    if let Some(accepted) = o.accepted {
        let _ = writeln!(
            out,
            "decision    {}{}",
            if accepted { "accepted" } else { "rejected" },
            o.version.as_ref().map(|v| format!(", pushed as {v}")).unwrap_or_default()
        );
    }
    if let Some(state) = sync {
        let _ = writeln!(out, "mlflow      {}", state.describe());
    }
    section(&mut out, "tags", &record.run.tags);
    section(&mut out, "params", &record.run.params);
    out.push_str("metrics\n");
    for m in &record.run.metrics {
        let step = if m.step == 0 { String::new() } else { format!(" (step {})", m.step) };
        let _ = writeln!(out, "  {:<40} {:.6}{step}", m.key, m.value);
    }
    out.push_str("families\n");
    for f in &record.families {
        let params: Vec<String> =
            f.params.iter().filter(|(k, _)| *k != "seed").map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(
            out,
            "  {:<22} CV F1 {:.4}  test F1 {:.4}  {}",
            f.name,
            metric(f, "cv_f1").unwrap_or(f64::NAN),
            metric(f, "test_f1").unwrap_or(f64::NAN),
            params.join(" ")
        );
    }
    let _ = writeln!(out, "artifacts   {}", record.artifacts.join(", "));
    out
}

fn section(out: &mut String, name: &str, values: &BTreeMap<String, String>) {
    let _ = writeln!(out, "{name}");
    for (k, v) in values {
        let _ = writeln!(out, "  {k:<40} {v}");
    }
}

/// The value of an unstepped metric of an entry.
pub fn metric(entry: &Entry, key: &str) -> Option<f64> {
    entry.metrics.iter().find(|m| m.key == key && m.step == 0).map(|m| m.value)
}

/// `netsec runs compare A B`: the params that differ, and every unstepped metric of the run
/// and of each family side by side with B − A.
pub fn render_compare(a: &Record, b: &Record) -> String {
    let mut out = format!("{:<44} {:>24} {:>24}\n", "", a.run_id, b.run_id);
    let keys: std::collections::BTreeSet<&String> = a.run.params.keys().chain(b.run.params.keys()).collect();
    let mut differing = 0;
    out.push_str("params that differ\n");
    for key in keys {
        let (x, y) = (a.run.params.get(key), b.run.params.get(key));
        if x != y {
            differing += 1;
            let show = |v: Option<&String>| v.map_or("-".to_string(), |v| shorten(v, 24));
            let _ = writeln!(out, "  {key:<42} {:>24} {:>24}", show(x), show(y));
        }
    }
    if differing == 0 {
        out.push_str("  (none)\n");
    }
    let _ = writeln!(out, "{:<44} {:>24} {:>24} {:>10}", "metrics", "", "", "B - A");
    compare_entries(&mut out, "", &a.run, &b.run);
    let names: Vec<&String> = a.families.iter().map(|f| &f.name).chain(b.families.iter().map(|f| &f.name)).collect();
    let mut seen = Vec::new();
    for name in names {
        if seen.contains(&name) {
            continue;
        }
        seen.push(name);
        let find = |r: &'_ Record| r.families.iter().find(|f| &f.name == name).cloned().unwrap_or_default();
        let (x, y) = (find(a), find(b));
        for key in ["cv_f1", "train_f1", "test_f1", "test_precision", "test_recall", "test_roc_auc"] {
            row(&mut out, &format!("{name}.{key}"), metric(&x, key), metric(&y, key));
        }
    }
    let decision = |r: &Record| match r.outcome.accepted {
        Some(true) => "accepted".to_string(),
        Some(false) => "rejected".to_string(),
        None => "-".to_string(),
    };
    let _ = writeln!(out, "{:<44} {:>24} {:>24}", "decision", decision(a), decision(b));
    out
}

fn compare_entries(out: &mut String, prefix: &str, a: &Entry, b: &Entry) {
    let mut keys: Vec<&str> =
        a.metrics.iter().chain(&b.metrics).filter(|m| m.step == 0).map(|m| m.key.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    for key in keys {
        row(out, &format!("{prefix}{key}"), metric(a, key), metric(b, key));
    }
}

fn row(out: &mut String, name: &str, x: Option<f64>, y: Option<f64>) {
    let show = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.6}"));
    let delta = match (x, y) {
        (Some(x), Some(y)) => format!("{:+.6}", y - x),
        _ => "-".into(),
    };
    let _ = writeln!(out, "  {name:<42} {:>24} {:>24} {delta:>10}", show(x), show(y));
}

/// The record of run `id` under `root`, with a message that says what to do when it is not there.
pub fn open(root: &Path, id: &str) -> anyhow::Result<(Run, Record)> {
    let run = Run::open(root, Some(id)).map_err(|_| {
        InputError::in_file(&root.join(id), "no such run").hint("list the runs with `netsec runs list`")
    })?;
    let record = super::load(&run)?;
    Ok((run, record))
}
