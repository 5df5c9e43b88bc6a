//! The synthetic feed: a seeded random walk of trades and quotes over `SYM0..SYMn`.
//!
//! Deterministic for a seed: the same seed gives the same symbols, kinds, prices and
//! sizes in the same order. Tick `i` is *scheduled* at `start + i / rate`, and its
//! `ts_event` is that scheduled time, not the time it was actually produced: if the
//! generator (or the sequencer behind it) falls behind, the delay shows up as latency
//! instead of silently stretching the schedule (coordinated omission, as in wrk2).

use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::{FeedContext, FeedTick};
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
        }
    }
}

/// One symbol's walk: mid price in cents.
#[derive(Debug, Clone)]
struct Walk {
    symbol: Symbol,
    mid_cents: i64,
}

/// The deterministic generator, without clocks or threads.
#[derive(Debug)]
pub struct Generator {
    rng: SmallRng,
    walks: Vec<Walk>,
    trade_ratio: f64,
}

impl Generator {
    /// A generator for `cfg` (symbols `SYM0..`).
    pub fn new(cfg: &SyntheticConfig) -> Generator {
        let mut rng = SmallRng::seed_from_u64(cfg.seed);
        let walks = (0..cfg.symbols.max(1))
            .map(|i| Walk {
                symbol: Symbol::new(&format!("SYM{i}")).expect("SYMn is a valid symbol"),
                mid_cents: rng.random_range(1_000..100_000),
            })
            .collect();
        Generator {
            rng,
            walks,
            trade_ratio: cfg.trade_ratio.clamp(0.0, 1.0),
        }
    }

    /// The symbols this generator emits, in id order.
    pub fn symbols(&self) -> impl Iterator<Item = Symbol> + '_ {
        self.walks.iter().map(|w| w.symbol)
    }

    /// The next tick, stamped `ts_event`.
    pub fn next_tick(&mut self, ts_event: u64) -> FeedTick {
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
        FeedTick {
            symbol: walk.symbol,
            ts_event,
            body,
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
    ctx.status
        .connected
        .store(1, std::sync::atomic::Ordering::Relaxed);
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
    ctx.status
        .connected
        .store(0, std::sync::atomic::Ordering::Relaxed);
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
