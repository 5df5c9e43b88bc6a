//! `Stats`: the server's counters, shared by every thread and read by `/stats`.
//!
//! Counters are relaxed atomics written by the thread that owns the event (a writer
//! core, the sequencer, a feed) and read by whoever reports them; a report is a set of
//! individually exact values, not one atomic snapshot.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::feed::FeedStatus;
use crate::sequencer::SequencerStats;

/// Counters of one writer core.
#[derive(Debug, Default)]
pub struct CoreStats {
    /// Open WebSocket connections.
    pub connections: AtomicU64,
    /// Connections ever accepted (upgraded).
    pub connections_total: AtomicU64,
    /// Live subscriptions (connection × symbol).
    pub subscriptions: AtomicU64,
    /// Ticks read from the ring.
    pub ticks_in: AtomicU64,
    /// Records appended to connections (ticks × subscribers, snapshots included).
    pub records_out: AtomicU64,
    /// WebSocket frames completed.
    pub frames_out: AtomicU64,
    /// Bytes written to sockets.
    pub bytes_out: AtomicU64,
    /// Write system calls made.
    pub writes: AtomicU64,
    /// Times the core was lapped by the ring's producer.
    pub laps: AtomicU64,
    /// Ring positions skipped because of laps.
    pub lap_skipped: AtomicU64,
    /// Updates merged instead of sent (by conflation or `max_rate`).
    pub conflated_updates: AtomicU64,
    /// Times a connection entered conflation.
    pub conflation_entries: AtomicU64,
    /// Connections closed as slow consumers.
    pub evictions: AtomicU64,
    /// Bytes queued in outboxes (gauge).
    pub buffered_bytes: AtomicU64,
    /// Ring positions published but not yet read by this core (gauge).
    pub ring_lag: AtomicU64,
    /// Client control messages that earned an error reply.
    pub protocol_errors: AtomicU64,
    /// Times a connection's input was paused for sending faster than
    /// `max_input_bytes_per_sec`.
    pub input_throttled: AtomicU64,
    /// Resumes that found this node behind the client's resume point and waited for
    /// it (`resume_wait_ms`).
    pub resumes_waited: AtomicU64,
    /// Of those, resumes the node caught up with in time: no snapshot.
    pub resumes_caught_up: AtomicU64,
    /// Of those, resumes that got a snapshot at the end of the wait.
    pub resumes_timed_out: AtomicU64,
    /// Latency histograms of the ticks this core wrote (cumulative, for Prometheus).
    pub latency: CoreLatency,
}

/// Upper bounds of the latency histogram buckets, in ns: 10 µs to 10 s in 1-2.5-5
/// steps, then `+Inf`. Fixed, so histograms add up across cores and edges; documented
/// in `docs/operations.md`.
pub const LATENCY_BUCKETS_NS: [u64; 19] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// A cumulative latency histogram with the fixed buckets [`LATENCY_BUCKETS_NS`]: the
/// Prometheus kind, which never resets, so `rate()` windows it and `sum by (le)` adds
/// cores and nodes. One thread records (the core that owns it); any thread reads.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Observations per bucket (not cumulative: bucket `i` counts values in
    /// `(bound[i-1], bound[i]]`, the last one those above every bound).
    buckets: [AtomicU64; LATENCY_BUCKETS_NS.len() + 1],
    /// Sum of every observation, ns.
    sum_ns: AtomicU64,
}

impl LatencyHistogram {
    /// Records one observation of `ns`. Only the owning thread may call it: each
    /// counter is a plain load and store (no locked instruction on the hot path).
    pub fn record(&self, ns: u64) {
        let i = LATENCY_BUCKETS_NS.partition_point(|&b| b < ns);
        bump(&self.buckets[i], 1);
        bump(&self.sum_ns, ns);
    }

    /// Cumulative counts per bucket (`le` = each bound, then `+Inf`), the total count
    /// (the `+Inf` bucket) and the sum in ns: one consistent set of buckets.
    pub fn snapshot(&self) -> ([u64; LATENCY_BUCKETS_NS.len() + 1], u64) {
        let mut out = [0u64; LATENCY_BUCKETS_NS.len() + 1];
        let mut acc = 0u64;
        for (o, b) in out.iter_mut().zip(&self.buckets) {
            acc = acc.wrapping_add(b.load(Relaxed));
            *o = acc;
        }
        (out, self.sum_ns.load(Relaxed))
    }
}

/// Adds `n` to a counter only one thread writes.
fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

