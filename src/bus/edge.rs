//! The edge side of the bus: the ingest's sequenced ticks into this node's ring.
//!
//! [`Edge`] is the sans-IO state machine. It owns the node's [`Sequencer`] (the single
//! writer of the ring and the last-value cache) and:
//!
//! - publishes each batch's ticks with the ingest's sequence numbers
//!   ([`Sequencer::publish_sequenced`]): a tick that skips numbers is published
//!   flagged snapshot and asks for a resynchronisation; one already delivered is
//!   dropped;
//! - maps the ingest's symbol ids to this node's by name, so an id a client holds
//!   never changes meaning, even when a restarted ingest numbers its symbols
//!   differently;
//! - follows the epoch (a numbering run) and the leader's term: a message from a
//!   newer epoch (the ingests restarted and numbers start over) is dropped and asks
//!   for a resynchronisation; a message from an older epoch, or from an older term of
//!   the same epoch (a leader that lost its lease and has not noticed yet), is dropped
//!   and counted (`stale`): the fence that keeps two leaders from being seen at once;
//!   a newer term of the same epoch is a failover, whose sequences continue: the
//!   edge forgets the old leader's symbol ids and learns the new leader's from its
//!   first messages;
//! - applies snapshots ([`Edge::apply_snapshot`]): the latest values go into the cache,
//!   the symbols' numbers move up to them (or start over after a restart), and the
//!   ring is marked ([`crate::ring::Publisher::mark_resync`]) so that the writer cores
//!   send their subscribers the fresh values flagged snapshot;
//! - keeps order books whole: a snapshot carries each symbol's book, which replaces
//!   this node's. A book change cannot stand for what was lost before it (a trade or
//!   quote can), so a change that skips numbers is not published: from it on the
//!   symbol's changes are held (at most [`MAX_HELD_BOOK_CHANGES`]) until the next
//!   snapshot, which they are then joined to as a venue's diff-depth stream is to
//!   its snapshot ([`DepthSync`]): those at or below the snapshot's book number are
//!   dropped, the rest published after it. Meanwhile the symbol's book subscribers
//!   keep the last whole book.
//!
//! The `bus-edge` thread ([`spawn`]) runs the NATS client on a current-thread tokio
//! runtime, feeds the state machine, fetches snapshots when it asks (at start, after a
//! gap, after NATS came back, after an ingest restart), and wakes the writer cores.
//! An ingest standby follows its leader with the same state machine, on its sequencer
//! thread ([`super::ingest`]).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use thiserror::Error;
use tokio::sync::{mpsc, watch};

use super::codec::{self, Decoder, Headers, MalformedError};
use crate::book::Side;
use crate::clock::now_ns;
use crate::config::Config;
use crate::feed::depth_sync::DepthSync;
use crate::lvc::BookSnapshot;
use crate::park::Parker;
use crate::sequencer::{Continuity, Sequencer};
use crate::stats::Stats;
use crate::symbol::{Symbol, SymbolTable};
use crate::tick::{Body, Flags, Kind, Tick};

/// Book changes held per symbol while its book waits for a snapshot; past it the
/// oldest are dropped (counted in the bus's `gap_ticks`) and the join asks for a
/// newer snapshot.
pub const MAX_HELD_BOOK_CHANGES: usize = 65_536;

/// Marks an ingest symbol id whose name could not be interned here (table full).
const NO_SYMBOL: u32 = u32::MAX;

/// Why the edge wants a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncReason {
    /// It has never had one.
    Start,
    /// A symbol's sequence numbers jumped, or a message was lost or unreadable.
    Gap,
    /// The NATS connection came back: whatever was published meanwhile is lost.
    Reconnect,
    /// A message came from a new ingest epoch.
    Restart,
    /// This node led and stepped down: what it sequenced may never have been
    /// published, so its numbers start over from the new leader's.
    SteppedDown,
}

/// One page of a snapshot reply, decoded and owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotPage {
    /// The ingest's epoch.
    pub epoch: u64,
    /// The answering leader's term.
    pub term: u64,
    /// Id of `names[0]` at the ingest.
    pub from: u32,
    /// Names of the ingest's symbols `from..from + names.len()`.
    pub names: Vec<Symbol>,
    /// Symbols the ingest knew in all.
    pub total: u32,
    /// The latest values of those symbols, with the ingest's ids.
    pub ticks: Vec<Tick>,
}

