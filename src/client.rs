//! The Rust client: connect, subscribe, and read ticks zero-copy, with gap detection
//! and automatic reconnect that resumes where it left off.
//!
//! ```no_run
//! use tickcast::client::{Client, Event, Options};
//!
//! # async fn run() -> Result<(), tickcast::client::ClientError> {
//! let mut client = Client::connect("ws://127.0.0.1:9001/ws", Options::symbols(["SYM0", "SYM1"])).await?;
//! loop {
//!     match client.next().await? {
//!         Event::Ticks(batch) => {
//!             for rec in batch.records() {
//!                 println!("{:?} seq {} price {}", batch.symbol(rec.symbol_id.to_native()),
//!                          rec.seq, rec.values[0]);
//!             }
//!         }
//!         Event::Gap(gap) => eprintln!("lost {} updates of {}", gap.missed(), gap.symbol),
//!         other => eprintln!("{other:?}"),
//!     }
//! }
//! # }
//! ```
//!
//! Layers, as in the server: [`Session`] is sans-IO (subscriptions, the id → name
//! map, [`GapDetector`], resume points) and [`Client`] is the I/O around it: a
//! fastwebsockets connection ([`crate::wsclient`]: `ws://`, or `wss://` with rustls
//! trusting the webpki roots plus [`Options::ca_file`]; [`Options::token`] sent as
//! `Authorization: Bearer` to a server with `[auth]`) whose read half runs in a
//! task that hands complete messages to [`Client::next`] through a bounded queue.
//!
//! Backpressure: the queue holds [`Options::queue_messages`] messages. While it is
//! full the reading task stops reading, the socket's buffers fill, and the server
//! sees a slow consumer: it conflates (and says so with [`Event::Conflation`]), then
//! closes the connection after its stall timeout, and the client reconnects and
//! resumes. Memory stays bounded whatever the feed rate.
//!
//! Reconnect: when the connection ends, [`Client::next`] returns
//! [`Event::Disconnected`], then reconnects: at once after the server announced its
//! shutdown (`{"type":"shutdown"}` or close code 1001, so a load balancer can send
//! the client to another server), otherwise after an exponential backoff with jitter.
//! It subscribes again with `"resume": {symbol: last_seq}`, returns
//! [`Event::Reconnected`], and the server replays what was missed (records flagged
//! `replay`) or, when it cannot, sends a snapshot (flagged `snapshot`). A restarted
//! server may not know every symbol yet (its feed has not seen them) and reject that
//! subscribe: the client sends it again, with the same backoff, until it is accepted.

pub mod batch;
pub mod book;
pub mod gaps;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use std::path::PathBuf;

use fastwebsockets::{
    CloseCode, FragmentCollectorRead, Frame, OpCode, Payload, WebSocketError, WebSocketWrite,
};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use rkyv::util::AlignedVec;
use thiserror::Error;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::sync::{mpsc, Mutex};
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

pub use batch::{Batch, Records};
pub use book::{BookGap, BookTracker};
pub use gaps::{Gap, GapDetector};
pub use session::Session;

use crate::feed::exchange::Backoff;
use crate::wire::DecodeError;
use crate::wsclient::{self, ConnectError, Target};

/// What [`Client::next`] returns.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// One binary data message: records read in place. Flags on each record say
    /// whether it is a snapshot, conflated, or replayed after a resume.
    Ticks(Batch),
    /// Updates of a symbol were lost (sequence accounting fell short). Follows the
    /// [`Event::Ticks`] that showed it.
    Gap(Gap),
    /// Book changes of a symbol were lost: its book ([`Session::book`]) is not the
    /// server's until the next snapshot (the next subscribe or reconnect asks for
    /// one). Precedes the [`Event::Ticks`] that showed it.
    BookGap {
        /// The symbol's name.
        symbol: String,
        /// The book sequence numbers missed.
        gap: BookGap,
    },
    /// The id → name map of symbols newly added to the subscription.
    Symbols(Vec<(u32, String)>),
    /// The server acknowledged a subscribe.
    Subscribed {
        /// The symbols subscribed.
        symbols: Vec<String>,
    },
    /// The server acknowledged an unsubscribe.
    Unsubscribed {
        /// The symbols removed.
        symbols: Vec<String>,
    },
    /// The server started (`on`) or stopped merging updates for this connection.
    Conflation {
        /// Whether conflation is now on.
        on: bool,
        /// When it ends: how many updates were merged.
        merged: Option<u64>,
    },
    /// The server announced it is shutting down; the connection closes next and the
    /// client reconnects at once.
    Shutdown,
    /// The server rejected a control message.
    ServerError {
        /// The server's explanation.
        message: String,
    },
    /// Any other text message, as JSON (including JSON tick arrays, which a client
    /// that subscribes in binary does not receive).
    Control(serde_json::Value),
    /// The connection ended; the client reconnects unless [`Options::reconnect`] is
    /// off.
    Disconnected {
        /// Why, as text (close code and reason, or the error).
        reason: String,
    },
    /// A new connection is up and the subscriptions were sent again, resuming from
    /// the last sequence seen per symbol.
    Reconnected {
        /// Attempts this reconnect took (1 when the first one worked).
        attempts: u32,
        /// Symbols resumed (those with a sequence seen).
        resumed: usize,
    },
}

