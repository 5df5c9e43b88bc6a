//! The network side: WebSocket connections with the fastwebsockets client, the
//! subscriber and publisher loops, and a minimal HTTP GET for `/symbols` and `/stats`.
//!
//! Why fastwebsockets: it is what the server itself uses, so one WebSocket
//! implementation is exercised end to end; each frame's payload is split off its read
//! buffer without a copy, and frames are read directly, with no `Stream`/`Sink` layer
//! in between. Its client handshake runs on hyper (`fastwebsockets::handshake::client`).
//! It was not benchmarked against tokio-tungstenite here.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use fastwebsockets::{FragmentCollector, Frame, OpCode, Payload, WebSocketError};
use http_body_util::Empty;
use hyper::header::{CONNECTION, HOST, UPGRADE};
use hyper::upgrade::Upgraded;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tickcast::client::BookTracker;
use tickcast::tick::{Body, Flags, Kind, Tick};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::decode::{self, Control, Names, Text};
use crate::now_ns;
use crate::recorder::{Recorder, SeqTracker, Window};
use crate::schedule::Schedule;
use crate::settings::Format;

/// A `ws://host:port/path?query` URL (plain WebSocket only: loadgen talks to servers
/// on this machine or its own network).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsUrl {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl WsUrl {
    /// Parses `ws://host[:port][/path]`.
    pub fn parse(s: &str) -> anyhow::Result<WsUrl> {
        let rest = s
            .strip_prefix("ws://")
            .ok_or_else(|| anyhow!("URL {s:?} must start with ws://"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].to_string()),
            None => (rest, "/ws".to_string()),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h.to_string(),
                p.parse::<u16>()
                    .with_context(|| format!("invalid port in {s:?}"))?,
            ),
            _ => (authority.to_string(), 80),
        };
        if host.is_empty() {
            bail!("URL {s:?} has no host");
        }
        Ok(WsUrl { host, port, path })
    }

    /// `host:port`, for connecting.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The same server with another path.
    pub fn with_path(&self, path: &str) -> WsUrl {
        WsUrl {
            path: path.to_string(),
            ..self.clone()
        }
    }
}

impl std::fmt::Display for WsUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ws://{}:{}{}", self.host, self.port, self.path)
    }
}

/// Runs hyper's connection future for the handshake on the current runtime.
struct Spawner;

impl<Fut> hyper::rt::Executor<Fut> for Spawner
where
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    fn execute(&self, fut: Fut) {
        tokio::task::spawn(fut);
    }
}

/// A client WebSocket.
pub type Ws = fastwebsockets::WebSocket<TokioIo<Upgraded>>;

/// Opens a WebSocket to `url`, with extra request headers.
pub async fn connect(url: &WsUrl, headers: &[(&str, String)]) -> anyhow::Result<Ws> {
    let tcp = TcpStream::connect(url.authority())
        .await
        .with_context(|| format!("connect to {}", url.authority()))?;
    let _ = tcp.set_nodelay(true);
    let mut req = Request::builder()
        .method("GET")
        .uri(&url.path)
        .header(HOST, url.authority())
        .header(UPGRADE, "websocket")
        .header(CONNECTION, "upgrade")
        .header(
            "Sec-WebSocket-Key",
            fastwebsockets::handshake::generate_key(),
        )
        .header("Sec-WebSocket-Version", "13");
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let req = req.body(Empty::<Bytes>::new())?;
    let (ws, _) = fastwebsockets::handshake::client(&Spawner, req, tcp)
        .await
        .map_err(|e| anyhow!("WebSocket handshake with {url}: {e}"))?;
    Ok(ws)
}