/// Why a snapshot could not be fetched or applied.
#[derive(Debug, Error)]
pub enum SnapshotError {
    /// The request failed (no ingest answering, timeout, NATS away).
    #[error("snapshot request failed: {0}")]
    Request(String),
    /// The ingest refused the request.
    #[error("the ingest refused the snapshot request: {0}")]
    Refused(String),
    /// A reply could not be decoded.
    #[error("malformed snapshot reply: {0}")]
    Malformed(#[from] MalformedError),
    /// The pages do not fit together (another epoch midway, a page out of place).
    #[error("inconsistent snapshot: {0}")]
    Inconsistent(String),
    /// The snapshot comes from an older epoch or term than the edge follows: a leader
    /// that lost its lease answered.
    #[error("stale snapshot: epoch {epoch} term {term} is older than the one followed")]
    Stale {
        /// The snapshot's epoch.
        epoch: u64,
        /// The snapshot's term.
        term: u64,
    },
}

/// The edge's state (see the module docs).
#[derive(Debug)]
pub struct Edge {
    seq: Sequencer,
    symbols: Arc<SymbolTable>,
    stats: Arc<Stats>,
    /// The ingest epoch followed; `None` before the first snapshot.
    epoch: Option<u64>,
    /// The highest leader term seen in that epoch.
    term: u64,
    /// The next snapshot starts the numbers over whatever its epoch (set when this
    /// node steps down from leading).
    force_restart: bool,
    /// Ingest symbol id → this node's id ([`NO_SYMBOL`] when it could not be interned).
    remote: Vec<u32>,
    /// A snapshot is wanted, and why (the first reason since the last one applied).
    want: Option<SyncReason>,
    decoder: Decoder,
    /// Books waiting for a snapshot after a gap, by this node's symbol id, with the
    /// changes held meanwhile.
    book_joins: std::collections::HashMap<u32, DepthSync<Tick>>,
}

impl Edge {
    /// An edge publishing through `seq`, interning into `symbols` (the table `seq`
    /// shares with the writer cores), counting into `stats.bus`. It wants a snapshot.
    pub fn new(seq: Sequencer, symbols: Arc<SymbolTable>, stats: Arc<Stats>) -> Edge {
        stats.bus.resync_pending.store(1, Relaxed);
        Edge {
            seq,
            symbols,
            stats,
            epoch: None,
            term: 0,
            force_restart: false,
            remote: Vec::new(),
            want: Some(SyncReason::Start),
            decoder: Decoder::new(),
            book_joins: Default::default(),
        }
    }

    /// Why a snapshot is wanted, if one is.
    pub fn wants_sync(&self) -> Option<SyncReason> {
        self.want
    }

    /// The ingest epoch followed (`None` before the first snapshot).
    pub fn epoch(&self) -> Option<u64> {
        self.epoch
    }

    /// The highest leader term seen in the epoch followed.
    pub fn term(&self) -> u64 {
        self.term
    }

    /// The node's sequencer (an ingest leads through it).
    pub fn sequencer_mut(&mut self) -> &mut Sequencer {
        &mut self.seq
    }

    /// Whether the state is a faithful copy of what the leader published: synchronised,
    /// no resynchronisation pending. An ingest standby that takes over in this state
    /// continues the sequences; otherwise it starts a new epoch.
    pub fn in_sync(&self) -> bool {
        self.epoch.is_some() && self.want.is_none() && !self.force_restart
    }

    /// This node now publishes under `epoch` and `term` itself (an ingest that took
    /// the lease): messages of older terms are stale from now on.
    pub fn led(&mut self, epoch: u64, term: u64) {
        self.epoch = Some(epoch);
        self.term = term;
        self.want = None;
        self.force_restart = false;
        let bus = &self.stats.bus;
        bus.epoch.store(epoch, Relaxed);
        bus.term.store(term, Relaxed);
        bus.synced.store(1, Relaxed);
        bus.resync_pending.store(0, Relaxed);
    }

    /// Forgets every symbol's values and sequence and marks the ring for a restart
    /// (numbers start over: a node that starts a new epoch).
    pub fn forget_all(&mut self) {
        for id in 0..self.symbols.len() as u32 {
            self.seq.forget(id);
        }
        self.seq.mark_resync(true);
    }

    /// This node stepped down from leading: follow the new leader from a snapshot that
    /// replaces every number (see [`SyncReason::SteppedDown`]).
    pub fn stepped_down(&mut self) {
        self.force_restart = true;
        self.want = None;
        self.ask(SyncReason::SteppedDown);
    }

    /// Messages may have been lost before reaching the state machine (NATS reported a
    /// slow consumer, or the hand-off queue was full): the sequence checks would find
    /// such a gap only at the symbol's next tick, so resynchronise now.
    pub fn on_lost(&mut self) {
        if self.epoch.is_some() {
            self.ask(SyncReason::Gap);
        }
    }

    fn ask(&mut self, reason: SyncReason) {
        if self.want.is_none() {
            self.want = Some(reason);
            self.stats.bus.resync_pending.store(1, Relaxed);
            tracing::warn!(?reason, "bus: resynchronising from the leader's snapshot");
        } else if reason == SyncReason::Restart {
            self.want = Some(reason);
        }
    }

    /// The NATS connection came back after an outage.
    pub fn on_reconnect(&mut self) {
        if self.epoch.is_some() {
            self.ask(SyncReason::Reconnect);
        }
    }

    /// Takes one batch message; returns how many ticks went into the ring (the
    /// writer cores need waking when it is not 0). A malformed message is counted and
    /// skipped.
    pub fn on_batch(&mut self, headers: Headers<'_>, payload: &[u8], now_ns: u64) -> usize {
        self.on_batch_with(headers, payload, now_ns, |_| {})
    }

