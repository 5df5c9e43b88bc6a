//! Feed adapters: everything that turns a source of market data into [`FeedTick`]s.
//!
//! Every adapter runs on its own thread (or its own runtime) and sends into the
//! sequencer's bounded channel ([`FeedContext::tx`]). When the channel is full the
//! adapter blocks: ticks are never dropped between a feed and the sequencer, and a
//! feed that falls behind shows up as latency, because `ts_event` is the source's time.
//!
//! Adapters:
//! - [`synthetic`]: a seeded random walk, the built-in default.
//! - [`replay`]: plays a recorded capture of venue messages (`feeds/`) at its
//!   recorded pace, faster, or as fast as possible.
//! - [`exchange`]: a WebSocket client of a venue's live stream, with reconnects.
//!
//! Venue messages become ticks in the sans-IO [`normalize`] layer, one file per venue
//! ([`binance`], [`coinbase`]), shared by replay, the live clients and the benches.

pub mod binance;
pub mod coinbase;
pub mod depth_sync;
pub mod exchange;
pub mod normalize;
pub mod replay;
pub mod synthetic;
pub mod venue_book;

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvError, SendTimeoutError, Sender, TrySendError};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::symbol::{Symbol, SymbolTable};
use crate::tick::Body;

/// A tick as a feed produces it: not yet interned, sequenced or stamped on receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedTick {
    /// Symbol name, possibly namespaced by venue (`BINANCE:BTCUSDT`).
    pub symbol: Symbol,
    /// Event time at the source, ns since the Unix epoch.
    pub ts_event: u64,
    /// Trade or quote values.
    pub body: Body,
}

/// The `(side, price, size)` of each of `ticks`, which must all be book changes.
#[cfg(test)]
pub(crate) fn book_levels(ticks: &[FeedTick]) -> Vec<(crate::book::Side, i64, i64)> {
    ticks
        .iter()
        .map(|t| {
            t.body
                .level()
                .unwrap_or_else(|| panic!("not a book change: {t:?}"))
        })
        .collect()
}

/// Which feed to run; one entry of the config's `feeds` list, or one `--feed` flag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FeedSpec {
    /// The built-in random-walk generator.
    Synthetic(synthetic::SyntheticConfig),
    /// A recorded capture played back.
    Replay(replay::ReplayConfig),
    /// Binance spot market streams over WebSocket.
    Binance(exchange::ExchangeConfig),
    /// The Coinbase Exchange WebSocket feed.
    Coinbase(exchange::ExchangeConfig),
}

impl Default for FeedSpec {
    fn default() -> Self {
        FeedSpec::Synthetic(synthetic::SyntheticConfig::default())
    }
}

