//! What a run reports: the [`Summary`] (written by `--json`), the percentile table on
//! stdout, the `.hgrm` percentile distribution (`--hgrm`) and `loadgen compare`.
//!
//! The `.hgrm` file is HdrHistogram's `outputPercentileDistribution` text — columns
//! `Value Percentile TotalCount 1/(1-Percentile)`, five percentile ticks per half
//! distance, and the `#[Mean …]`, `#[Max …]`, `#[Buckets …]` footer — with values in
//! **microseconds** (scaling ratio 1000 from the recorded nanoseconds, three decimals,
//! so no precision is lost). The standard ticks skip p99, p99.9 and p99.99, so lines
//! for exactly those percentiles (and p50, p90) are added in order: the file parses
//! back into the report's own percentiles ([`hgrm_percentile`]).

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::settings::Settings;

/// The percentiles every report shows, as quantiles.
pub const QUANTILES: [(&str, f64); 5] = [
    ("p50", 0.5),
    ("p90", 0.9),
    ("p99", 0.99),
    ("p99.9", 0.999),
    ("p99.99", 0.9999),
];

/// Latency percentiles in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    #[serde(rename = "p99.9")]
    pub p99_9: u64,
    /// 99.99th percentile.
    #[serde(rename = "p99.99")]
    pub p99_99: u64,
    /// Largest value recorded.
    pub max: u64,
}

impl Percentiles {
    /// The percentiles of `h` (all zero when it is empty).
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p99_9: h.value_at_quantile(0.999),
            p99_99: h.value_at_quantile(0.9999),
            max: h.max(),
        }
    }

    /// `(name, value)` pairs in display order.
    pub fn named(&self) -> [(&'static str, u64); 6] {
        [
            ("p50", self.p50),
            ("p90", self.p90),
            ("p99", self.p99),
            ("p99.9", self.p99_9),
            ("p99.99", self.p99_99),
            ("max", self.max),
        ]
    }
}

/// One point of the percentile spectrum: `percentile` is a quantile in `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SpectrumPoint {
    /// Quantile, 0 … 1.
    pub percentile: f64,
    /// Latency at that quantile, ns.
    pub value_ns: u64,
    /// Records at or below that latency.
    pub total_count: u64,
}

/// Everything a run measured, as written by `--json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The settings the run used (after scenario and flags).
    pub settings: Settings,
    /// Subscriber URL actually used.
    pub url: String,
    /// Whether loadgen started the server itself.
    pub in_process_server: bool,
    /// Client threads.
    pub threads: usize,
    /// When the run started, seconds since the Unix epoch.
    pub started_unix_s: u64,
    /// Time taken to open and subscribe every connection, seconds (0 in summaries
    /// written before it was recorded).
    #[serde(default)]
    pub connect_s: f64,
    /// Length of the measured window, seconds.
    pub measured_s: f64,
    /// How latency was measured.
    pub clock: String,
    /// Latency percentiles, ns.
    pub percentiles_ns: Percentiles,
    /// Mean latency, ns.
    pub mean_ns: f64,
    /// Records received, all kinds, the whole run (warm-up and drain included).
    pub records: u64,
    /// Records in the latency histogram.
    pub records_measured: u64,
    /// Records whose `ts_event` is in the measured window, per second.
    pub records_per_sec: f64,
    /// Payload bytes received, the whole run.
    pub bytes: u64,
    /// Payload bytes received during the measured window, per second.
    pub bytes_per_sec: f64,
    /// Connections that opened and subscribed.
    pub connections: u64,
    /// Connections that failed to open or subscribe.
    pub connections_failed: u64,
    /// Connections the server closed during the run.
    pub closed_by_server: u64,
    /// Subscribers that stopped reading on purpose (`stalled_fraction`); not measured.
    #[serde(default)]
    pub stalled: u64,
    /// Sequence gaps (per connection and symbol).
    pub gaps: u64,
    /// Updates missing in those gaps.
    pub gap_updates: u64,
    /// Records flagged conflated.
    pub conflated: u64,
    /// Updates those conflated records stand for.
    pub conflated_updates: u64,
    /// Times a connection entered conflation.
    pub conflation_episodes: u64,
    /// Snapshot records (excluded from latency).
    pub snapshots: u64,
    /// Replayed records (excluded from latency).
    pub replays: u64,
    /// Snapshots that re-synchronised a streaming symbol.
    pub resyncs: u64,
    /// Records at or below their symbol's last sequence.
    pub duplicates: u64,
    /// With the `book` channel: book messages that did not follow their book's last
    /// one.
    #[serde(default)]
    pub book_gaps: u64,
    /// Books rebuilt by the connections and compared with the in-process server's
    /// once the feed stopped and everything arrived (0 for an external server).
    #[serde(default)]
    pub books_checked: u64,
    /// Of those, books not equal to the server's.
    #[serde(default)]
    pub book_mismatches: u64,
    /// Records received before their `ts_event`.
    pub clock_skew: u64,
    /// Errors: server error messages, undecodable messages, failed connections and
    /// publisher errors.
    pub errors: u64,
    /// Ticks published to `/publish`.
    pub published: u64,
    /// What the server says it sent (`/stats` → `totals.records_out`): for the
    /// in-process server, read once its feeds stopped and the count settled; for an
    /// external server (whose feed keeps going), read once, when the measurement
    /// ended. `None` when it could not be read.
    pub server_records_out: Option<u64>,
    /// Whether every record the server counted (up to `server_records_out`) had
    /// arrived when the run stopped.
    pub drained: bool,
    /// CPU seconds the server used during the measured window (its threads, for the
    /// in-process server; the whole process for `--server-pid`); `None` when unknown.
    #[serde(default)]
    pub server_cpu_s: Option<f64>,
    /// `server_cpu_s` per million records received in the window.
    #[serde(default)]
    pub server_cpu_s_per_million: Option<f64>,
    /// The percentile spectrum (the `.hgrm` lines), for plots.
    pub spectrum: Vec<SpectrumPoint>,
}