    /// [`Edge::on_batch`], calling `published` with each tick that went into the ring
    /// (with this node's symbol id).
    pub fn on_batch_with(
        &mut self,
        headers: Headers<'_>,
        payload: &[u8],
        now_ns: u64,
        mut published_tick: impl FnMut(&Tick),
    ) -> usize {
        let bus = &self.stats.bus;
        bus.messages.fetch_add(1, Relaxed);
        bus.bytes.fetch_add(payload.len() as u64, Relaxed);
        let previous_ns = bus.last_message_ns.swap(now_ns, Relaxed);
        let Edge {
            seq,
            symbols,
            stats,
            epoch,
            term,
            remote,
            want,
            decoder,
            book_joins,
            ..
        } = self;
        let bus = &stats.bus;
        let m = match decoder.decode(headers, payload) {
            Ok(m) => m,
            Err(e) => {
                let n = bus.malformed.fetch_add(1, Relaxed) + 1;
                if n <= 10 || n.is_power_of_two() {
                    tracing::warn!(error = %e, count = n, "bus: malformed message skipped");
                }
                // It may have carried ticks: the continuity checks will tell.
                return 0;
            }
        };
        bus.ticks.fetch_add(m.ticks.len() as u64, Relaxed);
        match *epoch {
            // Not synchronised yet: the coming snapshot covers these ticks.
            None => return 0,
            Some(e) if m.epoch < e || m.epoch == e && m.term < *term => {
                let n = bus.stale.fetch_add(1, Relaxed) + 1;
                if n <= 10 || n.is_power_of_two() {
                    tracing::warn!(
                        epoch = m.epoch,
                        term = m.term,
                        followed_epoch = e,
                        followed_term = *term,
                        count = n,
                        "bus: message from a leader that lost its lease, dropped"
                    );
                }
                return 0;
            }
            Some(e) if m.epoch > e => {
                if *want != Some(SyncReason::Restart) {
                    tracing::warn!(
                        old = e,
                        new = m.epoch,
                        "bus: the ingest restarted (new epoch); its sequences start over"
                    );
                }
                *want = Some(SyncReason::Restart);
                bus.resync_pending.store(1, Relaxed);
                return 0;
            }
            Some(_) => {}
        }
        if m.term > *term {
            // A failover: the sequences go on, the symbol ids are the new leader's,
            // announced from 0 with its first messages.
            tracing::info!(
                old = *term,
                new = m.term,
                "bus: a new leader publishes; sequences continue"
            );
            *term = m.term;
            remote.clear();
            bus.term.store(m.term, Relaxed);
            bus.handovers.fetch_add(1, Relaxed);
            bus.last_handover_ns.store(now_ns, Relaxed);
            bus.last_handover_gap_ns
                .store(now_ns.saturating_sub(previous_ns), Relaxed);
        }
        let mut wanted = None;
        for (i, name) in m.symbols.iter().enumerate() {
            let rid = m.symbols_from as usize + i;
            if rid < remote.len() {
                continue;
            }
            if rid > remote.len() {
                // Names before this one never arrived.
                wanted = Some(SyncReason::Gap);
                break;
            }
            remote.push(symbols.intern(*name).unwrap_or(NO_SYMBOL));
        }
        let mut published = 0;
        for t in m.ticks {
            let local = remote
                .get(t.symbol_id as usize)
                .copied()
                .unwrap_or(NO_SYMBOL);
            if local == NO_SYMBOL {
                bus.unknown_symbols.fetch_add(1, Relaxed);
                wanted = Some(SyncReason::Gap);
                continue;
            }
            // Only the snapshot flag travels: a leader that took over sends each
            // symbol's first value flagged (see `super::ingest`).
            let flags = if t.flags.contains(Flags::SNAPSHOT) {
                Flags::SNAPSHOT
            } else {
                Flags::empty()
            };
            let tick = Tick {
                symbol_id: local,
                flags,
                ..*t
            };
            if tick.body.kind() == Kind::Book {
                // A book held for a snapshot, or one whose change skips numbers (the
                // first of a symbol this node has no book of counts from 1).
                let last = seq.last_book_seq(local);
                let held = book_joins.contains_key(&local);
                if held || tick.seq > last + 1 {
                    if !held {
                        bus.gaps.fetch_add(1, Relaxed);
                        bus.gap_ticks.fetch_add(tick.seq - last - 1, Relaxed);
                    }
                    let join = book_joins
                        .entry(local)
                        .or_insert_with(|| DepthSync::new(MAX_HELD_BOOK_CHANGES));
                    let before = join.dropped;
                    join.on_event(tick.seq, tick.seq, tick);
                    bus.gap_ticks.fetch_add(join.dropped - before, Relaxed);
                    wanted = Some(SyncReason::Gap);
                    continue;
                }
            }
            match seq.publish_sequenced(&tick) {
                Continuity::Next => {
                    published += 1;
                    published_tick(&tick);
                }
                Continuity::Gap { missed } => {
                    published += 1;
                    published_tick(&tick);
                    bus.gaps.fetch_add(1, Relaxed);
                    bus.gap_ticks.fetch_add(missed, Relaxed);
                    wanted = Some(SyncReason::Gap);
                }
                Continuity::Duplicate => {
                    bus.duplicates.fetch_add(1, Relaxed);
                }
            }
        }
        if let Some(reason) = wanted {
            self.ask(reason);
        }
        published
    }

    /// Applies a whole snapshot (every page of one request round, in order). On
    /// success the edge is synchronised and the writer cores are told to send the fresh
    /// values; on error nothing changed and the edge still wants a snapshot.
    pub fn apply_snapshot(&mut self, pages: &[SnapshotPage]) -> Result<(), SnapshotError> {
        self.apply_snapshot_with(pages, |_| {})
    }

