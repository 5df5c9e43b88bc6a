//! Writer cores: the threads that own connections and push ticks to them.
//!
//! Each core is one thread, pinned to a CPU, running a current-thread tokio runtime
//! with its own `SO_REUSEPORT` listener, so the kernel spreads connections over cores
//! and a connection never changes thread. Per core:
//!
//! - the *dispatch loop* reads every new ring slot once, finds the core's subscribers
//!   of the tick's symbol, appends the once-encoded record to each one's [`Outbox`],
//!   and at the end of the batch flushes every dirty connection with one `write`;
//!   with nothing to read it parks ([`Parker`]) until the sequencer wakes it;
//! - per connection, a *read task* parses control messages with fastwebsockets (which
//!   also answers pings and close frames), and a *write task* that only runs when a
//!   socket was full, waiting for it to drain;
//! - a *timer* that releases rate-limited updates, checks queue ages and evicts
//!   connections that stopped reading.
//!
//! fastwebsockets writes each frame in its own system call and cannot send one
//! pre-encoded frame to many sockets, so the write side is ours: server frames are
//! unmasked, the bytes are the same for every subscriber, and [`Outbox`] batches them.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Role, WebSocketError};
use serde_json::{json, Value};
use slab::Slab;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

use crate::config::Config;
use crate::conflate::{Conflator, RateGate};
use crate::feed::now_ns;
use crate::lvc::LastValueCache;
use crate::outbox::{Format, Outbox};
use crate::park::Parker;
use crate::protocol::{self, ClientMessage, ProtocolError, Selection};
use crate::ring::{Read, Reader, Ring};
use crate::stats::{ConnStats, CoreStats, Stats};
use crate::symbol::{Symbol, SymbolTable};
use crate::tick::{Flags, Tick};
use crate::transport::Transport;
use crate::wire::{self, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, RECORD_SIZE};

/// Ring slots read before the dispatch loop flushes and yields to other tasks.
const MAX_SLOTS_PER_BATCH: usize = 4096;
/// Close code for a connection evicted as a slow consumer (private-use range).
pub const CLOSE_SLOW_CONSUMER: u16 = 4008;
/// Close code for a server shutdown ("going away").
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code for a peer that stopped answering pings.
pub const CLOSE_HEARTBEAT_TIMEOUT: u16 = 4010;
/// Close code for a control message over the size limit.
pub const CLOSE_TOO_BIG: u16 = 1009;
/// How long a closing connection may take to flush and say goodbye.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// What every core shares.
#[derive(Debug)]
pub struct Shared {
    /// Settings.
    pub config: Config,
    /// Symbol names and ids.
    pub symbols: Arc<SymbolTable>,
    /// Latest values.
    pub lvc: Arc<LastValueCache>,
    /// The broadcast ring.
    pub ring: Arc<Ring>,
    /// Counters.
    pub stats: Arc<Stats>,
    /// The `/publish` endpoint's sender into the sequencer.
    pub publish: crate::publish::Inlet,
    /// Connection limits.
    pub admission: Arc<crate::admission::Admission>,
    /// TLS acceptor when `[tls]` is configured.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
}

/// One subscription: a connection's interest in one symbol.
#[derive(Debug)]
struct Sub {
    conn: usize,
    /// Highest sequence delivered or absorbed; anything at or below it is skipped,
    /// which makes snapshots and live ticks meet without gap or duplicate.
    last_seq: u64,
    /// `max_rate` spacing of deliveries.
    rate: RateGate,
    /// Whether `conflator` holds something (and the sub is in `Core::pending`).
    pending: bool,
    conflator: Conflator,
}

#[derive(Debug)]
struct Conn {
    sock: Rc<Transport>,
    out: Outbox,
    format: Format,
    /// symbol id → sub key.
    subs: HashMap<u32, usize>,
    /// Subscribed to `*`: new symbols are added as they appear.
    wildcard: bool,
    /// `max_rate` for symbols added by the wildcard.
    wildcard_rate: f64,
    dirty: bool,
    /// The socket was full; the write task owns the draining.
    blocked: bool,
    /// Over its budget: ticks are absorbed, not queued.
    conflating: bool,
    /// A close frame is queued; nothing else is added.
    closing: bool,
    /// The socket failed; the connection is being torn down.
    dead: bool,
    last_progress_ns: u64,
    /// Last time anything arrived from the peer (a frame of any kind).
    last_seen_ns: u64,
    /// Last ping sent.
    last_ping_ns: u64,
    /// What an authenticated client may subscribe to; `None` when auth is off.
    entitlements: Option<Arc<crate::auth::Entitlements>>,
    /// Control-message budget (token bucket): tokens left, and when last refilled.
    tokens: f64,
    tokens_at_ns: u64,
    /// `out.frames` already added to the core's `frames_out`.
    frames_reported: u64,
    /// `out.queued()` already added to the core's `buffered_bytes`.
    buffered_reported: usize,
    write_wake: Rc<Notify>,
    close_wake: Rc<Notify>,
    stats: Arc<ConnStats>,
}

/// One writer core's state, owned by its thread.
struct Core {
    id: usize,
    shared: Arc<Shared>,
    reader: Reader,
    conns: Slab<Conn>,
    subs: Slab<Sub>,
    /// symbol id → sub keys.
    by_symbol: Vec<Vec<usize>>,
    /// Subs holding merged updates, for the timer (may hold stale keys; the
    /// `pending` flag is the truth).
    pending: Vec<usize>,
    dirty: Vec<usize>,
    names: Vec<Symbol>,
    json: Vec<u8>,
    /// Highest sequence this core has read from the ring, per symbol id: what a
    /// resume must replay up to.
    seen_seq: Vec<u64>,
    /// `(ts_recv, ts_event)` of the ticks queued to at least one connection in this
    /// batch.
    batch_ts: Vec<(u64, u64)>,
    /// Ingest-to-write latency since the last publication to `Stats::latency`.
    latency: hdrhistogram::Histogram<u64>,
    last_publish_ns: u64,
    /// Last scan of every connection for stalls and heartbeats.
    last_scan_ns: u64,
    /// The ring's resynchronisation count already handled (see `recover_resync`).
    resync_seen: u64,
}