/// Why a client operation failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The URL is not `ws://host[:port]/path` or `wss://host[:port]/path`.
    #[error("invalid url {0:?}: expected ws://host[:port]/path or wss://…")]
    Url(String),
    /// TCP connect failed.
    #[error("connect failed: {0}")]
    Connect(std::io::Error),
    /// `wss://` only: the TLS client could not be set up ([`Options::ca_file`]
    /// unreadable or not PEM certificates) or the TLS handshake failed (for
    /// instance, a certificate no trusted root vouches for).
    #[error("tls: {0}")]
    Tls(String),
    /// Connecting took longer than [`Options::connect_timeout_ms`].
    #[error("connect timed out")]
    ConnectTimeout,
    /// The WebSocket handshake or a WebSocket read or write failed.
    #[error("websocket: {0}")]
    WebSocket(#[from] WebSocketError),
    /// A binary message that is not a valid data message; it was skipped and the
    /// stream goes on.
    #[error("bad binary message: {0}")]
    Decode(#[from] DecodeError),
    /// Not connected and not reconnecting: [`Options::reconnect`] is off, or
    /// [`Client::close`] was called.
    #[error("connection closed")]
    Closed,
    /// [`Options::max_reconnect_attempts`] attempts failed in a row.
    #[error("gave up after {attempts} reconnect attempts: {last}")]
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// The last attempt's error.
        last: String,
    },
}

impl From<ConnectError> for ClientError {
    fn from(e: ConnectError) -> Self {
        match e {
            ConnectError::Url(url) => ClientError::Url(url),
            ConnectError::Connect(e) => ClientError::Connect(e),
            ConnectError::Tls(e) => ClientError::Tls(e),
            ConnectError::WebSocket(e) => ClientError::WebSocket(e),
        }
    }
}

impl ClientError {
    /// Whether the client cannot go on: `next` will keep failing. A bad message
    /// ([`ClientError::Decode`]) is not terminal.
    pub fn is_terminal(&self) -> bool {
        !matches!(self, ClientError::Decode(_))
    }
}

/// Client settings. Every field has a default ([`Options::default`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Symbols to subscribe on connect; `["*"]` for every symbol. Default: none.
    pub symbols: Vec<String>,
    /// At most this many updates per second per symbol (`max_rate`). Default: none.
    pub max_rate: Option<f64>,
    /// The channels of [`Options::symbols`] (`"trade"`, `"quote"`, `"book"`);
    /// `None` is the server's default, trades and quotes. Default: `None`.
    pub channels: Option<Vec<String>>,
    /// Reconnect when the connection ends. Default: true.
    pub reconnect: bool,
    /// First reconnect delay, in ms; doubles per failed attempt. Default: 100.
    pub backoff_initial_ms: u64,
    /// Longest reconnect delay, in ms. Default: 5,000.
    pub backoff_max_ms: u64,
    /// Failed reconnect attempts in a row before giving up; `None` never gives up.
    /// Default: `None`.
    pub max_reconnect_attempts: Option<u32>,
    /// Longest wait for TCP and the WebSocket handshake, in ms. Default: 5,000.
    pub connect_timeout_ms: u64,
    /// Messages read ahead of [`Client::next`]; when full, reading stops
    /// (backpressure to the server). Default: 1,024.
    pub queue_messages: usize,
    /// Largest message accepted, in bytes. Default: 1 MiB (the server's data
    /// messages are at most 65,535 bytes).
    pub max_message_bytes: usize,
    /// Seed of the reconnect jitter; `None` seeds from the clock. Default: `None`.
    pub jitter_seed: Option<u64>,
    /// `wss://` only: extra trusted root certificates (PEM), besides the webpki
    /// roots, for a private CA or a self-signed server. Read once, by
    /// [`Client::connect`]. Default: none.
    pub ca_file: Option<PathBuf>,
    /// The token of a server with `[auth]` (`docs/operations.md`), sent on every
    /// connection as `Authorization: Bearer <token>` (never in the URL, so it stays
    /// out of proxy logs). Default: none.
    pub token: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            symbols: Vec::new(),
            max_rate: None,
            channels: None,
            reconnect: true,
            backoff_initial_ms: 100,
            backoff_max_ms: 5_000,
            max_reconnect_attempts: None,
            connect_timeout_ms: 5_000,
            queue_messages: 1_024,
            max_message_bytes: 1 << 20,
            jitter_seed: None,
            ca_file: None,
            token: None,
        }
    }
}

