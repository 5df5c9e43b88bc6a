//! Scale-out over NATS: ingest nodes elect one leader that sequences, many edge nodes
//! fan out.
//!
//! ```text
//!  feeds ─► ingest (leader): sequencer ─► ring ─► its own writer cores (optional clients)
//!                      │ every batch (BatchSink)        ▲ lease: JetStream KV <prefix>_leader
//!                      ▼                                ▼
//!            NATS  <prefix>.ticks.<shard>        <prefix>.snapshot (request/reply)
//!                      │                                  ▲
//!                      ▼                                  │ on start, gap, reconnect,
//!  edge, and ingest standby: Edge ─► publish_sequenced ─► ring ─► writer cores ─► clients
//! ```
//!
//! - [`Role`] says what a node does; [`BusConfig`] tunes the bus.
//! - [`codec`]: the messages on the bus, sans-IO.
//! - [`election`]: which ingest leads: a lease in a JetStream key-value bucket, with a
//!   term that fences a leader that lost it; sans-IO.
//! - [`ingest`]: an ingest node on its sequencer thread: it leads (sequences its feeds)
//!   or stands by (follows the leader, ready to continue its sequences); sans-IO core.
//! - [`publisher`]: the ingest's bus thread: a [`crate::sequencer::BatchSink`] that
//!   queues each batch for NATS, and the thread that runs the election, publishes the
//!   batches and answers snapshot requests while leading, and follows while not.
//! - [`edge`]: the edge side: the [`edge::Edge`] state machine (continuity checks,
//!   symbol mapping, term fence, snapshots; sans-IO) and the thread that feeds it from
//!   NATS.
//!
//! Sequence numbers are assigned once, by the leader, and travel with each tick, so a
//! tick has the same number on every edge and a client can resume on any of them; a
//! standby that takes over continues them.
//! The design and its choices are in `docs/architecture.md` (Scale-out); the message
//! format in `docs/protocol.md` (The bus).

pub mod codec;
pub mod edge;
pub mod election;
pub mod ingest;
pub mod publisher;

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::{Config, ConfigError};

/// What a node does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Feeds, sequencer and clients on one node, no bus (the default).
    #[default]
    Standalone,
    /// Feeds and sequencer. Ingest nodes elect one leader through NATS (JetStream
    /// key-value); the leader publishes every sequenced batch to NATS and answers the
    /// edges' snapshot requests, the others follow it and take over when it fails. It
    /// also serves clients, like a standalone node.
    Ingest,
    /// No feeds: takes the ingest's sequenced ticks from NATS into its own ring and
    /// last-value cache, and fans them out to its clients.
    Edge,
}

impl Role {
    /// The name used in the config, on the command line and in `/stats`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Standalone => "standalone",
            Role::Ingest => "ingest",
            Role::Edge => "edge",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `--role` value that names no role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: expected `standalone`, `ingest` or `edge`")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Role, UnknownRole> {
        match s {
            "standalone" => Ok(Role::Standalone),
            "ingest" => Ok(Role::Ingest),
            "edge" => Ok(Role::Edge),
            other => Err(UnknownRole(other.to_string())),
        }
    }
}

