//! Charts as inline SVG, drawn here so that `report.html` needs no script and no external
//! asset: horizontal bars, lines over numeric axes, dots per category, and a 2 × 2 matrix.
//! Every mark carries a `<title>`, which browsers show as a tooltip without any script.

use std::fmt::Write as _;

pub use crate::html::escape;

const WIDTH: f64 = 640.0;
const COLORS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf"];

fn open(out: &mut String, height: f64, label: &str) {
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{}">"#,
        escape(label)
    );
}

/// A linear scale from a data range onto pixels.
#[derive(Clone, Copy)]
struct Scale {
    lo: f64,
    hi: f64,
    from: f64,
    to: f64,
    log: bool,
}

impl Scale {
    fn at(&self, v: f64) -> f64 {
        let (v, lo, hi) = if self.log { (v.log2(), self.lo.log2(), self.hi.log2()) } else { (v, self.lo, self.hi) };
        let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
        self.from + t.clamp(0.0, 1.0) * (self.to - self.from)
    }
}

/// One bar of [`bars`]: its label, value, and whether to draw it in the alert colour.
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub alert: bool,
}

/// Horizontal bars from 0 to `max` (the largest value when None), one line per bar, with an
/// optional vertical marker (e.g. a threshold) at `marker`.
pub fn bars(label: &str, bars: &[Bar], max: Option<f64>, marker: Option<(f64, &str)>) -> String {
    let (left, right, row) = (190.0, WIDTH - 70.0, 16.0);
    let height = 30.0 + row * bars.len() as f64;
    let top = bars.iter().map(|b| b.value).fold(0.0_f64, f64::max);
    let scale = Scale { lo: 0.0, hi: max.unwrap_or(top).max(1e-12), from: left, to: right, log: false };
    let mut out = String::new();
    open(&mut out, height, label);
    for (i, bar) in bars.iter().enumerate() {
        let y = 10.0 + row * i as f64;
        let w = (scale.at(bar.value.max(0.0)) - left).max(0.5);
        let color = if bar.alert { COLORS[1] } else { COLORS[0] };
        let (name, value) = (escape(&bar.label), format_value(bar.value));
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" font-size="11" text-anchor="end">{name}</text><rect x="{left}" y="{y}" width="{w:.1}" height="{}" fill="{color}"><title>{name}: {value}</title></rect><text x="{:.1}" y="{}" font-size="10">{value}</text>"#,
            left - 6.0,
            y + 11.0,
            row - 4.0,
            left + w + 4.0,
            y + 11.0
        );
    }
    if let Some((at, name)) = marker {
        let x = scale.at(at);
        let _ = write!(
            out,
            r##"<line x1="{x:.1}" y1="4" x2="{x:.1}" y2="{:.1}" stroke="#555" stroke-dasharray="4 3"/><text x="{x:.1}" y="{:.1}" font-size="10" text-anchor="middle">{}</text>"##,
            height - 16.0,
            height - 4.0,
            escape(name)
        );
    }
    out.push_str("</svg>");
    out
}

/// One line of [`lines`].
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// Axes of [`lines`] and [`dots`].
pub struct Axes<'a> {
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub x: (f64, f64),
    pub y: (f64, f64),
    /// A base-2 logarithmic x axis (for n_estimators grids that double).
    pub log_x: bool,
    /// Draw the diagonal y = x (a ROC curve's chance line).
    pub diagonal: bool,
}

const PLOT: (f64, f64, f64, f64) = (60.0, 20.0, WIDTH - 170.0, 250.0);

fn scales(axes: &Axes) -> (Scale, Scale) {
    let (left, top, right, bottom) = PLOT;
    let x = Scale { lo: axes.x.0, hi: axes.x.1, from: left, to: right, log: axes.log_x };
    let y = Scale { lo: axes.y.0, hi: axes.y.1, from: bottom, to: top, log: false };
    (x, y)
}

