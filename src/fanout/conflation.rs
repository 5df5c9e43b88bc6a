//! Conflation: what a slow connection or a rate-limited subscription merges, and when.
//!
//! Policy ([`Core`]'s budget): a connection whose queue passes `high_water_bytes`, or
//! whose oldest unsent byte is older than `max_queue_age_ms`, *conflates*: its
//! subscriptions stop queueing ticks and merge them instead, and the client is told
//! (`{"type":"conflation","state":"on"}`). Once its queue drains to `low_water_bytes`,
//! every subscription sends what it merged and the connection streams again
//! (`"state":"off"`, with the number of updates merged). A `max_rate` subscription
//! merges between its deliveries the same way, released by the core's timer when its
//! interval is up.
//!
//! Mechanism ([`Conflator`], [`RateGate`], sans-IO). When sending resumes, a conflator
//! yields at most one quote and one trade record:
//! - quotes: the latest quote, standing for every quote absorbed;
//! - trades: one aggregate — last price, high, low, total volume — standing for every
//!   trade absorbed, so no volume is lost.
//!
//! Each record carries `count` (the updates it stands for) and the `conflated` flag
//! when it stands for more than one, and the sequence number of the latest update it
//! merged. Memory is two ticks per subscription, whatever the feed rate or the stall's
//! length. Sans-IO: no clock, no socket.

use serde_json::json;

use super::core::{ConnId, Core};
use super::subscriptions::SubKey;
use crate::book::{Level, Side};
use crate::tick::{Body, Flags, Tick};
use crate::wire::{BookMessage, OP_TEXT};

impl Core {
    /// Whether `key`'s queue is over its budget (bytes or age).
    pub(super) fn over_budget(&self, key: ConnId, now: u64) -> bool {
        let out = &self.conns[key].out;
        let max_age = self.settings.max_queue_age_ns;
        out.queued() > self.settings.high_water_bytes
            || (max_age > 0 && out.oldest_age_ns(now) > max_age)
    }

