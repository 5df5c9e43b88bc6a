//! `Sequencer`: the single writer of the ring and of the last-value cache.
//!
//! It takes [`FeedTick`]s from every feed through one bounded crossbeam channel,
//! interns the symbol, stamps `ts_recv`, assigns the symbol's next sequence number,
//! updates the last-value cache, publishes into the ring, and after each batch wakes
//! the writer cores that are parked. [`Sequencer::sequence`] is the whole logic without
//! the channel or the clock, so it is tested directly.
//!
//! Scale-out adds two things (see [`crate::bus`]): on an ingest node, a [`BatchSink`]
//! gets every batch once it is published, to put it on the bus; on an edge node, no
//! feed runs and [`Sequencer::publish_sequenced`] publishes ticks that already carry
//! the ingest's sequence numbers, checking that each symbol's numbers follow on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::book::{Applied, Book, Level, Side};
use crate::clock::now_ns;
use crate::feed::synthetic::LocalFeed;
use crate::feed::FeedTick;
use crate::lvc::LvcWriter;
use crate::park::Parker;
use crate::ring::Publisher;
use crate::symbol::{Symbol, SymbolError, SymbolTable};
use crate::tick::{Body, Flags, Tick};

/// Most ticks taken from the channel before the cores are woken: bounds the delay a
/// burst adds to its first tick.
pub(crate) const MAX_BATCH: usize = 256;

/// One published batch, as handed to a [`BatchSink`].
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    /// The ticks, in publication order.
    pub ticks: &'a [Tick],
    /// Id of the first symbol in `new_symbols`.
    pub new_symbols_from: u32,
    /// Symbols interned since the previous batch, in id order (usually none): a
    /// receiver that knows every earlier id learns these ids' names.
    pub new_symbols: &'a [Symbol],
}

/// Receives every batch the sequencer publishes, in order, on the sequencer's thread:
/// an ingest node's way onto the bus, the recorder's way to disk. It must not block:
/// the sequencer waits for it.
pub trait BatchSink: Send {
    /// Takes one batch, after the ring and the cache have it.
    fn publish(&mut self, batch: &Batch<'_>);
}

/// How an already-sequenced tick followed its symbol's previous one
/// ([`Sequencer::publish_sequenced`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Continuity {
    /// The next sequence number: published as is.
    Next,
    /// Sequence numbers were skipped (`missed` of them): published flagged snapshot,
    /// since earlier updates were not delivered.
    Gap {
        /// Sequence numbers missing before this tick.
        missed: u64,
    },
    /// At or below the last sequence number published: already delivered (or covered
    /// by a snapshot), so dropped.
    Duplicate,
}

/// Counters of the sequencer, read by `/stats` and `/metrics`.
#[derive(Debug, Default)]
pub struct SequencerStats {
    /// Ticks sequenced and published.
    pub ticks: AtomicU64,
    /// Ticks dropped because their symbol could not be interned (table full).
    pub rejected: AtomicU64,
    /// Batches published (one core wake-up round each).
    pub batches: AtomicU64,
    /// Book changes published (level changes, evictions included).
    pub book_changes: AtomicU64,
    /// Book levels pushed out of a full side by a better one (`max_book_levels`); each
    /// is published as a removal.
    pub book_evicted: AtomicU64,
    /// Book changes not kept: a new level worse than every level of a full side.
    pub book_dropped: AtomicU64,
    /// Book changes that changed nothing (the removal of a level not held).
    pub book_unchanged: AtomicU64,
}

/// The sequencing state.
#[derive(Debug)]
pub struct Sequencer {
    symbols: Arc<SymbolTable>,
    /// Local copy of the name → id map, so the common case takes no lock.
    ids: HashMap<Symbol, u32>,
    /// Last sequence number per symbol id.
    seqs: Vec<u64>,
    /// Last book sequence number per symbol id: books are numbered apart from trades
    /// and quotes, so that each stream is gap-checkable on its own.
    book_seqs: Vec<u64>,
    /// Each symbol's current book (made on its first change), bounded like the cache's.
    books: Vec<Option<Book>>,
    lvc: LvcWriter,
    ring: Publisher,
    stats: Arc<SequencerStats>,
    /// Where each batch goes after publication (the bus of an ingest node, the
    /// recorder), in the order they were added.
    sinks: Vec<Box<dyn BatchSink>>,
    /// The current batch's ticks, kept only when there is a sink.
    batch: Vec<Tick>,
    /// Symbol ids below this were handed to the sink already.
    announced: usize,
    /// A symbol was interned since the last batch: the sink may need new names.
    announce_pending: bool,
    /// Scratch for the names of newly interned symbols.
    new_names: Vec<Symbol>,
    /// Ticks published in the current batch, not yet in `stats.ticks`.
    in_batch: u64,
    /// Of those, book changes, not yet in `stats.book_changes`.
    book_in_batch: u64,
}

