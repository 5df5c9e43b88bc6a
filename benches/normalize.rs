//! Feed normalization: venue messages per second turned into `FeedTick`s, per venue
//! format, with tickcast's simd-json tape normalizer against two serde_json
//! baselines that produce the same ticks from the same messages:
//!
//! - `serde_json_value`: `serde_json::from_slice::<Value>` (a DOM, like the tape);
//! - `serde_json_typed`: `#[derive(Deserialize)]` structs borrowing `&str` fields,
//!   the fastest idiomatic serde_json reading.
//!
//! Input: every line of the sample captures in `feeds/` (trades, quotes, acks,
//! heartbeats), in order. Before measuring, the three are checked to produce the
//! same ticks. The order-book captures go through the normalizers alone
//! (`normalize_books`). Run: `cargo bench --bench normalize`.
//!
//! Wall-clock figures move with whatever else the machine runs. For a figure that
//! does not, `NORMALIZE_PASSES=<venue>:<reader>:<passes>` makes the binary run only
//! that reader over the capture `passes` times and exit; under
//! `valgrind --tool=callgrind`, the difference between two pass counts divided by the
//! messages read is the instruction count per message (see `docs/benchmarks.md`).

use std::collections::HashMap;
use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, Criterion, Throughput};
use serde::Deserialize;
use serde_json::Value;
use tickcast::feed::normalize::{Normalizer, Venue, DEFAULT_MAX_MESSAGE_BYTES};
use tickcast::feed::FeedTick;
use tickcast::fixed;
use tickcast::symbol::Symbol;
use tickcast::tick::Body;

const NOW: u64 = 1_795_185_000_000_000_000;

fn capture(name: &str) -> Vec<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("feeds")
        .join(name);
    std::fs::read_to_string(path)
        .expect("capture")
        .lines()
        .map(|l| l.as_bytes().to_vec())
        .collect()
}

/// The baselines keep the same per-symbol trade-id check as the normalizers.
#[derive(Default)]
struct Ids(HashMap<Symbol, u64>);

impl Ids {
    fn fresh(&mut self, s: Symbol, id: u64) -> bool {
        match self.0.get_mut(&s) {
            Some(last) if id <= *last => false,
            Some(last) => {
                *last = id;
                true
            }
            None => {
                self.0.insert(s, id);
                true
            }
        }
    }
}

fn dec(s: &str) -> Option<i64> {
    fixed::parse(s.as_bytes()).ok()
}

fn time_ns(s: &str) -> Option<u64> {
    let t = humantime::parse_rfc3339(s).ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos() as u64)
}

// --- serde_json::Value baseline ---------------------------------------------------

fn binance_value(msg: &[u8], ids: &mut Ids) -> Option<FeedTick> {
    let v: Value = serde_json::from_slice(msg).ok()?;
    let stream = v.get("stream")?.as_str()?;
    let d = v.get("data")?;
    let symbol = Symbol::namespaced("BINANCE", d.get("s")?.as_str()?.as_bytes()).ok()?;
    match stream.split('@').nth(1)? {
        "trade" => {
            if !ids.fresh(symbol, d.get("t")?.as_u64()?) {
                return None;
            }
            Some(FeedTick {
                symbol,
                ts_event: d.get("T")?.as_u64()? * 1_000_000,
                body: Body::trade(dec(d.get("p")?.as_str()?)?, dec(d.get("q")?.as_str()?)?),
            })
        }
        "bookTicker" => Some(FeedTick {
            symbol,
            ts_event: NOW,
            body: Body::Quote {
                bid_px: dec(d.get("b")?.as_str()?)?,
                bid_sz: dec(d.get("B")?.as_str()?)?,
                ask_px: dec(d.get("a")?.as_str()?)?,
                ask_sz: dec(d.get("A")?.as_str()?)?,
            },
        }),
        _ => None,
    }
}

fn coinbase_value(msg: &[u8], ids: &mut Ids, tickers: &mut Ids) -> Option<FeedTick> {
    let v: Value = serde_json::from_slice(msg).ok()?;
    let ty = v.get("type")?.as_str()?;
    let s = |k: &str| v.get(k).and_then(Value::as_str);
    match ty {
        "match" | "last_match" => {
            let symbol = Symbol::namespaced("COINBASE", s("product_id")?.as_bytes()).ok()?;
            if !ids.fresh(symbol, v.get("trade_id")?.as_u64()?) {
                return None;
            }
            Some(FeedTick {
                symbol,
                ts_event: time_ns(s("time")?)?,
                body: Body::trade(dec(s("price")?)?, dec(s("size")?)?),
            })
        }
        "ticker" => {
            let symbol = Symbol::namespaced("COINBASE", s("product_id")?.as_bytes()).ok()?;
            if !tickers.fresh(symbol, v.get("sequence")?.as_u64()?) {
                return None;
            }
            Some(FeedTick {
                symbol,
                ts_event: time_ns(s("time")?)?,
                body: Body::Quote {
                    bid_px: dec(s("best_bid")?)?,
                    bid_sz: dec(s("best_bid_size")?)?,
                    ask_px: dec(s("best_ask")?)?,
                    ask_sz: dec(s("best_ask_size")?)?,
                },
            })
        }
        _ => None,
    }
}