impl Options {
    /// Defaults, subscribing to `symbols` on connect.
    pub fn symbols<S: Into<String>>(symbols: impl IntoIterator<Item = S>) -> Options {
        Options {
            symbols: symbols.into_iter().map(Into::into).collect(),
            ..Options::default()
        }
    }
}

/// The TLS client of a `wss://` target; a wrapper because `TlsConnector` is not
/// `Debug`.
struct Tls(TlsConnector);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}

type Io = TokioIo<Upgraded>;
type Writer = Arc<Mutex<WebSocketWrite<WriteHalf<Io>>>>;

/// What the reading task hands to [`Client::next`].
#[derive(Debug)]
enum Incoming {
    Binary(AlignedVec<8>),
    Text(String),
    /// The connection ended: close frame, end of stream or error.
    Ended {
        reason: String,
        /// Close code 1001: the server is going away.
        going_away: bool,
    },
}

/// One live connection.
struct Conn {
    rx: mpsc::Receiver<Incoming>,
    writer: Writer,
    reader: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").finish_non_exhaustive()
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// A tickcast subscriber. Not `Clone`: one reader of one event stream; every method
/// takes `&mut self`, and [`Client::next`] is cancel-safe (usable in `select!` and
/// under a timeout without losing events).
#[derive(Debug)]
pub struct Client {
    target: Target,
    /// The TLS client of a `wss://` target, built once from [`Options::ca_file`].
    tls: Option<Tls>,
    options: Options,
    session: Session,
    conn: Option<Conn>,
    backoff: Backoff,
    /// When the next reconnect attempt may start (`None` while connected).
    retry_at: Option<Instant>,
    /// Failed attempts in the current reconnect.
    attempts: u32,
    /// When to send the resubscribe again, after the server rejected it.
    resubscribe_at: Option<Instant>,
    /// Delays between resubscribes.
    resubscribe_backoff: Backoff,
    last_error: String,
    closed: bool,
}

impl Client {
    /// Connects to `url` (`ws://host:port/ws`, or `wss://host:port/ws` for a
    /// server with TLS) and subscribes to [`Options::symbols`]. The first connection
    /// must succeed; later ones are retried as [`Options`] say.
    pub async fn connect(url: &str, options: Options) -> Result<Client, ClientError> {
        let target = Target::parse(url)?;
        let tls = if target.tls {
            Some(Tls(wsclient::tls_connector(options.ca_file.as_deref())?))
        } else {
            None
        };
        let seed = options.jitter_seed.unwrap_or_else(crate::clock::now_ns);
        let mut client = Client {
            backoff: Backoff::new(
                Duration::from_millis(options.backoff_initial_ms),
                Duration::from_millis(options.backoff_max_ms),
                seed,
            ),
            resubscribe_backoff: Backoff::new(
                Duration::from_millis(options.backoff_initial_ms),
                Duration::from_millis(options.backoff_max_ms),
                seed.wrapping_add(1),
            ),
            resubscribe_at: None,
            target,
            tls,
            session: Session::new(),
            conn: None,
            retry_at: None,
            attempts: 0,
            last_error: String::new(),
            closed: false,
            options,
        };
        if !client.options.symbols.is_empty() {
            let symbols = client.options.symbols.clone();
            match &client.options.channels {
                Some(c) => {
                    let c: Vec<&str> = c.iter().map(String::as_str).collect();
                    client
                        .session
                        .subscribe_channels(&symbols, client.options.max_rate, &c);
                }
                None => {
                    client.session.subscribe(&symbols, client.options.max_rate);
                }
            }
        }
        let conn = client.open().await?;
        client.conn = Some(conn);
        if let Some(msg) = client.session.connected() {
            client.send_text(msg).await?;
        }
        Ok(client)
    }