/// Settings of the NATS bus (`[bus]` in the config file); used by `ingest` and `edge`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusConfig {
    /// First token of every subject, so that several tickcast clusters can share one
    /// NATS: ticks go to `<prefix>.ticks.<shard>`, snapshots are asked on
    /// `<prefix>.snapshot`. Default: `tickcast`.
    pub subject_prefix: String,
    /// Subjects the ticks are spread over, by `symbol_id % shards`. Each subject keeps
    /// its order end to end; more subjects spread the NATS server's work. Every edge
    /// takes them all. Default: 1.
    pub shards: u32,
    /// Batches the ingest queues for NATS; when the queue is full (NATS slow or away)
    /// a batch is dropped and counted, and the edges resynchronise. Default: 4,096.
    pub publish_queue_batches: usize,
    /// How long an edge waits for one snapshot reply before it asks again, in ms.
    /// Default: 2,000.
    pub snapshot_timeout_ms: u64,
    /// Longest wait between two attempts to reach NATS (or an ingest that does not
    /// answer snapshot requests), in ms; attempts start at once and back off
    /// exponentially up to it. Default: 1,000.
    pub reconnect_max_delay_ms: u64,
    /// How long an ingest's lease on leadership lasts without a renewal, in ms: a
    /// standby takes over when the leader's lease has not moved for this long (counted
    /// from when the standby saw it), so a failover takes between `lease_ms` and
    /// `lease_ms + lease_check_interval_ms` (plus one key-value round trip) after the
    /// leader's last renewal. Default: 1,000.
    pub lease_ms: u64,
    /// How often the leader renews its lease and a standby checks it, in ms; at most a
    /// third of `lease_ms`. Default: 100.
    pub lease_check_interval_ms: u64,
    /// This ingest's name in the lease (`/stats` shows who leads); unique per node.
    /// Default: none, meaning `<hostname>-<pid>-<n>`.
    pub node_name: Option<String>,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            subject_prefix: "tickcast".into(),
            shards: 1,
            publish_queue_batches: 4096,
            snapshot_timeout_ms: 2_000,
            reconnect_max_delay_ms: 1_000,
            lease_ms: 1_000,
            lease_check_interval_ms: 100,
            node_name: None,
        }
    }
}

impl BusConfig {
    /// The subject of shard `shard`'s ticks.
    pub fn ticks_subject(&self, shard: u32) -> String {
        format!("{}.ticks.{shard}", self.subject_prefix)
    }

    /// The subject an edge subscribes to: every shard.
    pub fn ticks_wildcard(&self) -> String {
        format!("{}.ticks.*", self.subject_prefix)
    }

    /// The subject of snapshot requests.
    pub fn snapshot_subject(&self) -> String {
        format!("{}.snapshot", self.subject_prefix)
    }

    /// The JetStream key-value bucket that holds the leader's lease:
    /// `<prefix>_leader`, with the prefix's dots as underscores.
    pub fn lease_bucket(&self) -> String {
        format!("{}_leader", self.subject_prefix.replace('.', "_"))
    }

    /// This ingest's name in the lease: `node_name`, or `<hostname>-<pid>-<n>` with
    /// `n` counting the nodes this process started.
    pub fn node_name(&self) -> String {
        static STARTED: AtomicU64 = AtomicU64::new(0);
        if let Some(n) = &self.node_name {
            return n.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        let n = STARTED.fetch_add(1, Relaxed);
        format!("{host}-{}-{n}", std::process::id())
    }

    /// Delay before attempt `attempt` (0-based) to reach NATS or the ingest.
    pub fn backoff(&self, attempt: u32) -> std::time::Duration {
        let ms = 1u64
            .checked_shl(attempt.min(20))
            .unwrap_or(u64::MAX)
            .saturating_mul(10)
            .min(self.reconnect_max_delay_ms);
        std::time::Duration::from_millis(if attempt == 0 { 0 } else { ms })
    }
}

/// Checks the bus settings of `config` (called by [`Config::validate`]).
pub fn validate(config: &Config) -> Result<(), ConfigError> {
    let bus = &config.bus;
    let token_ok = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_'))
    };
    if !bus.subject_prefix.split('.').all(token_ok) {
        return Err(ConfigError::Invalid(format!(
            "bus.subject_prefix {:?}: dot-separated tokens of letters, digits, - and _",
            bus.subject_prefix
        )));
    }
    if bus.shards == 0 || bus.shards > 1024 {
        return Err(ConfigError::Invalid("bus.shards must be 1..=1024".into()));
    }
    if bus.publish_queue_batches == 0 || bus.snapshot_timeout_ms == 0 {
        return Err(ConfigError::Invalid(
            "bus.publish_queue_batches and bus.snapshot_timeout_ms must be positive".into(),
        ));
    }
    if bus.lease_check_interval_ms == 0 || bus.lease_check_interval_ms * 3 > bus.lease_ms {
        return Err(ConfigError::Invalid(format!(
            "bus.lease_check_interval_ms ({}) must be positive and at most a third of \
             bus.lease_ms ({}): the leader renews several times per lease",
            bus.lease_check_interval_ms, bus.lease_ms
        )));
    }
    if bus
        .node_name
        .as_deref()
        .is_some_and(|n| n.trim().is_empty())
    {
        return Err(ConfigError::Invalid(
            "bus.node_name must not be empty (leave it out for the default)".into(),
        ));
    }
    if config.role != Role::Standalone && config.nats_url.trim().is_empty() {
        return Err(ConfigError::Invalid(format!(
            "role {} needs nats_url",
            config.role
        )));
    }
    if config.role == Role::Edge && config.publish_token.is_some() {
        return Err(ConfigError::Invalid(
            "an edge takes its ticks from the bus only: publish to the ingest \
             (leave publish_token out on edges)"
                .into(),
        ));
    }
    Ok(())
}

