//! `VenueBooks`: a feed's copy of each venue order book, turning the venue's snapshots
//! and diffs into the level changes the sequencer takes, sans-IO.
//!
//! The sequencer's book model is one change per level (side, price, new size; size 0
//! removes). A venue diff is such changes already; a venue snapshot ("here is the whole
//! book") is not: levels it leaves out must be removed. So the feed keeps its own copy
//! of what it has sent for each symbol, and a snapshot is sent as the difference from
//! that copy: removals first (so a smaller server bound never drops a level that is
//! about to be made room for), then every level whose size is new. The subscribers'
//! books therefore move from the old book to the venue's in one run of changes, with
//! their sequence numbers unbroken.
//!
//! Bound: each side keeps at most `max_levels` levels ([`MAX_VENUE_LEVELS`] by
//! default), the best ones; what falls off is counted in [`VenueBooks::dropped`]. The
//! server's own `max_book_levels` bounds what subscribers see.

use std::collections::HashMap;

use super::FeedTick;
use crate::book::{Applied, Book, Level, Side};
use crate::symbol::Symbol;
use crate::tick::Body;

/// Levels per side a feed keeps of a venue book unless told otherwise: deeper than
/// any `max_book_levels` worth serving, small enough to diff in microseconds.
pub const MAX_VENUE_LEVELS: usize = 5_000;

/// The venue books of one feed and the changes of the message being normalized.
#[derive(Debug)]
pub struct VenueBooks {
    books: HashMap<Symbol, Book>,
    max_levels: usize,
    changes: Vec<FeedTick>,
    /// Levels not kept at the bound (a new level worse than a full side, or pushed
    /// out of it).
    pub dropped: u64,
}

impl Default for VenueBooks {
    fn default() -> Self {
        VenueBooks::new(MAX_VENUE_LEVELS)
    }
}

impl VenueBooks {
    /// No books yet; at most `max_levels` levels per side.
    pub fn new(max_levels: usize) -> VenueBooks {
        VenueBooks {
            books: HashMap::new(),
            max_levels: max_levels.max(1),
            changes: Vec::new(),
            dropped: 0,
        }
    }

    /// The changes of the last message, in order.
    pub fn changes(&self) -> &[FeedTick] {
        &self.changes
    }

    /// Starts a message: forgets the changes of the last one.
    pub fn begin(&mut self) {
        self.changes.clear();
    }

    /// `symbol`'s book as the feed has sent it, if it has one.
    pub fn book(&self, symbol: Symbol) -> Option<&Book> {
        self.books.get(&symbol)
    }

    /// Forgets every book (a replay that starts over: its first snapshot is then sent
    /// whole, as a difference from an empty book).
    pub fn clear(&mut self) {
        self.books.clear();
        self.changes.clear();
    }

    /// One level of `symbol` set to `size` (0 removes it): a change when it changes
    /// the book, and the removal of a level it pushed out of a full side.
    pub fn level(&mut self, symbol: Symbol, ts_event: u64, side: Side, price: i64, size: i64) {
        self.apply(symbol, ts_event, &[(side, price, size)]);
    }

    /// [`VenueBooks::level`] for each of `levels` in order, finding the book once.
    pub fn apply(&mut self, symbol: Symbol, ts_event: u64, levels: &[(Side, i64, i64)]) {
        let max = self.max_levels;
        let book = self.books.entry(symbol).or_insert_with(|| Book::new(max));
        for &(side, price, size) in levels {
            let change = |side, price, size| FeedTick {
                symbol,
                ts_event,
                body: Body::book(side, price, size),
            };
            match book.apply(side, price, size) {
                Applied::Unchanged => {}
                Applied::Dropped => self.dropped += 1,
                Applied::Removed => self.changes.push(change(side, price, 0)),
                Applied::Set { evicted, .. } => {
                    self.changes.push(change(side, price, size));
                    if let Some(p) = evicted {
                        self.dropped += 1;
                        self.changes.push(change(side, p, 0));
                    }
                }
            }
        }
    }

