//! The exchange feed: a WebSocket client of a venue's public market-data stream.
//!
//! One thread per feed runs its own current-thread tokio runtime. A session connects
//! through [`crate::wsclient`] (TCP, then TLS with rustls and the webpki roots for
//! `wss://`, then the WebSocket handshake with fastwebsockets over a hyper client
//! connection), sends the venue's subscribe message and normalizes every message
//! that comes back. Pings are answered here rather than by fastwebsockets' auto-pong,
//! so that a ping counts as a sign of life. A session ends when the venue closes, the connection fails, or
//! nothing at all (not even a ping) arrives for `heartbeat_timeout_ms`; the feed then
//! waits an exponential backoff with jitter ([`Backoff`]) and connects again, sending
//! the subscription again. Trade-id gaps (trades lost while reconnecting, or dropped
//! by the venue) are counted in [`super::FeedStatus::gaps`].
//!
//! Backpressure: a tick is handed to the sequencer with [`FeedContext::send`], which
//! blocks this feed's thread while the channel is full. The socket is then not read,
//! so TCP flow control pushes back on the venue; nothing is dropped here.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fastwebsockets::{Frame, OpCode, Payload, WebSocketError};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio_rustls::TlsConnector;

use super::normalize::{MessageKind, Normalizer, Venue, DEFAULT_MAX_MESSAGE_BYTES};
use super::{binance, coinbase, FeedContext};
use crate::clock::now_ns;
use crate::wsclient::{self, rest, ConnectError, Target};

/// Settings of an exchange feed (`kind = "binance"` or `kind = "coinbase"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExchangeConfig {
    /// WebSocket URL, `wss://` or `ws://`. Default: the venue's public endpoint
    /// ([`binance::DEFAULT_URL`], [`coinbase::DEFAULT_URL`]).
    pub url: Option<String>,
    /// The venue's names of the instruments to subscribe (`BTCUSDT`, `BTC-USD`).
    /// Default: empty, meaning the venue's `DEFAULT_SYMBOLS`.
    pub symbols: Vec<String>,
    /// Prefix of tickcast symbols; `None` uses the venue's (`BINANCE`, `COINBASE`),
    /// `""` none. Default: `None`.
    pub symbol_prefix: Option<String>,
    /// A session that receives nothing (no message, no ping) for this long is
    /// dropped and reconnected, in ms. Default: 30,000.
    pub heartbeat_timeout_ms: u64,
    /// Longest wait for TCP, TLS and the WebSocket handshake together, in ms.
    /// Default: 10,000.
    pub connect_timeout_ms: u64,
    /// First reconnect delay, in ms; it doubles on every failed attempt. Default: 250.
    pub backoff_initial_ms: u64,
    /// Largest reconnect delay, in ms. Default: 30,000.
    pub backoff_max_ms: u64,
    /// Largest venue message normalized, in bytes; larger ones are counted as parse
    /// errors and skipped. Default: 65,536. (WebSocket messages over 16 MiB end the
    /// session.)
    pub max_message_bytes: usize,
    /// Extra trusted root certificates (PEM) for `wss://`, besides the webpki roots:
    /// for a private CA or a test server. Default: none.
    pub ca_file: Option<PathBuf>,
    /// Carry the venue's order books too: Binance's `<symbol>@depth@100ms` diff
    /// depth joined to REST snapshots, Coinbase's `level2_batch`. Default: false.
    pub book: bool,
    /// Binance only: the REST base URL the depth snapshots are fetched from
    /// (`GET {depth_url}/api/v3/depth?symbol=…&limit=…`), `https://` or `http://`.
    /// Default: [`binance::DEFAULT_REST_URL`].
    pub depth_url: Option<String>,
    /// Binance only: levels per side of a depth snapshot (`limit`: 5, 10, 20, 50,
    /// 100, 500, 1000 or 5000). Default: 100.
    pub depth_limit: u32,
    /// With `book`, the largest book snapshot accepted, in bytes: a venue's whole book
    /// (Coinbase sends every level) is far larger than `max_message_bytes`. Without
    /// `book` every message keeps `max_message_bytes`. Default: 16 MiB.
    pub max_snapshot_bytes: usize,
}

