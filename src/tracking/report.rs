//! `report.html`: one self-contained page per run (inline styles and SVG, no script, no
//! external asset), readable offline and safe to open from anywhere: the validation summary,
//! the models, and the charts (CV F1 per grid point, F1 against n_estimators, confusion
//! matrix, ROC curve, drift per feature, feature importances).

use std::fmt::Write as _;

use super::svg::{self, escape, Axes, Bar, Dot, Series};
use super::Facts;
use crate::stages::train::TrainReport;
use crate::stages::validate::{ColumnDrift, ValidationReport};

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0 auto;max-width:70rem;padding:1rem;color:#222}\
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem;border-bottom:1px solid #ddd}\
table{border-collapse:collapse;font-size:.85rem}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}\
th{background:#f4f4f4}td.l,th.l{text-align:left}.ok{color:#185}.bad{color:#b00}.muted{color:#666}\
figure{margin:1rem 0}figcaption{font-size:.85rem;color:#555}";

pub fn render(facts: &Facts) -> String {
    let m = facts.manifest;
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>netsec run {id}</title><style>{STYLE}</style></head><body><h1>netsec run {id}</h1>",
        id = escape(&m.run_id)
    );
    header(&mut out, facts);
    match facts.validation {
        Some(v) => validation(&mut out, v),
        None => out.push_str("<h2>Validation</h2><p class=\"muted\">The validate stage has not run.</p>"),
    }
    match facts.train {
        Some(t) => models(&mut out, facts, t),
        None => out.push_str("<h2>Models</h2><p class=\"muted\">The train stage has not run.</p>"),
    }
    out.push_str("</body></html>\n");
    out
}

fn header(out: &mut String, facts: &Facts) {
    let m = facts.manifest;
    let stages: Vec<&str> = m.stages.iter().map(|s| s.name.as_str()).collect();
    let mut rows = vec![
        ("created", m.created_at.clone()),
        ("source", m.config.source.clone()),
        ("git revision", m.git_revision.clone()),
        ("netsec", m.netsec_version.clone()),
        ("stages", stages.join(", ")),
    ];
    if let Some(input) = &m.input {
        rows.push(("data sha256", input.sha256.clone()));
        rows.push(("rows", input.rows.to_string()));
    }
    if let Some(i) = facts.ingest {
        rows.push((
            "split",
            format!(
                "{:?}: {} train / {} test; {} duplicate rows; {} test rows also in train",
                i.strategy, i.train_rows, i.test_rows, i.duplicate_rows, i.test_rows_in_train
            )
            .to_lowercase(),
        ));
    }
    out.push_str("<table>");
    for (name, value) in rows {
        let _ = write!(out, "<tr><th class=\"l\">{name}</th><td class=\"l\">{}</td></tr>", escape(&value));
    }
    if let Some(d) = facts.decision {
        let (class, verdict) = if d.accepted { ("ok", "ACCEPTED") } else { ("bad", "REJECTED") };
        let _ = write!(
            out,
            "<tr><th class=\"l\">gate</th><td class=\"l\"><b class=\"{class}\">{verdict}</b>: {}</td></tr>",
            escape(&d.reasons.join("; "))
        );
    }
    if let Some(p) = facts.push {
        let pushed = match &p.version {
            Some(v) => format!("{v} is now current in {}", p.store),
            None => format!("nothing pushed; {} keeps its current model", p.store),
        };
        let _ = write!(out, "<tr><th class=\"l\">push</th><td class=\"l\">{}</td></tr>", escape(&pushed));
    }
    out.push_str("</table>");
}

fn validation(out: &mut String, v: &ValidationReport) {
    let missing: usize = v.missing.iter().map(|m| m.train + m.test).sum();
    let schema = if v.schema_errors.is_empty() { "ok".to_string() } else { v.schema_errors.join("; ") };
    let drifted = v.drifted_columns();
    let _ = write!(
        out,
        "<h2>Validation</h2><table>\
         <tr><th class=\"l\">schema</th><td class=\"l\">{}</td></tr>\
         <tr><th class=\"l\">missing cells</th><td class=\"l\">{missing}</td></tr>\
         <tr><th class=\"l\">duplicate rows</th><td class=\"l\">{} in train, {} in test</td></tr>\
         <tr><th class=\"l\">leakage</th><td class=\"l\">{} of {} test rows also occur in train; {} feature vectors carry both labels</td></tr>\
         <tr><th class=\"l\">drift</th><td class=\"l {}\">{}{}</td></tr></table>",
        escape(&schema),
        v.duplicates.train,
        v.duplicates.test,
        v.leakage.test_rows_in_train,
        v.leakage.test_rows,
        v.leakage.conflicting_feature_vectors,
        if v.dataset_drift { "bad" } else { "ok" },
        escape(&v.drift_summary()),
        if drifted.is_empty() { String::new() } else { format!(": {}", escape(&drifted.join(", "))) }
    );
    drift_chart(out, v);
    drift_table(out, v);
}

/// Each feature's drift score against its threshold: the corrected p-value of a test, or the
/// distance (one marker line when every feature is measured the same way).
fn drift_chart(out: &mut String, v: &ValidationReport) {
    let score = |d: &ColumnDrift| d.corrected_p_value.unwrap_or(d.statistic);
    let bars: Vec<Bar> =
        v.drift.iter().map(|d| Bar { label: d.column.clone(), value: score(d), alert: d.drift_status }).collect();
    let top = bars.iter().map(|b| b.value).filter(|s| s.is_finite()).fold(0.0, f64::max);
    let (p_line, distance_line) =
        (format!("p = {}", v.drift_threshold), format!("distance = {}", v.drift_distance_threshold));
    let (caption, max, marker) = if v.drift.iter().all(|d| d.method.is_test()) {
        ("corrected p-value per feature", Some(1.0), Some((v.drift_threshold, p_line.as_str())))
    } else if v.drift.iter().all(|d| !d.method.is_test()) {
        let max = top.max(v.drift_distance_threshold) * 1.1;
        ("distance per feature", Some(max), Some((v.drift_distance_threshold, distance_line.as_str())))
    } else {
        ("corrected p-value (tests) or distance per feature", None, None)
    };
    figure(
        out,
        "drift",
        &format!("drift: {caption}, train against test (red: drift)"),
        &svg::bars(&format!("drift: {caption}"), &bars, max, marker),
    );
}

/// Per feature: the method, its statistic, raw and corrected p-values, effect size, verdict.
fn drift_table(out: &mut String, v: &ValidationReport) {
    out.push_str(
        "<h3>Drift per feature, train against test</h3><table><tr><th class=\"l\">feature</th><th class=\"l\">method</th>\
         <th>statistic</th><th>p-value</th><th>corrected</th><th>effect size</th><th class=\"l\">verdict</th></tr>",
    );
    let p = |p: Option<f64>| p.map_or("–".to_string(), |p| format!("{p:.3e}"));
    for d in &v.drift {
        let (class, verdict) = if d.drift_status { ("bad", "drift") } else { ("ok", "–") };
        let _ = write!(
            out,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{:.4}</td><td>{}</td><td>{}</td><td>{:.4}</td><td class=\"l {class}\">{verdict}</td></tr>",
            escape(&d.column),
            d.method.name(),
            d.statistic,
            p(d.p_value),
            p(d.corrected_p_value),
            d.effect_size
        );
    }
    out.push_str("</table>");
}

fn models(out: &mut String, facts: &Facts, t: &TrainReport) {
    let folds = if t.grouped_folds { "grouped " } else { "" };
    let _ = write!(
        out,
        "<h2>Models</h2><p>{} candidates, {folds}{}-fold CV on F1, {:.2} s. The model is chosen on CV F1, never on the test set.</p>\
         <table><tr><th class=\"l\">family</th><th>CV F1</th><th>train F1</th><th>test F1</th><th>precision</th><th>recall</th><th>ROC-AUC</th><th class=\"l\">params</th></tr>",
        t.candidates, t.folds, t.search_seconds
    );
    for f in &t.families {
        let chosen = if f.family == t.chosen.family { " <b>(chosen)</b>" } else { "" };
        let params: Vec<String> =
            f.params.iter().filter(|(k, _)| *k != "seed").map(|(k, v)| format!("{k}={v}")).collect();
        let _ = write!(
            out,
            "<tr><td class=\"l\">{}{chosen}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td class=\"l\">{}</td></tr>",
            escape(&f.family),
            f.cv_f1,
            f.train.f1,
            f.test.f1,
            f.test.precision,
            f.test.recall,
            f.test.roc_auc,
            escape(&params.join(" "))
        );
    }
    out.push_str("</table>");
    for warning in &t.warnings {
        let _ = write!(out, "<p class=\"bad\">warning: {}</p>", escape(warning));
    }
    cv_chart(out, facts, t);
    n_estimators_chart(out, facts, t);
    let c = &t.chosen;
    let classes = [facts.classes[0].as_str(), facts.classes[1].as_str()];
    let caption = format!("confusion matrix of {} on the test rows", c.family);
    figure(out, "confusion", &caption, &svg::confusion(&caption, c.test.confusion, classes));
    if let Some(analysis) = &facts.analysis {
        let axes = Axes {
            x_label: "false positive rate",
            y_label: "true positive rate",
            x: (0.0, 1.0),
            y: (0.0, 1.0),
            log_x: false,
            diagonal: true,
        };
        let name = format!("{} (AUC {:.4})", c.family, c.test.roc_auc);
        let series = [Series {
            name,
            points: analysis.roc.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite()).collect(),
        }];
        let ticks: Vec<(f64, String)> =
            (0..=4).map(|i| (f64::from(i) / 4.0, format!("{}", f64::from(i) / 4.0))).collect();
        figure(
            out,
            "roc",
            &format!("ROC curve of {} on the test rows", c.family),
            &svg::lines("ROC curve", &axes, &series, &ticks),
        );
        importance_chart(out, c.family.as_str(), &analysis.importance);
    }
}

