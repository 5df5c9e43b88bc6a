//! `LastValueCache`: the latest trade and the latest quote of every symbol, and its
//! [`TradeSummary`]: open, high, low and volume since the server's session started.
//!
//! Written only by the sequencer (through the one [`LvcWriter`]), read without locks by
//! writer cores for snapshots on subscribe, for recovery after a ring lap, and for
//! conflation. Each entry is a [`SeqCell`], so a read is a consistent copy.
//!
//! Beside them, each symbol's current order book ([`books::BookCell`], bounded by
//! `max_book_levels` per side), allocated when the symbol's first book change arrives:
//! a symbol without a book costs one empty slot.

use std::sync::{Arc, OnceLock};

use crate::book::Book;
use crate::seqlock::SeqCell;
use crate::tick::{Body, Kind, Tick};

pub mod books;

pub use books::{BookCell, BookSnapshot};

/// Default of `max_book_levels`: levels kept per side of each symbol's book.
pub const DEFAULT_MAX_BOOK_LEVELS: usize = 50;

/// A symbol's trading since the server's session started (its first trade here): what
/// a dashboard shows as open, high, low, volume and change. Sent to subscribers in the
/// `summary` message (`docs/protocol.md`, "Session summary"); it counts every trade up
/// to and including `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TradeSummary {
    /// Sequence number of the last trade counted (0: none since [`LvcWriter::clear`]).
    pub seq: u64,
    /// Trades counted.
    pub trades: u64,
    /// Sum of their sizes, fixed point (saturates at `i64::MAX`).
    pub volume: i64,
    /// Price of the first trade, fixed point.
    pub open: i64,
    /// Highest trade price.
    pub high: i64,
    /// Lowest trade price.
    pub low: i64,
    /// `ts_event` of the first trade, ns since the Unix epoch (0: no trade yet).
    pub since: u64,
}

impl TradeSummary {
    /// Counts one trade.
    fn add(&mut self, tick: &Tick, price: i64, size: i64) {
        if self.trades == 0 {
            self.open = price;
            self.high = price;
            self.low = price;
            self.since = tick.ts_event;
        }
        self.seq = tick.seq;
        self.trades += 1;
        self.volume = self.volume.saturating_add(size);
        self.high = self.high.max(price);
        self.low = self.low.min(price);
    }

    fn to_words(self) -> [u64; Tick::WORDS] {
        [
            self.seq,
            self.trades,
            self.volume as u64,
            self.open as u64,
            self.high as u64,
            self.low as u64,
            self.since,
            0,
            0,
        ]
    }

    fn from_words(w: &[u64; Tick::WORDS]) -> TradeSummary {
        TradeSummary {
            seq: w[0],
            trades: w[1],
            volume: w[2] as i64,
            open: w[3] as i64,
            high: w[4] as i64,
            low: w[5] as i64,
            since: w[6],
        }
    }
}

#[derive(Debug, Default)]
struct Entry {
    trade: SeqCell,
    quote: SeqCell,
    /// The [`TradeSummary`], written before `trade`, so that it never lags the cached
    /// trade.
    summary: SeqCell,
}

/// The shared, read-only side of the cache.
#[derive(Debug)]
pub struct LastValueCache {
    entries: Box<[Entry]>,
    /// Each symbol's book, made on its first change.
    books: Box<[OnceLock<BookCell>]>,
    max_book_levels: usize,
}

/// The single writer of a [`LastValueCache`]. Not `Clone`.
#[derive(Debug)]
pub struct LvcWriter {
    cache: Arc<LastValueCache>,
}

/// The latest values of one symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Latest {
    /// Latest trade, if any was seen.
    pub trade: Option<Tick>,
    /// Latest quote, if any was seen.
    pub quote: Option<Tick>,
}

impl Latest {
    /// The ticks in sequence order (oldest first).
    pub fn in_seq_order(&self) -> impl Iterator<Item = Tick> {
        let (a, b) = match (self.trade, self.quote) {
            (Some(t), Some(q)) if q.seq < t.seq => (Some(q), Some(t)),
            (t, q) => (t, q),
        };
        a.into_iter().chain(b)
    }

    /// The highest sequence number among the latest values (0 when empty).
    pub fn seq(&self) -> u64 {
        self.trade
            .map_or(0, |t| t.seq)
            .max(self.quote.map_or(0, |q| q.seq))
    }
}

impl LastValueCache {
    /// A cache for symbol ids `0..max_symbols`, and its writer.
    pub fn new(max_symbols: usize) -> (LvcWriter, Arc<LastValueCache>) {
        LastValueCache::with_books(max_symbols, DEFAULT_MAX_BOOK_LEVELS)
    }