fn frame(out: &mut String, axes: &Axes, x_ticks: &[(f64, String)]) {
    let (left, top, right, bottom) = PLOT;
    let (xs, ys) = scales(axes);
    let _ = write!(
        out,
        r##"<rect x="{left}" y="{top}" width="{}" height="{}" fill="none" stroke="#999"/>"##,
        right - left,
        bottom - top
    );
    for i in 0..=4 {
        let v = axes.y.0 + (axes.y.1 - axes.y.0) * f64::from(i) / 4.0;
        let y = ys.at(v);
        let _ = write!(
            out,
            r##"<line x1="{left}" y1="{y:.1}" x2="{right}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" font-size="10" text-anchor="end">{}</text>"##,
            left - 4.0,
            y + 3.0,
            format_value(v)
        );
    }
    for (v, name) in x_ticks {
        let x = xs.at(*v);
        let _ = write!(
            out,
            r#"<text x="{x:.1}" y="{}" font-size="10" text-anchor="middle">{}</text>"#,
            bottom + 14.0,
            escape(name)
        );
    }
    let _ = write!(
        out,
        r#"<text x="{:.1}" y="{}" font-size="11" text-anchor="middle">{}</text><text x="14" y="{:.1}" font-size="11" text-anchor="middle" transform="rotate(-90 14 {:.1})">{}</text>"#,
        (left + right) / 2.0,
        bottom + 32.0,
        escape(axes.x_label),
        (top + bottom) / 2.0,
        (top + bottom) / 2.0,
        escape(axes.y_label)
    );
    if axes.diagonal {
        let _ = write!(
            out,
            r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#aaa" stroke-dasharray="4 3"/>"##,
            xs.at(axes.x.0),
            ys.at(axes.y.0),
            xs.at(axes.x.1),
            ys.at(axes.y.1)
        );
    }
}

fn legend(out: &mut String, names: &[&str]) {
    for (i, name) in names.iter().enumerate() {
        let y = PLOT.1 + 6.0 + 16.0 * i as f64;
        let _ = write!(
            out,
            r#"<rect x="{}" y="{y}" width="10" height="10" fill="{}"/><text x="{}" y="{}" font-size="11">{}</text>"#,
            PLOT.2 + 10.0,
            COLORS[i % COLORS.len()],
            PLOT.2 + 24.0,
            y + 9.0,
            escape(name)
        );
    }
}

/// Lines through each series' points (sorted by x), with a dot at each point.
pub fn lines(label: &str, axes: &Axes, series: &[Series], x_ticks: &[(f64, String)]) -> String {
    let (xs, ys) = scales(axes);
    let mut out = String::new();
    open(&mut out, PLOT.3 + 44.0, label);
    frame(&mut out, axes, x_ticks);
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let path: Vec<String> = s.points.iter().map(|&(x, y)| format!("{:.1},{:.1}", xs.at(x), ys.at(y))).collect();
        let _ = write!(out, r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#, path.join(" "));
        if s.points.len() <= 64 {
            for &(x, y) in &s.points {
                let _ = write!(
                    out,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"><title>{}: {} → {}</title></circle>"#,
                    xs.at(x),
                    ys.at(y),
                    escape(&s.name),
                    format_value(x),
                    format_value(y)
                );
            }
        }
    }
    legend(&mut out, &series.iter().map(|s| s.name.as_str()).collect::<Vec<_>>());
    out.push_str("</svg>");
    out
}

/// One dot of [`dots`]: its category (column), value, tooltip, and whether it is the best.
pub struct Dot {
    pub category: usize,
    pub value: f64,
    pub title: String,
    pub best: bool,
}

/// Dots per category (e.g. every grid point's CV F1 per model family), spread sideways
/// within their column so that equal values stay visible.
pub fn dots(label: &str, axes: &Axes, categories: &[String], dots: &[Dot]) -> String {
    let (_, ys) = scales(axes);
    let (left, _, right, _) = PLOT;
    let column = (right - left) / categories.len().max(1) as f64;
    let mut out = String::new();
    open(&mut out, PLOT.3 + 44.0, label);
    let ticks: Vec<(f64, String)> = Vec::new();
    frame(&mut out, axes, &ticks);
    for (c, name) in categories.iter().enumerate() {
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{}" font-size="10" text-anchor="middle">{}</text>"#,
            left + column * (c as f64 + 0.5),
            PLOT.3 + 14.0,
            escape(name)
        );
    }
    let mut seen = vec![0usize; categories.len()];
    for dot in dots {
        let k = seen[dot.category];
        seen[dot.category] += 1;
        // Spread over the middle 60% of the column, cycling every 24 dots.
        let offset = ((k % 24) as f64 / 23.0 - 0.5) * 0.6 * column;
        let x = left + column * (dot.category as f64 + 0.5) + offset;
        let (r, color) = if dot.best { (5.0, COLORS[1]) } else { (3.0, COLORS[dot.category % COLORS.len()]) };
        let _ = write!(
            out,
            r#"<circle cx="{x:.1}" cy="{:.1}" r="{r}" fill="{color}" fill-opacity="0.75"><title>{}</title></circle>"#,
            ys.at(dot.value),
            escape(&dot.title)
        );
    }
    out.push_str("</svg>");
    out
}