/// The bus's counters and state, read by `/stats`, `/metrics` and `/healthz`.
/// Written by the bus thread (and, for `dropped_batches`, the sequencer).
#[derive(Debug, Default)]
pub struct BusStatus {
    /// This node's role; set once at start.
    pub role: Role,
    /// 1 while connected to NATS.
    pub connected: AtomicU64,
    /// Times the NATS connection was lost.
    pub disconnects: AtomicU64,
    /// When the current outage began, ns since the Unix epoch (0: connected).
    pub outage_since_ns: AtomicU64,
    /// Edge: 1 once a first snapshot was applied (the edge may serve).
    pub synced: AtomicU64,
    /// Edge: 1 while a resynchronisation is wanted and not yet done.
    pub resync_pending: AtomicU64,
    /// The ingest's epoch (its start time, ns): ingest, its own; edge, the one followed.
    pub epoch: AtomicU64,
    /// Batch messages published (ingest) or received (edge).
    pub messages: AtomicU64,
    /// Ticks in those messages.
    pub ticks: AtomicU64,
    /// Bytes of those messages' payloads.
    pub bytes: AtomicU64,
    /// Ingest: batches dropped because the queue to NATS was full or NATS was away.
    pub dropped_batches: AtomicU64,
    /// Ingest: publishes NATS refused.
    pub publish_errors: AtomicU64,
    /// Ingest: snapshot pages served.
    pub snapshot_pages_served: AtomicU64,
    /// Malformed messages (bad headers, lengths, kinds, requests), counted and skipped.
    pub malformed: AtomicU64,
    /// Edge: per-symbol sequence gaps detected.
    pub gaps: AtomicU64,
    /// Edge: sequence numbers missing in those gaps.
    pub gap_ticks: AtomicU64,
    /// Edge: ticks already delivered (or covered by a snapshot), dropped.
    pub duplicates: AtomicU64,
    /// Edge: ticks naming a symbol id the edge was never told about, dropped.
    pub unknown_symbols: AtomicU64,
    /// Edge: ingest restarts seen (a new epoch).
    pub restarts: AtomicU64,
    /// Edge: snapshots applied (the first sync included).
    pub resyncs: AtomicU64,
    /// Edge: snapshot requests that failed (timeout, no ingest, bad reply).
    pub snapshot_failures: AtomicU64,
    /// Time of the last batch message, ns since the Unix epoch (0: none yet).
    pub last_message_ns: AtomicU64,
    /// The leader term published under (ingest leader) or followed (edge, standby).
    pub term: AtomicU64,
    /// Edge, standby: messages (or snapshots) from an older term or epoch than the one
    /// followed, dropped: a leader that lost its lease and has not noticed yet.
    pub stale: AtomicU64,
    /// Edge, standby: failovers seen (a new leader's term in the same epoch).
    pub handovers: AtomicU64,
    /// Edge, standby: when the last failover's first message arrived, ns since the
    /// Unix epoch.
    pub last_handover_ns: AtomicU64,
    /// Edge, standby: the silence before it: from the message before to that first
    /// one, in ns.
    pub last_handover_gap_ns: AtomicU64,
    /// Messages lost before the state machine read them (NATS slow consumer, the
    /// standby's hand-off queue full); each asks for a snapshot.
    pub lost: AtomicU64,
    /// Ingest: times this node took the lease.
    pub takeovers: AtomicU64,
    /// Ingest: takeovers that started a new epoch (the node was not in sync).
    pub new_epoch_takeovers: AtomicU64,
    /// Ingest: own feed updates that takeovers merged into snapshot-flagged values:
    /// what the switch lost (at a node's first takeover, what its feeds sent before it
    /// led).
    pub handover_ticks: AtomicU64,
    /// Ingest: when this node last took the lease, ns since the Unix epoch.
    pub last_takeover_ns: AtomicU64,
    /// Ingest: batches not published because this node did not lead under the term
    /// they were sequenced in.
    pub unpublished_batches: AtomicU64,
    /// Ingest: the term of the lease this node holds (0: it holds none).
    pub lease_term: AtomicU64,
    /// Ingest: when its last confirmed lease write was sent, ns since the Unix epoch.
    pub lease_renewed_ns: AtomicU64,
    /// Ingest: the lease length (`bus.lease_ms`), in ns; set at start.
    pub lease_ns: AtomicU64,
    /// Ingest: names in the election.
    pub election: Mutex<ElectionInfo>,
}