impl Core {
    fn stats(&self) -> &CoreStats {
        &self.shared.stats.cores[self.id]
    }

    fn name(&mut self, id: u32) -> Symbol {
        if id as usize >= self.names.len() {
            let from = self.names.len();
            self.shared.symbols.names_since(from, &mut self.names);
        }
        self.names
            .get(id as usize)
            .copied()
            .unwrap_or_else(|| Symbol::new("?").expect("valid"))
    }

    /// Reads up to `max` ring slots, delivers them, and flushes. Returns the slots read.
    fn pump(&mut self, max: usize) -> usize {
        let now = now_ns();
        let resyncs = self.shared.ring.resync_generation();
        if resyncs != self.resync_seen {
            self.recover_resync(resyncs, now);
        }
        let mut n = 0;
        while n < max {
            match self.reader.read() {
                Read::Tick(t) => self.deliver(&t, now),
                Read::Empty => break,
                Read::Lapped => self.recover_lap(now),
            }
            n += 1;
        }
        if n > 0 {
            self.stats().ticks_in.fetch_add(n as u64, Relaxed);
            self.stats().ring_lag.store(self.reader.lag(), Relaxed);
            self.flush_dirty();
            let written = now_ns();
            let latency = &self.shared.stats.cores[self.id].latency;
            for (ts, event) in self.batch_ts.drain(..) {
                self.latency.saturating_record(written.saturating_sub(ts));
                latency.record(written, ts, event);
            }
        }
        n
    }