/// The latency histograms of one writer core.
#[derive(Debug, Default)]
pub struct CoreLatency {
    /// From the sequencer taking a tick in (`ts_recv`) to the core writing it.
    pub ingest_to_write: LatencyHistogram,
    /// From the tick's event time at its source (`ts_event`) to the core writing it:
    /// the whole path, feed and network included. An event time after the write (a
    /// source clock ahead of ours) counts as 0.
    pub event_to_write: LatencyHistogram,
}

impl CoreLatency {
    /// Records one tick written at `written_ns` (all times ns since the Unix epoch).
    pub fn record(&self, written_ns: u64, ts_recv: u64, ts_event: u64) {
        self.ingest_to_write
            .record(written_ns.saturating_sub(ts_recv));
        self.event_to_write
            .record(written_ns.saturating_sub(ts_event));
    }
}

/// Counters of one connection, kept for `/stats` while it is open.
#[derive(Debug)]
pub struct ConnStats {
    /// Server-wide connection id.
    pub id: u64,
    /// Remote address.
    pub peer: SocketAddr,
    /// Writer core owning it.
    pub core: usize,
    /// Subscribed symbols (gauge).
    pub subscriptions: AtomicU64,
    /// Records appended.
    pub records_out: AtomicU64,
    /// Bytes written.
    pub bytes_out: AtomicU64,
    /// Bytes queued (gauge).
    pub buffered_bytes: AtomicU64,
    /// Highest `buffered_bytes` ever seen.
    pub max_buffered_bytes: AtomicU64,
    /// Updates merged instead of sent.
    pub conflated_updates: AtomicU64,
    /// Times it entered conflation.
    pub conflation_entries: AtomicU64,
    /// 1 while conflating (gauge).
    pub conflating: AtomicU64,
}

impl ConnStats {
    /// Fresh counters.
    pub fn new(id: u64, peer: SocketAddr, core: usize) -> ConnStats {
        ConnStats {
            id,
            peer,
            core,
            subscriptions: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            buffered_bytes: AtomicU64::new(0),
            max_buffered_bytes: AtomicU64::new(0),
            conflated_updates: AtomicU64::new(0),
            conflation_entries: AtomicU64::new(0),
            conflating: AtomicU64::new(0),
        }
    }

    /// Sets the buffered-bytes gauge and its high-water record.
    pub fn set_buffered(&self, bytes: usize) {
        self.buffered_bytes.store(bytes as u64, Relaxed);
        self.max_buffered_bytes.fetch_max(bytes as u64, Relaxed);
    }

    fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "peer": self.peer.to_string(),
            "core": self.core,
            "subscriptions": self.subscriptions.load(Relaxed),
            "records_out": self.records_out.load(Relaxed),
            "bytes_out": self.bytes_out.load(Relaxed),
            "buffered_bytes": self.buffered_bytes.load(Relaxed),
            "max_buffered_bytes": self.max_buffered_bytes.load(Relaxed),
            "conflated_updates": self.conflated_updates.load(Relaxed),
            "conflation_entries": self.conflation_entries.load(Relaxed),
            "conflating": self.conflating.load(Relaxed) == 1,
        })
    }
}

/// Every counter of the server.
#[derive(Debug, Default)]
pub struct Stats {
    /// One entry per writer core.
    pub cores: Vec<CoreStats>,
    /// The sequencer's counters.
    pub sequencer: Arc<SequencerStats>,
    /// Each feed's status.
    pub feeds: Mutex<Vec<Arc<FeedStatus>>>,
    /// Open connections by id (cold path: insert on open, remove on close).
    pub conns: Mutex<BTreeMap<u64, Arc<ConnStats>>>,
    /// Next connection id.
    pub next_conn_id: AtomicU64,
    /// Per core: ingest-to-write latency (write time − `ts_recv`, ns) of every tick
    /// written, cumulative since start, at 3 significant figures: the quantiles in
    /// `/stats`. (`/metrics` exports [`CoreStats::latency`], whose fixed buckets
    /// Prometheus can window.) Each core publishes its own copy here about once a
    /// second, so the hot path never takes this lock.
    pub latency: Vec<Mutex<Histogram<u64>>>,
    /// Connections refused before the upgrade, by reason.
    pub rejected: Rejections,
    /// Connections closed because the peer stopped answering pings.
    pub heartbeat_timeouts: AtomicU64,
    /// Control messages dropped by the per-connection rate limit.
    pub control_rate_limited: AtomicU64,
    /// The NATS bus of an ingest or edge node (idle on a standalone node).
    pub bus: crate::bus::BusStatus,
    /// The rolling recorder (idle without `[record]`).
    pub recorder: crate::recorder::RecorderStatus,
}

