//! Feeds end to end: the sample captures replayed, and a fake exchange WebSocket server
//! serving them to the Binance and Coinbase adapters (subscribe, drops, silence,
//! pings, bad messages), down to a tickcast subscriber.
//!
//! Expected ticks come from an independent reading of the captures with serde_json, so
//! the adapters are checked against the files, field for field. Every network test
//! uses 127.0.0.1, and every wait is bounded by [`WAIT`].

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use proptest::prelude::*;
use serde_json::Value;
use tickcast::config::Config;
use tickcast::feed::exchange::ExchangeConfig;
use tickcast::feed::normalize::{Normalizer, Venue};
use tickcast::feed::replay::ReplayConfig;
use tickcast::feed::{self, FeedContext, FeedSpec, FeedStatus, FeedTick};
use tickcast::fixed;
use tickcast::server::Server;
use tickcast::symbol::{Symbol, SymbolTable};
use tickcast::tick::Body;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Notify};
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(20);
const BINANCE: &str = "binance-spot-btcusdt-ethusdt.jsonl";
const COINBASE: &str = "coinbase-exchange-btc-usd-eth-usd.jsonl";

fn capture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("feeds")
        .join(name)
}

fn capture(name: &str) -> Vec<String> {
    std::fs::read_to_string(capture_path(name))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// A tick the capture says must come out. `ts_event` is `None` for a Binance book
/// ticker, which carries no time (live: stamped on receipt).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expect {
    symbol: String,
    ts_event: Option<u64>,
    body: Body,
}

fn dec(v: &Value) -> i64 {
    fixed::parse(v.as_str().expect("decimal string").as_bytes()).unwrap()
}

fn rfc3339_ns(v: &Value) -> u64 {
    let t = humantime::parse_rfc3339(v.as_str().unwrap()).unwrap();
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// Reads the capture's lines with serde_json: the ticks they must become, with the
/// Coinbase re-sent trades and tickers left out.
fn expected(venue: Venue, lines: &[String]) -> Vec<Expect> {
    let mut out = Vec::new();
    let mut last_trade: HashMap<String, u64> = HashMap::new();
    let mut last_ticker: HashMap<String, u64> = HashMap::new();
    for line in lines {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        match venue {
            Venue::Binance => {
                let Some(stream) = v["stream"].as_str() else {
                    continue;
                };
                let d = &v["data"];
                let symbol = format!("BINANCE:{}", d["s"].as_str().unwrap());
                if stream.ends_with("@trade") {
                    out.push(Expect {
                        symbol,
                        ts_event: Some(d["T"].as_u64().unwrap() * 1_000_000),
                        body: Body::trade(dec(&d["p"]), dec(&d["q"])),
                    });
                } else if stream.ends_with("@bookTicker") {
                    out.push(Expect {
                        symbol,
                        ts_event: None,
                        body: Body::Quote {
                            bid_px: dec(&d["b"]),
                            bid_sz: dec(&d["B"]),
                            ask_px: dec(&d["a"]),
                            ask_sz: dec(&d["A"]),
                        },
                    });
                }
            }
            Venue::Coinbase => {
                let product = v["product_id"].as_str().unwrap_or_default().to_string();
                let symbol = format!("COINBASE:{product}");
                match v["type"].as_str().unwrap() {
                    "match" | "last_match" => {
                        let id = v["trade_id"].as_u64().unwrap();
                        if last_trade.get(&product).is_some_and(|&l| id <= l) {
                            continue;
                        }
                        last_trade.insert(product, id);
                        out.push(Expect {
                            symbol,
                            ts_event: Some(rfc3339_ns(&v["time"])),
                            body: Body::trade(dec(&v["price"]), dec(&v["size"])),
                        });
                    }
                    "ticker" => {
                        let seq = v["sequence"].as_u64().unwrap();
                        if last_ticker.get(&product).is_some_and(|&l| seq <= l) {
                            continue;
                        }
                        last_ticker.insert(product, seq);
                        out.push(Expect {
                            symbol,
                            ts_event: Some(rfc3339_ns(&v["time"])),
                            body: Body::Quote {
                                bid_px: dec(&v["best_bid"]),
                                bid_sz: dec(&v["best_bid_size"]),
                                ask_px: dec(&v["best_ask"]),
                                ask_sz: dec(&v["best_ask_size"]),
                            },
                        });
                    }
                    _ => {}
                }
            }
        }
    }
    out
}

fn assert_matches(got: &[FeedTick], want: &[Expect]) {
    assert_eq!(got.len(), want.len(), "tick count");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.symbol.as_str(), w.symbol, "tick {i}");
        assert_eq!(g.body, w.body, "tick {i} of {}", w.symbol);
        match w.ts_event {
            Some(ts) => assert_eq!(g.ts_event, ts, "tick {i} ts_event"),
            None => assert!(g.ts_event > 0, "tick {i} stamped"),
        }
    }
}

// ---------------------------------------------------------------------------------
// A feed on its own, reading the sequencer's channel.