impl Default for ExchangeConfig {
    fn default() -> Self {
        ExchangeConfig {
            url: None,
            symbols: Vec::new(),
            symbol_prefix: None,
            heartbeat_timeout_ms: 30_000,
            connect_timeout_ms: 10_000,
            backoff_initial_ms: 250,
            backoff_max_ms: 30_000,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            ca_file: None,
            book: false,
            depth_url: None,
            depth_limit: 100,
            max_snapshot_bytes: MAX_FRAME_BYTES,
        }
    }
}

/// The `limit` values Binance's depth endpoint takes.
pub const DEPTH_LIMITS: [u32; 8] = [5, 10, 20, 50, 100, 500, 1_000, 5_000];

/// The User-Agent of the handshake.
const USER_AGENT: &str = concat!("tickcast/", env!("CARGO_PKG_VERSION"));

/// Largest WebSocket message read; one larger ends the session (fastwebsockets
/// cannot skip it). Messages between `max_message_bytes` and this are skipped.
const MAX_FRAME_BYTES: usize = 16 << 20;

impl ExchangeConfig {
    /// The URL to connect to.
    pub fn url_for(&self, venue: Venue) -> &str {
        self.url.as_deref().unwrap_or(match venue {
            Venue::Binance => binance::DEFAULT_URL,
            Venue::Coinbase => coinbase::DEFAULT_URL,
        })
    }

    /// The venue symbols to subscribe.
    pub fn symbols_for(&self, venue: Venue) -> Vec<String> {
        if !self.symbols.is_empty() {
            return self.symbols.clone();
        }
        let defaults: &[&str] = match venue {
            Venue::Binance => &binance::DEFAULT_SYMBOLS,
            Venue::Coinbase => &coinbase::DEFAULT_SYMBOLS,
        };
        defaults.iter().map(|s| s.to_string()).collect()
    }

    /// The exact subscribe message sent after every connect.
    pub fn subscribe_message(&self, venue: Venue) -> String {
        let symbols = self.symbols_for(venue);
        match venue {
            Venue::Binance => binance::subscribe_message_with(&symbols, self.book),
            Venue::Coinbase => coinbase::subscribe_message_with(&symbols, self.book),
        }
    }

    /// The REST URL of `symbol`'s depth snapshot (Binance).
    pub fn depth_snapshot_url(&self, symbol: &str) -> String {
        let base = self
            .depth_url
            .as_deref()
            .unwrap_or(binance::DEFAULT_REST_URL)
            .trim_end_matches('/');
        format!(
            "{base}/api/v3/depth?symbol={}&limit={}",
            symbol.to_ascii_uppercase(),
            self.depth_limit
        )
    }
}

/// Reconnect delays: exponential, capped, with "equal jitter" (half the delay fixed,
/// half random), so that many clients dropped at once do not reconnect in step.
/// See <https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/>.
#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    /// Failed attempts since the last success.
    attempt: u32,
    rng: SmallRng,
}