/// The spectrum of `h`: HdrHistogram's percentile ticks (5 per half distance) plus
/// exactly p50, p90, p99, p99.9 and p99.99, in percentile order.
pub fn spectrum(h: &Histogram<u64>) -> Vec<SpectrumPoint> {
    let mut out: Vec<SpectrumPoint> = Vec::new();
    if h.is_empty() {
        return out;
    }
    let mut total = 0u64;
    for v in h.iter_quantiles(5) {
        total += v.count_since_last_iteration();
        out.push(SpectrumPoint {
            percentile: v.quantile_iterated_to(),
            value_ns: v.value_iterated_to(),
            total_count: total,
        });
    }
    for (_, q) in QUANTILES {
        let value = h.value_at_quantile(q);
        let point = SpectrumPoint {
            percentile: q,
            value_ns: value,
            total_count: h.count_between(h.low(), value),
        };
        match out.iter().position(|p| p.percentile >= q) {
            Some(i) if (out[i].percentile - q).abs() < 1e-12 => out[i] = point,
            Some(i) => out.insert(i, point),
            None => out.push(point),
        }
    }
    out
}

/// The `.hgrm` text of `h` (values in µs).
pub fn hgrm(h: &Histogram<u64>) -> String {
    const SCALE: f64 = 1_000.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    for p in spectrum(h) {
        let value = p.value_ns as f64 / SCALE;
        if p.percentile < 1.0 {
            let _ = writeln!(
                s,
                "{:12.3} {:2.12} {:10} {:14.2}",
                value,
                p.percentile,
                p.total_count,
                1.0 / (1.0 - p.percentile)
            );
        } else {
            let _ = writeln!(
                s,
                "{:12.3} {:2.12} {:10}",
                value, p.percentile, p.total_count
            );
        }
    }
    let (mean, stdev) = if h.is_empty() {
        (0.0, 0.0)
    } else {
        (h.mean() / SCALE, h.stdev() / SCALE)
    };
    let _ = writeln!(s, "#[Mean    = {mean:12.3}, StdDeviation   = {stdev:12.3}]");
    let _ = writeln!(
        s,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        h.max() as f64 / SCALE,
        h.len()
    );
    let _ = writeln!(
        s,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        (2 * 10u32.pow(u32::from(crate::recorder::SIGFIG))).next_power_of_two()
    );
    s
}

/// One data line of a `.hgrm` file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HgrmLine {
    /// Value in the file's unit (µs for loadgen's files).
    pub value: f64,
    /// Quantile, 0 … 1.
    pub percentile: f64,
    /// Records at or below the value.
    pub total_count: u64,
}

/// Parses the data lines of a `.hgrm` file (header and `#` footer skipped).
pub fn parse_hgrm(text: &str) -> anyhow::Result<Vec<HgrmLine>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with("Value") {
            continue;
        }
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 3 {
            anyhow::bail!("line {}: expected at least 3 columns: {line:?}", n + 1);
        }
        let parse = |i: usize| -> anyhow::Result<f64> {
            cols[i]
                .parse::<f64>()
                .map_err(|e| anyhow::anyhow!("line {}: column {}: {e}", n + 1, i + 1))
        };
        out.push(HgrmLine {
            value: parse(0)?,
            percentile: parse(1)?,
            total_count: parse(2)? as u64,
        });
    }
    Ok(out)
}

