//! `Core`: one writer core's fan-out state machine, sans-IO.
//!
//! The core owns its connections' protocol state — outboxes, frame readers,
//! subscriptions, conflation, control-message budgets, liveness clocks — and is driven
//! by calls that each pass `now`:
//!
//! | input | call |
//! |---|---|
//! | new ring slots | [`Core::pump`] |
//! | bytes read from a socket | [`Core::on_input`] (then [`Core::resume_input`]) |
//! | a socket took `n` bytes, or took none | [`Core::on_written`], [`Core::on_blocked`] |
//! | a timer | [`Core::on_timer`] at [`Core::next_deadline`] |
//! | a connection opened, ended | [`Core::open`], [`Core::on_eof`], [`Core::remove`] |
//!
//! and answers with what to do: [`Core::next_ready`] and [`Core::transmit`] give the
//! bytes to write per connection, [`Core::io_state`] says whether to read, wait for
//! the socket to drain, close or drop it, [`Core::take_wakes`] which connections'
//! state changed. It never touches a socket, a clock or a thread
//! (`fanout::session` and `fanout::thread` do), which is what lets
//! `fanout::tests` run every timer path in simulated time.
//!
//! The concerns live in their own files, as `impl Core` blocks: routing ticks here,
//! [`super::conflation`] (budgets, merging, `max_rate`), [`super::control`] (client
//! messages), [`super::resume`] (snapshots and replays), [`super::liveness`] (pings,
//! idle and stall timeouts).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use slab::Slab;

use super::control::TokenBucket;
use super::outbox::{Format, Outbox};
use super::subscriptions::{SubKey, Subscriptions};
use crate::auth::Entitlements;
use crate::config::Config;
use crate::lvc::LastValueCache;
use crate::protocol::Channels;
use crate::ring::{Read, Reader, Ring};
use crate::stats::{ConnStats, CoreStats, Stats};
use crate::symbol::{Symbol, SymbolTable};
use crate::tick::{Kind, Tick};
use crate::wire::frame::{Flow, FrameReader, Message};
use crate::wire::{self, CloseCode, OP_CLOSE, OP_PONG, OP_TEXT, RECORD_SIZE};

/// Key of a connection in its core.
pub type ConnId = usize;

/// Spare outbox buffers a core keeps for reuse; more are freed.
const MAX_SPARE_BUFFERS: usize = 32;
/// Ticks [`Core::batch_ts`] holds for the latency histograms until they are written
/// everywhere; past it the oldest is recorded as written at once.
const MAX_UNWRITTEN_TICKS: usize = 65_536;
/// Capacity of a buffer allocated for an outbox when no spare one is left: room for
/// a few dozen records, so that a connection that got nothing since its last write
/// does not grow a buffer from nothing, one reallocation after another, every time.
/// It is handed back once written (it is larger than [`KEEP_CAPACITY`](super::outbox::KEEP_CAPACITY)).
const FRESH_BUFFER_BYTES: usize = 2048;
/// A spare buffer larger than this is freed rather than kept.
const MAX_SPARE_CAPACITY: usize = 256 * 1024;
/// How often a core publishes its latency histogram to [`Stats::latency`].
const LATENCY_PUBLISH_NS: u64 = 1_000_000_000;

/// The settings a core runs by, from [`Config`], in the units it uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Queue above which a connection conflates (`high_water_bytes`).
    pub high_water_bytes: usize,
    /// Queue at or below which a conflating connection streams again.
    pub low_water_bytes: usize,
    /// Oldest unsent byte's age above which a connection conflates; 0: no bound.
    pub max_queue_age_ns: u64,
    /// No write progress for this long with bytes queued: evicted with 4008.
    pub stall_timeout_ns: u64,
    /// Ping after this long without hearing from the peer.
    pub ping_interval_ns: u64,
    /// Nothing heard for this long: closed with 4010 and freed.
    pub idle_timeout_ns: u64,
    /// Largest client message, in bytes (inclusive); over it: 1009.
    pub max_message_bytes: usize,
    /// Control output queued above which the connection's input is not read.
    pub max_pending_control_bytes: usize,
    /// Input bytes per second per connection (sustained).
    pub max_input_bytes_per_sec: u64,
    /// Control messages per second per connection (sustained).
    pub control_messages_per_sec: u32,
    /// Control messages in a burst.
    pub control_burst: u32,
    /// Symbols one connection may hold.
    pub max_subscriptions: usize,
    /// How long a resume ahead of this node waits for it (`resume_wait_ms`; 0 on a
    /// standalone node, which numbers its own ticks).
    pub resume_wait_ns: u64,
    /// Distinct book levels one subscription merges before it sends a fresh snapshot
    /// instead (twice `max_book_levels`: past that, a snapshot is no larger).
    pub book_merge_levels: usize,
}

impl Settings {
    /// The input budget's burst, in bytes: a second's worth, or two of the largest
    /// messages, whichever is more.
    pub fn input_burst(&self) -> f64 {
        (self.max_input_bytes_per_sec as f64).max(2.0 * self.max_message_bytes as f64)
    }

    /// The settings of `config`.
    pub fn from_config(config: &Config) -> Settings {
        let ms = 1_000_000;
        Settings {
            high_water_bytes: config.high_water_bytes,
            low_water_bytes: config.low_water_bytes,
            max_queue_age_ns: config.max_queue_age_ms * ms,
            stall_timeout_ns: config.stall_timeout_ms * ms,
            ping_interval_ns: config.ping_interval_ms * ms,
            idle_timeout_ns: config.idle_timeout_ms * ms,
            max_message_bytes: config.max_control_message_bytes,
            max_pending_control_bytes: config.limits.max_pending_control_bytes,
            max_input_bytes_per_sec: config.limits.max_input_bytes_per_sec,
            control_messages_per_sec: config.limits.control_messages_per_sec,
            control_burst: config.limits.control_burst,
            max_subscriptions: config.limits.max_subscriptions_per_connection,
            resume_wait_ns: match config.role {
                crate::bus::Role::Standalone => 0,
                _ => config.resume_wait_ms * ms,
            },
            book_merge_levels: 2 * config.max_book_levels,
        }
    }
}

