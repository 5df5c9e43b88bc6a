//! `/metrics`: every counter in the Prometheus text exposition format (version 0.0.4).
//!
//! Per-core counters carry a `core` label, feed counters a `feed` label. Latencies are
//! Prometheus histograms per core, cumulative since start, with the fixed buckets of
//! [`LATENCY_BUCKETS_NS`] (10 µs … 10 s), in seconds:
//! `tickcast_ingest_to_write_latency_seconds` (sequencer → socket write) and
//! `tickcast_event_to_write_latency_seconds` (the source's `ts_event` → socket write).
//! Then `tickcast_build_info`, `tickcast_ready` and the standard `process_*` metrics
//! (CPU, memory, file descriptors, threads, start time) read from `/proc/self`.

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

use crate::clock::now_ns;
use crate::readiness::ReadinessConfig;
use crate::stats::{Kind, LatencyHistogram, Stats, CORE_FIELDS, LATENCY_BUCKETS_NS};

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Renders every metric; `readiness` decides `tickcast_ready`.
pub fn render(stats: &Stats, readiness: &ReadinessConfig) -> String {
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
            "tickcast_book_changes_total",
            "Book level changes published (evictions included).",
            seq.book_changes.load(Relaxed),
        ),
        (
            "tickcast_book_evicted_total",
            "Book levels pushed out of a full side (max_book_levels).",
            seq.book_evicted.load(Relaxed),
        ),
        (
            "tickcast_book_dropped_total",
            "Book changes not kept: a new level worse than every level of a full side.",
            seq.book_dropped.load(Relaxed),
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
    let feed_metrics: [(&str, &str, &str, FeedGet); 7] = [
        (
            "tickcast_feed_connected",
            "gauge",
            "1 while the feed is connected to its source (the publish inlet: publishers connected).",
            |f| f.connected.load(Relaxed),
        ),
        (
            "tickcast_feed_finished",
            "gauge",
            "1 once the feed ended on its own, having delivered all it had.",
            |f| f.finished.load(Relaxed),
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
    header(
        &mut out,
        "tickcast_feed_lag_seconds",
        "gauge",
        "Time from the event time of the feed's last tick to the arrival of its message (-1: none yet).",
    );
    for f in feeds.iter() {
        // The event time first (acquire): the arrival time stored before it is then
        // at least as recent.
        let event = f.last_event_ns.load(std::sync::atomic::Ordering::Acquire);
        let arrived = f.last_message_ns.load(Relaxed);
        let lag = if arrived == 0 || event == 0 {
            -1.0
        } else {
            arrived as f64 / 1e9 - event as f64 / 1e9
        };
        let _ = writeln!(
            out,
            "tickcast_feed_lag_seconds{{feed=\"{}\"}} {lag}",
            label(&f.name)
        );
    }
    let ready = crate::readiness::reasons(now, readiness, &feeds, &stats.bus).is_empty();
    drop(feeds);
    header(
        &mut out,
        "tickcast_ready",
        "gauge",
        "1 while /readyz answers 200.",
    );
    let _ = writeln!(out, "tickcast_ready {}", u8::from(ready));

    stats.bus.render_metrics(&mut out);
    stats.recorder.render_metrics(&mut out);

    type Pick = fn(&crate::stats::CoreLatency) -> &LatencyHistogram;
    let histograms: [(&str, &str, Pick); 2] = [
        (
            "tickcast_ingest_to_write_latency_seconds",
            "Time from the sequencer taking a tick in (ts_recv) to a writer core writing it, per core.",
            |l| &l.ingest_to_write,
        ),
        (
            "tickcast_event_to_write_latency_seconds",
            "Time from a tick's event time at its source (ts_event) to a writer core writing it, per core.",
            |l| &l.event_to_write,
        ),
    ];
    for (name, help, pick) in histograms {
        header(&mut out, name, "histogram", help);
        for (i, core) in stats.cores.iter().enumerate() {
            render_histogram(
                &mut out,
                name,
                &format!("core=\"{i}\""),
                pick(&core.latency),
            );
        }
    }

    render_build_info(&mut out);
    render_process(&mut out);
    out
}

/// One histogram's `_bucket`, `_sum` and `_count` lines, with `labels` (`core="0"`).
fn render_histogram(out: &mut String, name: &str, labels: &str, h: &LatencyHistogram) {
    let (cumulative, sum_ns) = h.snapshot();
    for (bound, n) in LATENCY_BUCKETS_NS.iter().zip(&cumulative) {
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels},le=\"{}\"}} {n}",
            *bound as f64 / 1e9
        );
    }
    let count = cumulative[LATENCY_BUCKETS_NS.len()];
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", sum_ns as f64 / 1e9);
    let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
}

/// `tickcast_build_info`: 1, labelled with the version and the build profile.
fn render_build_info(out: &mut String) {
    header(
        out,
        "tickcast_build_info",
        "gauge",
        "Always 1; labels: the version and build profile of the running binary.",
    );
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let _ = writeln!(
        out,
        "tickcast_build_info{{version=\"{}\",profile=\"{profile}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
}

/// The standard `process_*` metrics of Prometheus's client libraries, from
/// `/proc/self` (each one left out when it cannot be read).
fn render_process(out: &mut String) {
    let Ok(me) = procfs::process::Process::myself() else {
        return;
    };
    let mut gauge = |name: &str, kind: &str, help: &str, v: f64| {
        header(out, name, kind, help);
        let _ = writeln!(out, "{name} {v}");
    };
    if let Ok(stat) = me.stat() {
        let ticks = procfs::ticks_per_second().max(1) as f64;
        gauge(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            (stat.utime + stat.stime) as f64 / ticks,
        );
        gauge(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            (stat.rss * procfs::page_size()) as f64,
        );
        gauge(
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            stat.vsize as f64,
        );
        gauge(
            "process_threads",
            "gauge",
            "Number of OS threads in the process.",
            stat.num_threads as f64,
        );
        if let Ok(boot) = procfs::boot_time_secs() {
            gauge(
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since unix epoch in seconds.",
                boot as f64 + stat.starttime as f64 / ticks,
            );
        }
    }
    if let Ok(n) = me.fd_count() {
        gauge(
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            n as f64,
        );
    }
    if let Ok(limits) = me.limits() {
        if let procfs::process::LimitValue::Value(max) = limits.max_open_files.soft_limit {
            gauge(
                "process_max_fds",
                "gauge",
                "Maximum number of open file descriptors.",
                max as f64,
            );
        }
    }
}

/// Escapes a label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
