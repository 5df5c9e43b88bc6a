//! `/publish`: the endpoint through which external publishers push ticks.
//!
//! A publisher opens a WebSocket on `/publish`, authenticated by the config's
//! `publish_token` (as `?token=` or `Authorization: Bearer`), and sends ticks as JSON
//! text or as binary records in the protocol's record layout (`docs/protocol.md`,
//! "Publishing"). Every accepted tick goes to the sequencer like any feed's, so it is
//! sequenced, cached and fanned out to subscribers; `ts_event` is the publisher's.
//!
//! - [`authorize`] decides on the token before the upgrade (sans-IO): a wrong or
//!   missing token is `401` and no WebSocket is made.
//! - [`Decoder`] turns one message into [`FeedTick`]s or a [`PublishError`] naming the
//!   problem (sans-IO, allocation-free once its buffers have grown). A message is all
//!   or nothing: if any tick in it is bad, none is published.
//! - The connection task replies to a bad message with
//!   `{"type":"error","message":"…"}` and keeps the connection; a message over
//!   `max_publish_message_bytes` closes it with code 1009. Successful messages get no
//!   reply, so a publisher can stream without waiting.
//!
//! Backpressure: when the sequencer's channel is full the connection stops reading
//! (so the publisher's socket fills up) until there is room; ticks are never dropped.
//! If the channel stays full for `stall_timeout_ms`, the connection is closed with
//! code 1013 `try again later`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::TrySendError;
use fastwebsockets::{Frame, OpCode, Payload, WebSocketError};
use simd_json::prelude::*;
use simd_json::tape::{Tape, Value};
use thiserror::Error;
use tokio::sync::watch;

use crate::app::App;
use crate::clock::now_ns;
use crate::feed::{FeedStatus, FeedTick};
use crate::fixed::{self, FixedError};
use crate::symbol::{Symbol, SymbolError, SymbolTable};
use crate::tick::{Body, Kind};
use crate::wire::frame::FrameError;
use crate::wire::CloseCode;
use crate::wire::{HEADER_SIZE, RECORD_SIZE, VERSION};

/// The publish endpoint's way into the sequencer, kept in [`App`].
///
/// It holds a sender of the sequencer's channel while the server runs; the server
/// calls [`Inlet::close`] at shutdown so that the sequencer sees every sender gone.
#[derive(Debug)]
pub struct Inlet {
    /// The sender, `None` when publishing is disabled or after [`Inlet::close`].
    tx: Mutex<Option<crate::feed::FeedSender>>,
    /// Set to `true` by [`Inlet::close`]; publish connections watch it.
    closed: watch::Sender<bool>,
    /// The endpoint's counters, listed among the feeds as `publish`.
    pub status: Arc<FeedStatus>,
}

impl Inlet {
    /// An inlet sending into `tx`; `None` disables publishing.
    pub fn new(tx: Option<crate::feed::FeedSender>, status: Arc<FeedStatus>) -> Inlet {
        Inlet {
            tx: Mutex::new(tx),
            closed: watch::Sender::new(false),
            status,
        }
    }

    /// A sender for one connection, or `None` once closed or when disabled.
    pub fn sender(&self) -> Option<crate::feed::FeedSender> {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Drops the inlet's sender and tells open publish connections to close.
    pub fn close(&self) {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.closed.send_replace(true);
    }

    /// A receiver that turns `true` when the inlet closes.
    pub fn watch_closed(&self) -> watch::Receiver<bool> {
        self.closed.subscribe()
    }
}

/// Why a publisher was not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum AuthError {
    /// The server has no `publish_token`: the endpoint is off.
    #[error("publishing is disabled on this server (no publish_token configured)")]
    Disabled,
    /// Neither `?token=` nor `Authorization: Bearer` was given.
    #[error("missing token: pass ?token=… or Authorization: Bearer …")]
    Missing,
    /// A token was given and it is not the configured one.
    #[error("invalid token")]
    Invalid,
}

/// Checks a request's token against `expected` (the config's `publish_token`).
///
/// `query` is the request URI's query string, `authorization` the raw
/// `Authorization` header. The token is compared in constant time.
pub fn authorize(
    expected: Option<&str>,
    query: Option<&str>,
    authorization: Option<&[u8]>,
) -> Result<(), AuthError> {
    let Some(expected) = expected else {
        return Err(AuthError::Disabled);
    };
    let from_header = authorization.and_then(|h| {
        let h = std::str::from_utf8(h).ok()?.trim();
        let (scheme, token) = h.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_string())
    });
    let from_query = query.and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("token="))
            .map(percent_decode)
    });
    let Some(given) = from_header.or(from_query) else {
        return Err(AuthError::Missing);
    };
    if constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(AuthError::Invalid)
    }
}

