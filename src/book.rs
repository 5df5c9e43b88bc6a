//! `Book`: one symbol's price levels, per side, bounded.
//!
//! The one order-book type of tickcast: the sequencer keeps each symbol's current book
//! in one (bounded by `max_book_levels` per side), the clients rebuild theirs in one
//! (unbounded), and the tests compare them. A change sets the size of one level (side,
//! price); size 0 removes the level. Levels are kept sorted best first (bids highest
//! price first, asks lowest first) in plain vectors: books are a few dozen levels, so a
//! binary search and a shift beat any tree.
//!
//! At the bound, the book keeps the best `max_levels` of each side: a new level better
//! than the worst pushes the worst out ([`Applied::Set::evicted`]), one worse than all
//! of a full side is dropped ([`Applied::Dropped`]). The sequencer publishes an
//! eviction as a removal of its own, so the stream of changes alone rebuilds exactly
//! the bounded book, whatever merging happens on the way.

/// Which side of the book a level is on; the wire's side byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Side {
    /// Buy orders, best (highest) price first.
    Bid = 0,
    /// Sell orders, best (lowest) price first.
    Ask = 1,
}

impl Side {
    /// The wire byte back to a side; `None` for another byte.
    pub const fn from_u8(b: u8) -> Option<Side> {
        match b {
            0 => Some(Side::Bid),
            1 => Some(Side::Ask),
            _ => None,
        }
    }
}

/// One price level: `(price, size)`, fixed point in units of 10⁻⁸.
pub type Level = (i64, i64);

/// What one change did to a [`Book`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The level now has the change's size.
    Set {
        /// It was not in the book before.
        new_level: bool,
        /// The level pushed out of a full side to make room (its price), if any.
        evicted: Option<i64>,
    },
    /// The level was removed.
    Removed,
    /// Nothing changed: a removal of a level the book does not hold.
    Unchanged,
    /// A new level worse than every level of a full side: not kept.
    Dropped,
}

/// A symbol's book: bids and asks, best first, at most `max_levels` per side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Book {
    bids: Vec<Level>,
    asks: Vec<Level>,
    max_levels: usize,
}

impl Default for Book {
    fn default() -> Self {
        Book::unbounded()
    }
}

impl Book {
    /// An empty book keeping at most `max_levels` levels per side (at least 1).
    pub fn new(max_levels: usize) -> Book {
        Book {
            bids: Vec::new(),
            asks: Vec::new(),
            max_levels: max_levels.max(1),
        }
    }

    /// An empty book without a bound (a client's copy: the server's changes keep it
    /// within the server's bound).
    pub fn unbounded() -> Book {
        Book::new(usize::MAX)
    }

    /// The levels of `side`, best first.
    pub fn side(&self, side: Side) -> &[Level] {
        match side {
            Side::Bid => &self.bids,
            Side::Ask => &self.asks,
        }
    }

    /// Bids, highest price first.
    pub fn bids(&self) -> &[Level] {
        &self.bids
    }

    /// Asks, lowest price first.
    pub fn asks(&self) -> &[Level] {
        &self.asks
    }

    /// Whether both sides are empty.
    pub fn is_empty(&self) -> bool {
        self.bids.is_empty() && self.asks.is_empty()
    }

    /// The size at `price` on `side`, if the book holds that level.
    pub fn size_at(&self, side: Side, price: i64) -> Option<i64> {
        let levels = self.side(side);
        find(levels, side, price).ok().map(|i| levels[i].1)
    }

    /// Removes every level.
    pub fn clear(&mut self) {
        self.bids.clear();
        self.asks.clear();
    }

    /// Replaces the whole book (a snapshot), keeping the bound: levels are sorted and
    /// deduplicated (the last size given for a price wins, size 0 removes).
    pub fn replace(&mut self, bids: &[Level], asks: &[Level]) {
        self.clear();
        for &(p, s) in bids {
            self.apply(Side::Bid, p, s);
        }
        for &(p, s) in asks {
            self.apply(Side::Ask, p, s);
        }
    }

    /// Sets the level `price` of `side` to `size`; size 0 (or less) removes it.
    pub fn apply(&mut self, side: Side, price: i64, size: i64) -> Applied {
        let max = self.max_levels;
        let levels = match side {
            Side::Bid => &mut self.bids,
            Side::Ask => &mut self.asks,
        };
        match find(levels, side, price) {
            Ok(i) if size <= 0 => {
                levels.remove(i);
                Applied::Removed
            }
            Ok(i) => {
                levels[i].1 = size;
                Applied::Set {
                    new_level: false,
                    evicted: None,
                }
            }
            Err(_) if size <= 0 => Applied::Unchanged,
            Err(i) if i >= max => Applied::Dropped,
            Err(i) => {
                levels.insert(i, (price, size));
                let evicted = if levels.len() > max {
                    levels.pop().map(|(p, _)| p)
                } else {
                    None
                };
                Applied::Set {
                    new_level: true,
                    evicted,
                }
            }
        }
    }
}

/// Where `price` is (`Ok`) or would go (`Err`) among `levels`, best first.
fn find(levels: &[Level], side: Side, price: i64) -> Result<usize, usize> {
    match side {
        Side::Bid => levels.binary_search_by(|&(p, _)| price.cmp(&p)),
        Side::Ask => levels.binary_search_by(|&(p, _)| p.cmp(&price)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_stay_sorted_best_first() {
        let mut b = Book::unbounded();
        for p in [100, 103, 101, 102] {
            b.apply(Side::Bid, p, 1);
            b.apply(Side::Ask, p + 10, 1);
        }
        assert_eq!(
            b.bids().iter().map(|l| l.0).collect::<Vec<_>>(),
            [103, 102, 101, 100]
        );
        assert_eq!(
            b.asks().iter().map(|l| l.0).collect::<Vec<_>>(),
            [110, 111, 112, 113]
        );
        assert_eq!(
            b.apply(Side::Bid, 101, 7),
            Applied::Set {
                new_level: false,
                evicted: None
            }
        );
        assert_eq!(b.size_at(Side::Bid, 101), Some(7));
        assert_eq!(b.apply(Side::Bid, 101, 0), Applied::Removed);
        assert_eq!(b.apply(Side::Bid, 101, 0), Applied::Unchanged);
        assert_eq!(b.size_at(Side::Bid, 101), None);
    }

    #[test]
    fn a_full_side_keeps_its_best_levels() {
        let mut b = Book::new(2);
        b.apply(Side::Ask, 10, 1);
        b.apply(Side::Ask, 11, 1);
        assert_eq!(
            b.apply(Side::Ask, 12, 1),
            Applied::Dropped,
            "worse than all"
        );
        assert_eq!(
            b.apply(Side::Ask, 9, 1),
            Applied::Set {
                new_level: true,
                evicted: Some(11)
            }
        );
        assert_eq!(b.asks(), &[(9, 1), (10, 1)]);
        b.replace(&[(5, 1), (6, 2), (5, 3), (7, 0)], &[]);
        assert_eq!(b.bids(), &[(6, 2), (5, 3)]);
        assert!(b.asks().is_empty());
    }
}