/// What a connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `/ws`: control messages in, ticks out.
    Subscriber,
    /// A conformance-testing route: every text and binary message is sent back.
    Echo,
}

/// What the I/O shell should do with a connection now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IoState {
    /// Read its socket (false while its control output is over the bound, or once it
    /// is closing).
    pub read: bool,
    /// Input was read but not processed yet: call [`Core::resume_input`].
    pub backlog: bool,
    /// Its socket was full: wait until it can take more, then write.
    pub blocked: bool,
    /// A close frame is queued: write what is left, then end the connection.
    pub closing: bool,
    /// Nothing queued is left to write.
    pub drained: bool,
    /// The socket failed or the peer went away: drop it now.
    pub dead: bool,
}

/// One connection's state in its core.
#[derive(Debug)]
pub struct Conn {
    pub(super) mode: Mode,
    pub(super) out: Outbox,
    pub(super) frames: FrameReader,
    pub(super) format: Format,
    /// `(symbol id, subscription)`, sorted by symbol.
    pub(super) subs: Vec<(u32, SubKey)>,
    /// Subscribed to `*` at this `max_rate` and on these channels: new symbols are
    /// added as they appear.
    pub(super) wildcard: Option<(f64, Channels)>,
    /// On the core's ready list.
    pub(super) ready: bool,
    /// The socket was full; the session writes when it drains.
    pub(super) blocked: bool,
    /// Over its budget: ticks are merged, not queued.
    pub(super) conflating: bool,
    /// A close frame is queued; nothing else is added.
    pub(super) closing: bool,
    /// The socket failed; the connection is being torn down.
    pub(super) dead: bool,
    /// Input is not read: too much control output is waiting.
    pub(super) paused: bool,
    /// Input read while paused, processed on [`Core::resume_input`].
    pub(super) backlog: Vec<u8>,
    /// The latest ping's payload, answered once the input at hand is processed.
    pub(super) pong: Option<Box<[u8]>>,
    pub(super) opened_ns: u64,
    pub(super) last_progress_ns: u64,
    /// Last time anything arrived from the peer.
    pub(super) last_seen_ns: u64,
    pub(super) last_ping_ns: u64,
    /// What an authenticated client may subscribe to; `None` when auth is off.
    pub(super) entitlements: Option<Arc<Entitlements>>,
    pub(super) bucket: TokenBucket,
    /// Input budget in bytes; in debt, the input is not read until `throttled_until`.
    pub(super) input_budget: TokenBucket,
    /// When a throttled connection's input may be read again (0: not throttled).
    pub(super) throttled_until: u64,
    /// Messages dropped by the rate limit since the last error reply said so.
    pub(super) rate_dropped: u64,
    /// The close code sent or received, for the log.
    pub(super) close_code: Option<CloseCode>,
    // Counters, published to `stats` now and then (stores, not read-modify-writes).
    pub(super) records_out: u64,
    pub(super) bytes_out: u64,
    pub(super) conflated_updates: u64,
    pub(super) conflation_entries: u64,
    /// `out.frames` already added to the core's `frames_out`.
    pub(super) frames_reported: u64,
    /// `out.queued()` already added to the core's `buffered_bytes`.
    pub(super) buffered_reported: usize,
    pub(super) stats: Arc<ConnStats>,
}

impl Conn {
    /// Whether ticks may still be added.
    pub(super) fn live(&self) -> bool {
        !self.closing && !self.dead
    }
}

/// How far into the ring a [`Core::pump`] may read: the head at [`Core::mark_ring`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingMark(u64);

/// What a closed connection did, for the log line the shell writes.
#[derive(Debug, Clone)]
pub struct Closed {
    /// Server-wide connection id.
    pub id: u64,
    /// Remote address.
    pub peer: SocketAddr,
    /// Close code sent or received (`None`: the socket just ended).
    pub code: Option<CloseCode>,
    /// Time open, ns.
    pub duration_ns: u64,
    /// Records sent.
    pub records: u64,
}

/// Counters a core accumulates locally and adds to its [`CoreStats`] once per batch.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Counters {
    pub(super) ticks_in: u64,
    pub(super) records_out: u64,
    pub(super) bytes_out: u64,
    pub(super) writes: u64,
    pub(super) laps: u64,
    pub(super) lap_skipped: u64,
    pub(super) conflated_updates: u64,
    pub(super) conflation_entries: u64,
    pub(super) evictions: u64,
    pub(super) protocol_errors: u64,
    pub(super) connections_total: u64,
}

