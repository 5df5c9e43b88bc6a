//! Helpers shared by the integration tests: a server on `127.0.0.1:0` and a real
//! third-party WebSocket client (tokio-tungstenite).
#![allow(dead_code)]

pub mod raw;

use std::collections::HashMap;
use std::io::BufRead;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tickcast::config::Config;
use tickcast::feed::synthetic::SyntheticConfig;
use tickcast::feed::FeedSpec;
use tickcast::server::{Server, ServerHandle};
use tickcast::tick::Tick;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// Any byte stream a WebSocket can run over (plain TCP, TLS).
pub trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Stream for T {}

/// How long any single wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// A config for tests: port 0, two unpinned cores, a synthetic feed.
pub fn config(symbols: usize, rate: u64) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        workers: 2,
        pin_cores: false,
        feeds: vec![FeedSpec::Synthetic(SyntheticConfig {
            symbols,
            rate,
            ..SyntheticConfig::default()
        })],
        ..Config::default()
    }
}

/// Starts a server and waits until its synthetic feed has interned every symbol and
/// given each a first value, so that a subscriber's first record of each is its
/// snapshot.
pub fn start_server(config: Config) -> ServerHandle {
    let want = match config.feeds.first() {
        Some(FeedSpec::Synthetic(s)) => s.symbols,
        _ => 0,
    };
    let server = Server::start(config).expect("server starts");
    let deadline = std::time::Instant::now() + WAIT;
    let ready = |server: &ServerHandle| {
        server.symbols().len() >= want
            && (0..want as u32).all(|id| server.lvc().latest(id).seq() > 0)
    };
    while !ready(&server) {
        assert!(
            std::time::Instant::now() < deadline,
            "the feed never gave every symbol a value"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    server
}

pub async fn connect(addr: SocketAddr) -> Ws {
    let (ws, _) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws")),
    )
    .await
    .expect("connect in time")
    .expect("connect");
    ws
}

pub async fn send_json<S: Stream>(ws: &mut WebSocketStream<S>, v: Value) {
    ws.send(Message::text(v.to_string())).await.expect("send");
}

/// The next message of any kind (pings are answered by the client itself).
pub async fn next<S: Stream>(ws: &mut WebSocketStream<S>) -> Message {
    loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message in time")
            .expect("stream open")
            .expect("no protocol error");
        match m {
            Message::Ping(_) | Message::Pong(_) => continue,
            other => return other,
        }
    }
}

/// The next text message parsed as JSON.
pub async fn next_json<S: Stream>(ws: &mut WebSocketStream<S>) -> Value {
    match next(ws).await {
        Message::Text(t) => serde_json::from_str(&t).expect("valid JSON"),
        other => panic!("expected text, got {other:?}"),
    }
}

/// Reads until a control message of `kind` arrives, returning it and the ticks seen.
pub async fn until_type<S: Stream>(ws: &mut WebSocketStream<S>, kind: &str) -> Value {
    loop {
        if let Message::Text(t) = next(ws).await {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] == kind {
                return v;
            }
        }
    }
}

/// Decodes a binary data message with rkyv (copying into an aligned buffer).
pub fn decode_binary(bytes: &[u8]) -> Vec<Tick> {
    let mut aligned = rkyv::util::AlignedVec::<8>::new();
    aligned.extend_from_slice(bytes);
    tickcast::wire::decode_message(&aligned)
        .expect("valid binary message")
        .1
}

/// One tick as the tests compare them, from either encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub symbol: String,
    pub seq: u64,
    pub kind: String,
    pub ts_event: u64,
    pub ts_recv: u64,
    pub flags: Vec<String>,
    pub count: u32,
    pub values: [i64; 4],
}

pub fn seen_from_json(v: &Value) -> Seen {
    let kind = v["kind"].as_str().unwrap().to_string();
    let names = if kind == "trade" {
        ["price", "size", "high", "low"]
    } else {
        ["bid_px", "bid_sz", "ask_px", "ask_sz"]
    };
    let values = names.map(|n| tickcast::fixed::parse(v[n].as_str().unwrap().as_bytes()).unwrap());
    Seen {
        symbol: v["symbol"].as_str().unwrap().to_string(),
        seq: v["seq"].as_u64().unwrap(),
        kind,
        ts_event: v["ts_event"].as_u64().unwrap(),
        ts_recv: v["ts_recv"].as_u64().unwrap(),
        flags: v["flags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap().to_string())
            .collect(),
        count: v["count"].as_u64().unwrap() as u32,
        values,
    }
}

pub fn seen_from_tick(t: &Tick, names: &HashMap<u32, String>) -> Seen {
    Seen {
        symbol: names[&t.symbol_id].clone(),
        seq: t.seq,
        kind: t.body.kind().name().to_string(),
        ts_event: t.ts_event,
        ts_recv: t.ts_recv,
        flags: tickcast::tick::Flags::NAMES
            .iter()
            .filter(|(f, _)| t.flags.contains(*f))
            .map(|(_, n)| n.to_string())
            .collect(),
        count: t.count,
        values: t.body.values(),
    }
}

/// Reads the next batch of ticks from a connection in either format, tracking the
/// id → name map from `symbols` messages. Control messages are returned separately.
pub async fn next_ticks<S: Stream>(
    ws: &mut WebSocketStream<S>,
    names: &mut HashMap<u32, String>,
) -> Result<Vec<Seen>, Value> {
    match next(ws).await {
        Message::Text(t) => {
            let v: Value = serde_json::from_str(&t).unwrap();
            if let Some(list) = v.as_array() {
                return Ok(list.iter().map(seen_from_json).collect());
            }
            if v["type"] == "symbols" {
                for s in v["symbols"].as_array().unwrap() {
                    names.insert(
                        s["id"].as_u64().unwrap() as u32,
                        s["name"].as_str().unwrap().into(),
                    );
                }
            }
            Err(v)
        }
        Message::Binary(b) => Ok(decode_binary(&b)
            .iter()
            .map(|t| seen_from_tick(t, names))
            .collect()),
        other => panic!("unexpected {other:?}"),
    }
}

/// A plain HTTP/1.1 GET; returns (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A child process that is killed when dropped, so that a failing test leaves no
/// server behind.
pub struct KillOnDrop(pub std::process::Child);

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Starts the real binary (two unpinned cores on port 0 unless `extra` says
/// otherwise); returns the child (killed when dropped) and its address.
pub fn spawn_binary(extra: &[&str]) -> (KillOnDrop, std::net::SocketAddr) {
    let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--no-pin"];
    if !extra.contains(&"--workers") {
        args.extend(["--workers", "2"]);
    }
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tickcast"))
        // mimalloc returns freed pages to the system at once rather than after its
        // purge delay, so the process's RSS follows the memory it really holds.
        .env("MIMALLOC_PURGE_DELAY", "0")
        .args(args)
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn tickcast");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("listening line")
        .parse()
        .unwrap();
    (KillOnDrop(child), addr)
}

/// `VmRSS` of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}