fn cv_chart(out: &mut String, facts: &Facts, t: &TrainReport) {
    let families: Vec<String> = t.families.iter().map(|f| f.family.clone()).collect();
    let best = super::record::point_key(&t.chosen.params);
    let dots: Vec<Dot> = facts
        .candidates
        .iter()
        .filter_map(|c| {
            let category = families.iter().position(|f| *f == c.family)?;
            let key = super::record::point_key(&c.params);
            let best = c.family == t.chosen.family && key == best;
            Some(Dot { category, value: c.cv_f1, title: format!("{} {key}: CV F1 {:.4}", c.family, c.cv_f1), best })
        })
        .collect();
    let axes = Axes {
        x_label: "model family",
        y_label: "CV F1",
        x: (0.0, 1.0),
        y: f1_range(dots.iter().map(|d| d.value)),
        log_x: false,
        diagonal: false,
    };
    figure(
        out,
        "cv",
        "mean CV F1 of every grid point, per model family (red: the chosen one; hover for the grid point)",
        &svg::dots("CV F1 per model and grid point", &axes, &families, &dots),
    );
}

fn n_estimators_chart(out: &mut String, facts: &Facts, t: &TrainReport) {
    let mut series: Vec<Series> = t
        .families
        .iter()
        .filter_map(|f| {
            let own: Vec<_> = facts.candidates.iter().filter(|c| c.family == f.family).collect();
            let points = super::record::staged(&own, &f.params);
            (points.len() > 1).then(|| Series {
                name: format!("{} CV", f.family),
                points: points.into_iter().map(|(n, v)| (n as f64, v)).collect(),
            })
        })
        .collect();
    if let Some(analysis) = facts.analysis.as_ref().filter(|a| !a.staged_test_f1.is_empty()) {
        series.push(Series {
            name: format!("{} test", t.chosen.family),
            points: analysis.staged_test_f1.iter().map(|&(n, v)| (n as f64, v)).collect(),
        });
    }
    if series.is_empty() {
        return;
    }
    let xs: Vec<f64> = series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).collect();
    let (lo, hi) = (xs.iter().copied().fold(f64::INFINITY, f64::min), xs.iter().copied().fold(0.0, f64::max));
    let mut ticks: Vec<f64> = xs.clone();
    ticks.sort_by(f64::total_cmp);
    ticks.dedup();
    let axes = Axes {
        x_label: "n_estimators (log scale)",
        y_label: "F1",
        x: (lo, hi.max(lo + 1.0)),
        y: f1_range(series.iter().flat_map(|s| s.points.iter().map(|p| p.1))),
        log_x: true,
        diagonal: false,
    };
    let ticks: Vec<(f64, String)> = ticks.into_iter().map(|n| (n, format!("{n}"))).collect();
    figure(
        out,
        "n-estimators",
        "F1 against n_estimators: each ensemble's best series on CV, and the chosen model's staged test F1",
        &svg::lines("F1 against n_estimators", &axes, &series, &ticks),
    );
}

fn importance_chart(out: &mut String, family: &str, importance: &[(String, f64)]) {
    let mut sorted: Vec<&(String, f64)> = importance.iter().collect();
    sorted.sort_by(|a, b| b.1.total_cmp(&a.1));
    let bars: Vec<Bar> =
        sorted.iter().map(|(name, v)| Bar { label: name.clone(), value: *v, alert: *v < 0.0 }).collect();
    let caption = format!(
        "permutation importance of {family}: test F1 drop when a feature's column is shuffled \
         ({} shuffle(s) of at most {} test rows)",
        crate::train::importance::REPEATS,
        super::IMPORTANCE_ROWS
    );
    figure(out, "importance", &caption, &svg::bars("feature importances", &bars, None, None));
}

/// A y range that shows the differences between F1 values: their span, padded, within [0, 1].
fn f1_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.filter(|v| v.is_finite()).fold((1.0_f64, 0.0_f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.1).max(0.005);
    ((lo - pad).max(0.0), (hi + pad).min(1.0))
}

fn figure(out: &mut String, id: &str, caption: &str, chart: &str) {
    let _ = write!(out, "<figure id=\"{id}\">{chart}<figcaption>{}</figcaption></figure>", escape(caption));
}