    fn deliver(&mut self, t: &Tick, now: u64) {
        let sym = t.symbol_id as usize;
        if sym >= self.by_symbol.len() {
            self.grow_symbols(sym + 1, now);
        }
        self.seen_seq[sym] = self.seen_seq[sym].max(t.seq);
        if self.by_symbol[sym].is_empty() {
            return;
        }
        let high_water = self.shared.config.high_water_bytes;
        let max_age_ns = self.shared.config.max_queue_age_ms * 1_000_000;
        let mut bin = [0u8; RECORD_SIZE];
        let mut bin_ready = false;
        let mut json_ready = false;
        let name = self.name(t.symbol_id);
        let Core {
            by_symbol,
            subs,
            conns,
            pending,
            dirty,
            json,
            shared,
            id,
            ..
        } = self;
        let stats = &shared.stats.cores[*id];
        let mut queued = false;
        for &sk in &by_symbol[sym] {
            let sub = &mut subs[sk];
            if t.seq <= sub.last_seq {
                continue;
            }
            sub.last_seq = t.seq;
            let conn = &mut conns[sub.conn];
            if conn.closing || conn.dead {
                continue;
            }
            if conn.conflating || !sub.rate.allows(now) {
                sub.conflator.absorb(t);
                if !sub.pending {
                    sub.pending = true;
                    pending.push(sk);
                }
                stats.conflated_updates.fetch_add(1, Relaxed);
                conn.stats.conflated_updates.fetch_add(1, Relaxed);
                continue;
            }
            if sub.pending {
                // Merged updates are still waiting (the rate was just raised): they go
                // first, merged with this tick, so sequence order holds.
                sub.conflator.absorb(t);
                sub.pending = false;
                let mut merged: [Option<Tick>; 2] = [None, None];
                let mut i = 0;
                sub.conflator.drain(|m| {
                    merged[i] = Some(m);
                    i += 1;
                });
                for m in merged.into_iter().flatten() {
                    let mut rec = [0u8; RECORD_SIZE];
                    let mut text = Vec::new();
                    let bytes: &[u8] = match conn.format {
                        Format::Binary => {
                            wire::encode_record(&m, &mut rec);
                            &rec
                        }
                        Format::Json => {
                            wire::write_json_tick(&m, name.as_str(), &mut text);
                            &text
                        }
                    };
                    conn.out.push_record(conn.format, bytes, now);
                    stats.records_out.fetch_add(1, Relaxed);
                    conn.stats.records_out.fetch_add(1, Relaxed);
                }
                queued = true;
                sub.rate.sent(now);
                if !conn.dirty {
                    conn.dirty = true;
                    dirty.push(sub.conn);
                }
                continue;
            }
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
                        json.clear();
                        wire::write_json_tick(t, name.as_str(), json);
                        json_ready = true;
                    }
                    json
                }
            };
            conn.out.push_record(conn.format, record, now);
            queued = true;
            stats.records_out.fetch_add(1, Relaxed);
            conn.stats.records_out.fetch_add(1, Relaxed);
            sub.rate.sent(now);
            if !conn.dirty {
                conn.dirty = true;
                dirty.push(sub.conn);
            }
            if conn.out.queued() > high_water
                || (max_age_ns > 0 && conn.out.oldest_age_ns(now) > max_age_ns)
            {
                enter_conflation(conn, stats, now);
            }
        }
        if queued {
            self.batch_ts.push((t.ts_recv, t.ts_event));
        }
    }

    /// New symbol ids appeared: make room, and subscribe wildcard connections.
    fn grow_symbols(&mut self, len: usize, now: u64) {
        let from = self.by_symbol.len();
        self.by_symbol.resize_with(len, Vec::new);
        self.seen_seq.resize(len, 0);
        let wild: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.wildcard && !c.closing && !c.dead)
            .map(|(k, _)| k)
            .collect();
        for key in wild {
            let rate = self.conns[key].wildcard_rate;
            let ent = self.conns[key].entitlements.clone();
            let ids: Vec<u32> = (from as u32..len as u32)
                .filter(|&id| {
                    ent.as_ref()
                        .is_none_or(|e| e.allows(self.name(id).as_str()))
                })
                .collect();
            let added = self.add_subs(key, &ids, rate, now);
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
        self.stats().laps.fetch_add(1, Relaxed);
        self.stats().lap_skipped.fetch_add(skipped, Relaxed);
        tracing::warn!(
            core = self.id,
            skipped,
            "writer core lapped by the ring; resynchronising from the last-value cache"
        );
        self.snapshot_subscribers(now);
    }

    /// The ring's producer resynchronised the cache from outside the ring (an edge
    /// node took a fresh snapshot from its ingest: `bus::edge`): skip to the head and
    /// bring every subscriber up to date from the cache, flagged snapshot. After an
    /// ingest restart, whose sequence numbers start over, the old numbers are forgotten
    /// first, and so is what conflation held from before.
    fn recover_resync(&mut self, generation: u64, now: u64) {
        let restart = self.shared.ring.restart_generation() > self.resync_seen;
        self.resync_seen = generation;
        if restart {
            self.seen_seq.fill(0);
            for (_, sub) in self.subs.iter_mut() {
                sub.last_seq = 0;
                sub.pending = false;
                sub.conflator = Conflator::new();
            }
        }
        self.reader.resync();
        self.snapshot_subscribers(now);
        self.flush_dirty();
    }

    /// Sends every subscriber the cached values newer than what it has, flagged
    /// snapshot.
    fn snapshot_subscribers(&mut self, now: u64) {
        for sym in 0..self.by_symbol.len() {
            if self.by_symbol[sym].is_empty() {
                continue;
            }
            let latest = self.shared.lvc.latest(sym as u32);
            self.seen_seq[sym] = self.seen_seq[sym].max(latest.seq());
            for t in latest.in_seq_order() {
                let snap = Tick {
                    flags: t.flags.with(Flags::SNAPSHOT),
                    ..t
                };
                for i in 0..self.by_symbol[sym].len() {
                    let sk = self.by_symbol[sym][i];
                    self.deliver_one(sk, &snap, now);
                }
            }
        }
    }

    /// Delivers one tick to one sub (cold paths: snapshots, lap recovery).
    fn deliver_one(&mut self, sk: usize, t: &Tick, now: u64) {
        let sub = &mut self.subs[sk];
        if t.seq <= sub.last_seq {
            return;
        }
        sub.last_seq = t.seq;
        let conn_key = sub.conn;
        let conn = &mut self.conns[conn_key];
        if conn.closing || conn.dead {
            return;
        }
        if conn.conflating {
            sub.conflator.absorb(t);
            if !sub.pending {
                sub.pending = true;
                self.pending.push(sk);
            }
            return;
        }
        self.push_tick(conn_key, t, now);
    }

    /// Encodes `t` for one connection and appends it.
    fn push_tick(&mut self, key: usize, t: &Tick, now: u64) {
        let name = self.name(t.symbol_id);
        let conn = &mut self.conns[key];
        match conn.format {
            Format::Binary => {
                let mut bin = [0u8; RECORD_SIZE];
                wire::encode_record(t, &mut bin);
                conn.out.push_record(Format::Binary, &bin, now);
            }
            Format::Json => {
                self.json.clear();
                wire::write_json_tick(t, name.as_str(), &mut self.json);
                conn.out.push_record(Format::Json, &self.json, now);
            }
        }
        self.shared.stats.cores[self.id]
            .records_out
            .fetch_add(1, Relaxed);
        conn.stats.records_out.fetch_add(1, Relaxed);
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(key);
        }
    }

    fn push_control(&mut self, key: usize, json: &[u8], now: u64) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.closing || conn.dead {
            return;
        }
        conn.out.push_frame(OP_TEXT, json, now);
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(key);
        }
    }

    fn flush_dirty(&mut self) {
        let now = now_ns();
        // Flushing can dirty connections again (leaving conflation releases records),
        // so keep going until no key was added; both vectors keep their capacity.
        let mut batch = std::mem::take(&mut self.dirty);
        while !batch.is_empty() {
            for key in batch.drain(..) {
                self.flush(key, now);
            }
            std::mem::swap(&mut batch, &mut self.dirty);
        }
    }

    /// Closes the open message and writes what the socket takes, unless the write task
    /// owns the socket right now.
    fn flush(&mut self, key: usize, now: u64) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.dirty = false;
        conn.out.finish(now);
        if !conn.blocked && !conn.dead {
            self.write_some(key, now);
            self.maybe_leave_conflation(key, now);
        }
    }

    /// A conflating connection whose queue drained below low water gets its merged
    /// updates and streams again. Checked after every write, wherever it happened.
    fn maybe_leave_conflation(&mut self, key: usize, now: u64) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        if conn.conflating
            && !conn.closing
            && !conn.dead
            && conn.out.queued() <= self.shared.config.low_water_bytes
        {
            self.leave_conflation(key, now);
            if !self.conns[key].blocked {
                self.write_some(key, now);
            }
        }
    }

    /// Writes from the outbox until it is empty or the socket is full. Returns whether
    /// the outbox is empty.
    fn write_some(&mut self, key: usize, now: u64) -> bool {
        let stats = &self.shared.stats.cores[self.id];
        let conn = &mut self.conns[key];
        loop {
            let pending = conn.out.pending();
            if pending.is_empty() {
                match conn.sock.flush() {
                    Ok(()) => conn.last_progress_ns = now,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if !conn.blocked {
                            conn.blocked = true;
                            conn.write_wake.notify_one();
                        }
                        return false;
                    }
                    Err(_) => {
                        conn.dead = true;
                        conn.close_wake.notify_one();
                    }
                }
                break;
            }
            stats.writes.fetch_add(1, Relaxed);
            match conn.sock.try_write(pending) {
                Ok(0) => {
                    conn.dead = true;
                    conn.close_wake.notify_one();
                    break;
                }
                Ok(n) => {
                    conn.out.consume(n);
                    conn.last_progress_ns = now;
                    stats.bytes_out.fetch_add(n as u64, Relaxed);
                    conn.stats.bytes_out.fetch_add(n as u64, Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !conn.blocked {
                        conn.blocked = true;
                        conn.write_wake.notify_one();
                    }
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    conn.dead = true;
                    conn.close_wake.notify_one();
                    break;
                }
            }
        }
        let after = conn.out.queued();
        conn.stats.set_buffered(after);
        // The core's gauge moves by what this connection's queue moved since it last
        // reported, so it always equals the sum over connections.
        if after >= conn.buffered_reported {
            stats
                .buffered_bytes
                .fetch_add((after - conn.buffered_reported) as u64, Relaxed);
        } else {
            stats
                .buffered_bytes
                .fetch_sub((conn.buffered_reported - after) as u64, Relaxed);
        }
        conn.buffered_reported = after;
        let frames = conn.out.frames;
        stats
            .frames_out
            .fetch_add(frames - conn.frames_reported, Relaxed);
        conn.frames_reported = frames;
        conn.out.pending().is_empty()
    }

    /// Called by the write task when the socket may take more. Returns `Some(true)`
    /// when drained, `Some(false)` when still blocked, `None` when the connection is
    /// gone or dead.
    fn drain(&mut self, key: usize) -> Option<bool> {
        let now = now_ns();
        let conn = self.conns.get(key)?;
        if conn.dead {
            return None;
        }
        loop {
            let empty = self.write_some(key, now);
            let conn = &mut self.conns[key];
            if conn.dead {
                return None;
            }
            if conn.conflating && conn.out.queued() <= self.shared.config.low_water_bytes {
                self.leave_conflation(key, now);
                continue;
            }
            if empty {
                self.conns[key].blocked = false;
                return Some(true);
            }
            return Some(false);
        }
    }

    /// Sends the merged state of every pending sub of `key`, and streams again.
    fn leave_conflation(&mut self, key: usize, now: u64) {
        let conn = &mut self.conns[key];
        conn.conflating = false;
        conn.stats.conflating.store(0, Relaxed);
        let keys: Vec<usize> = conn.subs.values().copied().collect();
        let mut merged = 0u64;
        for sk in keys {
            merged += self.release(sk, now);
        }
        let msg =
            serde_json::to_vec(&json!({"type": "conflation", "state": "off", "merged": merged}))
                .unwrap_or_default();
        self.conns[key].out.push_frame(OP_TEXT, &msg, now);
        self.conns[key].out.finish(now);
    }

    /// Emits what a sub has merged; returns the number of updates it stood for.
    fn release(&mut self, sk: usize, now: u64) -> u64 {
        let sub = &mut self.subs[sk];
        if !sub.pending {
            return 0;
        }
        sub.pending = false;
        let merged = sub.conflator.pending_count();
        let mut out: [Option<Tick>; 2] = [None, None];
        let mut i = 0;
        sub.conflator.drain(|t| {
            out[i] = Some(t);
            i += 1;
        });
        sub.rate.sent(now);
        let conn = sub.conn;
        for t in out.into_iter().flatten() {
            self.push_tick(conn, &t, now);
        }
        merged
    }

    /// Timer work: release rate-limited subs that are due, and evict stalled
    /// connections.
    fn on_timer(&mut self) {
        let now = now_ns();
        if now.saturating_sub(self.last_publish_ns) >= 1_000_000_000 {
            self.last_publish_ns = now;
            let mut shared = self.shared.stats.latency[self.id]
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if shared.add(&self.latency).is_ok() {
                self.latency.reset();
            }
        }
        let mut pending = std::mem::take(&mut self.pending);
        pending.retain(|&sk| {
            let Some(sub) = self.subs.get(sk) else {
                return false;
            };
            if !sub.pending {
                return false;
            }
            let conn = &self.conns[sub.conn];
            if conn.conflating || conn.closing || conn.dead || !sub.rate.allows(now) {
                return true;
            }
            self.release(sk, now);
            false
        });
        pending.append(&mut self.pending);
        self.pending = pending;
        let drained: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.conflating && !c.blocked)
            .map(|(k, _)| k)
            .collect();
        for key in drained {
            self.maybe_leave_conflation(key, now);
        }
        if now.saturating_sub(self.last_scan_ns) >= 100_000_000 {
            self.last_scan_ns = now;
            self.scan_connections(now);
        }
        self.flush_dirty();
    }

    /// Every 100 ms: evicts connections whose queue made no progress for
    /// `stall_timeout_ms`, pings quiet ones, and closes those silent for
    /// `idle_timeout_ms` (a vanished peer never answers the ping).
    fn scan_connections(&mut self, now: u64) {
        let cfg = &self.shared.config;
        let stall_ns = cfg.stall_timeout_ms * 1_000_000;
        let ping_ns = cfg.ping_interval_ms * 1_000_000;
        let idle_ns = cfg.idle_timeout_ms * 1_000_000;
        let mut stalled = Vec::new();
        let mut silent = Vec::new();
        let mut ping = Vec::new();
        for (k, c) in self.conns.iter() {
            if c.closing || c.dead {
                continue;
            }
            if !c.out.pending().is_empty() && now.saturating_sub(c.last_progress_ns) > stall_ns {
                stalled.push(k);
            } else if now.saturating_sub(c.last_seen_ns) > idle_ns {
                silent.push(k);
            } else if now.saturating_sub(c.last_seen_ns) > ping_ns
                && now.saturating_sub(c.last_ping_ns) > ping_ns
            {
                ping.push(k);
            }
        }
        for key in stalled {
            self.stats().evictions.fetch_add(1, Relaxed);
            tracing::info!(
                core = self.id,
                conn = self.conns[key].stats.id,
                "evicting slow consumer"
            );
            self.close(key, CLOSE_SLOW_CONSUMER, "slow consumer", true, now);
        }
        for key in silent {
            self.shared.stats.heartbeat_timeouts.fetch_add(1, Relaxed);
            tracing::info!(
                core = self.id,
                conn = self.conns[key].stats.id,
                "closing silent connection"
            );
            self.close(key, CLOSE_HEARTBEAT_TIMEOUT, "heartbeat timeout", true, now);
            // Nobody will read the close frame: free the connection now.
            if let Some(c) = self.conns.get_mut(key) {
                c.dead = true;
                c.close_wake.notify_one();
            }
        }
        for key in ping {
            let conn = &mut self.conns[key];
            conn.last_ping_ns = now;
            conn.out.push_frame(OP_PING, &now.to_be_bytes(), now);
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(key);
            }
        }
    }

    /// Takes one control message from `key`'s budget; false when it is spent.
    fn take_token(&mut self, key: usize, now: u64) -> bool {
        let limits = &self.shared.config.limits;
        let conn = &mut self.conns[key];
        let elapsed = now.saturating_sub(conn.tokens_at_ns) as f64 / 1e9;
        conn.tokens = (conn.tokens + elapsed * f64::from(limits.control_messages_per_sec))
            .min(f64::from(limits.control_burst));
        conn.tokens_at_ns = now;
        if conn.tokens >= 1.0 {
            conn.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Subscribes `key` to `ids` it does not hold yet; retunes the rate of those it
    /// holds. Returns the newly added ids.
    fn add_subs(&mut self, key: usize, ids: &[u32], max_rate: f64, now: u64) -> Vec<u32> {
        let mut added = Vec::new();
        for &id in ids {
            if id as usize >= self.by_symbol.len() {
                self.by_symbol.resize_with(id as usize + 1, Vec::new);
                self.seen_seq.resize(id as usize + 1, 0);
            }
            if let Some(&sk) = self.conns[key].subs.get(&id) {
                self.subs[sk].rate.retune(max_rate, now);
                continue;
            }
            let sk = self.subs.insert(Sub {
                conn: key,
                last_seq: 0,
                rate: RateGate::new(max_rate),
                pending: false,
                conflator: Conflator::new(),
            });
            self.by_symbol[id as usize].push(sk);
            self.conns[key].subs.insert(id, sk);
            added.push(id);
        }
        let n = added.len() as u64;
        self.stats().subscriptions.fetch_add(n, Relaxed);
        self.conns[key].stats.subscriptions.fetch_add(n, Relaxed);
        added
    }

    fn remove_sub(&mut self, key: usize, id: u32) -> bool {
        let Some(sk) = self.conns[key].subs.remove(&id) else {
            return false;
        };
        let list = &mut self.by_symbol[id as usize];
        if let Some(pos) = list.iter().position(|&s| s == sk) {
            list.swap_remove(pos);
        }
        self.subs.remove(sk);
        self.stats().subscriptions.fetch_sub(1, Relaxed);
        self.conns[key].stats.subscriptions.fetch_sub(1, Relaxed);
        true
    }

    fn symbols_message(&mut self, ids: &[u32]) -> Vec<u8> {
        let list: Vec<Value> = ids
            .iter()
            .map(|&id| json!({"id": id, "name": self.name(id).as_str()}))
            .collect();
        serde_json::to_vec(&json!({"type": "symbols", "symbols": list})).unwrap_or_default()
    }

    /// Resolves a selection to ids, or the names that are unknown.
    /// Entitled ids only: a wildcard quietly covers what the client may see, an
    /// explicit name outside its entitlements is an error.
    fn resolve(&mut self, key: usize, sel: &Selection) -> Result<Vec<u32>, ProtocolError> {
        let ent = self.conns[key].entitlements.clone();
        match sel {
            Selection::All => {
                let all: Vec<u32> = (0..self.shared.symbols.len() as u32).collect();
                Ok(match ent {
                    None => all,
                    Some(e) => all
                        .into_iter()
                        .filter(|&id| e.allows(self.name(id).as_str()))
                        .collect(),
                })
            }
            Selection::Names(names) => {
                let mut ids = Vec::with_capacity(names.len());
                let mut unknown = Vec::new();
                let mut refused = Vec::new();
                for n in names {
                    match self.shared.symbols.id_of(n) {
                        Some(_) if ent.as_ref().is_some_and(|e| !e.allows(n)) => {
                            refused.push(n.clone())
                        }
                        Some(id) => ids.push(id),
                        None => unknown.push(n.clone()),
                    }
                }
                if !refused.is_empty() {
                    Err(ProtocolError::NotEntitled(refused))
                } else if !unknown.is_empty() {
                    Err(ProtocolError::UnknownSymbols(unknown))
                } else {
                    Ok(ids)
                }
            }
        }
    }

    /// Handles one text message from a client.
    fn on_text(&mut self, key: usize, text: &[u8]) {
        let now = now_ns();
        if !self.take_token(key, now) {
            self.shared.stats.control_rate_limited.fetch_add(1, Relaxed);
            let e = ProtocolError::RateLimited(self.shared.config.limits.control_messages_per_sec);
            let reply = protocol::error_message(&e, None);
            self.push_control(key, &reply, now);
            self.flush_dirty();
            return;
        }
        let (id, msg) = protocol::parse(text);
        let result = msg.and_then(|m| self.apply(key, m, id.as_ref(), now));
        if let Err(e) = result {
            self.stats().protocol_errors.fetch_add(1, Relaxed);
            let reply = protocol::error_message(&e, id.as_ref());
            self.push_control(key, &reply, now);
        }
        self.flush_dirty();
    }

    fn apply(
        &mut self,
        key: usize,
        msg: ClientMessage,
        id: Option<&Value>,
        now: u64,
    ) -> Result<(), ProtocolError> {
        match msg {
            ClientMessage::Subscribe {
                symbols,
                format,
                max_rate,
                resume,
            } => {
                let ids = self.resolve(key, &symbols)?;
                let max_subs = self.conns[key]
                    .entitlements
                    .as_ref()
                    .and_then(|e| e.max_subscriptions)
                    .map_or(
                        self.shared.config.limits.max_subscriptions_per_connection,
                        |m| m.min(self.shared.config.limits.max_subscriptions_per_connection),
                    );
                let held = &self.conns[key].subs;
                let new = ids.iter().filter(|id| !held.contains_key(id)).count();
                if held.len() + new > max_subs {
                    return Err(ProtocolError::TooManySymbols(max_subs));
                }
                let rate = max_rate.unwrap_or(0.0);
                let conn = &mut self.conns[key];
                if let Some(f) = format {
                    if f != conn.format {
                        conn.out.finish(now);
                        conn.format = f;
                    }
                }
                if symbols == Selection::All {
                    conn.wildcard = true;
                    conn.wildcard_rate = rate;
                }
                let format = conn.format;
                let added = self.add_subs(key, &ids, rate, now);
                let names: Vec<String> = ids.iter().map(|&i| self.name(i).to_string()).collect();
                let mut ack = json!({
                    "type": "subscribed",
                    "symbols": names,
                    "format": format.name(),
                });
                if let Some(r) = max_rate {
                    ack["max_rate"] = json!(r);
                }
                let ack = protocol::with_id(ack, id);
                self.push_control(key, &ack, now);
                if !added.is_empty() {
                    let map = self.symbols_message(&added);
                    self.push_control(key, &map, now);
                }
                let resume: HashMap<u32, u64> = resume
                    .iter()
                    .filter_map(|(name, seq)| Some((self.shared.symbols.id_of(name)?, *seq)))
                    .filter(|(id, _)| added.contains(id))
                    .collect();
                let replays = self.replay_from_ring(&resume);
                for sym in added {
                    let sk = self.conns[key].subs[&sym];
                    match (resume.get(&sym), replays.get(&sym)) {
                        (Some(&from), Some(Some(ticks))) => {
                            // Everything after `from` up to what this core has read is
                            // still in the ring: replay it; live ticks follow.
                            self.subs[sk].last_seq = from;
                            for t in ticks {
                                let replay = Tick {
                                    flags: t.flags.with(Flags::REPLAY),
                                    ..*t
                                };
                                self.deliver_one(sk, &replay, now);
                            }
                        }
                        _ => {
                            // No resume point, or the ring no longer holds the gap.
                            let latest = self.shared.lvc.latest(sym);
                            for t in latest.in_seq_order() {
                                let snap = Tick {
                                    flags: t.flags.with(Flags::SNAPSHOT),
                                    ..t
                                };
                                self.deliver_one(sk, &snap, now);
                            }
                        }
                    }
                }
                Ok(())
            }
            ClientMessage::Unsubscribe { symbols } => {
                let ids = match &symbols {
                    Selection::All => {
                        self.conns[key].wildcard = false;
                        self.conns[key].subs.keys().copied().collect()
                    }
                    Selection::Names(_) => self.resolve(key, &symbols)?,
                };
                let mut removed = Vec::new();
                for sym in ids {
                    if self.remove_sub(key, sym) {
                        removed.push(self.name(sym).to_string());
                    }
                }
                let ack =
                    protocol::with_id(json!({"type": "unsubscribed", "symbols": removed}), id);
                self.push_control(key, &ack, now);
                Ok(())
            }
        }
    }

    /// For each `(symbol, last seq the client saw)`, the ticks it missed up to what
    /// this core has read, from the ring: `Some(ticks)` (possibly empty) when the ring
    /// still holds every one of them, `None` when some were overwritten. One backward
    /// scan over the ring serves every symbol.
    fn replay_from_ring(&self, resume: &HashMap<u32, u64>) -> HashMap<u32, Option<Vec<Tick>>> {
        let mut out: HashMap<u32, Option<Vec<Tick>>> = HashMap::new();
        // Symbols with something to replay, and the seq the scan must reach down to.
        let mut open: HashMap<u32, (u64, u64)> = HashMap::new();
        for (&sym, &from) in resume {
            let seen = self.seen_seq.get(sym as usize).copied().unwrap_or(0);
            if from > self.shared.lvc.latest(sym).seq() {
                // A sequence this server never reached: the client's numbers come from
                // another run (a restart). Only a snapshot can bring it up to date.
                out.insert(sym, None);
            } else if seen <= from {
                out.insert(sym, Some(Vec::new()));
            } else {
                open.insert(sym, (from, seen));
                out.insert(sym, None);
            }
        }
        if open.is_empty() {
            return out;
        }
        let ring = &self.shared.ring;
        let end = self.reader.position();
        // Below the last resynchronisation the ring may miss ticks or hold another
        // run's numbers: never replay from there.
        let start = end.saturating_sub(ring.capacity()).max(ring.replay_floor());
        let mut found: HashMap<u32, Vec<Tick>> = HashMap::new();
        let mut pos = end;
        while pos > start && !open.is_empty() {
            pos -= 1;
            let Some(t) = ring.get(pos) else {
                break; // overwritten while scanning: the rest is gone too
            };
            if let Some(&(from, seen)) = open.get(&t.symbol_id) {
                if t.seq > from && t.seq <= seen {
                    found.entry(t.symbol_id).or_default().push(t);
                    if t.seq == from + 1 {
                        open.remove(&t.symbol_id);
                        let mut ticks = found.remove(&t.symbol_id).unwrap_or_default();
                        ticks.reverse();
                        out.insert(t.symbol_id, Some(ticks));
                    }
                }
            }
        }
        out
    }

    /// Queues a close frame and stops all delivery to `key`. With `discard`, frames
    /// not yet started are dropped first so that the close frame is next on the wire.
    fn close(&mut self, key: usize, code: u16, reason: &str, discard: bool, now: u64) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.closing || conn.dead {
            return;
        }
        if discard {
            conn.out.truncate_unsent();
        }
        if code == CLOSE_GOING_AWAY {
            // Tell clients first, so they reconnect elsewhere at once.
            conn.out.push_frame(
                OP_TEXT,
                br#"{"type":"shutdown","message":"server shutting down"}"#,
                now,
            );
        }
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_bytes());
        conn.out.push_frame(OP_CLOSE, &payload, now);
        conn.closing = true;
        conn.close_wake.notify_one();
        let ids: Vec<u32> = conn.subs.keys().copied().collect();
        for id in ids {
            self.remove_sub(key, id);
        }
        self.flush(key, now);
    }

    fn register(&mut self, sock: Rc<Transport>, peer: SocketAddr) -> usize {
        let id = self.shared.stats.next_conn_id.fetch_add(1, Relaxed);
        let stats = Arc::new(ConnStats::new(id, peer, self.id));
        self.shared
            .stats
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, stats.clone());
        self.stats().connections.fetch_add(1, Relaxed);
        self.stats().connections_total.fetch_add(1, Relaxed);
        self.conns.insert(Conn {
            sock,
            out: Outbox::new(),
            format: Format::Binary,
            subs: HashMap::new(),
            wildcard: false,
            wildcard_rate: 0.0,
            dirty: false,
            blocked: false,
            conflating: false,
            closing: false,
            dead: false,
            last_progress_ns: now_ns(),
            last_seen_ns: now_ns(),
            last_ping_ns: 0,
            entitlements: None,
            tokens: f64::from(self.shared.config.limits.control_burst),
            tokens_at_ns: now_ns(),
            frames_reported: 0,
            buffered_reported: 0,
            write_wake: Rc::new(Notify::new()),
            close_wake: Rc::new(Notify::new()),
            stats,
        })
    }

    fn unregister(&mut self, key: usize) {
        let ids: Vec<u32> = self.conns[key].subs.keys().copied().collect();
        for id in ids {
            self.remove_sub(key, id);
        }
        let conn = self.conns.remove(key);
        conn.write_wake.notify_one();
        self.stats()
            .buffered_bytes
            .fetch_sub(conn.buffered_reported as u64, Relaxed);
        self.stats().connections.fetch_sub(1, Relaxed);
        self.shared
            .stats
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&conn.stats.id);
    }
}