/// The value of quantile `q` in parsed `.hgrm` lines, converted from µs to ns: the
/// first line at or above `q`.
pub fn hgrm_percentile(lines: &[HgrmLine], q: f64) -> Option<u64> {
    lines
        .iter()
        .find(|l| l.percentile >= q - 1e-12)
        .map(|l| (l.value * 1_000.0).round() as u64)
}

/// A latency in ns, for people: `850 ns`, `12.3 µs`, `1.23 ms`, `2.50 s`.
pub fn human_ns(ns: u64) -> String {
    let v = ns as f64;
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{:.1} µs", v / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.2} ms", v / 1e6)
    } else {
        format!("{:.2} s", v / 1e9)
    }
}

/// A count with thousands separators.
pub fn human_count(n: f64) -> String {
    let n = n.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes per second, for people.
pub fn human_bytes(b: f64) -> String {
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.2} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{b:.0} B")
    }
}

impl Summary {
    /// The report printed at the end of a run.
    pub fn table(&self) -> String {
        let st = &self.settings;
        let mut s = String::new();
        let subs = if st.symbols_per_conn == 0 {
            "all symbols".to_string()
        } else {
            format!("{} symbols each ({:?})", st.symbols_per_conn, st.select).to_lowercase()
        };
        let _ = writeln!(
            s,
            "loadgen {}: {} connections ({} failed), {}, {}{}",
            st.name,
            self.connections,
            self.connections_failed,
            subs,
            st.format,
            if st.max_rate > 0.0 {
                format!(", max_rate {}", st.max_rate)
            } else {
                String::new()
            }
        );
        let server = if self.in_process_server {
            format!(
                "in-process tickcast at {} ({} writer core(s), synthetic feed {} ticks/s over {} symbols)",
                self.url, st.server_workers, st.rate, st.symbols
            )
        } else {
            self.url.clone()
        };
        let _ = writeln!(
            s,
            "  server: {server}; {} client thread(s); connections up in {:.1} s",
            self.threads, self.connect_s
        );
        if st.publish_rate > 0 {
            let _ = writeln!(
                s,
                "  published {} ticks at {} ticks/s ({}), open loop: ts_event = intended send time",
                self.published, st.publish_rate, st.publish_format
            );
        }
        let _ = writeln!(
            s,
            "  measured {:.1} s after {:.1} s warm-up; latency = receipt (CLOCK_REALTIME) - ts_event, same host\n",
            self.measured_s, st.warmup_s
        );
        let p = self.percentiles_ns.named();
        let _ = write!(s, "  {:<10}", "latency");
        for (name, _) in p {
            let _ = write!(s, "{name:>11}");
        }
        let _ = write!(s, "\n  {:<10}", "");
        for (_, v) in p {
            let _ = write!(s, "{:>11}", human_ns(v));
        }
        let _ = writeln!(s, "\n");
        let _ = writeln!(
            s,
            "  records    {} received, {} measured, {}/s",
            human_count(self.records as f64),
            human_count(self.records_measured as f64),
            human_count(self.records_per_sec)
        );
        let _ = writeln!(
            s,
            "  bytes      {} received, {}/s",
            human_bytes(self.bytes as f64),
            human_bytes(self.bytes_per_sec)
        );
        let _ = writeln!(
            s,
            "  gaps {} ({} updates)  conflated {} ({} updates, {} episodes)  snapshots {}  resyncs {}  duplicates {}  errors {}  closed by server {}",
            self.gaps,
            self.gap_updates,
            self.conflated,
            self.conflated_updates,
            self.conflation_episodes,
            self.snapshots,
            self.resyncs,
            self.duplicates,
            self.errors,
            self.closed_by_server
        );
        if self.books_checked > 0 || self.book_gaps > 0 {
            let _ = writeln!(
                s,
                "  books    {} rebuilt and compared with the server's: {} differ; book gaps {}",
                self.books_checked, self.book_mismatches, self.book_gaps
            );
        }
        if let Some(out) = self.server_records_out {
            let _ = writeln!(
                s,
                "  server says it sent {} records{}; {}",
                human_count(out as f64),
                if self.in_process_server {
                    ""
                } else {
                    " by the end of the run (its feed keeps going)"
                },
                if self.drained {
                    "all received"
                } else {
                    "not all received before the drain timeout"
                }
            );
        }
        if let (Some(cpu), Some(per)) = (self.server_cpu_s, self.server_cpu_s_per_million) {
            let _ = writeln!(
                s,
                "  server CPU {cpu:.2} s in the window ({:.0}% of a core): {per:.3} CPU-s per million records",
                100.0 * cpu / self.measured_s.max(1e-9)
            );
        }
        if self.clock_skew > 0 {
            let _ = writeln!(
                s,
                "  {} records arrived before their ts_event (clock skew)",
                self.clock_skew
            );
        }
        s
    }
}