/// A plain HTTP/1.1 GET of `path` on `authority`; returns (status, body). Bounded by
/// a 10 s timeout.
pub async fn http_get(authority: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let fut = async {
        let mut s = TcpStream::connect(authority).await?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        anyhow::Ok(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .map_err(|_| anyhow!("GET {path}: timed out"))??;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("GET {path}: no HTTP response"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("GET {path}: bad status line"))?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        bail!("GET {path}: chunked responses are not supported");
    }
    Ok((status, body.to_string()))
}

/// The measured window, shared by every thread; set once the connections are up.
#[derive(Debug)]
pub struct SharedWindow {
    from: AtomicU64,
    to: AtomicU64,
}

impl Default for SharedWindow {
    fn default() -> Self {
        SharedWindow {
            from: AtomicU64::new(u64::MAX),
            to: AtomicU64::new(u64::MAX),
        }
    }
}

impl SharedWindow {
    /// Sets the window.
    pub fn set(&self, w: Window) {
        self.to.store(w.to_ns, Relaxed);
        self.from.store(w.from_ns, Relaxed);
    }

    /// The window now.
    pub fn get(&self) -> Window {
        Window {
            from_ns: self.from.load(Relaxed),
            to_ns: self.to.load(Relaxed),
        }
    }
}

/// Counters every thread updates as it goes, read by the progress line and the drain.
#[derive(Debug, Default)]
pub struct Live {
    /// Records received.
    pub records: AtomicU64,
    /// Connections subscribed.
    pub connected: AtomicU64,
    /// Connections that failed.
    pub failed: AtomicU64,
    /// Connections subscribed that stopped reading on purpose.
    pub stalled: AtomicU64,
    /// The in-process server's cache: at the end, each connection's rebuilt books are
    /// compared with the server's (`None` for an external server).
    pub server_books: Option<Arc<tickcast::lvc::LastValueCache>>,
}

/// What one client thread shares among its connections.
#[derive(Debug)]
pub struct ThreadCtx {
    /// The thread's measurements.
    pub rec: RefCell<Recorder>,
    /// The measured window.
    pub window: Arc<SharedWindow>,
    /// Cross-thread counters.
    pub live: Arc<Live>,
    /// Becomes `true` when the run stops.
    pub stop: watch::Receiver<bool>,
}

/// One subscriber connection's plan.
#[derive(Debug, Clone)]
pub struct SubSpec {
    /// Endpoint.
    pub url: WsUrl,
    /// Symbol names, or empty for `["*"]`.
    pub symbols: Vec<String>,
    /// Encoding.
    pub format: Format,
    /// `max_rate`, 0 for none.
    pub max_rate: f64,
    /// `channels`, empty for the server's default.
    pub channels: Vec<String>,
    /// Never read after subscribing (a slow consumer); not measured.
    pub stalled: bool,
}

impl SubSpec {
    /// The subscribe control message.
    pub fn subscribe_message(&self) -> String {
        let symbols = if self.symbols.is_empty() {
            serde_json::json!(["*"])
        } else {
            serde_json::json!(self.symbols)
        };
        let mut m = serde_json::json!({"op": "subscribe", "symbols": symbols, "format": self.format.name()});
        if self.max_rate > 0.0 {
            m["max_rate"] = serde_json::json!(self.max_rate);
        }
        if !self.channels.is_empty() {
            m["channels"] = serde_json::json!(self.channels);
        }
        m.to_string()
    }
}

/// Handles one data or control frame. Returns `false` when the connection is over.
/// Applies the book records of a binary message to the connection's books (by the
/// server's symbol ids); a book change that does not follow its book's last one is
/// a book gap.
fn apply_books(books: &mut HashMap<u32, BookTracker>, payload: &[u8], gaps: &mut u64) {
    let Some(body) = payload.get(tickcast::wire::HEADER_SIZE..) else {
        return;
    };
    for r in body.chunks_exact(tickcast::wire::RECORD_SIZE) {
        if r[0] != Kind::Book as u8 {
            continue;
        }
        let at =
            |i: usize| i64::from_le_bytes(r[40 + 8 * i..48 + 8 * i].try_into().unwrap_or([0; 8]));
        let u32_at = |i: usize| u32::from_le_bytes(r[i..i + 4].try_into().unwrap_or([0; 4]));
        let u64_at = |i: usize| u64::from_le_bytes(r[i..i + 8].try_into().unwrap_or([0; 8]));
        let t = Tick {
            symbol_id: u32_at(4),
            seq: u64_at(8),
            ts_event: u64_at(16),
            ts_recv: u64_at(24),
            flags: Flags(r[1]),
            count: u32_at(32),
            body: Body::from_values(Kind::Book, [at(0), at(1), at(2), at(3)]),
        };
        if books.entry(t.symbol_id).or_default().on_record(&t).is_err() {
            *gaps += 1;
        }
    }
}

fn on_frame(
    ctx: &ThreadCtx,
    tracker: &mut SeqTracker,
    names: &mut Names,
    opcode: OpCode,
    payload: &[u8],
) -> (bool, Option<Control>) {
    let now = now_ns();
    let window = ctx.window.get();
    let mut rec = ctx.rec.borrow_mut();
    let rec = &mut *rec;
    match opcode {
        OpCode::Binary => {
            rec.on_message(payload.len(), now, window);
            if let Some(books) = tracker.books.as_mut() {
                apply_books(books, payload, &mut rec.counters.book_gaps);
            }
            match decode::binary(payload, |r| rec.on_record(tracker, r, now, window)) {
                Ok(n) => {
                    ctx.live.records.fetch_add(n as u64, Relaxed);
                }
                Err(_) => rec.counters.errors += 1,
            }
            (true, None)
        }
        OpCode::Text => {
            rec.on_message(payload.len(), now, window);
            match decode::text(payload, names, |r| rec.on_record(tracker, r, now, window)) {
                Ok(Text::Records(n)) => {
                    ctx.live.records.fetch_add(n as u64, Relaxed);
                    (true, None)
                }
                Ok(Text::Control(c)) => {
                    match &c {
                        Control::ConflationOn => {
                            tracker.conflating = true;
                            rec.counters.conflation_episodes += 1;
                        }
                        Control::ConflationOff => {
                            tracker.conflating = false;
                            tracker.settle_all(&mut rec.counters);
                        }
                        Control::Error(_) => rec.counters.errors += 1,
                        _ => {}
                    }
                    (true, Some(c))
                }
                Err(_) => {
                    rec.counters.errors += 1;
                    (true, None)
                }
            }
        }
        OpCode::Close => {
            rec.counters.closed_by_server += 1;
            (false, None)
        }
        _ => (true, None),
    }
}

/// Runs one subscriber: connect, subscribe, then record until the run stops or the
/// server closes. `deadline_ns` bounds the connect-and-subscribe phase; `permit`
/// (a slot of the thread's handshake limit) is released once subscribed.
pub async fn subscriber(
    ctx: Rc<ThreadCtx>,
    spec: SubSpec,
    deadline_ns: u64,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) {
    let mut stop = ctx.stop.clone();
    let mut tracker = SeqTracker::new(spec.max_rate > 0.0);
    if spec.channels.iter().any(|c| c == "book") && spec.format == Format::Binary {
        tracker.books = Some(HashMap::new());
    }
    let mut names = Names::default();
    let timeout = Duration::from_nanos(deadline_ns.saturating_sub(now_ns()));
    let opened = tokio::time::timeout(timeout, async {
        let ws = connect(&spec.url, &[]).await?;
        let mut ws = FragmentCollector::new(ws);
        ws.write_frame(Frame::text(Payload::Owned(
            spec.subscribe_message().into_bytes(),
        )))
        .await?;
        // Records can only follow the ack; anything before it is control.
        loop {
            let f = ws.read_frame().await?;
            let (open, control) = on_frame(&ctx, &mut tracker, &mut names, f.opcode, &f.payload);
            match control {
                Some(Control::Subscribed) => return anyhow::Ok(ws),
                Some(Control::Error(e)) => bail!("subscribe refused: {e}"),
                _ if !open => bail!("closed by the server while subscribing"),
                _ => {}
            }
        }
    })
    .await;
    drop(permit);
    let mut ws = match opened {
        Ok(Ok(ws)) if spec.stalled => {
            // Hold the socket without reading until the run ends: the server must
            // conflate or evict this one without slowing the others.
            ctx.rec.borrow_mut().counters.stalled += 1;
            ctx.live.stalled.fetch_add(1, Relaxed);
            let _ = stop.changed().await;
            drop(ws);
            return;
        }
        Ok(Ok(ws)) => {
            ctx.rec.borrow_mut().counters.connected += 1;
            ctx.live.connected.fetch_add(1, Relaxed);
            ws
        }
        Ok(Err(e)) => {
            fail(&ctx, &e.to_string());
            return;
        }
        Err(_) => {
            fail(&ctx, "connect and subscribe timed out");
            return;
        }
    };
    loop {
        if *stop.borrow() {
            break;
        }
        let frame = tokio::select! {
            biased;
            _ = stop.changed() => break,
            f = ws.read_frame() => f,
        };
        match frame {
            Ok(f) => {
                let (open, _) = on_frame(&ctx, &mut tracker, &mut names, f.opcode, &f.payload);
                if !open {
                    break;
                }
            }
            Err(WebSocketError::ConnectionClosed | WebSocketError::UnexpectedEOF) => {
                ctx.rec.borrow_mut().counters.closed_by_server += 1;
                break;
            }
            Err(_) => {
                ctx.rec.borrow_mut().counters.errors += 1;
                break;
            }
        }
    }
    let mut rec = ctx.rec.borrow_mut();
    tracker.settle_all(&mut rec.counters);
    // The feed stopped and what the server sent arrived: every rebuilt book must be
    // the server's.
    if let (Some(books), Some(cache)) = (&tracker.books, &ctx.live.server_books) {
        for (&id, b) in books {
            let server = cache.book(id);
            rec.counters.books_checked += 1;
            if b.seq() != server.seq
                || b.book().bids() != server.bids
                || b.book().asks() != server.asks
            {
                rec.counters.book_mismatches += 1;
            }
        }
    }
}

fn fail(ctx: &ThreadCtx, why: &str) {
    let mut rec = ctx.rec.borrow_mut();
    rec.counters.connect_failed += 1;
    rec.counters.errors += 1;
    if rec.counters.connect_failed <= 3 {
        eprintln!("loadgen: connection failed: {why}");
    }
    ctx.live.failed.fetch_add(1, Relaxed);
}

/// What the publisher does.
#[derive(Debug, Clone)]
pub struct PublishSpec {
    /// `/publish` endpoint (token in the query).
    pub url: WsUrl,
    /// Encoding of published ticks.
    pub format: Format,
    /// Ticks per second.
    pub rate: u64,
    /// Most ticks per message.
    pub batch: usize,
    /// Symbols to publish to, round robin: (name, server id).
    pub symbols: Vec<(String, u32)>,
    /// Intended time of the first tick, ns since the Unix epoch.
    pub start_ns: u64,
    /// Intended time after the last tick.
    pub end_ns: u64,
}

/// What the publisher did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishReport {
    /// Ticks sent.
    pub published: u64,
    /// Error messages received, or write failures.
    pub errors: u64,
    /// The first error, for the report.
    pub first_error: Option<String>,
}

