//! An ingest node of a cluster, on its sequencer thread: it leads (sequences its feeds
//! and hands every batch to the bus) or stands by (follows the leader's stream).
//!
//! [`Ingest`] is the sans-IO state machine; [`run`] is the sequencer thread's loop,
//! taking feed ticks from the feeds' channel and [`Command`]s from the `bus-publisher`
//! thread (which runs the election, see [`super::election`]).
//!
//! - **Standby.** The leader's messages go through the same [`Edge`] state machine as
//!   on an edge node: the ring, the last-value cache and every symbol's last sequence
//!   number follow the leader, so this node's own clients see the cluster's numbers.
//!   The node's own feeds run too (a takeover must not wait for a venue connection),
//!   but their ticks are not published: each symbol keeps a *shadow* of its own
//!   updates newer (by `ts_event`) than the leader's last one of that kind, and how
//!   many they were.
//! - **Takeover** ([`Ingest::lead`]). When the follower is in sync (a snapshot
//!   applied, no gap, no lost message since), the node continues every symbol's
//!   sequence from the last one the leader published, under the same epoch: edges and
//!   clients see no reset. Each shadowed symbol's latest own value is published first,
//!   flagged snapshot, with `count` = the updates it stands for: the updates the old
//!   leader took in but never published, and those that arrived during the switch, are
//!   lost, and this is how they are counted (`bus.handover_ticks`) and shown. A
//!   follower that is not in sync cannot know the last numbers: the node starts a new
//!   epoch (numbers from 1), and the edges resynchronise as after an ingest restart.
//!   Either way the next batch announces every symbol name from id 0, since the edges
//!   knew the old leader's ids.
//! - **Step-down** ([`Ingest::step_down`]): another node took the lease. What this
//!   node sequenced since its last published batch may never have reached the bus, so
//!   its numbers cannot be trusted: it follows the new leader from a snapshot that
//!   replaces them ([`Edge::stepped_down`]); its own clients get the new leader's
//!   values flagged snapshot.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crossbeam_channel::Receiver;

use super::codec::Headers;
use super::edge::{Edge, SnapshotError, SnapshotPage};
use crate::clock::now_ns;
use crate::feed::FeedTick;
use crate::park::Parker;
use crate::stats::Stats;
use crate::tick::{Body, Flags, Kind, Tick};

/// What the `bus-publisher` thread tells the sequencer thread, in order.
#[derive(Debug)]
pub enum Command {
    /// A message from the ticks subscription (standby).
    Batch(async_nats::Message),
    /// A snapshot fetched from the leader (standby).
    Snapshot(Vec<SnapshotPage>),
    /// The NATS connection came back.
    Reconnected,
    /// This node took the lease.
    Lead {
        /// Its term.
        term: u64,
        /// The epoch of the lease value it replaced (0: none).
        previous_epoch: u64,
    },
    /// Another node took the lease.
    StepDown,
}

/// A symbol's own updates of one kind that the leader has not published.
#[derive(Debug, Clone, Copy, Default)]
struct Pending {
    /// `ts_event` of the leader's last update of this kind.
    leader_ts: u64,
    /// The latest own update newer than that: its `ts_event` and values.
    latest: Option<(u64, Body)>,
    /// Own updates newer than the leader's, since it last published this kind.
    count: u32,
}

/// Per symbol: trade, quote.
type Shadow = [Pending; 2];

/// A kind's place in a [`Shadow`]; `None` for book changes, which a standby does not
/// shadow (a takeover publishes no book: book subscribers resynchronise from the
/// changes that follow, see `docs/architecture.md`, Order books).
fn slot(kind: Kind) -> Option<usize> {
    match kind {
        Kind::Trade => Some(0),
        Kind::Quote => Some(1),
        Kind::Book => None,
    }
}

/// What a takeover did ([`Ingest::lead`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Takeover {
    /// The sequences continue under the same epoch (false: a new epoch).
    pub continued: bool,
    /// The epoch published under from now on.
    pub epoch: u64,
    /// Symbols whose first value went out flagged snapshot.
    pub flagged_symbols: usize,
    /// Own updates those values stand for.
    pub merged_ticks: u64,
}

/// The state of an ingest node (see the module docs).
#[derive(Debug)]
pub struct Ingest {
    follower: Edge,
    stats: Arc<Stats>,
    /// The term this node leads under.
    leading: Option<u64>,
    /// By this node's symbol id.
    shadow: Vec<Shadow>,
}

