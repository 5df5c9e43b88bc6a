//! Hot-path benches: the ring against a crossbeam channel, encoding one record,
//! fanning one tick out to 10,000 connection outboxes, and order books: a book change
//! delivered to 10,000 outboxes, the conflation merge per changed level, the
//! sequencer's book per change, a snapshot's encoding.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tickcast::book::{Book, Side};
use tickcast::fanout::conflation::BookMerge;
use tickcast::fanout::{Format, Outbox};
use tickcast::ring::{Read, Ring};
use tickcast::tick::{Body, Flags, Tick};
use tickcast::wire::{self, RECORD_SIZE};

fn tick(n: u64) -> Tick {
    Tick {
        symbol_id: (n % 100) as u32,
        seq: n,
        ts_event: 1_700_000_000_000_000_000 + n,
        ts_recv: 1_700_000_000_000_000_100 + n,
        flags: Flags::empty(),
        count: 1,
        body: Body::Quote {
            bid_px: 10_000_000_000,
            bid_sz: 100_000_000,
            ask_px: 10_001_000_000,
            ask_sz: 200_000_000,
        },
    }
}

const BATCH: u64 = 1024;

fn ring(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring");
    g.throughput(Throughput::Elements(BATCH));
    g.bench_function("tickcast_ring_publish_consume_1024", |b| {
        let (mut p, ring) = Ring::new(65_536);
        let mut r = ring.reader();
        let mut n = 0u64;
        b.iter(|| {
            for _ in 0..BATCH {
                n += 1;
                p.publish(&tick(n));
            }
            for _ in 0..BATCH {
                match r.read() {
                    Read::Tick(t) => {
                        black_box(t);
                    }
                    other => panic!("{other:?}"),
                }
            }
        });
    });
    g.bench_function("crossbeam_bounded_send_recv_1024", |b| {
        let (tx, rx) = crossbeam_channel::bounded::<Tick>(65_536);
        let mut n = 0u64;
        b.iter(|| {
            for _ in 0..BATCH {
                n += 1;
                tx.send(tick(n)).unwrap();
            }
            for _ in 0..BATCH {
                black_box(rx.recv().unwrap());
            }
        });
    });
    g.finish();
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(1));
    let t = tick(42);
    g.bench_function("binary_record_rkyv", |b| {
        let mut out = [0u8; RECORD_SIZE];
        b.iter(|| {
            wire::encode_record(black_box(&t), &mut out);
            black_box(&out);
        });
    });
    g.bench_function("json_tick", |b| {
        let mut out = Vec::with_capacity(512);
        b.iter(|| {
            out.clear();
            wire::write_json_tick(black_box(&t), "SYM42", &mut out);
            black_box(&out);
        });
    });
    g.finish();
}

/// One tick appended to 10,000 outboxes, as a writer core does per subscriber: the
/// record is encoded once and copied. Outboxes are drained between iterations
/// (outside the timing) so that memory stays bounded, as the socket write would.
fn fanout(c: &mut Criterion) {
    const CONNS: usize = 10_000;
    let mut g = c.benchmark_group("fanout");
    g.throughput(Throughput::Elements(CONNS as u64));
    let mut boxes: Vec<Outbox> = (0..CONNS).map(|_| Outbox::new()).collect();
    let mut n = 0u64;
    g.bench_function("one_tick_to_10k_outboxes_binary", |b| {
        b.iter_custom(|iters| {
            let mut total = std::time::Duration::ZERO;
            for _ in 0..iters {
                for o in boxes.iter_mut() {
                    o.finish(0);
                    let len = o.pending().len();
                    o.consume(len);
                }
                n += 1;
                let start = std::time::Instant::now();
                let mut rec = [0u8; RECORD_SIZE];
                wire::encode_record(&tick(n), &mut rec);
                for o in boxes.iter_mut() {
                    o.push_record(Format::Binary, &rec, n);
                }
                total += start.elapsed();
            }
            total
        });
    });
    g.finish();
}

fn book_change(n: u64) -> Tick {
    Tick {
        body: Body::Book {
            side: if n.is_multiple_of(2) {
                Side::Bid
            } else {
                Side::Ask
            },
            price: 10_000_000_000 + (n % 50) as i64 * 1_000_000,
            size: (n % 7) as i64 * 100_000_000,
            new_level: n.is_multiple_of(5),
            group: (1, 0),
        },
        ..tick(n)
    }
}

