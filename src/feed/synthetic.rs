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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::{FeedContext, FeedStatus, FeedTick};
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
    /// scheduled time (so the wait shows as latency). Fewer wake-ups of the feed and
    /// the sequencer, for at most this much added delay (half of it on average); 0
    /// wakes for every tick. Default: 300 (`docs/architecture.md`, "Wake-ups per
    /// batch").
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
            burst_us: 300,
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

/// The synthetic feed's schedule: which ticks are due when, handed out in bursts.
///
/// A burst holds every tick due by the time it is taken, each stamped with its own
/// scheduled time; the next burst is due when the next tick is, but at least
/// `burst_us` after this one.
#[derive(Debug)]
pub struct Pacer {
    gen: Generator,
    rate: u64,
    burst: Duration,
    limit: u64,
    start: Instant,
    start_ns: u64,
    sent: u64,
    next_at: Instant,
    /// When the last burst was taken, on the schedule's clock (`start_ns` on).
    burst_ns: u64,
}

impl Pacer {
    /// A schedule starting now, its first burst due at once.
    pub fn new(cfg: &SyntheticConfig) -> Pacer {
        // The wall clock first: a scheduled time is then never after the wall-clock
        // time at which it falls due.
        let start_ns = now_ns();
        let start = Instant::now();
        Pacer {
            gen: Generator::new(cfg),
            rate: cfg.rate.max(1),
            burst: Duration::from_micros(cfg.burst_us),
            limit: cfg.limit,
            start,
            start_ns,
            sent: 0,
            next_at: start,
            burst_ns: start_ns,
        }
    }

    /// The feed's symbols, `SYM0..`.
    pub fn symbols(&self) -> impl Iterator<Item = Symbol> + '_ {
        self.gen.symbols()
    }

    /// Whether the feed has sent its `limit`.
    pub fn finished(&self) -> bool {
        self.limit != 0 && self.sent >= self.limit
    }

    /// When the next burst is due.
    pub fn next_at(&self) -> Instant {
        self.next_at
    }

    /// When the last burst was taken (ns since the epoch, on the schedule's clock: at
    /// or after every scheduled time in it).
    pub fn burst_ns(&self) -> u64 {
        self.burst_ns
    }

    /// Replaces `ticks` with the ticks due now, at most `max` of them (the rest are
    /// due at once), and moves the next burst's time on.
    pub fn burst(&mut self, ticks: &mut Vec<FeedTick>, max: usize) {
        ticks.clear();
        let woke = self.start.elapsed();
        self.burst_ns = self.start_ns + woke.as_nanos() as u64;
        let rate = u128::from(self.rate);
        let mut due = (woke.as_nanos() * rate / 1_000_000_000) as u64 + 1;
        if self.limit != 0 {
            due = due.min(self.limit);
        }
        let capped = due > self.sent.saturating_add(max as u64);
        due = due.min(self.sent.saturating_add(max as u64));
        while self.sent + (ticks.len() as u64) < due {
            let i = self.sent + ticks.len() as u64;
            let scheduled = self.start_ns + (u128::from(i) * 1_000_000_000 / rate) as u64;
            ticks.push(self.gen.next_tick(scheduled));
        }
        self.sent += ticks.len() as u64;
        let next = Duration::from_nanos((u128::from(self.sent) * 1_000_000_000 / rate) as u64);
        self.next_at = if capped {
            self.start + woke
        } else {
            self.start + next.max(woke + self.burst)
        };
    }
}

/// Interns the feed's symbols up front (clients can subscribe to every one at once).
fn intern_all(pacer: &Pacer, ctx: &FeedContext) {
    for s in pacer.symbols() {
        if let Err(e) = ctx.symbols.intern(s) {
            tracing::error!(symbol = %s, error = %e, "synthetic feed cannot intern symbol");
        }
    }
}

/// Runs the feed on its own thread until its limit, shutdown, or the sequencer stops.
pub fn run(cfg: &SyntheticConfig, ctx: &FeedContext) {
    let mut pacer = Pacer::new(cfg);
    intern_all(&pacer, ctx);
    ctx.status.set_connected();
    let mut ticks = Vec::new();
    while !ctx.is_shutdown() && !pacer.finished() {
        pacer.burst(&mut ticks, usize::MAX);
        // The burst's arrival, stored before its event times (`FeedStatus::counted`).
        ctx.status
            .last_message_ns
            .store(pacer.burst_ns(), Ordering::Relaxed);
        if ctx.send_burst(&ticks).is_err() {
            return;
        }
        ctx.status
            .messages
            .fetch_add(ticks.len() as u64, Ordering::Relaxed);
        if let Some(wait) = pacer.next_at().checked_duration_since(Instant::now()) {
            std::thread::sleep(wait.min(Duration::from_millis(50)));
        }
    }
    ctx.status.set_finished();
}

/// The synthetic feed run by the sequencer's own thread: no feed thread, no channel,
/// no wake-up of the sequencer per burst. The sequencer sleeps until
/// [`LocalFeed::deadline`] (or a tick from another feed) and sequences
/// [`LocalFeed::take`] in place; the feed's status is kept as a feed thread keeps it.
#[derive(Debug)]
pub struct LocalFeed {
    pacer: Pacer,
    status: Arc<FeedStatus>,
    shutdown: Arc<AtomicBool>,
    ticks: Vec<FeedTick>,
    done: bool,
}

impl LocalFeed {
    /// Starts the feed (its symbols interned, its status connected). It keeps no
    /// sender of `ctx`'s channel: the sequencer still stops once the other feeds'
    /// senders are gone and this feed is done.
    pub fn new(cfg: &SyntheticConfig, ctx: FeedContext) -> LocalFeed {
        let pacer = Pacer::new(cfg);
        intern_all(&pacer, &ctx);
        ctx.status.set_connected();
        let FeedContext {
            status, shutdown, ..
        } = ctx;
        LocalFeed {
            pacer,
            status,
            shutdown,
            ticks: Vec::new(),
            done: false,
        }
    }

    /// When the next burst is due; `None` once the feed reached its limit or the
    /// server stops feeds (its status then says finished).
    pub fn deadline(&mut self) -> Option<Instant> {
        if !self.done && (self.shutdown.load(Ordering::Relaxed) || self.pacer.finished()) {
            self.done = true;
            self.status.set_finished();
        }
        (!self.done).then(|| self.pacer.next_at())
    }

    /// The burst due now (empty before its time or once done), at most `max` ticks,
    /// counted in the feed's status.
    pub fn take(&mut self, max: usize) -> &[FeedTick] {
        self.ticks.clear();
        if self.deadline().is_some_and(|at| at <= Instant::now()) {
            self.pacer.burst(&mut self.ticks, max);
            self.status
                .last_message_ns
                .store(self.pacer.burst_ns(), Ordering::Relaxed);
            self.status.counted(&self.ticks);
            self.status
                .messages
                .fetch_add(self.ticks.len() as u64, Ordering::Relaxed);
        }
        &self.ticks
    }
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
