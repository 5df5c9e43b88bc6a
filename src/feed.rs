//! Feed adapters: everything that turns a source of market data into [`FeedTick`]s.
//!
//! Every adapter runs on its own thread (or its own runtime) and sends into the
//! sequencer's bounded channel ([`FeedContext::tx`]). When the channel is full the
//! adapter blocks: ticks are never dropped between a feed and the sequencer, and a
//! feed that falls behind shows up as latency, because `ts_event` is the source's time.
//!
//! Adapters:
//! - [`synthetic`]: a seeded random walk, the built-in default.

pub mod binance;
pub mod coinbase;
pub mod normalize;
pub mod synthetic;

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{SendTimeoutError, Sender};
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

/// Which feed to run; one entry of the config's `feeds` list, or one `--feed` flag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FeedSpec {
    /// The built-in random-walk generator.
    Synthetic(synthetic::SyntheticConfig),
}

impl Default for FeedSpec {
    fn default() -> Self {
        FeedSpec::Synthetic(synthetic::SyntheticConfig::default())
    }
}

/// A `--feed` value that names no known feed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown feed {0:?}: expected `synthetic`")]
pub struct UnknownFeed(pub String);

impl FromStr for FeedSpec {
    type Err = UnknownFeed;

    /// `synthetic`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "synthetic" => Ok(FeedSpec::default()),
            other => Err(UnknownFeed(other.to_string())),
        }
    }
}

/// Live counters of one feed, read by `/stats` and `/metrics`.
#[derive(Debug, Default)]
pub struct FeedStatus {
    /// Feed name, for labels.
    pub name: String,
    /// 1 while connected to its source (always 1 for local feeds).
    pub connected: AtomicU64,
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
}

impl FeedStatus {
    /// Status for a feed called `name`.
    pub fn new(name: impl Into<String>) -> FeedStatus {
        FeedStatus {
            name: name.into(),
            ..FeedStatus::default()
        }
    }
}

/// What a feed gets to do its work.
#[derive(Debug, Clone)]
pub struct FeedContext {
    /// The sequencer's inbound channel (bounded).
    pub tx: Sender<FeedTick>,
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
        let mut tick = tick;
        loop {
            match self.tx.send_timeout(tick, Duration::from_millis(50)) {
                Ok(()) => {
                    self.status.ticks.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
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
    }
}

/// A short name for a feed spec, used in logs and metric labels.
pub fn name(spec: &FeedSpec) -> String {
    match spec {
        FeedSpec::Synthetic(_) => "synthetic".to_string(),
    }
}

/// Current time, ns since the Unix epoch (CLOCK_REALTIME).
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