/// What an ingest knows of the election (`/stats` `bus.election`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ElectionInfo {
    /// This node's name (`bus.node_name`).
    pub node: String,
    /// The lease holder's name as last read or written (empty: none seen).
    pub holder: String,
    /// Why the election cannot run (for example, NATS without JetStream); empty when
    /// it runs.
    pub error: String,
}

/// What `/healthz` says about a node (and, for `Syncing`, `/readyz`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Everything works.
    Ok,
    /// Serving, but the bus is away or a resynchronisation is pending: clients keep
    /// the last values, and get fresh ones flagged snapshot when it is back.
    Degraded,
    /// An edge that has no snapshot yet: it must not get clients (`/readyz` 503).
    Syncing,
}

impl BusStatus {
    /// Counters for a node of `role`.
    pub fn new(role: Role) -> BusStatus {
        BusStatus {
            role,
            ..BusStatus::default()
        }
    }

    /// The node's health as far as the bus goes.
    pub fn health(&self) -> Health {
        let election_broken = || self.election_info().is_some_and(|e| !e.error.is_empty());
        match self.role {
            Role::Standalone => Health::Ok,
            Role::Edge if self.synced.load(Relaxed) == 0 => Health::Syncing,
            _ if self.connected.load(Relaxed) == 0 || self.resync_pending.load(Relaxed) == 1 => {
                Health::Degraded
            }
            Role::Ingest if election_broken() => Health::Degraded,
            _ => Health::Ok,
        }
    }

    /// Why the bus holds the node's readiness back, if it does: an edge without its
    /// first snapshot. (A degraded node stays ready: see `docs/deploy.md`.)
    pub fn not_ready(&self) -> Option<String> {
        (self.health() == Health::Syncing)
            .then(|| "edge has no snapshot from the ingest yet".to_string())
    }

    /// Whether this node leads: it holds the lease and its last renewal was confirmed
    /// less than a lease ago (at `now_ns`, ns since the Unix epoch).
    pub fn is_leader(&self, now_ns: u64) -> bool {
        self.role == Role::Ingest
            && self.lease_term.load(Relaxed) != 0
            && now_ns.saturating_sub(self.lease_renewed_ns.load(Relaxed))
                < self.lease_ns.load(Relaxed)
    }

    /// The election's names (ingest nodes only).
    pub fn election_info(&self) -> Option<ElectionInfo> {
        (self.role == Role::Ingest).then(|| {
            self.election
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        })
    }

    /// Records what the election knows; `holder` and `error` when given.
    pub fn set_election(&self, holder: Option<&str>, error: Option<&str>) {
        let mut e = self.election.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = holder {
            if e.holder != h {
                e.holder = h.to_string();
            }
        }
        if let Some(err) = error {
            if e.error != err {
                e.error = err.to_string();
            }
        }
    }