fn enter_conflation(conn: &mut Conn, stats: &CoreStats, now: u64) {
    if conn.conflating {
        return;
    }
    conn.conflating = true;
    stats.conflation_entries.fetch_add(1, Relaxed);
    conn.stats.conflation_entries.fetch_add(1, Relaxed);
    conn.stats.conflating.store(1, Relaxed);
    let msg = br#"{"type":"conflation","state":"on"}"#;
    conn.out.push_frame(OP_TEXT, msg, now);
}

/// Handle to a running core thread.
#[derive(Debug)]
pub struct CoreHandle {
    /// How the sequencer wakes it.
    pub parker: Arc<Parker>,
    /// The thread.
    pub thread: std::thread::JoinHandle<()>,
}

/// Starts writer core `id` on its own thread with `listener`.
pub fn spawn(
    id: usize,
    shared: Arc<Shared>,
    listener: std::net::TcpListener,
    cpu: Option<core_affinity::CoreId>,
    shutdown: watch::Receiver<bool>,
) -> io::Result<CoreHandle> {
    let parker = Arc::new(Parker::default());
    let p = parker.clone();
    let thread = std::thread::Builder::new()
        .name(format!("writer-{id}"))
        .spawn(move || {
            if let Some(cpu) = cpu {
                if !core_affinity::set_for_current(cpu) {
                    tracing::warn!(core = id, "could not pin writer core");
                }
            }
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(core = id, error = %e, "cannot build runtime");
                    return;
                }
            };
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, run(id, shared, listener, p, shutdown));
        })?;
    Ok(CoreHandle { parker, thread })
}