impl Ingest {
    /// A standby following through `follower` (which owns the node's sequencer, with
    /// the bus sink attached), counting into `stats.bus`.
    pub fn new(follower: Edge, stats: Arc<Stats>) -> Ingest {
        Ingest {
            follower,
            stats,
            leading: None,
            shadow: Vec::new(),
        }
    }

    /// The term this node leads under, if it leads.
    pub fn leading(&self) -> Option<u64> {
        self.leading
    }

    /// The follower (an edge's state machine).
    pub fn follower(&self) -> &Edge {
        &self.follower
    }

    /// One tick from this node's feeds, received at `now_ns`.
    pub fn on_feed(&mut self, ft: &FeedTick, now_ns: u64) {
        let seq = self.follower.sequencer_mut();
        let id = match seq.intern(ft.symbol) {
            Ok(id) => id,
            Err(e) => return seq.rejected(ft, &e),
        };
        if self.leading.is_some() {
            seq.sequence_id(id, ft.ts_event, ft.body, now_ns, Flags::empty(), 1);
            return;
        }
        let idx = id as usize;
        if idx >= self.shadow.len() {
            self.shadow.resize(idx + 1, Shadow::default());
        }
        let Some(slot) = slot(ft.body.kind()) else {
            return;
        };
        let p = &mut self.shadow[idx][slot];
        if ft.ts_event > p.leader_ts {
            p.latest = Some((ft.ts_event, ft.body));
            p.count = p.count.saturating_add(1);
        }
    }

    /// The leader published `tick` (this node's id): own updates it covers are no
    /// longer pending.
    fn leader_published(shadow: &mut Vec<Shadow>, tick: &Tick) {
        let idx = tick.symbol_id as usize;
        if idx >= shadow.len() {
            shadow.resize(idx + 1, Shadow::default());
        }
        let Some(slot) = slot(tick.body.kind()) else {
            return;
        };
        let p = &mut shadow[idx][slot];
        p.leader_ts = p.leader_ts.max(tick.ts_event);
        if p.latest.is_some_and(|(ts, _)| ts <= p.leader_ts) {
            p.latest = None;
            p.count = 0;
        }
    }

    /// A message from the leader; returns the ticks that went into the ring. Ignored
    /// while this node leads (its subscription is being dropped).
    pub fn on_batch(&mut self, headers: Headers<'_>, payload: &[u8], now_ns: u64) -> usize {
        if self.leading.is_some() {
            return 0;
        }
        let shadow = &mut self.shadow;
        self.follower.on_batch_with(headers, payload, now_ns, |t| {
            Self::leader_published(shadow, t)
        })
    }

    /// A snapshot from the leader (standby).
    pub fn on_snapshot(&mut self, pages: &[SnapshotPage]) -> Result<(), SnapshotError> {
        if self.leading.is_some() {
            return Ok(());
        }
        let shadow = &mut self.shadow;
        self.follower
            .apply_snapshot_with(pages, |t| Self::leader_published(shadow, t))
    }

    /// The NATS connection came back.
    pub fn on_reconnect(&mut self) {
        if self.leading.is_none() {
            self.follower.on_reconnect();
        }
    }

    /// Messages were lost on their way to the follower (see [`Edge::on_lost`]).
    pub fn on_lost(&mut self) {
        if self.leading.is_none() {
            self.follower.on_lost();
        }
    }

    /// This node took the lease under `term` at `now_ns` (see the module docs);
    /// `previous_epoch` is the epoch of the lease value it replaced.
    pub fn lead(&mut self, term: u64, previous_epoch: u64, now_ns: u64) -> Takeover {
        let continued = self.follower.in_sync();
        let epoch = match self.follower.epoch() {
            Some(e) if continued => e,
            followed => now_ns
                .max(previous_epoch.saturating_add(1))
                .max(followed.map_or(0, |e| e.saturating_add(1))),
        };
        if !continued {
            // Numbers start over; this node's own clients are told (restart mark).
            self.follower.forget_all();
        }
        self.follower.led(epoch, term);
        let seq = self.follower.sequencer_mut();
        seq.discard_batch();
        seq.announce_all();
        let mut flagged_symbols = 0;
        let mut merged_ticks = 0u64;
        for (id, s) in self.shadow.iter().enumerate() {
            let mut any = false;
            for p in s {
                if let Some((ts_event, body)) = p.latest {
                    seq.sequence_id(id as u32, ts_event, body, now_ns, Flags::SNAPSHOT, p.count);
                    merged_ticks += u64::from(p.count);
                    any = true;
                }
            }
            flagged_symbols += usize::from(any);
        }
        self.shadow.clear();
        seq.hand_to_sink();
        self.leading = Some(term);
        let bus = &self.stats.bus;
        bus.takeovers.fetch_add(1, Relaxed);
        if !continued {
            bus.new_epoch_takeovers.fetch_add(1, Relaxed);
        }
        bus.handover_ticks.fetch_add(merged_ticks, Relaxed);
        bus.last_takeover_ns.store(now_ns, Relaxed);
        tracing::warn!(
            term,
            epoch,
            continued,
            flagged_symbols,
            merged_ticks,
            "bus: this ingest leads now"
        );
        Takeover {
            continued,
            epoch,
            flagged_symbols,
            merged_ticks,
        }
    }