impl Backoff {
    /// Delays from `initial` doubling up to `max`, jittered by a generator seeded
    /// with `seed`.
    pub fn new(initial: Duration, max: Duration, seed: u64) -> Backoff {
        Backoff {
            initial: initial.max(Duration::from_millis(1)),
            max: max.max(initial),
            attempt: 0,
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let factor = 1u32 << self.attempt.min(20);
        let cap = self.initial.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = cap / 2;
        half + half.mul_f64(self.rng.random::<f64>())
    }

    /// Back to the initial delay, after a session that worked.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Why a session ended or could not start.
#[derive(Debug, Error)]
pub enum ExchangeError {
    /// The URL is not a `ws://` or `wss://` URL with a host.
    #[error("invalid url {0:?}: expected ws://host[:port]/path or wss://…")]
    Url(String),
    /// TCP connect failed.
    #[error("connect failed: {0}")]
    Connect(std::io::Error),
    /// The TLS client could not be set up or the TLS handshake failed.
    #[error("tls: {0}")]
    Tls(String),
    /// Connecting took longer than `connect_timeout_ms`.
    #[error("connect timed out")]
    ConnectTimeout,
    /// The WebSocket handshake or connection failed.
    #[error("websocket: {0}")]
    WebSocket(#[from] WebSocketError),
    /// Nothing arrived for `heartbeat_timeout_ms`.
    #[error("no message or ping for {0} ms")]
    Silent(u64),
    /// The venue closed the connection.
    #[error("closed by the venue")]
    Closed,
    /// A continuation frame without a message to continue, or a fragmented message
    /// over the WebSocket size limit.
    #[error("websocket protocol error: {0}")]
    Protocol(&'static str),
}

impl From<ConnectError> for ExchangeError {
    fn from(e: ConnectError) -> Self {
        match e {
            ConnectError::Url(url) => ExchangeError::Url(url),
            ConnectError::Connect(e) => ExchangeError::Connect(e),
            ConnectError::Tls(e) => ExchangeError::Tls(e),
            ConnectError::WebSocket(e) => ExchangeError::WebSocket(e),
        }
    }
}

/// How a session ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The server is shutting down, or the sequencer is gone.
    Stop,
}

/// A configured time in ms as a `Duration` between 1 ms and a year, so that adding it
/// to an `Instant` cannot overflow.
fn bounded_ms(ms: u64) -> Duration {
    Duration::from_millis(ms.clamp(1, 365 * 24 * 3_600 * 1_000))
}

/// Resolves once the server asks feeds to stop (checked every 50 ms).
async fn stopping(ctx: &FeedContext) {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tick.tick().await;
        if ctx.is_shutdown() {
            return;
        }
    }
}

/// The state that lives across sessions.
struct Client<'a> {
    venue: Venue,
    cfg: &'a ExchangeConfig,
    ctx: &'a FeedContext,
    target: Target,
    tls: Option<TlsConnector>,
    subscribe: String,
    normalizer: Normalizer,
    /// Reassembly of a fragmented message.
    fragments: Vec<u8>,
    /// Depth snapshots to fetch (Binance books): venue symbol and when.
    snapshots: Vec<(String, tokio::time::Instant)>,
    /// TLS for an `https://` depth URL.
    rest_tls: Option<TlsConnector>,
}

impl Client<'_> {
    /// One connection: connect, subscribe, read until it ends.
    async fn session(&mut self, delivered: &mut bool) -> Result<End, ExchangeError> {
        let connect_timeout = bounded_ms(self.cfg.connect_timeout_ms);
        let connect = wsclient::connect(&self.target, self.tls.as_ref(), USER_AGENT, None);
        let mut ws = tokio::time::timeout(connect_timeout, connect)
            .await
            .map_err(|_| ExchangeError::ConnectTimeout)??;
        ws.set_auto_pong(false);
        ws.set_auto_close(true);
        ws.set_max_message_size(crate::wsclient::inclusive_limit(MAX_FRAME_BYTES));
        ws.write_frame(Frame::text(Payload::Borrowed(self.subscribe.as_bytes())))
            .await?;
        ws.flush().await?;
        let status = &self.ctx.status;
        status.set_connected();
        tracing::info!(feed = %status.name, url = %self.cfg.url_for(self.venue), "connected and subscribed");

        let silence = bounded_ms(self.cfg.heartbeat_timeout_ms);
        let deadline = tokio::time::sleep(silence);
        tokio::pin!(deadline);
        let mut in_fragment = false;
        loop {
            // Dropping a half-read frame on silence is fine: the connection is
            // abandoned. (Shutdown drops the whole session future, in `run_async`.)
            let frame = tokio::select! {
                biased;
                () = &mut deadline => return Err(ExchangeError::Silent(self.cfg.heartbeat_timeout_ms)),
                frame = ws.read_frame() => frame?,
            };
            deadline
                .as_mut()
                .reset(tokio::time::Instant::now() + silence);
            match frame.opcode {
                OpCode::Text | OpCode::Binary if frame.fin => {
                    *delivered = true;
                    if self.handle(&frame.payload).is_err() {
                        return Ok(End::Stop);
                    }
                    if self.fetch_snapshots().await.is_err() {
                        return Ok(End::Stop);
                    }
                }
                OpCode::Text | OpCode::Binary => {
                    in_fragment = true;
                    self.fragments.clear();
                    self.fragments.extend_from_slice(&frame.payload);
                }
                OpCode::Continuation => {
                    if !in_fragment {
                        return Err(ExchangeError::Protocol("continuation without a message"));
                    }
                    if self.fragments.len() + frame.payload.len() > MAX_FRAME_BYTES {
                        return Err(ExchangeError::Protocol("fragmented message too large"));
                    }
                    self.fragments.extend_from_slice(&frame.payload);
                    if frame.fin {
                        in_fragment = false;
                        *delivered = true;
                        let message = std::mem::take(&mut self.fragments);
                        let sent = self.handle(&message);
                        self.fragments = message;
                        if sent.is_err() || self.fetch_snapshots().await.is_err() {
                            return Ok(End::Stop);
                        }
                    }
                }
                OpCode::Ping => {
                    let payload = frame.payload.to_vec();
                    ws.write_frame(Frame::pong(Payload::Owned(payload))).await?;
                    ws.flush().await?;
                }
                OpCode::Pong => {}
                OpCode::Close => return Err(ExchangeError::Closed),
            }
        }
    }

