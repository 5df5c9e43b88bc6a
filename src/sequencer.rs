//! `Sequencer`: the single writer of the ring and of the last-value cache.
//!
//! It takes [`FeedTick`]s from every feed through one bounded crossbeam channel,
//! interns the symbol, stamps `ts_recv`, assigns the symbol's next sequence number,
//! updates the last-value cache, publishes into the ring, and after each batch wakes
//! the writer cores that are parked. [`Sequencer::sequence`] is the whole logic without
//! the channel or the clock, so it is tested directly.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::Receiver;

use crate::feed::{now_ns, FeedTick};
use crate::lvc::LvcWriter;
use crate::park::Parker;
use crate::ring::Publisher;
use crate::symbol::{Symbol, SymbolError, SymbolTable};
use crate::tick::{Flags, Tick};

/// Most ticks taken from the channel before the cores are woken: bounds the delay a
/// burst adds to its first tick.
const MAX_BATCH: usize = 256;

/// Counters of the sequencer, read by `/stats` and `/metrics`.
#[derive(Debug, Default)]
pub struct SequencerStats {
    /// Ticks sequenced and published.
    pub ticks: AtomicU64,
    /// Ticks dropped because their symbol could not be interned (table full).
    pub rejected: AtomicU64,
    /// Batches published (one core wake-up round each).
    pub batches: AtomicU64,
}

/// The sequencing state.
#[derive(Debug)]
pub struct Sequencer {
    symbols: Arc<SymbolTable>,
    /// Local copy of the name → id map, so the common case takes no lock.
    ids: HashMap<Symbol, u32>,
    /// Last sequence number per symbol id.
    seqs: Vec<u64>,
    lvc: LvcWriter,
    ring: Publisher,
    stats: Arc<SequencerStats>,
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
            lvc,
            ring,
            stats,
        }
    }

    /// Sequences one feed tick received at `ts_recv`: returns the tick as published.
    pub fn sequence(&mut self, ft: &FeedTick, ts_recv: u64) -> Result<Tick, SymbolError> {
        let id = match self.ids.get(&ft.symbol) {
            Some(&id) => id,
            None => {
                let id = self.symbols.intern(ft.symbol)?;
                self.ids.insert(ft.symbol, id);
                id
            }
        };
        let idx = id as usize;
        if idx >= self.seqs.len() {
            self.seqs.resize(idx + 1, 0);
        }
        self.seqs[idx] += 1;
        let tick = Tick {
            symbol_id: id,
            seq: self.seqs[idx],
            ts_event: ft.ts_event,
            ts_recv,
            flags: Flags::empty(),
            count: 1,
            body: ft.body,
        };
        // Cache first, ring second: a reader that resynchronises from the cache after
        // a lap then never misses a tick that was already in the ring.
        self.lvc.update(&tick);
        self.ring.publish(&tick);
        self.stats.ticks.fetch_add(1, Ordering::Relaxed);
        Ok(tick)
    }

    /// Runs until every feed has dropped its sender: takes a batch, sequences it, wakes
    /// the parked cores.
    pub fn run(mut self, rx: Receiver<FeedTick>, cores: Vec<Arc<Parker>>) {
        while let Ok(first) = rx.recv() {
            self.ingest(&first);
            for _ in 1..MAX_BATCH {
                match rx.try_recv() {
                    Ok(ft) => self.ingest(&ft),
                    Err(_) => break,
                }
            }
            self.stats.batches.fetch_add(1, Ordering::Relaxed);
            for core in &cores {
                core.wake(false);
            }
        }
    }

    fn ingest(&mut self, ft: &FeedTick) {
        if let Err(e) = self.sequence(ft, now_ns()) {
            if self.stats.rejected.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!(symbol = %ft.symbol, error = %e, "tick rejected");
            }
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
        let a1 = s.sequence(&ft("A", 1), 10).unwrap();
        let b1 = s.sequence(&ft("B", 2), 11).unwrap();
        let a2 = s.sequence(&ft("A", 3), 12).unwrap();
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
}