/// Decodes `%XX` escapes and `+`; invalid escapes stay as they are.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Equality whose time does not depend on where the inputs first differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a published message was rejected. The connection stays open.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PublishError {
    /// The text is not valid JSON.
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// The JSON is neither a tick object nor an array of them.
    #[error("a published message must be a tick object or an array of tick objects")]
    NotTicks,
    /// An empty array.
    #[error("empty array: send at least one tick")]
    Empty,
    /// One tick of the message is bad; `index` is its position (0 for a lone object).
    #[error("tick {index}: {problem}")]
    Tick {
        /// Position of the bad tick in the message.
        index: usize,
        /// What is wrong with it.
        problem: TickProblem,
    },
    /// A binary message whose length does not fit its header.
    #[error("binary message of {len} bytes does not hold a 16-byte header and {count} records of 72 bytes")]
    BinaryLength {
        /// Bytes received.
        len: usize,
        /// Records the header announced.
        count: u32,
    },
    /// A binary header with another version or record size.
    #[error("binary header: version {version}, record_size {record_size} (expected {VERSION} and {RECORD_SIZE})")]
    BinaryVersion {
        /// Version found.
        version: u16,
        /// Record size found.
        record_size: u16,
    },
}

/// What is wrong with one published tick.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TickProblem {
    /// It is not a JSON object.
    #[error("not a JSON object")]
    NotObject,
    /// A required field is absent.
    #[error("missing field \"{0}\"")]
    Missing(&'static str),
    /// A field has the wrong JSON type.
    #[error("invalid \"{field}\": {expected}")]
    Type {
        /// The field.
        field: &'static str,
        /// What it should be.
        expected: &'static str,
    },
    /// `kind` is not `trade`, `quote` or `book` (binary: not 1, 2 or 3).
    #[error("unknown kind {0:?} (expected \"trade\", \"quote\" or \"book\")")]
    Kind(String),
    /// A book change with no level in `bids` or `asks`.
    #[error("a book change needs at least one level in \"bids\" or \"asks\"")]
    EmptyBook,
    /// A level is not a `["price","size"]` pair of decimal strings.
    #[error("invalid \"{0}\": each level is a [\"price\",\"size\"] pair of decimal strings")]
    Level(&'static str),
    /// A negative size.
    #[error("invalid \"{0}\": a size is 0 (removes the level) or more")]
    NegativeSize(&'static str),
    /// A binary book record flagged snapshot, or with another side byte.
    #[error("binary book records are changes of one level, side 0 or 1; publish a book snapshot as JSON (\"flags\":[\"snapshot\"])")]
    BinaryBook,
    /// The symbol name is not acceptable.
    #[error("invalid symbol {name:?}: {source}")]
    Symbol {
        /// The name given.
        name: String,
        /// Why it is refused.
        source: SymbolError,
    },
    /// A binary record's symbol id is not in `/symbols`.
    #[error("unknown symbol id {0} (binary records carry ids from /symbols)")]
    SymbolId(u32),
    /// A price or size is not a valid decimal.
    #[error("invalid \"{field}\": {source}")]
    Decimal {
        /// The field.
        field: &'static str,
        /// Why it is refused.
        source: FixedError,
    },
}

/// Decodes published messages into [`FeedTick`]s, reusing its buffers. Sans-IO: the
/// caller passes the bytes and `now_ns` (stamped on ticks without a `ts_event`).
pub struct Decoder {
    /// Mutable copy of the message: simd-json unescapes strings in place.
    input: Vec<u8>,
    /// simd-json's stage buffers.
    buffers: simd_json::Buffers,
    /// The tape's node vector, emptied between messages; `None` only while lent out.
    tape: Option<Tape<'static>>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder").finish_non_exhaustive()
    }
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    /// A decoder with small initial buffers.
    pub fn new() -> Decoder {
        Decoder {
            input: Vec::with_capacity(1024),
            buffers: simd_json::Buffers::new(1024),
            tape: Some(Tape(Vec::with_capacity(64))),
        }
    }

    /// Decodes a JSON text message (one tick object, or an array of them) into `out`.
    /// On error `out` is left empty: a message is published whole or not at all. A
    /// book snapshot sets its levels (see [`Decoder::decode_text_against`]).
    pub fn decode_text(
        &mut self,
        message: &[u8],
        now_ns: u64,
        out: &mut Vec<FeedTick>,
    ) -> Result<(), PublishError> {
        self.decode_text_against(message, now_ns, &|_| None, out)
    }

    /// [`Decoder::decode_text`], with `book` giving the server's current book of a
    /// symbol: a book object flagged `snapshot` ("the whole book is this") becomes the
    /// removal of every level of that book it does not hold, then its levels that are
    /// new or resized. (Changes to the same symbol earlier in the same message are not
    /// in `book`: send them in a message of their own.)
    pub fn decode_text_against(
        &mut self,
        message: &[u8],
        now_ns: u64,
        book: &dyn Fn(Symbol) -> Option<crate::lvc::BookSnapshot>,
        out: &mut Vec<FeedTick>,
    ) -> Result<(), PublishError> {
        out.clear();
        self.input.clear();
        self.input.extend_from_slice(message);
        let mut tape: Tape<'_> = self.tape.take().unwrap_or_else(|| Tape(Vec::new())).reset();
        let result = match simd_json::fill_tape(&mut self.input, &mut self.buffers, &mut tape) {
            Ok(()) => ticks_from_json(tape.as_value(), now_ns, book, out),
            Err(e) => Err(PublishError::InvalidJson(e.to_string())),
        };
        self.tape = Some(tape.reset());
        if result.is_err() {
            out.clear();
        }
        result
    }

    /// Decodes a binary message (the protocol's header and records; symbols by id from
    /// `symbols`) into `out`. On error `out` is left empty.
    pub fn decode_binary(
        &mut self,
        message: &[u8],
        symbols: &SymbolTable,
        now_ns: u64,
        out: &mut Vec<FeedTick>,
    ) -> Result<(), PublishError> {
        out.clear();
        let result = ticks_from_binary(message, symbols, now_ns, out);
        if result.is_err() {
            out.clear();
        }
        result
    }
}

fn ticks_from_json(
    root: Value<'_, '_>,
    now_ns: u64,
    book: &dyn Fn(Symbol) -> Option<crate::lvc::BookSnapshot>,
    out: &mut Vec<FeedTick>,
) -> Result<(), PublishError> {
    if let Some(list) = root.as_array() {
        if list.is_empty() {
            return Err(PublishError::Empty);
        }
        for (index, v) in list.iter().enumerate() {
            ticks_of(&v, now_ns, book, out)
                .map_err(|problem| PublishError::Tick { index, problem })?;
        }
        Ok(())
    } else if root.is_object() {
        ticks_of(&root, now_ns, book, out)
            .map_err(|problem| PublishError::Tick { index: 0, problem })
    } else {
        Err(PublishError::NotTicks)
    }
}

/// The ticks of one published object: one for a trade or a quote, one per level
/// change for a book.
fn ticks_of(
    v: &Value<'_, '_>,
    now_ns: u64,
    book: &dyn Fn(Symbol) -> Option<crate::lvc::BookSnapshot>,
    out: &mut Vec<FeedTick>,
) -> Result<(), TickProblem> {
    if !v.is_object() {
        return Err(TickProblem::NotObject);
    }
    let name = str_field(v, "symbol")?;
    let symbol = Symbol::new(name).map_err(|source| TickProblem::Symbol {
        name: name.to_string(),
        source,
    })?;
    let ts_event = match v.get("ts_event") {
        None => now_ns,
        Some(t) => t.as_u64().ok_or(TickProblem::Type {
            field: "ts_event",
            expected: "an integer, ns since the Unix epoch",
        })?,
    };
    let body = match str_field(v, "kind")? {
        "trade" => Body::trade(decimal(v, "price")?, decimal(v, "size")?),
        "quote" => Body::Quote {
            bid_px: decimal(v, "bid_px")?,
            bid_sz: decimal(v, "bid_sz")?,
            ask_px: decimal(v, "ask_px")?,
            ask_sz: decimal(v, "ask_sz")?,
        },
        "book" => return book_ticks(v, symbol, ts_event, book, out),
        other => return Err(TickProblem::Kind(other.to_string())),
    };
    out.push(FeedTick {
        symbol,
        ts_event,
        body,
    });
    Ok(())
}

/// A published book object: `bids` and `asks` lists of `["price","size"]` (either
/// may be absent), `flags` optionally holding `"snapshot"`.
fn book_ticks(
    v: &Value<'_, '_>,
    symbol: Symbol,
    ts_event: u64,
    book: &dyn Fn(Symbol) -> Option<crate::lvc::BookSnapshot>,
    out: &mut Vec<FeedTick>,
) -> Result<(), TickProblem> {
    use crate::book::Side;
    let snapshot = match v.get("flags") {
        None => false,
        Some(f) => f
            .as_array()
            .ok_or(TickProblem::Type {
                field: "flags",
                expected: "a list of flag names",
            })?
            .iter()
            .any(|f| f.as_str() == Some("snapshot")),
    };
    let start = out.len();
    for (field, side) in [("bids", Side::Bid), ("asks", Side::Ask)] {
        let Some(levels) = v.get(field) else { continue };
        let levels = levels.as_array().ok_or(TickProblem::Level(field))?;
        for level in levels.iter() {
            let pair = level.as_array().ok_or(TickProblem::Level(field))?;
            if pair.len() != 2 {
                return Err(TickProblem::Level(field));
            }
            let dec = |i: usize| -> Result<i64, TickProblem> {
                let s = pair
                    .get(i)
                    .and_then(|p| p.into_string())
                    .ok_or(TickProblem::Level(field))?;
                fixed::parse(s.as_bytes()).map_err(|source| TickProblem::Decimal { field, source })
            };
            let (price, size) = (dec(0)?, dec(1)?);
            if size < 0 {
                return Err(TickProblem::NegativeSize(field));
            }
            out.push(FeedTick {
                symbol,
                ts_event,
                body: Body::book(side, price, size),
            });
        }
    }
    if !snapshot {
        if out.len() == start {
            return Err(TickProblem::EmptyBook);
        }
        return Ok(());
    }
    // A snapshot: the current book's levels it leaves out are removed first, then
    // its levels that change the book.
    let current = book(symbol).unwrap_or_default();
    let levels: Vec<FeedTick> = out.drain(start..).collect();
    let held = |side: Side, price: i64| {
        levels.iter().any(|t| {
            matches!(t.body, Body::Book { side: s, price: p, size, .. } if s == side && p == price && size > 0)
        })
    };
    for (side, current_levels) in [(Side::Bid, &current.bids), (Side::Ask, &current.asks)] {
        for &(price, _) in current_levels {
            if !held(side, price) {
                out.push(FeedTick {
                    symbol,
                    ts_event,
                    body: Body::book(side, price, 0),
                });
            }
        }
    }
    for t in levels {
        if let Body::Book {
            side, price, size, ..
        } = t.body
        {
            let now = match side {
                Side::Bid => &current.bids,
                Side::Ask => &current.asks,
            };
            if size > 0 && !now.contains(&(price, size)) {
                out.push(t);
            }
        }
    }
    Ok(())
}

fn str_field<'v>(v: &Value<'v, '_>, field: &'static str) -> Result<&'v str, TickProblem> {
    v.get(field)
        .ok_or(TickProblem::Missing(field))?
        .into_string()
        .ok_or(TickProblem::Type {
            field,
            expected: "a string",
        })
}