    /// [`Edge::apply_snapshot`], calling `restored` with each value taken (with this
    /// node's symbol id).
    pub fn apply_snapshot_with(
        &mut self,
        pages: &[SnapshotPage],
        mut restored: impl FnMut(&Tick),
    ) -> Result<(), SnapshotError> {
        let Some(first) = pages.first() else {
            return Err(SnapshotError::Inconsistent("no page".into()));
        };
        let (epoch, term) = (first.epoch, first.term);
        if let Some(e) = self.epoch {
            if !self.force_restart && (epoch < e || epoch == e && term < self.term) {
                return Err(SnapshotError::Stale { epoch, term });
            }
        }
        let mut next = 0u32;
        for p in pages {
            if p.epoch != epoch || p.term != term {
                return Err(SnapshotError::Inconsistent(
                    "the ingest restarted during the snapshot".into(),
                ));
            }
            if p.from != next {
                return Err(SnapshotError::Inconsistent(format!(
                    "page from symbol {} where {next} was expected",
                    p.from
                )));
            }
            next = p.from + p.names.len() as u32;
        }
        let restart = self.epoch != Some(epoch) || self.force_restart;
        // Ids map by name: rebuilt from the snapshot, they are right whatever happened.
        self.remote.clear();
        for p in pages {
            for name in &p.names {
                self.remote
                    .push(self.symbols.intern(*name).unwrap_or(NO_SYMBOL));
            }
        }
        if restart {
            for id in 0..self.symbols.len() as u32 {
                self.seq.forget(id);
            }
            // The numbers held books wait for are another run's.
            self.book_joins.clear();
        }
        // Each symbol's book, gathered from its records.
        let mut books: std::collections::BTreeMap<u32, BookSnapshot> = Default::default();
        for p in pages {
            for t in &p.ticks {
                let Some(&local) = self.remote.get(t.symbol_id as usize) else {
                    self.stats.bus.unknown_symbols.fetch_add(1, Relaxed);
                    continue;
                };
                if local == NO_SYMBOL {
                    continue;
                }
                let tick = Tick {
                    symbol_id: local,
                    flags: Flags::empty(),
                    ..*t
                };
                if let Body::Book {
                    side,
                    price,
                    size,
                    group: (levels, _),
                    ..
                } = tick.body
                {
                    let b = books.entry(local).or_insert_with(|| BookSnapshot {
                        seq: tick.seq,
                        ts_event: tick.ts_event,
                        ts_recv: tick.ts_recv,
                        ..BookSnapshot::default()
                    });
                    if levels > 0 {
                        match side {
                            Side::Bid => b.bids.push((price, size)),
                            Side::Ask => b.asks.push((price, size)),
                        }
                    }
                    continue;
                }
                self.seq.restore(&tick);
                restored(&tick);
            }
        }
        for (local, b) in books {
            self.seq
                .restore_book(local, b.seq, b.ts_event, b.ts_recv, &b.bids, &b.asks);
        }
        // Held books join the snapshot: the changes after it go out, in order.
        let mut still_held = false;
        let joins = std::mem::take(&mut self.book_joins);
        for (local, mut join) in joins {
            match join.on_snapshot(self.seq.last_book_seq(local)) {
                Ok(changes) => {
                    for t in changes {
                        self.seq.publish_sequenced(&t);
                    }
                }
                Err(e) => {
                    tracing::warn!(symbol = local, error = %e, "bus: a held book does not join the snapshot; asking for another");
                    self.book_joins.insert(local, join);
                    still_held = true;
                }
            }
        }
        self.seq.mark_resync(restart);
        let bus = &self.stats.bus;
        if restart && self.epoch.is_some() {
            bus.restarts.fetch_add(1, Relaxed);
        }
        self.epoch = Some(epoch);
        self.term = term;
        self.force_restart = false;
        self.want = None;
        bus.epoch.store(epoch, Relaxed);
        bus.term.store(term, Relaxed);
        bus.resyncs.fetch_add(1, Relaxed);
        bus.synced.store(1, Relaxed);
        bus.resync_pending.store(0, Relaxed);
        if still_held {
            self.ask(SyncReason::Gap);
        }
        Ok(())
    }
}

/// What the `bus-edge` thread needs.
#[derive(Debug)]
pub struct EdgeContext {
    /// Settings (`nats_url`, `bus`).
    pub config: Config,
    /// The state machine, owning the node's sequencer.
    pub edge: Edge,
    /// The writer cores' parkers, woken after each batch.
    pub cores: Vec<Arc<Parker>>,
    /// Counters (`stats.bus`).
    pub stats: Arc<Stats>,
    /// Becomes true when the server shuts down.
    pub shutdown: watch::Receiver<bool>,
}

/// Starts the `bus-edge` thread.
pub fn spawn(ctx: EdgeContext) -> std::io::Result<std::thread::JoinHandle<()>> {
    super::spawn_runtime_thread("bus-edge", move || run(ctx))
}

/// The tickcast headers of a NATS message.
pub(crate) fn headers(msg: &async_nats::Message) -> Headers<'_> {
    let get = |name: &str| {
        msg.headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.as_str())
    };
    Headers {
        epoch: get(codec::EPOCH),
        term: get(codec::TERM),
        symbols_from: get(codec::SYMBOLS_FROM),
        symbols: get(codec::SYMBOLS),
        symbols_total: get(codec::SYMBOLS_TOTAL),
    }
}

