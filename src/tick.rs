//! The normalized tick: one fixed-size value for every trade, quote and book-level
//! change.

use crate::book::Side;
use crate::fixed;

/// Flag bits carried by a tick on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Flags(pub u8);

impl Flags {
    /// The tick is the latest value from the last-value cache, sent on subscribe or
    /// after a reader lost its place; updates before it may not have been delivered.
    pub const SNAPSHOT: Flags = Flags(1);
    /// The tick stands for `count` updates merged because the client could not keep up
    /// or asked for a `max_rate`.
    pub const CONFLATED: Flags = Flags(2);
    /// The tick is re-sent from the ring to fill a gap after a resume.
    pub const REPLAY: Flags = Flags(4);
    /// Flag names in bit order, as they appear in JSON.
    pub const NAMES: [(Flags, &'static str); 3] = [
        (Flags::SNAPSHOT, "snapshot"),
        (Flags::CONFLATED, "conflated"),
        (Flags::REPLAY, "replay"),
    ];

    /// No flag set.
    pub const fn empty() -> Flags {
        Flags(0)
    }

    /// Whether every bit of `other` is set in `self`.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// `self` with the bits of `other` added.
    pub const fn with(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }
}

/// What a tick reports; the wire's `kind` byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// An execution.
    Trade = 1,
    /// A top-of-book quote.
    Quote = 2,
    /// A change of one price level of the symbol's book ([`crate::book`]).
    Book = 3,
}

impl Kind {
    /// The wire byte back to a kind; `None` for an unknown byte.
    pub fn from_u8(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Trade),
            2 => Some(Kind::Quote),
            3 => Some(Kind::Book),
            _ => None,
        }
    }

    /// The JSON name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Trade => "trade",
            Kind::Quote => "quote",
            Kind::Book => "book",
        }
    }
}

/// The values of a tick, fixed point in units of 10⁻⁸ ([`fixed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Body {
    /// One trade, or several merged by conflation: `price` is the last price, `size`
    /// the total volume, `high`/`low` the extremes. A single trade has
    /// `high == low == price`.
    Trade {
        /// Last price.
        price: i64,
        /// Size, or total volume of merged trades.
        size: i64,
        /// Highest price among merged trades.
        high: i64,
        /// Lowest price among merged trades.
        low: i64,
    },
    /// Best bid and offer.
    Quote {
        /// Best bid price.
        bid_px: i64,
        /// Size at the best bid.
        bid_sz: i64,
        /// Best ask price.
        ask_px: i64,
        /// Size at the best ask.
        ask_sz: i64,
    },
    /// One price level of the book set to `size` (0: removed). Book updates have their
    /// own per-symbol sequence numbers, apart from trades and quotes.
    Book {
        /// Bid or ask.
        side: Side,
        /// The level's price.
        price: i64,
        /// Its new size; 0 removes the level.
        size: i64,
        /// The level was not in the server's book before (set by the sequencer): a
        /// merge that ends with it removed can leave it out altogether.
        new_level: bool,
        /// The book message this record belongs to: `(levels in it, index of this
        /// one)`. `(1, 0)` for one change; a snapshot or a merged change of K levels is
        /// K records `(K, 0..K)`; an empty one is one record `(0, 0)` carrying no
        /// level.
        group: (u32, u32),
    },
}

impl Body {
    /// A single trade.
    pub const fn trade(price: i64, size: i64) -> Body {
        Body::Trade {
            price,
            size,
            high: price,
            low: price,
        }
    }

    /// One book-level change, alone in its message.
    pub const fn book(side: Side, price: i64, size: i64) -> Body {
        Body::Book {
            side,
            price,
            size,
            new_level: false,
            group: (1, 0),
        }
    }

    /// A book change's `(side, price, size)`; `None` for a trade or a quote.
    pub const fn level(&self) -> Option<(Side, i64, i64)> {
        match *self {
            Body::Book {
                side, price, size, ..
            } => Some((side, price, size)),
            _ => None,
        }
    }

    /// The kind of this body.
    pub const fn kind(&self) -> Kind {
        match self {
            Body::Trade { .. } => Kind::Trade,
            Body::Quote { .. } => Kind::Quote,
            Body::Book { .. } => Kind::Book,
        }
    }

    /// The four values in wire order (trade: price, size, high, low; quote: bid_px,
    /// bid_sz, ask_px, ask_sz; book: price, size, side word, group word — see
    /// [`Body::book_words`]).
    pub const fn values(&self) -> [i64; 4] {
        match *self {
            Body::Trade {
                price,
                size,
                high,
                low,
            } => [price, size, high, low],
            Body::Quote {
                bid_px,
                bid_sz,
                ask_px,
                ask_sz,
            } => [bid_px, bid_sz, ask_px, ask_sz],
            Body::Book {
                side,
                price,
                size,
                new_level,
                group,
            } => {
                let (s, g) = Body::book_words(side, new_level, group);
                [price, size, s, g]
            }
        }
    }