fn decimal(v: &Value<'_, '_>, field: &'static str) -> Result<i64, TickProblem> {
    let s = str_field(v, field).map_err(|e| match e {
        TickProblem::Type { field, .. } => TickProblem::Type {
            field,
            expected: "a decimal string such as \"1.25\"",
        },
        other => other,
    })?;
    fixed::parse(s.as_bytes()).map_err(|source| TickProblem::Decimal { field, source })
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn ticks_from_binary(
    message: &[u8],
    symbols: &SymbolTable,
    now_ns: u64,
    out: &mut Vec<FeedTick>,
) -> Result<(), PublishError> {
    if message.len() < HEADER_SIZE {
        return Err(PublishError::BinaryLength {
            len: message.len(),
            count: 0,
        });
    }
    let version = u16_at(message, 0);
    let record_size = u16_at(message, 2);
    let count = u32_at(message, 4);
    if version != VERSION || usize::from(record_size) != RECORD_SIZE {
        return Err(PublishError::BinaryVersion {
            version,
            record_size,
        });
    }
    let body = &message[HEADER_SIZE..];
    if count == 0 || body.len() != count as usize * RECORD_SIZE {
        return Err(PublishError::BinaryLength {
            len: message.len(),
            count,
        });
    }
    for (index, r) in body.chunks_exact(RECORD_SIZE).enumerate() {
        let fail = |problem| PublishError::Tick { index, problem };
        let kind = Kind::from_u8(r[0]).ok_or_else(|| fail(TickProblem::Kind(r[0].to_string())))?;
        let id = u32_at(r, 4);
        let symbol = symbols
            .name(id)
            .ok_or_else(|| fail(TickProblem::SymbolId(id)))?;
        let ts_event = match u64_at(r, 16) {
            0 => now_ns,
            t => t,
        };
        let v = |i: usize| u64_at(r, 40 + 8 * i) as i64;
        let body = match kind {
            Kind::Trade => Body::trade(v(0), v(1)),
            Kind::Quote => Body::from_values(Kind::Quote, [v(0), v(1), v(2), v(3)]),
            // One level change; a snapshot needs the server's book: JSON only.
            Kind::Book => {
                let side = crate::book::Side::from_u8((v(2) & 0xff) as u8);
                let snapshot = r[1] & crate::tick::Flags::SNAPSHOT.0 != 0;
                match side {
                    Some(side) if !snapshot => {
                        if v(1) < 0 {
                            return Err(fail(TickProblem::NegativeSize("size")));
                        }
                        Body::book(side, v(0), v(1))
                    }
                    _ => return Err(fail(TickProblem::BinaryBook)),
                }
            }
        };
        out.push(FeedTick {
            symbol,
            ts_event,
            body,
        });
    }
    Ok(())
}

/// What a frame did to the message being gathered ([`Reassembly::push`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    /// The frame is a whole message: its payload is the message.
    Whole,
    /// The frame finished a fragmented message of this opcode: [`Reassembly::take`].
    Done(OpCode),
    /// A fragment; the message goes on.
    More,
}