/// Upgrades refused, by reason (see `docs/operations.md`).
#[derive(Debug, Default)]
pub struct Rejections {
    /// `max_connections` reached: HTTP 503.
    pub server_full: AtomicU64,
    /// `max_connections_per_ip` reached: HTTP 429.
    pub per_ip: AtomicU64,
    /// Missing, malformed, expired or badly signed token: HTTP 401.
    pub auth: AtomicU64,
    /// `Origin` not in the allowlist: HTTP 403.
    pub origin: AtomicU64,
}

/// A latency histogram in ns: 1 ns to 1 hour, 3 significant figures.
pub fn new_latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds")
}

impl Stats {
    /// Counters for `cores` writer cores.
    pub fn new(cores: usize, sequencer: Arc<SequencerStats>) -> Stats {
        Stats {
            cores: (0..cores).map(|_| CoreStats::default()).collect(),
            latency: (0..cores)
                .map(|_| Mutex::new(new_latency_histogram()))
                .collect(),
            sequencer,
            ..Stats::default()
        }
    }

    /// Sum of one core counter over all cores.
    pub fn total(&self, f: impl Fn(&CoreStats) -> &AtomicU64) -> u64 {
        self.cores
            .iter()
            .fold(0u64, |acc, c| acc.wrapping_add(f(c).load(Relaxed)))
    }

    /// The `/readyz` answer now (see [`crate::readiness`]).
    pub fn readyz(&self, cfg: &crate::readiness::ReadinessConfig) -> (hyper::StatusCode, Value) {
        let feeds = self.feeds.lock().unwrap_or_else(|e| e.into_inner());
        crate::readiness::readyz(crate::clock::now_ns(), cfg, &feeds, &self.bus)
    }

    /// The `/stats` document.
    pub fn to_json(&self) -> Value {
        let core = |c: &CoreStats| -> Value {
            CORE_FIELDS
                .iter()
                .map(|(name, _, _, f)| (name.to_string(), json!(f(c).load(Relaxed))))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        let totals: serde_json::Map<_, _> = CORE_FIELDS
            .iter()
            .map(|(name, _, _, f)| (name.to_string(), json!(self.total(*f))))
            .collect();
        let feeds: Vec<Value> = self
            .feeds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|f| {
                json!({
                    "name": f.name,
                    "connected": f.connected.load(Relaxed) >= 1,
                    "finished": f.finished.load(Relaxed) == 1,
                    "down_since_ns": f.down_since_ns.load(Relaxed),
                    "last_event_ns": f.last_event_ns.load(Relaxed),
                    "messages": f.messages.load(Relaxed),
                    "ticks": f.ticks.load(Relaxed),
                    "parse_errors": f.parse_errors.load(Relaxed),
                    "gaps": f.gaps.load(Relaxed),
                    "reconnects": f.reconnects.load(Relaxed),
                    "last_message_ns": f.last_message_ns.load(Relaxed),
                })
            })
            .collect();
        let conns: Vec<Value> = self
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|c| c.to_json())
            .collect();
        let latency: Vec<Value> = self
            .latency
            .iter()
            .map(|h| {
                let h = h.lock().unwrap_or_else(|e| e.into_inner());
                json!({
                    "count": h.len(),
                    "p50_ns": h.value_at_quantile(0.5),
                    "p99_ns": h.value_at_quantile(0.99),
                    "p999_ns": h.value_at_quantile(0.999),
                    "max_ns": h.max(),
                })
            })
            .collect();
        json!({
            "ingest_to_write_latency_since_start": latency,
            "sequencer": {
                "ticks": self.sequencer.ticks.load(Relaxed),
                "rejected": self.sequencer.rejected.load(Relaxed),
                "batches": self.sequencer.batches.load(Relaxed),
                "book_changes": self.sequencer.book_changes.load(Relaxed),
                "book_evicted": self.sequencer.book_evicted.load(Relaxed),
                "book_dropped": self.sequencer.book_dropped.load(Relaxed),
                "book_unchanged": self.sequencer.book_unchanged.load(Relaxed),
            },
            "totals": totals,
            "cores": self.cores.iter().map(core).collect::<Vec<_>>(),
            "feeds": feeds,
            "connections": conns,
            "bus": self.bus.to_json(),
            "recorder": self.recorder.to_json(),
        })
    }
}

/// Reads one counter of a core.
pub type CoreField = fn(&CoreStats) -> &AtomicU64;

/// Whether a core counter only grows (a Prometheus counter) or goes up and down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only grows.
    Counter,
    /// Goes up and down.
    Gauge,
}

