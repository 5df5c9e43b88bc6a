//! `BookTracker`: a subscriber's copy of one symbol's order book, rebuilt from the
//! server's book messages, with gap detection. Sans-IO.
//!
//! The protocol's rules (`docs/protocol.md`, "Order books"): a book message is a group
//! of records (binary: one per level, `group = (levels, index)`; JSON: one object); a
//! message flagged `snapshot` replaces the whole book, any other one applies its
//! levels as changes (size 0 removes the level). Book sequence numbers are the
//! symbol's own, apart from trades and quotes, and each message accounts for `count`
//! of them: after a message of `count` K, the next one is numbered K above. A
//! message that jumps further is a gap: the book is no longer the server's until the
//! next snapshot (resubscribe, or resume with `resume_book`).

use crate::book::{Book, Level, Side};
use crate::tick::{Body, Flags, Tick};

/// Book changes of a symbol that were lost: book sequence numbers from `expected` up
/// to (not including) `got` were never accounted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BookGap {
    /// The first book sequence number not accounted for.
    pub expected: u64,
    /// The sequence number of the message that showed the jump.
    pub got: u64,
}

/// One symbol's book as the subscriber rebuilds it.
#[derive(Debug, Clone, Default)]
pub struct BookTracker {
    book: Book,
    /// Book sequence number of the last complete message (0: none yet).
    seq: u64,
    /// A snapshot (or the very first change) arrived and no gap since.
    synced: bool,
    /// Records of the current binary group still expected.
    remaining: u32,
}

impl BookTracker {
    /// An empty book, not synced.
    pub fn new() -> BookTracker {
        BookTracker::default()
    }

    /// The book.
    pub fn book(&self) -> &Book {
        &self.book
    }

    /// Book sequence number of the last complete message applied: what `resume_book`
    /// should carry for this symbol.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Whether the book is the server's as of [`BookTracker::seq`]: a snapshot (or the
    /// symbol's first change) was applied, and no gap since.
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// Applies one binary book record (kind 3). Returns `Ok(Some(seq))` when it
    /// completed a message, `Ok(None)` while the message has more records, and the gap
    /// when the message did not follow the last one (the levels are applied anyway).
    pub fn on_record(&mut self, t: &Tick) -> Result<Option<u64>, BookGap> {
        let Body::Book {
            side,
            price,
            size,
            group: (levels, index),
            ..
        } = t.body
        else {
            return Ok(None);
        };
        if index == 0 {
            if t.flags.contains(Flags::SNAPSHOT) {
                self.book.clear();
            }
            self.remaining = levels;
        }
        if levels > 0 {
            self.book.apply(side, price, size);
            self.remaining = self.remaining.saturating_sub(1);
        }
        if self.remaining > 0 {
            return Ok(None);
        }
        self.complete(t.seq, t.flags, t.count)
    }

    /// Applies one whole book message (the JSON form, or levels gathered elsewhere).
    pub fn on_message(
        &mut self,
        seq: u64,
        flags: Flags,
        count: u32,
        bids: &[Level],
        asks: &[Level],
    ) -> Result<u64, BookGap> {
        if flags.contains(Flags::SNAPSHOT) {
            self.book.clear();
        }
        for &(p, s) in bids {
            self.book.apply(Side::Bid, p, s);
        }
        for &(p, s) in asks {
            self.book.apply(Side::Ask, p, s);
        }
        self.complete(seq, flags, count).map(|s| s.unwrap_or(seq))
    }

    fn complete(&mut self, seq: u64, flags: Flags, count: u32) -> Result<Option<u64>, BookGap> {
        let expected = self.seq + u64::from(count.max(1));
        let first = self.seq == 0 && !self.synced;
        let last = self.seq;
        self.seq = seq;
        if flags.contains(Flags::SNAPSHOT) || (first && seq == expected) {
            self.synced = true;
            return Ok(Some(seq));
        }
        if seq == expected && self.synced {
            return Ok(Some(seq));
        }
        self.synced = false;
        Err(BookGap {
            expected: last + 1,
            got: seq,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(
        seq: u64,
        flags: Flags,
        count: u32,
        side: Side,
        price: i64,
        size: i64,
        group: (u32, u32),
    ) -> Tick {
        Tick {
            symbol_id: 0,
            seq,
            ts_event: 0,
            ts_recv: 0,
            flags,
            count,
            body: Body::Book {
                side,
                price,
                size,
                new_level: false,
                group,
            },
        }
    }

    #[test]
    fn snapshot_then_changes_then_a_gap() {
        let mut b = BookTracker::new();
        let snap = Flags::SNAPSHOT;
        assert_eq!(
            b.on_record(&rec(7, snap, 1, Side::Bid, 100, 1, (2, 0))),
            Ok(None)
        );
        assert_eq!(
            b.on_record(&rec(7, snap, 1, Side::Ask, 101, 2, (2, 1))),
            Ok(Some(7))
        );
        assert!(b.is_synced());
        assert_eq!(b.book().bids(), &[(100, 1)]);
        assert_eq!(
            b.on_record(&rec(8, Flags::empty(), 1, Side::Bid, 100, 0, (1, 0))),
            Ok(Some(8))
        );
        assert!(b.book().bids().is_empty());
        // A conflated message of 3 changes, all of which cancelled out: no level.
        let c = Flags::CONFLATED;
        assert_eq!(
            b.on_record(&rec(11, c, 3, Side::Bid, 0, 0, (0, 0))),
            Ok(Some(11))
        );
        assert_eq!(
            b.on_record(&rec(13, Flags::empty(), 1, Side::Ask, 102, 1, (1, 0))),
            Err(BookGap {
                expected: 12,
                got: 13
            })
        );
        assert!(!b.is_synced());
        // An empty snapshot replaces everything.
        assert_eq!(
            b.on_record(&rec(20, snap, 1, Side::Bid, 0, 0, (0, 0))),
            Ok(Some(20))
        );
        assert!(b.book().is_empty() && b.is_synced());
        assert_eq!(b.on_message(21, Flags::empty(), 1, &[(5, 1)], &[]), Ok(21));
        assert_eq!(b.book().bids(), &[(5, 1)]);
    }

    #[test]
    fn the_first_change_of_a_new_book_needs_no_snapshot() {
        let mut b = BookTracker::new();
        assert_eq!(b.on_message(1, Flags::empty(), 1, &[(5, 1)], &[]), Ok(1));
        assert!(b.is_synced());
        let mut late = BookTracker::new();
        assert!(late
            .on_message(9, Flags::empty(), 1, &[(5, 1)], &[])
            .is_err());
    }
}
