//! `/metrics`: every counter in the Prometheus text exposition format (version 0.0.4).
//!
//! Per-core counters carry a `core` label, feed counters a `feed` label. The
//! ingest-to-write latency of each core is a summary with the quantiles 0.5, 0.9, 0.99,
//! 0.999, 0.9999 and 1 (the maximum), in seconds, from the core's HdrHistogram.

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

use crate::clock::now_ns;
use crate::stats::{Kind, Stats, CORE_FIELDS};

/// Quantiles exported for each latency summary.
const QUANTILES: [f64; 6] = [0.5, 0.9, 0.99, 0.999, 0.9999, 1.0];

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Renders every metric.
pub fn render(stats: &Stats) -> String {
    let mut out = String::with_capacity(16 * 1024);
    for (field, kind, help, get) in CORE_FIELDS {
        let (name, kind) = match kind {
            Kind::Counter => (
                format!("tickcast_{}_total", field.trim_end_matches("_total")),
                "counter",
            ),
            Kind::Gauge => (format!("tickcast_{field}"), "gauge"),
        };
        header(&mut out, &name, kind, help);
        for (i, core) in stats.cores.iter().enumerate() {
            let _ = writeln!(out, "{name}{{core=\"{i}\"}} {}", get(core).load(Relaxed));
        }
    }

    let seq = &stats.sequencer;
    for (name, help, v) in [
        (
            "tickcast_sequencer_ticks_total",
            "Ticks sequenced and published.",
            seq.ticks.load(Relaxed),
        ),
        (
            "tickcast_sequencer_rejected_total",
            "Ticks rejected (symbol table full).",
            seq.rejected.load(Relaxed),
        ),
        (
            "tickcast_heartbeat_timeouts_total",
            "Connections closed for not answering pings.",
            stats.heartbeat_timeouts.load(Relaxed),
        ),
        (
            "tickcast_control_rate_limited_total",
            "Control messages dropped by the rate limit.",
            stats.control_rate_limited.load(Relaxed),
        ),
    ] {
        header(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {v}");
    }

    let r = &stats.rejected;
    header(
        &mut out,
        "tickcast_rejected_connections_total",
        "counter",
        "Connections refused before the WebSocket upgrade, by reason.",
    );
    for (reason, v) in [
        ("server_full", &r.server_full),
        ("per_ip", &r.per_ip),
        ("auth", &r.auth),
        ("origin", &r.origin),
    ] {
        let _ = writeln!(
            out,
            "tickcast_rejected_connections_total{{reason=\"{reason}\"}} {}",
            v.load(Relaxed)
        );
    }

    let feeds = stats.feeds.lock().unwrap_or_else(|e| e.into_inner());
    let now = now_ns();
    type FeedGet = fn(&crate::feed::FeedStatus) -> u64;
    let feed_metrics: [(&str, &str, &str, FeedGet); 6] = [
        (
            "tickcast_feed_connected",
            "gauge",
            "1 while the feed is connected to its source.",
            |f| f.connected.load(Relaxed),
        ),
        (
            "tickcast_feed_messages_total",
            "counter",
            "Messages received from the source.",
            |f| f.messages.load(Relaxed),
        ),
        (
            "tickcast_feed_ticks_total",
            "counter",
            "Ticks sent to the sequencer.",
            |f| f.ticks.load(Relaxed),
        ),
        (
            "tickcast_feed_parse_errors_total",
            "counter",
            "Source messages that could not be parsed.",
            |f| f.parse_errors.load(Relaxed),
        ),
        (
            "tickcast_feed_gaps_total",
            "counter",
            "Source sequence gaps detected.",
            |f| f.gaps.load(Relaxed),
        ),
        (
            "tickcast_feed_reconnects_total",
            "counter",
            "Reconnections to the source.",
            |f| f.reconnects.load(Relaxed),
        ),
    ];
    for (name, kind, help, get) in feed_metrics {
        header(&mut out, name, kind, help);
        for f in feeds.iter() {
            let _ = writeln!(out, "{name}{{feed=\"{}\"}} {}", label(&f.name), get(f));
        }
    }
    header(
        &mut out,
        "tickcast_feed_last_message_age_seconds",
        "gauge",
        "Seconds since the feed's last message (-1: none yet).",
    );
    for f in feeds.iter() {
        let last = f.last_message_ns.load(Relaxed);
        let age = if last == 0 {
            -1.0
        } else {
            now.saturating_sub(last) as f64 / 1e9
        };
        let _ = writeln!(
            out,
            "tickcast_feed_last_message_age_seconds{{feed=\"{}\"}} {age}",
            label(&f.name)
        );
    }
    drop(feeds);

    stats.bus.render_metrics(&mut out);

    let name = "tickcast_ingest_to_write_latency_seconds";
    header(
        &mut out,
        name,
        "summary",
        "Time from the sequencer taking a tick in to a writer core writing it, per core.",
    );
    for (i, h) in stats.latency.iter().enumerate() {
        let h = h.lock().unwrap_or_else(|e| e.into_inner());
        for q in QUANTILES {
            let v = if q >= 1.0 {
                h.max()
            } else {
                h.value_at_quantile(q)
            };
            let _ = writeln!(
                out,
                "{name}{{core=\"{i}\",quantile=\"{q}\"}} {}",
                v as f64 / 1e9
            );
        }
        let sum: f64 = h
            .iter_recorded()
            .map(|v| v.value_iterated_to() as f64 * v.count_at_value() as f64)
            .sum();
        let _ = writeln!(out, "{name}_sum{{core=\"{i}\"}} {}", sum / 1e9);
        let _ = writeln!(out, "{name}_count{{core=\"{i}\"}} {}", h.len());
    }
    out
}

/// Escapes a label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