    /// `key` stops queueing ticks and merges them.
    pub(super) fn enter_conflation(&mut self, key: ConnId, now: u64) {
        let conn = &mut self.conns[key];
        if conn.conflating || !conn.live() {
            return;
        }
        conn.conflating = true;
        conn.conflation_entries += 1;
        self.counters.conflation_entries += 1;
        // A connection that conflates may not write again for a long time (its
        // socket is full): its counters in `/stats` are made current now, not at its
        // next write.
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        conn.stats.conflating.store(1, relaxed);
        conn.stats
            .conflation_entries
            .store(conn.conflation_entries, relaxed);
        conn.out
            .push_frame(OP_TEXT, br#"{"type":"conflation","state":"on"}"#, now);
        self.mark_ready(key);
    }

    /// Sends what every pending subscription of `key` merged, and streams again.
    pub(super) fn leave_conflation(&mut self, key: ConnId, now: u64) {
        let conn = &mut self.conns[key];
        conn.conflating = false;
        conn.stats
            .conflating
            .store(0, std::sync::atomic::Ordering::Relaxed);
        let keys: Vec<SubKey> = conn.subs.iter().map(|&(_, sk)| sk).collect();
        let mut merged = 0u64;
        for sk in keys {
            merged += self.release(sk, now);
        }
        let msg =
            serde_json::to_vec(&json!({"type": "conflation", "state": "off", "merged": merged}))
                .unwrap_or_default();
        if let Some(conn) = self.conns.get_mut(key) {
            if conn.live() {
                conn.out.push_frame(OP_TEXT, &msg, now);
                self.mark_ready(key);
            }
        }
    }

    /// Emits what subscription `sk` merged; returns the number of updates it stood for.
    pub(super) fn release(&mut self, sk: SubKey, now: u64) -> u64 {
        let Some(sub) = self.subs.get_mut(sk) else {
            return 0;
        };
        if !sub.pending {
            return 0;
        }
        sub.pending = false;
        let mut out: [Option<Tick>; 2] = [None, None];
        let mut merged = 0;
        let mut book = None;
        if let Some(c) = sub.merged.as_mut() {
            merged = c.pending_count();
            let mut i = 0;
            c.drain(|t| {
                out[i] = Some(t);
                i += 1;
            });
            book = c.take_book();
        }
        if sub.rate.interval_ns() == 0 {
            // Kept only by subscriptions that merge between every delivery.
            sub.merged = None;
        }
        sub.rate.sent(now);
        let conn = sub.conn;
        for t in out.into_iter().flatten() {
            self.push_tick(conn, &t, now);
        }
        if let Some(b) = book {
            self.release_book(sk, &b, now);
        }
        merged
    }

    /// Sends what subscription `sk` merged of its book: the merged changes, or past
    /// the bound a fresh snapshot (which also covers any change the core has not read
    /// yet: those are then skipped).
    fn release_book(&mut self, sk: SubKey, b: &BookMerge, now: u64) {
        let Some(sub) = self.subs.get(sk) else {
            return;
        };
        let (conn, symbol) = (sub.conn, sub.symbol);
        let count = b.count.max(1);
        let conflated = if count > 1 {
            Flags::CONFLATED
        } else {
            Flags::empty()
        };
        if b.overflow {
            let snap = self.lvc.book(symbol);
            if let Some(sub) = self.subs.get_mut(sk) {
                sub.book_seq = sub.book_seq.max(snap.seq);
            }
            let m = BookMessage {
                symbol_id: symbol,
                seq: snap.seq,
                ts_event: snap.ts_event,
                ts_recv: snap.ts_recv,
                flags: Flags::SNAPSHOT.with(conflated),
                count,
                bids: &snap.bids,
                asks: &snap.asks,
            };
            self.push_book(conn, &m, now);
            return;
        }
        let Some(last) = b.last else {
            return;
        };
        let (bids, asks) = b.changes();
        let m = BookMessage {
            symbol_id: symbol,
            seq: last.seq,
            ts_event: last.ts_event,
            ts_recv: last.ts_recv,
            flags: b.flags.with(conflated),
            count,
            bids: &bids,
            asks: &asks,
        };
        self.push_book(conn, &m, now);
    }

    /// Releases the rate-limited subscriptions whose interval is up, and finds when
    /// the next one is.
    pub(super) fn release_due(&mut self, now: u64) {
        let mut next = u64::MAX;
        let mut pending = std::mem::take(&mut self.pending);
        pending.retain(|&sk| {
            let Some(sub) = self.subs.get(sk) else {
                return false;
            };
            if !sub.pending {
                return false;
            }
            let conn = &self.conns[sub.conn];
            if conn.conflating || !conn.live() {
                // Released when the connection leaves conflation (or never).
                return true;
            }
            if !sub.rate.allows(now) {
                next = next.min(sub.rate.next_due_ns());
                return true;
            }
            self.release(sk, now);
            false
        });
        pending.append(&mut self.pending);
        self.pending = pending;
        self.next_release_ns = u64::MAX;
        self.arm_release(next);
    }
}

/// Merge state of one subscription.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conflator {
    trade: Option<Tick>,
    quote: Option<Tick>,
    /// Book changes merged, made on the first one.
    book: Option<Box<BookMerge>>,
}

impl Conflator {
    /// Nothing absorbed.
    pub const fn new() -> Conflator {
        Conflator {
            trade: None,
            quote: None,
            book: None,
        }
    }

    /// Merges `tick` into the pending state; book changes keep at most `book_levels`
    /// distinct levels ([`BookMerge::absorb`]).
    pub fn absorb_bounded(&mut self, tick: &Tick, book_levels: usize) {
        if let Body::Book { .. } = tick.body {
            self.book
                .get_or_insert_with(Box::default)
                .absorb(tick, book_levels);
        } else {
            self.absorb(tick);
        }
    }