async fn run(
    id: usize,
    shared: Arc<Shared>,
    listener: std::net::TcpListener,
    parker: Arc<Parker>,
    mut shutdown: watch::Receiver<bool>,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(core = id, error = %e, "cannot register listener");
            return;
        }
    };
    let core = Rc::new(RefCell::new(Core {
        id,
        reader: shared.ring.reader(),
        shared: shared.clone(),
        conns: Slab::new(),
        subs: Slab::new(),
        by_symbol: Vec::new(),
        pending: Vec::new(),
        dirty: Vec::new(),
        names: Vec::new(),
        json: Vec::with_capacity(512),
        seen_seq: Vec::new(),
        batch_ts: Vec::with_capacity(MAX_SLOTS_PER_BATCH),
        latency: crate::stats::new_latency_histogram(),
        last_publish_ns: 0,
        last_scan_ns: 0,
        resync_seen: shared.ring.resync_generation(),
    }));
    let accept = tokio::task::spawn_local(accept_loop(listener, core.clone(), shared.clone()));
    let timer = tokio::task::spawn_local(timer_loop(core.clone()));
    loop {
        if *shutdown.borrow() {
            break;
        }
        let n = core.borrow_mut().pump(MAX_SLOTS_PER_BATCH);
        if n > 0 {
            tokio::task::yield_now().await;
            continue;
        }
        parker.prepare();
        if core.borrow().reader.has_pending() || *shutdown.borrow() {
            parker.cancel();
            continue;
        }
        tokio::select! {
            _ = parker.sleep() => {}
            _ = shutdown.changed() => {}
        }
    }
    accept.abort();
    timer.abort();
    // Say goodbye to every client, then give them a moment to read it.
    let now = now_ns();
    let keys: Vec<usize> = core.borrow().conns.iter().map(|(k, _)| k).collect();
    for key in keys {
        core.borrow_mut()
            .close(key, CLOSE_GOING_AWAY, "server shutting down", false, now);
    }
    let deadline = tokio::time::Instant::now() + CLOSE_LINGER + Duration::from_millis(500);
    while !core.borrow().conns.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn accept_loop(listener: TcpListener, core: Rc<RefCell<Core>>, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                let _ = tcp.set_nodelay(true);
                let handle = Handle(core.clone());
                let shared = shared.clone();
                match shared.tls.clone() {
                    None => {
                        tokio::task::spawn_local(crate::http::serve(tcp, peer, handle, shared));
                    }
                    Some(config) => {
                        let acceptor = tokio_rustls::TlsAcceptor::from(config);
                        tokio::task::spawn_local(async move {
                            let limit =
                                Duration::from_millis(shared.config.limits.handshake_timeout_ms);
                            match tokio::time::timeout(limit, acceptor.accept(tcp)).await {
                                Ok(Ok(tls)) => crate::http::serve(tls, peer, handle, shared).await,
                                Ok(Err(e)) => {
                                    tracing::debug!(%peer, error = %e, "TLS handshake failed")
                                }
                                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                            }
                        });
                    }
                }
            }
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn timer_loop(core: Rc<RefCell<Core>>) {
    loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        core.borrow_mut().on_timer();
    }
}