fn books(c: &mut Criterion) {
    const CONNS: usize = 10_000;
    let mut g = c.benchmark_group("book");
    g.throughput(Throughput::Elements(CONNS as u64));
    let mut boxes: Vec<Outbox> = (0..CONNS).map(|_| Outbox::new()).collect();
    let mut n = 0u64;
    // A live book change is one record, like a quote: the same delivery cost.
    g.bench_function("one_change_to_10k_outboxes_binary", |b| {
        b.iter_custom(|iters| {
            let mut total = std::time::Duration::ZERO;
            for _ in 0..iters {
                for o in boxes.iter_mut() {
                    o.finish(0);
                    let len = o.pending().len();
                    o.consume(len);
                }
                n += 1;
                let start = std::time::Instant::now();
                let mut rec = [0u8; RECORD_SIZE];
                wire::encode_record(&book_change(n), &mut rec);
                for o in boxes.iter_mut() {
                    o.push_record(Format::Binary, &rec, n);
                }
                total += start.elapsed();
            }
            total
        });
    });
    g.throughput(Throughput::Elements(1));
    let mut json = Vec::with_capacity(256);
    g.bench_function("json_change", |b| {
        b.iter(|| {
            json.clear();
            wire::write_json_tick(black_box(&book_change(7)), "SYM0", &mut json);
            black_box(json.len())
        })
    });
    // The merge of a slow subscriber: 1,024 changes over 100 levels (50 a side),
    // then the merged message's levels.
    g.throughput(Throughput::Elements(BATCH));
    let changes: Vec<Tick> = (0..BATCH).map(book_change).collect();
    g.bench_function("merge_1024_changes_over_100_levels", |b| {
        b.iter(|| {
            let mut m = BookMerge::default();
            for t in &changes {
                m.absorb(t, 100);
            }
            black_box(m.changes())
        })
    });
    // The sequencer's own book, per change (apply and evict at 50 a side).
    g.bench_function("sequencer_book_apply_1024", |b| {
        let mut book = Book::new(50);
        b.iter(|| {
            for t in &changes {
                if let Body::Book {
                    side, price, size, ..
                } = t.body
                {
                    black_box(book.apply(side, price, size));
                }
            }
        })
    });
    // A 100-level snapshot, encoded as binary records.
    g.throughput(Throughput::Elements(100));
    let bids: Vec<(i64, i64)> = (0..50).map(|i| (10_000 - i, 1 + i)).collect();
    let asks: Vec<(i64, i64)> = (0..50).map(|i| (10_001 + i, 1 + i)).collect();
    let mut out = Vec::with_capacity(100 * RECORD_SIZE);
    g.bench_function("snapshot_100_levels_binary", |b| {
        b.iter(|| {
            out.clear();
            let m = wire::BookMessage {
                symbol_id: 1,
                seq: 9,
                ts_event: 1,
                ts_recv: 2,
                flags: Flags::SNAPSHOT,
                count: 1,
                bids: &bids,
                asks: &asks,
            };
            wire::encode_book_records(black_box(&m), |r| out.extend_from_slice(r));
            black_box(out.len())
        })
    });
    g.finish();
}

/// What a writer core records per tick written: `CoreLatency::record` (two fixed-bucket
/// histograms, `/metrics`) next to the HdrHistogram it also keeps (`/stats`).
fn latency(c: &mut Criterion) {
    const N: u64 = 1024;
    let mut g = c.benchmark_group("latency");
    g.throughput(Throughput::Elements(N));
    // Latencies spread over the buckets: 1 µs to about 1 s.
    let samples: Vec<(u64, u64, u64)> = (0..N)
        .map(|i| {
            let written = 10_000_000_000 + i * 1_000;
            let ingest = 1_000u64 << (i % 20);
            (written, written - ingest, written - 2 * ingest)
        })
        .collect();
    let l = tickcast::stats::CoreLatency::default();
    g.bench_function("core_latency_record_1024", |b| {
        b.iter(|| {
            for &(w, recv, event) in &samples {
                l.record(std::hint::black_box(w), recv, event);
            }
        })
    });
    let mut h = tickcast::stats::new_latency_histogram();
    g.bench_function("hdrhistogram_record_1024", |b| {
        b.iter(|| {
            for &(w, recv, _) in &samples {
                h.saturating_record(std::hint::black_box(w) - recv);
            }
        })
    });
    g.finish();
}

criterion_group!(benches, ring, encode, fanout, books, latency);
criterion_main!(benches);