/// One writer core's connections and what they want.
#[derive(Debug)]
pub struct Core {
    pub(super) id: usize,
    pub(super) settings: Settings,
    pub(super) symbols: Arc<SymbolTable>,
    pub(super) lvc: Arc<LastValueCache>,
    pub(super) ring: Arc<Ring>,
    pub(super) stats: Arc<Stats>,
    pub(super) reader: Reader,
    pub(super) conns: Slab<Conn>,
    pub(super) subs: Subscriptions,
    /// Symbol names by id, copied from the table as ids appear.
    pub(super) names: Vec<Symbol>,
    /// Scratch for one JSON record.
    pub(super) json: Vec<u8>,
    /// Scratch for a binary book message's records (reused).
    book_records: Vec<u8>,
    /// Connections subscribed to every symbol, those to come included.
    wildcards: usize,
    /// Highest sequence this core has read from the ring, per symbol id: what a resume
    /// must replay up to.
    pub(super) seen_seq: Vec<u64>,
    /// The same for book changes.
    pub(super) seen_book_seq: Vec<u64>,
    /// `(ts_recv, ts_event, listed)` of the ticks queued to at least one connection
    /// and not yet written everywhere: `listed` is [`Core::ready_listed`] after the
    /// tick was queued, so the tick is out once the shell has taken that many
    /// connections off the ready list (at most [`MAX_UNWRITTEN_TICKS`]).
    pub(super) batch_ts: VecDeque<(u64, u64, u64)>,
    /// Connections ever put on the ready list (taken off: this minus its length).
    pub(super) ready_listed: u64,
    /// Ingest-to-write latency since the last publication to `Stats::latency`.
    pub(super) latency: hdrhistogram::Histogram<u64>,
    pub(super) last_publish_ns: u64,
    /// Connections with bytes to write, not blocked, oldest first: a saturated core
    /// that writes a bounded number per turn reaches each in the order it got bytes.
    pub(super) ready: VecDeque<ConnId>,
    /// Connections whose [`IoState`] changed, for the shell to look at.
    pub(super) wakes: Vec<ConnId>,
    /// Subscriptions holding merged updates (may hold stale keys; `Sub::pending` is
    /// the truth).
    pub(super) pending: Vec<SubKey>,
    /// Earliest `max_rate` release among `pending` (`u64::MAX`: none).
    pub(super) next_release_ns: u64,
    /// When the liveness scan is due (`u64::MAX`: no connection).
    pub(super) next_scan_ns: u64,
    /// The deadline last handed out by [`Core::next_deadline`].
    pub(super) armed_ns: u64,
    /// A deadline earlier than `armed_ns` appeared.
    pub(super) rearm: bool,
    /// The ring's resynchronisation count already handled.
    pub(super) resync_seen: u64,
    /// Resumes waiting for this node to reach the client's resume point
    /// ([`super::resume`]).
    pub(super) waiting: Vec<super::resume::Waiting>,
    /// Earliest end of their waits (`u64::MAX`: none).
    pub(super) next_resume_ns: u64,
    /// Outbox buffers handed back by drained connections, for reuse.
    pub(super) spare: Vec<Vec<u8>>,
    pub(super) counters: Counters,
    /// Connections ended since the shell last asked ([`Core::take_closed`]).
    pub(super) closed: Vec<Closed>,
}

impl Core {
    /// Core `id` of a server: reads `ring` from its head.
    pub fn new(
        id: usize,
        settings: Settings,
        symbols: Arc<SymbolTable>,
        lvc: Arc<LastValueCache>,
        ring: Arc<Ring>,
        stats: Arc<Stats>,
    ) -> Core {
        Core {
            id,
            settings,
            reader: ring.reader(),
            resync_seen: ring.resync_generation(),
            symbols,
            lvc,
            ring,
            stats,
            conns: Slab::new(),
            subs: Subscriptions::new(),
            names: Vec::new(),
            json: Vec::with_capacity(512),
            book_records: Vec::new(),
            wildcards: 0,
            seen_seq: Vec::new(),
            seen_book_seq: Vec::new(),
            batch_ts: VecDeque::new(),
            ready_listed: 0,
            latency: crate::stats::new_latency_histogram(),
            last_publish_ns: 0,
            ready: VecDeque::new(),
            wakes: Vec::new(),
            pending: Vec::new(),
            next_release_ns: u64::MAX,
            next_scan_ns: u64::MAX,
            armed_ns: u64::MAX,
            rearm: false,
            waiting: Vec::new(),
            next_resume_ns: u64::MAX,
            spare: Vec::new(),
            counters: Counters::default(),
            closed: Vec::new(),
        }
    }

    /// This core's number.
    pub fn id(&self) -> usize {
        self.id
    }

    /// Open connections (closing ones included).
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// The ring head at which this core, about to park, must be woken: at the next
    /// slot (0) while it has a subscription, a wildcard one or a resume waiting; else
    /// half a ring past its position. With nothing to deliver it reads the ring only to
    /// keep its per-symbol sequence numbers (what a resume replays up to), which it can
    /// do in one go, long before the ring laps it, instead of being woken for every
    /// batch.
    pub fn wake_at(&self) -> u64 {
        if self.subs.is_empty() && self.waiting.is_empty() && self.wildcards == 0 {
            self.reader.position() + (self.ring.capacity() / 2).max(1)
        } else {
            0
        }
    }

    /// Whether the ring holds slots this core has not read, up to `wake_at`
    /// ([`Core::wake_at`]): whether a core about to park has work now.
    pub fn ring_due(&self, wake_at: u64) -> bool {
        let head = self.reader.mark();
        head > self.reader.position() && head >= wake_at
    }

    pub(super) fn core_stats(&self) -> &CoreStats {
        &self.stats.cores[self.id]
    }

    pub(super) fn name(&mut self, id: u32) -> Symbol {
        if id as usize >= self.names.len() {
            let from = self.names.len();
            self.symbols.names_since(from, &mut self.names);
        }
        self.names
            .get(id as usize)
            .copied()
            .unwrap_or_else(|| Symbol::new("?").expect("valid"))
    }

    // ---- connections -------------------------------------------------------------