    /// Makes the next release send a fresh book snapshot (a snapshot became due while
    /// the connection conflated).
    pub fn want_book_snapshot(&mut self) {
        let b = self.book.get_or_insert_with(Box::default);
        b.overflow = true;
        b.levels = Vec::new();
    }

    /// The book changes merged, if any.
    pub fn book(&self) -> Option<&BookMerge> {
        self.book.as_deref()
    }

    /// Takes the book changes merged.
    pub fn take_book(&mut self) -> Option<Box<BookMerge>> {
        self.book.take()
    }

    /// Merges `tick` into the pending state (a book change with the default bound,
    /// [`DEFAULT_MERGE_LEVELS`]).
    pub fn absorb(&mut self, tick: &Tick) {
        match tick.body {
            Body::Book { .. } => self.absorb_bounded(tick, DEFAULT_MERGE_LEVELS),
            Body::Quote { .. } => {
                let count = self.quote.map_or(0, |q| q.count);
                let flags = self.quote.map_or(Flags::empty(), |q| q.flags);
                self.quote = Some(Tick {
                    count: count.saturating_add(tick.count),
                    flags: flags.with(tick.flags),
                    ..*tick
                });
            }
            Body::Trade {
                price,
                size,
                high,
                low,
            } => {
                self.trade = Some(match self.trade {
                    None => *tick,
                    Some(prev) => {
                        let Body::Trade {
                            size: vol,
                            high: hi,
                            low: lo,
                            ..
                        } = prev.body
                        else {
                            unreachable!("the trade slot only holds trades")
                        };
                        Tick {
                            count: prev.count.saturating_add(tick.count),
                            flags: prev.flags.with(tick.flags),
                            body: Body::Trade {
                                price,
                                size: vol.saturating_add(size),
                                high: hi.max(high),
                                low: lo.min(low),
                            },
                            ..*tick
                        }
                    }
                });
            }
        }
    }

    /// Whether a trade or a quote is pending (book changes aside).
    pub fn holds_ticks(&self) -> bool {
        self.trade.is_some() || self.quote.is_some()
    }

    /// Whether anything is pending.
    pub fn is_empty(&self) -> bool {
        self.trade.is_none() && self.quote.is_none() && self.book.is_none()
    }

    /// Updates absorbed and not yet emitted.
    pub fn pending_count(&self) -> u64 {
        u64::from(self.trade.map_or(0, |t| t.count))
            + u64::from(self.quote.map_or(0, |q| q.count))
            + self.book.as_ref().map_or(0, |b| u64::from(b.count))
    }

    /// Emits the pending trade and quote records in sequence order and clears them
    /// (book changes stay, for [`Conflator::take_book`]). A record that stands for
    /// more than one update is flagged `conflated`.
    pub fn drain(&mut self, mut emit: impl FnMut(Tick)) {
        let mut out = [self.trade.take(), self.quote.take()];
        if let [Some(t), Some(q)] = out {
            if q.seq < t.seq {
                out = [Some(q), Some(t)];
            }
        }
        for mut t in out.into_iter().flatten() {
            if t.count > 1 {
                t.flags = t.flags.with(Flags::CONFLATED);
            }
            emit(t);
        }
    }
}

/// Distinct levels a [`BookMerge`] holds by default before it gives up for a snapshot:
/// twice the default `max_book_levels` (a whole book's worth of changes on each side).
pub const DEFAULT_MERGE_LEVELS: usize = 2 * crate::lvc::DEFAULT_MAX_BOOK_LEVELS;

/// The book changes one subscription merged while it could not send them.
///
/// Keyed by (side, price): the latest size wins; a level the server's book did not
/// hold before the first change merged here (`new_level`) and that ends removed is
/// left out, since the client never had it. Applied to the client's book — which is
/// the server's as of the change before the first one merged — the result is exactly
/// the server's book as of `last.seq`. Past `bound` distinct levels the changes are
/// dropped and `overflow` set: a snapshot then costs no more than the changes would.
/// Memory: at most `bound` levels, only while merging.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BookMerge {
    /// `(side, price) → (size, new_level)`, sorted: bids, then asks, by price.
    levels: Vec<((Side, i64), (i64, bool))>,
    /// Book changes absorbed.
    pub count: u32,
    /// The last change absorbed (its sequence number, times and flags stand for the
    /// merged message).
    pub last: Option<Tick>,
    /// Flags of every change absorbed.
    pub flags: Flags,
    /// More than the bound: send a snapshot instead.
    pub overflow: bool,
}

