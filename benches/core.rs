//! Hot-path benches: the ring against a crossbeam channel, encoding one record, and
//! fanning one tick out to 10,000 connection outboxes.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
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

criterion_group!(benches, ring, encode, fanout);
criterion_main!(benches);