    /// Registers a new connection (after its WebSocket handshake). `input` holds bytes
    /// the client sent right behind its handshake, if any.
    pub fn open(
        &mut self,
        peer: SocketAddr,
        mode: Mode,
        entitlements: Option<Arc<Entitlements>>,
        now: u64,
    ) -> ConnId {
        let id = self.stats.next_conn_id.fetch_add(1, Relaxed);
        let stats = Arc::new(ConnStats::new(id, peer, self.id));
        self.stats
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, stats.clone());
        self.core_stats().connections.fetch_add(1, Relaxed);
        self.counters.connections_total += 1;
        let key = self.conns.insert(Conn {
            mode,
            out: Outbox::new(),
            frames: FrameReader::new(),
            format: Format::Binary,
            subs: Vec::new(),
            wildcard: None,
            ready: false,
            blocked: false,
            conflating: false,
            closing: false,
            dead: false,
            paused: false,
            backlog: Vec::new(),
            pong: None,
            opened_ns: now,
            last_progress_ns: now,
            last_seen_ns: now,
            last_ping_ns: 0,
            entitlements,
            bucket: TokenBucket::full(self.settings.control_burst, now),
            input_budget: TokenBucket::full_of(self.settings.input_burst(), now),
            throttled_until: 0,
            rate_dropped: 0,
            close_code: None,
            records_out: 0,
            bytes_out: 0,
            conflated_updates: 0,
            conflation_entries: 0,
            frames_reported: 0,
            buffered_reported: 0,
            stats,
        });
        self.arm_scan(
            now + self
                .settings
                .ping_interval_ns
                .min(self.settings.idle_timeout_ns),
        );
        self.publish_counters();
        key
    }

    /// The connection's server-wide id (as in `/stats`), if it is open.
    pub fn conn_id(&self, key: ConnId) -> Option<u64> {
        self.conns.get(key).map(|c| c.stats.id)
    }

    /// What the shell should do with `key` now; `None` once it is removed.
    pub fn io_state(&self, key: ConnId) -> Option<IoState> {
        let c = self.conns.get(key)?;
        Some(IoState {
            read: !c.paused
                && c.throttled_until == 0
                && !c.closing
                && !c.dead
                && !c.frames.is_closed(),
            backlog: !c.backlog.is_empty() && !c.paused && !c.closing,
            blocked: c.blocked,
            closing: c.closing,
            drained: c.out.pending().is_empty() && !c.out.has_open(),
            dead: c.dead,
        })
    }

    /// Connections whose [`IoState`] changed since the last call.
    pub fn take_wakes(&mut self, into: &mut Vec<ConnId>) {
        into.append(&mut self.wakes);
    }

    /// Connections that ended since the last call (for the log).
    pub fn take_closed(&mut self) -> Vec<Closed> {
        std::mem::take(&mut self.closed)
    }

    pub(super) fn wake(&mut self, key: ConnId) {
        self.wakes.push(key);
    }

    /// Bytes read from `key`'s socket. They are unmasked in place; a partial frame is
    /// kept. If the connection's control output passes its bound while the messages
    /// are answered, the rest is kept as its backlog and its input is not read until
    /// the output drains (TCP pushes back on the client meanwhile).
    pub fn on_input(&mut self, key: ConnId, input: &mut [u8], now: u64) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.closing || conn.dead || conn.frames.is_closed() {
            return; // a closing connection's input is read and dropped by the shell
        }
        conn.last_seen_ns = now;
        let rate = self.settings.max_input_bytes_per_sec as f64;
        let burst = self.settings.input_burst();
        if let Some(wait) = conn
            .input_budget
            .spend(input.len() as f64, rate, burst, now)
        {
            // Sending faster than its budget: what was read is processed, but nothing
            // more is read until the budget is out of debt.
            if conn.throttled_until == 0 {
                self.core_stats().input_throttled.fetch_add(1, Relaxed);
            }
            let conn = &mut self.conns[key];
            conn.throttled_until = now + wait;
            self.arm_scan(now + wait);
            self.wake(key);
        }
        let conn = &mut self.conns[key];
        if conn.paused || !conn.backlog.is_empty() {
            conn.backlog.extend_from_slice(input);
            return;
        }
        self.feed(key, input, now);
        self.publish_counters();
    }

    /// Processes input kept while the connection was paused, once it is not.
    pub fn resume_input(&mut self, key: ConnId, now: u64) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.paused || conn.closing || conn.backlog.is_empty() {
            return;
        }
        let mut backlog = std::mem::take(&mut conn.backlog);
        self.feed(key, &mut backlog, now);
        self.publish_counters();
    }

    fn feed(&mut self, key: ConnId, input: &mut [u8], now: u64) {
        let limit = self.settings.max_message_bytes;
        let mut frames = std::mem::take(&mut self.conns[key].frames);
        let result = frames.feed(input, limit, |m| self.on_message(key, m, now));
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.frames = frames;
        self.send_pong(key, now);
        match result {
            Ok(used) if used < input.len() && !self.conns[key].frames.is_closed() => {
                // Paused: keep the rest for later.
                let conn = &mut self.conns[key];
                conn.backlog.clear();
                conn.backlog.extend_from_slice(&input[used..]);
            }
            Ok(_) => {
                let conn = &mut self.conns[key];
                if conn.backlog.capacity() > 0 && conn.backlog.is_empty() {
                    conn.backlog = Vec::new();
                }
                // Pause now if the replies took it over the bound.
                self.input_flow(key);
            }
            Err(e) => {
                self.counters.protocol_errors += 1;
                let reason = e.to_string();
                tracing::debug!(core = self.id, conn = self.conns[key].stats.id, error = %e, "failing a connection");
                self.close(key, e.close_code(), &reason, false, now);
            }
        }
    }

    /// One message or control frame from `key`. A ping read before a message is
    /// answered before it (RFC 6455 §5.5.2: as soon as practical; Autobahn's case 5.6
    /// wants the pong first); pings in a row, with no message between, get one pong.
    fn on_message(&mut self, key: ConnId, m: Message<'_>, now: u64) -> Flow {
        let Some(conn) = self.conns.get_mut(key) else {
            return Flow::Pause;
        };
        if !conn.live() {
            return Flow::Pause;
        }
        match m {
            Message::Ping(p) => {
                // Only the latest ping needs an answer (RFC 6455 §5.5.3).
                conn.pong = Some(p.into());
            }
            Message::Pong(_) => {}
            Message::Close(code, reason) => {
                tracing::debug!(
                    core = self.id,
                    conn = conn.stats.id,
                    ?code,
                    reason,
                    "peer closed"
                );
                // Echo the peer's code (1000 when it gave none), with no reason.
                let reply = code.map_or(CloseCode::Normal, CloseCode::from_u16);
                self.close(key, reply, "", false, now);
                return Flow::Pause;
            }
            Message::Text(t) => {
                let mode = conn.mode;
                self.send_pong(key, now);
                match mode {
                    Mode::Subscriber => self.on_text(key, t, now),
                    Mode::Echo => self.echo(key, OP_TEXT, t, now),
                }
            }
            Message::Binary(b) => {
                let mode = conn.mode;
                self.send_pong(key, now);
                match mode {
                    Mode::Subscriber => self.on_binary(key, now),
                    Mode::Echo => self.echo(key, wire::OP_BINARY, b, now),
                }
            }
        }
        self.input_flow(key)
    }

    /// Whether `key` may go on reading: pauses it when its control output is over the
    /// bound.
    pub(super) fn input_flow(&mut self, key: ConnId) -> Flow {
        let limit = self.settings.max_pending_control_bytes;
        let Some(conn) = self.conns.get_mut(key) else {
            return Flow::Pause;
        };
        if !conn.live() {
            return Flow::Pause;
        }
        if conn.out.control_queued() > limit {
            if !conn.paused {
                conn.paused = true;
                self.wake(key);
            }
            return Flow::Pause;
        }
        Flow::Continue
    }

    /// Answers the latest ping, unless the connection's input is paused (then the
    /// pong waits for the control output to drain, so it cannot pass the bound).
    fn send_pong(&mut self, key: ConnId, now: u64) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.paused || !conn.live() {
            return;
        }
        if let Some(pong) = conn.pong.take() {
            conn.out.push_frame(OP_PONG, &pong, now);
            self.mark_ready(key);
        }
    }

    fn echo(&mut self, key: ConnId, opcode: u8, payload: &[u8], now: u64) {
        let conn = &mut self.conns[key];
        conn.out.push_frame(opcode, payload, now);
        self.mark_ready(key);
    }

    /// The peer closed its side (read returned 0).
    pub fn on_eof(&mut self, key: ConnId) {
        self.on_io_error(key);
    }

    /// The socket failed: the connection is dropped without a goodbye.
    pub fn on_io_error(&mut self, key: ConnId) {
        if let Some(conn) = self.conns.get_mut(key) {
            if !conn.dead {
                conn.dead = true;
                self.wake(key);
            }
        }
    }

    /// Queues a close frame with `code` and `reason` (cut to fit a control frame) and
    /// stops all delivery to `key`. With `discard`, frames not yet started are dropped
    /// first so that the close frame is next on the wire.
    pub fn close(&mut self, key: ConnId, code: CloseCode, reason: &str, discard: bool, now: u64) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if !conn.live() {
            return;
        }
        if discard {
            conn.out.truncate_unsent();
        }
        conn.out
            .push_frame(OP_CLOSE, code.payload(reason).as_bytes(), now);
        conn.closing = true;
        conn.close_code = Some(code);
        conn.paused = false;
        conn.backlog = Vec::new();
        self.remove_all_subs(key);
        self.mark_ready(key);
        self.wake(key);
    }

    /// Closes every connection with 1001 (server shutting down), after a
    /// `{"type":"shutdown"}` message so that clients reconnect elsewhere at once.
    pub fn shutdown(&mut self, now: u64) {
        let keys: Vec<ConnId> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.push_control(
                key,
                br#"{"type":"shutdown","message":"server shutting down"}"#,
                now,
            );
            self.close(
                key,
                CloseCode::GoingAway,
                "server shutting down",
                false,
                now,
            );
        }
    }

    /// Forgets `key` (its session ended). Returns whether it was open.
    pub fn remove(&mut self, key: ConnId, now: u64) -> bool {
        if !self.conns.contains(key) {
            return false;
        }
        self.remove_all_subs(key);
        let conn = self.conns.remove(key);
        self.sync_conn_stats(&conn);
        self.core_stats()
            .buffered_bytes
            .fetch_sub(conn.buffered_reported as u64, Relaxed);
        self.core_stats().connections.fetch_sub(1, Relaxed);
        self.stats
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&conn.stats.id);
        self.closed.push(Closed {
            id: conn.stats.id,
            peer: conn.stats.peer,
            code: conn.close_code,
            duration_ns: now.saturating_sub(conn.opened_ns),
            records: conn.records_out,
        });
        self.publish_counters();
        true
    }

    /// Sets or clears `key`'s wildcard subscription, keeping the core's count of them.
    pub(super) fn set_wildcard(&mut self, key: ConnId, wildcard: Option<(f64, Channels)>) {
        let conn = &mut self.conns[key];
        match (conn.wildcard.is_some(), wildcard.is_some()) {
            (false, true) => self.wildcards += 1,
            (true, false) => self.wildcards -= 1,
            _ => {}
        }
        conn.wildcard = wildcard;
    }

    pub(super) fn remove_all_subs(&mut self, key: ConnId) {
        self.set_wildcard(key, None);
        let conn = &mut self.conns[key];
        let held = std::mem::take(&mut conn.subs);
        let n = held.len() as u64;
        let mut list = held;
        while let Some(&(sym, _)) = list.last() {
            self.subs.remove(&mut list, sym);
        }
        if n > 0 {
            self.core_stats().subscriptions.fetch_sub(n, Relaxed);
            self.conns[key].stats.subscriptions.store(0, Relaxed);
        }
    }

    // ---- output --------------------------------------------------------------------

    pub(super) fn mark_ready(&mut self, key: ConnId) {
        let conn = &mut self.conns[key];
        if !conn.ready && !conn.blocked && !conn.dead {
            conn.ready = true;
            self.ready.push_back(key);
            self.ready_listed += 1;
        }
    }

    /// Whether some connection may have bytes to write ([`Core::next_ready`] may still
    /// find none: a connection blocked or closed since it was listed).
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// The next connection with bytes to write, if any, in the order they got them.
    pub fn next_ready(&mut self) -> Option<ConnId> {
        while let Some(key) = self.ready.pop_front() {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.ready = false;
                if !conn.blocked && !conn.dead {
                    return Some(key);
                }
            }
        }
        None
    }

    /// Closes `key`'s open data message (stamping `ts_out = now`) and returns every
    /// complete frame not written yet.
    pub fn transmit(&mut self, key: ConnId, now: u64) -> &[u8] {
        match self.conns.get_mut(key) {
            Some(conn) => {
                conn.out.finish(now);
                conn.out.pending()
            }
            None => &[],
        }
    }

    /// `key`'s socket took `n` bytes of [`Core::transmit`].
    pub fn on_written(&mut self, key: ConnId, n: usize, now: u64) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.out.consume(n);
        conn.last_progress_ns = now;
        conn.bytes_out += n as u64;
        self.counters.bytes_out += n as u64;
        self.counters.writes += 1;
        self.after_write(key, now);
    }

    /// `key`'s socket took everything, including what a layer below (TLS) buffered.
    pub fn on_flushed(&mut self, key: ConnId, now: u64) {
        if let Some(conn) = self.conns.get_mut(key) {
            conn.last_progress_ns = now;
            self.after_write(key, now);
        }
    }

    /// `key`'s socket is full: the shell waits for it to drain, then calls
    /// [`Core::on_writable`] and writes.
    pub fn on_blocked(&mut self, key: ConnId, now: u64) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if !conn.blocked {
            conn.blocked = true;
            let stall_at = conn.last_progress_ns + self.settings.stall_timeout_ns;
            self.arm_scan(stall_at.max(now));
            self.wake(key);
        }
    }

    /// `key`'s socket can take more.
    pub fn on_writable(&mut self, key: ConnId) {
        if let Some(conn) = self.conns.get_mut(key) {
            conn.blocked = false;
        }
    }

    /// After bytes went out: hand back a drained buffer, leave conflation below low
    /// water, read again once control output is under its bound, update gauges.
    fn after_write(&mut self, key: ConnId, now: u64) {
        let low = self.settings.low_water_bytes;
        let limit = self.settings.max_pending_control_bytes;
        let conn = &mut self.conns[key];
        if let Some(buf) = conn.out.take_spare() {
            if self.spare.len() < MAX_SPARE_BUFFERS && buf.capacity() <= MAX_SPARE_CAPACITY {
                self.spare.push(buf);
            }
        }
        if conn.paused && conn.out.control_queued() <= limit {
            conn.paused = false;
            self.wakes.push(key);
            self.send_pong(key, now);
        }
        let conn = &mut self.conns[key];
        let leave = conn.conflating && conn.live() && conn.out.queued() <= low;
        self.sync_gauges(key);
        if leave {
            self.leave_conflation(key, now);
        }
    }

    /// Keeps the core's buffered-bytes gauge equal to the sum over its connections,
    /// and the connection's counters visible in `/stats`.
    fn sync_gauges(&mut self, key: ConnId) {
        let core = &self.stats.cores[self.id];
        let conn = &mut self.conns[key];
        let after = conn.out.queued();
        if after >= conn.buffered_reported {
            core.buffered_bytes
                .fetch_add((after - conn.buffered_reported) as u64, Relaxed);
        } else {
            core.buffered_bytes
                .fetch_sub((conn.buffered_reported - after) as u64, Relaxed);
        }
        conn.buffered_reported = after;
        conn.stats.set_buffered(after);
        let frames = conn.out.frames;
        core.frames_out
            .fetch_add(frames - conn.frames_reported, Relaxed);
        conn.frames_reported = frames;
        let conn = &self.conns[key];
        self.sync_conn_stats(conn);
    }

    pub(super) fn sync_conn_stats(&self, conn: &Conn) {
        let s = &conn.stats;
        s.records_out.store(conn.records_out, Relaxed);
        s.bytes_out.store(conn.bytes_out, Relaxed);
        s.conflated_updates.store(conn.conflated_updates, Relaxed);
        s.conflation_entries.store(conn.conflation_entries, Relaxed);
        s.conflating.store(u64::from(conn.conflating), Relaxed);
    }

    /// Pushes a control reply (JSON text) to `key`.
    pub(super) fn push_control(&mut self, key: ConnId, json: &[u8], now: u64) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if !conn.live() {
            return;
        }
        conn.out.push_frame(OP_TEXT, json, now);
        self.mark_ready(key);
    }

    /// Appends one record to `key`'s outbox, giving it a recycled buffer if it has
    /// none, and conflates from now on if that took it over its budget.
    pub(super) fn push_record(&mut self, key: ConnId, record: &[u8], now: u64) {
        let conn = &mut self.conns[key];
        equip(&mut conn.out, &mut self.spare);
        conn.out.push_record(conn.format, record, now);
        conn.records_out += 1;
        self.counters.records_out += 1;
        if self.over_budget(key, now) {
            self.enter_conflation(key, now);
        }
        self.mark_ready(key);
    }

    /// Encodes `t` for one connection and appends it (cold paths: snapshots, replays,
    /// merged records).
    pub(super) fn push_tick(&mut self, key: ConnId, t: &Tick, now: u64) {
        match self.conns[key].format {
            Format::Binary => {
                let mut bin = [0u8; RECORD_SIZE];
                wire::encode_record(t, &mut bin);
                self.push_record(key, &bin, now);
            }
            Format::Json => {
                let name = self.name(t.symbol_id);
                let mut json = std::mem::take(&mut self.json);
                json.clear();
                wire::write_json_tick(t, name.as_str(), &mut json);
                self.push_record(key, &json, now);
                self.json = json;
            }
        }
    }

    /// Appends one book message to `key`: in binary, one record per level, kept in
    /// one WebSocket message; in JSON, one object.
    pub(super) fn push_book(&mut self, key: ConnId, m: &wire::BookMessage<'_>, now: u64) {
        match self.conns[key].format {
            Format::Binary => {
                self.conns[key]
                    .out
                    .make_room(Format::Binary, m.binary_len(), now);
                let mut records = std::mem::take(&mut self.book_records);
                records.clear();
                wire::encode_book_records(m, |r| records.extend_from_slice(r));
                for r in records.chunks_exact(RECORD_SIZE) {
                    self.push_record(key, r, now);
                }
                self.book_records = records;
            }
            Format::Json => {
                let name = self.name(m.symbol_id);
                let mut json = std::mem::take(&mut self.json);
                json.clear();
                wire::write_json_book(m, name.as_str(), &mut json);
                self.push_record(key, &json, now);
                self.json = json;
            }
        }
    }

    // ---- the data path -----------------------------------------------------------

    /// The ring slots published by now: the shell takes this mark, then reads its
    /// clock, then [`Core::pump`]s up to the mark, so that no tick queued at `now` was
    /// received after `now` (`ts_out >= ts_recv` on every frame).
    pub fn mark_ring(&self) -> RingMark {
        RingMark(self.reader.mark())
    }

    /// Reads up to `max` new ring slots before `upto` and queues them to their
    /// subscribers. Returns the slots read. The shell then writes ready connections
    /// and calls [`Core::record_latency`] after each turn of writes.
    pub fn pump(&mut self, upto: RingMark, max: usize, now: u64) -> usize {
        let resyncs = self.ring.resync_generation();
        if resyncs != self.resync_seen {
            self.recover_resync(resyncs, now);
        }
        let mut n = 0;
        while n < max {
            match self.reader.read_before(upto.0) {
                Read::Tick(t) => self.deliver(&t, now),
                Read::Empty => break,
                Read::Lapped => self.recover_lap(now),
            }
            n += 1;
        }
        if n > 0 {
            self.counters.ticks_in += n as u64;
            self.core_stats().ring_lag.store(self.reader.lag(), Relaxed);
            self.publish_counters();
            if !self.waiting.is_empty() {
                self.retry_resumes(now);
            }
        }
        n
    }

    /// Records ingest-to-write (and `ts_event`-to-write) latency, as of `written_ns`,
    /// for the ticks [`Core::pump`] queued whose every connection has since been taken
    /// off the ready list — written, or found blocked (a blocked socket's bytes go out
    /// when it drains) — the shell calls this after its writes.
    pub fn record_latency(&mut self, written_ns: u64) {
        let taken = self.ready_listed - self.ready.len() as u64;
        while let Some(&(ts, event, listed)) = self.batch_ts.front() {
            if listed > taken {
                break;
            }
            self.batch_ts.pop_front();
            self.record_one(written_ns, ts, event);
        }
        if self.last_publish_ns == 0 && !self.latency.is_empty() {
            self.last_publish_ns = written_ns;
        }
        if !self.latency.is_empty() && self.last_publish_ns + LATENCY_PUBLISH_NS < self.armed_ns {
            self.rearm = true;
        }
    }

    fn record_one(&mut self, written_ns: u64, ts: u64, event: u64) {
        self.latency
            .saturating_record(written_ns.saturating_sub(ts));
        self.stats.cores[self.id]
            .latency
            .record(written_ns, ts, event);
    }

    /// Queues one tick to every subscriber of its symbol on this core.
    fn deliver(&mut self, t: &Tick, now: u64) {
        let sym = t.symbol_id as usize;
        if sym >= self.seen_seq.len() {
            self.grow_symbols(sym + 1, now);
        }
        let kind = t.body.kind();
        let book = kind == Kind::Book;
        let seen = if book {
            &mut self.seen_book_seq[sym]
        } else {
            &mut self.seen_seq[sym]
        };
        *seen = (*seen).max(t.seq);
        if self.subs.of_symbol(t.symbol_id).is_empty() {
            return;
        }
        let merge_levels = self.settings.book_merge_levels;
        let high_water = self.settings.high_water_bytes;
        let max_age_ns = self.settings.max_queue_age_ns;
        let mut bin = [0u8; RECORD_SIZE];
        let mut bin_ready = false;
        let mut json_ready = false;
        let name = self.name(t.symbol_id);
        let mut queued = false;
        let routes = self.subs.of_symbol(t.symbol_id).len();
        for i in 0..routes {
            let sk = self.subs.of_symbol(t.symbol_id)[i];
            let Some(sub) = self.subs.get_mut(sk) else {
                continue;
            };
            if !sub.channels.carries(kind) {
                continue;
            }
            let last = if book {
                &mut sub.book_seq
            } else {
                &mut sub.last_seq
            };
            if t.seq <= *last {
                continue;
            }
            *last = t.seq;
            let key = sub.conn;
            let conn = &mut self.conns[key];
            if !conn.live() {
                continue;
            }
            if conn.conflating || !sub.rate.allows(now) {
                sub.conflator().absorb_bounded(t, merge_levels);
                conn.conflated_updates += 1;
                self.counters.conflated_updates += 1;
                if !sub.pending {
                    sub.pending = true;
                    self.pending.push(sk);
                    // Once per subscription and merge (not per update): the merging
                    // shows in `/stats` before the next write.
                    conn.stats
                        .conflated_updates
                        .store(conn.conflated_updates, Relaxed);
                    if !conn.conflating {
                        let due = sub.rate.next_due_ns();
                        self.arm_release(due);
                    }
                }
                continue;
            }
            if sub.pending {
                // Merged updates are still waiting (the rate was just raised): they go
                // first, merged with this tick, so sequence order holds.
                sub.conflator().absorb_bounded(t, merge_levels);
                self.release(sk, now);
                queued = true;
                continue;
            }
            sub.rate.sent(now);
            let record: &[u8] = match conn.format {
                Format::Binary => {
                    if !bin_ready {
                        wire::encode_record(t, &mut bin);
                        bin_ready = true;
                    }
                    &bin
                }
                Format::Json => {
                    if !json_ready {
                        self.json.clear();
                        wire::write_json_tick(t, name.as_str(), &mut self.json);
                        json_ready = true;
                    }
                    &self.json
                }
            };
            equip(&mut conn.out, &mut self.spare);
            conn.out.push_record(conn.format, record, now);
            conn.records_out += 1;
            self.counters.records_out += 1;
            queued = true;
            if !conn.ready && !conn.blocked {
                conn.ready = true;
                self.ready.push_back(key);
                self.ready_listed += 1;
            }
            if conn.out.queued() > high_water
                || (max_age_ns > 0 && conn.out.oldest_age_ns(now) > max_age_ns)
            {
                self.enter_conflation(key, now);
            }
        }
        if queued {
            if self.batch_ts.len() == MAX_UNWRITTEN_TICKS {
                // Recorded early, as written now: an under-estimate, never a loss.
                if let Some((ts, event, _)) = self.batch_ts.pop_front() {
                    self.record_one(now, ts, event);
                }
            }
            self.batch_ts
                .push_back((t.ts_recv, t.ts_event, self.ready_listed));
        }
    }

    /// New symbol ids appeared: make room, and subscribe wildcard connections.
    fn grow_symbols(&mut self, len: usize, now: u64) {
        let from = self.seen_seq.len();
        self.seen_seq.resize(len, 0);
        self.seen_book_seq.resize(len, 0);
        self.subs.grow(len);
        let wild: Vec<(ConnId, (f64, Channels))> = self
            .conns
            .iter()
            .filter(|(_, c)| c.live())
            .filter_map(|(k, c)| c.wildcard.map(|w| (k, w)))
            .collect();
        for (key, (rate, channels)) in wild {
            let ent = self.conns[key].entitlements.clone();
            let ids: Vec<u32> = (from as u32..len as u32)
                .filter(|&id| {
                    ent.as_ref()
                        .is_none_or(|e| e.allows(self.name(id).as_str()))
                })
                .collect();
            let added = self.add_subs(key, &ids, rate, Some(channels), now).0;
            if !added.is_empty() {
                let msg = self.symbols_message(&added);
                self.push_control(key, &msg, now);
            }
        }
    }

    /// The producer overwrote positions this core had not read: skip to the head and
    /// bring every subscriber up to date from the last-value cache (flagged snapshot).
    fn recover_lap(&mut self, now: u64) {
        let skipped = self.reader.resync();
        self.counters.laps += 1;
        self.counters.lap_skipped += skipped;
        tracing::warn!(
            core = self.id,
            skipped,
            "writer core lapped by the ring; resynchronising from the last-value cache"
        );
        self.snapshot_subscribers(now);
    }

    // ---- timers --------------------------------------------------------------------

    pub(super) fn arm_scan(&mut self, at: u64) {
        if at < self.next_scan_ns {
            self.next_scan_ns = at;
            if at < self.armed_ns {
                self.rearm = true;
            }
        }
    }

    pub(super) fn arm_resume(&mut self, at: u64) {
        if at < self.next_resume_ns {
            self.next_resume_ns = at;
            if at < self.armed_ns {
                self.rearm = true;
            }
        }
    }

    pub(super) fn arm_release(&mut self, at: u64) {
        if at < self.next_release_ns {
            self.next_release_ns = at;
            if at < self.armed_ns {
                self.rearm = true;
            }
        }
    }

    /// When [`Core::on_timer`] must run next (ns), if ever.
    pub fn next_deadline(&mut self) -> Option<u64> {
        let publish = if self.latency.is_empty() {
            u64::MAX
        } else {
            self.last_publish_ns + LATENCY_PUBLISH_NS
        };
        let d = self
            .next_scan_ns
            .min(self.next_release_ns)
            .min(self.next_resume_ns)
            .min(publish);
        self.armed_ns = d;
        self.rearm = false;
        (d != u64::MAX).then_some(d)
    }

    /// Whether a deadline earlier than the one last handed out appeared (the shell's
    /// timer must be re-armed).
    pub fn needs_rearm(&self) -> bool {
        self.rearm
    }

    /// Timer work due at `now`: publish the latency histogram, release `max_rate`
    /// updates that are due, ping, time out and evict connections.
    pub fn on_timer(&mut self, now: u64) {
        if !self.latency.is_empty() && now >= self.last_publish_ns + LATENCY_PUBLISH_NS {
            self.last_publish_ns = now;
            let mut shared = self.stats.latency[self.id]
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if shared.add(&self.latency).is_ok() {
                self.latency.reset();
            }
        }
        if now >= self.next_release_ns {
            self.release_due(now);
        }
        if now >= self.next_resume_ns {
            self.retry_resumes(now);
        }
        if now >= self.next_scan_ns {
            self.scan(now);
        }
        self.publish_counters();
    }

    /// Adds the local counters to the shared ones.
    pub(super) fn publish_counters(&mut self) {
        let c = std::mem::take(&mut self.counters);
        let s = &self.stats.cores[self.id];
        let add = |a: &std::sync::atomic::AtomicU64, v: u64| {
            if v > 0 {
                a.fetch_add(v, Relaxed);
            }
        };
        add(&s.ticks_in, c.ticks_in);
        add(&s.records_out, c.records_out);
        add(&s.bytes_out, c.bytes_out);
        add(&s.writes, c.writes);
        add(&s.laps, c.laps);
        add(&s.lap_skipped, c.lap_skipped);
        add(&s.conflated_updates, c.conflated_updates);
        add(&s.conflation_entries, c.conflation_entries);
        add(&s.evictions, c.evictions);
        add(&s.protocol_errors, c.protocol_errors);
        add(&s.connections_total, c.connections_total);
    }
}

/// Gives an outbox without a buffer a spare one, or a fresh one when none is spare.
fn equip(out: &mut Outbox, spare: &mut Vec<Vec<u8>>) {
    if out.has_no_buffer() {
        out.give_buffer(
            spare
                .pop()
                .unwrap_or_else(|| Vec::with_capacity(FRESH_BUFFER_BYTES)),
        );
    }
}