/// Wakes the parked writer cores; `force` also leaves a wake-up for a core that is
/// about to park, since a resynchronisation mark moves no ring position for it to see.
fn wake(cores: &[Arc<Parker>], force: bool) {
    for c in cores {
        c.wake(force);
    }
}

async fn run(mut ctx: EdgeContext) {
    let bus = ctx.config.bus.clone();
    let (events_tx, mut events) = mpsc::channel(64);
    let client = match super::connect(&ctx.config, ctx.stats.clone(), Some(events_tx)).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(url = %ctx.config.nats_url, error = %e, "bus: cannot use the NATS URL");
            return;
        }
    };
    let mut sub = match client.subscribe(bus.ticks_wildcard()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "bus: cannot subscribe to the ticks");
            return;
        }
    };
    tracing::info!(url = %ctx.config.nats_url, subject = %bus.ticks_wildcard(), "bus: edge following the ingest");
    let mut decoder = Decoder::new();
    let mut failures = 0u32;
    let mut next_try = tokio::time::Instant::now();
    loop {
        let want = ctx.edge.wants_sync();
        let connected = ctx.stats.bus.connected.load(Relaxed) == 1;
        if want.is_some() && connected && tokio::time::Instant::now() >= next_try {
            let fetched = tokio::select! {
                r = fetch_snapshot(&client, &bus, &mut decoder) => r,
                _ = ctx.shutdown.changed() => break,
            };
            match fetched.and_then(|pages| ctx.edge.apply_snapshot(&pages)) {
                Ok(()) => {
                    failures = 0;
                    wake(&ctx.cores, true);
                    tracing::info!(reason = ?want, epoch = ?ctx.edge.epoch(), "bus: synchronised from the ingest's snapshot");
                }
                Err(e) => {
                    ctx.stats.bus.snapshot_failures.fetch_add(1, Relaxed);
                    failures = failures.saturating_add(1);
                    if failures <= 3 || failures.is_power_of_two() {
                        tracing::warn!(error = %e, attempts = failures, "bus: no snapshot yet");
                    }
                    next_try = tokio::time::Instant::now() + bus.backoff(failures);
                }
            }
            continue;
        }
        let retry_at = next_try;
        tokio::select! {
            _ = ctx.shutdown.changed() => break,
            msg = sub.next() => {
                let Some(msg) = msg else { break };
                if ctx.edge.on_batch(headers(&msg), &msg.payload, now_ns()) > 0 {
                    wake(&ctx.cores, false);
                }
            }
            ev = events.recv() => match ev {
                Some(async_nats::Event::Connected) => ctx.edge.on_reconnect(),
                Some(async_nats::Event::Disconnected) => {
                    tracing::warn!("bus: NATS connection lost; clients keep the last values until it is back");
                }
                Some(async_nats::Event::SlowConsumer(_)) => {
                    ctx.stats.bus.lost.fetch_add(1, Relaxed);
                    tracing::warn!("bus: NATS dropped messages (slow consumer)");
                    ctx.edge.on_lost();
                }
                Some(_) => {}
                None => break,
            },
            _ = tokio::time::sleep_until(retry_at), if want.is_some() && connected => {}
        }
    }
}

