//! Order books end to end, with real WebSocket clients: the synthetic feed's books
//! (`book_depth`) through the sequencer, the ring and the writer cores. A binary
//! subscriber of books and quotes rebuilds each book and finds its best levels equal
//! to every live quote; a JSON subscriber at a `max_rate` (so its changes are merged)
//! and one that joins after the feed ended both end with exactly the server's books.

mod common;

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use common::*;
use serde_json::{json, Value};
use tickcast::book::Level;
use tickcast::client::{BookTracker, Client, Event, Options};
use tickcast::feed::synthetic::SyntheticConfig;
use tickcast::feed::FeedSpec;
use tickcast::tick::{Body, Flags, Kind};
use tokio_tungstenite::tungstenite::Message;

const SYMBOLS: usize = 3;
const LIMIT: u64 = 6_000;
const DEPTH: usize = 8;

fn fixed(v: &Value) -> i64 {
    tickcast::fixed::parse(v.as_str().expect("decimal string").as_bytes()).expect("decimal")
}

fn levels(v: &Value) -> Vec<Level> {
    v.as_array()
        .expect("a list of levels")
        .iter()
        .map(|l| (fixed(&l[0]), fixed(&l[1])))
        .collect()
}

fn flags(v: &Value) -> Flags {
    let mut f = Flags::empty();
    for (flag, name) in Flags::NAMES {
        if v.as_array().unwrap().iter().any(|n| n == name) {
            f = f.with(flag);
        }
    }
    f
}

/// Applies a JSON `book` object to the symbol's tracker; a gap fails the test.
fn apply_json(books: &mut HashMap<String, BookTracker>, v: &Value) {
    let t = books
        .entry(v["symbol"].as_str().unwrap().to_string())
        .or_default();
    t.on_message(
        v["seq"].as_u64().unwrap(),
        flags(&v["flags"]),
        v["count"].as_u64().unwrap() as u32,
        &levels(&v["bids"]),
        &levels(&v["asks"]),
    )
    .unwrap_or_else(|g| panic!("gap {g:?} at {v}"));
}

/// Reads JSON messages until every symbol's book is at the server's last book
/// sequence number.
async fn read_json_books(
    ws: &mut Ws,
    books: &mut HashMap<String, BookTracker>,
    last: &HashMap<String, u64>,
) -> usize {
    let mut merged = 0;
    while last
        .iter()
        .any(|(n, s)| books.get(n).is_none_or(|t| t.seq() < *s))
    {
        if let Message::Text(t) = next(ws).await {
            let v: Value = serde_json::from_str(&t).unwrap();
            for m in v.as_array().into_iter().flatten() {
                assert_eq!(m["type"], "book", "only the book channel: {m}");
                merged += usize::from(m["count"].as_u64() > Some(1));
                apply_json(books, m);
            }
        }
    }
    merged
}