impl BookMerge {
    /// Merges one book change, keeping at most `bound` distinct levels.
    pub fn absorb(&mut self, tick: &Tick, bound: usize) {
        let Body::Book {
            side,
            price,
            size,
            new_level,
            ..
        } = tick.body
        else {
            return;
        };
        self.count = self.count.saturating_add(tick.count.max(1));
        self.flags = self.flags.with(tick.flags);
        self.last = Some(*tick);
        if self.overflow {
            return;
        }
        match self.levels.binary_search_by_key(&(side, price), |e| e.0) {
            // The first change of a level decides whether the client had it.
            Ok(i) => self.levels[i].1 .0 = size,
            Err(i) => {
                if self.levels.len() >= bound {
                    self.overflow = true;
                    self.levels = Vec::new();
                    return;
                }
                self.levels.insert(i, ((side, price), (size, new_level)));
            }
        }
    }

    /// The merged levels to send, `(bids, asks)` best first: every level whose size
    /// changed, except those added and removed again meanwhile.
    pub fn changes(&self) -> (Vec<Level>, Vec<Level>) {
        let mut bids = Vec::new();
        let mut asks = Vec::new();
        for &((side, price), (size, new_level)) in &self.levels {
            if new_level && size == 0 {
                continue;
            }
            match side {
                Side::Bid => bids.push((price, size)),
                Side::Ask => asks.push((price, size)),
            }
        }
        bids.reverse();
        (bids, asks)
    }
}

/// The `max_rate` clock of one subscription: at most one delivery per interval.
/// Sans-IO: the caller passes `now` (ns).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateGate {
    interval_ns: u64,
    next_due_ns: u64,
}

impl RateGate {
    /// A gate for `max_rate` updates per second; `0.0` (or less) is unlimited. A rate
    /// so slow that its interval does not fit in a `u64` of nanoseconds gets the
    /// longest interval there is, never none (the protocol refuses rates below
    /// [`crate::protocol::MIN_MAX_RATE`] before they get here).
    pub fn new(max_rate: f64) -> RateGate {
        RateGate {
            interval_ns: interval_ns(max_rate),
            next_due_ns: 0,
        }
    }

    /// Changes the rate of a live subscription; a shorter interval takes effect at once.
    pub fn retune(&mut self, max_rate: f64, now_ns: u64) {
        self.interval_ns = interval_ns(max_rate);
        self.next_due_ns = self
            .next_due_ns
            .min(now_ns.saturating_add(self.interval_ns));
    }

    /// Whether a delivery may go out at `now_ns`.
    pub fn allows(&self, now_ns: u64) -> bool {
        self.interval_ns == 0 || now_ns >= self.next_due_ns
    }

    /// Records a delivery at `now_ns`.
    pub fn sent(&mut self, now_ns: u64) {
        if self.interval_ns > 0 {
            self.next_due_ns = now_ns.saturating_add(self.interval_ns);
        }
    }

    /// The interval in ns (0: unlimited).
    pub fn interval_ns(&self) -> u64 {
        self.interval_ns
    }

    /// When the next delivery may go out, ns (0 when it may now).
    pub fn next_due_ns(&self) -> u64 {
        self.next_due_ns
    }
}

