//! `SeqCell`: a single-writer, many-reader cell holding one [`Tick`], read without locks.
//!
//! The writer marks the cell odd ("being written"), stores the words, then stores an
//! even stamp; a reader loads the stamp, the words, and the stamp again, and keeps the
//! copy only when both stamps are equal and even. This is the seqlock of the Linux
//! kernel, with the data held in atomic words so that a reader racing the writer reads
//! stale or mixed words (which the stamp check then rejects) instead of invoking a
//! data race: every access is an atomic, so there is no `unsafe` here at all. Relaxed
//! word loads and stores compile to plain moves on x86-64 and AArch64.
//!
//! The fence placement follows H.-J. Boehm, "Can seqlocks get along with programming
//! language memory models?" (MSPC 2012), the recipe used by the `seqlock` crate and
//! crossbeam's `AtomicCell` fallback.

use std::sync::atomic::{fence, AtomicU64, Ordering};

use crate::tick::Tick;

/// One tick behind a sequence stamp, padded to its own cache lines so that the writer
/// of one cell does not slow readers of its neighbour.
#[derive(Debug)]
#[repr(align(64))]
pub struct SeqCell {
    /// Odd while a write is in progress; even once the words are complete. Stamps only
    /// grow; their meaning beyond parity belongs to the owner (the ring stores the
    /// position, the cache a version).
    stamp: AtomicU64,
    words: [AtomicU64; Tick::WORDS],
}

impl Default for SeqCell {
    fn default() -> Self {
        SeqCell::new()
    }
}

impl SeqCell {
    /// An empty cell with stamp 0 and all-zero words (which decode to no tick).
    pub const fn new() -> SeqCell {
        SeqCell {
            stamp: AtomicU64::new(0),
            words: [const { AtomicU64::new(0) }; Tick::WORDS],
        }
    }

    /// Stores `words` under the final stamp `done` (even, greater than the current
    /// stamp).
    ///
    /// Precondition: one writer at a time. The owners enforce it by type: only the
    /// ring's `Publisher` and the cache's `LvcWriter` call this, and neither is `Clone`.
    pub fn write(&self, done: u64, words: &[u64; Tick::WORDS]) {
        debug_assert!(done.is_multiple_of(2) && done > self.stamp.load(Ordering::Relaxed));
        self.stamp.store(done - 1, Ordering::Relaxed);
        // Orders the odd stamp before every word store: a reader that sees any new word
        // then sees at least the odd stamp on its second load.
        fence(Ordering::Release);
        for (slot, &w) in self.words.iter().zip(words) {
            slot.store(w, Ordering::Relaxed);
        }
        // Publishes the words with the even stamp.
        self.stamp.store(done, Ordering::Release);
    }

    /// The current stamp, for the single writer to compute the next one.
    pub fn stamp_relaxed(&self) -> u64 {
        self.stamp.load(Ordering::Relaxed)
    }

    /// One attempt to copy the cell: `Some((stamp, words))` when the copy is consistent,
    /// `None` when a write was in progress or completed during the copy.
    pub fn try_read(&self) -> Option<(u64, [u64; Tick::WORDS])> {
        let before = self.stamp.load(Ordering::Acquire);
        if before % 2 == 1 {
            return None;
        }
        let mut out = [0u64; Tick::WORDS];
        for (o, slot) in out.iter_mut().zip(&self.words) {
            *o = slot.load(Ordering::Relaxed);
        }
        // Orders the word loads before the second stamp load: if a writer's word store
        // was seen, its odd stamp (or a later one) is seen here.
        fence(Ordering::Acquire);
        let after = self.stamp.load(Ordering::Relaxed);
        (before == after).then_some((before, out))
    }

    /// Copies the cell, retrying while the writer is active. A write is a handful of
    /// stores, so a retry almost never repeats; after a few spins it yields the thread.
    pub fn read(&self) -> (u64, [u64; Tick::WORDS]) {
        let mut spins = 0u32;
        loop {
            if let Some(v) = self.try_read() {
                return v;
            }
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    #[test]
    fn empty_cell_reads_zero() {
        let c = SeqCell::new();
        assert_eq!(c.try_read(), Some((0, [0; Tick::WORDS])));
    }

    #[test]
    fn write_then_read() {
        let c = SeqCell::new();
        let w = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        c.write(2, &w);
        assert_eq!(c.read(), (2, w));
    }

    /// A writer stores words that all equal the stamp; readers must never see a copy
    /// whose words disagree with each other or with the stamp (a torn read).
    #[test]
    fn concurrent_readers_never_see_torn_values() {
        let cell = Arc::new(SeqCell::new());
        let stop = Arc::new(AtomicBool::new(false));
        // Every reader is running before the writer starts.
        let start = Arc::new(std::sync::Barrier::new(4));
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let cell = cell.clone();
                let stop = stop.clone();
                let start = start.clone();
                std::thread::spawn(move || {
                    start.wait();
                    let mut seen = 0u64;
                    let mut last = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        if let Some((stamp, words)) = cell.try_read() {
                            assert!(words.iter().all(|&w| w == stamp), "torn: {stamp} {words:?}");
                            assert!(stamp >= last, "stamp went backwards");
                            last = stamp;
                            seen += 1;
                        }
                    }
                    // Once the writer is done, a read always succeeds.
                    let (stamp, words) = cell.read();
                    assert_eq!((stamp, words), (400_000, [400_000; Tick::WORDS]));
                    seen + 1
                })
            })
            .collect();
        start.wait();
        for v in 1..=200_000u64 {
            let stamp = v * 2;
            cell.write(stamp, &[stamp; Tick::WORDS]);
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            assert!(r.join().unwrap() > 0);
        }
    }
}