/// Appends tick `i` (intended at `ts`) in `format`.
fn encode_tick(format: Format, i: u64, ts: u64, sym: &(String, u32), out: &mut Vec<u8>) {
    // A deterministic walk: a third trades, the rest quotes, prices near 100.
    let cents = 10_000 + (i % 97) as i64;
    let price = cents * 1_000_000; // fixed point 1e-8
    let trade = i % 3 == 0;
    match format {
        Format::Json => {
            if out.len() > 1 {
                out.push(b',');
            }
            let px = format!("{}.{:02}", cents / 100, cents % 100);
            if trade {
                out.extend_from_slice(
                    format!(
                        r#"{{"symbol":"{}","kind":"trade","ts_event":{},"price":"{px}","size":"1"}}"#,
                        sym.0, ts
                    )
                    .as_bytes(),
                );
            } else {
                let ask = cents + 1;
                out.extend_from_slice(
                    format!(
                        r#"{{"symbol":"{}","kind":"quote","ts_event":{},"bid_px":"{px}","bid_sz":"5","ask_px":"{}.{:02}","ask_sz":"7"}}"#,
                        sym.0,
                        ts,
                        ask / 100,
                        ask % 100
                    )
                    .as_bytes(),
                );
            }
        }
        Format::Binary => {
            let mut r = [0u8; decode::RECORD_SIZE];
            r[0] = if trade { 1 } else { 2 };
            r[4..8].copy_from_slice(&sym.1.to_le_bytes());
            r[16..24].copy_from_slice(&ts.to_le_bytes());
            let v: [i64; 4] = if trade {
                [price, 100_000_000, price, price]
            } else {
                [price, 500_000_000, price + 1_000_000, 700_000_000]
            };
            for (k, x) in v.iter().enumerate() {
                r[40 + 8 * k..48 + 8 * k].copy_from_slice(&x.to_le_bytes());
            }
            out.extend_from_slice(&r);
        }
    }
}