struct RunningFeed {
    rx: feed::FeedReceiver,
    status: Arc<FeedStatus>,
    shutdown: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningFeed {
    fn start(spec: FeedSpec) -> RunningFeed {
        let (tx, rx) = feed::channel(1024);
        let status = Arc::new(FeedStatus::new(feed::name(&spec)));
        let shutdown = Arc::new(AtomicBool::new(false));
        let ctx = FeedContext {
            tx,
            symbols: Arc::new(SymbolTable::new(1024)),
            shutdown: shutdown.clone(),
            status: status.clone(),
        };
        let thread = feed::spawn(&spec, ctx).unwrap();
        RunningFeed {
            rx,
            status,
            shutdown,
            thread: Some(thread),
        }
    }

    fn take(&self, n: usize) -> Vec<FeedTick> {
        (0..n)
            .map(|i| {
                self.rx
                    .recv_timeout(WAIT)
                    .unwrap_or_else(|e| panic!("tick {i} of {n} not received: {e}"))
            })
            .collect()
    }

    fn count(&self, f: impl Fn(&FeedStatus) -> &std::sync::atomic::AtomicU64) -> u64 {
        f(&self.status).load(Ordering::Relaxed)
    }
}

impl Drop for RunningFeed {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn replay_plays_each_capture_field_for_field() {
    for (file, venue) in [(BINANCE, Venue::Binance), (COINBASE, Venue::Coinbase)] {
        let lines = capture(file);
        let mut want = expected(venue, &lines);
        if venue == Venue::Binance {
            // In replay a book ticker takes the capture's latest time before it.
            let mut clock = 0;
            for w in &mut want {
                match w.ts_event {
                    Some(t) => clock = clock.max(t),
                    None => w.ts_event = Some(clock),
                }
            }
        }
        let feed = RunningFeed::start(FeedSpec::Replay(ReplayConfig {
            speed: 0.0,
            rebase_time: false,
            ..ReplayConfig::new(capture_path(file))
        }));
        assert_matches(&feed.take(want.len()), &want);
        let thread = feed.thread.as_ref().unwrap();
        let deadline = std::time::Instant::now() + WAIT;
        while !thread.is_finished() {
            assert!(std::time::Instant::now() < deadline, "replay ends");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(feed.rx.try_recv().is_err(), "no extra tick");
        assert_eq!(feed.count(|s| &s.parse_errors), 0, "{file}");
        assert_eq!(feed.count(|s| &s.gaps), 0, "{file}");
        assert_eq!(feed.count(|s| &s.messages), lines.len() as u64);
    }
}

#[test]
fn replay_loops_and_rebases_time() {
    let lines = capture(COINBASE);
    let want = expected(Venue::Coinbase, &lines);
    let before = tickcast::clock::now_ns();
    let feed = RunningFeed::start(FeedSpec::Replay(ReplayConfig {
        speed: 0.0,
        repeat: true,
        ..ReplayConfig::new(capture_path(COINBASE))
    }));
    let first = feed.take(want.len());
    let second = feed.take(want.len());
    for pass in [&first, &second] {
        for (g, w) in pass.iter().zip(&want) {
            assert_eq!((g.symbol.as_str(), g.body), (w.symbol.as_str(), w.body));
            assert!(g.ts_event >= before, "re-stamped with replay time");
        }
    }
    assert_eq!(feed.count(|s| &s.parse_errors), 0);
}

#[test]
fn replay_skips_bad_lines_and_goes_on() {
    let dir = std::env::temp_dir().join(format!("tickcast-feeds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.jsonl");
    let lines = capture(BINANCE);
    let mut text = String::new();
    for (i, line) in lines.iter().take(200).enumerate() {
        text.push_str(line);
        text.push('\n');
        match i {
            10 => text.push_str("{\"stream\":\"btcusdt@trade\",\"data\":{\"e\":\"tra\n"),
            20 => text.push_str("not json at all\n"),
            30 => text.push_str("{\"stream\":\"btcusdt@depth\",\"data\":{}}\n"),
            40 => text.push_str(&format!("{{\"pad\":\"{}\"}}\n", "x".repeat(100_000))),
            _ => {}
        }
    }
    std::fs::write(&path, text).unwrap();
    let want = expected(Venue::Binance, &lines[..200]);
    let feed = RunningFeed::start(FeedSpec::Replay(ReplayConfig {
        speed: 0.0,
        rebase_time: false,
        venue: Some(Venue::Binance),
        ..ReplayConfig::new(&path)
    }));
    let got = feed.take(want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!((g.symbol.as_str(), g.body), (w.symbol.as_str(), w.body));
    }
    assert_eq!(feed.count(|s| &s.parse_errors), 4);
    drop(feed);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A binary data message of `ticks` (symbol id, trade price), stamped `ts_event`.
fn wire_message(ticks: &[(u32, i64)], ts_event: u64) -> Vec<u8> {
    use tickcast::wire::{encode_header, encode_record, HEADER_SIZE, RECORD_SIZE};
    let mut msg = vec![0u8; HEADER_SIZE];
    let mut h = [0u8; HEADER_SIZE];
    encode_header(ticks.len() as u32, 0, &mut h);
    msg.copy_from_slice(&h);
    for (i, &(symbol_id, price)) in ticks.iter().enumerate() {
        let tick = tickcast::tick::Tick {
            symbol_id,
            seq: i as u64 + 1,
            ts_event,
            ts_recv: ts_event,
            flags: tickcast::tick::Flags::empty(),
            count: 1,
            body: Body::trade(price, 100_000_000),
        };
        let mut r = [0u8; RECORD_SIZE];
        encode_record(&tick, &mut r);
        msg.extend_from_slice(&r);
    }
    msg
}

#[test]
fn replay_of_a_tickcast_capture_skips_a_bad_block_and_goes_on() {
    use tickcast::capture::{CaptureHeader, CaptureWriter, SymbolEntry, ENTRY_BLOCK};
    let entry = |id: u32, name: &str| SymbolEntry {
        id,
        name: name.into(),
    };
    let header = |symbols| CaptureHeader {
        created_at_ns: 1,
        symbols,
        source: None,
    };
    // A good block of A, the name of B, then (spliced in) a block whose headers count
    // more records than it holds, then a good block of A and B.
    let mut w = CaptureWriter::new(Vec::new(), &header(vec![entry(0, "CAPA")])).unwrap();
    w.write_message(&wire_message(&[(0, 100), (0, 101)], 1_000))
        .unwrap();
    w.write_message(&wire_message(&[(0, 102)], 2_000)).unwrap();
    w.write_symbols(&[entry(1, "CAPB")]).unwrap();
    let mut file = w.finish().unwrap();
    let mut bad = vec![0u8; 8];
    let msg = wire_message(&[(0, 999), (1, 999)], 3_000);
    let mut payload = Vec::new();
    payload.extend_from_slice(&1u32.to_le_bytes()); // one message
    payload.extend_from_slice(&1u32.to_le_bytes()); // one record: the header says two
    payload.extend_from_slice(&msg[..16]);
    payload.extend_from_slice(&msg[16..16 + 72]);
    bad[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    bad[4] = ENTRY_BLOCK;
    file.extend_from_slice(&bad);
    file.extend_from_slice(&payload);
    let mut w = CaptureWriter::new(Vec::new(), &header(vec![])).unwrap();
    w.write_message(&wire_message(&[(1, 200), (0, 103)], 4_000))
        .unwrap();
    let tail = w.finish().unwrap();
    let json_len = u32::from_le_bytes(tail[16..20].try_into().unwrap()) as usize;
    file.extend_from_slice(&tail[24 + json_len.next_multiple_of(8)..]);

    let dir = std::env::temp_dir().join(format!("tickcast-feeds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad-block.tcrec");
    std::fs::write(&path, file).unwrap();
    let feed = RunningFeed::start(FeedSpec::Replay(ReplayConfig {
        speed: 0.0,
        rebase_time: false,
        ..ReplayConfig::new(&path)
    }));
    let got: Vec<(String, i64, u64)> = feed
        .take(5)
        .iter()
        .map(|t| {
            (
                t.symbol.as_str().to_string(),
                t.body.values()[0],
                t.ts_event,
            )
        })
        .collect();
    let want: Vec<(String, i64, u64)> = [
        ("CAPA", 100, 1_000),
        ("CAPA", 101, 1_000),
        ("CAPA", 102, 2_000),
        ("CAPB", 200, 4_000),
        ("CAPA", 103, 4_000),
    ]
    .into_iter()
    .map(|(s, p, t)| (s.to_string(), p, t))
    .collect();
    assert_eq!(got, want);
    let thread = feed.thread.as_ref().unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while !thread.is_finished() {
        assert!(std::time::Instant::now() < deadline, "replay ends");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        feed.rx.try_recv().is_err(),
        "nothing of the bad block is played"
    );
    assert_eq!(
        feed.count(|s| &s.parse_errors),
        1,
        "the bad block is counted"
    );
    assert_eq!(feed.count(|s| &s.messages), 3, "the good blocks' messages");
    drop(feed);
    let _ = std::fs::remove_file(&path);
}

// ---------------------------------------------------------------------------------
// A fake exchange.

/// What the fake sends on one connection.
enum Out {
    Text(String),
    Ping(&'static [u8]),
    /// Wait until the test opens this gate.
    Gate(Arc<Notify>),
}

/// What the fake does once a connection's script is sent.
#[derive(Clone, Copy, PartialEq, Eq)]
enum After {
    /// Drop the TCP connection without a close frame.
    Drop,
    /// Stay open and silent, reading what the client sends.
    Hold,
}

struct Conn {
    out: Vec<Out>,
    after: After,
}

fn texts(lines: &[String]) -> Vec<Out> {
    lines.iter().map(|l| Out::Text(l.clone())).collect()
}

/// A WebSocket server on 127.0.0.1 that plays one scripted connection per accept, on
/// its own thread. It reports every subscribe message and every pong it receives.
struct FakeExchange {
    addr: SocketAddr,
    subscribes: mpsc::Receiver<String>,
    pongs: mpsc::Receiver<Vec<u8>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeExchange {
    fn start(script: Vec<Conn>) -> FakeExchange {
        FakeExchange::start_with(script, None)
    }

    /// The fake behind TLS (`wss://`) when `tls` is given.
    fn start_with(script: Vec<Conn>, tls: Option<tokio_rustls::TlsAcceptor>) -> FakeExchange {
        let (addr_tx, addr_rx) = mpsc::channel();
        let (sub_tx, subscribes) = mpsc::channel();
        let (pong_tx, pongs) = mpsc::channel();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let serve = async {
                    for conn in script {
                        let (tcp, _) = listener.accept().await.unwrap();
                        let sub_tx = sub_tx.clone();
                        let pong_tx = pong_tx.clone();
                        match tls.clone() {
                            None => {
                                tokio::spawn(serve_conn(tcp, conn, sub_tx, pong_tx));
                            }
                            Some(acceptor) => {
                                tokio::spawn(async move {
                                    if let Ok(stream) = acceptor.accept(tcp).await {
                                        serve_conn(stream, conn, sub_tx, pong_tx).await;
                                    }
                                });
                            }
                        }
                    }
                    std::future::pending::<()>().await;
                };
                tokio::select! {
                    () = serve => {}
                    _ = stop_rx => {}
                }
            });
        });
        FakeExchange {
            addr: addr_rx.recv_timeout(WAIT).unwrap(),
            subscribes,
            pongs,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    fn next_subscribe(&self) -> String {
        self.subscribes
            .recv_timeout(WAIT)
            .expect("a subscribe message")
    }
}

impl Drop for FakeExchange {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve_conn<S>(
    tcp: S,
    conn: Conn,
    subscribes: mpsc::Sender<String>,
    pongs: mpsc::Sender<Vec<u8>>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    // The venue speaks only once subscribed.
    match tokio::time::timeout(WAIT, ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => {
            let _ = subscribes.send(t.to_string());
        }
        _ => return,
    }
    for out in conn.out {
        let sent = match out {
            Out::Text(t) => ws.feed(Message::text(t)).await,
            Out::Ping(p) => ws.feed(Message::Ping(p.to_vec().into())).await,
            Out::Gate(gate) => {
                if ws.flush().await.is_err() {
                    return;
                }
                gate.notified().await;
                Ok(())
            }
        };
        if sent.is_err() {
            return;
        }
    }
    if ws.flush().await.is_err() {
        return;
    }
    if conn.after == After::Drop {
        return;
    }
    while let Some(Ok(m)) = ws.next().await {
        if let Message::Pong(p) = m {
            let _ = pongs.send(p.to_vec());
        }
    }
}

fn exchange_spec(venue: Venue, url: String, tweak: impl FnOnce(&mut ExchangeConfig)) -> FeedSpec {
    let mut cfg = ExchangeConfig {
        url: Some(url),
        backoff_initial_ms: 10,
        backoff_max_ms: 50,
        ..ExchangeConfig::default()
    };
    tweak(&mut cfg);
    match venue {
        Venue::Binance => FeedSpec::Binance(cfg),
        Venue::Coinbase => FeedSpec::Coinbase(cfg),
    }
}

const BINANCE_SUBSCRIBE: &str = r#"{"method":"SUBSCRIBE","params":["btcusdt@trade","btcusdt@bookTicker","ethusdt@trade","ethusdt@bookTicker"],"id":1}"#;
const COINBASE_SUBSCRIBE: &str = r#"{"type":"subscribe","product_ids":["BTC-USD","ETH-USD"],"channels":["matches","ticker","heartbeat"]}"#;

fn subscribe_of(venue: Venue) -> &'static str {
    match venue {
        Venue::Binance => BINANCE_SUBSCRIBE,
        Venue::Coinbase => COINBASE_SUBSCRIBE,
    }
}

fn capture_of(venue: Venue) -> Vec<String> {
    match venue {
        Venue::Binance => capture(BINANCE),
        Venue::Coinbase => capture(COINBASE),
    }
}

/// Where the second connection of a dropped session starts: the venue's ack, then,
/// for Coinbase, what it sends on every subscribe (the last match and the current
/// ticker of each product, already delivered), then the rest of the stream.
fn resumed(venue: Venue, lines: &[String], cut: usize) -> Vec<String> {
    let mut out = vec![lines[0].clone()];
    if venue == Venue::Coinbase {
        for product in ["BTC-USD", "ETH-USD"] {
            let last = |types: &[&str]| {
                lines[..cut].iter().rev().find(|l| {
                    let v: Value = serde_json::from_str(l).unwrap();
                    types.iter().any(|t| v["type"] == *t) && v["product_id"] == product
                })
            };
            if let Some(m) = last(&["match", "last_match"]) {
                out.push(m.replacen("\"type\":\"match\"", "\"type\":\"last_match\"", 1));
            }
            if let Some(t) = last(&["ticker"]) {
                out.push(t.clone());
            }
        }
    }
    out.extend_from_slice(&lines[cut..]);
    out
}

#[test]
fn each_adapter_subscribes_exactly_and_delivers_the_capture() {
    for venue in Venue::ALL {
        let lines = capture_of(venue);
        let fake = FakeExchange::start(vec![Conn {
            out: texts(&lines),
            after: After::Hold,
        }]);
        let feed = RunningFeed::start(exchange_spec(venue, fake.url("/stream"), |_| {}));
        assert_eq!(fake.next_subscribe(), subscribe_of(venue));
        let want = expected(venue, &lines);
        assert_matches(&feed.take(want.len()), &want);
        assert_eq!(feed.count(|s| &s.connected), 1);
        assert_eq!(feed.count(|s| &s.messages), lines.len() as u64);
        assert_eq!(feed.count(|s| &s.parse_errors), 0);
        assert_eq!(feed.count(|s| &s.gaps), 0);
        assert_eq!(feed.count(|s| &s.reconnects), 0);
        assert!(feed.count(|s| &s.last_message_ns) > 0);
    }
}

#[test]
fn wss_goes_through_rustls() {
    use tokio_rustls::rustls;
    // A private CA and a certificate for 127.0.0.1 signed by it; the client trusts the
    // CA through `ca_file`, on top of the webpki roots.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "tickcast test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        rustls::pki_types::PrivatePkcs8KeyDer::from(leaf_key.serialize_der()).into(),
    )
    .unwrap();
    let dir = std::env::temp_dir().join(format!("tickcast-wss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();

    let lines = capture(COINBASE);
    let fake = FakeExchange::start_with(
        vec![Conn {
            out: texts(&lines),
            after: After::Hold,
        }],
        Some(tokio_rustls::TlsAcceptor::from(Arc::new(server))),
    );
    let url = format!("wss://{}/", fake.addr);
    let feed = RunningFeed::start(exchange_spec(Venue::Coinbase, url, |c| {
        c.ca_file = Some(ca_file.clone());
    }));
    assert_eq!(fake.next_subscribe(), COINBASE_SUBSCRIBE);
    let want = expected(Venue::Coinbase, &lines);
    assert_matches(&feed.take(want.len()), &want);
    assert_eq!(feed.count(|s| &s.reconnects), 0);
    drop(feed);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_dropped_connection_is_reconnected_resubscribed_and_resumed() {
    for venue in Venue::ALL {
        let lines = capture_of(venue);
        let cut = lines.len() / 3;
        let (first, second) = (lines[..cut].to_vec(), resumed(venue, &lines, cut));
        // What the venue re-sends on the second subscribe must not come out twice.
        let want = expected(venue, &[first.clone(), second.clone()].concat());
        assert_eq!(want, expected(venue, &lines));
        let fake = FakeExchange::start(vec![
            Conn {
                out: texts(&first),
                after: After::Drop,
            },
            Conn {
                out: texts(&second),
                after: After::Hold,
            },
        ]);
        let feed = RunningFeed::start(exchange_spec(venue, fake.url("/stream"), |_| {}));
        let got = feed.take(want.len());
        assert_eq!(fake.next_subscribe(), subscribe_of(venue));
        assert_eq!(fake.next_subscribe(), subscribe_of(venue), "resubscribed");
        assert_matches(&got, &want);
        assert!(feed.count(|s| &s.reconnects) >= 1);
        assert_eq!(feed.count(|s| &s.parse_errors), 0);
        assert_eq!(feed.count(|s| &s.gaps), 0, "nothing was lost");
    }
}

#[test]
fn trades_lost_during_a_reconnect_are_counted_as_a_gap() {
    let lines = capture(COINBASE);
    let cut = lines.len() / 2;
    // The second connection starts 40 lines later: the trades in between are lost.
    let (first, second) = (
        lines[..cut].to_vec(),
        resumed(Venue::Coinbase, &lines, cut + 40),
    );
    let want = expected(Venue::Coinbase, &[first.clone(), second.clone()].concat());
    let fake = FakeExchange::start(vec![
        Conn {
            out: texts(&first),
            after: After::Drop,
        },
        Conn {
            out: texts(&second),
            after: After::Hold,
        },
    ]);
    let feed = RunningFeed::start(exchange_spec(Venue::Coinbase, fake.url("/"), |_| {}));
    let got = feed.take(want.len());
    assert_matches(&got, &want);
    assert!(feed.count(|s| &s.gaps) >= 1, "the lost trades are a gap");
}

#[test]
fn silence_is_detected_and_pings_are_answered() {
    let lines = capture(BINANCE);
    let fake = FakeExchange::start(vec![
        // Acknowledges, then says nothing at all.
        Conn {
            out: texts(&lines[..1]),
            after: After::Hold,
        },
        Conn {
            out: [vec![Out::Ping(b"are you there")], texts(&lines[..50])]
                .into_iter()
                .flatten()
                .collect(),
            after: After::Hold,
        },
    ]);
    let feed = RunningFeed::start(exchange_spec(Venue::Binance, fake.url("/stream"), |c| {
        c.heartbeat_timeout_ms = 300;
    }));
    let want = expected(Venue::Binance, &lines[..50]);
    assert_matches(&feed.take(want.len()), &want);
    assert_eq!(fake.next_subscribe(), BINANCE_SUBSCRIBE);
    assert_eq!(fake.next_subscribe(), BINANCE_SUBSCRIBE);
    assert!(feed.count(|s| &s.reconnects) >= 1);
    assert_eq!(
        fake.pongs.recv_timeout(WAIT).expect("a pong"),
        b"are you there"
    );
}

#[test]
fn bad_venue_messages_are_counted_and_skipped() {
    for venue in Venue::ALL {
        let lines = capture_of(venue);
        let good = &lines[..120];
        let bad = [
            // truncated
            good[5][..good[5].len() / 2].to_string(),
            // malformed
            "{\"stream\" \"btcusdt@trade\"}".to_string(),
            // unknown type
            match venue {
                Venue::Binance => r#"{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade"}}"#,
                Venue::Coinbase => r#"{"type":"l2update","product_id":"BTC-USD","changes":[]}"#,
            }
            .to_string(),
            // oversize (over 64 KiB)
            format!("{{\"type\":\"match\",\"pad\":\"{}\"}}", "x".repeat(70_000)),
        ];
        let mut out = Vec::new();
        for (i, line) in good.iter().enumerate() {
            out.push(Out::Text(line.clone()));
            if i % 25 == 10 {
                out.push(Out::Text(bad[(i / 25) % bad.len()].clone()));
            }
        }
        out.extend(bad.iter().cloned().map(Out::Text));
        out.extend(texts(&lines[120..140]));
        let fake = FakeExchange::start(vec![Conn {
            out,
            after: After::Hold,
        }]);
        let feed = RunningFeed::start(exchange_spec(venue, fake.url("/"), |_| {}));
        let want = expected(venue, &lines[..140]);
        assert_matches(&feed.take(want.len()), &want);
        assert_eq!(feed.count(|s| &s.parse_errors), 5 + 4, "{venue}");
        assert_eq!(feed.count(|s| &s.reconnects), 0, "the session went on");
    }
}

#[test]
fn several_feeds_share_the_channel() {
    let binance = capture(BINANCE);
    let coinbase = capture(COINBASE);
    let (tx, rx) = feed::channel(64);
    let shutdown = Arc::new(AtomicBool::new(false));
    let symbols = Arc::new(SymbolTable::new(64));
    let mut threads = Vec::new();
    for file in [BINANCE, COINBASE] {
        let spec = FeedSpec::Replay(ReplayConfig {
            speed: 0.0,
            ..ReplayConfig::new(capture_path(file))
        });
        let ctx = FeedContext {
            tx: tx.clone(),
            symbols: symbols.clone(),
            shutdown: shutdown.clone(),
            status: Arc::new(FeedStatus::new(feed::name(&spec))),
        };
        threads.push(feed::spawn(&spec, ctx).unwrap());
    }
    drop(tx);
    let mut per_venue: HashMap<&str, usize> = HashMap::new();
    while let Ok(t) = rx.recv_timeout(WAIT) {
        let venue = t.symbol.as_str().split(':').next().unwrap();
        *per_venue
            .entry(if venue == "BINANCE" { "b" } else { "c" })
            .or_default() += 1;
    }
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(per_venue["b"], expected(Venue::Binance, &binance).len());
    assert_eq!(per_venue["c"], expected(Venue::Coinbase, &coinbase).len());
}

// ---------------------------------------------------------------------------------
// Through a whole tickcast server to a WebSocket subscriber.

#[test]
fn a_tickcast_subscriber_receives_the_exchange_ticks() {
    for venue in Venue::ALL {
        let lines = capture_of(venue);
        let gate = Arc::new(Notify::new());
        let fake = FakeExchange::start(vec![Conn {
            out: [vec![Out::Gate(gate.clone())], texts(&lines)]
                .into_iter()
                .flatten()
                .collect(),
            after: After::Hold,
        }]);
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            workers: 1,
            pin_cores: false,
            // Deliver every tick: no conflation in this test.
            high_water_bytes: 256 << 20,
            low_water_bytes: 1 << 20,
            max_queue_age_ms: 0,
            feeds: vec![exchange_spec(venue, fake.url("/stream"), |_| {})],
            ..Config::default()
        };
        let server = Server::start(config).unwrap();
        assert_eq!(fake.next_subscribe(), subscribe_of(venue));
        let want = expected(venue, &lines);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let got = rt.block_on(async {
            let mut ws = common::connect(server.local_addr()).await;
            common::send_json(
                &mut ws,
                serde_json::json!({"op":"subscribe","symbols":["*"],"format":"json"}),
            )
            .await;
            assert_eq!(
                common::until_type(&mut ws, "subscribed").await["type"],
                "subscribed"
            );
            gate.notify_one();
            let mut names = HashMap::new();
            let mut got = Vec::new();
            while got.len() < want.len() {
                if let Ok(ticks) = common::next_ticks(&mut ws, &mut names).await {
                    got.extend(ticks);
                }
            }
            let _ = ws.close(None).await;
            got
        });
        assert_eq!(got.len(), want.len());
        let mut last_seq: HashMap<String, u64> = HashMap::new();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.symbol, w.symbol, "tick {i}");
            assert_eq!(g.kind, w.body.kind().name(), "tick {i}");
            assert_eq!(g.values, w.body.values(), "tick {i} of {}", w.symbol);
            assert_eq!((g.count, g.flags.len()), (1, 0), "tick {i}: live, unmerged");
            if let Some(ts) = w.ts_event {
                assert_eq!(g.ts_event, ts, "tick {i}");
            }
            let prev = last_seq.insert(g.symbol.clone(), g.seq).unwrap_or(0);
            assert_eq!(g.seq, prev + 1, "tick {i}: per-symbol sequence");
        }
        server.shutdown();
    }
}

/// `/readyz` of `addr`: its status and its first reason (`source`, `reason`).
async fn readyz(addr: SocketAddr) -> (u16, String, String) {
    let (status, body) = common::http_get(addr, "/readyz").await;
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let first = &v["reasons"][0];
    (
        status,
        first["source"].as_str().unwrap_or("").to_string(),
        first["reason"].as_str().unwrap_or("").to_string(),
    )
}

/// Polls `/readyz` until `ok` holds for it.
async fn until_readyz(addr: SocketAddr, ok: impl Fn(&(u16, String, String)) -> bool) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let r = readyz(addr).await;
        if ok(&r) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "last /readyz: {r:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn readyz_follows_the_exchange_feed_from_connect_to_outage() {
    let lines = capture_of(Venue::Binance);
    let gate = Arc::new(Notify::new());
    // One connection: silent until the gate opens, then the capture, then dropped.
    let fake = FakeExchange::start(vec![Conn {
        out: [vec![Out::Gate(gate.clone())], texts(&lines)]
            .into_iter()
            .flatten()
            .collect(),
        after: After::Drop,
    }]);
    let mut config = common::config(1, 1);
    config.readiness.max_feed_outage_ms = 300;
    config.feeds = vec![exchange_spec(Venue::Binance, fake.url("/stream"), |_| {})];
    let server = Server::start(config).unwrap();
    let addr = server.local_addr();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        assert_eq!(fake.next_subscribe(), BINANCE_SUBSCRIBE);
        until_readyz(addr, |(code, source, reason)| {
            *code == 503 && source == "feed:binance" && reason == "connected, no tick delivered yet"
        })
        .await;
        assert_eq!(
            common::http_get(addr, "/healthz").await.0,
            200,
            "alive all along"
        );
        gate.notify_one();
        until_readyz(addr, |(code, ..)| *code == 200).await;
        // The venue hung up and the reconnect never completes its handshake (the fake
        // accepts no second connection): past max_feed_outage_ms the node is unready.
        until_readyz(addr, |(code, source, reason)| {
            *code == 503 && source == "feed:binance" && reason.starts_with("disconnected for")
        })
        .await;
    });
    server.shutdown();
}

#[test]
fn readyz_waits_for_a_feed_that_never_connects() {
    // A port nothing listens on: the feed keeps retrying, the node stays unready.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = common::config(1, 1);
    config.feeds = vec![exchange_spec(
        Venue::Coinbase,
        format!("ws://127.0.0.1:{port}/"),
        |_| {},
    )];
    let server = Server::start(config).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let addr = server.local_addr();
        let deadline = std::time::Instant::now() + Duration::from_millis(500);
        while std::time::Instant::now() < deadline {
            let r = readyz(addr).await;
            assert_eq!(r, (503, "feed:coinbase".into(), "not connected yet".into()));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    assert!(
        server.stats().feeds.lock().unwrap()[0]
            .reconnects
            .load(Ordering::Relaxed)
            >= 1
    );
    server.shutdown();
}

#[test]
fn readyz_is_ready_once_a_replay_delivered_and_stays_so_when_it_ends() {
    let mut config = common::config(1, 1);
    config.feeds = vec![FeedSpec::Replay(ReplayConfig {
        speed: 0.0,
        ..ReplayConfig::new(capture_path(COINBASE))
    })];
    let server = Server::start(config).unwrap();
    let status = server.stats().feeds.lock().unwrap()[0].clone();
    let deadline = std::time::Instant::now() + WAIT;
    while status.finished.load(Ordering::Relaxed) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the replay never finished"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert_eq!(rt.block_on(readyz(server.local_addr())).0, 200);
    server.shutdown();
}

#[test]
fn a_feed_that_cannot_start_fails_the_server() {
    let missing = std::env::temp_dir().join("tickcast-no-such-capture.jsonl");
    let unknown =
        std::env::temp_dir().join(format!("tickcast-unknown-{}.jsonl", std::process::id()));
    std::fs::write(&unknown, "{\"hello\":1}\n").unwrap();
    let empty = std::env::temp_dir().join(format!("tickcast-empty-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let cases: [(FeedSpec, &str); 4] = [
        (FeedSpec::Replay(ReplayConfig::new(&missing)), "cannot read"),
        (
            FeedSpec::Replay(ReplayConfig::new(&empty)),
            "no .tcrec capture in the directory",
        ),
        (
            FeedSpec::Replay(ReplayConfig::new(&unknown)),
            "cannot tell the venue",
        ),
        (
            exchange_spec(Venue::Binance, "http://example.invalid/".into(), |_| {}),
            "invalid url",
        ),
    ];
    for (spec, want) in cases {
        let mut config = common::config(1, 1);
        config.feeds = vec![spec.clone()];
        match Server::start(config) {
            Err(e) => assert!(e.to_string().contains(want), "{spec:?}: {e}"),
            Ok(s) => {
                s.shutdown();
                panic!("{spec:?} started");
            }
        }
    }
    let _ = std::fs::remove_file(&unknown);
    let _ = std::fs::remove_dir(&empty);
}

// ---------------------------------------------------------------------------------
// Arbitrary input never panics a normalizer.

fn normalize_all(bytes: &[u8]) {
    for venue in Venue::ALL {
        let mut n = Normalizer::new(venue, venue.default_prefix(), 4096);
        let _ = n.normalize(bytes, 1);
        let _ = n.normalize(bytes, u64::MAX);
    }
    let _ = Venue::detect(bytes);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        normalize_all(&bytes);
    }

    #[test]
    fn damaged_venue_messages_never_panic(
        line in 0usize..400,
        cut in 0usize..400,
        flips in proptest::collection::vec((0usize..400, any::<u8>()), 0..4),
    ) {
        for file in [BINANCE, COINBASE] {
            let lines = capture(file);
            let mut bytes = lines[line % lines.len()].clone().into_bytes();
            for (at, b) in &flips {
                let i = at % bytes.len();
                bytes[i] = *b;
            }
            bytes.truncate(bytes.len() - cut.min(bytes.len()));
            normalize_all(&bytes);
        }
    }
}

#[test]
fn symbols_are_namespaced_and_prefix_is_configurable() {
    let line = &capture(BINANCE)[1];
    let mut bare = Normalizer::new(Venue::Binance, "", 4096);
    let mut custom = Normalizer::new(Venue::Binance, "BN", 4096);
    let a = bare.normalize(line.as_bytes(), 1).unwrap().tick.unwrap();
    let b = custom.normalize(line.as_bytes(), 1).unwrap().tick.unwrap();
    assert_eq!(a.symbol, Symbol::new("ETHUSDT").unwrap());
    assert_eq!(b.symbol, Symbol::new("BN:ETHUSDT").unwrap());
}

// ---------------------------------------------------------------------------------
// No allocation per message.

/// Counts the allocations made by the current thread, so tests running in parallel
/// do not disturb each other's counts.
struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

// SAFETY: every method forwards to the system allocator with the caller's own
// arguments, so its contract is the system allocator's; the counter is a `const`-
// initialised thread-local `Cell`, whose access never allocates, and `try_with` makes
// it a no-op while the thread-local is being torn down.
unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same layout contract as ours.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: `ptr` came from `System` with `layout`; same contract as ours.
        unsafe { std::alloc::System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn allocations() -> u64 {
    ALLOCATIONS.with(|c| c.get())
}

#[test]
fn normalizing_allocates_nothing_per_message_once_warm() {
    let before = allocations();
    drop(std::hint::black_box(vec![0u8; 64]));
    assert_eq!(
        allocations() - before,
        1,
        "the counter sees this thread's allocations"
    );
    for venue in Venue::ALL {
        let lines = capture_of(venue);
        let mut n = Normalizer::new(venue, venue.default_prefix(), 65_536);
        // The first pass grows the buffers and meets every symbol.
        let warm: usize = lines
            .iter()
            .filter(|l| n.normalize(l.as_bytes(), 1).unwrap().tick.is_some())
            .count();
        n.reset();
        let before = allocations();
        let mut ticks = 0;
        for l in &lines {
            ticks += usize::from(n.normalize(l.as_bytes(), 1).unwrap().tick.is_some());
        }
        assert_eq!(
            allocations() - before,
            0,
            "{venue}: allocations in a warm pass"
        );
        assert_eq!(ticks, warm);
    }
}