// --- typed serde_json baseline ----------------------------------------------------

#[derive(Deserialize)]
struct BinanceEnvelope<'a> {
    #[serde(borrow)]
    stream: Option<&'a str>,
    #[serde(borrow)]
    data: Option<BinanceData<'a>>,
}

#[allow(non_snake_case)]
#[derive(Deserialize)]
struct BinanceData<'a> {
    s: &'a str,
    t: Option<u64>,
    p: Option<&'a str>,
    q: Option<&'a str>,
    T: Option<u64>,
    b: Option<&'a str>,
    B: Option<&'a str>,
    a: Option<&'a str>,
    A: Option<&'a str>,
}

fn binance_typed(msg: &[u8], ids: &mut Ids) -> Option<FeedTick> {
    let env: BinanceEnvelope<'_> = serde_json::from_slice(msg).ok()?;
    let d = env.data?;
    let symbol = Symbol::namespaced("BINANCE", d.s.as_bytes()).ok()?;
    match env.stream?.split('@').nth(1)? {
        "trade" => {
            if !ids.fresh(symbol, d.t?) {
                return None;
            }
            Some(FeedTick {
                symbol,
                ts_event: d.T? * 1_000_000,
                body: Body::trade(dec(d.p?)?, dec(d.q?)?),
            })
        }
        "bookTicker" => Some(FeedTick {
            symbol,
            ts_event: NOW,
            body: Body::Quote {
                bid_px: dec(d.b?)?,
                bid_sz: dec(d.B?)?,
                ask_px: dec(d.a?)?,
                ask_sz: dec(d.A?)?,
            },
        }),
        _ => None,
    }
}

#[derive(Deserialize)]
struct CoinbaseMessage<'a> {
    #[serde(rename = "type")]
    ty: &'a str,
    product_id: Option<&'a str>,
    trade_id: Option<u64>,
    sequence: Option<u64>,
    price: Option<&'a str>,
    size: Option<&'a str>,
    time: Option<&'a str>,
    best_bid: Option<&'a str>,
    best_bid_size: Option<&'a str>,
    best_ask: Option<&'a str>,
    best_ask_size: Option<&'a str>,
}

fn coinbase_typed(msg: &[u8], ids: &mut Ids, tickers: &mut Ids) -> Option<FeedTick> {
    let m: CoinbaseMessage<'_> = serde_json::from_slice(msg).ok()?;
    match m.ty {
        "match" | "last_match" => {
            let symbol = Symbol::namespaced("COINBASE", m.product_id?.as_bytes()).ok()?;
            if !ids.fresh(symbol, m.trade_id?) {
                return None;
            }
            Some(FeedTick {
                symbol,
                ts_event: time_ns(m.time?)?,
                body: Body::trade(dec(m.price?)?, dec(m.size?)?),
            })
        }
        "ticker" => {
            let symbol = Symbol::namespaced("COINBASE", m.product_id?.as_bytes()).ok()?;
            if !tickers.fresh(symbol, m.sequence?) {
                return None;
            }
            Some(FeedTick {
                symbol,
                ts_event: time_ns(m.time?)?,
                body: Body::Quote {
                    bid_px: dec(m.best_bid?)?,
                    bid_sz: dec(m.best_bid_size?)?,
                    ask_px: dec(m.best_ask?)?,
                    ask_sz: dec(m.best_ask_size?)?,
                },
            })
        }
        _ => None,
    }
}

// --- the three readers over a whole capture ----------------------------------------

fn run_simd(n: &mut Normalizer, lines: &[Vec<u8>]) -> Vec<FeedTick> {
    n.reset();
    lines
        .iter()
        .filter_map(|l| n.normalize(l, NOW).ok().and_then(|o| o.tick))
        .collect()
}

fn value_one(venue: Venue, l: &[u8], ids: &mut Ids, tickers: &mut Ids) -> Option<FeedTick> {
    match venue {
        Venue::Binance => binance_value(l, ids),
        Venue::Coinbase => coinbase_value(l, ids, tickers),
    }
}

fn typed_one(venue: Venue, l: &[u8], ids: &mut Ids, tickers: &mut Ids) -> Option<FeedTick> {
    match venue {
        Venue::Binance => binance_typed(l, ids),
        Venue::Coinbase => coinbase_typed(l, ids, tickers),
    }
}

type OneFn = fn(Venue, &[u8], &mut Ids, &mut Ids) -> Option<FeedTick>;

fn run_baseline(one: OneFn, venue: Venue, lines: &[Vec<u8>]) -> Vec<FeedTick> {
    let (mut ids, mut tickers) = (Ids::default(), Ids::default());
    lines
        .iter()
        .filter_map(|l| one(venue, l, &mut ids, &mut tickers))
        .collect()
}

