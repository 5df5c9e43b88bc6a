//! Venue order books end to end: Binance diff depth joined to its REST snapshots and
//! Coinbase `level2_batch`, from the captures in `feeds/` (replayed, and served by a
//! fake venue over a real WebSocket and a real HTTP connection), through the server,
//! to a subscriber that rebuilds each book. Every book must end equal to the venue's
//! true final book, which the capture's generator wrote beside it (`*.book.json`).

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tickcast::book::Level;
use tickcast::client::{Client, Event, Options};
use tickcast::config::Config;
use tickcast::feed::exchange::ExchangeConfig;
use tickcast::feed::normalize::Venue;
use tickcast::feed::replay::ReplayConfig;
use tickcast::feed::FeedSpec;
use tickcast::server::ServerHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

const BINANCE: &str = "binance-spot-btcusdt-depth";
const COINBASE: &str = "coinbase-exchange-btc-usd-level2";

fn feeds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("feeds")
}

fn lines(name: &str) -> Vec<String> {
    std::fs::read_to_string(feeds_dir().join(format!("{name}.jsonl")))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn levels(v: &Value) -> Vec<Level> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let fixed =
                |i: usize| tickcast::fixed::parse(l[i].as_str().unwrap().as_bytes()).unwrap();
            (fixed(0), fixed(1))
        })
        .collect()
}

/// The venue's true final books, by tickcast symbol (`prefix:NAME`).
fn final_books(name: &str, prefix: &str) -> HashMap<String, (Vec<Level>, Vec<Level>)> {
    let text = std::fs::read_to_string(feeds_dir().join(format!("{name}.book.json"))).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v.as_object()
        .unwrap()
        .iter()
        .map(|(sym, b)| {
            (
                format!("{prefix}:{sym}"),
                (levels(&b["bids"]), levels(&b["asks"])),
            )
        })
        .collect()
}