impl std::fmt::Debug for dyn BatchSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BatchSink")
    }
}

impl Sequencer {
    /// A sequencer publishing into `ring` and `lvc`.
    pub fn new(
        symbols: Arc<SymbolTable>,
        lvc: LvcWriter,
        ring: Publisher,
        stats: Arc<SequencerStats>,
    ) -> Sequencer {
        Sequencer {
            symbols,
            ids: HashMap::new(),
            seqs: Vec::new(),
            book_seqs: Vec::new(),
            books: Vec::new(),
            lvc,
            ring,
            stats,
            sinks: Vec::new(),
            batch: Vec::new(),
            announced: 0,
            announce_pending: false,
            new_names: Vec::new(),
            in_batch: 0,
            book_in_batch: 0,
        }
    }

    /// Hands every batch to `sink` after publishing it (an ingest node's bus, the
    /// recorder), after the sinks added before it.
    pub fn with_sink(mut self, sink: Box<dyn BatchSink>) -> Sequencer {
        self.sinks.push(sink);
        self.batch.reserve(MAX_BATCH);
        self
    }

    /// Sequences one feed tick received at `ts_recv`: returns the tick as published
    /// (for a book change, the last of the ticks it published; `None` when it changed
    /// nothing).
    pub fn sequence(&mut self, ft: &FeedTick, ts_recv: u64) -> Result<Option<Tick>, SymbolError> {
        let t = self.sequence_one(ft, ts_recv)?;
        self.flush_counts();
        Ok(t)
    }

    /// [`Sequencer::sequence`] without the shared counter (the run loop adds a
    /// batch's count once, [`Sequencer::flush_counts`]).
    fn sequence_one(&mut self, ft: &FeedTick, ts_recv: u64) -> Result<Option<Tick>, SymbolError> {
        let id = self.intern(ft.symbol)?;
        Ok(self.sequence_id(id, ft.ts_event, ft.body, ts_recv, Flags::empty(), 1))
    }

    /// Adds the ticks published since the last call to the shared counter.
    pub fn flush_counts(&mut self) {
        if self.in_batch > 0 {
            self.stats.ticks.fetch_add(self.in_batch, Ordering::Relaxed);
            self.in_batch = 0;
        }
        if self.book_in_batch > 0 {
            self.stats
                .book_changes
                .fetch_add(self.book_in_batch, Ordering::Relaxed);
            self.book_in_batch = 0;
        }
    }

    /// The id of `symbol`, interning it if it is new.
    pub fn intern(&mut self, symbol: Symbol) -> Result<u32, SymbolError> {
        match self.ids.get(&symbol) {
            Some(&id) => Ok(id),
            None => {
                let id = self.symbols.intern(symbol)?;
                self.ids.insert(symbol, id);
                self.announce_pending = true;
                Ok(id)
            }
        }
    }

    /// Gives `body` the next sequence number of symbol `id` and publishes it with
    /// `flags` and `count` (a tick that stands for `count` updates): what
    /// [`Sequencer::sequence`] does once the symbol is interned. A book change goes to
    /// [`Sequencer::sequence_book`].
    pub fn sequence_id(
        &mut self,
        id: u32,
        ts_event: u64,
        body: Body,
        ts_recv: u64,
        flags: Flags,
        count: u32,
    ) -> Option<Tick> {
        if let Body::Book {
            side, price, size, ..
        } = body
        {
            return self.sequence_book(id, ts_event, side, price, size, ts_recv);
        }
        let idx = id as usize;
        if idx >= self.seqs.len() {
            self.seqs.resize(idx + 1, 0);
        }
        self.seqs[idx] += 1;
        let tick = Tick {
            symbol_id: id,
            seq: self.seqs[idx],
            ts_event,
            ts_recv,
            flags,
            count,
            body,
        };
        // Cache first, ring second: a reader that resynchronises from the cache after
        // a lap then never misses a tick that was already in the ring.
        self.lvc.update(&tick);
        self.ring.publish(&tick);
        self.in_batch += 1;
        if !self.sinks.is_empty() {
            self.batch.push(tick);
        }
        Some(tick)
    }