/// A 2 × 2 confusion matrix, `counts[true][predicted]`, shaded by share of the row.
pub fn confusion(label: &str, counts: [[u64; 2]; 2], classes: [&str; 2]) -> String {
    let (left, top, cell) = (150.0, 40.0, 90.0);
    let mut out = String::new();
    open(&mut out, top + 2.0 * cell + 40.0, label);
    let _ = write!(
        out,
        r#"<text x="{}" y="16" font-size="11" text-anchor="middle">predicted</text><text x="20" y="{}" font-size="11" text-anchor="middle" transform="rotate(-90 20 {})">true</text>"#,
        left + cell,
        top + cell,
        top + cell
    );
    for (i, row) in counts.iter().enumerate() {
        let total = (row[0] + row[1]).max(1) as f64;
        let y = top + cell * i as f64;
        let _ = write!(
            out,
            r#"<text x="{}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"#,
            left - 8.0,
            y + cell / 2.0 + 4.0,
            escape(classes[i])
        );
        for (j, &n) in row.iter().enumerate() {
            let x = left + cell * j as f64;
            let share = n as f64 / total;
            let light = 95.0 - 55.0 * share;
            let ink = if light < 60.0 { "#fff" } else { "#000" };
            let _ = write!(
                out,
                r##"<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="hsl(210,60%,{light:.0}%)" stroke="#fff"><title>true {} predicted {}: {n}</title></rect><text x="{}" y="{}" font-size="16" text-anchor="middle" fill="{ink}">{n}</text>"##,
                escape(classes[i]),
                escape(classes[j]),
                x + cell / 2.0,
                y + cell / 2.0 + 6.0
            );
        }
    }
    for (j, class) in classes.iter().enumerate() {
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" font-size="11" text-anchor="middle">{}</text>"#,
            left + cell * (j as f64 + 0.5),
            top - 6.0,
            escape(class)
        );
    }
    out.push_str("</svg>");
    out
}

/// A number as charts label it: 4 significant decimals, scientific below 0.001.
pub fn format_value(v: f64) -> String {
    if v == 0.0 || v.is_nan() {
        format!("{v}")
    } else if v.abs() < 1e-3 {
        format!("{v:.2e}")
    } else if v.fract() == 0.0 && v.abs() < 1e9 {
        format!("{v:.0}")
    } else {
        format!("{v:.4}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_marks_are_drawn() {
        let svg = bars("b", &[Bar { label: "<x&y>".into(), value: 0.5, alert: true }], Some(1.0), Some((0.05, "p")));
        assert!(svg.contains("&lt;x&amp;y&gt;") && !svg.contains("<x&y>"), "{svg}");
        assert!(svg.contains("<rect") && svg.contains("#d62728"));
        let axes = Axes { x_label: "x", y_label: "y", x: (8.0, 256.0), y: (0.0, 1.0), log_x: true, diagonal: false };
        let series = [Series { name: "s".into(), points: vec![(8.0, 0.1), (256.0, 0.9)] }];
        let svg = lines("l", &axes, &series, &[]);
        // log2: 8 sits at the left edge, 256 at the right.
        assert!(svg.contains(&format!("{:.1},", PLOT.0)) && svg.contains(&format!("{:.1},", PLOT.2)), "{svg}");
    }

    #[test]
    fn values_format_for_reading() {
        assert_eq!(format_value(0.97231), "0.9723");
        assert_eq!(format_value(128.0), "128");
        assert_eq!(format_value(1.5e-7), "1.50e-7");
    }
}