#[tokio::test]
async fn books_rebuilt_by_subscribers_equal_the_servers() {
    let mut cfg = config(SYMBOLS, 3_000);
    cfg.feeds = vec![FeedSpec::Synthetic(SyntheticConfig {
        symbols: SYMBOLS,
        rate: 3_000,
        limit: LIMIT,
        book_depth: DEPTH,
        ..SyntheticConfig::default()
    })];
    let server = start_server(cfg);
    let addr = server.local_addr();
    let all: Vec<String> = (0..SYMBOLS).map(|i| format!("SYM{i}")).collect();

    let mut bin = connect(addr).await;
    send_json(
        &mut bin,
        json!({"op":"subscribe","symbols":all,"channels":["book","quote"]}),
    )
    .await;
    let ack = until_type(&mut bin, "subscribed").await;
    assert_eq!(ack["channels"], json!(["quote", "book"]));
    let map = until_type(&mut bin, "symbols").await;
    let names: HashMap<u32, String> = map["symbols"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["id"].as_u64().unwrap() as u32,
                e["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut rated = connect(addr).await;
    send_json(
        &mut rated,
        json!({"op":"subscribe","symbols":all,"channels":["book"],"format":"json","max_rate":5}),
    )
    .await;
    until_type(&mut rated, "subscribed").await;
    // The Rust client, which rebuilds books itself.
    let options = Options {
        channels: Some(vec!["book".into()]),
        ..Options::symbols(all.clone())
    };
    let mut client = Client::connect(&format!("ws://{addr}/ws"), options)
        .await
        .expect("client connects");

    // The feed runs to its limit; the binary subscriber keeps up.
    let mut bin_books: HashMap<u32, BookTracker> = HashMap::new();
    // `ts_event` of the last book change applied per symbol: every update of the
    // feed has its own scheduled time, so a book snapshot taken after a quote's
    // changes (books and quotes start independently) shows as a later time.
    let mut book_ts: HashMap<u32, u64> = HashMap::new();
    let mut quotes_checked = 0;
    let deadline = std::time::Instant::now() + WAIT;
    let last: HashMap<String, u64> = loop {
        let done = server.stats().sequencer.ticks.load(Ordering::Relaxed) >= LIMIT;
        let last: HashMap<String, u64> = all
            .iter()
            .map(|n| {
                (
                    n.clone(),
                    server.lvc().book(server.symbols().id_of(n).unwrap()).seq,
                )
            })
            .collect();
        if done
            && last.iter().all(|(n, s)| {
                let id = server.symbols().id_of(n).unwrap();
                bin_books.get(&id).is_some_and(|t| t.seq() == *s)
            })
        {
            break last;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "feed or subscriber did not finish"
        );
        let Message::Binary(b) = next(&mut bin).await else {
            continue;
        };
        for t in decode_binary(&b) {
            let tracker = bin_books.entry(t.symbol_id).or_default();
            match t.body {
                Body::Book { .. } => {
                    book_ts.insert(t.symbol_id, t.ts_event);
                    tracker
                        .on_record(&t)
                        .unwrap_or_else(|g| panic!("gap {g:?} at {}", t.describe()));
                }
                Body::Quote {
                    bid_px,
                    bid_sz,
                    ask_px,
                    ask_sz,
                } if !t.flags.contains(Flags::SNAPSHOT)
                    && tracker.is_synced()
                    && book_ts.get(&t.symbol_id) < Some(&t.ts_event) =>
                {
                    let b = tracker.book();
                    assert_eq!(b.bids()[0], (bid_px, bid_sz), "{}", t.describe());
                    assert_eq!(b.asks()[0], (ask_px, ask_sz), "{}", t.describe());
                    assert_eq!((b.bids().len(), b.asks().len()), (DEPTH, DEPTH));
                    quotes_checked += 1;
                }
                _ => assert_eq!(t.body.kind(), Kind::Quote, "no trades on these channels"),
            }
        }
    };
    assert!(
        quotes_checked > 100,
        "{quotes_checked} quotes checked against the book"
    );
    for (id, t) in &bin_books {
        let server_book = server.lvc().book(*id);
        assert_eq!(t.seq(), server_book.seq, "{}", names[id]);
        assert_eq!(
            (t.book().bids(), t.book().asks()),
            (&server_book.bids[..], &server_book.asks[..])
        );
    }

    // At 5 updates a second per symbol, the JSON subscriber's changes were merged; it
    // ends with the same books.
    let mut json_books = HashMap::new();
    let merged = read_json_books(&mut rated, &mut json_books, &last).await;
    assert!(merged > 0, "merged book messages");
    // And one that joins now gets the whole book in one snapshot.
    let mut late = connect(addr).await;
    send_json(
        &mut late,
        json!({"op":"subscribe","symbols":all,"channels":["book"],"format":"json"}),
    )
    .await;
    let mut late_books = HashMap::new();
    read_json_books(&mut late, &mut late_books, &last).await;
    for name in &all {
        let id = server.symbols().id_of(name).unwrap();
        let server_book = server.lvc().book(id);
        // The limit may end the feed between a quote's changes: not always DEPTH.
        assert!(
            !server_book.bids.is_empty() && !server_book.asks.is_empty(),
            "{name}"
        );
        for books in [&json_books, &late_books] {
            let t = &books[name];
            assert_eq!(t.seq(), server_book.seq, "{name}");
            assert_eq!(
                (t.book().bids(), t.book().asks()),
                (&server_book.bids[..], &server_book.asks[..]),
                "{name}"
            );
        }
    }
    // The Rust client's books, from its own session.
    while all
        .iter()
        .any(|n| client.book(n).is_none_or(|b| b.seq() < last[n]))
    {
        match tokio::time::timeout(WAIT, client.next())
            .await
            .expect("in time")
        {
            Ok(Event::BookGap { symbol, gap }) => panic!("book gap {symbol} {gap:?}"),
            Ok(Event::Ticks(batch)) => {
                assert!(
                    batch.records().all(|r| r.kind == Kind::Book as u8),
                    "book channel only"
                )
            }
            Ok(_) => {}
            Err(e) => panic!("client: {e}"),
        }
    }
    for name in &all {
        let server_book = server.lvc().book(server.symbols().id_of(name).unwrap());
        let b = client.book(name).unwrap();
        assert!(b.is_synced());
        assert_eq!(
            (b.book().bids(), b.book().asks()),
            (&server_book.bids[..], &server_book.asks[..]),
            "{name}"
        );
    }
    let stats = server.stats();
    assert_eq!(
        stats.sequencer.book_dropped.load(Ordering::Relaxed),
        0,
        "depth 8 < 50 levels"
    );
    server.shutdown();
}

/// The recorder writes book changes like every sequenced tick, and the replay feed
/// plays them back into another server's books: both end with the same books.
#[test]
fn recorded_books_replay_into_the_same_books() {
    let dir = std::env::temp_dir().join(format!("tickcast-books-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut cfg = config(SYMBOLS, 5_000);
    cfg.feeds = vec![FeedSpec::Synthetic(SyntheticConfig {
        symbols: SYMBOLS,
        rate: 5_000,
        limit: LIMIT,
        book_depth: DEPTH,
        ..SyntheticConfig::default()
    })];
    cfg.record = Some(tickcast::recorder::RecordConfig {
        dir: dir.clone(),
        flush_interval_ms: 50,
        ..tickcast::recorder::RecordConfig::default()
    });
    let first = start_server(cfg);
    let deadline = std::time::Instant::now() + WAIT;
    while first.stats().recorder.ticks.load(Ordering::Relaxed) < LIMIT {
        assert!(
            std::time::Instant::now() < deadline,
            "the recorder did not get every tick"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let books: Vec<_> = (0..SYMBOLS as u32).map(|id| first.lvc().book(id)).collect();
    let changes = first.stats().sequencer.book_changes.load(Ordering::Relaxed);
    assert!(
        changes > LIMIT / 2,
        "{changes} book changes of {LIMIT} updates"
    );
    first.shutdown();

    // `capture info` sees every change, numbered without a gap up to the book's last.
    let mut infos = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "tcrec") {
            let reader =
                tickcast::capture::CaptureReader::new(std::fs::File::open(&path).unwrap()).unwrap();
            let (info, fault) = tickcast::capture::inspect::inspect(reader, |_| {});
            assert!(fault.is_none(), "{fault:?}");
            infos.push(info);
        }
    }
    assert_eq!(
        infos.iter().map(|i| i.book_records).sum::<u64>(),
        changes,
        "one record per sequenced change"
    );
    for (i, want) in books.iter().enumerate() {
        let name = format!("SYM{i}");
        let s: Vec<_> = infos.iter().filter_map(|i| i.symbols.get(&name)).collect();
        assert_eq!(s.iter().map(|s| s.book_gaps).sum::<u64>(), 0, "{name}");
        assert_eq!(
            s.iter().map(|s| s.last_book_seq).max(),
            Some(want.seq),
            "{name}"
        );
        assert_eq!(s.iter().map(|s| s.first_book_seq).min(), Some(1), "{name}");
    }

    let mut replay = tickcast::feed::replay::ReplayConfig::new(&dir);
    replay.speed = 0.0;
    let mut cfg = config(0, 0);
    cfg.feeds = vec![FeedSpec::Replay(replay)];
    let second = tickcast::server::Server::start(cfg).unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while second.stats().sequencer.ticks.load(Ordering::Relaxed) < LIMIT {
        assert!(
            std::time::Instant::now() < deadline,
            "the replay did not finish"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(
        second
            .stats()
            .sequencer
            .book_changes
            .load(Ordering::Relaxed),
        changes
    );
    for (i, want) in books.iter().enumerate() {
        let name = format!("SYM{i}");
        let got = second.lvc().book(second.symbols().id_of(&name).unwrap());
        assert!(!want.bids.is_empty(), "{name}");
        assert_eq!(
            (got.seq, &got.bids, &got.asks),
            (want.seq, &want.bids, &want.asks),
            "{name}"
        );
    }
    second.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A subscriber's capture of books (a snapshot when it joined mid-feed, then the
/// changes) replays into another server's books: the replay sends each snapshot as
/// the difference from what it sent before, so both servers end with the same books.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribers_book_capture_replays_into_the_same_books() {
    use tickcast::capture::{CaptureHeader, CaptureWriter, SymbolEntry};
    let path = std::env::temp_dir().join(format!(
        "tickcast-book-capture-{}-{}.tcrec",
        std::process::id(),
        tickcast::clock::now_ns()
    ));
    let mut cfg = config(SYMBOLS, 4_000);
    cfg.feeds = vec![FeedSpec::Synthetic(SyntheticConfig {
        symbols: SYMBOLS,
        rate: 4_000,
        limit: LIMIT,
        book_depth: DEPTH,
        ..SyntheticConfig::default()
    })];
    let source = start_server(cfg);
    let deadline = std::time::Instant::now() + WAIT;
    while source.stats().sequencer.ticks.load(Ordering::Relaxed) < LIMIT / 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the feed did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let all: Vec<String> = (0..SYMBOLS).map(|i| format!("SYM{i}")).collect();
    let options = Options {
        channels: Some(vec!["book".into()]),
        ..Options::symbols(all.clone())
    };
    let mut client = Client::connect(&format!("ws://{}/ws", source.local_addr()), options)
        .await
        .unwrap();
    let header = CaptureHeader {
        created_at_ns: tickcast::clock::now_ns(),
        symbols: Vec::new(),
        source: None,
    };
    let file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut capture = CaptureWriter::new(file, &header).unwrap();
    let finished = |s: &tickcast::server::ServerHandle| {
        s.stats()
            .feeds
            .lock()
            .unwrap()
            .iter()
            .all(|f| f.finished.load(Ordering::Relaxed) > 0)
    };
    let mut snapshots = 0;
    loop {
        let done = finished(&source)
            && all.iter().all(|n| {
                let want = source.lvc().book(source.symbols().id_of(n).unwrap()).seq;
                client.book(n).is_some_and(|b| b.seq() == want)
            });
        if done {
            break;
        }
        match tokio::time::timeout(WAIT, client.next())
            .await
            .expect("in time")
        {
            Ok(Event::Ticks(batch)) => {
                snapshots += batch
                    .records()
                    .filter(|r| Flags(r.flags).contains(Flags::SNAPSHOT))
                    .count();
                capture.write_message(batch.as_bytes()).unwrap();
            }
            Ok(Event::Symbols(map)) => capture
                .write_symbols(
                    &map.into_iter()
                        .map(|(id, name)| SymbolEntry { id, name })
                        .collect::<Vec<_>>(),
                )
                .unwrap(),
            Ok(Event::BookGap { symbol, gap }) => panic!("book gap {symbol} {gap:?}"),
            Ok(_) => {}
            Err(e) => panic!("client: {e}"),
        }
    }
    capture.finish().unwrap();
    client.close().await.unwrap();
    assert!(
        snapshots >= SYMBOLS,
        "each book began with a snapshot of its levels"
    );
    let want: Vec<_> = all
        .iter()
        .map(|n| source.lvc().book(source.symbols().id_of(n).unwrap()))
        .collect();
    source.shutdown();

    let mut replay = tickcast::feed::replay::ReplayConfig::new(&path);
    replay.speed = 0.0;
    let mut cfg = config(0, 0);
    cfg.feeds = vec![FeedSpec::Replay(replay)];
    let second = tickcast::server::Server::start(cfg).unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while !finished(&second) {
        assert!(
            std::time::Instant::now() < deadline,
            "the replay did not finish"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // The sequencer may still be taking the feed's last changes.
    let books = || -> Vec<_> {
        all.iter()
            .map(|n| {
                let b = second.lvc().book(second.symbols().id_of(n).unwrap());
                (b.bids, b.asks)
            })
            .collect()
    };
    let want: Vec<_> = want.into_iter().map(|b| (b.bids, b.asks)).collect();
    let deadline = std::time::Instant::now() + WAIT;
    while books() != want {
        assert!(
            std::time::Instant::now() < deadline,
            "the replayed books {:?} are not the recorded {want:?}",
            books()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    second.shutdown();
    let _ = std::fs::remove_file(&path);
}
