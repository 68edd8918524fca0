//! The answer to a prediction request, in the format its `Accept` header prefers: JSON, CSV
//! (the rows with `prediction` and `probability` added, as `netsec predict` writes them) or
//! an HTML table.

use std::io::Write;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::reload::ServedModel;
use crate::dataset::Dataset;
use crate::html::escape;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    Html,
}

impl Format {
    /// In order of preference when the client likes several equally (`*/*`).
    const ALL: [(Format, &'static str); 3] =
        [(Format::Json, "application/json"), (Format::Csv, "text/csv"), (Format::Html, "text/html")];

    fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Html => "text/html; charset=utf-8",
        }
    }
}

/// The format the client prefers (by `q`, then our order); JSON without an `Accept`; 406
/// when it accepts none of them.
pub fn negotiate(headers: &HeaderMap) -> Result<Format, ApiError> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).filter(|a| !a.trim().is_empty())
    else {
        return Ok(Format::Json);
    };
    let mut best: Option<(Format, f32)> = None;
    for (format, media) in Format::ALL {
        let q = quality(accept, media);
        if q > 0.0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((format, q));
        }
    }
    best.map(|(f, _)| f).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_ACCEPTABLE, format!("cannot answer in any of the formats accepted (`{accept}`)"))
            .hint("accept application/json, text/csv or text/html")
    })
}

/// The `q` the Accept header gives `media` through its most specific matching range.
fn quality(accept: &str, media: &str) -> f32 {
    let (kind, _) = media.split_once('/').expect("a type/subtype");
    let mut best: Option<(u8, f32)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let specificity = match name.as_str() {
            n if n == media => 3,
            n if n.strip_suffix("/*") == Some(kind) => 2,
            "*/*" | "*" => 1,
            _ => continue,
        };
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")))
            .find_map(|v| v.trim().parse::<f32>().ok())
            .map_or(1.0, |q| q.clamp(0.0, 1.0));
        if best.is_none_or(|(s, _)| specificity > s) {
            best = Some((specificity, q));
        }
    }
    best.map_or(0.0, |(_, q)| q)
}

/// The probability of the predicted label (the model gives that of the positive class).
pub fn probability_of(label: i64, p_positive: f64, positive: i64) -> f64 {
    if label == positive {
        p_positive
    } else {
        1.0 - p_positive
    }
}

/// Renders the predictions of `data`'s rows.
pub fn render(format: Format, model: &ServedModel, data: &Dataset, predictions: &[(i64, f64)]) -> Response {
    let body = match format {
        Format::Csv => csv(model, data, predictions),
        Format::Json => json(model, predictions),
        Format::Html => html(model, data, predictions),
    };
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    if let Some(version) = &model.version_header {
        headers.insert("x-model-version", version.clone());
    }
    response
}

/// Writes a probability with six decimals, exactly as `{:.6}` does, without its slow
/// exact-formatting path (it took a tenth of a 1,000-row answer's time): a probability times
/// 10^6 rounds the same way as its exact decimal expansion unless it lies next to a half,
/// and those rare cases go through `{:.6}`.
fn write_probability(out: &mut Vec<u8>, p: f64) {
    let scaled = p * 1e6;
    if !(0.0..=1e6).contains(&scaled) || (scaled - scaled.floor() - 0.5).abs() < 1e-6 {
        let _ = write!(out, "{p:.6}");
        return;
    }
    let micros = scaled.round() as u32;
    let (whole, fraction) = (micros / 1_000_000, micros % 1_000_000);
    out.push(b'0' + whole as u8);
    out.push(b'.');
    let digits = [100_000, 10_000, 1_000, 100, 10, 1].map(|d| b'0' + (fraction / d % 10) as u8);
    out.extend_from_slice(&digits);
}