    /// Applies one level change to symbol `id`'s book and publishes what it changed:
    /// the change itself, and the removal of a level it pushed out of a full side, each
    /// with the symbol's next book sequence number. The cached book is written first,
    /// then the ring, as for trades and quotes. Returns the last tick published;
    /// `None` (counted) when the change changed nothing or was dropped at the bound.
    pub fn sequence_book(
        &mut self,
        id: u32,
        ts_event: u64,
        side: Side,
        price: i64,
        size: i64,
        ts_recv: u64,
    ) -> Option<Tick> {
        let idx = id as usize;
        if idx >= self.books.len() {
            self.books.resize_with(idx + 1, || None);
            self.book_seqs.resize(idx + 1, 0);
        }
        let max = self.lvc.cache().max_book_levels();
        let book = self.books[idx].get_or_insert_with(|| Book::new(max));
        let (new_level, evicted) = match book.apply(side, price, size) {
            Applied::Set { new_level, evicted } => (new_level, evicted),
            Applied::Removed => (false, None),
            Applied::Unchanged => {
                self.stats.book_unchanged.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            Applied::Dropped => {
                self.stats.book_dropped.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        };
        let first = self.book_seqs[idx] + 1;
        let changes = 1 + u64::from(evicted.is_some());
        self.book_seqs[idx] += changes;
        self.lvc
            .write_book(id, book, self.book_seqs[idx], ts_event, ts_recv);
        let change = |seq, side, price, size, new_level| Tick {
            symbol_id: id,
            seq,
            ts_event,
            ts_recv,
            flags: Flags::empty(),
            count: 1,
            body: Body::Book {
                side,
                price,
                size,
                new_level,
                group: (1, 0),
            },
        };
        let mut last = change(first, side, price, size.max(0), new_level);
        self.publish_book(&last);
        if let Some(p) = evicted {
            self.stats.book_evicted.fetch_add(1, Ordering::Relaxed);
            last = change(first + 1, side, p, 0, false);
            self.publish_book(&last);
        }
        Some(last)
    }

    fn publish_book(&mut self, tick: &Tick) {
        self.ring.publish(tick);
        self.in_batch += 1;
        self.book_in_batch += 1;
        if !self.sinks.is_empty() {
            self.batch.push(*tick);
        }
    }

    /// The last book sequence number published for `symbol_id` (0: none).
    pub fn last_book_seq(&self, symbol_id: u32) -> u64 {
        self.book_seqs.get(symbol_id as usize).copied().unwrap_or(0)
    }

    /// Publishes a tick that was sequenced elsewhere (an edge node's copy of its
    /// ingest's tick), keeping its sequence number: the cache, then the ring, like
    /// [`Sequencer::sequence`]. A tick that does not follow its symbol's last one is
    /// flagged snapshot when numbers were skipped, and dropped when it is not newer.
    pub fn publish_sequenced(&mut self, tick: &Tick) -> Continuity {
        if let Body::Book {
            side, price, size, ..
        } = tick.body
        {
            return self.publish_sequenced_book(tick, side, price, size);
        }
        let idx = tick.symbol_id as usize;
        if idx >= self.seqs.len() {
            self.seqs.resize(idx + 1, 0);
        }
        let last = self.seqs[idx];
        let continuity = if tick.seq <= last {
            return Continuity::Duplicate;
        } else if tick.seq == last + 1 {
            Continuity::Next
        } else {
            Continuity::Gap {
                missed: tick.seq - last - 1,
            }
        };
        self.seqs[idx] = tick.seq;
        let tick = match continuity {
            Continuity::Gap { .. } => Tick {
                flags: tick.flags.with(Flags::SNAPSHOT),
                ..*tick
            },
            _ => *tick,
        };
        self.lvc.update(&tick);
        self.ring.publish(&tick);
        self.stats.ticks.fetch_add(1, Ordering::Relaxed);
        continuity
    }

    /// [`Sequencer::publish_sequenced`] for a book change: applied to this node's copy
    /// of the book (with the source's bound, the source's changes keep it equal) and
    /// published with its number. Numbers skipped are reported as a gap, and the
    /// change is published as it is (an edge holds such a change back and joins it to
    /// its next snapshot's book instead: `bus::edge`).
    fn publish_sequenced_book(
        &mut self,
        tick: &Tick,
        side: Side,
        price: i64,
        size: i64,
    ) -> Continuity {
        let idx = tick.symbol_id as usize;
        if idx >= self.books.len() {
            self.books.resize_with(idx + 1, || None);
            self.book_seqs.resize(idx + 1, 0);
        }
        let last = self.book_seqs[idx];
        if tick.seq <= last {
            return Continuity::Duplicate;
        }
        let continuity = if tick.seq == last + 1 {
            Continuity::Next
        } else {
            Continuity::Gap {
                missed: tick.seq - last - 1,
            }
        };
        self.book_seqs[idx] = tick.seq;
        let max = self.lvc.cache().max_book_levels();
        let book = self.books[idx].get_or_insert_with(|| Book::new(max));
        book.apply(side, price, size);
        self.lvc
            .write_book(tick.symbol_id, book, tick.seq, tick.ts_event, tick.ts_recv);
        self.ring.publish(tick);
        self.stats.ticks.fetch_add(1, Ordering::Relaxed);
        self.stats.book_changes.fetch_add(1, Ordering::Relaxed);
        continuity
    }

    /// The last sequence number published for `symbol_id` (0: none).
    pub fn last_seq(&self, symbol_id: u32) -> u64 {
        self.seqs.get(symbol_id as usize).copied().unwrap_or(0)
    }

    /// Takes a value from a snapshot of the source (an edge resynchronising from its
    /// ingest): it becomes the cached value of its kind when it is newer than the
    /// cached one, and the symbol's sequence moves up to it. It does not go through the
    /// ring: readers pick it up from the cache after [`Sequencer::mark_resync`].
    pub fn restore(&mut self, tick: &Tick) {
        if tick.body.kind() == crate::tick::Kind::Book {
            return; // Books are restored whole: `restore_book`.
        }
        let cached = self.lvc.cache().get(tick.symbol_id, tick.body.kind());
        if cached.is_none_or(|c| c.seq < tick.seq) {
            self.lvc.restore(tick);
        }
        let idx = tick.symbol_id as usize;
        if idx >= self.seqs.len() {
            self.seqs.resize(idx + 1, 0);
        }
        self.seqs[idx] = self.seqs[idx].max(tick.seq);
    }

    /// Takes a book from a snapshot of the source (an edge resynchronising from its
    /// ingest): standing at book number `seq`, it replaces this node's book and becomes
    /// the cached one, unless this node's book is already further on (its changes
    /// since the snapshot came over the bus without a gap). Like
    /// [`Sequencer::restore`], it does not go through the ring.
    pub fn restore_book(
        &mut self,
        symbol_id: u32,
        seq: u64,
        ts_event: u64,
        ts_recv: u64,
        bids: &[Level],
        asks: &[Level],
    ) {
        let idx = symbol_id as usize;
        if idx >= self.books.len() {
            self.books.resize_with(idx + 1, || None);
            self.book_seqs.resize(idx + 1, 0);
        }
        if seq < self.book_seqs[idx] {
            return;
        }
        let mut book = Book::new(self.lvc.cache().max_book_levels());
        book.replace(bids, asks);
        self.lvc
            .write_book(symbol_id, &book, seq, ts_event, ts_recv);
        self.books[idx] = Some(book);
        self.book_seqs[idx] = seq;
    }

    /// Forgets everything about `symbol_id`'s values and sequence (the source restarted
    /// and numbers start over); [`Sequencer::restore`] then sets the new ones.
    pub fn forget(&mut self, symbol_id: u32) {
        self.lvc.clear(symbol_id);
        if let Some(s) = self.seqs.get_mut(symbol_id as usize) {
            *s = 0;
        }
        if let Some(s) = self.book_seqs.get_mut(symbol_id as usize) {
            *s = 0;
        }
        if let Some(b) = self.books.get_mut(symbol_id as usize) {
            *b = None;
        }
    }

    /// Tells the readers that the cache was resynchronised from outside the ring
    /// ([`Publisher::mark_resync`]); `restart` when sequence numbers started over.
    pub fn mark_resync(&mut self, restart: bool) {
        self.ring.mark_resync(restart);
    }

    /// Makes the next batch handed to the sinks announce every symbol from id 0 (a
    /// node that starts publishing on a bus whose receivers knew another publisher's ids).
    pub fn announce_all(&mut self) {
        self.announced = 0;
        self.announce_pending = true;
    }

    /// Drops the batch gathered for the sinks without handing it over (an ingest that
    /// does not lead publishes nothing).
    pub fn discard_batch(&mut self) {
        self.batch.clear();
    }

    /// Hands the batch published since the last call to the sinks, with the names of
    /// symbols interned meanwhile.
    pub fn hand_to_sink(&mut self) {
        if self.sinks.is_empty() {
            return;
        }
        self.new_names.clear();
        let from = self.announced;
        if self.announce_pending {
            self.announce_pending = false;
            self.symbols.names_since(from, &mut self.new_names);
            self.announced += self.new_names.len();
        }
        if !self.batch.is_empty() || !self.new_names.is_empty() {
            let batch = Batch {
                ticks: &self.batch,
                new_symbols_from: from as u32,
                new_symbols: &self.new_names,
            };
            for sink in &mut self.sinks {
                sink.publish(&batch);
            }
        }
        self.batch.clear();
    }

    /// Runs until every feed has dropped its sender (and `local` is done): takes a
    /// batch, sequences it, wakes the parked cores. `local` is a synthetic feed run on
    /// this thread: between ticks from the channel, the sequencer sleeps until its
    /// next burst is due and sequences the burst in place.
    pub fn run(
        mut self,
        rx: crate::feed::FeedReceiver,
        cores: Vec<Arc<Parker>>,
        mut local: Option<LocalFeed>,
    ) {
        use crate::feed::Received;
        let mut closed = false;
        loop {
            let deadline = local.as_mut().and_then(LocalFeed::deadline);
            let first = if closed {
                match deadline {
                    None => break,
                    Some(at) => {
                        if let Some(wait) = at.checked_duration_since(std::time::Instant::now()) {
                            std::thread::sleep(wait.min(std::time::Duration::from_millis(50)));
                        }
                        None
                    }
                }
            } else {
                match rx.recv_until(deadline) {
                    Received::Tick(t) => Some(t),
                    Received::Timeout => None,
                    Received::Closed => {
                        closed = true;
                        None
                    }
                }
            };
            // One clock read per batch: every tick of it was in the channel by then,
            // or arrived while the batch was taken. A tick stamped after that read
            // (the thread was descheduled mid-batch) reads the clock again, so
            // `ts_recv` never precedes a feed's own `ts_event` by our clock.
            let mut ts_recv = now_ns();
            let mut n = 0;
            if let Some(first) = first {
                self.ingest(&first, ts_recv);
                n += 1;
                while n < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(ft) => {
                            if ft.ts_event > ts_recv {
                                ts_recv = now_ns();
                            }
                            self.ingest(&ft, ts_recv);
                            n += 1;
                        }
                        Err(_) => break,
                    }
                }
            }
            if let Some(feed) = local.as_mut() {
                for ft in feed.take(MAX_BATCH) {
                    if ft.ts_event > ts_recv {
                        ts_recv = now_ns();
                    }
                    self.ingest(ft, ts_recv);
                    n += 1;
                }
            }
            if n == 0 {
                continue;
            }
            self.flush_counts();
            self.stats.batches.fetch_add(1, Ordering::Relaxed);
            self.hand_to_sink();
            let head = self.ring.ring().head();
            for core in &cores {
                core.published(head);
            }
        }
    }