/// The server's books of the symbols in `want`, once they equal it; the test fails
/// with the difference when they do not within `WAIT`.
fn until_server_books(server: &ServerHandle, want: &HashMap<String, (Vec<Level>, Vec<Level>)>) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let got: HashMap<String, (Vec<Level>, Vec<Level>)> = want
            .keys()
            .filter_map(|name| {
                let id = server.symbols().id_of(name)?;
                let b = server.lvc().book(id);
                Some((name.clone(), (b.bids, b.asks)))
            })
            .collect();
        if &got == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server's books never became the venue's: got {got:?}, want {want:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A subscriber of the book channel that joins now rebuilds exactly `want`.
async fn subscriber_rebuilds(addr: SocketAddr, want: &HashMap<String, (Vec<Level>, Vec<Level>)>) {
    let names: Vec<String> = want.keys().cloned().collect();
    let options = Options {
        channels: Some(vec!["book".into()]),
        ..Options::symbols(names.clone())
    };
    let mut client = Client::connect(&format!("ws://{addr}/ws"), options)
        .await
        .unwrap();
    let done = |client: &Client| {
        names.iter().all(|n| {
            client.book(n).is_some_and(|b| {
                b.is_synced()
                    && (b.book().bids(), b.book().asks()) == (&want[n].0[..], &want[n].1[..])
            })
        })
    };
    while !done(&client) {
        match tokio::time::timeout(WAIT, client.next())
            .await
            .expect("the subscriber's books in time")
        {
            Ok(Event::BookGap { symbol, gap }) => panic!("book gap {symbol} {gap:?}"),
            Ok(_) => {}
            Err(e) => panic!("client: {e}"),
        }
    }
    client.close().await.unwrap();
}

fn server_with(feed: FeedSpec) -> ServerHandle {
    start_server(Config {
        feeds: vec![feed],
        ..config(0, 0)
    })
}

fn feed_count(server: &ServerHandle, f: impl Fn(&tickcast::feed::FeedStatus) -> u64) -> u64 {
    server
        .stats()
        .feeds
        .lock()
        .unwrap()
        .iter()
        .map(|s| f(s))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_venue_book_captures_rebuild_the_venues_books() {
    for (name, venue, gaps) in [(BINANCE, Venue::Binance, 2), (COINBASE, Venue::Coinbase, 0)] {
        let server = server_with(FeedSpec::Replay(ReplayConfig {
            speed: 0.0,
            ..ReplayConfig::new(feeds_dir().join(format!("{name}.jsonl")))
        }));
        let want = final_books(name, venue.default_prefix());
        until_server_books(&server, &want);
        subscriber_rebuilds(server.local_addr(), &want).await;
        assert_eq!(
            feed_count(&server, |s| s.parse_errors.load(Ordering::Relaxed)),
            0,
            "{name}"
        );
        // Binance: the one U/u gap per symbol the capture holds, each repaired by
        // the snapshot after it.
        assert_eq!(
            feed_count(&server, |s| s.gaps.load(Ordering::Relaxed)),
            gaps,
            "{name}"
        );
        let changes = server
            .stats()
            .sequencer
            .book_changes
            .load(Ordering::Relaxed);
        assert!(changes > 1_000, "{name}: {changes} book changes sequenced");
        server.shutdown();
    }
}

/// A fake venue on 127.0.0.1: a WebSocket that answers the subscribe with `ws_lines`
/// and stays open, and an HTTP server that answers each
/// `GET /api/v3/depth?symbol=S&limit=N` with S's next snapshot body (404 when there
/// is none). It reports the subscribe message and every HTTP request line.
struct FakeVenue {
    ws: SocketAddr,
    rest: SocketAddr,
    subscribes: mpsc::Receiver<String>,
    requests: Arc<Mutex<Vec<String>>>,
    _rt: tokio::runtime::Runtime,
}

impl FakeVenue {
    fn start(ws_lines: Vec<String>, snapshots: HashMap<String, Vec<String>>) -> FakeVenue {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (sub_tx, subscribes) = mpsc::channel();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (ws, rest) = rt.block_on(async {
            let ws = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let rest = TcpListener::bind("127.0.0.1:0").await.unwrap();
            (ws, rest)
        });
        let (ws_addr, rest_addr) = (ws.local_addr().unwrap(), rest.local_addr().unwrap());
        rt.spawn(async move {
            // One connection: the feed must not need another.
            let (tcp, _) = ws.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            if let Some(Ok(Message::Text(t))) = ws.next().await {
                let _ = sub_tx.send(t.to_string());
            }
            for l in ws_lines {
                ws.feed(Message::text(l)).await.unwrap();
            }
            ws.flush().await.unwrap();
            while let Some(Ok(_)) = ws.next().await {}
        });
        let log = requests.clone();
        rt.spawn(async move {
            let snapshots = Arc::new(Mutex::new(snapshots));
            loop {
                let (mut tcp, _) = rest.accept().await.unwrap();
                let (log, snapshots) = (log.clone(), snapshots.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tcp.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let line = head.lines().next().unwrap_or("").to_string();
                    log.lock().unwrap().push(line.clone());
                    let symbol = line
                        .split("symbol=")
                        .nth(1)
                        .and_then(|s| s.split('&').next())
                        .unwrap_or("")
                        .to_string();
                    let body = snapshots.lock().unwrap().get_mut(&symbol).and_then(|q| {
                        (!q.is_empty()).then(|| q.remove(0))
                    });
                    let response = match body {
                        Some(b) => format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{b}",
                            b.len()
                        ),
                        None => "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_string(),
                    };
                    let _ = tcp.write_all(response.as_bytes()).await;
                    let _ = tcp.shutdown().await;
                });
            }
        });
        FakeVenue {
            ws: ws_addr,
            rest: rest_addr,
            subscribes,
            requests,
            _rt: rt,
        }
    }
}