/// Every core counter: its name in `/stats`, its kind and what it counts.
pub const CORE_FIELDS: [(&str, Kind, &str, CoreField); 20] = [
    (
        "connections",
        Kind::Gauge,
        "Open WebSocket connections.",
        |c| &c.connections,
    ),
    (
        "connections_total",
        Kind::Counter,
        "WebSocket connections accepted.",
        |c| &c.connections_total,
    ),
    (
        "subscriptions",
        Kind::Gauge,
        "Live subscriptions (connection x symbol).",
        |c| &c.subscriptions,
    ),
    (
        "ticks_in",
        Kind::Counter,
        "Ticks read from the ring.",
        |c| &c.ticks_in,
    ),
    (
        "records_out",
        Kind::Counter,
        "Records queued to connections.",
        |c| &c.records_out,
    ),
    (
        "frames_out",
        Kind::Counter,
        "WebSocket messages queued to connections.",
        |c| &c.frames_out,
    ),
    (
        "bytes_out",
        Kind::Counter,
        "Bytes written to sockets.",
        |c| &c.bytes_out,
    ),
    ("writes", Kind::Counter, "Write system calls.", |c| {
        &c.writes
    }),
    (
        "laps",
        Kind::Counter,
        "Times the core was lapped by the ring.",
        |c| &c.laps,
    ),
    (
        "lap_skipped",
        Kind::Counter,
        "Ring positions skipped because of laps.",
        |c| &c.lap_skipped,
    ),
    (
        "conflated_updates",
        Kind::Counter,
        "Updates merged instead of sent (conflation or max_rate).",
        |c| &c.conflated_updates,
    ),
    (
        "conflation_entries",
        Kind::Counter,
        "Times a connection entered conflation.",
        |c| &c.conflation_entries,
    ),
    (
        "evictions",
        Kind::Counter,
        "Connections closed as slow consumers.",
        |c| &c.evictions,
    ),
    (
        "resumes_waited",
        Kind::Counter,
        "Resumes that waited for this node to reach the client's resume point.",
        |c| &c.resumes_waited,
    ),
    (
        "resumes_caught_up",
        Kind::Counter,
        "Waiting resumes the node caught up with in time (no snapshot).",
        |c| &c.resumes_caught_up,
    ),
    (
        "resumes_timed_out",
        Kind::Counter,
        "Waiting resumes that got a snapshot at the end of resume_wait_ms.",
        |c| &c.resumes_timed_out,
    ),
    (
        "buffered_bytes",
        Kind::Gauge,
        "Bytes queued in connection outboxes.",
        |c| &c.buffered_bytes,
    ),
    (
        "ring_lag",
        Kind::Gauge,
        "Ring positions published but not yet read by the core.",
        |c| &c.ring_lag,
    ),
    (
        "protocol_errors",
        Kind::Counter,
        "Client messages answered with an error.",
        |c| &c.protocol_errors,
    ),
    (
        "input_throttled",
        Kind::Counter,
        "Times a connection's input was paused for exceeding max_input_bytes_per_sec.",
        |c| &c.input_throttled,
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_with_inclusive_bounds() {
        let h = LatencyHistogram::default();
        for ns in [
            0,
            10_000,
            10_001,
            999_999_999,
            1_000_000_000,
            20_000_000_000,
        ] {
            h.record(ns);
        }
        let (cum, sum) = h.snapshot();
        let at = |bound: u64| cum[LATENCY_BUCKETS_NS.iter().position(|&b| b == bound).unwrap()];
        assert_eq!(at(10_000), 2, "0 and 10 µs: le is inclusive");
        assert_eq!(at(25_000), 3);
        assert_eq!(at(500_000_000), 3);
        assert_eq!(at(1_000_000_000), 5);
        assert_eq!(at(10_000_000_000), 5);
        assert_eq!(cum[LATENCY_BUCKETS_NS.len()], 6, "+Inf holds everything");
        assert_eq!(
            sum,
            10_000 + 10_001 + 999_999_999 + 1_000_000_000 + 20_000_000_000
        );
        assert!(cum.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn core_latency_measures_from_receipt_and_from_the_event() {
        let l = CoreLatency::default();
        // Written at 10 ms; received at 9.99 ms; the event at 9 ms.
        l.record(10_000_000, 9_990_000, 9_000_000);
        // A source clock ahead of ours: counts as 0.
        l.record(10_000_000, 9_990_000, 11_000_000);
        let (ingest, isum) = l.ingest_to_write.snapshot();
        let (event, esum) = l.event_to_write.snapshot();
        assert_eq!((ingest[0], isum), (2, 20_000), "10 µs each");
        assert_eq!(event[0], 1, "the clamped one");
        assert_eq!(event[6], 2, "1 ms <= 1 ms bucket");
        assert_eq!(esum, 1_000_000);
    }
}