    fn ingest(&mut self, ft: &FeedTick, ts_recv: u64) {
        if let Err(e) = self.sequence_one(ft, ts_recv) {
            self.rejected(ft, &e);
        }
    }

    /// Counts a feed tick whose symbol could not be interned (logged the first time).
    pub fn rejected(&self, ft: &FeedTick, e: &SymbolError) {
        if self.stats.rejected.fetch_add(1, Ordering::Relaxed) == 0 {
            tracing::warn!(symbol = %ft.symbol, error = %e, "tick rejected");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lvc::LastValueCache;
    use crate::ring::{Read, Ring};
    use crate::tick::Body;

    #[test]
    fn a_local_synthetic_feed_is_sequenced_on_the_thread_with_the_channel() {
        use crate::feed::synthetic::{Generator, SyntheticConfig};
        use crate::feed::{FeedContext, FeedStatus};
        let symbols = Arc::new(SymbolTable::new(8));
        let (lvc_w, _lvc) = LastValueCache::new(8);
        let (publisher, ring) = Ring::new(1024);
        let mut reader = ring.reader();
        let stats = Arc::new(SequencerStats::default());
        let s = Sequencer::new(symbols.clone(), lvc_w, publisher, stats.clone());
        let (tx, rx) = crate::feed::channel(16);
        let status = Arc::new(FeedStatus::new("synthetic"));
        // 300 ticks at 100,000 a second, in bursts of 500 µs: a few bursts, each over
        // in a moment.
        let cfg = SyntheticConfig {
            symbols: 4,
            rate: 100_000,
            limit: 300,
            burst_us: 500,
            ..SyntheticConfig::default()
        };
        let local = LocalFeed::new(
            &cfg,
            FeedContext {
                tx: tx.clone(),
                symbols: symbols.clone(),
                shutdown: Arc::default(),
                status: status.clone(),
            },
        );
        // Another feed's tick through the channel, then every sender gone: the run
        // ends once the local feed reached its limit.
        tx.send(FeedTick {
            symbol: Symbol::new("OTHER").unwrap(),
            ts_event: 1,
            body: Body::trade(1, 1),
        })
        .unwrap();
        drop(tx);
        s.run(rx, Vec::new(), Some(local));
        assert_eq!(stats.ticks.load(Ordering::Relaxed), 301);
        assert_eq!(status.ticks.load(Ordering::Relaxed), 300);
        assert_eq!(status.finished.load(Ordering::Relaxed), 1);
        // The local ticks are the generator's, in its order, each stamped with its
        // scheduled time (non-decreasing, 10 µs apart).
        let mut want = Generator::new(&cfg);
        let mut last_event = 0;
        let mut local_ticks = 0;
        while let Read::Tick(t) = reader.read() {
            let name = symbols.name(t.symbol_id).unwrap();
            if name.as_str() == "OTHER" {
                continue;
            }
            let expected = want.next_tick(t.ts_event);
            assert_eq!((name, t.body), (expected.symbol, expected.body));
            assert!(t.ts_event >= last_event && t.ts_recv >= t.ts_event);
            if last_event != 0 {
                assert_eq!(t.ts_event - last_event, 10_000);
            }
            last_event = t.ts_event;
            local_ticks += 1;
        }
        assert_eq!(local_ticks, 300);
    }

    #[test]
    fn sequences_per_symbol_and_publishes_in_order() {
        let symbols = Arc::new(SymbolTable::new(2));
        let (lvc_w, lvc) = LastValueCache::new(2);
        let (publisher, ring) = Ring::new(16);
        let mut reader = ring.reader();
        let mut s = Sequencer::new(symbols.clone(), lvc_w, publisher, Arc::default());
        let ft = |name: &str, p: i64| FeedTick {
            symbol: Symbol::new(name).unwrap(),
            ts_event: 5,
            body: Body::trade(p, 1),
        };
        let a1 = s.sequence(&ft("A", 1), 10).unwrap().unwrap();
        let b1 = s.sequence(&ft("B", 2), 11).unwrap().unwrap();
        let a2 = s.sequence(&ft("A", 3), 12).unwrap().unwrap();
        assert_eq!((a1.symbol_id, a1.seq), (0, 1));
        assert_eq!((b1.symbol_id, b1.seq), (1, 1));
        assert_eq!((a2.symbol_id, a2.seq, a2.ts_recv), (0, 2, 12));
        assert_eq!(
            s.sequence(&ft("C", 4), 13),
            Err(SymbolError::Full(2)),
            "bounded symbol table"
        );
        assert_eq!(lvc.latest(0).trade, Some(a2));
        for want in [a1, b1, a2] {
            assert_eq!(reader.read(), Read::Tick(want));
        }
        assert_eq!(reader.read(), Read::Empty);
    }

    /// What a sink saw of one batch: its seqs, the first new id, the new names.
    type Seen = (Vec<u64>, u32, Vec<String>);

    #[derive(Default)]
    struct Collect(Arc<std::sync::Mutex<Vec<Seen>>>);

    impl BatchSink for Collect {
        fn publish(&mut self, b: &Batch<'_>) {
            let names = b.new_symbols.iter().map(|s| s.to_string()).collect();
            let seqs = b.ticks.iter().map(|t| t.seq).collect();
            self.0
                .lock()
                .unwrap()
                .push((seqs, b.new_symbols_from, names));
        }
    }

    #[test]
    fn sinks_get_each_batch_with_new_names() {
        let symbols = Arc::new(SymbolTable::new(8));
        // A feed may intern up front: the names still reach the sink in id order.
        symbols.intern(Symbol::new("PRE").unwrap()).unwrap();
        let (lvc_w, _lvc) = LastValueCache::new(8);
        let (publisher, _ring) = Ring::new(16);
        let (sink, second) = (Collect::default(), Collect::default());
        let (seen, seen_second) = (sink.0.clone(), second.0.clone());
        let s = Sequencer::new(symbols, lvc_w, publisher, Arc::default())
            .with_sink(Box::new(sink))
            .with_sink(Box::new(second));
        let (tx, rx) = crate::feed::channel(16);
        let ft = |name: &str| FeedTick {
            symbol: Symbol::new(name).unwrap(),
            ts_event: 1,
            body: Body::trade(1, 1),
        };
        for n in ["A", "B", "A"] {
            tx.send(ft(n)).unwrap();
        }
        drop(tx);
        s.run(rx, Vec::new(), None);
        let got = seen.lock().unwrap().clone();
        assert_eq!(
            got,
            vec![(vec![1, 1, 2], 0, vec!["PRE".into(), "A".into(), "B".into()])]
        );
        assert_eq!(
            *seen_second.lock().unwrap(),
            got,
            "every sink gets every batch"
        );
    }

    #[test]
    fn publish_sequenced_keeps_numbers_and_flags_gaps() {
        let symbols = Arc::new(SymbolTable::new(4));
        let (lvc_w, lvc) = LastValueCache::new(4);
        let (publisher, ring) = Ring::new(16);
        let mut reader = ring.reader();
        let mut s = Sequencer::new(symbols, lvc_w, publisher, Arc::default());
        let t = |seq: u64| Tick {
            symbol_id: 2,
            seq,
            ts_event: 1,
            ts_recv: 2,
            flags: Flags::empty(),
            count: 1,
            body: Body::trade(seq as i64, 1),
        };
        assert_eq!(s.publish_sequenced(&t(1)), Continuity::Next);
        assert_eq!(s.publish_sequenced(&t(2)), Continuity::Next);
        assert_eq!(s.publish_sequenced(&t(2)), Continuity::Duplicate);
        assert_eq!(s.publish_sequenced(&t(5)), Continuity::Gap { missed: 2 });
        assert_eq!(reader.read(), Read::Tick(t(1)));
        assert_eq!(reader.read(), Read::Tick(t(2)));
        let flagged = Tick {
            flags: Flags::SNAPSHOT,
            ..t(5)
        };
        assert_eq!(reader.read(), Read::Tick(flagged));
        assert_eq!(reader.read(), Read::Empty);
        assert_eq!(s.last_seq(2), 5);

        // A snapshot value older than the cache changes nothing; a newer one wins.
        s.restore(&t(4));
        assert_eq!(lvc.latest(2).trade, Some(flagged));
        s.restore(&t(9));
        assert_eq!((lvc.latest(2).trade, s.last_seq(2)), (Some(t(9)), 9));
        // After a restart the numbers start over.
        s.forget(2);
        assert_eq!((lvc.latest(2).trade, s.last_seq(2)), (None, 0));
        assert_eq!(s.publish_sequenced(&t(1)), Continuity::Next);
        s.mark_resync(true);
        assert_eq!(ring.restart_generation(), 1);
    }
}