    /// Normalizes one message and sends its tick; `Err` when the feed must stop.
    fn handle(&mut self, message: &[u8]) -> Result<(), super::SendError> {
        let status = &self.ctx.status;
        let now = now_ns();
        status.messages.fetch_add(1, Ordering::Relaxed);
        status.last_message_ns.store(now, Ordering::Relaxed);
        match self.normalizer.normalize(message, now) {
            Ok(out) => {
                if let Some(gap) = out.gap {
                    status.gaps.fetch_add(1, Ordering::Relaxed);
                    let what = if out.kind == MessageKind::Book {
                        "book update id gap: fetching a snapshot"
                    } else {
                        "trade id gap"
                    };
                    tracing::warn!(feed = %status.name, symbol = %gap.symbol, expected = gap.expected, missed = gap.missed(), "{what}");
                }
                if let Some(tick) = out.tick {
                    self.ctx.send(tick)?;
                }
                let changes = self.normalizer.book_changes();
                if !changes.is_empty() {
                    self.ctx.send_burst(changes)?;
                }
            }
            Err(e) => {
                let n = status.parse_errors.fetch_add(1, Ordering::Relaxed) + 1;
                super::log_parse_error(&status.name, n, &e);
            }
        }
        Ok(())
    }
}

impl Client<'_> {
    /// Fetches the depth snapshots the normalizer asked for (Binance books) and
    /// normalizes each as a `<symbol>@depth@snapshot` message. The WebSocket is not
    /// read meanwhile: its events wait in the socket, and the join takes them after
    /// the snapshot as it would have taken them from its buffer. A failed fetch is
    /// logged and tried again a second later (at the symbol's next event). `Err` when
    /// the feed must stop.
    async fn fetch_snapshots(&mut self) -> Result<(), super::SendError> {
        let now = tokio::time::Instant::now();
        for symbol in self.normalizer.take_snapshot_requests() {
            self.snapshots.push((symbol, now));
        }
        let mut i = 0;
        while i < self.snapshots.len() {
            if self.snapshots[i].1 > now {
                i += 1;
                continue;
            }
            let (symbol, _) = self.snapshots.swap_remove(i);
            let url = self.cfg.depth_snapshot_url(&symbol);
            let timeout = bounded_ms(self.cfg.connect_timeout_ms);
            let limit = self.cfg.max_snapshot_bytes;
            let fetched = tokio::time::timeout(
                timeout,
                rest::get(&url, self.rest_tls.as_ref(), USER_AGENT, limit),
            )
            .await
            .unwrap_or_else(|_| Err(format!("no answer in {} ms", timeout.as_millis())));
            match fetched {
                Ok(body) => {
                    let mut message = Vec::with_capacity(body.len() + 64);
                    message.extend_from_slice(b"{\"stream\":");
                    let stream = format!("{}@depth@snapshot", symbol.to_ascii_lowercase());
                    message.extend_from_slice(
                        serde_json::Value::String(stream).to_string().as_bytes(),
                    );
                    message.extend_from_slice(b",\"data\":");
                    message.extend_from_slice(&body);
                    message.push(b'}');
                    tracing::info!(feed = %self.ctx.status.name, %symbol, bytes = body.len(), "depth snapshot fetched");
                    self.handle(&message)?;
                    // A snapshot that could not be joined asks for another.
                    for again in self.normalizer.take_snapshot_requests() {
                        self.snapshots
                            .push((again, now + std::time::Duration::from_millis(250)));
                    }
                }
                Err(e) => {
                    tracing::warn!(feed = %self.ctx.status.name, %symbol, %url, error = %e, "depth snapshot not fetched; trying again in 1 s");
                    self.snapshots
                        .push((symbol, now + std::time::Duration::from_secs(1)));
                }
            }
        }
        Ok(())
    }
}