    /// Another node took the lease (see the module docs).
    pub fn step_down(&mut self) {
        if self.leading.take().is_some() {
            self.follower.sequencer_mut().discard_batch();
            self.shadow.clear();
            self.follower.stepped_down();
            tracing::warn!("bus: another ingest took the lease; this one follows it");
        }
    }

    /// Ends one round of the loop: a leader hands the batch to the bus.
    pub fn end_batch(&mut self) {
        let seq = self.follower.sequencer_mut();
        seq.flush_counts();
        if self.leading.is_some() {
            seq.hand_to_sink();
        } else {
            seq.discard_batch();
        }
    }

    /// Takes one command; returns whether the writer cores must be woken even if the
    /// ring did not move (a snapshot or a restart mark).
    pub fn on_command(&mut self, command: Command, now_ns: u64) -> bool {
        match command {
            Command::Batch(msg) => {
                self.on_batch(super::edge::headers(&msg), &msg.payload, now_ns);
                false
            }
            Command::Snapshot(pages) => match self.on_snapshot(&pages) {
                Ok(()) => {
                    tracing::info!(epoch = ?self.follower.epoch(), term = self.follower.term(), "bus: standby synchronised from the leader's snapshot");
                    true
                }
                Err(e) => {
                    self.stats.bus.snapshot_failures.fetch_add(1, Relaxed);
                    tracing::warn!(error = %e, "bus: snapshot not applied");
                    false
                }
            },
            Command::Reconnected => {
                self.on_reconnect();
                false
            }
            Command::Lead {
                term,
                previous_epoch,
            } => {
                self.lead(term, previous_epoch, now_ns);
                true
            }
            Command::StepDown => {
                self.step_down();
                false
            }
        }
    }
}

/// Most commands taken in one round of [`run`].
const MAX_COMMANDS: usize = 64;