#[test]
fn binance_depth_is_joined_to_rest_snapshots_and_resynced_after_a_gap() {
    // What Binance's WebSocket sends is the capture without its snapshot lines; the
    // snapshots are what its REST endpoint answers, in the order they were fetched.
    let mut ws_lines = Vec::new();
    let mut snapshots: HashMap<String, Vec<String>> = HashMap::new();
    for l in lines(BINANCE) {
        let v: Value = serde_json::from_str(&l).unwrap();
        match v["stream"].as_str() {
            Some(s) if s.ends_with("@depth@snapshot") => {
                let symbol = s.split('@').next().unwrap().to_ascii_uppercase();
                snapshots
                    .entry(symbol)
                    .or_default()
                    .push(v["data"].to_string());
            }
            _ => ws_lines.push(l),
        }
    }
    assert_eq!(snapshots.values().map(Vec::len).collect::<Vec<_>>(), [2, 2]);
    let venue = FakeVenue::start(ws_lines, snapshots);
    let server = server_with(FeedSpec::Binance(ExchangeConfig {
        url: Some(format!("ws://{}/stream", venue.ws)),
        depth_url: Some(format!("http://{}", venue.rest)),
        book: true,
        ..ExchangeConfig::default()
    }));
    let subscribe = venue.subscribes.recv_timeout(WAIT).expect("a subscribe");
    assert_eq!(
        subscribe,
        r#"{"method":"SUBSCRIBE","params":["btcusdt@trade","btcusdt@bookTicker","btcusdt@depth@100ms","ethusdt@trade","ethusdt@bookTicker","ethusdt@depth@100ms"],"id":1}"#
    );
    let want = final_books(BINANCE, "BINANCE");
    until_server_books(&server, &want);
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(subscriber_rebuilds(server.local_addr(), &want));
    // One snapshot per symbol to join, one more after each symbol's gap: no more.
    let mut requests = venue.requests.lock().unwrap().clone();
    requests.sort();
    assert_eq!(
        requests,
        [
            "GET /api/v3/depth?symbol=BTCUSDT&limit=100 HTTP/1.1",
            "GET /api/v3/depth?symbol=BTCUSDT&limit=100 HTTP/1.1",
            "GET /api/v3/depth?symbol=ETHUSDT&limit=100 HTTP/1.1",
            "GET /api/v3/depth?symbol=ETHUSDT&limit=100 HTTP/1.1",
        ]
    );
    assert_eq!(feed_count(&server, |s| s.gaps.load(Ordering::Relaxed)), 2);
    assert_eq!(
        feed_count(&server, |s| s.parse_errors.load(Ordering::Relaxed)),
        0
    );
    assert_eq!(
        feed_count(&server, |s| s.reconnects.load(Ordering::Relaxed)),
        0
    );
    server.shutdown();
}

/// A fresh Coinbase snapshot (after updates were lost) replaces the book whole: the
/// server's book right after it is exactly the snapshot, levels the lost updates
/// removed included.
#[test]
fn a_coinbase_snapshot_mid_stream_replaces_the_book() {
    let all = lines(COINBASE);
    let snapshots: Vec<usize> = (0..all.len())
        .filter(|&i| all[i].contains(r#""type":"snapshot","product_id":"BTC-USD""#))
        .collect();
    assert_eq!(
        snapshots.len(),
        2,
        "the first snapshot and one after lost updates"
    );
    let cut = snapshots[1];
    let snapshot: Value = serde_json::from_str(&all[cut]).unwrap();
    let venue = FakeVenue::start(all[..=cut].to_vec(), HashMap::new());
    let server = server_with(FeedSpec::Coinbase(ExchangeConfig {
        url: Some(format!("ws://{}", venue.ws)),
        book: true,
        ..ExchangeConfig::default()
    }));
    let want = HashMap::from([(
        "COINBASE:BTC-USD".to_string(),
        (levels(&snapshot["bids"]), levels(&snapshot["asks"])),
    )]);
    until_server_books(&server, &want);
    server.shutdown();
}

#[test]
fn coinbase_level2_batch_snapshots_and_updates_make_the_venues_books() {
    let venue = FakeVenue::start(lines(COINBASE), HashMap::new());
    let server = server_with(FeedSpec::Coinbase(ExchangeConfig {
        url: Some(format!("ws://{}", venue.ws)),
        book: true,
        ..ExchangeConfig::default()
    }));
    let subscribe = venue.subscribes.recv_timeout(WAIT).expect("a subscribe");
    assert_eq!(
        subscribe,
        r#"{"type":"subscribe","product_ids":["BTC-USD","ETH-USD"],"channels":["matches","ticker","heartbeat","level2_batch"]}"#
    );
    let want = final_books(COINBASE, "COINBASE");
    until_server_books(&server, &want);
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(subscriber_rebuilds(server.local_addr(), &want));
    assert_eq!(
        feed_count(&server, |s| s.parse_errors.load(Ordering::Relaxed)),
        0
    );
    assert!(
        venue.requests.lock().unwrap().is_empty(),
        "no REST for Coinbase"
    );
    server.shutdown();
}