/// A writer core as seen from its HTTP handler: it can adopt upgraded connections.
#[derive(Clone)]
pub struct Handle(Rc<RefCell<Core>>);

impl Handle {
    /// Runs an upgraded WebSocket connection on this core until it closes.
    /// `prefix` holds bytes the HTTP layer read past the handshake.
    pub async fn run_connection(
        self,
        transport: Transport,
        prefix: Bytes,
        peer: SocketAddr,
        permit: crate::admission::Permit,
        entitlements: Option<crate::auth::Entitlements>,
    ) {
        let core = self.0;
        let sock = Rc::new(transport);
        let key = core.borrow_mut().register(sock.clone(), peer);
        core.borrow_mut().conns[key].entitlements = entitlements.map(Arc::new);
        let (write_wake, close_wake, max_msg) = {
            let c = core.borrow();
            let conn = &c.conns[key];
            (
                conn.write_wake.clone(),
                conn.close_wake.clone(),
                c.shared.config.max_control_message_bytes,
            )
        };
        let writer = tokio::task::spawn_local(write_task(
            core.clone(),
            key,
            sock.clone(),
            write_wake.clone(),
        ));

        let (mut ws, _) = fastwebsockets::after_handshake_split(
            SockRead {
                sock: sock.clone(),
                prefix,
            },
            tokio::io::sink(),
            Role::Server,
        );
        ws.set_max_message_size(max_msg);
        ws.set_auto_pong(true);
        ws.set_auto_close(true);
        let mut ws = fastwebsockets::FragmentCollectorRead::new(ws);
        let send_core = core.clone();
        // fastwebsockets hands us the pongs and close replies it owes the peer.
        let mut send = move |frame: Frame<'_>| {
            let op = match frame.opcode {
                OpCode::Pong => OP_PONG,
                OpCode::Close => OP_CLOSE,
                OpCode::Ping => OP_PING,
                _ => OP_TEXT,
            };
            let mut c = send_core.borrow_mut();
            let now = now_ns();
            if let Some(conn) = c.conns.get_mut(key) {
                if !conn.closing && !conn.dead {
                    conn.out.push_frame(op, &frame.payload, now);
                    if op == OP_CLOSE {
                        conn.closing = true;
                    }
                }
            }
            c.flush(key, now);
            std::future::ready(Ok::<(), std::convert::Infallible>(()))
        };
        loop {
            let frame = tokio::select! {
                biased;
                _ = close_wake.notified() => break,
                f = ws.read_frame(&mut send) => f,
            };
            let mut c = core.borrow_mut();
            if frame.is_ok() {
                if let Some(conn) = c.conns.get_mut(key) {
                    conn.last_seen_ns = now_ns();
                }
            }
            match frame {
                Ok(f) => match f.opcode {
                    OpCode::Text => c.on_text(key, &f.payload),
                    OpCode::Binary => {
                        let now = now_ns();
                        c.stats().protocol_errors.fetch_add(1, Relaxed);
                        let reply = protocol::error_message(&ProtocolError::BinaryMessage, None);
                        c.push_control(key, &reply, now);
                        c.flush_dirty();
                    }
                    OpCode::Close => {
                        // The close reply is already queued by `send`.
                        let now = now_ns();
                        c.close(key, 1000, "", false, now);
                        break;
                    }
                    _ => {}
                },
                Err(e) => {
                    let now = now_ns();
                    match e {
                        WebSocketError::FrameTooLarge => {
                            let reason = format!("message too big (limit {max_msg} bytes)");
                            c.close(key, CLOSE_TOO_BIG, &reason, false, now);
                        }
                        WebSocketError::InvalidUTF8 => {
                            c.close(key, 1007, "invalid UTF-8", false, now)
                        }
                        WebSocketError::UnexpectedEOF
                        | WebSocketError::ConnectionClosed
                        | WebSocketError::IoError(_) => {
                            if let Some(conn) = c.conns.get_mut(key) {
                                conn.dead = true;
                            }
                        }
                        other => {
                            let reason = format!("protocol error: {other}");
                            c.close(key, 1002, &reason, false, now);
                        }
                    }
                    break;
                }
            }
        }
        drop(ws);
        finish_connection(&core, key, &sock, &write_wake).await;
        writer.abort();
        core.borrow_mut().unregister(key);
        drop(permit);
    }
}