const CAPTURES: [(Venue, &str); 2] = [
    (Venue::Binance, "binance-spot-btcusdt-ethusdt.jsonl"),
    (Venue::Coinbase, "coinbase-exchange-btc-usd-eth-usd.jsonl"),
];

/// `NORMALIZE_PASSES=<venue>:<reader>:<passes>`: one reader, a fixed amount of work.
fn fixed_passes(spec: &str) {
    let parts: Vec<&str> = spec.split(':').collect();
    let [venue, reader, passes] = parts[..] else {
        panic!("NORMALIZE_PASSES=<venue>:<reader>:<passes>, got {spec:?}");
    };
    let venue: Venue = venue.parse().expect("venue");
    let passes: usize = passes.parse().expect("passes");
    let file = CAPTURES
        .iter()
        .find(|(v, _)| *v == venue)
        .expect("capture")
        .1;
    let lines = capture(file);
    let mut n = Normalizer::new(venue, venue.default_prefix(), DEFAULT_MAX_MESSAGE_BYTES);
    let (mut ids, mut tickers) = (Ids::default(), Ids::default());
    let mut ticks = 0usize;
    for _ in 0..passes {
        n.reset();
        ids.0.clear();
        tickers.0.clear();
        for l in &lines {
            let tick = match reader {
                "simd_json_tape" => n.normalize(black_box(l), NOW).ok().and_then(|o| o.tick),
                "serde_json_value" => value_one(venue, black_box(l), &mut ids, &mut tickers),
                "serde_json_typed" => typed_one(venue, black_box(l), &mut ids, &mut tickers),
                other => panic!("unknown reader {other}"),
            };
            ticks += usize::from(black_box(tick).is_some());
        }
    }
    println!(
        "{venue} {reader}: {passes} passes, {} messages, {ticks} ticks",
        passes * lines.len()
    );
}

fn normalize(c: &mut Criterion) {
    for (venue, file) in CAPTURES {
        let lines = capture(file);
        let mut n = Normalizer::new(venue, venue.default_prefix(), DEFAULT_MAX_MESSAGE_BYTES);
        let reference = run_simd(&mut n, &lines);
        assert!(!reference.is_empty());
        assert_eq!(
            reference,
            run_baseline(value_one, venue, &lines),
            "serde_json Value differs"
        );
        assert_eq!(
            reference,
            run_baseline(typed_one, venue, &lines),
            "serde_json typed differs"
        );

        let mut group = c.benchmark_group(format!("normalize/{venue}"));
        group.throughput(Throughput::Elements(lines.len() as u64));
        group.bench_function("simd_json_tape", |b| {
            b.iter(|| {
                n.reset();
                for l in &lines {
                    let _ = black_box(n.normalize(black_box(l), NOW));
                }
            })
        });
        for (name, one) in [
            ("serde_json_value", value_one as OneFn),
            ("serde_json_typed", typed_one as OneFn),
        ] {
            group.bench_function(name, |b| {
                let (mut ids, mut tickers) = (Ids::default(), Ids::default());
                b.iter(|| {
                    ids.0.clear();
                    tickers.0.clear();
                    for l in &lines {
                        let _ = black_box(one(venue, black_box(l), &mut ids, &mut tickers));
                    }
                })
            });
        }
        group.finish();
    }
}

/// The order-book captures (`feeds/*-depth.jsonl`, `feeds/*-level2.jsonl`) through
/// the normalizers: diff-depth events joined to their snapshots (Binance), level2
/// snapshots and updates (Coinbase), each turned into level changes against the
/// feed's copy of the book. Throughput in messages; the level changes of one pass are
/// printed beside it.
fn books(c: &mut Criterion) {
    for (venue, file) in [
        (Venue::Binance, "binance-spot-btcusdt-depth.jsonl"),
        (Venue::Coinbase, "coinbase-exchange-btc-usd-level2.jsonl"),
    ] {
        let lines = capture(file);
        let mut n = Normalizer::new(venue, venue.default_prefix(), DEFAULT_MAX_MESSAGE_BYTES);
        let mut changes = 0usize;
        for l in &lines {
            n.normalize(l, NOW).expect("the capture normalizes");
            changes += n.book_changes().len();
        }
        assert!(changes > lines.len(), "{venue}: {changes} level changes");
        println!(
            "normalize_books/{venue}: {} messages, {changes} level changes per pass",
            lines.len()
        );
        let mut group = c.benchmark_group(format!("normalize_books/{venue}"));
        group.throughput(Throughput::Elements(lines.len() as u64));
        group.bench_function("simd_json_tape", |b| {
            b.iter(|| {
                n.reset();
                for l in &lines {
                    let _ = black_box(n.normalize(black_box(l), NOW));
                    black_box(n.book_changes());
                }
            })
        });
        group.finish();
    }
}

criterion_group!(benches, normalize, books);

fn main() {
    if let Ok(spec) = std::env::var("NORMALIZE_PASSES") {
        fixed_passes(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