    /// The third and fourth values of a book record: the side word (bits 0–7 the side,
    /// 0 bid or 1 ask; bit 8 set for a level new to the book) and the group word (bits
    /// 0–31 the levels in the book message, bits 32–63 this record's index).
    pub const fn book_words(side: Side, new_level: bool, group: (u32, u32)) -> (i64, i64) {
        (
            side as i64 | (new_level as i64) << 8,
            (group.0 as u64 | (group.1 as u64) << 32) as i64,
        )
    }

    /// A body from its kind and four wire values.
    pub const fn from_values(kind: Kind, v: [i64; 4]) -> Body {
        match kind {
            Kind::Trade => Body::Trade {
                price: v[0],
                size: v[1],
                high: v[2],
                low: v[3],
            },
            Kind::Quote => Body::Quote {
                bid_px: v[0],
                bid_sz: v[1],
                ask_px: v[2],
                ask_sz: v[3],
            },
            Kind::Book => Body::Book {
                side: if v[2] & 0xff == 1 {
                    Side::Ask
                } else {
                    Side::Bid
                },
                price: v[0],
                size: v[1],
                new_level: v[2] & 0x100 != 0,
                group: (v[3] as u64 as u32, (v[3] as u64 >> 32) as u32),
            },
        }
    }
}

/// A sequenced, normalized tick. `Copy` and fixed size: it is what the ring stores and
/// what a binary record carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tick {
    /// Interned symbol id ([`crate::symbol::SymbolTable`]).
    pub symbol_id: u32,
    /// Per-symbol sequence number, from 1, assigned once by the sequencer.
    pub seq: u64,
    /// Event time at the source, ns since the Unix epoch.
    pub ts_event: u64,
    /// Time the sequencer took the tick in, ns since the Unix epoch.
    pub ts_recv: u64,
    /// Snapshot/conflated/replay bits.
    pub flags: Flags,
    /// Number of updates this tick stands for: 1, or more when conflated.
    pub count: u32,
    /// The trade or quote values.
    pub body: Body,
}

impl Tick {
    /// Number of `u64` words in [`Tick::to_words`].
    pub const WORDS: usize = 9;

    /// Packs the tick into words for the lock-free ring and cache, which copy it with
    /// plain atomic word loads and stores ([`crate::seqlock`]).
    pub fn to_words(&self) -> [u64; Tick::WORDS] {
        let v = self.body.values();
        [
            u64::from(self.body.kind() as u8)
                | u64::from(self.flags.0) << 8
                | u64::from(self.symbol_id) << 32,
            self.seq,
            self.ts_event,
            self.ts_recv,
            u64::from(self.count),
            v[0] as u64,
            v[1] as u64,
            v[2] as u64,
            v[3] as u64,
        ]
    }

    /// Unpacks [`Tick::to_words`]. `None` for words no tick produced (an empty slot).
    pub fn from_words(w: &[u64; Tick::WORDS]) -> Option<Tick> {
        let kind = Kind::from_u8(w[0] as u8)?;
        Some(Tick {
            symbol_id: (w[0] >> 32) as u32,
            flags: Flags((w[0] >> 8) as u8),
            seq: w[1],
            ts_event: w[2],
            ts_recv: w[3],
            count: w[4] as u32,
            body: Body::from_values(kind, [w[5] as i64, w[6] as i64, w[7] as i64, w[8] as i64]),
        })
    }

    /// Human-readable values, for logs and tests.
    pub fn describe(&self) -> String {
        let v = self.body.values();
        format!(
            "sym={} seq={} {} {}/{}/{}/{}",
            self.symbol_id,
            self.seq,
            self.body.kind().name(),
            fixed::to_string(v[0]),
            fixed::to_string(v[1]),
            fixed::to_string(v[2]),
            fixed::to_string(v[3]),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        let ticks = [
            Tick {
                symbol_id: u32::MAX,
                seq: u64::MAX,
                ts_event: 1,
                ts_recv: 2,
                flags: Flags::SNAPSHOT.with(Flags::REPLAY),
                count: 7,
                body: Body::Trade {
                    price: -5,
                    size: i64::MAX,
                    high: i64::MIN,
                    low: 0,
                },
            },
            Tick {
                symbol_id: 4,
                seq: 11,
                ts_event: 12,
                ts_recv: 13,
                flags: Flags::SNAPSHOT,
                count: 2,
                body: Body::Book {
                    side: Side::Ask,
                    price: -7,
                    size: 0,
                    new_level: true,
                    group: (u32::MAX, 3),
                },
            },
            Tick {
                symbol_id: 3,
                seq: 9,
                ts_event: 10,
                ts_recv: 11,
                flags: Flags::empty(),
                count: 1,
                body: Body::Quote {
                    bid_px: 1,
                    bid_sz: 2,
                    ask_px: 3,
                    ask_sz: 4,
                },
            },
        ];
        for t in ticks {
            assert_eq!(Tick::from_words(&t.to_words()), Some(t));
        }
        assert_eq!(Tick::from_words(&[0; Tick::WORDS]), None);
    }
}