    /// A cache for symbol ids `0..max_symbols` whose books keep at most
    /// `max_book_levels` per side, and its writer.
    pub fn with_books(
        max_symbols: usize,
        max_book_levels: usize,
    ) -> (LvcWriter, Arc<LastValueCache>) {
        let entries = (0..max_symbols).map(|_| Entry::default()).collect();
        let books = (0..max_symbols).map(|_| OnceLock::new()).collect();
        let cache = Arc::new(LastValueCache {
            entries,
            books,
            max_book_levels: max_book_levels.max(1),
        });
        (
            LvcWriter {
                cache: cache.clone(),
            },
            cache,
        )
    }

    /// The latest trade and quote of `symbol_id`.
    pub fn latest(&self, symbol_id: u32) -> Latest {
        let Some(e) = self.entries.get(symbol_id as usize) else {
            return Latest::default();
        };
        Latest {
            trade: Tick::from_words(&e.trade.read().1),
            quote: Tick::from_words(&e.quote.read().1),
        }
    }

    /// The latest tick of one kind.
    pub fn get(&self, symbol_id: u32, kind: Kind) -> Option<Tick> {
        let e = self.entries.get(symbol_id as usize)?;
        let cell = match kind {
            Kind::Trade => &e.trade,
            Kind::Quote => &e.quote,
            Kind::Book => return None,
        };
        Tick::from_words(&cell.read().1)
    }

    /// A consistent copy of `symbol_id`'s book (empty, sequence 0, when it never had
    /// one).
    pub fn book(&self, symbol_id: u32) -> BookSnapshot {
        self.books
            .get(symbol_id as usize)
            .and_then(OnceLock::get)
            .map_or_else(BookSnapshot::default, BookCell::read)
    }

    /// Levels kept per side of a book (`max_book_levels`).
    pub fn max_book_levels(&self) -> usize {
        self.max_book_levels
    }

    /// The session summary of `symbol_id`. It is updated before the trade itself, so
    /// one read after [`LastValueCache::latest`] counts at least the trade that read
    /// returned (`summary.seq >= trade.seq`).
    pub fn summary(&self, symbol_id: u32) -> TradeSummary {
        self.entries
            .get(symbol_id as usize)
            .map_or_else(TradeSummary::default, |e| {
                TradeSummary::from_words(&e.summary.read().1)
            })
    }

    /// What a subscriber is sent for `symbol_id`: its latest values and, read after
    /// them, its session summary, which then counts every trade up to the snapshot's.
    pub fn snapshot(&self, symbol_id: u32) -> (Latest, TradeSummary) {
        let latest = self.latest(symbol_id);
        (latest, self.summary(symbol_id))
    }

    /// Running `(trade count, trade volume)` of `symbol_id`, from its summary.
    pub fn trade_totals(&self, symbol_id: u32) -> (u64, i64) {
        let s = self.summary(symbol_id);
        (s.trades, s.volume)
    }

    /// Number of symbol slots.
    pub fn capacity(&self) -> usize {
        self.entries.len()
    }
}

impl LvcWriter {
    /// Records `tick` as the latest of its symbol and kind. Ticks for ids beyond the
    /// capacity are ignored (the symbol table has the same bound, so none arrive).
    pub fn update(&mut self, tick: &Tick) {
        let Some(e) = self.cache.entries.get(tick.symbol_id as usize) else {
            return;
        };
        let cell = match tick.body {
            Body::Trade { price, size, .. } => {
                // The one writer reads its own cell: never torn.
                let mut summary = TradeSummary::from_words(&e.summary.read().1);
                summary.add(tick, price, size);
                e.summary
                    .write(e.summary.stamp_relaxed() + 2, &summary.to_words());
                &e.trade
            }
            Body::Quote { .. } => &e.quote,
            // Books have their own cells (`LvcWriter::write_book`).
            Body::Book { .. } => return,
        };
        cell.write(cell.stamp_relaxed() + 2, &tick.to_words());
    }

    /// Stores `book` as `symbol_id`'s current book, as of its book change `seq`.
    pub fn write_book(
        &mut self,
        symbol_id: u32,
        book: &Book,
        seq: u64,
        ts_event: u64,
        ts_recv: u64,
    ) {
        let max = self.cache.max_book_levels;
        if let Some(cell) = self.cache.books.get(symbol_id as usize) {
            cell.get_or_init(|| BookCell::new(max))
                .write(book, seq, ts_event, ts_recv);
        }
    }

