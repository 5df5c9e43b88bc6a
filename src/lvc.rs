//! `LastValueCache`: the latest trade and the latest quote of every symbol.
//!
//! Written only by the sequencer (through the one [`LvcWriter`]), read without locks by
//! writer cores for snapshots on subscribe, for recovery after a ring lap, and for
//! conflation. Each entry is a [`SeqCell`], so a read is a consistent copy.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::seqlock::SeqCell;
use crate::tick::{Body, Kind, Tick};

/// Per-symbol running trade totals, so that conflation can account for trades a
/// reader never saw (after a ring lap) by difference.
#[derive(Debug, Default)]
struct TradeTotals {
    /// Trades ever seen for the symbol.
    count: AtomicU64,
    /// Sum of their sizes, fixed point; wraps only after 9e10 units of volume.
    volume: AtomicU64,
}

#[derive(Debug, Default)]
struct Entry {
    trade: SeqCell,
    quote: SeqCell,
    totals: TradeTotals,
}

/// The shared, read-only side of the cache.
#[derive(Debug)]
pub struct LastValueCache {
    entries: Box<[Entry]>,
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
        let entries = (0..max_symbols).map(|_| Entry::default()).collect();
        let cache = Arc::new(LastValueCache { entries });
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
        };
        Tick::from_words(&cell.read().1)
    }

    /// Running `(trade count, trade volume)` of `symbol_id`. They are updated before
    /// the trade itself, so they never lag the cached trade.
    pub fn trade_totals(&self, symbol_id: u32) -> (u64, i64) {
        self.entries.get(symbol_id as usize).map_or((0, 0), |e| {
            (
                e.totals.count.load(Ordering::Acquire),
                e.totals.volume.load(Ordering::Acquire) as i64,
            )
        })
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
            Body::Trade { size, .. } => {
                e.totals.count.fetch_add(1, Ordering::Release);
                e.totals.volume.fetch_add(size as u64, Ordering::Release);
                &e.trade
            }
            Body::Quote { .. } => &e.quote,
        };
        cell.write(cell.stamp_relaxed() + 2, &tick.to_words());
    }

    /// Forgets every value of `symbol_id` (an edge node following an ingest that
    /// restarted without this symbol): readers find no trade and no quote. The running
    /// trade totals stay, since they only ever grow.
    pub fn clear(&mut self, symbol_id: u32) {
        let Some(e) = self.cache.entries.get(symbol_id as usize) else {
            return;
        };
        for cell in [&e.trade, &e.quote] {
            cell.write(cell.stamp_relaxed() + 2, &[0; Tick::WORDS]);
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
}