/// Flushes what is left (the close frame), half-closes, and reads until the peer
/// closes too, so that unread input does not turn our close into a reset. Bounded by
/// [`CLOSE_LINGER`].
async fn finish_connection(
    core: &Rc<RefCell<Core>>,
    key: usize,
    sock: &Transport,
    write_wake: &Notify,
) {
    let deadline = tokio::time::Instant::now() + CLOSE_LINGER;
    loop {
        let (dead, empty) = {
            let c = core.borrow();
            let conn = &c.conns[key];
            (conn.dead, conn.out.pending().is_empty())
        };
        if dead || empty || tokio::time::Instant::now() >= deadline {
            break;
        }
        write_wake.notify_one();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sock.shutdown_write();
    let tcp = sock.tcp();
    let mut sink = [0u8; 16 * 1024];
    let _ = tokio::time::timeout_at(deadline, async {
        loop {
            if tcp.readable().await.is_err() {
                return;
            }
            match tcp.try_read(&mut sink) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    })
    .await;
}

/// Waits for a full socket to drain, on behalf of the dispatch loop.
async fn write_task(core: Rc<RefCell<Core>>, key: usize, sock: Rc<Transport>, wake: Rc<Notify>) {
    loop {
        wake.notified().await;
        loop {
            let state = core.borrow_mut().drain(key);
            match state {
                None => return,
                Some(true) => break,
                Some(false) => {
                    if sock.tcp().writable().await.is_err() {
                        if let Some(conn) = core.borrow_mut().conns.get_mut(key) {
                            conn.dead = true;
                            conn.close_wake.notify_one();
                        }
                        return;
                    }
                }
            }
        }
    }
}

/// The read side of a shared transport, with bytes already read by the HTTP layer
/// first.
struct SockRead {
    sock: Rc<Transport>,
    prefix: Bytes,
}

impl AsyncRead for SockRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix.split_to(n));
            return Poll::Ready(Ok(()));
        }
        this.sock.poll_read(cx, buf)
    }
}
