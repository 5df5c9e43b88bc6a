//! Resume: a client that comes back with its last sequence numbers gets every tick it
//! missed replayed from the ring, or a flagged snapshot when the ring no longer holds
//! the gap.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use serde_json::json;

const SYMBOLS: [&str; 4] = ["SYM0", "SYM1", "SYM2", "SYM3"];

/// Subscribes, reads `n` live ticks, and returns the last seq seen per symbol.
async fn watch(addr: std::net::SocketAddr, n: usize) -> HashMap<String, u64> {
    let mut ws = connect(addr).await;
    send_json(
        &mut ws,
        json!({"op":"subscribe","symbols":SYMBOLS,"format":"json"}),
    )
    .await;
    let mut names = HashMap::new();
    let mut last = HashMap::new();
    let mut seen = 0;
    while seen < n || last.len() < SYMBOLS.len() {
        if let Ok(ticks) = next_ticks(&mut ws, &mut names).await {
            for t in ticks {
                last.insert(t.symbol, t.seq);
                seen += 1;
            }
        }
    }
    drop(ws);
    last
}

/// Reconnects with `resume` and returns, per symbol, the flags of the first record
/// after the resume point and whether the sequence continued without a gap.
async fn come_back(
    addr: std::net::SocketAddr,
    resume: &HashMap<String, u64>,
    n: usize,
) -> HashMap<String, (Vec<String>, bool)> {
    let mut ws = connect(addr).await;
    send_json(
        &mut ws,
        json!({"op":"subscribe","symbols":SYMBOLS,"format":"json","resume":resume}),
    )
    .await;
    let mut names = HashMap::new();
    let mut last = resume.clone();
    let mut out: HashMap<String, (Vec<String>, bool)> = HashMap::new();
    let mut seen = 0;
    while seen < n || out.len() < SYMBOLS.len() {
        if let Ok(ticks) = next_ticks(&mut ws, &mut names).await {
            for t in ticks {
                let prev = last[&t.symbol];
                assert!(t.seq > prev, "{}: seq {} after {prev}", t.symbol, t.seq);
                let contiguous = t.seq == prev + 1;
                out.entry(t.symbol.clone())
                    .or_insert((t.flags.clone(), contiguous));
                if !t.flags.iter().any(|f| f == "snapshot") {
                    assert!(
                        contiguous,
                        "{}: gap after the first record ({prev} -> {})",
                        t.symbol, t.seq
                    );
                }
                last.insert(t.symbol, t.seq);
                seen += 1;
            }
        }
    }
    out
}

/// Waits until the server has sequenced `n` more ticks (bounded by [`WAIT`]).
async fn published_since(server: &tickcast::server::ServerHandle, n: u64) {
    let ticks = || {
        server
            .stats()
            .sequencer
            .ticks
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let from = ticks();
    let deadline = std::time::Instant::now() + WAIT;
    while ticks() < from + n {
        assert!(std::time::Instant::now() < deadline, "the feed stalled");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn short_absence_replays_every_missed_tick() {
    // The replay comes as a burst; on a loaded machine the client may take more than
    // max_queue_age_ms to read it, and conflation (tested elsewhere) would merge it.
    let mut cfg = config(10, 20_000);
    cfg.max_queue_age_ms = 0;
    cfg.high_water_bytes = 64 << 20;
    let server = start_server(cfg);
    let addr = server.local_addr();
    let last = watch(addr, 400).await;
    // 6,000 ticks while away: well inside a 65,536-slot ring.
    published_since(&server, 6_000).await;
    let first = come_back(addr, &last, 2_000).await;
    for s in SYMBOLS {
        let (flags, contiguous) = &first[s];
        assert_eq!(
            flags,
            &vec!["replay".to_string()],
            "{s}: missed ticks are replayed"
        );
        assert!(
            contiguous,
            "{s}: the replay starts right after the last seq seen"
        );
    }
    server.shutdown();
}

#[tokio::test]
async fn long_absence_gets_a_flagged_snapshot() {
    let mut cfg = config(10, 20_000);
    cfg.ring_capacity = 1024; // about 50 ms of ticks
    let server = start_server(cfg);
    let addr = server.local_addr();
    let last = watch(addr, 400).await;
    // Away for more ticks than the ring holds.
    published_since(&server, 4 * 1024).await;
    let first = come_back(addr, &last, 500).await;
    for s in SYMBOLS {
        let (flags, _) = &first[s];
        assert_eq!(
            flags,
            &vec!["snapshot".to_string()],
            "{s}: the gap is gone from the ring"
        );
    }
    server.shutdown();
}

#[tokio::test]
async fn resume_from_another_run_gets_a_snapshot() {
    let server = start_server(config(10, 2_000));
    let addr = server.local_addr();
    let deadline = std::time::Instant::now() + WAIT;
    while SYMBOLS.iter().any(|s| {
        server
            .lvc()
            .latest(server.symbols().id_of(s).unwrap())
            .seq()
            == 0
    }) {
        assert!(std::time::Instant::now() < deadline, "every symbol ticked");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Sequence numbers this server never reached: the client saw a previous run of the
    // server (a restart). It must not be left waiting: it gets flagged snapshots.
    let ahead: HashMap<String, u64> = SYMBOLS.iter().map(|s| (s.to_string(), 1_000_000)).collect();
    let mut ws = connect(addr).await;
    send_json(
        &mut ws,
        json!({"op":"subscribe","symbols":SYMBOLS,"format":"json","resume":ahead}),
    )
    .await;
    let mut names = HashMap::new();
    let mut first: HashMap<String, Vec<String>> = HashMap::new();
    while first.len() < SYMBOLS.len() {
        if let Ok(ticks) = next_ticks(&mut ws, &mut names).await {
            for t in ticks {
                first.entry(t.symbol.clone()).or_insert(t.flags.clone());
            }
        }
    }
    for s in SYMBOLS {
        assert_eq!(first[s], vec!["snapshot".to_string()], "{s}");
    }
    server.shutdown();
}