    /// Adds symbols (`["*"]` for all). The server answers with
    /// [`Event::Subscribed`], [`Event::Symbols`] and a snapshot. While disconnected,
    /// the subscription is sent on reconnect.
    pub async fn subscribe<S: AsRef<str>>(&mut self, symbols: &[S]) -> Result<(), ClientError> {
        let symbols: Vec<String> = symbols.iter().map(|s| s.as_ref().to_string()).collect();
        let msg = self.session.subscribe(&symbols, None);
        self.send_if_connected(msg).await
    }

    /// Adds symbols on these channels (`"trade"`, `"quote"`, `"book"`; the server's
    /// default is trades and quotes). With `"book"`, each symbol's book is rebuilt
    /// from its book messages ([`Client::book`]) and resumed on reconnect.
    pub async fn subscribe_channels<S: AsRef<str>>(
        &mut self,
        symbols: &[S],
        channels: &[&str],
    ) -> Result<(), ClientError> {
        let symbols: Vec<String> = symbols.iter().map(|s| s.as_ref().to_string()).collect();
        let msg = self.session.subscribe_channels(&symbols, None, channels);
        self.send_if_connected(msg).await
    }

    /// The book of `symbol`, as rebuilt from the book messages received so far.
    pub fn book(&self, symbol: &str) -> Option<&BookTracker> {
        self.session.book(symbol)
    }

    /// Removes symbols (`["*"]` for all); their sequence accounting is forgotten.
    pub async fn unsubscribe<S: AsRef<str>>(&mut self, symbols: &[S]) -> Result<(), ClientError> {
        let symbols: Vec<String> = symbols.iter().map(|s| s.as_ref().to_string()).collect();
        let msg = self.session.unsubscribe(&symbols);
        self.send_if_connected(msg).await
    }

    /// The highest sequence number seen per symbol: what a reconnect resumes from.
    pub fn last_seqs(&self) -> Vec<(String, u64)> {
        self.session.last_seqs()
    }

    /// Whether a connection is up.
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Closes the connection with code 1000; `next` returns [`ClientError::Closed`]
    /// from then on.
    pub async fn close(&mut self) -> Result<(), ClientError> {
        self.closed = true;
        if let Some(conn) = self.conn.take() {
            let mut w = conn.writer.lock().await;
            w.write_frame(Frame::close(CloseCode::Normal.into(), b"client closing"))
                .await?;
        }
        Ok(())
    }

    /// The next event. Reconnects as needed; returns an error only when the client
    /// cannot go on ([`ClientError::is_terminal`]) or a message was bad (skipped).
    /// Cancel-safe.
    pub async fn next(&mut self) -> Result<Event, ClientError> {
        loop {
            if let Some(e) = self.session.pop() {
                return Ok(e);
            }
            if self.closed {
                return Err(ClientError::Closed);
            }
            if self.session.take_retry() {
                self.resubscribe_at = Some(Instant::now() + self.resubscribe_backoff.next_delay());
            }
            let Some(conn) = self.conn.as_mut() else {
                self.reconnect().await?;
                continue;
            };
            let incoming = match self.resubscribe_at {
                Some(at) => tokio::select! {
                    m = conn.rx.recv() => Some(m),
                    _ = tokio::time::sleep_until(at) => None,
                },
                None => Some(conn.rx.recv().await),
            };
            let Some(incoming) = incoming else {
                self.resubscribe_at = None;
                if let Some(msg) = self.session.resubscribe() {
                    self.send_text(msg).await?;
                }
                continue;
            };
            match incoming {
                Some(Incoming::Binary(buf)) => self.session.on_binary(buf)?,
                Some(Incoming::Text(text)) => self.session.on_text(&text),
                Some(Incoming::Ended { reason, going_away }) => {
                    self.disconnected(reason, going_away)
                }
                None => self.disconnected("connection task ended".into(), false),
            }
        }
    }

    fn disconnected(&mut self, reason: String, going_away: bool) {
        self.conn = None;
        let now = Instant::now();
        if going_away || self.session.shutdown_announced() {
            // The server is leaving on purpose: come back (or go elsewhere) at once.
            self.backoff.reset();
            self.retry_at = Some(now);
        } else {
            self.retry_at = Some(now + self.backoff.next_delay());
        }
        self.attempts = 0;
        self.session.push(Event::Disconnected { reason });
    }

