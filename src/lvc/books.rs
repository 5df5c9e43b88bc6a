//! `BookCell`: one symbol's current book behind a sequence stamp, read without locks.
//!
//! The same seqlock as [`crate::seqlock::SeqCell`] (odd stamp, words, even stamp;
//! every access atomic, no `unsafe`), over a block of words sized for
//! `max_book_levels` per side, allocated the first time the symbol has a book. The
//! sequencer writes the used words after each change, before the change goes into the
//! ring, so a core that reads a book at sequence `S` has every later change still
//! ahead of it in the ring.

use std::sync::atomic::{fence, AtomicU64, Ordering};

use crate::book::{Book, Level};

/// Words before the levels: `seq`, `ts_event`, `ts_recv`, `bids | asks << 32`.
const HEAD: usize = 4;

/// A consistent copy of a symbol's book.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BookSnapshot {
    /// Book sequence number of the last change it includes (0: never had one).
    pub seq: u64,
    /// `ts_event` of that change.
    pub ts_event: u64,
    /// `ts_recv` of that change.
    pub ts_recv: u64,
    /// Bids, best first.
    pub bids: Vec<Level>,
    /// Asks, best first.
    pub asks: Vec<Level>,
}

/// One symbol's book in the cache.
#[derive(Debug)]
pub struct BookCell {
    stamp: AtomicU64,
    max_levels: usize,
    words: Box<[AtomicU64]>,
}

impl BookCell {
    /// An empty cell for books of at most `max_levels` per side.
    pub fn new(max_levels: usize) -> BookCell {
        BookCell {
            stamp: AtomicU64::new(0),
            max_levels,
            words: (0..HEAD + 4 * max_levels)
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }

    /// Stores `book` as of change `seq` (stamped `ts_event`, `ts_recv`).
    ///
    /// Precondition: one writer at a time (only the cache's `LvcWriter` calls this).
    pub fn write(&self, book: &Book, seq: u64, ts_event: u64, ts_recv: u64) {
        self.write_levels(book.bids(), book.asks(), seq, ts_event, ts_recv);
    }

    /// Stores these levels (best first; beyond `max_levels` per side left out) as of
    /// change `seq`. Same precondition as [`BookCell::write`].
    pub fn write_levels(
        &self,
        bids: &[Level],
        asks: &[Level],
        seq: u64,
        ts_event: u64,
        ts_recv: u64,
    ) {
        let bids = &bids[..bids.len().min(self.max_levels)];
        let asks = &asks[..asks.len().min(self.max_levels)];
        let s = self.stamp.load(Ordering::Relaxed);
        self.stamp.store(s + 1, Ordering::Relaxed);
        // Orders the odd stamp before every word store (as in `SeqCell::write`).
        fence(Ordering::Release);
        let w = &self.words;
        w[0].store(seq, Ordering::Relaxed);
        w[1].store(ts_event, Ordering::Relaxed);
        w[2].store(ts_recv, Ordering::Relaxed);
        w[3].store(
            bids.len() as u64 | (asks.len() as u64) << 32,
            Ordering::Relaxed,
        );
        let ask_base = HEAD + 2 * self.max_levels;
        for (i, &(p, q)) in bids.iter().enumerate() {
            w[HEAD + 2 * i].store(p as u64, Ordering::Relaxed);
            w[HEAD + 2 * i + 1].store(q as u64, Ordering::Relaxed);
        }
        for (i, &(p, q)) in asks.iter().enumerate() {
            w[ask_base + 2 * i].store(p as u64, Ordering::Relaxed);
            w[ask_base + 2 * i + 1].store(q as u64, Ordering::Relaxed);
        }
        self.stamp.store(s + 2, Ordering::Release);
    }

    /// One attempt at a consistent copy into `out`; false when a write was in progress
    /// or completed meanwhile.
    fn try_read(&self, out: &mut BookSnapshot) -> bool {
        let before = self.stamp.load(Ordering::Acquire);
        if before % 2 == 1 {
            return false;
        }
        let w = &self.words;
        out.seq = w[0].load(Ordering::Relaxed);
        out.ts_event = w[1].load(Ordering::Relaxed);
        out.ts_recv = w[2].load(Ordering::Relaxed);
        let n = w[3].load(Ordering::Relaxed);
        // A racing write may show any count: clamp, the stamp check rejects the copy.
        let bids = ((n as u32) as usize).min(self.max_levels);
        let asks = ((n >> 32) as usize).min(self.max_levels);
        let ask_base = HEAD + 2 * self.max_levels;
        let level = |at: usize| {
            (
                w[at].load(Ordering::Relaxed) as i64,
                w[at + 1].load(Ordering::Relaxed) as i64,
            )
        };
        out.bids.clear();
        out.asks.clear();
        out.bids.extend((0..bids).map(|i| level(HEAD + 2 * i)));
        out.asks.extend((0..asks).map(|i| level(ask_base + 2 * i)));
        // Orders the word loads before the second stamp load (as in `SeqCell`).
        fence(Ordering::Acquire);
        self.stamp.load(Ordering::Relaxed) == before
    }

    /// A consistent copy, retrying while the writer is active (spinning, then
    /// yielding the thread).
    pub fn read(&self) -> BookSnapshot {
        let mut out = BookSnapshot::default();
        let mut spins = 0u32;
        while !self.try_read(&mut out) {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::book::Side;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    #[test]
    fn write_then_read_a_bounded_book() {
        let cell = BookCell::new(3);
        assert_eq!(cell.read(), BookSnapshot::default());
        let mut b = Book::new(3);
        for p in 1..=5 {
            b.apply(Side::Bid, 100 - p, p);
            b.apply(Side::Ask, 100 + p, p);
        }
        cell.write(&b, 9, 10, 11);
        let s = cell.read();
        assert_eq!((s.seq, s.ts_event, s.ts_recv), (9, 10, 11));
        assert_eq!(s.bids, b.bids());
        assert_eq!(s.asks, [(101, 1), (102, 2), (103, 3)]);
    }

    /// A writer keeps rewriting books whose every level equals the sequence number;
    /// readers must never keep a copy that mixes two books.
    #[test]
    fn concurrent_readers_never_see_torn_books() {
        let cell = Arc::new(BookCell::new(8));
        let stop = Arc::new(AtomicBool::new(false));
        let start = Arc::new(std::sync::Barrier::new(3));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (cell, stop, start) = (cell.clone(), stop.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    let mut last = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let s = cell.read();
                        let n = (s.seq % 8) as usize;
                        assert_eq!((s.bids.len(), s.asks.len()), (n, n), "torn count");
                        let v = s.seq as i64;
                        assert!(s.bids.iter().chain(&s.asks).all(|&l| l == (v, v)));
                        assert!(s.seq >= last, "went backwards");
                        last = s.seq;
                    }
                })
            })
            .collect();
        start.wait();
        for seq in 1..=50_000u64 {
            let v = seq as i64;
            let levels: Vec<Level> = (0..seq % 8).map(|_| (v, v)).collect();
            cell.write_levels(&levels, &levels, seq, 0, 0);
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            r.join().unwrap();
        }
    }
}