/// The sequencer thread of an ingest node: until every feed has dropped its sender,
/// takes a batch of feed ticks and of commands, then hands the batch to the bus (when
/// leading) and wakes the parked cores.
pub fn run(
    mut ingest: Ingest,
    feeds: crate::feed::FeedReceiver,
    mut commands: Receiver<Command>,
    cores: Vec<Arc<Parker>>,
) {
    let stats = ingest.stats.clone();
    let mut lost_seen = stats.bus.lost.load(Relaxed);
    loop {
        let first = crossbeam_channel::select! {
            recv(feeds) -> ft => match ft {
                Ok(ft) => Ok(ft),
                Err(_) => break,
            },
            recv(commands) -> c => match c {
                Ok(c) => Err(c),
                // The bus thread has stopped (shutdown): go on with the feeds alone.
                Err(_) => {
                    commands = crossbeam_channel::never();
                    continue;
                }
            },
        };
        // One clock read per round, as in `Sequencer::run`: every tick of it was in
        // the channel by then, or arrived while the round was taken; a tick stamped
        // after that read makes it read again (`ts_recv` never before `ts_event`).
        let mut now = now_ns();
        let mut force = false;
        match first {
            Ok(ft) => ingest.on_feed(&ft, now),
            Err(c) => force |= ingest.on_command(c, now),
        }
        for _ in 1..crate::sequencer::MAX_BATCH {
            match feeds.try_recv() {
                Ok(ft) => {
                    if ft.ts_event > now {
                        now = now_ns();
                    }
                    ingest.on_feed(&ft, now);
                }
                Err(_) => break,
            }
        }
        for _ in 0..MAX_COMMANDS {
            match commands.try_recv() {
                Ok(c) => force |= ingest.on_command(c, now),
                Err(_) => break,
            }
        }
        let lost = stats.bus.lost.load(Relaxed);
        if lost != lost_seen {
            lost_seen = lost;
            ingest.on_lost();
        }
        ingest.end_batch();
        stats.sequencer.batches.fetch_add(1, Relaxed);
        for core in &cores {
            core.wake(force);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::codec;
    use crate::lvc::LastValueCache;
    use crate::ring::{Read, Reader, Ring};
    use crate::sequencer::{Batch, BatchSink, Sequencer};
    use crate::symbol::{Symbol, SymbolTable};

    /// What the sink saw of each batch: (symbol id, seq, flags, count) and the first
    /// announced id with the names.
    type Seen = (Vec<(u32, u64, Flags, u32)>, u32, Vec<String>);

    #[derive(Default, Clone)]
    struct Collect(Arc<std::sync::Mutex<Vec<Seen>>>);

    impl BatchSink for Collect {
        fn publish(&mut self, b: &Batch<'_>) {
            let ticks = b
                .ticks
                .iter()
                .map(|t| (t.symbol_id, t.seq, t.flags, t.count))
                .collect();
            let names = b.new_symbols.iter().map(|s| s.to_string()).collect();
            self.0
                .lock()
                .unwrap()
                .push((ticks, b.new_symbols_from, names));
        }
    }

    struct Fixture {
        ingest: Ingest,
        sink: Collect,
        reader: Reader,
        ring: Arc<Ring>,
        stats: Arc<Stats>,
        lvc: Arc<LastValueCache>,
    }

    fn fixture() -> Fixture {
        let symbols = Arc::new(SymbolTable::new(16));
        let (lvc_w, lvc) = LastValueCache::new(16);
        let (publisher, ring) = Ring::new(64);
        let stats = Arc::new(Stats {
            bus: crate::bus::BusStatus::new(crate::bus::Role::Ingest),
            ..Stats::default()
        });
        let sink = Collect::default();
        let seq = Sequencer::new(symbols.clone(), lvc_w, publisher, Arc::default())
            .with_sink(Box::new(sink.clone()));
        let edge = Edge::new(seq, symbols, stats.clone());
        Fixture {
            ingest: Ingest::new(edge, stats.clone()),
            sink,
            reader: ring.reader(),
            ring,
            stats,
            lvc,
        }
    }

    fn feed(name: &str, ts: u64, price: i64) -> FeedTick {
        FeedTick {
            symbol: Symbol::new(name).unwrap(),
            ts_event: ts,
            body: Body::trade(price, 1),
        }
    }

    /// A tick of the leader, with the leader's ids (A = 0, B = 1).
    fn leader_tick(id: u32, seq: u64, ts: u64) -> Tick {
        Tick {
            symbol_id: id,
            seq,
            ts_event: ts,
            ts_recv: ts,
            flags: Flags::empty(),
            count: 1,
            body: Body::trade(seq as i64, 1),
        }
    }

    fn from_leader(f: &mut Fixture, announce: Option<&str>, ticks: &[Tick]) -> usize {
        let mut payload = Vec::new();
        codec::encode_ticks(ticks.iter(), 0, &mut payload);
        f.ingest.on_batch(
            Headers {
                epoch: Some("9"),
                term: Some("1"),
                symbols_from: announce.map(|_| "0"),
                symbols: announce,
                symbols_total: None,
            },
            &payload,
            1,
        )
    }

    fn snapshot(ticks: Vec<Tick>) -> Vec<SnapshotPage> {
        vec![SnapshotPage {
            epoch: 9,
            term: 1,
            from: 0,
            names: vec![Symbol::new("A").unwrap(), Symbol::new("B").unwrap()],
            total: 2,
            ticks,
        }]
    }

    fn drain(r: &mut Reader) -> Vec<(u32, u64, Flags, u32)> {
        let mut out = Vec::new();
        while let Read::Tick(t) = r.read() {
            out.push((t.symbol_id, t.seq, t.flags, t.count));
        }
        out
    }

    #[test]
    fn a_standby_follows_and_continues_the_sequences() {
        let mut f = fixture();
        // The node's own feed knows B first: its local ids differ from the leader's.
        f.ingest.on_feed(&feed("B", 5, 1), 5);
        f.ingest
            .on_snapshot(&snapshot(vec![
                leader_tick(0, 7, 10),
                leader_tick(1, 3, 10),
            ]))
            .unwrap();
        assert_eq!(from_leader(&mut f, None, &[leader_tick(0, 8, 20)]), 1);
        f.ingest.end_batch();
        // Local ids: B = 0, A = 1.
        assert_eq!(drain(&mut f.reader), [(1, 8, Flags::empty(), 1)]);
        assert!(
            f.sink.0.lock().unwrap().is_empty(),
            "a standby publishes nothing"
        );
        // Own updates: A at 15 (the leader had 20: covered), B at 30, 31 (newer).
        for (n, ts) in [("A", 15), ("B", 30), ("B", 31)] {
            f.ingest.on_feed(&feed(n, ts, ts as i64), ts);
        }
        let restarts = f.ring.restart_generation();
        let t = f.ingest.lead(2, 9, 1_000);
        assert_eq!(
            t,
            Takeover {
                continued: true,
                epoch: 9,
                flagged_symbols: 1,
                merged_ticks: 2
            }
        );
        // B continues from the leader's 3, flagged, standing for 2 updates; the batch
        // announces every name from 0.
        let seen = f.sink.0.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![(
                vec![(0, 4, Flags::SNAPSHOT, 2)],
                0,
                vec!["B".into(), "A".into()]
            )]
        );
        assert_eq!(f.ring.restart_generation(), restarts, "no reset");
        assert_eq!(f.lvc.latest(0).trade.map(|t| t.ts_event), Some(31));
        // Then live, continuing: A after the leader's 8.
        f.ingest.on_feed(&feed("A", 40, 1), 40);
        f.ingest.end_batch();
        let seen = f.sink.0.lock().unwrap().clone();
        assert_eq!(seen[1].0, vec![(1, 9, Flags::empty(), 1)]);
        let bus = &f.stats.bus;
        assert_eq!(
            (
                bus.takeovers.load(Relaxed),
                bus.handover_ticks.load(Relaxed),
                bus.term.load(Relaxed)
            ),
            (1, 2, 2)
        );
        // The old leader's late messages reach nothing while this node leads.
        assert_eq!(from_leader(&mut f, None, &[leader_tick(0, 9, 50)]), 0);
    }

    #[test]
    fn a_standby_out_of_sync_starts_a_new_epoch() {
        let mut f = fixture();
        f.ingest
            .on_snapshot(&snapshot(vec![leader_tick(0, 7, 10)]))
            .unwrap();
        // A message was lost on the way: the last numbers are unknown.
        f.ingest.on_lost();
        f.ingest.on_feed(&feed("A", 50, 1), 50);
        let restarts = f.ring.restart_generation();
        let t = f.ingest.lead(2, 9, 1_000);
        assert!(!t.continued);
        assert_eq!(t.epoch, 1_000);
        assert_eq!(
            f.ring.restart_generation(),
            restarts + 1,
            "the cores start over"
        );
        let seen = f.sink.0.lock().unwrap().clone();
        assert_eq!(seen[0].0, vec![(0, 1, Flags::SNAPSHOT, 1)], "from 1");
        assert_eq!(f.stats.bus.new_epoch_takeovers.load(Relaxed), 1);
        // A new epoch is always later than the one it replaces.
        let mut g = fixture();
        assert_eq!(g.ingest.lead(1, 5_000, 1_000).epoch, 5_001);
    }

    #[test]
    fn a_leader_that_steps_down_follows_the_new_numbers() {
        let mut f = fixture();
        f.ingest
            .on_snapshot(&snapshot(vec![leader_tick(0, 7, 10)]))
            .unwrap();
        f.ingest.lead(2, 9, 100);
        for ts in 0..5 {
            f.ingest.on_feed(&feed("A", 200 + ts, 1), 200 + ts);
        }
        f.ingest.end_batch();
        assert_eq!(f.lvc.latest(0).seq(), 12);
        let restarts = f.ring.restart_generation();
        f.ingest.step_down();
        assert_eq!(f.ingest.leading(), None);
        assert!(!f.ingest.follower().in_sync());
        // Its own feed no longer publishes.
        f.ingest.on_feed(&feed("A", 300, 1), 300);
        f.ingest.end_batch();
        assert_eq!(f.sink.0.lock().unwrap().len(), 2);
        // The new leader (term 3) published A up to 9 only: this node takes its numbers.
        let mut pages = snapshot(vec![leader_tick(0, 9, 250)]);
        pages[0].term = 3;
        f.ingest.on_snapshot(&pages).unwrap();
        assert_eq!(f.lvc.latest(0).seq(), 9);
        assert_eq!(f.ring.restart_generation(), restarts + 1);
    }
}
