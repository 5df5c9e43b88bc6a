//! The percentile spectrum as an SVG: latency against 1/(1−p) on a log axis, the way
//! HdrHistogram's plotter draws it, one line per run so runs can be compared.

use std::fmt::Write as _;

use crate::report::SpectrumPoint;

/// One run to draw.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// The spectrum (quantile, latency ns), in quantile order.
    pub points: Vec<SpectrumPoint>,
}

const W: f64 = 900.0;
const H: f64 = 540.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 70.0;
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];
/// Rightmost decade drawn: p99.9999.
const MAX_DECADES: f64 = 6.0;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `log10(1 / (1 − p))`, capped at [`MAX_DECADES`].
fn decades(p: f64) -> f64 {
    if p >= 1.0 {
        return MAX_DECADES;
    }
    (1.0 / (1.0 - p)).log10().clamp(0.0, MAX_DECADES)
}

/// A "nice" step for about `n` ticks up to `max`.
fn nice_step(max: f64, n: f64) -> f64 {
    let raw = (max / n).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// Draws `series` into an SVG document.
pub fn svg(series: &[Series], title: &str) -> String {
    // The x range ends one decade past the highest finite percentile of any run.
    let last_decade = series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|p| p.percentile < 1.0)
        .map(|p| decades(p.percentile))
        .fold(2.0f64, f64::max);
    let x_max = (last_decade.ceil()).clamp(2.0, MAX_DECADES);
    let max_ns = series
        .iter()
        .flat_map(|s| s.points.iter())
        .map(|p| p.value_ns)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let (unit, div) = if max_ns >= 2e6 {
        ("ms", 1e6)
    } else if max_ns >= 2e3 {
        ("µs", 1e3)
    } else {
        ("ns", 1.0)
    };
    let y_step = nice_step(max_ns / div, 6.0);
    let y_max = ((max_ns / div) / y_step).ceil().max(1.0) * y_step;
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let x = |d: f64| LEFT + d / x_max * pw;
    let y = |v: f64| TOP + ph - (v / div) / y_max * ph;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="28" text-anchor="middle" font-size="16">{}</text>"#,
        W / 2.0,
        escape(title)
    );
    // Vertical grid: one line per decade of 1/(1-p).
    let mut d = 0.0;
    while d <= x_max + 1e-9 {
        let label = if d == 0.0 {
            "0%".to_string()
        } else {
            let nines = d as usize;
            format!(
                "99{}{}%",
                if nines > 2 { "." } else { "" },
                "9".repeat(nines.saturating_sub(2))
            )
        };
        let label = if d == 1.0 { "90%".to_string() } else { label };
        let _ = writeln!(
            s,
            r##"<line x1="{0:.1}" y1="{1}" x2="{0:.1}" y2="{2}" stroke="#ddd"/><text x="{0:.1}" y="{3}" text-anchor="middle">{4}</text>"##,
            x(d),
            TOP,
            TOP + ph,
            TOP + ph + 18.0,
            label
        );
        d += 1.0;
    }
    // Horizontal grid.
    let mut v = 0.0;
    while v <= y_max + 1e-9 {
        let yy = TOP + ph - v / y_max * ph;
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + pw,
            LEFT - 8.0,
            yy + 4.0,
            trim_float(v)
        );
        v += y_step;
    }
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile (log scale of 1/(1-p))</text>"#,
        LEFT + pw / 2.0,
        H - 22.0
    );
    let _ = writeln!(
        s,
        r#"<text x="20" y="{:.1}" text-anchor="middle" transform="rotate(-90 20 {:.1})">latency ({unit})</text>"#,
        TOP + ph / 2.0,
        TOP + ph / 2.0
    );
    for (i, series) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mut pts = String::new();
        for p in &series.points {
            let d = if p.percentile >= 1.0 {
                x_max
            } else {
                decades(p.percentile).min(x_max)
            };
            let _ = write!(pts, "{:.1},{:.1} ", x(d), y(p.value_ns as f64));
        }
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            pts.trim_end()
        );
        let ly = TOP + 18.0 + 18.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            LEFT + 12.0,
            LEFT + 36.0,
            LEFT + 42.0,
            ly + 4.0,
            escape(&series.label)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_every_series_with_a_legend() {
        let pts = |k: u64| {
            vec![
                SpectrumPoint {
                    percentile: 0.0,
                    value_ns: 1_000 * k,
                    total_count: 1,
                },
                SpectrumPoint {
                    percentile: 0.99,
                    value_ns: 5_000 * k,
                    total_count: 99,
                },
                SpectrumPoint {
                    percentile: 1.0,
                    value_ns: 9_000 * k,
                    total_count: 100,
                },
            ]
        };
        let doc = svg(
            &[
                Series {
                    label: "a <1>".into(),
                    points: pts(1),
                },
                Series {
                    label: "b".into(),
                    points: pts(2),
                },
            ],
            "t",
        );
        assert!(doc.starts_with("<svg") && doc.trim_end().ends_with("</svg>"));
        assert_eq!(doc.matches("<polyline").count(), 2);
        assert!(doc.contains("a &lt;1&gt;"));
        assert!(doc.contains("99%") && doc.contains("µs"));
        assert!(!doc.contains("NaN") && !doc.contains("inf"));
    }

    #[test]
    fn empty_input_is_still_a_document() {
        let doc = svg(&[], "nothing");
        assert!(doc.starts_with("<svg") && !doc.contains("NaN"));
    }
}