    /// The `/healthz` (liveness) answer: always 200 while the process serves, with
    /// `status` `ok`, `degraded` or `syncing`; readiness is `/readyz`'s.
    pub fn healthz(&self, symbols: usize) -> (StatusCode, Value) {
        let status = match self.health() {
            Health::Ok => "ok",
            Health::Degraded => "degraded",
            Health::Syncing => "syncing",
        };
        let code = StatusCode::OK;
        let mut body = json!({"status": status, "symbols": symbols});
        if self.role != Role::Standalone {
            body["role"] = json!(self.role.name());
            body["leader"] = json!(self.is_leader(crate::clock::now_ns()));
            body["bus"] = json!({
                "connected": self.connected.load(Relaxed) == 1,
                "synced": self.synced.load(Relaxed) == 1,
                "resync_pending": self.resync_pending.load(Relaxed) == 1,
                "term": self.term.load(Relaxed),
            });
            if let Some(e) = self.election_info() {
                body["bus"]["leader_node"] = json!(e.holder);
                if !e.error.is_empty() {
                    body["bus"]["election_error"] = json!(e.error);
                }
            }
        }
        (code, body)
    }

    /// The `bus` section of `/stats` (`null` for a standalone node).
    pub fn to_json(&self) -> Value {
        if self.role == Role::Standalone {
            return Value::Null;
        }
        let mut m = serde_json::Map::new();
        m.insert("role".into(), json!(self.role.name()));
        for (name, _, _, get) in BUS_FIELDS {
            m.insert(name.into(), json!(get(self).load(Relaxed)));
        }
        m.insert("connected".into(), json!(self.connected.load(Relaxed) == 1));
        m.insert("synced".into(), json!(self.synced.load(Relaxed) == 1));
        m.insert(
            "resync_pending".into(),
            json!(self.resync_pending.load(Relaxed) == 1),
        );
        if let Some(e) = self.election_info() {
            let now = crate::clock::now_ns();
            let renewed = self.lease_renewed_ns.load(Relaxed);
            m.insert(
                "election".into(),
                json!({
                    "node": e.node,
                    "leader": self.is_leader(now),
                    "leader_node": e.holder,
                    "lease_term": self.lease_term.load(Relaxed),
                    "lease_ms": self.lease_ns.load(Relaxed) / 1_000_000,
                    "lease_renewed_ms_ago": (renewed != 0).then(|| now.saturating_sub(renewed) / 1_000_000),
                    "error": (!e.error.is_empty()).then_some(e.error),
                }),
            );
        }
        Value::Object(m)
    }

    /// Appends the `tickcast_bus_*` metrics (nothing for a standalone node).
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        if self.role == Role::Standalone {
            return;
        }
        let role = self.role.name();
        for (name, kind, help, get) in BUS_FIELDS {
            let metric = match kind {
                "counter" => format!("tickcast_bus_{name}_total"),
                _ => format!("tickcast_bus_{name}"),
            };
            let _ = writeln!(out, "# HELP {metric} {help}");
            let _ = writeln!(out, "# TYPE {metric} {kind}");
            let _ = writeln!(
                out,
                "{metric}{{role=\"{role}\"}} {}",
                get(self).load(Relaxed)
            );
        }
        for (name, help, v) in [
            (
                "tickcast_bus_connected",
                "1 while connected to NATS.",
                self.connected.load(Relaxed),
            ),
            (
                "tickcast_bus_synced",
                "Edge: 1 once it has a snapshot and may serve.",
                self.synced.load(Relaxed),
            ),
            (
                "tickcast_bus_resync_pending",
                "Edge: 1 while a resynchronisation is pending.",
                self.resync_pending.load(Relaxed),
            ),
            (
                "tickcast_bus_leader",
                "Ingest: 1 while this node leads (lease held and confirmed).",
                u64::from(self.is_leader(crate::clock::now_ns())),
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            let _ = writeln!(out, "{name}{{role=\"{role}\"}} {v}");
        }
    }

    /// Records that the NATS connection is up (or back).
    pub fn set_connected(&self) {
        self.connected.store(1, Relaxed);
        self.outage_since_ns.store(0, Relaxed);
    }

    /// Records that the NATS connection was lost at `now_ns`.
    pub fn set_disconnected(&self, now_ns: u64) {
        if self.connected.swap(0, Relaxed) == 1 {
            self.disconnects.fetch_add(1, Relaxed);
            self.outage_since_ns.store(now_ns, Relaxed);
        }
    }
}