/// Runs the feed until shutdown (or until the sequencer stops).
pub fn run(venue: Venue, cfg: &ExchangeConfig, ctx: &FeedContext) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(feed = %ctx.status.name, error = %e, "cannot start the feed's runtime");
            return;
        }
    };
    runtime.block_on(run_async(venue, cfg, ctx));
    ctx.status.set_disconnected(now_ns());
}

async fn run_async(venue: Venue, cfg: &ExchangeConfig, ctx: &FeedContext) {
    let name = &ctx.status.name;
    let url = cfg.url_for(venue);
    let target = match Target::parse(url) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(feed = %name, error = %e, "exchange feed not started");
            return;
        }
    };
    let tls = if target.tls {
        match wsclient::tls_connector(cfg.ca_file.as_deref()) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(feed = %name, error = %e, "exchange feed not started");
                return;
            }
        }
    } else {
        None
    };
    let prefix = cfg
        .symbol_prefix
        .as_deref()
        .unwrap_or(venue.default_prefix());
    let rest_tls = match cfg.depth_url.as_deref() {
        Some(url) if !url.starts_with("https://") => None,
        _ if !(cfg.book && venue == Venue::Binance) => None,
        _ => match wsclient::tls_connector(cfg.ca_file.as_deref()) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(feed = %name, error = %e, "exchange feed not started");
                return;
            }
        },
    };
    let mut normalizer = Normalizer::new(venue, prefix, cfg.max_message_bytes);
    // Without books no message may pass `max_message_bytes`: a larger one is refused
    // before it is parsed, as it always was.
    if cfg.book {
        normalizer.set_max_snapshot_bytes(cfg.max_snapshot_bytes);
    }
    let mut client = Client {
        venue,
        cfg,
        ctx,
        target,
        tls,
        subscribe: cfg.subscribe_message(venue),
        normalizer,
        fragments: Vec::new(),
        snapshots: Vec::new(),
        rest_tls,
    };
    let mut backoff = Backoff::new(
        Duration::from_millis(cfg.backoff_initial_ms),
        Duration::from_millis(cfg.backoff_max_ms),
        now_ns(),
    );
    let mut sessions: u64 = 0;
    while !ctx.is_shutdown() {
        let mut delivered = false;
        if sessions > 0 {
            ctx.status.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        sessions += 1;
        // Shutdown interrupts a session anywhere: connecting, handshaking or reading.
        let result = tokio::select! {
            r = client.session(&mut delivered) => r,
            () = stopping(ctx) => Ok(End::Stop),
        };
        ctx.status.set_disconnected(now_ns());
        match result {
            Ok(End::Stop) => break,
            Err(e) => {
                tracing::warn!(feed = %name, error = %e, "exchange session ended")
            }
        }
        if delivered {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        tracing::info!(feed = %name, delay_ms = delay.as_millis() as u64, "reconnecting");
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stopping(ctx) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_jitters_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1_000), 7);
        let caps = [100u64, 200, 400, 800, 1_000, 1_000, 1_000];
        for cap in caps {
            let d = b.next_delay().as_millis() as u64;
            assert!(
                (cap / 2..=cap).contains(&d),
                "{d} not in [{}, {cap}]",
                cap / 2
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
        let mut again = Backoff::new(Duration::from_millis(100), Duration::from_millis(1_000), 7);
        let mut other = Backoff::new(Duration::from_millis(100), Duration::from_millis(1_000), 8);
        let a: Vec<_> = (0..8).map(|_| again.next_delay()).collect();
        let o: Vec<_> = (0..8).map(|_| other.next_delay()).collect();
        assert_ne!(a, o, "another seed jitters differently");
    }

    #[test]
    fn defaults_per_venue() {
        let c = ExchangeConfig::default();
        assert_eq!(c.url_for(Venue::Coinbase), coinbase::DEFAULT_URL);
        assert_eq!(c.symbols_for(Venue::Binance), ["BTCUSDT", "ETHUSDT"]);
        assert!(c.subscribe_message(Venue::Coinbase).contains("\"BTC-USD\""));
    }
}