/// Two runs side by side with ratios (`b / a`).
pub fn compare(a: &Summary, b: &Summary, a_name: &str, b_name: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{:<18}{:>16}{:>16}{:>10}", "", a_name, b_name, "b/a");
    let ratio = |x: f64, y: f64| {
        if x == 0.0 {
            if y == 0.0 {
                "=".to_string()
            } else {
                "inf".to_string()
            }
        } else {
            format!("{:.2}x", y / x)
        }
    };
    for ((name, x), (_, y)) in a
        .percentiles_ns
        .named()
        .iter()
        .zip(b.percentiles_ns.named())
    {
        let _ = writeln!(
            s,
            "{:<18}{:>16}{:>16}{:>10}",
            format!("latency {name}"),
            human_ns(*x),
            human_ns(y),
            ratio(*x as f64, y as f64)
        );
    }
    let rows: [(&str, f64, f64); 9] = [
        ("records/s", a.records_per_sec, b.records_per_sec),
        ("bytes/s", a.bytes_per_sec, b.bytes_per_sec),
        ("records", a.records as f64, b.records as f64),
        ("connections", a.connections as f64, b.connections as f64),
        ("gaps", a.gaps as f64, b.gaps as f64),
        ("conflated", a.conflated as f64, b.conflated as f64),
        ("snapshots", a.snapshots as f64, b.snapshots as f64),
        ("errors", a.errors as f64, b.errors as f64),
        ("published", a.published as f64, b.published as f64),
    ];
    for (name, x, y) in rows {
        let _ = writeln!(
            s,
            "{:<18}{:>16}{:>16}{:>10}",
            name,
            human_count(x),
            human_count(y),
            ratio(x, y)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::new_histogram;

    fn sample() -> Histogram<u64> {
        let mut h = new_histogram();
        // A long tail: 1..=100_000 µs-ish values with a spread of magnitudes.
        let mut x: u64 = 12_345;
        for i in 0..100_000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let base = 20_000 + (x >> 40) % 30_000;
            let v = if i % 1000 == 0 { base * 200 } else { base };
            h.record(v).unwrap();
        }
        h
    }

    #[test]
    fn hgrm_parses_back_into_the_same_percentiles() {
        let h = sample();
        let text = hgrm(&h);
        assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"));
        assert!(text.contains("#[Max     ="));
        let lines = parse_hgrm(&text).unwrap();
        assert!(lines.len() > 50);
        assert!(lines.windows(2).all(|w| w[0].percentile <= w[1].percentile));
        let p = Percentiles::of(&h);
        for (name, q) in QUANTILES {
            assert_eq!(
                hgrm_percentile(&lines, q),
                Some(h.value_at_quantile(q)),
                "{name}"
            );
        }
        assert_eq!(hgrm_percentile(&lines, 1.0), Some(p.max));
        assert_eq!(lines.last().unwrap().total_count, h.len());
    }

    #[test]
    fn summary_json_has_the_documented_keys() {
        let h = sample();
        let s = Summary {
            settings: Settings::default(),
            url: "ws://x/ws".into(),
            in_process_server: true,
            threads: 1,
            started_unix_s: 0,
            connect_s: 0.5,
            measured_s: 1.0,
            clock: "CLOCK_REALTIME".into(),
            percentiles_ns: Percentiles::of(&h),
            mean_ns: h.mean(),
            records: 1,
            records_measured: h.len(),
            records_per_sec: 1.0,
            bytes: 1,
            bytes_per_sec: 1.0,
            connections: 1,
            connections_failed: 0,
            closed_by_server: 0,
            gaps: 0,
            gap_updates: 0,
            conflated: 0,
            conflated_updates: 0,
            conflation_episodes: 0,
            stalled: 0,
            snapshots: 0,
            replays: 0,
            resyncs: 0,
            duplicates: 0,
            book_gaps: 0,
            books_checked: 0,
            book_mismatches: 0,
            clock_skew: 0,
            errors: 0,
            published: 0,
            server_records_out: None,
            drained: true,
            server_cpu_s: Some(1.5),
            server_cpu_s_per_million: Some(0.25),
            spectrum: spectrum(&h),
        };
        let v = serde_json::to_value(&s).unwrap();
        for k in ["p50", "p90", "p99", "p99.9", "p99.99", "max"] {
            assert!(v["percentiles_ns"][k].as_u64().is_some(), "{k}");
        }
        for k in [
            "records",
            "records_per_sec",
            "gaps",
            "conflated",
            "errors",
            "connections",
            "settings",
        ] {
            assert!(!v[k].is_null(), "{k}");
        }
        let back: Summary = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
        assert!(compare(&s, &back, "a", "b").contains("1.00x"));
        assert!(s.table().contains("p99.99"));
    }
}