/// Connects to `config.nats_url` for `role`'s thread. Returns at once: the client
/// connects (and reconnects, forever, backing off up to `reconnect_max_delay_ms`) in
/// the background, and keeps `status.connected` current. Every connection event is also
/// sent to `events` when given (dropped when that queue is full: the state is in
/// `status` anyway). Only an unparsable URL is an error.
pub(crate) async fn connect(
    config: &Config,
    status: std::sync::Arc<crate::stats::Stats>,
    events: Option<tokio::sync::mpsc::Sender<async_nats::Event>>,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    let bus = config.bus.clone();
    let urls: Vec<&str> = config
        .nats_url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    async_nats::ConnectOptions::new()
        .name(format!("tickcast-{}", config.role))
        .retry_on_initial_connect()
        .connection_timeout(std::time::Duration::from_secs(2))
        .ping_interval(std::time::Duration::from_secs(5))
        .reconnect_delay_callback(move |attempts| bus.backoff(attempts as u32))
        .event_callback(move |event| {
            let status = status.clone();
            let events = events.clone();
            async move {
                match &event {
                    async_nats::Event::Connected => status.bus.set_connected(),
                    async_nats::Event::Disconnected => {
                        status.bus.set_disconnected(crate::clock::now_ns())
                    }
                    _ => {}
                }
                if let Some(tx) = events {
                    let _ = tx.try_send(event);
                }
            }
        })
        .connect(urls)
        .await
}

/// Reads one counter of [`BusStatus`].
type BusField = fn(&BusStatus) -> &AtomicU64;

/// The numeric fields of [`BusStatus`]: name, Prometheus kind, help.
const BUS_FIELDS: [(&str, &str, &str, BusField); 29] = [
    (
        "disconnects",
        "counter",
        "Times the NATS connection was lost.",
        |s| &s.disconnects,
    ),
    (
        "outage_since_ns",
        "gauge",
        "Start of the current NATS outage, ns since the Unix epoch (0: connected).",
        |s| &s.outage_since_ns,
    ),
    (
        "epoch",
        "gauge",
        "The ingest's epoch (its start time in ns) published or followed.",
        |s| &s.epoch,
    ),
    (
        "messages",
        "counter",
        "Batch messages published (ingest) or received (edge).",
        |s| &s.messages,
    ),
    ("ticks", "counter", "Ticks in the batch messages.", |s| {
        &s.ticks
    }),
    (
        "bytes",
        "counter",
        "Payload bytes of the batch messages.",
        |s| &s.bytes,
    ),
    (
        "dropped_batches",
        "counter",
        "Ingest: batches dropped because NATS was away or slow.",
        |s| &s.dropped_batches,
    ),
    (
        "publish_errors",
        "counter",
        "Ingest: publishes NATS refused.",
        |s| &s.publish_errors,
    ),
    (
        "snapshot_pages_served",
        "counter",
        "Ingest: snapshot pages sent to edges.",
        |s| &s.snapshot_pages_served,
    ),
    (
        "malformed",
        "counter",
        "Malformed bus messages or requests, skipped.",
        |s| &s.malformed,
    ),
    (
        "gaps",
        "counter",
        "Edge: per-symbol sequence gaps detected.",
        |s| &s.gaps,
    ),
    (
        "gap_ticks",
        "counter",
        "Edge: sequence numbers missing in those gaps.",
        |s| &s.gap_ticks,
    ),
    (
        "duplicates",
        "counter",
        "Edge: ticks already delivered or covered by a snapshot, dropped.",
        |s| &s.duplicates,
    ),
    (
        "unknown_symbols",
        "counter",
        "Edge: ticks for symbol ids never announced, dropped.",
        |s| &s.unknown_symbols,
    ),
    (
        "restarts",
        "counter",
        "Edge: ingest restarts seen (new epoch).",
        |s| &s.restarts,
    ),
    ("resyncs", "counter", "Edge: snapshots applied.", |s| {
        &s.resyncs
    }),
    (
        "snapshot_failures",
        "counter",
        "Edge: snapshot requests that failed.",
        |s| &s.snapshot_failures,
    ),
    (
        "term",
        "gauge",
        "The leader term published under or followed.",
        |s| &s.term,
    ),
    (
        "stale",
        "counter",
        "Messages from a leader that lost its lease (older term or epoch), dropped.",
        |s| &s.stale,
    ),
    (
        "handovers",
        "counter",
        "Failovers seen: a new leader's term in the same epoch.",
        |s| &s.handovers,
    ),
    (
        "last_handover_ns",
        "gauge",
        "When the last failover's first message arrived, ns since the Unix epoch.",
        |s| &s.last_handover_ns,
    ),
    (
        "last_handover_gap_ns",
        "gauge",
        "Silence before the last failover's first message, ns.",
        |s| &s.last_handover_gap_ns,
    ),
    (
        "lost",
        "counter",
        "Messages lost before the state machine read them (slow consumer, full queue).",
        |s| &s.lost,
    ),
    (
        "takeovers",
        "counter",
        "Ingest: times this node took the lease.",
        |s| &s.takeovers,
    ),
    (
        "new_epoch_takeovers",
        "counter",
        "Ingest: takeovers that started a new epoch (not in sync).",
        |s| &s.new_epoch_takeovers,
    ),
    (
        "handover_ticks",
        "counter",
        "Ingest: own updates merged into snapshot-flagged values at takeovers (lost).",
        |s| &s.handover_ticks,
    ),
    (
        "last_takeover_ns",
        "gauge",
        "Ingest: when this node last took the lease, ns since the Unix epoch.",
        |s| &s.last_takeover_ns,
    ),
    (
        "unpublished_batches",
        "counter",
        "Ingest: batches not published: sequenced under a term this node no longer leads.",
        |s| &s.unpublished_batches,
    ),
    (
        "lease_term",
        "gauge",
        "Ingest: the term of the lease this node holds (0: none).",
        |s| &s.lease_term,
    ),
];

