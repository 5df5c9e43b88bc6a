//! The synthetic feed: a seeded random walk of trades and quotes over `SYM0..SYMn`.
//!
//! Deterministic for a seed: the same seed gives the same symbols, kinds, prices and
//! sizes in the same order. Tick `i` is *scheduled* at `start + i / rate`, and its
//! `ts_event` is that scheduled time, not the time it was actually produced: if the
//! generator (or the sequencer behind it) falls behind, the delay shows up as latency
//! instead of silently stretching the schedule (coordinated omission, as in wrk2).
//!
//! With `book_depth = N`, each symbol also has an N-level book per side, one cent
//! apart from its quote outwards: every quote is preceded by the level changes that
//! make the book's best bid and ask that quote's (the levels that moved out removed,
//! the new ones added, the best sizes set, now and then a deeper size changed), so a
//! subscriber's book and its quotes always agree. Every change is one update: it
//! counts against `limit` and the rate like a trade or a quote.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::{FeedContext, FeedTick};
use crate::book::{Book, Side};
use crate::clock::now_ns;
use crate::fixed::SCALE;
use crate::symbol::Symbol;
use crate::tick::Body;

/// Settings of the synthetic feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyntheticConfig {
    /// Number of symbols, named `SYM0`, `SYM1`, … Default: 100.
    pub symbols: usize,
    /// Ticks per second over all symbols. Default: 10,000.
    pub rate: u64,
    /// Fraction of ticks that are trades; the rest are quotes. Default: 0.3.
    pub trade_ratio: f64,
    /// Random seed. Default: 42.
    pub seed: u64,
    /// Stop after this many ticks; 0 runs until shutdown. Default: 0.
    pub limit: u64,
    /// Pacing granularity, in µs: the feed wakes at most once per this interval and
    /// sends every tick due by then as one burst, each still stamped with its exact
    /// scheduled time (so the wait shows as latency). Fewer wake-ups of the feed, the
    /// sequencer and the writer cores, for at most this much added delay; 0 wakes for
    /// every tick. Default: 200.
    pub burst_us: u64,
    /// Order-book levels per side for each symbol, 0 for no books (`--book-depth`).
    /// Default: 0.
    pub book_depth: usize,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig {
            symbols: 100,
            rate: 10_000,
            trade_ratio: 0.3,
            seed: 42,
            limit: 0,
            burst_us: 200,
            book_depth: 0,
        }
    }
}

/// One symbol's walk: mid price in cents.
#[derive(Debug, Clone)]
struct Walk {
    symbol: Symbol,
    mid_cents: i64,
    /// The book this walk has published (with `book_depth`).
    book: Book,
}

/// The deterministic generator, without clocks or threads.
#[derive(Debug)]
pub struct Generator {
    rng: SmallRng,
    walks: Vec<Walk>,
    trade_ratio: f64,
    book_depth: usize,
    /// Updates generated and not handed out yet: a quote's book changes, then it.
    queue: VecDeque<(Symbol, Body)>,
}

impl Generator {
    /// A generator for `cfg` (symbols `SYM0..`).
    pub fn new(cfg: &SyntheticConfig) -> Generator {
        let mut rng = SmallRng::seed_from_u64(cfg.seed);
        let walks = (0..cfg.symbols.max(1))
            .map(|i| Walk {
                symbol: Symbol::new(&format!("SYM{i}")).expect("SYMn is a valid symbol"),
                mid_cents: rng.random_range(1_000..100_000),
                book: Book::unbounded(),
            })
            .collect();
        Generator {
            rng,
            walks,
            trade_ratio: cfg.trade_ratio.clamp(0.0, 1.0),
            book_depth: cfg.book_depth,
            queue: VecDeque::new(),
        }
    }