    /// Records `tick` as the latest of its symbol and kind without counting it in the
    /// session summary: a value taken from a snapshot of another node (an edge
    /// resynchronising from its ingest), not a trade that happened here.
    pub fn restore(&mut self, tick: &Tick) {
        let Some(e) = self.cache.entries.get(tick.symbol_id as usize) else {
            return;
        };
        let cell = match tick.body {
            Body::Trade { .. } => &e.trade,
            Body::Quote { .. } => &e.quote,
            Body::Book { .. } => return,
        };
        cell.write(cell.stamp_relaxed() + 2, &tick.to_words());
    }

    /// Forgets every value of `symbol_id` (an edge node following an ingest that
    /// restarted without this symbol): readers find no trade and no quote. The session
    /// summary keeps its totals, which only ever grow, but forgets its `seq`, since the
    /// numbers start over.
    pub fn clear(&mut self, symbol_id: u32) {
        let Some(e) = self.cache.entries.get(symbol_id as usize) else {
            return;
        };
        let mut summary = TradeSummary::from_words(&e.summary.read().1);
        summary.seq = 0;
        e.summary
            .write(e.summary.stamp_relaxed() + 2, &summary.to_words());
        for cell in [&e.trade, &e.quote] {
            cell.write(cell.stamp_relaxed() + 2, &[0; Tick::WORDS]);
        }
        if let Some(book) = self
            .cache
            .books
            .get(symbol_id as usize)
            .and_then(OnceLock::get)
        {
            book.write_levels(&[], &[], 0, 0, 0);
        }
    }

    /// The cache this writer updates.
    pub fn cache(&self) -> &Arc<LastValueCache> {
        &self.cache
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tick::Flags;

    fn t(seq: u64, body: Body) -> Tick {
        Tick {
            symbol_id: 1,
            seq,
            ts_event: 0,
            ts_recv: 0,
            flags: Flags::empty(),
            count: 1,
            body,
        }
    }

    #[test]
    fn keeps_latest_per_kind_and_totals() {
        let (mut w, c) = LastValueCache::new(4);
        assert_eq!(c.latest(1), Latest::default());
        let q = t(
            2,
            Body::Quote {
                bid_px: 1,
                bid_sz: 2,
                ask_px: 3,
                ask_sz: 4,
            },
        );
        w.update(&t(1, Body::trade(10, 5)));
        w.update(&q);
        w.update(&t(3, Body::trade(11, 7)));
        let l = c.latest(1);
        assert_eq!(l.trade, Some(t(3, Body::trade(11, 7))));
        assert_eq!(l.quote, Some(q));
        assert_eq!(l.seq(), 3);
        let order: Vec<u64> = l.in_seq_order().map(|x| x.seq).collect();
        assert_eq!(order, vec![2, 3]);
        assert_eq!(c.trade_totals(1), (2, 12));
        assert_eq!(c.latest(99), Latest::default());
        w.clear(1);
        assert_eq!(c.latest(1), Latest::default());
        w.update(&q);
        assert_eq!(c.latest(1).quote, Some(q));
    }

    #[test]
    fn summary_counts_trades_from_the_first_on() {
        let (mut w, c) = LastValueCache::new(4);
        assert_eq!(c.summary(1), TradeSummary::default());
        assert_eq!(c.summary(99), TradeSummary::default());
        let trade = |seq, price, size, ts_event| Tick {
            ts_event,
            ..t(seq, Body::trade(price, size))
        };
        w.update(&trade(1, 100, 5, 1_000));
        w.update(&t(
            2,
            Body::Quote {
                bid_px: 1,
                bid_sz: 1,
                ask_px: 2,
                ask_sz: 1,
            },
        ));
        w.update(&trade(3, 120, 7, 2_000));
        w.update(&trade(4, 90, 1, 3_000));
        let want = TradeSummary {
            seq: 4,
            trades: 3,
            volume: 13,
            open: 100,
            high: 120,
            low: 90,
            since: 1_000,
        };
        assert_eq!(c.summary(1), want);
        let (latest, summary) = c.snapshot(1);
        assert_eq!((latest.trade.map(|t| t.seq), summary.seq), (Some(4), 4));
        // A value restored from another node's snapshot is not a trade here.
        w.restore(&trade(9, 500, 50, 9_000));
        assert_eq!(c.get(1, Kind::Trade).map(|t| t.seq), Some(9));
        assert_eq!(c.summary(1), want);
        // After a clear the totals stay; the numbers start over.
        w.clear(1);
        assert_eq!(c.summary(1), TradeSummary { seq: 0, ..want });
        w.update(&trade(1, 80, 2, 10_000));
        assert_eq!(
            c.summary(1),
            TradeSummary {
                seq: 1,
                trades: 4,
                volume: 15,
                low: 80,
                ..want
            }
        );
    }
}
