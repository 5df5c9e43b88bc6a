//! Slow consumers: bounded memory, conflation that accounts for every update, eviction,
//! and `max_rate` — while fast subscribers keep every tick.
//!
//! Ticks are injected through the sequencer's channel, so the test knows exactly what
//! was sent: every trade's volume and every symbol's final values.

mod common;

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use tickcast::clock::now_ns;
use tickcast::config::Config;
use tickcast::feed::FeedTick;
use tickcast::server::{Server, ServerHandle};
use tickcast::symbol::Symbol;
use tickcast::tick::Body;
use tokio_tungstenite::tungstenite::Message;

const SYMBOLS: usize = 20;

fn name(i: usize) -> String {
    format!("C{i}")
}

/// What the injector sent per symbol.
#[derive(Debug, Default, Clone)]
struct Truth {
    trade_volume: i64,
    trades: u64,
    quotes: u64,
    last_trade: Option<Body>,
    last_quote: Option<Body>,
}

fn body(i: u64) -> Body {
    if i.is_multiple_of(3) {
        Body::trade(
            10_000_000_000 + (i % 97) as i64 * 1_000_000,
            (1 + i % 13) as i64 * 100_000_000,
        )
    } else {
        Body::Quote {
            bid_px: 10_000_000_000 + (i % 89) as i64 * 1_000_000,
            bid_sz: (1 + i % 7) as i64 * 100_000_000,
            ask_px: 10_100_000_000 + (i % 89) as i64 * 1_000_000,
            ask_sz: (1 + i % 5) as i64 * 100_000_000,
        }
    }
}

fn server(cfg: impl FnOnce(&mut Config)) -> ServerHandle {
    let mut c = config(0, 1);
    c.feeds = vec![];
    cfg(&mut c);
    let server = Server::start(c).unwrap();
    // One tick per symbol so that they exist and have a snapshot.
    let tx = server.feed_sender();
    for s in 0..SYMBOLS {
        tx.send(FeedTick {
            symbol: Symbol::new(&name(s)).unwrap(),
            ts_event: now_ns(),
            body: body(1),
        })
        .unwrap();
    }
    let deadline = Instant::now() + WAIT;
    while server.symbols().len() < SYMBOLS {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    server
}

/// Sends `rate` ticks/s for `secs` seconds over all symbols on a schedule; returns the
/// truth per symbol name.
fn inject(
    server: &ServerHandle,
    rate: u64,
    secs: u64,
) -> std::thread::JoinHandle<HashMap<String, Truth>> {
    let tx = server.feed_sender();
    std::thread::spawn(move || {
        let mut truth: HashMap<String, Truth> = HashMap::new();
        let total = rate * secs;
        let start = Instant::now();
        for i in 0..total {
            let due = Duration::from_nanos(i * 1_000_000_000 / rate);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                if wait > Duration::from_millis(1) {
                    std::thread::sleep(wait);
                }
            }
            let sym = name((i as usize * 7) % SYMBOLS);
            let b = body(i);
            let t = truth.entry(sym.clone()).or_default();
            match b {
                Body::Trade { size, .. } => {
                    t.trades += 1;
                    t.trade_volume += size;
                    t.last_trade = Some(b);
                }
                Body::Quote { .. } => {
                    t.quotes += 1;
                    t.last_quote = Some(b);
                }
                Body::Book { .. } => unreachable!("body() makes trades and quotes"),
            }
            tx.send(FeedTick {
                symbol: Symbol::new(&sym).unwrap(),
                ts_event: now_ns(),
                body: b,
            })
            .unwrap();
        }
        truth
    })
}

fn conn_stats(server: &ServerHandle, peer: std::net::SocketAddr) -> Option<(u64, u64, u64)> {
    let conns = server.stats().conns.lock().unwrap();
    conns.values().find(|c| c.peer == peer).map(|c| {
        (
            c.max_buffered_bytes.load(Relaxed),
            c.conflated_updates.load(Relaxed),
            c.conflation_entries.load(Relaxed),
        )
    })
}