    /// The symbols this generator emits, in id order.
    pub fn symbols(&self) -> impl Iterator<Item = Symbol> + '_ {
        self.walks.iter().map(|w| w.symbol)
    }

    /// The next update, stamped `ts_event`.
    pub fn next_tick(&mut self, ts_event: u64) -> FeedTick {
        if self.queue.is_empty() {
            self.generate();
        }
        let (symbol, body) = self
            .queue
            .pop_front()
            .expect("generate queues at least one update");
        FeedTick {
            symbol,
            ts_event,
            body,
        }
    }

    /// Queues the next trade, or the next quote with the book changes before it.
    fn generate(&mut self) {
        let i = self.rng.random_range(0..self.walks.len());
        let step = self.rng.random_range(-3..=3);
        let walk = &mut self.walks[i];
        walk.mid_cents = (walk.mid_cents + step).max(100);
        let mid = walk.mid_cents;
        let cent = SCALE / 100;
        let body = if self.rng.random_bool(self.trade_ratio) {
            let price = (mid + self.rng.random_range(-1..=1)) * cent;
            Body::trade(price, self.rng.random_range(1..=500) * SCALE)
        } else {
            let half = self.rng.random_range(1..=2);
            Body::Quote {
                bid_px: (mid - half) * cent,
                bid_sz: self.rng.random_range(1..=1_000) * SCALE,
                ask_px: (mid + half) * cent,
                ask_sz: self.rng.random_range(1..=1_000) * SCALE,
            }
        };
        if let (
            Body::Quote {
                bid_px,
                bid_sz,
                ask_px,
                ask_sz,
            },
            true,
        ) = (body, self.book_depth > 0)
        {
            self.queue_book(i, (bid_px, bid_sz), (ask_px, ask_sz));
        }
        self.queue.push_back((self.walks[i].symbol, body));
    }

    /// Queues the changes that move walk `i`'s book to `book_depth` levels per side
    /// whose best are `bid` and `ask`.
    fn queue_book(&mut self, i: usize, bid: (i64, i64), ask: (i64, i64)) {
        let cent = SCALE / 100;
        let depth = self.book_depth;
        // One deeper level gets a new size now and then.
        let reshuffle =
            (depth > 1 && self.rng.random_bool(0.5)).then(|| self.rng.random_range(1..depth));
        for (side, best, step) in [(Side::Bid, bid, -cent), (Side::Ask, ask, cent)] {
            let old: Vec<(i64, i64)> = self.walks[i].book.side(side).to_vec();
            let mut new = Vec::with_capacity(depth);
            for k in 0..depth {
                let price = best.0 + step * k as i64;
                let size = if k == 0 {
                    best.1
                } else {
                    match self.walks[i].book.size_at(side, price) {
                        Some(s) if reshuffle != Some(k) => s,
                        _ => self.rng.random_range(1..=1_000) * SCALE,
                    }
                };
                new.push((price, size));
            }
            let symbol = self.walks[i].symbol;
            for &(price, _) in &old {
                if !new.iter().any(|&(p, _)| p == price) {
                    self.queue.push_back((symbol, Body::book(side, price, 0)));
                }
            }
            for &(price, size) in &new {
                if self.walks[i].book.size_at(side, price) != Some(size) {
                    self.queue
                        .push_back((symbol, Body::book(side, price, size)));
                }
            }
            let book = &mut self.walks[i].book;
            for &(price, _) in &old {
                book.apply(side, price, 0);
            }
            for &(price, size) in &new {
                book.apply(side, price, size);
            }
        }
    }
}