fn interval_ns(max_rate: f64) -> u64 {
    if max_rate > 0.0 {
        // `as` saturates: an infinite or huge interval is u64::MAX, the slowest rate.
        (1e9 / max_rate) as u64
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rate too slow for any interval is the slowest rate, not unlimited.
    #[test]
    fn tiny_rates_saturate_to_the_slowest() {
        for rate in [1e-20, 5e-324, 1e-300] {
            let mut gate = RateGate::new(rate);
            assert_eq!(gate.interval_ns(), u64::MAX, "{rate}");
            assert!(gate.allows(0));
            gate.sent(1_000);
            assert!(
                !gate.allows(u64::MAX - 1),
                "{rate}: one delivery, then none"
            );
        }
        assert_eq!(RateGate::new(1e-6).interval_ns(), 1_000_000_000_000_000);
        assert_eq!(RateGate::new(0.0).interval_ns(), 0, "0 is unlimited");
    }

    /// A gate and a conflator on their own, in simulated time: a tick every millisecond
    /// for five seconds at `max_rate = 2`, and a timer every 5 ms that releases what
    /// the gate allows. (The core's use of them is tested in `fanout::tests`.)
    #[test]
    fn max_rate_two_over_five_seconds_in_simulated_time() {
        let ms = 1_000_000u64;
        let mut gate = RateGate::new(2.0);
        let mut c = Conflator::new();
        let mut delivered: Vec<(u64, Tick)> = Vec::new();
        let mut last_sent = None;
        for i in 1..=5_000u64 {
            let now = i * ms;
            let t = quote(i, i as i64);
            if gate.allows(now) && c.is_empty() {
                delivered.push((now, t));
                gate.sent(now);
            } else {
                c.absorb(&t);
            }
            if i % 5 == 0 && !c.is_empty() && gate.allows(now) {
                c.drain(|t| delivered.push((now, t)));
                gate.sent(now);
            }
            last_sent = Some(t);
        }
        // After the feed stops, the timer keeps releasing until nothing is pending.
        let mut now = 5_000 * ms;
        while !c.is_empty() {
            now += 5 * ms;
            if gate.allows(now) {
                c.drain(|t| delivered.push((now, t)));
                gate.sent(now);
            }
        }
        for w in delivered.windows(2) {
            assert!(
                w[1].0 - w[0].0 >= 500 * ms,
                "deliveries at least 500 ms apart"
            );
        }
        assert!(
            delivered.len() <= 11,
            "{} deliveries in 5 s",
            delivered.len()
        );
        let total: u64 = delivered.iter().map(|(_, t)| u64::from(t.count)).sum();
        assert_eq!(total, 5_000, "every update is sent or merged, none lost");
        assert_eq!(
            delivered.last().map(|(_, t)| t.seq),
            last_sent.map(|t| t.seq),
            "final value held"
        );
    }

    #[test]
    fn retune_and_unlimited() {
        let mut g = RateGate::new(0.0);
        assert!(g.allows(0));
        g.sent(0);
        assert!(g.allows(1), "unlimited never waits");
        g.retune(1.0, 10);
        g.sent(10);
        assert!(!g.allows(500_000_010));
        assert!(g.allows(1_000_000_010));
        g.retune(100.0, 20);
        assert!(g.allows(10_000_020), "a faster rate applies at once");
    }

    fn trade(seq: u64, price: i64, size: i64) -> Tick {
        Tick {
            symbol_id: 1,
            seq,
            ts_event: seq * 10,
            ts_recv: seq * 10 + 1,
            flags: Flags::empty(),
            count: 1,
            body: Body::trade(price, size),
        }
    }

    fn quote(seq: u64, bid: i64) -> Tick {
        Tick {
            body: Body::Quote {
                bid_px: bid,
                bid_sz: 1,
                ask_px: bid + 1,
                ask_sz: 1,
            },
            ..trade(seq, 0, 0)
        }
    }

    fn drained(c: &mut Conflator) -> Vec<Tick> {
        let mut v = Vec::new();
        c.drain(|t| v.push(t));
        v
    }

    #[test]
    fn single_update_passes_unflagged() {
        let mut c = Conflator::new();
        c.absorb(&trade(1, 100, 5));
        assert_eq!(drained(&mut c), vec![trade(1, 100, 5)]);
        assert!(c.is_empty());
    }

    #[test]
    fn trades_aggregate_volume_high_low_last() {
        let mut c = Conflator::new();
        for (seq, px, sz) in [(1, 100, 5), (2, 120, 1), (4, 90, 2), (5, 110, 3)] {
            c.absorb(&trade(seq, px, sz));
        }
        c.absorb(&quote(3, 50));
        c.absorb(&quote(6, 55));
        assert_eq!(c.pending_count(), 6);
        let out = drained(&mut c);
        assert_eq!(out.len(), 2);
        let t = out[0];
        assert_eq!((t.seq, t.count, t.ts_event), (5, 4, 50));
        assert!(t.flags.contains(Flags::CONFLATED));
        assert_eq!(
            t.body,
            Body::Trade {
                price: 110,
                size: 11,
                high: 120,
                low: 90
            }
        );
        let q = out[1];
        assert_eq!((q.seq, q.count), (6, 2));
        assert_eq!(q.body, quote(6, 55).body);
        assert!(q.flags.contains(Flags::CONFLATED));
    }

    #[test]
    fn emits_in_sequence_order_and_keeps_flags() {
        let mut c = Conflator::new();
        c.absorb(&trade(2, 1, 1));
        c.absorb(&Tick {
            flags: Flags::SNAPSHOT,
            ..quote(1, 7)
        });
        let out = drained(&mut c);
        assert_eq!(out.iter().map(|t| t.seq).collect::<Vec<_>>(), [1, 2]);
        assert!(out[0].flags.contains(Flags::SNAPSHOT));
        assert!(!out[0].flags.contains(Flags::CONFLATED));
    }

    fn level(seq: u64, side: Side, price: i64, size: i64, new_level: bool) -> Tick {
        Tick {
            body: Body::Book {
                side,
                price,
                size,
                new_level,
                group: (1, 0),
            },
            ..trade(seq, 0, 0)
        }
    }

    #[test]
    fn book_changes_merge_per_level() {
        let mut c = Conflator::new();
        c.absorb(&level(1, Side::Bid, 100, 5, false)); // a level the client has
        c.absorb(&level(2, Side::Bid, 99, 1, true)); // added…
        c.absorb(&level(3, Side::Bid, 100, 7, false)); // latest size wins
        c.absorb(&level(4, Side::Bid, 99, 0, false)); // …and removed: vanishes
        c.absorb(&level(5, Side::Ask, 101, 0, false)); // a removal the client needs
        c.absorb(&level(6, Side::Bid, 98, 0, false)); // removed…
        c.absorb(&level(7, Side::Bid, 98, 2, true)); // …and back: its new size
        c.absorb(&quote(8, 50));
        assert_eq!(c.pending_count(), 8);
        assert_eq!(
            drained(&mut c).len(),
            1,
            "the quote; the book waits for take_book"
        );
        let b = c.take_book().unwrap();
        assert_eq!(
            (b.count, b.last.map(|t| t.seq), b.overflow),
            (7, Some(7), false)
        );
        assert_eq!(b.changes(), (vec![(100, 7), (98, 2)], vec![(101, 0)]));
        assert!(c.is_empty());
    }

    #[test]
    fn book_merge_past_its_bound_asks_for_a_snapshot() {
        let mut m = BookMerge::default();
        for p in 0..4 {
            m.absorb(&level(p as u64 + 1, Side::Ask, p, 1, true), 3);
        }
        assert!(m.overflow);
        assert_eq!(m.changes(), (vec![], vec![]), "levels let go");
        m.absorb(&level(5, Side::Ask, 9, 1, true), 3);
        assert_eq!(
            (m.count, m.last.map(|t| t.seq)),
            (5, Some(5)),
            "still counted"
        );
    }

    #[test]
    fn already_merged_counts_add_up() {
        let mut c = Conflator::new();
        c.absorb(&Tick {
            count: 3,
            ..trade(1, 10, 4)
        });
        c.absorb(&trade(2, 11, 1));
        assert_eq!(drained(&mut c)[0].count, 4);
    }
}