/// Starts the thread `name` running `task` on its own current-thread tokio runtime
/// (the bus threads: `bus-publisher`, `bus-edge`). A runtime that cannot be built is
/// logged and ends the thread.
fn spawn_runtime_thread<F, Fut>(name: &str, task: F) -> std::io::Result<std::thread::JoinHandle<()>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(task()),
                Err(e) => tracing::error!(error = %e, "bus: cannot build runtime"),
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_and_print() {
        for r in [Role::Standalone, Role::Ingest, Role::Edge] {
            assert_eq!(r.name().parse::<Role>(), Ok(r));
        }
        assert!("leaf".parse::<Role>().is_err());
    }

    #[test]
    fn health_by_role_and_state() {
        let s = BusStatus::new(Role::Standalone);
        assert_eq!(s.healthz(3).0, StatusCode::OK);
        assert_eq!(s.healthz(3).1, json!({"status": "ok", "symbols": 3}));
        let e = BusStatus::new(Role::Edge);
        e.set_connected();
        assert_eq!(e.health(), Health::Syncing);
        assert_eq!(e.healthz(0).0, StatusCode::OK, "alive while syncing");
        assert_eq!(e.healthz(0).1["status"], "syncing");
        assert!(e.not_ready().is_some());
        e.synced.store(1, Relaxed);
        assert_eq!(e.health(), Health::Ok);
        assert_eq!(e.not_ready(), None);
        e.set_disconnected(5);
        assert_eq!(e.health(), Health::Degraded);
        assert_eq!(e.healthz(0).0, StatusCode::OK, "keeps its clients");
        assert_eq!(e.disconnects.load(Relaxed), 1);
        e.set_disconnected(6);
        assert_eq!(e.disconnects.load(Relaxed), 1, "one outage, one count");
    }

    #[test]
    fn backoff_grows_to_the_cap() {
        let c = BusConfig::default();
        assert_eq!(c.backoff(0).as_millis(), 0);
        assert_eq!(c.backoff(1).as_millis(), 20);
        assert_eq!(c.backoff(30).as_millis(), 1_000);
    }

    #[test]
    fn validates_settings() {
        let mut c = Config::default();
        assert!(validate(&c).is_ok());
        c.bus.subject_prefix = "a b".into();
        assert!(validate(&c).is_err());
        c.bus.subject_prefix = "md.prod".into();
        assert!(validate(&c).is_ok());
        c.role = Role::Edge;
        c.publish_token = Some("x".into());
        assert!(validate(&c).is_err());
    }
}