/// Runs the feed until its limit, shutdown, or the sequencer stops.
pub fn run(cfg: &SyntheticConfig, ctx: &FeedContext) {
    let mut gen = Generator::new(cfg);
    for s in gen.symbols() {
        // Interning up front lets clients subscribe to every symbol at once.
        if let Err(e) = ctx.symbols.intern(s) {
            tracing::error!(symbol = %s, error = %e, "synthetic feed cannot intern symbol");
        }
    }
    ctx.status.set_connected();
    let rate = cfg.rate.max(1);
    let burst = Duration::from_micros(cfg.burst_us);
    let start = Instant::now();
    let start_ns = now_ns();
    let mut sent: u64 = 0;
    let mut ticks = Vec::new();
    loop {
        if ctx.is_shutdown() || (cfg.limit != 0 && sent >= cfg.limit) {
            break;
        }
        let woke = start.elapsed();
        // Ticks due by now, one burst: each keeps its own scheduled time.
        let mut due = (woke.as_nanos() * u128::from(rate) / 1_000_000_000) as u64 + 1;
        if cfg.limit != 0 {
            due = due.min(cfg.limit);
        }
        ticks.clear();
        while sent + (ticks.len() as u64) < due {
            let i = sent + ticks.len() as u64;
            let scheduled = start_ns + (u128::from(i) * 1_000_000_000 / u128::from(rate)) as u64;
            ticks.push(gen.next_tick(scheduled));
        }
        if ctx.send_burst(&ticks).is_err() {
            return;
        }
        sent += ticks.len() as u64;
        ctx.status
            .messages
            .fetch_add(ticks.len() as u64, std::sync::atomic::Ordering::Relaxed);
        ctx.status
            .last_message_ns
            .store(now_ns(), std::sync::atomic::Ordering::Relaxed);
        // Sleep until the next tick is due, but not less than the burst interval.
        let next_at =
            Duration::from_nanos((u128::from(sent) * 1_000_000_000 / u128::from(rate)) as u64)
                .max(woke + burst);
        if let Some(wait) = next_at.checked_sub(start.elapsed()) {
            std::thread::sleep(wait.min(Duration::from_millis(50)));
        }
    }
    ctx.status.set_finished();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_for_a_seed() {
        let cfg = SyntheticConfig::default();
        let mut a = Generator::new(&cfg);
        let mut b = Generator::new(&cfg);
        for i in 0..1000 {
            assert_eq!(a.next_tick(i), b.next_tick(i));
        }
        let mut c = Generator::new(&SyntheticConfig { seed: 7, ..cfg });
        let differs = (0..100).any(|i| c.next_tick(i) != a.next_tick(i));
        assert!(differs, "another seed gives another stream");
    }

    /// With `book_depth`, every quote comes after the changes that make its symbol's
    /// book `book_depth` levels a side with the quote's prices and sizes at the top.
    #[test]
    fn books_agree_with_quotes() {
        let cfg = SyntheticConfig {
            symbols: 3,
            book_depth: 5,
            ..SyntheticConfig::default()
        };
        let mut g = Generator::new(&cfg);
        let mut books: std::collections::HashMap<Symbol, Book> = Default::default();
        let (mut quotes, mut changes, mut removals) = (0, 0, 0);
        for i in 0..20_000 {
            let ft = g.next_tick(i);
            let book = books.entry(ft.symbol).or_default();
            match ft.body {
                Body::Book {
                    side, price, size, ..
                } => {
                    assert!(price > 0 && size >= 0);
                    book.apply(side, price, size);
                    changes += 1;
                    removals += usize::from(size == 0);
                }
                Body::Quote {
                    bid_px,
                    bid_sz,
                    ask_px,
                    ask_sz,
                } => {
                    quotes += 1;
                    assert_eq!(book.bids()[0], (bid_px, bid_sz), "update {i}");
                    assert_eq!(book.asks()[0], (ask_px, ask_sz), "update {i}");
                    assert_eq!((book.bids().len(), book.asks().len()), (5, 5));
                }
                Body::Trade { .. } => {}
            }
        }
        assert!(
            quotes > 1_000 && changes > quotes,
            "{quotes} quotes, {changes} changes"
        );
        assert!(removals > 0, "levels move out as the price walks");
        // The stream is deterministic too, books included.
        let mut again = Generator::new(&cfg);
        let mut first = Generator::new(&cfg);
        assert!((0..5_000).all(|i| again.next_tick(i) == first.next_tick(i)));
    }

    #[test]
    fn produces_both_kinds_with_sane_values() {
        let mut g = Generator::new(&SyntheticConfig::default());
        let (mut trades, mut quotes) = (0, 0);
        for i in 0..10_000 {
            match g.next_tick(i).body {
                Body::Trade { price, size, .. } => {
                    assert!(price > 0 && size > 0);
                    trades += 1;
                }
                Body::Quote { bid_px, ask_px, .. } => {
                    assert!(bid_px < ask_px && bid_px > 0);
                    quotes += 1;
                }
                Body::Book { .. } => panic!("no book_depth, no books"),
            }
        }
        assert!(
            (2_000..4_000).contains(&trades),
            "trade ratio near 0.3: {trades}"
        );
        assert!(quotes > trades);
        assert_eq!(g.symbols().count(), 100);
    }
}
