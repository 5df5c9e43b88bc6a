//! Multi-threaded stress of the broadcast ring: readers racing a producer that laps
//! them must never return a torn or out-of-order tick.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tickcast::ring::{Read, Ring};
use tickcast::tick::{Body, Flags, Tick};

/// Every field is derived from `n`, so a torn copy (words from two writes) shows up as
/// a mismatch.
fn tick(n: u64) -> Tick {
    Tick {
        symbol_id: (n % 1000) as u32,
        seq: n,
        ts_event: n.wrapping_mul(3),
        ts_recv: n.wrapping_mul(5),
        flags: Flags((n % 8) as u8),
        count: (n % 100) as u32,
        body: Body::Trade {
            price: n as i64,
            size: -(n as i64),
            high: (n as i64).wrapping_mul(7),
            low: (n as i64).wrapping_mul(11),
        },
    }
}

fn stress(capacity: usize, total: u64, readers: usize, slow: bool) -> Vec<(u64, u64, u64)> {
    let (mut publisher, ring) = Ring::new(capacity);
    let done = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..readers)
        .map(|i| {
            let mut r = ring.reader();
            let done = done.clone();
            std::thread::spawn(move || {
                let (mut read, mut skipped, mut last) = (0u64, 0u64, 0u64);
                loop {
                    match r.read() {
                        Read::Tick(t) => {
                            assert_eq!(t, tick(t.seq), "torn tick at seq {}", t.seq);
                            if last != 0 {
                                assert!(t.seq > last, "out of order: {} after {last}", t.seq);
                            }
                            last = t.seq;
                            read += 1;
                            if slow && i == 0 && read % 64 == 0 {
                                std::thread::yield_now();
                            }
                        }
                        Read::Lapped => {
                            skipped += r.resync();
                        }
                        Read::Empty => {
                            if done.load(Ordering::Acquire) && !r.has_pending() {
                                break;
                            }
                            std::hint::spin_loop();
                        }
                    }
                }
                (read, skipped, last)
            })
        })
        .collect();
    for n in 1..=total {
        publisher.publish(&tick(n));
    }
    done.store(true, Ordering::Release);
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn small_ring_laps_readers_without_tearing() {
    let results = stress(64, 2_000_000, 3, true);
    for (read, skipped, last) in &results {
        // Every position is accounted for: read, or skipped and known to be skipped.
        assert_eq!(read + skipped, 2_000_000, "read {read} + skipped {skipped}");
        assert!(*last <= 2_000_000);
    }
    assert!(
        results.iter().any(|(_, skipped, _)| *skipped > 0),
        "a 64-slot ring laps at least one reader"
    );
}

#[test]
fn large_ring_readers_that_keep_up_see_everything() {
    let total = 200_000;
    for (read, skipped, last) in stress(1 << 18, total, 2, false) {
        assert_eq!(skipped, 0, "a ring larger than the stream never laps");
        assert_eq!((read, last), (total, total));
    }
}