/// Starts a message of `format`.
fn begin(format: Format, out: &mut Vec<u8>) {
    out.clear();
    match format {
        Format::Json => out.push(b'['),
        Format::Binary => out.extend_from_slice(&[0u8; decode::HEADER_SIZE]),
    }
}

/// Finishes a message of `format` holding `n` ticks.
fn finish(format: Format, n: usize, out: &mut Vec<u8>) {
    match format {
        Format::Json => out.push(b']'),
        Format::Binary => {
            out[0..2].copy_from_slice(&1u16.to_le_bytes());
            out[2..4].copy_from_slice(&(decode::RECORD_SIZE as u16).to_le_bytes());
            out[4..8].copy_from_slice(&(n as u32).to_le_bytes());
        }
    }
}

/// Publishes on a fixed schedule until `end_ns` (or `stop`), stamping every tick with
/// its intended send time. Meant to run alone on its own thread: short waits sleep
/// the thread for precision, so a backlog is found and sent at once.
pub async fn publisher(spec: PublishSpec, stop: Arc<AtomicBool>) -> PublishReport {
    let mut report = PublishReport::default();
    if spec.symbols.is_empty() {
        report.errors += 1;
        report.first_error = Some("no symbols to publish to".into());
        return report;
    }
    let ws = match connect(&spec.url, &[]).await {
        Ok(ws) => ws,
        Err(e) => {
            report.errors += 1;
            report.first_error = Some(e.to_string());
            return report;
        }
    };
    let (mut rx, mut tx) = ws.split(tokio::io::split);
    let errors = Rc::new(RefCell::new((0u64, None::<String>)));
    let reader_errors = errors.clone();
    // The server answers only bad messages; count what it says.
    let reader = tokio::task::spawn_local(async move {
        let mut ignore = |_: Frame<'_>| async { Ok::<(), std::convert::Infallible>(()) };
        for _ in 0..u32::MAX {
            match rx.read_frame(&mut ignore).await {
                Ok(f) if f.opcode == OpCode::Text => {
                    let mut e = reader_errors.borrow_mut();
                    e.0 += 1;
                    if e.1.is_none() {
                        e.1 = Some(String::from_utf8_lossy(&f.payload).into_owned());
                    }
                }
                Ok(f) if f.opcode == OpCode::Close => {
                    // 1000 answers our own close at the end; anything else is the
                    // server ending the publisher (1009, 1013, 1001, …).
                    let code = (f.payload.len() >= 2)
                        .then(|| u16::from_be_bytes([f.payload[0], f.payload[1]]));
                    if code != Some(1000) {
                        let mut e = reader_errors.borrow_mut();
                        e.0 += 1;
                        let reason =
                            String::from_utf8_lossy(f.payload.get(2..).unwrap_or(&[])).into_owned();
                        e.1.get_or_insert_with(|| {
                            format!("the server closed the publish connection: {code:?} {reason}")
                        });
                    }
                    return;
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    let limit = (u128::from(spec.end_ns.saturating_sub(spec.start_ns)) * u128::from(spec.rate)
        / 1_000_000_000) as u64;
    let mut sched = Schedule::new(spec.start_ns, spec.rate, limit);
    let mut buf = Vec::with_capacity(spec.batch * 160 + 32);
    // Bounded: every pass either takes due ticks (at most `limit` in all) or waits
    // for the next one (at most until `end_ns`); the count bound is a backstop.
    for _ in 0..limit.saturating_mul(4).saturating_add(1_000_000) {
        if stop.load(Relaxed) {
            break;
        }
        let now = now_ns();
        let due = sched.take_due(now, spec.batch);
        if !due.is_empty() {
            begin(spec.format, &mut buf);
            let n = (due.end - due.start) as usize;
            for i in due {
                let sym = &spec.symbols[(i % spec.symbols.len() as u64) as usize];
                encode_tick(spec.format, i, sched.intended(i), sym, &mut buf);
            }
            finish(spec.format, n, &mut buf);
            let frame = match spec.format {
                Format::Json => Frame::text(Payload::Borrowed(&buf)),
                Format::Binary => Frame::binary(Payload::Borrowed(&buf)),
            };
            if let Err(e) = tx.write_frame(frame).await {
                report.errors += 1;
                report
                    .first_error
                    .get_or_insert_with(|| format!("publish write failed: {e}"));
                break;
            }
            report.published += n as u64;
            continue;
        }
        let Some(next) = sched.next_due() else { break };
        let wait = Duration::from_nanos(next.saturating_sub(now));
        if wait > Duration::from_millis(2) {
            // Long waits let the reader run; tokio's timer is coarse, so wake early.
            tokio::time::sleep(wait - Duration::from_millis(1)).await;
        } else if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
    let _ = tx.write_frame(Frame::close(1000, b"")).await;
    // Give error replies to the last messages a moment to arrive.
    let _ = tokio::time::timeout(Duration::from_millis(200), reader).await;
    let (errs, first) = errors.borrow().clone();
    report.errors += errs;
    if report.first_error.is_none() {
        report.first_error = first;
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ws_urls() {
        let u = WsUrl::parse("ws://127.0.0.1:9001/ws").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 9001, "/ws")
        );
        assert_eq!(
            u.with_path("/publish?token=x").to_string(),
            "ws://127.0.0.1:9001/publish?token=x"
        );
        let u = WsUrl::parse("ws://localhost").unwrap();
        assert_eq!((u.port, u.path.as_str()), (80, "/ws"));
        assert!(WsUrl::parse("http://x").is_err());
        assert!(WsUrl::parse("ws://x:notaport/").is_err());
        assert!(WsUrl::parse("ws://:1/").is_err());
    }

    #[test]
    fn published_messages_decode_on_the_server() {
        let symbols = tickcast::symbol::SymbolTable::new(4);
        symbols
            .intern(tickcast::symbol::Symbol::new("SYM0").unwrap())
            .unwrap();
        let sym = ("SYM0".to_string(), 0u32);
        let mut dec = tickcast::publish::Decoder::new();
        let mut out = Vec::new();
        for format in [Format::Json, Format::Binary] {
            let mut buf = Vec::new();
            begin(format, &mut buf);
            for i in 0..3 {
                encode_tick(format, i, 1_000 + i, &sym, &mut buf);
            }
            finish(format, 3, &mut buf);
            match format {
                Format::Json => dec.decode_text(&buf, 0, &mut out).unwrap(),
                Format::Binary => dec.decode_binary(&buf, &symbols, 0, &mut out).unwrap(),
            }
            assert_eq!(out.len(), 3, "{format}");
            assert_eq!(out[2].ts_event, 1_002);
            assert_eq!(out[0].body.kind(), tickcast::tick::Kind::Trade);
            assert_eq!(out[1].body.kind(), tickcast::tick::Kind::Quote);
        }
    }
}