    /// `symbol`'s whole book is now `bids` and `asks` (any order; the last size given
    /// for a price wins, size 0 is no level): the changes from the book sent so far.
    pub fn snapshot(&mut self, symbol: Symbol, ts_event: u64, bids: &[Level], asks: &[Level]) {
        let mut new = Book::new(self.max_levels);
        for (side, levels) in [(Side::Bid, bids), (Side::Ask, asks)] {
            for &(price, size) in levels {
                match new.apply(side, price, size) {
                    Applied::Dropped
                    | Applied::Set {
                        evicted: Some(_), ..
                    } => self.dropped += 1,
                    _ => {}
                }
            }
        }
        let old = self.books.remove(&symbol).unwrap_or_default();
        for side in [Side::Bid, Side::Ask] {
            for &(price, _) in old.side(side) {
                if new.size_at(side, price).is_none() {
                    self.push(symbol, ts_event, side, price, 0);
                }
            }
        }
        for side in [Side::Bid, Side::Ask] {
            for &(price, size) in new.side(side) {
                if old.size_at(side, price) != Some(size) {
                    self.push(symbol, ts_event, side, price, size);
                }
            }
        }
        self.books.insert(symbol, new);
    }

    fn push(&mut self, symbol: Symbol, ts_event: u64, side: Side, price: i64, size: i64) {
        self.changes.push(FeedTick {
            symbol,
            ts_event,
            body: Body::book(side, price, size),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym() -> Symbol {
        Symbol::new("X").unwrap()
    }

    /// The changes applied to a copy of the book as it was make the book as it is.
    fn replay(into: &mut Book, changes: &[FeedTick]) {
        for (side, price, size) in crate::feed::book_levels(changes) {
            into.apply(side, price, size);
        }
    }

    #[test]
    fn a_snapshot_is_sent_as_the_difference_from_the_book_so_far() {
        let mut v = VenueBooks::new(10);
        let mut client = Book::unbounded();
        v.begin();
        v.snapshot(sym(), 1, &[(100, 5), (99, 3)], &[(101, 2), (102, 4)]);
        assert_eq!(v.changes().len(), 4, "a first snapshot is all new levels");
        replay(&mut client, v.changes());
        v.begin();
        v.level(sym(), 2, Side::Bid, 100, 6);
        v.level(sym(), 2, Side::Ask, 101, 0);
        v.level(sym(), 2, Side::Ask, 150, 0); // no such level: nothing to send
        assert_eq!(v.changes().len(), 2);
        replay(&mut client, v.changes());
        // Bid 99 gone, bid 100 unchanged, bid 98 new, ask 102 resized, ask 103 new.
        v.begin();
        v.snapshot(sym(), 3, &[(100, 6), (98, 1)], &[(102, 7), (103, 1)]);
        let sizes = crate::feed::book_levels(v.changes());
        assert_eq!(
            sizes,
            [
                (Side::Bid, 99, 0),
                (Side::Bid, 98, 1),
                (Side::Ask, 102, 7),
                (Side::Ask, 103, 1)
            ],
            "removals first, then what is new; unchanged levels are not sent"
        );
        replay(&mut client, v.changes());
        assert_eq!(client.bids(), [(100, 6), (98, 1)]);
        assert_eq!(client.asks(), [(102, 7), (103, 1)]);
        let mirror = v.book(sym()).unwrap();
        assert_eq!(
            (mirror.bids(), mirror.asks()),
            (client.bids(), client.asks())
        );
    }

    #[test]
    fn the_bound_keeps_the_best_levels_and_counts_the_rest() {
        let mut v = VenueBooks::new(2);
        v.begin();
        v.snapshot(sym(), 1, &[(100, 1), (99, 1), (98, 1)], &[]);
        assert_eq!(v.book(sym()).unwrap().bids(), [(100, 1), (99, 1)]);
        assert_eq!(v.dropped, 1);
        v.begin();
        v.level(sym(), 2, Side::Bid, 101, 1);
        assert_eq!(
            v.changes().len(),
            2,
            "the new best level and the removal of 99"
        );
        v.level(sym(), 2, Side::Bid, 50, 1);
        assert_eq!(v.dropped, 3);
        let mut client = Book::unbounded();
        client.replace(&[(100, 1), (99, 1)], &[]);
        replay(&mut client, v.changes());
        assert_eq!(client.bids(), [(101, 1), (100, 1)]);
    }
}