/// Gathers a `/publish` message from its frames, with the size limit on the whole
/// message and inclusive, as `/ws`'s reader applies it (`wire::frame`):
/// fastwebsockets' `FragmentCollector` puts no limit on a reassembled message, so
/// endless fragments would grow without bound. Sans-IO.
#[derive(Debug)]
struct Reassembly {
    /// Largest message, in bytes (inclusive).
    limit: usize,
    /// Opcode of the fragmented message in progress.
    opcode: Option<OpCode>,
    data: Vec<u8>,
}

impl Reassembly {
    fn new(limit: usize) -> Reassembly {
        Reassembly {
            limit,
            opcode: None,
            data: Vec::new(),
        }
    }

    /// Takes one text, binary or continuation frame.
    fn push(&mut self, fin: bool, opcode: OpCode, payload: &[u8]) -> Result<Piece, FrameError> {
        let too_big = FrameError::TooBig { limit: self.limit };
        match (opcode, self.opcode) {
            (OpCode::Continuation, None) => Err(FrameError::UnexpectedContinuation),
            (OpCode::Continuation, Some(started)) => {
                if self.data.len() + payload.len() > self.limit {
                    return Err(too_big);
                }
                self.data.extend_from_slice(payload);
                if !fin {
                    return Ok(Piece::More);
                }
                self.opcode = None;
                if started == OpCode::Text && std::str::from_utf8(&self.data).is_err() {
                    return Err(FrameError::InvalidUtf8);
                }
                Ok(Piece::Done(started))
            }
            (_, Some(_)) => Err(FrameError::ExpectedContinuation),
            (_, None) if payload.len() > self.limit => Err(too_big),
            (_, None) if fin => Ok(Piece::Whole),
            (_, None) => {
                self.opcode = Some(opcode);
                self.data.clear();
                self.data.extend_from_slice(payload);
                Ok(Piece::More)
            }
        }
    }