fn local_addr(ws: &Ws) -> std::net::SocketAddr {
    match ws.get_ref() {
        tokio_tungstenite::MaybeTlsStream::Plain(s) => s.local_addr().unwrap(),
        _ => unreachable!("plain TCP in tests"),
    }
}

/// A fast binary subscriber: checks every tick arrives in order with no gap and
/// nothing conflated; returns how many live ticks it saw once `stop` is set and the
/// stream has gone quiet.
async fn fast_subscriber(mut ws: Ws, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> u64 {
    let mut names = HashMap::new();
    let mut last: HashMap<String, u64> = HashMap::new();
    let mut live = 0;
    loop {
        let m = match tokio::time::timeout(Duration::from_millis(500), next(&mut ws)).await {
            Ok(m) => m,
            Err(_) if stop.load(Relaxed) => return live,
            Err(_) => continue,
        };
        let ticks = match m {
            Message::Binary(b) => decode_binary(&b),
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                assert_ne!(
                    v["type"], "conflation",
                    "the fast subscriber never conflates"
                );
                if v["type"] == "symbols" {
                    for s in v["symbols"].as_array().unwrap() {
                        names.insert(
                            s["id"].as_u64().unwrap() as u32,
                            s["name"].as_str().unwrap().to_string(),
                        );
                    }
                }
                continue;
            }
            other => panic!("{other:?}"),
        };
        for t in ticks {
            let s = seen_from_tick(&t, &names);
            if !s.flags.is_empty() {
                assert_eq!(
                    s.flags,
                    vec!["snapshot"],
                    "fast subscriber: only snapshots are flagged"
                );
                assert!(last.get(&s.symbol).is_none_or(|&p| s.seq > p));
            } else {
                assert_eq!(
                    Some(&(s.seq - 1)),
                    last.get(&s.symbol),
                    "fast subscriber: no gap in {}",
                    s.symbol
                );
                live += 1;
            }
            last.insert(s.symbol, s.seq);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_subscriber_stays_in_budget_and_gets_every_update_accounted_for() {
    const HIGH: usize = 64 * 1024;
    let server = server(|c| {
        c.high_water_bytes = HIGH;
        c.low_water_bytes = 16 * 1024;
        c.max_queue_age_ms = 200;
        c.stall_timeout_ms = 60_000;
        // Room for every injected tick: a writer core slowed down by a loaded machine
        // is then never lapped (which would resynchronise instead of conflating).
        c.ring_capacity = 1 << 19;
    });
    let addr = server.local_addr();
    let all: Vec<String> = (0..SYMBOLS).map(name).collect();

    let mut slow = connect(addr).await;
    send_json(
        &mut slow,
        json!({"op":"subscribe","symbols":all,"format":"json"}),
    )
    .await;
    let mut names = HashMap::new();
    let mut snap_seq: HashMap<String, u64> = HashMap::new();
    while snap_seq.len() < SYMBOLS {
        if let Ok(ticks) = next_ticks(&mut slow, &mut names).await {
            for t in ticks {
                assert!(t.flags.contains(&"snapshot".to_string()));
                let e = snap_seq.entry(t.symbol).or_default();
                *e = (*e).max(t.seq);
            }
        }
    }
    let slow_peer = local_addr(&slow);

    let mut fast = connect(addr).await;
    send_json(
        &mut fast,
        json!({"op":"subscribe","symbols":["C1","C2","C3"]}),
    )
    .await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let fast_task = tokio::spawn(fast_subscriber(fast, stop.clone()));

    // 5 s at 50,000 ticks/s while `slow` does not read at all.
    let truth = tokio::task::spawn_blocking({
        let h = inject(&server, 50_000, 5);
        move || h.join().unwrap()
    })
    .await
    .unwrap();

    // The sequencer has taken every injected tick before the final values are read.
    let injected = (SYMBOLS + 250_000) as u64;
    let deadline = Instant::now() + WAIT;
    while server.stats().sequencer.ticks.load(Relaxed) < injected {
        assert!(Instant::now() < deadline, "sequencer never caught up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The writer core may still be behind the sequencer on a loaded machine: wait
    // (bounded) until it has delivered enough to the non-reader to conflate.
    let deadline = Instant::now() + WAIT;
    let (max_buffered, conflated, entries) = loop {
        let s = conn_stats(&server, slow_peer).expect("slow connection open");
        if s.2 >= 1 && s.1 > 0 {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the stalled subscriber never entered conflation: {s:?}; stats {}",
            server.stats().to_json()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(entries >= 1, "the stalled subscriber entered conflation");
    assert!(conflated > 0);
    // Conflation starts as soon as the queue passes high water, so the queue never
    // exceeds it by more than one record and a control message.
    assert!(
        max_buffered <= (HIGH + 1024) as u64,
        "buffered {max_buffered} over budget {HIGH}"
    );

    // Now read everything. Per symbol: the counts add up to the sequence advance, the
    // trade volume adds up to what was sent, and the last values are the cache's.
    let final_seq: HashMap<String, u64> = all
        .iter()
        .map(|s| {
            let id = server.symbols().id_of(s).unwrap();
            (s.clone(), server.lvc().latest(id).seq())
        })
        .collect();
    let mut counts: HashMap<String, u64> = HashMap::new();
    let mut volume: HashMap<String, i64> = HashMap::new();
    let mut last_seq = snap_seq.clone();
    let mut last_quote: HashMap<String, [i64; 4]> = HashMap::new();
    let mut last_trade: HashMap<String, [i64; 4]> = HashMap::new();
    let mut saw_conflated_record = false;
    let mut conflation_msgs = Vec::new();
    while all.iter().any(|s| last_seq[s] < final_seq[s]) {
        let Ok(msg) = tokio::time::timeout(WAIT / 2, next_ticks(&mut slow, &mut names)).await
        else {
            let behind: Vec<_> = all
                .iter()
                .filter(|s| last_seq[*s] < final_seq[*s])
                .collect();
            panic!(
                "slow subscriber stuck; behind: {behind:?} last {last_seq:?} final {final_seq:?}; stats {}",
                server.stats().to_json()
            );
        };
        match msg {
            Ok(ticks) => {
                for t in ticks {
                    assert!(t.seq > last_seq[&t.symbol], "in order");
                    assert!(!t.flags.contains(&"snapshot".to_string()));
                    if t.count > 1 {
                        assert!(
                            t.flags.contains(&"conflated".to_string()),
                            "merged records are flagged"
                        );
                        saw_conflated_record = true;
                    }
                    *counts.entry(t.symbol.clone()).or_default() += u64::from(t.count);
                    if t.kind == "trade" {
                        *volume.entry(t.symbol.clone()).or_default() += t.values[1];
                        last_trade.insert(t.symbol.clone(), t.values);
                    } else {
                        last_quote.insert(t.symbol.clone(), t.values);
                    }
                    last_seq.insert(t.symbol, t.seq);
                }
            }
            Err(v) if v["type"] == "conflation" => {
                conflation_msgs.push(v["state"].as_str().unwrap().to_string())
            }
            Err(v) => panic!("unexpected {v}"),
        }
    }
    assert!(
        saw_conflated_record,
        "some records stood for several updates"
    );
    // The merged records are followed by the notice that conflation ended.
    if conflation_msgs.last().map(String::as_str) != Some("off") {
        let v = until_type(&mut slow, "conflation").await;
        conflation_msgs.push(v["state"].as_str().unwrap().to_string());
    }
    assert_eq!(conflation_msgs.first().map(String::as_str), Some("on"));
    assert_eq!(
        conflation_msgs.last().map(String::as_str),
        Some("off"),
        "told when conflation ends"
    );
    for s in &all {
        let t = &truth[s];
        assert_eq!(
            counts[s],
            final_seq[s] - snap_seq[s],
            "{s}: counts account for every update"
        );
        assert_eq!(
            counts[s],
            t.trades + t.quotes,
            "{s}: every injected update counted once"
        );
        assert_eq!(volume[s], t.trade_volume, "{s}: no trade volume lost");
        let id = server.symbols().id_of(s).unwrap();
        let latest = server.lvc().latest(id);
        assert_eq!(
            Some(last_quote[s]),
            latest.quote.map(|q| q.body.values()),
            "{s}: holds the latest quote"
        );
        assert_eq!(Some(last_quote[s]), t.last_quote.map(|b| b.values()));
        let Some(Body::Trade { price, .. }) = t.last_trade else {
            unreachable!()
        };
        assert_eq!(last_trade[s][0], price, "{s}: last trade price");
    }

    stop.store(true, Relaxed);
    let live = fast_task.await.unwrap();
    assert!(live > 30_000, "the fast subscriber kept receiving: {live}");
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_stalled_past_the_timeout_is_closed_with_4008() {
    let server = server(|c| {
        c.high_water_bytes = 64 * 1024;
        c.low_water_bytes = 16 * 1024;
        c.stall_timeout_ms = 300;
    });
    let mut slow = connect(server.local_addr()).await;
    let all: Vec<String> = (0..SYMBOLS).map(name).collect();
    send_json(
        &mut slow,
        json!({"op":"subscribe","symbols":all,"format":"json"}),
    )
    .await;
    let injector = inject(&server, 50_000, 4);
    let deadline = Instant::now() + WAIT;
    while server.stats().total(|c| &c.evictions) == 0 {
        assert!(Instant::now() < deadline, "never evicted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let close = loop {
        if let Message::Close(f) = next(&mut slow).await {
            break f;
        }
    };
    let f = close.expect("close frame with a code");
    assert_eq!(u16::from(f.code), 4008);
    assert_eq!(f.reason.as_str(), "slow consumer");
    tokio::task::spawn_blocking(move || injector.join().unwrap())
        .await
        .unwrap();
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_rate_limits_deliveries_and_keeps_the_final_value() {
    let server = server(|_| {});
    let mut ws = connect(server.local_addr()).await;
    send_json(
        &mut ws,
        json!({"op":"subscribe","symbols":["C0","C1"],"format":"json","max_rate":2}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["max_rate"], 2.0);
    let injector = inject(&server, 4_000, 2);
    let start = Instant::now();
    let mut names = HashMap::new();
    // Deliveries (messages carrying the symbol) per symbol, by arrival time.
    let mut deliveries: HashMap<String, Vec<Duration>> = HashMap::new();
    let mut last: HashMap<(String, String), Seen> = HashMap::new();
    // The exact release timing is tested in simulated time (`fanout::tests`); here,
    // over a real socket, that the limit holds and the final value arrives.
    while start.elapsed() < Duration::from_secs(2) {
        let Ok(Ok(ticks)) =
            tokio::time::timeout(Duration::from_millis(200), next_ticks(&mut ws, &mut names)).await
        else {
            continue;
        };
        let mut in_msg: Vec<String> = Vec::new();
        for t in ticks {
            if !t.flags.contains(&"snapshot".to_string()) && !in_msg.contains(&t.symbol) {
                in_msg.push(t.symbol.clone());
            }
            last.insert((t.symbol.clone(), t.kind.clone()), t);
        }
        for s in in_msg {
            deliveries.entry(s).or_default().push(start.elapsed());
        }
    }
    let truth = tokio::task::spawn_blocking(move || injector.join().unwrap())
        .await
        .unwrap();
    for s in ["C0", "C1"] {
        let d = &deliveries[s];
        // At most 2 per second over the 2 s window (the first may go at once).
        assert!(d.len() <= 5, "{s}: {} deliveries in 2 s", d.len());
        assert!(d.len() >= 2, "{s}: still updated: {}", d.len());
    }
    // After the feed stops, the latest value arrives within one interval.
    let deadline = Instant::now() + WAIT;
    loop {
        let done = ["C0", "C1"].iter().all(|s| {
            let q = last.get(&(s.to_string(), "quote".to_string()));
            q.map(|q| q.values) == truth[*s].last_quote.map(|b| b.values())
        });
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "final values never arrived");
        if let Ok(Ok(ticks)) =
            tokio::time::timeout(Duration::from_millis(200), next_ticks(&mut ws, &mut names)).await
        {
            for t in ticks {
                last.insert((t.symbol.clone(), t.kind.clone()), t);
            }
        }
    }
    server.shutdown();
}
