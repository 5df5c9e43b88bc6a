//! Client decoding throughput on a recorded stream: the Rust client's zero-copy
//! iteration over archived records against decoding into owned `Tick`s.
//!
//! The stream is the capture named by `TICKCAST_CAPTURE` (a `.tcrec` written by
//! `examples/record.rs`); without it, a synthetic stream of 100,000 records in
//! server-sized messages (every size from 1 to 910 records). Each case reads every
//! record's `seq` and first value, so none can skip the work. With a capture, one more
//! case reads the file itself with `CaptureReader`, block by block.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rkyv::util::AlignedVec;
use tickcast::capture::{CaptureReader, Entry};
use tickcast::client::Batch;
use tickcast::tick::{Body, Flags, Tick};
use tickcast::wire::{self, HEADER_SIZE, RECORD_SIZE};

/// The messages of the stream, as received.
fn stream() -> (String, Vec<Vec<u8>>) {
    if let Ok(path) = std::env::var("TICKCAST_CAPTURE") {
        let file = std::fs::File::open(&path).expect("TICKCAST_CAPTURE opens");
        let mut reader = CaptureReader::new(std::io::BufReader::new(file)).expect("a capture");
        let mut out = Vec::new();
        while let Some(entry) = reader.next_entry().expect("a valid capture") {
            if let Entry::Block(block) = entry {
                out.extend(block.map(|m| m.to_bytes().to_vec()));
            }
        }
        return (path, out);
    }
    let mut out = Vec::new();
    let (mut n, mut size) = (0u64, 1u32);
    while n < 100_000 {
        let mut msg = vec![0u8; HEADER_SIZE];
        let mut h = [0u8; HEADER_SIZE];
        wire::encode_header(size, n, &mut h);
        msg.copy_from_slice(&h);
        for _ in 0..size {
            n += 1;
            let t = Tick {
                symbol_id: (n % 100) as u32,
                seq: n / 100,
                ts_event: 1_795_000_000_000_000_000 + n,
                ts_recv: 1_795_000_000_000_000_100 + n,
                flags: Flags::empty(),
                count: 1,
                body: if n % 3 == 0 {
                    Body::trade(10_000_000_000 + n as i64, 100_000_000)
                } else {
                    Body::Quote {
                        bid_px: 10_000_000_000,
                        bid_sz: 100_000_000,
                        ask_px: 10_001_000_000,
                        ask_sz: 200_000_000,
                    }
                },
            };
            let mut r = [0u8; RECORD_SIZE];
            wire::encode_record(&t, &mut r);
            msg.extend_from_slice(&r);
        }
        out.push(msg);
        size = size % 910 + 1;
    }
    ("synthetic".to_string(), out)
}

fn decode(c: &mut Criterion) {
    let (name, messages) = stream();
    let records: u64 = messages
        .iter()
        .map(|m| ((m.len() - HEADER_SIZE) / RECORD_SIZE) as u64)
        .sum();
    eprintln!(
        "stream {name}: {} messages, {records} records",
        messages.len()
    );
    let batches: Vec<Batch> = messages
        .iter()
        .map(|m| Batch::from_bytes(m).expect("valid messages"))
        .collect();
    let mut g = c.benchmark_group("client_decode");
    g.throughput(Throughput::Elements(records));
    g.bench_function("zero_copy_iterate", |b| {
        b.iter(|| {
            let mut sum = 0u64;
            for batch in &batches {
                for r in batch.records() {
                    sum = sum
                        .wrapping_add(r.seq.to_native())
                        .wrapping_add(r.values[0].to_native() as u64);
                }
            }
            black_box(sum)
        })
    });
    g.bench_function("zero_copy_receive_and_iterate", |b| {
        // What the client does per message: copy the payload into an aligned buffer,
        // check the header, then read in place.
        b.iter(|| {
            let mut sum = 0u64;
            for m in &messages {
                let batch = Batch::from_bytes(m).expect("valid");
                for r in batch.records() {
                    sum = sum
                        .wrapping_add(r.seq.to_native())
                        .wrapping_add(r.values[0].to_native() as u64);
                }
            }
            black_box(sum)
        })
    });
    g.bench_function("zero_copy_receive_recycled", |b| {
        // The same into buffers the consumer gives back through a bounded channel
        // (the reading task and the consumer are on different threads): what a
        // recycling client would do, measured against allocating per message.
        let (give_back, pool) = crossbeam_channel::bounded::<AlignedVec<8>>(256);
        b.iter(|| {
            let mut sum = 0u64;
            for m in &messages {
                let mut buf = pool.try_recv().unwrap_or_default();
                buf.clear();
                buf.extend_from_slice(m);
                let batch = Batch::new(buf, Default::default()).expect("valid");
                for r in batch.records() {
                    sum = sum
                        .wrapping_add(r.seq.to_native())
                        .wrapping_add(r.values[0].to_native() as u64);
                }
                let _ = give_back.try_send(batch.into_buffer());
            }
            black_box(sum)
        })
    });
    g.bench_function("owned_decode_message", |b| {
        // `wire::decode_message` on the aligned buffers: validates with rkyv and
        // builds a Vec<Tick> per message.
        b.iter(|| {
            let mut sum = 0u64;
            for batch in &batches {
                let (_, ticks) = wire::decode_message(batch.as_bytes()).expect("valid");
                for t in &ticks {
                    sum = sum
                        .wrapping_add(t.seq)
                        .wrapping_add(t.body.values()[0] as u64);
                }
            }
            black_box(sum)
        })
    });
    g.bench_function("owned_to_ticks", |b| {
        b.iter(|| {
            let mut sum = 0u64;
            for batch in &batches {
                for t in batch.to_ticks() {
                    sum = sum
                        .wrapping_add(t.seq)
                        .wrapping_add(t.body.values()[0] as u64);
                }
            }
            black_box(sum)
        })
    });
    if let Ok(path) = std::env::var("TICKCAST_CAPTURE") {
        // The capture file end to end, from its bytes in memory: each block read into
        // the reader's aligned buffer, its headers checked, its records read in place.
        let bytes = std::fs::read(&path).expect("TICKCAST_CAPTURE reads");
        g.bench_function("capture_reader_blocks", |b| {
            b.iter(|| {
                let mut sum = 0u64;
                let mut reader = CaptureReader::new(&bytes[..]).expect("a capture");
                while let Some(entry) = reader.next_entry().expect("a valid capture") {
                    if let Entry::Block(block) = entry {
                        for r in block.records() {
                            sum = sum
                                .wrapping_add(r.seq.to_native())
                                .wrapping_add(r.values[0].to_native() as u64);
                        }
                    }
                }
                black_box(sum)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