    /// The message a [`Piece::Done`] finished.
    fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.data)
    }

    /// Hands the buffer back for the next fragmented message (freed if it is large).
    fn give_back(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() <= 64 * 1024 {
            buf.clear();
            self.data = buf;
        }
    }
}

/// Why the sequencer did not take a tick.
enum Stop {
    Shutdown,
    Stalled,
}

/// Sends `tick`, waiting (without blocking the core's thread) while the channel is
/// full, for at most `stall`.
async fn forward(
    tx: &crate::feed::FeedSender,
    tick: FeedTick,
    stall: Duration,
    closed: &watch::Receiver<bool>,
) -> Result<(), Stop> {
    const PAUSE: Duration = Duration::from_micros(500);
    let mut tick = tick;
    let mut waited = Duration::ZERO;
    loop {
        match tx.try_send(tick) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Disconnected(_)) => return Err(Stop::Shutdown),
            Err(TrySendError::Full(t)) => {
                if *closed.borrow() {
                    return Err(Stop::Shutdown);
                }
                if waited >= stall {
                    return Err(Stop::Stalled);
                }
                tick = t;
                tokio::time::sleep(PAUSE).await;
                waited += PAUSE;
            }
        }
    }
}

/// Runs one publisher connection (upgraded by the HTTP layer) until it closes.
pub async fn run(
    ws: fastwebsockets::WebSocket<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>,
    shared: Arc<App>,
    tx: crate::feed::FeedSender,
    peer: SocketAddr,
) {
    let status = shared.publish.status.clone();
    let mut closed = shared.publish.watch_closed();
    let max = shared.config.max_publish_message_bytes;
    let stall = Duration::from_millis(shared.config.stall_timeout_ms.max(1));
    let mut ws = ws;
    // fastwebsockets refuses a frame of `max_message_size` bytes or more; the limit
    // is inclusive, and `Reassembly` applies it to the whole message.
    ws.set_max_message_size(crate::wsclient::inclusive_limit(max));
    ws.set_auto_pong(true);
    ws.set_auto_close(true);
    let mut reassembly = Reassembly::new(max);
    let mut decoder = Decoder::new();
    let mut ticks = Vec::with_capacity(64);
    status
        .connected
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::debug!(%peer, "publisher connected");
    let close: Option<(CloseCode, String)> = loop {
        let frame = tokio::select! {
            biased;
            _ = closed.wait_for(|c| *c) => break Some((CloseCode::GoingAway, "server shutting down".into())),
            f = ws.read_frame() => f,
        };
        let now = now_ns();
        let mut decode = |opcode: OpCode, message: &[u8]| match opcode {
            OpCode::Text => decoder.decode_text_against(
                message,
                now,
                &|symbol| {
                    let id = shared.symbols.id_of(symbol.as_str())?;
                    Some(shared.lvc.book(id))
                },
                &mut ticks,
            ),
            _ => decoder.decode_binary(message, &shared.symbols, now, &mut ticks),
        };
        let decoded = match frame {
            Ok(f) => match f.opcode {
                OpCode::Close => break None,
                OpCode::Ping | OpCode::Pong => continue,
                opcode => match reassembly.push(f.fin, opcode, &f.payload) {
                    Ok(Piece::Whole) => decode(opcode, &f.payload),
                    Ok(Piece::Done(opcode)) => {
                        let message = reassembly.take();
                        let decoded = decode(opcode, &message);
                        reassembly.give_back(message);
                        decoded
                    }
                    Ok(Piece::More) => continue,
                    Err(e) => break Some((e.close_code(), e.to_string())),
                },
            },
            Err(WebSocketError::FrameTooLarge) => {
                break Some((
                    CloseCode::TooBig,
                    format!("message too big (limit {max} bytes)"),
                ))
            }
            Err(WebSocketError::InvalidUTF8) => {
                break Some((CloseCode::InvalidPayload, "invalid UTF-8".into()))
            }
            Err(
                WebSocketError::UnexpectedEOF
                | WebSocketError::ConnectionClosed
                | WebSocketError::IoError(_),
            ) => break None,
            Err(other) => break Some((CloseCode::Protocol, format!("protocol error: {other}"))),
        };
        status
            .messages
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        status
            .last_message_ns
            .store(now, std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = decoded {
            status
                .parse_errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let reply = serde_json::json!({"type": "error", "message": e.to_string()});
            let bytes = serde_json::to_vec(&reply).unwrap_or_default();
            if ws
                .write_frame(Frame::text(Payload::Owned(bytes)))
                .await
                .is_err()
            {
                break None;
            }
            continue;
        }
        let mut stop = None;
        for t in ticks.drain(..) {
            match forward(&tx, t, stall, &closed).await {
                Ok(()) => {
                    status
                        .ticks
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Err(Stop::Shutdown) => {
                    stop = Some((CloseCode::GoingAway, "server shutting down".to_string()));
                    break;
                }
                Err(Stop::Stalled) => {
                    stop = Some((
                        CloseCode::TryAgainLater,
                        "try again later: the sequencer is not keeping up".to_string(),
                    ));
                    break;
                }
            }
        }
        if stop.is_some() {
            break stop;
        }
    };
    if let Some((code, reason)) = close {
        let payload = code.payload(&reason);
        let _ = ws
            .write_frame(Frame::new(
                true,
                OpCode::Close,
                None,
                Payload::Borrowed(payload.as_bytes()),
            ))
            .await;
    }
    status
        .connected
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    tracing::debug!(%peer, "publisher disconnected");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The limit is on the whole message and inclusive: a message of exactly the limit
    /// passes, whole or in fragments; one byte more fails at the frame that passes it.
    #[test]
    fn reassembly_limit_is_inclusive_and_on_the_whole_message() {
        let mut r = Reassembly::new(10);
        assert_eq!(r.push(true, OpCode::Binary, &[0; 10]), Ok(Piece::Whole));
        assert_eq!(
            r.push(true, OpCode::Text, &[b'a'; 11]),
            Err(FrameError::TooBig { limit: 10 })
        );
        let mut r = Reassembly::new(10);
        assert_eq!(r.push(false, OpCode::Text, b"abcd"), Ok(Piece::More));
        assert_eq!(r.push(false, OpCode::Continuation, b"efg"), Ok(Piece::More));
        assert_eq!(
            r.push(true, OpCode::Continuation, b"hij"),
            Ok(Piece::Done(OpCode::Text))
        );
        assert_eq!(r.take(), b"abcdefghij");
        let mut r = Reassembly::new(10);
        assert_eq!(r.push(false, OpCode::Binary, &[0; 6]), Ok(Piece::More));
        assert_eq!(
            r.push(false, OpCode::Continuation, &[0; 5]),
            Err(FrameError::TooBig { limit: 10 })
        );
        // Endless empty fragments hold nothing.
        let mut r = Reassembly::new(10);
        assert_eq!(r.push(false, OpCode::Binary, b""), Ok(Piece::More));
        for _ in 0..1000 {
            assert_eq!(r.push(false, OpCode::Continuation, b""), Ok(Piece::More));
        }
        assert_eq!(r.data.len(), 0);
    }

    #[test]
    fn reassembly_order_and_utf8() {
        let mut r = Reassembly::new(100);
        assert_eq!(
            r.push(true, OpCode::Continuation, b"x"),
            Err(FrameError::UnexpectedContinuation)
        );
        assert_eq!(r.push(false, OpCode::Text, b"a"), Ok(Piece::More));
        assert_eq!(
            r.push(true, OpCode::Binary, b"b"),
            Err(FrameError::ExpectedContinuation)
        );
        let mut r = Reassembly::new(100);
        assert_eq!(r.push(false, OpCode::Text, &[0xe2, 0x82]), Ok(Piece::More));
        assert_eq!(
            r.push(true, OpCode::Continuation, &[0xac]),
            Ok(Piece::Done(OpCode::Text))
        );
        assert_eq!(r.take(), "€".as_bytes());
        assert_eq!(r.push(false, OpCode::Text, &[0xe2, 0x82]), Ok(Piece::More));
        assert_eq!(
            r.push(true, OpCode::Continuation, b"!"),
            Err(FrameError::InvalidUtf8)
        );
    }

    #[test]
    fn authorize_by_query_or_bearer() {
        let t = Some("s3cret");
        assert_eq!(authorize(t, Some("token=s3cret"), None), Ok(()));
        assert_eq!(authorize(t, Some("a=1&token=s3cret"), None), Ok(()));
        assert_eq!(authorize(t, None, Some(b"Bearer s3cret")), Ok(()));
        assert_eq!(authorize(t, None, Some(b"bearer  s3cret ")), Ok(()));
        assert_eq!(
            authorize(t, Some("token=s3cre"), None),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            authorize(t, None, Some(b"Basic s3cret")),
            Err(AuthError::Missing)
        );
        assert_eq!(authorize(t, None, None), Err(AuthError::Missing));
        assert_eq!(
            authorize(None, Some("token=x"), None),
            Err(AuthError::Disabled)
        );
        assert_eq!(authorize(Some("a b"), Some("token=a%20b"), None), Ok(()));
        assert_eq!(authorize(Some("a%"), Some("token=a%"), None), Ok(()));
    }

    #[test]
    fn decodes_json_trade_quote_and_arrays() {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        d.decode_text(
            br#"{"symbol":"SYM0","kind":"trade","ts_event":5,"price":"1.5","size":"2"}"#,
            99,
            &mut out,
        )
        .unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].symbol.as_str(), "SYM0");
        assert_eq!(out[0].ts_event, 5);
        assert_eq!(out[0].body, Body::trade(150_000_000, 200_000_000));
        d.decode_text(
            br#"[{"symbol":"A","kind":"quote","bid_px":"1","bid_sz":"2","ask_px":"3","ask_sz":"4"},
                 {"symbol":"B","kind":"trade","price":"7","size":"1"}]"#,
            99,
            &mut out,
        )
        .unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].ts_event, 99, "no ts_event: now");
        assert_eq!(
            out[0].body.values(),
            [100_000_000, 200_000_000, 300_000_000, 400_000_000]
        );
    }

    #[test]
    fn names_the_problem() {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        let cases: [(&[u8], &str); 9] = [
            (b"nope", "invalid JSON"),
            (b"42", "must be a tick object"),
            (b"[]", "empty array"),
            (br#"{"kind":"trade"}"#, r#"tick 0: missing field "symbol""#),
            (
                br#"{"symbol":"A","kind":"trade","price":"1"}"#,
                r#"tick 0: missing field "size""#,
            ),
            (
                br#"[{"symbol":"A","kind":"trade","price":"1","size":"1"},{"symbol":"A","kind":"bid"}]"#,
                r#"tick 1: unknown kind "bid""#,
            ),
            (
                br#"{"symbol":"A","kind":"trade","price":1.5,"size":"1"}"#,
                r#"invalid "price": a decimal string"#,
            ),
            (
                br#"{"symbol":"A","kind":"trade","price":"1.x","size":"1"}"#,
                r#"invalid "price": invalid character"#,
            ),
            (
                br#"{"symbol":"A B","kind":"trade","price":"1","size":"1"}"#,
                "invalid symbol",
            ),
        ];
        for (input, want) in cases {
            let e = d.decode_text(input, 0, &mut out).unwrap_err().to_string();
            assert!(e.contains(want), "{e:?} should contain {want:?}");
            assert!(out.is_empty(), "all or nothing");
        }
        let e = d
            .decode_text(
                br#"{"symbol":"A","kind":"trade","ts_event":-1,"price":"1","size":"1"}"#,
                0,
                &mut out,
            )
            .unwrap_err();
        assert!(e.to_string().contains("ts_event"), "{e}");
    }

    fn record(kind: u8, id: u32, ts: u64, v: [i64; 4]) -> Vec<u8> {
        let mut r = vec![0u8; RECORD_SIZE];
        r[0] = kind;
        r[4..8].copy_from_slice(&id.to_le_bytes());
        r[16..24].copy_from_slice(&ts.to_le_bytes());
        for (i, x) in v.iter().enumerate() {
            r[40 + 8 * i..48 + 8 * i].copy_from_slice(&x.to_le_bytes());
        }
        r
    }

    fn message(records: &[Vec<u8>]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&VERSION.to_le_bytes());
        m.extend_from_slice(&(RECORD_SIZE as u16).to_le_bytes());
        m.extend_from_slice(&(records.len() as u32).to_le_bytes());
        m.extend_from_slice(&0u64.to_le_bytes());
        for r in records {
            m.extend_from_slice(r);
        }
        m
    }

    #[test]
    fn decodes_binary_records_by_symbol_id() {
        let symbols = SymbolTable::new(4);
        symbols.intern(Symbol::new("X").unwrap()).unwrap();
        let mut d = Decoder::new();
        let mut out = Vec::new();
        let m = message(&[record(1, 0, 7, [5, 6, 0, 0]), record(2, 0, 0, [1, 2, 3, 4])]);
        d.decode_binary(&m, &symbols, 50, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].body, Body::trade(5, 6));
        assert_eq!((out[0].ts_event, out[1].ts_event), (7, 50));
        assert_eq!(out[1].body.values(), [1, 2, 3, 4]);

        let bad_id = message(&[record(1, 3, 7, [5, 6, 0, 0])]);
        let e = d.decode_binary(&bad_id, &symbols, 0, &mut out).unwrap_err();
        assert!(e.to_string().contains("unknown symbol id 3"), "{e}");
        let bad_kind = message(&[record(9, 0, 7, [5, 6, 0, 0])]);
        let e = d
            .decode_binary(&bad_kind, &symbols, 0, &mut out)
            .unwrap_err();
        assert!(e.to_string().contains("unknown kind"), "{e}");
        let e = d
            .decode_binary(&m[..20], &symbols, 0, &mut out)
            .unwrap_err();
        assert!(matches!(e, PublishError::BinaryLength { .. }), "{e}");
        let e = d.decode_binary(&[1, 2], &symbols, 0, &mut out).unwrap_err();
        assert!(matches!(e, PublishError::BinaryLength { .. }), "{e}");
        let mut v2 = m.clone();
        v2[0] = 2;
        let e = d.decode_binary(&v2, &symbols, 0, &mut out).unwrap_err();
        assert!(matches!(e, PublishError::BinaryVersion { .. }), "{e}");
        assert!(out.is_empty());
    }

    use crate::feed::book_levels as levels;

    /// A book object is its level changes; flagged snapshot, it is the difference
    /// from the server's book; bad levels name the problem and publish nothing.
    #[test]
    fn decodes_book_changes_and_snapshots() {
        use crate::book::Side::{Ask, Bid};
        use crate::fixed::SCALE;
        let mut d = Decoder::new();
        let mut out = Vec::new();
        d.decode_text(
            br#"{"symbol":"A","kind":"book","ts_event":9,"bids":[["101.5","2"],["101","0"]],"asks":[["102","1"]]}"#,
            0,
            &mut out,
        )
        .unwrap();
        assert_eq!(
            levels(&out),
            [
                (Bid, 101 * SCALE + SCALE / 2, 2 * SCALE),
                (Bid, 101 * SCALE, 0),
                (Ask, 102 * SCALE, SCALE)
            ]
        );
        assert!(out.iter().all(|t| t.ts_event == 9));
        // The server's book: bid 100 × 1, bid 99 × 1, ask 102 × 1.
        let current = |_: Symbol| {
            Some(crate::lvc::BookSnapshot {
                seq: 5,
                bids: vec![(100 * SCALE, SCALE), (99 * SCALE, SCALE)],
                asks: vec![(102 * SCALE, SCALE)],
                ..Default::default()
            })
        };
        d.decode_text_against(
            br#"{"symbol":"A","kind":"book","flags":["snapshot"],"bids":[["100","3"]],"asks":[["102","1"]]}"#,
            0,
            &current,
            &mut out,
        )
        .unwrap();
        assert_eq!(
            levels(&out),
            [(Bid, 99 * SCALE, 0), (Bid, 100 * SCALE, 3 * SCALE)],
            "99 removed, 100 resized, ask 102 unchanged"
        );
        d.decode_text_against(
            br#"{"symbol":"A","kind":"book","flags":["snapshot"]}"#,
            0,
            &current,
            &mut out,
        )
        .unwrap();
        assert_eq!(levels(&out).len(), 3, "an empty snapshot empties the book");
        for (input, want) in [
            (r#"{"symbol":"A","kind":"book"}"#, "at least one level"),
            (
                r#"{"symbol":"A","kind":"book","bids":[]}"#,
                "at least one level",
            ),
            (
                r#"{"symbol":"A","kind":"book","bids":[["1"]]}"#,
                r#"invalid "bids""#,
            ),
            (
                r#"{"symbol":"A","kind":"book","bids":[[1,2]]}"#,
                r#"invalid "bids""#,
            ),
            (
                r#"{"symbol":"A","kind":"book","asks":"x"}"#,
                r#"invalid "asks""#,
            ),
            (
                r#"{"symbol":"A","kind":"book","asks":[["1","-2"]]}"#,
                "a size is 0",
            ),
            (
                r#"{"symbol":"A","kind":"book","flags":"snapshot","bids":[["1","1"]]}"#,
                "flags",
            ),
            (
                r#"[{"symbol":"A","kind":"book","bids":[["1","1"]]},{"symbol":"A","kind":"book","bids":[["x","1"]]}]"#,
                "tick 1: invalid \"bids\"",
            ),
        ] {
            let e = d
                .decode_text(input.as_bytes(), 0, &mut out)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{input}: {e:?} should contain {want:?}");
            assert!(out.is_empty(), "all or nothing");
        }
    }

    #[test]
    fn binary_book_records_are_level_changes() {
        use crate::book::Side;
        let symbols = SymbolTable::new(4);
        symbols.intern(Symbol::new("X").unwrap()).unwrap();
        let mut d = Decoder::new();
        let mut out = Vec::new();
        let m = message(&[
            record(3, 0, 7, [100, 5, 1, 1]),
            record(3, 0, 7, [99, 0, 0, 1]),
        ]);
        d.decode_binary(&m, &symbols, 0, &mut out).unwrap();
        assert_eq!(levels(&out), [(Side::Ask, 100, 5), (Side::Bid, 99, 0)]);
        let mut snapshot = record(3, 0, 7, [100, 5, 0, 1]);
        snapshot[1] = 1;
        for bad in [
            snapshot,
            record(3, 0, 7, [100, 5, 2, 1]),
            record(3, 0, 7, [100, -5, 0, 1]),
        ] {
            assert!(d
                .decode_binary(&message(&[bad]), &symbols, 0, &mut out)
                .is_err());
            assert!(out.is_empty());
        }
    }
}