    /// One step of reconnecting: waits for the backoff, tries once. Cancel-safe: the
    /// deadline is kept in `self`.
    async fn reconnect(&mut self) -> Result<(), ClientError> {
        if !self.options.reconnect {
            return Err(ClientError::Closed);
        }
        let at = *self.retry_at.get_or_insert_with(Instant::now);
        tokio::time::sleep_until(at).await;
        match self.open().await {
            Ok(conn) => {
                self.conn = Some(conn);
                self.retry_at = None;
                let attempts = std::mem::take(&mut self.attempts) + 1;
                self.backoff.reset();
                self.resubscribe_backoff.reset();
                self.resubscribe_at = None;
                let resumed = self.session.last_seqs().len();
                if let Some(msg) = self.session.connected() {
                    self.send_text(msg).await?;
                }
                self.session.push(Event::Reconnected { attempts, resumed });
                Ok(())
            }
            Err(e) => {
                self.attempts += 1;
                self.last_error = e.to_string();
                if let Some(max) = self.options.max_reconnect_attempts {
                    if self.attempts >= max {
                        self.closed = true;
                        return Err(ClientError::GaveUp {
                            attempts: self.attempts,
                            last: self.last_error.clone(),
                        });
                    }
                }
                self.retry_at = Some(Instant::now() + self.backoff.next_delay());
                Ok(())
            }
        }
    }

    async fn send_if_connected(&mut self, msg: String) -> Result<(), ClientError> {
        if self.conn.is_some() {
            self.send_text(msg).await?;
        }
        Ok(())
    }

    async fn send_text(&mut self, msg: String) -> Result<(), ClientError> {
        let Some(conn) = self.conn.as_ref() else {
            return Ok(());
        };
        let mut w = conn.writer.lock().await;
        if let Err(e) = w
            .write_frame(Frame::text(Payload::Owned(msg.into_bytes())))
            .await
        {
            drop(w);
            // The reading task reports the end of the connection; make sure it does.
            self.disconnected(format!("write failed: {e}"), false);
        }
        Ok(())
    }

    /// Connects, upgrades, and starts the reading task.
    async fn open(&self) -> Result<Conn, ClientError> {
        let timeout = Duration::from_millis(self.options.connect_timeout_ms.max(1));
        let connect = wsclient::connect(
            &self.target,
            self.tls.as_ref().map(|t| &t.0),
            concat!("tickcast-client/", env!("CARGO_PKG_VERSION")),
            self.options.token.as_deref(),
        );
        let ws = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| ClientError::ConnectTimeout)??;
        let (mut read, write) = ws.split(tokio::io::split);
        read.set_max_message_size(wsclient::inclusive_limit(self.options.max_message_bytes));
        let writer: Writer = Arc::new(Mutex::new(write));
        let (tx, rx) = mpsc::channel(self.options.queue_messages.max(1));
        let reader = tokio::spawn(read_loop(
            FragmentCollectorRead::new(read),
            writer.clone(),
            tx,
        ));
        Ok(Conn { rx, writer, reader })
    }
}

/// Reads messages until the connection ends, answering pings and closes through the
/// shared writer, and hands each message to the client. Waits (backpressure) while
/// the client's queue is full.
async fn read_loop(
    mut read: FragmentCollectorRead<ReadHalf<Io>>,
    writer: Writer,
    tx: mpsc::Sender<Incoming>,
) {
    let ended = loop {
        let w = writer.clone();
        let mut send = move |frame: Frame<'_>| {
            let w = w.clone();
            let owned = Frame::new(
                frame.fin,
                frame.opcode,
                None,
                Payload::Owned(frame.payload.to_vec()),
            );
            async move { w.lock().await.write_frame(owned).await }
        };
        let frame = match read.read_frame(&mut send).await {
            Ok(f) => f,
            Err(e) => {
                break Incoming::Ended {
                    reason: e.to_string(),
                    going_away: false,
                }
            }
        };
        let msg = match frame.opcode {
            OpCode::Binary => {
                let mut buf = AlignedVec::<8>::with_capacity(frame.payload.len());
                buf.extend_from_slice(&frame.payload);
                Incoming::Binary(buf)
            }
            OpCode::Text => Incoming::Text(String::from_utf8_lossy(&frame.payload).into_owned()),
            OpCode::Close => {
                let (code, reason) = match frame.payload.len() {
                    n if n >= 2 => (
                        u16::from_be_bytes([frame.payload[0], frame.payload[1]]),
                        String::from_utf8_lossy(&frame.payload[2..]).into_owned(),
                    ),
                    _ => (1005, String::new()),
                };
                break Incoming::Ended {
                    reason: format!("closed by the server: {code} {reason}"),
                    going_away: code == crate::wire::CloseCode::GoingAway.as_u16(),
                };
            }
            _ => continue,
        };
        if tx.send(msg).await.is_err() {
            return; // the client is gone
        }
    };
    let _ = tx.send(ended).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_errors() {
        assert!(!ClientError::Decode(DecodeError::Version(2)).is_terminal());
        assert!(ClientError::Closed.is_terminal());
    }
}