/// Asks the leader for every page of a snapshot.
pub(crate) async fn fetch_snapshot(
    client: &async_nats::Client,
    bus: &super::BusConfig,
    decoder: &mut Decoder,
) -> Result<Vec<SnapshotPage>, SnapshotError> {
    let timeout = Duration::from_millis(bus.snapshot_timeout_ms);
    let subject = bus.snapshot_subject();
    let mut pages: Vec<SnapshotPage> = Vec::new();
    let mut from = 0u32;
    loop {
        let reply = tokio::time::timeout(
            timeout,
            client.request(subject.clone(), from.to_string().into()),
        )
        .await
        .map_err(|_| SnapshotError::Request(format!("no reply within {timeout:?}")))?
        .map_err(|e| SnapshotError::Request(e.to_string()))?;
        if let Some(err) = reply.headers.as_ref().and_then(|h| h.get(codec::ERROR)) {
            return Err(SnapshotError::Refused(err.as_str().to_string()));
        }
        let m = decoder.decode(headers(&reply), &reply.payload)?;
        let page = SnapshotPage {
            epoch: m.epoch,
            term: m.term,
            from: if m.symbols.is_empty() {
                from
            } else {
                m.symbols_from
            },
            names: m.symbols.to_vec(),
            total: m.symbols_total.unwrap_or(0),
            ticks: m.ticks.to_vec(),
        };
        let next = page.from + page.names.len() as u32;
        let done = next >= page.total;
        if !done && page.names.is_empty() {
            return Err(SnapshotError::Inconsistent(
                "an empty page before the last symbol".into(),
            ));
        }
        pages.push(page);
        if done {
            return Ok(pages);
        }
        from = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lvc::LastValueCache;
    use crate::ring::{Read, Reader, Ring};

    struct Fixture {
        edge: Edge,
        reader: Reader,
        ring: Arc<Ring>,
        lvc: Arc<LastValueCache>,
        stats: Arc<Stats>,
        symbols: Arc<SymbolTable>,
    }

    fn fixture() -> Fixture {
        let symbols = Arc::new(SymbolTable::new(16));
        let (lvc_w, lvc) = LastValueCache::new(16);
        let (publisher, ring) = Ring::new(64);
        let stats = Arc::new(Stats {
            bus: crate::bus::BusStatus::new(crate::bus::Role::Edge),
            ..Stats::default()
        });
        let seq = Sequencer::new(symbols.clone(), lvc_w, publisher, Arc::default());
        Fixture {
            edge: Edge::new(seq, symbols.clone(), stats.clone()),
            reader: ring.reader(),
            ring,
            lvc,
            stats,
            symbols,
        }
    }

    fn tick(id: u32, seq: u64) -> Tick {
        Tick {
            symbol_id: id,
            seq,
            ts_event: seq,
            ts_recv: seq + 1,
            flags: Flags::empty(),
            count: 1,
            body: Body::trade(seq as i64, 1),
        }
    }

    fn names(list: &[&str]) -> Vec<Symbol> {
        list.iter().map(|n| Symbol::new(n).unwrap()).collect()
    }

    fn page(epoch: u64, list: &[&str], ticks: Vec<Tick>) -> SnapshotPage {
        SnapshotPage {
            epoch,
            term: 1,
            from: 0,
            names: names(list),
            total: list.len() as u32,
            ticks,
        }
    }

    /// A batch message as the ingest sends it (term 1).
    fn batch(edge: &mut Edge, epoch: u64, announce: Option<(u32, &str)>, ticks: &[Tick]) -> usize {
        batch_term(edge, epoch, 1, announce, ticks)
    }

    /// A batch message of the leader of `term`.
    fn batch_term(
        edge: &mut Edge,
        epoch: u64,
        term: u64,
        announce: Option<(u32, &str)>,
        ticks: &[Tick],
    ) -> usize {
        let mut payload = Vec::new();
        codec::encode_ticks(ticks.iter(), 0, &mut payload);
        let e = epoch.to_string();
        let t = term.to_string();
        let from = announce.map(|a| a.0.to_string());
        edge.on_batch(
            Headers {
                epoch: Some(&e),
                term: Some(&t),
                symbols_from: from.as_deref(),
                symbols: announce.map(|a| a.1),
                symbols_total: None,
            },
            &payload,
            1,
        )
    }

    fn drain(r: &mut Reader) -> Vec<(u32, u64, bool)> {
        let mut out = Vec::new();
        while let Read::Tick(t) = r.read() {
            out.push((t.symbol_id, t.seq, t.flags.contains(Flags::SNAPSHOT)));
        }
        out
    }

    /// A book record as pages and batches carry it: `(levels, index)` of its message.
    fn book(id: u32, seq: u64, side: Side, price: i64, size: i64, group: (u32, u32)) -> Tick {
        Tick {
            body: Body::Book {
                side,
                price,
                size,
                new_level: false,
                group,
            },
            ..tick(id, seq)
        }
    }

    /// A snapshot's book replaces the edge's; a change that skips numbers is held,
    /// with those after it, and joined to the next snapshot: those it covers are
    /// dropped, the rest published after it. A snapshot too old for the held changes
    /// asks for another.
    #[test]
    fn books_come_whole_with_snapshots_and_gaps_wait_for_the_next_one() {
        let mut f = fixture();
        let bid = |seq, price, size| book(0, seq, Side::Bid, price, size, (1, 0));
        f.edge
            .apply_snapshot(&[page(
                7,
                &["A"],
                vec![
                    tick(0, 3),
                    book(0, 5, Side::Bid, 100, 1, (2, 0)),
                    book(0, 5, Side::Ask, 101, 2, (2, 1)),
                ],
            )])
            .unwrap();
        let b = f.lvc.book(0);
        assert_eq!((b.seq, b.bids, b.asks), (5, vec![(100, 1)], vec![(101, 2)]));
        drain(&mut f.reader);
        assert_eq!(batch(&mut f.edge, 7, Some((0, "A")), &[bid(6, 99, 4)]), 1);
        assert_eq!(f.lvc.book(0).bids, [(100, 1), (99, 4)]);
        assert_eq!(drain(&mut f.reader), [(0, 6, false)]);
        // 7 and 8 are lost: 9 and 10 are held, nothing goes out.
        assert_eq!(
            batch(&mut f.edge, 7, None, &[bid(9, 98, 1), bid(10, 97, 1)]),
            0
        );
        assert_eq!(f.edge.wants_sync(), Some(SyncReason::Gap));
        assert_eq!(f.lvc.book(0).seq, 6, "the last whole book stays");
        assert_eq!(drain(&mut f.reader), []);
        assert_eq!(
            (
                f.stats.bus.gaps.load(Relaxed),
                f.stats.bus.gap_ticks.load(Relaxed)
            ),
            (1, 2)
        );
        // The snapshot stands at 9 (7–9 removed 99, added 98): 10 follows it.
        f.edge
            .apply_snapshot(&[page(
                7,
                &["A"],
                vec![
                    tick(0, 3),
                    book(0, 9, Side::Bid, 100, 1, (3, 0)),
                    book(0, 9, Side::Bid, 98, 1, (3, 1)),
                    book(0, 9, Side::Ask, 101, 2, (3, 2)),
                ],
            )])
            .unwrap();
        assert_eq!(f.edge.wants_sync(), None);
        let b = f.lvc.book(0);
        assert_eq!(
            (b.seq, &b.bids[..]),
            (10, &[(100, 1), (98, 1), (97, 1)][..])
        );
        let out = drain(&mut f.reader);
        assert_eq!(
            out,
            [(0, 10, false)],
            "only the held change after the snapshot"
        );
        // Held again (12 after 10), and the next snapshot is older than 12: another.
        batch(&mut f.edge, 7, None, &[bid(12, 96, 1)]);
        f.edge
            .apply_snapshot(&[page(
                7,
                &["A"],
                vec![book(0, 10, Side::Bid, 100, 1, (1, 0))],
            )])
            .unwrap();
        assert_eq!(f.edge.wants_sync(), Some(SyncReason::Gap));
        assert_eq!(f.lvc.book(0).seq, 10);
        assert_eq!(drain(&mut f.reader), []);
    }

    #[test]
    fn follows_sequences_and_flags_gaps() {
        let mut f = fixture();
        assert_eq!(f.edge.wants_sync(), Some(SyncReason::Start));
        // Before the first snapshot, batches are covered by it: nothing published.
        assert_eq!(batch(&mut f.edge, 7, Some((0, "A,B")), &[tick(0, 1)]), 0);
        f.edge
            .apply_snapshot(&[page(7, &["A", "B"], vec![tick(0, 2)])])
            .unwrap();
        assert_eq!(f.edge.wants_sync(), None);
        assert_eq!(f.stats.bus.synced.load(Relaxed), 1);
        assert_eq!(f.ring.resync_generation(), 1);
        assert_eq!(f.lvc.latest(0).seq(), 2);
        // 2 is covered by the snapshot; 3 follows; B starts at 1.
        let n = batch(&mut f.edge, 7, None, &[tick(0, 2), tick(0, 3), tick(1, 1)]);
        assert_eq!(n, 2);
        assert_eq!(drain(&mut f.reader), [(0, 3, false), (1, 1, false)]);
        assert_eq!(f.stats.bus.duplicates.load(Relaxed), 1);
        // A jump: published flagged snapshot, and a resync is wanted.
        batch(&mut f.edge, 7, None, &[tick(0, 6)]);
        assert_eq!(drain(&mut f.reader), [(0, 6, true)]);
        assert_eq!(f.edge.wants_sync(), Some(SyncReason::Gap));
        assert_eq!(f.stats.bus.gap_ticks.load(Relaxed), 2);
        // A new symbol announced with its first tick.
        batch(&mut f.edge, 7, Some((2, "C")), &[tick(2, 1)]);
        assert_eq!(f.symbols.id_of("C"), Some(2));
        assert_eq!(drain(&mut f.reader), [(2, 1, false)]);
        // An id never announced: dropped and counted.
        batch(&mut f.edge, 7, None, &[tick(9, 1)]);
        assert_eq!(f.stats.bus.unknown_symbols.load(Relaxed), 1);
        assert!(drain(&mut f.reader).is_empty());
    }

    #[test]
    fn malformed_messages_are_counted_and_skipped() {
        let mut f = fixture();
        f.edge.apply_snapshot(&[page(1, &["A"], vec![])]).unwrap();
        let n = f.edge.on_batch(Headers::default(), b"junk", 1);
        assert_eq!(n, 0);
        let e = "1".to_string();
        let n = f.edge.on_batch(
            Headers {
                epoch: Some(&e),
                term: Some(&e),
                ..Headers::default()
            },
            &[0u8; 40],
            1,
        );
        assert_eq!(n, 0);
        assert_eq!(f.stats.bus.malformed.load(Relaxed), 2);
        assert_eq!(batch(&mut f.edge, 1, None, &[tick(0, 1)]), 1, "still works");
    }

    #[test]
    fn an_ingest_restart_starts_sequences_over() {
        let mut f = fixture();
        f.edge
            .apply_snapshot(&[page(1, &["A", "B"], vec![tick(0, 50), tick(1, 9)])])
            .unwrap();
        drain(&mut f.reader);
        // The restarted ingest knows B first, and A has not ticked yet.
        assert_eq!(batch(&mut f.edge, 2, Some((0, "B,A")), &[tick(0, 1)]), 0);
        assert_eq!(f.edge.wants_sync(), Some(SyncReason::Restart));
        f.edge
            .apply_snapshot(&[page(2, &["B", "A"], vec![tick(0, 1)])])
            .unwrap();
        assert_eq!(
            f.ring.restart_generation(),
            2,
            "the cores reset their numbers"
        );
        assert_eq!(f.stats.bus.restarts.load(Relaxed), 1);
        // Local ids keep their names: the ingest's B (0) is this node's 1.
        assert_eq!(f.lvc.latest(1).seq(), 1);
        assert_eq!(f.lvc.latest(0).trade, None, "A's old value is forgotten");
        assert_eq!(batch(&mut f.edge, 2, None, &[tick(1, 1), tick(0, 2)]), 2);
        assert_eq!(drain(&mut f.reader), [(0, 1, false), (1, 2, false)]);
    }

    #[test]
    fn reconnect_and_bad_snapshots() {
        let mut f = fixture();
        f.edge.on_reconnect();
        assert_eq!(f.edge.wants_sync(), Some(SyncReason::Start));
        assert!(f.edge.apply_snapshot(&[]).is_err());
        let mut second = page(2, &["B"], vec![]);
        second.from = 1;
        assert!(f
            .edge
            .apply_snapshot(&[page(1, &["A"], vec![]), second.clone()])
            .is_err());
        second.epoch = 1;
        second.from = 2;
        assert!(f
            .edge
            .apply_snapshot(&[page(1, &["A"], vec![]), second])
            .is_err());
        assert_eq!(f.stats.bus.synced.load(Relaxed), 0);
        f.edge
            .apply_snapshot(&[page(1, &["A"], vec![tick(0, 3)])])
            .unwrap();
        f.edge.on_reconnect();
        assert_eq!(f.edge.wants_sync(), Some(SyncReason::Reconnect));
        // Same epoch: values only move forward, no restart mark.
        f.edge
            .apply_snapshot(&[page(1, &["A"], vec![tick(0, 2)])])
            .unwrap();
        assert_eq!(f.lvc.latest(0).seq(), 3);
        assert_eq!(
            (f.ring.resync_generation(), f.ring.restart_generation()),
            (2, 1)
        );
    }

    #[test]
    fn a_new_term_continues_and_an_old_one_is_fenced() {
        let mut f = fixture();
        f.edge
            .apply_snapshot(&[page(5, &["A", "B"], vec![tick(0, 10), tick(1, 3)])])
            .unwrap();
        assert_eq!(batch(&mut f.edge, 5, None, &[tick(0, 11)]), 1);
        // Term 2 took over: its ids are its own (B is its 0), announced from 0, and
        // its first value of A comes flagged snapshot (it stands for 4 updates).
        let first = Tick {
            flags: Flags::SNAPSHOT,
            count: 4,
            ..tick(1, 12)
        };
        let n = batch_term(&mut f.edge, 5, 2, Some((0, "B,A")), &[first, tick(0, 4)]);
        assert_eq!(n, 2);
        let got: Vec<_> = std::iter::from_fn(|| match f.reader.read() {
            Read::Tick(t) => Some(t),
            _ => None,
        })
        .collect();
        assert_eq!(
            got.iter()
                .map(|t| (t.symbol_id, t.seq, t.flags, t.count))
                .collect::<Vec<_>>(),
            [
                (0, 11, Flags::empty(), 1),
                (0, 12, Flags::SNAPSHOT, 4),
                (1, 4, Flags::empty(), 1)
            ],
            "no reset: the numbers go on"
        );
        assert_eq!(f.edge.wants_sync(), None);
        assert_eq!(f.edge.term(), 2);
        assert_eq!(f.stats.bus.handovers.load(Relaxed), 1);
        // The old leader wakes up and publishes A 12 again: dropped, counted.
        assert_eq!(batch_term(&mut f.edge, 5, 1, None, &[tick(0, 12)]), 0);
        assert_eq!(f.stats.bus.stale.load(Relaxed), 1);
        assert!(drain(&mut f.reader).is_empty());
        assert_eq!(f.edge.wants_sync(), None, "a stale message is no gap");
        // So is its snapshot, or anything from an older epoch.
        assert!(matches!(
            f.edge.apply_snapshot(&[page(5, &["A"], vec![tick(0, 99)])]),
            Err(SnapshotError::Stale { epoch: 5, term: 1 })
        ));
        assert_eq!(batch_term(&mut f.edge, 4, 9, None, &[tick(0, 13)]), 0);
        assert_eq!(f.stats.bus.stale.load(Relaxed), 2);
        assert_eq!(f.lvc.latest(0).seq(), 12);
    }

    #[test]
    fn a_node_that_stepped_down_takes_the_new_numbers() {
        let mut f = fixture();
        f.edge
            .apply_snapshot(&[page(5, &["A"], vec![tick(0, 10)])])
            .unwrap();
        // It led and sequenced A up to 30, of which the cluster saw up to 12.
        f.edge.led(5, 2);
        for s in 11..=30 {
            f.edge.sequencer_mut().publish_sequenced(&tick(0, s));
        }
        assert!(f.edge.in_sync());
        let restarts = f.ring.restart_generation();
        f.edge.stepped_down();
        assert!(!f.edge.in_sync());
        assert_eq!(f.edge.wants_sync(), Some(SyncReason::SteppedDown));
        let mut p = page(5, &["A"], vec![tick(0, 12)]);
        p.term = 3;
        f.edge.apply_snapshot(&[p]).unwrap();
        assert_eq!(f.lvc.latest(0).seq(), 12, "its own 30 is forgotten");
        assert_eq!(
            f.ring.restart_generation(),
            restarts + 1,
            "the cores start over"
        );
        assert_eq!(
            batch_term(&mut f.edge, 5, 3, Some((0, "A")), &[tick(0, 13)]),
            1
        );
    }

    #[test]
    fn lost_messages_ask_for_a_snapshot() {
        let mut f = fixture();
        f.edge.on_lost();
        assert_eq!(f.edge.wants_sync(), Some(SyncReason::Start));
        f.edge.apply_snapshot(&[page(1, &["A"], vec![])]).unwrap();
        assert!(f.edge.in_sync());
        f.edge.on_lost();
        assert_eq!(f.edge.wants_sync(), Some(SyncReason::Gap));
        assert!(!f.edge.in_sync());
    }
}