impl FeedSpec {
    /// Checks the values serde cannot (a positive rate, a finite speed, …); the
    /// message names the setting.
    pub fn validate(&self) -> Result<(), String> {
        let at_least = |name: &str, v: u64, min: u64| {
            if v < min {
                Err(format!("{name} must be at least {min} (got {v})"))
            } else {
                Ok(())
            }
        };
        match self {
            FeedSpec::Synthetic(c) => {
                at_least("symbols", c.symbols as u64, 1)?;
                at_least("rate", c.rate, 1)?;
                if !(0.0..=1.0).contains(&c.trade_ratio) {
                    return Err(format!(
                        "trade_ratio must be between 0 and 1 (got {})",
                        c.trade_ratio
                    ));
                }
            }
            FeedSpec::Replay(c) => {
                if !c.speed.is_finite() || c.speed < 0.0 {
                    return Err(format!(
                        "speed must be 0 (as fast as possible) or more (got {})",
                        c.speed
                    ));
                }
                at_least("max_message_bytes", c.max_message_bytes as u64, 256)?;
            }
            FeedSpec::Binance(c) | FeedSpec::Coinbase(c) => {
                at_least("heartbeat_timeout_ms", c.heartbeat_timeout_ms, 1)?;
                at_least("connect_timeout_ms", c.connect_timeout_ms, 1)?;
                at_least("backoff_initial_ms", c.backoff_initial_ms, 1)?;
                at_least("backoff_max_ms", c.backoff_max_ms, c.backoff_initial_ms)?;
                at_least("max_message_bytes", c.max_message_bytes as u64, 256)?;
                at_least(
                    "max_snapshot_bytes",
                    c.max_snapshot_bytes as u64,
                    c.max_message_bytes as u64,
                )?;
                if !exchange::DEPTH_LIMITS.contains(&c.depth_limit) {
                    return Err(format!(
                        "depth_limit must be one of {:?} (got {})",
                        exchange::DEPTH_LIMITS,
                        c.depth_limit
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Why a feed cannot start at all: the server refuses to start rather than run
/// without it.
#[derive(Debug, Error)]
pub enum FeedError {
    /// The replay's capture cannot be opened or read.
    #[error("feed {feed}: cannot read {path}: {source}")]
    Unreadable {
        /// The feed's name.
        feed: String,
        /// The capture's path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The replay's directory holds no tickcast capture (`*.tcrec`).
    #[error("feed {feed}: no .tcrec capture in the directory {path}")]
    NoCaptures {
        /// The feed's name.
        feed: String,
        /// The directory.
        path: PathBuf,
    },
    /// The replay's capture is in no format the feed knows.
    #[error("feed {feed}: cannot tell the venue of {path}; set `venue` in its [[feeds]] entry")]
    UnknownVenue {
        /// The feed's name.
        feed: String,
        /// The capture's path.
        path: PathBuf,
    },
    /// An exchange feed's URL or TLS settings cannot be used.
    #[error("feed {feed}: {source}")]
    Connect {
        /// The feed's name.
        feed: String,
        /// What is wrong with the URL or the CA file.
        source: crate::wsclient::ConnectError,
    },
}

/// Checks that `spec` can start: its capture opens and its format is known, its URL
/// parses and its CA file loads. Reaching the exchange is not checked (a feed keeps
/// reconnecting; `/readyz` says when it has not delivered).
pub fn check(spec: &FeedSpec) -> Result<(), FeedError> {
    let feed = name(spec);
    match spec {
        FeedSpec::Synthetic(_) => Ok(()),
        FeedSpec::Replay(cfg) => {
            let unreadable = |source| FeedError::Unreadable {
                feed: feed.clone(),
                path: cfg.path.clone(),
                source,
            };
            if cfg.path.is_dir() {
                // A directory of captures (the recorder's): at least one to play.
                return match replay::capture_files(&cfg.path).map_err(unreadable)? {
                    files if files.is_empty() => Err(FeedError::NoCaptures {
                        feed,
                        path: cfg.path.clone(),
                    }),
                    _ => Ok(()),
                };
            }
            if crate::capture::is_capture(&cfg.path).map_err(unreadable)? || cfg.venue.is_some() {
                return Ok(());
            }
            match replay::detect_venue(&cfg.path).map_err(unreadable)? {
                Some(_) => Ok(()),
                None => Err(FeedError::UnknownVenue {
                    feed,
                    path: cfg.path.clone(),
                }),
            }
        }
        FeedSpec::Binance(cfg) | FeedSpec::Coinbase(cfg) => {
            let venue = match spec {
                FeedSpec::Binance(_) => normalize::Venue::Binance,
                _ => normalize::Venue::Coinbase,
            };
            let connect = |source| FeedError::Connect {
                feed: feed.clone(),
                source,
            };
            let target = crate::wsclient::Target::parse(cfg.url_for(venue)).map_err(connect)?;
            if target.tls {
                crate::wsclient::tls_connector(cfg.ca_file.as_deref()).map_err(connect)?;
            }
            Ok(())
        }
    }
}

/// A `--feed` value that names no known feed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "unknown feed {0:?}: expected `synthetic`, `replay:PATH`, `binance[:ws(s)://URL]` \
     or `coinbase[:ws(s)://URL]`"
)]
pub struct UnknownFeed(pub String);

impl FromStr for FeedSpec {
    type Err = UnknownFeed;

    /// A `--feed` value, with every other setting at its default:
    ///
    /// - `synthetic`: the random walk;
    /// - `replay:PATH`: the capture at `PATH` at its recorded pace, once, venue
    ///   detected from its content;
    /// - `binance`, `coinbase`: the venue's public endpoint and default symbols;
    /// - `binance:URL`, `coinbase:URL`: another `ws://` or `wss://` endpoint.
    ///
    /// The config file's `[[feeds]]` sets everything else (speed, loop, symbols…).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unknown = || UnknownFeed(s.to_string());
        let (kind, arg) = match s.split_once(':') {
            Some((kind, arg)) => (kind, Some(arg)),
            None => (s, None),
        };
        match (kind, arg) {
            ("synthetic", None) => Ok(FeedSpec::default()),
            ("replay", Some(path)) if !path.is_empty() => Ok(FeedSpec::Replay(
                replay::ReplayConfig::new(PathBuf::from(path)),
            )),
            ("binance" | "coinbase", url) => {
                let url = match url {
                    None => None,
                    Some(u) if u.starts_with("ws://") || u.starts_with("wss://") => {
                        Some(u.to_string())
                    }
                    Some(_) => return Err(unknown()),
                };
                let cfg = exchange::ExchangeConfig {
                    url,
                    ..exchange::ExchangeConfig::default()
                };
                Ok(if kind == "binance" {
                    FeedSpec::Binance(cfg)
                } else {
                    FeedSpec::Coinbase(cfg)
                })
            }
            _ => Err(unknown()),
        }
    }
}

/// Live counters of one feed, read by `/stats`, `/metrics` and `/readyz`.
#[derive(Debug, Default)]
pub struct FeedStatus {
    /// Feed name, for labels.
    pub name: String,
    /// Whether this feed holds readiness back until it delivers (see
    /// [`crate::readiness`]): true for every configured feed, false for the `/publish`
    /// inlet, which waits for publishers that may never come.
    pub gates_readiness: bool,
    /// 1 while connected to its source (always 1 for local feeds while they run).
    pub connected: AtomicU64,
    /// When the feed last lost its source, ns since the Unix epoch (0: never
    /// connected, or connected now).
    pub down_since_ns: AtomicU64,
    /// 1 once the feed ended on its own, done (a replay at the end of its capture, a
    /// synthetic feed at its `limit`): it delivered all it had.
    pub finished: AtomicU64,
    /// Messages received from the source.
    pub messages: AtomicU64,
    /// Ticks sent to the sequencer.
    pub ticks: AtomicU64,
    /// Messages that could not be parsed and were skipped.
    pub parse_errors: AtomicU64,
    /// Source sequence gaps detected.
    pub gaps: AtomicU64,
    /// Reconnections made.
    pub reconnects: AtomicU64,
    /// Time of the last message, ns since the Unix epoch (0: none yet).
    pub last_message_ns: AtomicU64,
    /// `ts_event` of the last tick sent to the sequencer, ns since the Unix epoch (0:
    /// none yet): with `last_message_ns`, how far behind its source the feed is.
    pub last_event_ns: AtomicU64,
}

impl FeedStatus {
    /// Status for a configured feed called `name`.
    pub fn new(name: impl Into<String>) -> FeedStatus {
        FeedStatus {
            name: name.into(),
            gates_readiness: true,
            ..FeedStatus::default()
        }
    }

    /// Status for an inlet that does not hold readiness back (`/publish`).
    pub fn passive(name: impl Into<String>) -> FeedStatus {
        FeedStatus {
            gates_readiness: false,
            ..FeedStatus::new(name)
        }
    }

    /// Records that the feed reached its source (or, for a local feed, started).
    pub fn set_connected(&self) {
        self.connected.store(1, Ordering::Relaxed);
        self.down_since_ns.store(0, Ordering::Relaxed);
    }

    /// Records that the feed lost its source at `now_ns` (or stopped on an error).
    pub fn set_disconnected(&self, now_ns: u64) {
        if self.connected.swap(0, Ordering::Relaxed) == 1 {
            self.down_since_ns.store(now_ns, Ordering::Relaxed);
        }
    }

    /// Counts `ticks`, handed to the sequencer in one go: the tick count and the last
    /// event's time.
    pub fn counted(&self, ticks: &[FeedTick]) {
        self.ticks.fetch_add(ticks.len() as u64, Ordering::Relaxed);
        if let Some(last) = ticks.last() {
            // Release: a reader that sees this event time sees the arrival time
            // stored before it (`tickcast_feed_lag_seconds` is never negative).
            self.last_event_ns.store(last.ts_event, Ordering::Release);
        }
    }

    /// Records that the feed ended on its own, having delivered all it had.
    pub fn set_finished(&self) {
        self.finished.store(1, Ordering::Relaxed);
        self.connected.store(0, Ordering::Relaxed);
        self.down_since_ns.store(0, Ordering::Relaxed);
    }

    /// Why this feed holds readiness back at `now_ns`, if it does: it never reached its
    /// source, delivered nothing yet, or lost its source more than `max_outage_ns` ago.
    pub fn not_ready(&self, now_ns: u64, max_outage_ns: u64) -> Option<String> {
        if !self.gates_readiness || self.finished.load(Ordering::Relaxed) == 1 {
            return None;
        }
        let connected = self.connected.load(Ordering::Relaxed) == 1;
        let down_since = self.down_since_ns.load(Ordering::Relaxed);
        let ticks = self.ticks.load(Ordering::Relaxed);
        if connected {
            return (ticks == 0).then(|| "connected, no tick delivered yet".to_string());
        }
        if down_since == 0 {
            return Some("not connected yet".to_string());
        }
        let down_ns = now_ns.saturating_sub(down_since);
        if ticks == 0 {
            Some("not connected; no tick delivered yet".to_string())
        } else if down_ns > max_outage_ns {
            Some(format!(
                "disconnected for {:.1} s (readiness.max_feed_outage_ms = {})",
                down_ns as f64 / 1e9,
                max_outage_ns / 1_000_000
            ))
        } else {
            None
        }
    }
}

/// The feed channel (bounded, `capacity` ticks): feeds, `/publish` and tests send into
/// it, the sequencer takes from it.
pub fn channel(capacity: usize) -> (FeedSender, FeedReceiver) {
    let (tx, rx) = crossbeam_channel::bounded(capacity);
    let bell = Arc::new(crate::park::Doorbell::default());
    (
        FeedSender {
            tx,
            bell: bell.clone(),
        },
        FeedReceiver {
            rx,
            bell,
            busy: std::cell::Cell::new(false),
        },
    )
}

/// The sending end of the feed channel: every send that lands wakes the sequencer if
/// it sleeps ([`crate::park::Doorbell`]); dropping a sender wakes it too, so that it
/// sees the last one go.
#[derive(Debug, Clone)]
pub struct FeedSender {
    tx: Sender<FeedTick>,
    bell: Arc<crate::park::Doorbell>,
}

impl FeedSender {
    /// Sends without waiting; a full channel gives the tick back.
    pub fn try_send(&self, tick: FeedTick) -> Result<(), TrySendError<FeedTick>> {
        self.tx.try_send(tick)?;
        self.bell.ring();
        Ok(())
    }

    /// Sends, waiting while the channel is full, for at most `timeout`.
    pub fn send_timeout(
        &self,
        tick: FeedTick,
        timeout: Duration,
    ) -> Result<(), SendTimeoutError<FeedTick>> {
        self.tx.send_timeout(tick, timeout)?;
        self.bell.ring();
        Ok(())
    }

    /// Sends, waiting while the channel is full.
    pub fn send(&self, tick: FeedTick) -> Result<(), crossbeam_channel::SendError<FeedTick>> {
        self.tx.send(tick)?;
        self.bell.ring();
        Ok(())
    }

    /// [`FeedSender::try_send`] without the wake-up: the caller rings once after a
    /// burst ([`FeedSender::ring`]).
    fn try_send_quiet(&self, tick: FeedTick) -> Result<(), TrySendError<FeedTick>> {
        self.tx.try_send(tick)
    }

    /// Wakes the sequencer if it sleeps.
    fn ring(&self) {
        self.bell.ring();
    }
}

impl Drop for FeedSender {
    fn drop(&mut self) {
        self.bell.ring();
    }
}

/// What [`FeedReceiver::recv_until`] got.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Received {
    /// The next tick.
    Tick(FeedTick),
    /// The deadline passed with the channel empty.
    Timeout,
    /// Every sender is gone and the channel is drained.
    Closed,
}

/// A wait for a tick this short means the channel is busy: the next wait spins and
/// yields briefly before it sleeps. Ticks a millisecond or less apart (`/publish` at
/// 10,000 a second, a second feed's bursts) count as busy; the local synthetic feed's
/// bursts end waits by their deadline and never do.
const BUSY_WAIT: Duration = Duration::from_millis(1);

/// The sequencer's end of the feed channel. It derefs to the crossbeam receiver
/// (`try_recv`, `recv_timeout`, `is_empty`).
///
/// [`FeedReceiver::recv_until`] adapts how it waits. While ticks arrive less than a
/// millisecond apart it spins and yields first, as crossbeam's
/// blocking `recv` does, which catches the next tick without a futex wake-up on
/// either side. After a quiet spell (a feed's bursts, a fraction of a millisecond
/// apart) it sleeps on the doorbell at once: spinning there costs more CPU than the
/// wake-up it might save.
#[derive(Debug)]
pub struct FeedReceiver {
    rx: Receiver<FeedTick>,
    bell: Arc<crate::park::Doorbell>,
    busy: std::cell::Cell<bool>,
}

impl FeedReceiver {
    /// The next tick, sleeping while the channel is empty; an error once every sender
    /// is gone and the channel is drained.
    pub fn recv(&self) -> Result<FeedTick, RecvError> {
        loop {
            match self.recv_until(None) {
                Received::Tick(t) => return Ok(t),
                Received::Closed => return Err(RecvError),
                Received::Timeout => {}
            }
        }
    }

    /// The next tick, waiting for it until `deadline` (`None`: without a deadline).
    pub fn recv_until(&self, deadline: Option<std::time::Instant>) -> Received {
        match self.rx.try_recv() {
            Ok(t) => return Received::Tick(t),
            Err(crossbeam_channel::TryRecvError::Disconnected) => return Received::Closed,
            Err(crossbeam_channel::TryRecvError::Empty) => {}
        }
        let since = std::time::Instant::now();
        if deadline.is_some_and(|d| d <= since) {
            return Received::Timeout;
        }
        if self.busy.get() {
            let backoff = crossbeam_utils::Backoff::new();
            while !backoff.is_completed() {
                backoff.snooze();
                if let Ok(t) = self.rx.try_recv() {
                    return Received::Tick(t);
                }
            }
        }
        loop {
            // The longest sleep bounds how long the last sender's drop, which rings
            // just before its channel end goes, takes to be seen.
            let mut wait = Duration::from_millis(100);
            if let Some(d) = deadline {
                match d.checked_duration_since(std::time::Instant::now()) {
                    Some(left) if !left.is_zero() => wait = wait.min(left),
                    _ => return Received::Timeout,
                }
            }
            self.bell.wait(|| !self.rx.is_empty(), wait);
            match self.rx.try_recv() {
                Ok(t) => {
                    self.busy.set(since.elapsed() < BUSY_WAIT);
                    return Received::Tick(t);
                }
                Err(crossbeam_channel::TryRecvError::Disconnected) => return Received::Closed,
                Err(crossbeam_channel::TryRecvError::Empty) => {}
            }
        }
    }

    /// Times a sender woke the sequencer.
    pub fn wakeups(&self) -> u64 {
        self.bell.wakeups.load(Ordering::Relaxed)
    }
}

impl std::ops::Deref for FeedReceiver {
    type Target = Receiver<FeedTick>;
    fn deref(&self) -> &Receiver<FeedTick> {
        &self.rx
    }
}

/// What a feed gets to do its work.
#[derive(Debug, Clone)]
pub struct FeedContext {
    /// The sequencer's inbound channel (bounded).
    pub tx: FeedSender,
    /// The shared symbol table, for feeds that know their symbols up front.
    pub symbols: Arc<SymbolTable>,
    /// Set when the server shuts down; feeds return promptly once it is.
    pub shutdown: Arc<AtomicBool>,
    /// This feed's counters.
    pub status: Arc<FeedStatus>,
}

/// Why a send to the sequencer did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SendError {
    /// The server is shutting down.
    #[error("server shutting down")]
    Shutdown,
    /// The sequencer is gone.
    #[error("sequencer stopped")]
    Disconnected,
}

impl FeedContext {
    /// Sends a tick, blocking while the channel is full (backpressure), but giving up
    /// when the server shuts down.
    pub fn send(&self, tick: FeedTick) -> Result<(), SendError> {
        self.push(tick)?;
        self.tx.ring();
        self.status.ticks.fetch_add(1, Ordering::Relaxed);
        self.status
            .last_event_ns
            .store(tick.ts_event, Ordering::Release);
        Ok(())
    }

    /// Sends a burst of ticks in order, like [`FeedContext::send`], counting them once.
    pub fn send_burst(&self, ticks: &[FeedTick]) -> Result<(), SendError> {
        let mut sent = 0usize;
        let result = ticks.iter().try_for_each(|t| {
            self.push(*t)?;
            sent += 1;
            Ok(())
        });
        self.tx.ring();
        self.status.counted(&ticks[..sent]);
        result
    }

    /// One tick into the channel: no clock read unless the channel is full.
    fn push(&self, tick: FeedTick) -> Result<(), SendError> {
        let tick = match self.tx.try_send_quiet(tick) {
            Ok(()) => return Ok(()),
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => {
                return Err(SendError::Disconnected)
            }
            Err(crossbeam_channel::TrySendError::Full(t)) => {
                // The sequencer must be awake to drain what this burst already sent.
                self.tx.ring();
                t
            }
        };
        let mut tick = tick;
        loop {
            match self.tx.send_timeout(tick, Duration::from_millis(50)) {
                Ok(()) => return Ok(()),
                Err(SendTimeoutError::Timeout(t)) => {
                    if self.is_shutdown() {
                        return Err(SendError::Shutdown);
                    }
                    tick = t;
                }
                Err(SendTimeoutError::Disconnected(_)) => return Err(SendError::Disconnected),
            }
        }
    }

    /// Whether the server asked feeds to stop.
    pub fn is_shutdown(&self) -> bool {
        self.shutdown.load(Ordering::Relaxed)
    }
}

/// Starts `spec` on its own thread; the thread ends when the feed ends or the server
/// shuts down.
pub fn spawn(spec: &FeedSpec, ctx: FeedContext) -> std::io::Result<std::thread::JoinHandle<()>> {
    match spec.clone() {
        FeedSpec::Synthetic(cfg) => std::thread::Builder::new()
            .name("feed-synthetic".into())
            .spawn(move || synthetic::run(&cfg, &ctx)),
        FeedSpec::Replay(cfg) => std::thread::Builder::new()
            .name("feed-replay".into())
            .spawn(move || replay::run(&cfg, &ctx)),
        FeedSpec::Binance(cfg) => std::thread::Builder::new()
            .name("feed-binance".into())
            .spawn(move || exchange::run(normalize::Venue::Binance, &cfg, &ctx)),
        FeedSpec::Coinbase(cfg) => std::thread::Builder::new()
            .name("feed-coinbase".into())
            .spawn(move || exchange::run(normalize::Venue::Coinbase, &cfg, &ctx)),
    }
}

/// A short name for a feed spec, used in logs and metric labels.
pub fn name(spec: &FeedSpec) -> String {
    match spec {
        FeedSpec::Synthetic(_) => "synthetic".to_string(),
        FeedSpec::Replay(cfg) => format!(
            "replay:{}",
            cfg.path.file_name().map_or_else(
                || cfg.path.display().to_string(),
                |f| f.to_string_lossy().into_owned()
            )
        ),
        FeedSpec::Binance(_) => "binance".to_string(),
        FeedSpec::Coinbase(_) => "coinbase".to_string(),
    }
}

/// Logs the `n`th parse error of feed `feed`: every one of the first ten, then only
/// when `n` is a power of two, so a venue sending garbage cannot flood the log (the
/// exact count is in [`FeedStatus::parse_errors`]).
pub(crate) fn log_parse_error(feed: &str, n: u64, error: &normalize::NormalizeError) {
    if n <= 10 || n.is_power_of_two() {
        if error.is_terminal() {
            tracing::error!(feed, count = n, kind = error.label(), %error, "venue rejected a request");
        } else {
            tracing::warn!(feed, count = n, kind = error.label(), %error, "skipped a venue message");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::time::Instant;

    #[test]
    fn recv_until_gives_a_tick_a_timeout_or_closed() {
        let (tx, rx) = channel(4);
        let t0 = Instant::now();
        let at = t0 + Duration::from_millis(20);
        assert_eq!(rx.recv_until(Some(at)), Received::Timeout);
        assert!(Instant::now() >= at, "not before its deadline");
        let tick = FeedTick {
            symbol: crate::symbol::Symbol::new("A").unwrap(),
            ts_event: 1,
            body: crate::tick::Body::trade(1, 1),
        };
        let sender = {
            let tx = tx.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(10));
                tx.send(tick).unwrap();
            })
        };
        // Woken by the send: a lost wake-up would wait out the hour (and the test
        // runner's timeout).
        let hour = Instant::now() + Duration::from_secs(3600);
        assert_eq!(rx.recv_until(Some(hour)), Received::Tick(tick));
        sender.join().unwrap();
        // Ticks moments apart: the next wait spins first, and still sees the next.
        tx.send(tick).unwrap();
        assert_eq!(rx.recv_until(None), Received::Tick(tick));
        drop(tx);
        assert_eq!(rx.recv_until(None), Received::Closed);
        assert_eq!(rx.recv_until(Some(hour)), Received::Closed);
    }

    #[test]
    fn feed_flags() {
        let table: &[(&str, Option<FeedSpec>)] = &[
            ("synthetic", Some(FeedSpec::default())),
            (
                "replay:feeds/x.jsonl",
                Some(FeedSpec::Replay(replay::ReplayConfig::new("feeds/x.jsonl"))),
            ),
            (
                "binance",
                Some(FeedSpec::Binance(exchange::ExchangeConfig::default())),
            ),
            (
                "coinbase:ws://127.0.0.1:9000/",
                Some(FeedSpec::Coinbase(exchange::ExchangeConfig {
                    url: Some("ws://127.0.0.1:9000/".into()),
                    ..exchange::ExchangeConfig::default()
                })),
            ),
            ("replay:", None),
            ("binance:http://x", None),
            ("synthetic:1", None),
            ("kraken", None),
        ];
        for (flag, want) in table {
            assert_eq!(flag.parse::<FeedSpec>().ok(), *want, "{flag}");
        }
        assert_eq!(
            name(&"replay:feeds/a/b.jsonl".parse().unwrap()),
            "replay:b.jsonl"
        );
    }

    #[test]
    fn a_replay_of_a_directory_needs_a_capture_in_it() {
        let dir = std::env::temp_dir().join(format!("tickcast-feed-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let spec = FeedSpec::Replay(replay::ReplayConfig::new(dir.to_str().unwrap()));
        let e = check(&spec).unwrap_err();
        assert!(matches!(e, FeedError::NoCaptures { .. }), "{e}");
        assert!(e.to_string().contains("no .tcrec capture"), "{e}");
        std::fs::write(dir.join("a.tcrec"), b"").unwrap();
        assert!(check(&spec).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn example_feed_config_parses() {
        let config = Config::parse(include_str!("../feeds/example.toml")).unwrap();
        let kinds: Vec<String> = config.feeds.iter().map(name).collect();
        assert_eq!(
            kinds,
            [
                "replay:binance-spot-btcusdt-ethusdt.jsonl",
                "replay:coinbase-exchange-btc-usd-eth-usd.jsonl",
                "binance",
                "coinbase"
            ]
        );
        match &config.feeds[0] {
            FeedSpec::Replay(r) => {
                assert_eq!(r.venue, Some(normalize::Venue::Binance));
                assert!(r.repeat && r.rebase_time);
                assert_eq!(r.speed, 2.0);
            }
            other => panic!("{other:?}"),
        }
        match &config.feeds[2] {
            FeedSpec::Binance(c) => {
                assert!(c.book);
                assert_eq!(c.depth_limit, 100);
                assert_eq!(
                    c.depth_snapshot_url("btcusdt"),
                    "https://api.binance.com/api/v3/depth?symbol=BTCUSDT&limit=100"
                );
                assert!(config.feeds[2].validate().is_ok());
            }
            other => panic!("{other:?}"),
        }
        match &config.feeds[3] {
            FeedSpec::Coinbase(c) => {
                assert_eq!(c.symbols, ["BTC-USD", "ETH-USD"]);
                assert!(c.book);
            }
            other => panic!("{other:?}"),
        }
        // A depth limit Binance does not take, a snapshot limit under the message one.
        for (key, value) in [("depth_limit", "7"), ("max_snapshot_bytes", "1000")] {
            let text = format!("[[feeds]]\nkind = \"binance\"\n{key} = {value}\n");
            let e = Config::parse(&text).unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
        // Unknown keys in a feed are errors, as everywhere in the config.
        let e = Config::parse("[[feeds]]\nkind = \"replay\"\npath = \"x\"\nspeed_x = 2\n");
        assert!(e.is_err());
    }
}