fn csv(model: &ServedModel, data: &Dataset, predictions: &[(i64, f64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + data.n_rows() * (3 * data.n_features() + 16));
    let written = data.write_csv_with(&mut out, &["prediction", "probability"], |i, line| {
        let (label, p) = predictions[i];
        write!(line, "{label},")?;
        write_probability(line, probability_of(label, p, model.positive));
        Ok(())
    });
    written.expect("writing to memory cannot fail");
    out
}

fn json(model: &ServedModel, predictions: &[(i64, f64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(96 + predictions.len() * 48);
    let version = serde_json::to_string(&model.version).expect("a string serialises");
    let _ = write!(out, "{{\"model_version\":{version},\"rows\":{},\"predictions\":[", predictions.len());
    for (i, &(label, p)) in predictions.iter().enumerate() {
        let separator = if i == 0 { "" } else { "," };
        let p = probability_of(label, p, model.positive);
        let _ = write!(out, "{separator}{{\"prediction\":{label},\"probability\":{p}}}");
    }
    out.extend_from_slice(b"]}");
    out
}

fn html(model: &ServedModel, data: &Dataset, predictions: &[(i64, f64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024 + data.n_rows() * (12 * data.n_features() + 64));
    let _ = write!(
        out,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>netsec predictions</title>\
         <style>body{{font-family:system-ui,sans-serif;margin:1rem}}table{{border-collapse:collapse;font-size:.8rem}}\
         td,th{{border:1px solid #ccc;padding:2px 4px;text-align:right}}</style></head><body>\
         <p>{} rows scored by model {}. <a href=\"/\">Score more</a></p><table><thead><tr>",
        predictions.len(),
        escape(&model.version)
    );
    let labelled = data.is_labelled();
    let target = labelled.then_some(data.target.as_str());
    for name in data.features.iter().map(String::as_str).chain(target).chain(["prediction", "probability"]) {
        let _ = write!(out, "<th>{}</th>", escape(name));
    }
    out.extend_from_slice(b"</tr></thead><tbody>");
    for (i, &(label, p)) in predictions.iter().enumerate() {
        out.extend_from_slice(b"<tr>");
        for &v in data.row(i) {
            let _ = if v.is_nan() { write!(out, "<td></td>") } else { write!(out, "<td>{v}</td>") };
        }
        if labelled {
            let _ = write!(out, "<td>{}</td>", data.labels[i]);
        }
        let _ = write!(out, "<td>{label}</td><td>");
        write_probability(&mut out, probability_of(label, p, model.positive));
        out.extend_from_slice(b"</td></tr>");
    }
    out.extend_from_slice(b"</tbody></table></body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> Result<Format, ApiError> {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        negotiate(&headers)
    }

    #[test]
    fn the_accept_header_picks_the_format() {
        assert_eq!(negotiate(&HeaderMap::new()).unwrap(), Format::Json);
        assert_eq!(accept("*/*").unwrap(), Format::Json);
        assert_eq!(accept("text/csv").unwrap(), Format::Csv);
        let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert_eq!(accept(browser).unwrap(), Format::Html);
        assert_eq!(accept("text/*;q=0.5, application/json;q=0.4").unwrap(), Format::Csv);
        assert_eq!(accept("text/csv;q=0, */*").unwrap(), Format::Json);
        assert_eq!(accept("image/png").unwrap_err().status, StatusCode::NOT_ACCEPTABLE);
    }

    #[test]
    fn probabilities_print_as_six_decimals_do() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut samples: Vec<f64> = (0..200_000)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 11) as f64 / (1u64 << 53) as f64
            })
            .collect();
        // Halves at the sixth decimal, their neighbours, the ends, and fractions of trees.
        samples.extend([0.0, 1.0, 0.5, 0.0000005, 0.9999995, 0.1234565, 1.0 - 1e-12, 0.3, 0.7, 2.0 / 3.0]);
        samples.extend((1..=256).map(|k| k as f64 / 256.0).chain((1..=128).map(|k| 1.0 - k as f64 / 128.0)));
        for p in
            samples.iter().flat_map(|&p| [p, f64::from_bits(p.to_bits() + 1), f64::from_bits(p.to_bits().max(1) - 1)])
        {
            if !(0.0..=1.0).contains(&p) {
                continue;
            }
            let mut fast = Vec::new();
            write_probability(&mut fast, p);
            assert_eq!(String::from_utf8(fast).unwrap(), format!("{p:.6}"), "{p:e}");
        }
    }

    #[test]
    fn probabilities_are_of_the_predicted_label() {
        assert_eq!(probability_of(1, 0.9, 1), 0.9);
        assert!((probability_of(-1, 0.1, 1) - 0.9).abs() < 1e-12);
        assert_eq!(escape("<a href='x'>&"), "&lt;a href=&#39;x&#39;&gt;&amp;");
    }
}
