//! `Normalizer`: venue JSON messages in, [`FeedTick`]s out, sans-IO.
//!
//! Each venue has its own file ([`super::binance`], [`super::coinbase`]) with the raw
//! JSON it parses quoted next to the type that parses it. This file holds what they
//! share: the reusable parse buffers, the [`Normalized`] result, the error type and the
//! per-symbol trade-id tracker that turns a venue's dense counter into gap counts.
//!
//! A normalizer takes the message bytes and `now_ns` (the time to stamp on messages
//! that carry no time of their own) and never touches a socket or a clock, so the same
//! code serves the live exchange adapters, the replay adapter, the tests and the
//! benchmarks.
//!
//! JSON is parsed with simd-json into its tape (a flat `Vec` of nodes that borrows
//! strings from the input). The input copy, simd-json's stage buffers and the tape are
//! all kept in [`JsonScratch`] and reused, so after the first few messages a message
//! costs no allocation. Prices and sizes are read from the decimal strings with
//! [`fixed::parse`], never through `f64`.

use std::collections::HashMap;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use simd_json::prelude::*;
use simd_json::tape::{Tape, Value};
use thiserror::Error;

use super::binance::BinanceNormalizer;
use super::coinbase::CoinbaseNormalizer;
use super::FeedTick;
use crate::fixed::{self, FixedError};
use crate::symbol::{Symbol, SymbolError};

/// Default largest venue message accepted, in bytes: 64 KiB. The venues' trade and
/// quote messages are a few hundred bytes; a larger message is counted and skipped.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 << 10;

/// A venue whose message format tickcast can normalize.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Venue {
    /// Binance spot market streams (combined-stream envelope or raw streams).
    Binance,
    /// Coinbase Exchange WebSocket feed.
    Coinbase,
}

impl Venue {
    /// Every venue, in a stable order.
    pub const ALL: [Venue; 2] = [Venue::Binance, Venue::Coinbase];

    /// Lower-case name, as in configs and `--feed` flags.
    pub fn name(self) -> &'static str {
        match self {
            Venue::Binance => "binance",
            Venue::Coinbase => "coinbase",
        }
    }

    /// The symbol prefix used when none is configured: `BINANCE`, `COINBASE`.
    pub fn default_prefix(self) -> &'static str {
        match self {
            Venue::Binance => "BINANCE",
            Venue::Coinbase => "COINBASE",
        }
    }

    /// Guesses the venue of one message from its shape: a top-level `type` key is
    /// Coinbase; `stream`, `e`, `result` or a bare book ticker (`u` and `b`) is
    /// Binance. `None` when the message is not a JSON object or fits neither.
    pub fn detect(message: &[u8]) -> Option<Venue> {
        let mut scratch = JsonScratch::new();
        scratch
            .parse(message, |v| {
                if !v.is_object() {
                    return Ok(None);
                }
                if v.contains_key("type") {
                    Ok(Some(Venue::Coinbase))
                } else if v.contains_key("stream")
                    || v.contains_key("e")
                    || v.contains_key("result")
                    || (v.contains_key("u") && v.contains_key("b"))
                {
                    Ok(Some(Venue::Binance))
                } else {
                    Ok(None)
                }
            })
            .ok()
            .flatten()
    }
}

impl std::fmt::Display for Venue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a known venue.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown venue {0:?}: expected `binance` or `coinbase`")]
pub struct UnknownVenue(pub String);

impl FromStr for Venue {
    type Err = UnknownVenue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Venue::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| UnknownVenue(s.to_string()))
    }
}

/// What a venue message was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// A trade; [`Normalized::tick`] holds it.
    Trade,
    /// A top-of-book quote; [`Normalized::tick`] holds it.
    Quote,
    /// A subscription acknowledgement; no tick.
    Subscribed,
    /// A venue heartbeat; no tick, but it may reveal a gap.
    Heartbeat,
    /// A trade or quote older than one already delivered for its symbol (a venue
    /// re-sends its last trade on subscribe); no tick.
    Duplicate,
    /// An order-book snapshot or diff: its level changes (none while the book is
    /// joining its snapshot) are in [`Normalizer::book_changes`]; no tick.
    Book,
}

/// Trades a venue's dense per-symbol counter says were missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Gap {
    /// The symbol, namespaced as its ticks are.
    pub symbol: Symbol,
    /// The id that should have come next.
    pub expected: u64,
    /// The id that came; for a heartbeat, one past the latest id it reported.
    pub got: u64,
}

impl Gap {
    /// How many ids were skipped.
    pub fn missed(&self) -> u64 {
        self.got.saturating_sub(self.expected)
    }
}

/// The result of normalizing one message that was understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Normalized {
    /// What the message was.
    pub kind: MessageKind,
    /// The tick, for trades and quotes.
    pub tick: Option<FeedTick>,
    /// A gap in the venue's trade ids found by this message.
    pub gap: Option<Gap>,
}

impl Normalized {
    /// A message that carries no tick and reveals no gap.
    pub const fn control(kind: MessageKind) -> Normalized {
        Normalized {
            kind,
            tick: None,
            gap: None,
        }
    }
}

/// Why a venue message could not be normalized. The message is skipped and counted
/// in [`super::FeedStatus::parse_errors`]; the feed goes on with the next one.
#[derive(Debug, Error)]
pub enum NormalizeError {
    /// The message is larger than the configured limit.
    #[error("message of {len} bytes exceeds the {max}-byte limit")]
    Oversize {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The message ends before its outermost JSON value closes (cut short).
    #[error("truncated message: input ends inside a JSON value")]
    Truncated,
    /// The message is not valid JSON (or not UTF-8).
    #[error("malformed JSON: {0}")]
    Malformed(simd_json::Error),
    /// Valid JSON, but not an object.
    #[error("message is not a JSON object")]
    NotObject,
    /// A field the venue documents is missing or has the wrong JSON type.
    #[error("missing or invalid field `{0}`")]
    Field(&'static str),
    /// A message type (or stream) this normalizer does not know.
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    /// A price or size is not a decimal that fits the fixed-point range.
    #[error("invalid decimal in `{field}`: {source}")]
    Decimal {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        source: FixedError,
    },
    /// A timestamp is not in the venue's documented form, or out of range.
    #[error("invalid timestamp in `{0}`")]
    Time(&'static str),
    /// The venue's symbol cannot be a tickcast symbol (too long with its prefix, or
    /// holding other characters).
    #[error("invalid symbol: {0}")]
    Symbol(#[from] SymbolError),
    /// The venue reported an error, such as a rejected subscription.
    #[error("venue error: {0}")]
    Venue(String),
}

impl NormalizeError {
    /// A short label for logs and metrics: `oversize`, `truncated`, `malformed`,
    /// `unknown_type`, `venue` or `invalid`.
    pub fn label(&self) -> &'static str {
        match self {
            NormalizeError::Oversize { .. } => "oversize",
            NormalizeError::Truncated => "truncated",
            NormalizeError::Malformed(_) => "malformed",
            NormalizeError::UnknownType(_) => "unknown_type",
            NormalizeError::Venue(_) => "venue",
            NormalizeError::NotObject
            | NormalizeError::Field(_)
            | NormalizeError::Decimal { .. }
            | NormalizeError::Time(_)
            | NormalizeError::Symbol(_) => "invalid",
        }
    }

    /// Whether sending the same request again cannot help: the venue itself rejected
    /// something (for example a subscription to an unknown product).
    pub fn is_terminal(&self) -> bool {
        matches!(self, NormalizeError::Venue(_))
    }

    /// An [`NormalizeError::UnknownType`] holding at most 64 bytes of `name`, so a
    /// hostile message cannot make the error large.
    pub(crate) fn unknown(name: &str) -> NormalizeError {
        let mut end = name.len().min(64);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        NormalizeError::UnknownType(name[..end].to_string())
    }
}

/// The buffers simd-json needs, kept between messages so parsing allocates nothing
/// once they have grown to the largest message seen.
pub struct JsonScratch {
    /// Mutable copy of the message: simd-json unescapes strings in place.
    input: Vec<u8>,
    /// simd-json's stage-1/stage-2 buffers.
    buffers: simd_json::Buffers,
    /// The tape's node vector, emptied between messages; `None` only while lent out.
    tape: Option<Tape<'static>>,
}

impl std::fmt::Debug for JsonScratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonScratch")
            .field("input_capacity", &self.input.capacity())
            .finish_non_exhaustive()
    }
}

impl Default for JsonScratch {
    fn default() -> Self {
        JsonScratch::new()
    }
}

impl JsonScratch {
    /// Empty buffers sized for typical messages (1 KiB).
    pub fn new() -> JsonScratch {
        JsonScratch {
            input: Vec::with_capacity(1024),
            buffers: simd_json::Buffers::new(1024),
            tape: Some(Tape(Vec::with_capacity(64))),
        }
    }

    /// Parses `message` and hands its root value to `f`.
    ///
    /// Errors: [`NormalizeError::Truncated`] when the input stops inside a JSON value,
    /// [`NormalizeError::Malformed`] for any other invalid JSON; `f`'s own errors pass
    /// through.
    pub fn parse<R>(
        &mut self,
        message: &[u8],
        f: impl FnOnce(Value<'_, '_>) -> Result<R, NormalizeError>,
    ) -> Result<R, NormalizeError> {
        self.input.clear();
        self.input.extend_from_slice(message);
        let mut tape: Tape<'_> = self.tape.take().unwrap_or_else(|| Tape(Vec::new())).reset();
        let result = match simd_json::fill_tape(&mut self.input, &mut self.buffers, &mut tape) {
            Ok(()) => f(tape.as_value()),
            Err(e) if ends_inside_value(message) => {
                drop(e);
                Err(NormalizeError::Truncated)
            }
            Err(e) => Err(NormalizeError::Malformed(e)),
        };
        self.tape = Some(tape.reset());
        result
    }
}

/// Whether `bytes` stop inside a JSON string, object or array: the mark of a message
/// cut short. Only called on the error path.
fn ends_inside_value(bytes: &[u8]) -> bool {
    let mut depth: usize = 0;
    let mut in_string = false;
    let mut escaped = false;
    let mut opened = false;
    for &c in bytes {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                opened = true;
            }
            b'}' | b']' => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            _ => {}
        }
    }
    in_string || (opened && depth > 0)
}

/// Field access on a parsed object, with errors that name the field.
pub(crate) trait Fields<'i> {
    /// A string field.
    fn str_field(&self, key: &'static str) -> Result<&'i str, NormalizeError>;
    /// An unsigned integer field.
    fn u64_field(&self, key: &'static str) -> Result<u64, NormalizeError>;
}

impl<'i> Fields<'i> for Value<'_, 'i> {
    fn str_field(&self, key: &'static str) -> Result<&'i str, NormalizeError> {
        self.get(key)
            .and_then(|v| v.into_string())
            .ok_or(NormalizeError::Field(key))
    }

    fn u64_field(&self, key: &'static str) -> Result<u64, NormalizeError> {
        self.get(key)
            .and_then(|v| v.as_u64())
            .ok_or(NormalizeError::Field(key))
    }
}

/// A field found by a single pass over an object ([`object_fields`]), or the error
/// that names it.
pub(crate) fn required<T>(value: Option<T>, key: &'static str) -> Result<T, NormalizeError> {
    value.ok_or(NormalizeError::Field(key))
}

/// A decimal-string field found by a single pass, as fixed point.
pub(crate) fn required_decimal(
    value: Option<&str>,
    key: &'static str,
) -> Result<i64, NormalizeError> {
    let s = required(value, key)?;
    fixed::parse(s.as_bytes()).map_err(|source| NormalizeError::Decimal { field: key, source })
}

/// The key/value pairs of an object, to read several fields in one pass: a lookup by
/// key scans the object from its start, so reading six fields with six lookups costs
/// several times more than one pass with a `match` on the key.
pub(crate) fn object_fields<'t, 'i>(
    v: &Value<'t, 'i>,
) -> Result<simd_json::tape::Object<'t, 'i>, NormalizeError> {
    v.as_object().ok_or(NormalizeError::NotObject)
}

/// Epoch milliseconds (or microseconds, when the value is too large to be
/// milliseconds: Binance sends those when asked for `timeUnit=MICROSECOND`) to ns.
pub(crate) fn epoch_ms_or_us_to_ns(value: u64, field: &'static str) -> Result<u64, NormalizeError> {
    // 10^14 ms is the year 5138; 10^14 µs is 1973. Anything above is microseconds.
    let ns = if value >= 100_000_000_000_000 {
        value.checked_mul(1_000)
    } else {
        value.checked_mul(1_000_000)
    };
    ns.ok_or(NormalizeError::Time(field))
}

/// What a [`TradeIds`] tracker made of one id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdCheck {
    /// The first id seen for the symbol, or the next one.
    InOrder,
    /// Ids were skipped.
    Gap(Gap),
    /// Not newer than the last one seen: already delivered.
    Stale,
}

/// The last trade id seen per symbol, to find gaps in a venue's dense per-symbol
/// trade counter (Binance `t`, Coinbase `trade_id`) and to drop re-sent trades.
#[derive(Debug, Default)]
pub(crate) struct TradeIds {
    last: HashMap<Symbol, u64>,
}

impl TradeIds {
    /// Records `id` for `symbol`.
    pub(crate) fn check(&mut self, symbol: Symbol, id: u64) -> IdCheck {
        match self.last.get_mut(&symbol) {
            None => {
                self.last.insert(symbol, id);
                IdCheck::InOrder
            }
            Some(last) if id <= *last => IdCheck::Stale,
            Some(last) => {
                let expected = *last + 1;
                *last = id;
                if id == expected {
                    IdCheck::InOrder
                } else {
                    IdCheck::Gap(Gap {
                        symbol,
                        expected,
                        got: id,
                    })
                }
            }
        }
    }

    /// A venue's report that `latest` is the newest id for `symbol` (a heartbeat):
    /// a gap when ids after the last one seen never arrived.
    pub(crate) fn latest(&mut self, symbol: Symbol, latest: u64) -> Option<Gap> {
        let last = self.last.get_mut(&symbol)?;
        if latest <= *last {
            return None;
        }
        let gap = Gap {
            symbol,
            expected: *last + 1,
            got: latest + 1,
        };
        *last = latest;
        Some(gap)
    }

    /// Forgets every symbol (a replay that starts over).
    pub(crate) fn clear(&mut self) {
        self.last.clear();
    }
}

/// A normalizer for any [`Venue`].
#[derive(Debug)]
pub enum Normalizer {
    /// Binance spot.
    Binance(BinanceNormalizer),
    /// Coinbase Exchange.
    Coinbase(CoinbaseNormalizer),
}

impl Normalizer {
    /// A normalizer for `venue` that prefixes symbols with `prefix` (`""` for none) and
    /// rejects messages over `max_message_bytes`.
    pub fn new(venue: Venue, prefix: &str, max_message_bytes: usize) -> Normalizer {
        match venue {
            Venue::Binance => {
                Normalizer::Binance(BinanceNormalizer::new(prefix, max_message_bytes))
            }
            Venue::Coinbase => {
                Normalizer::Coinbase(CoinbaseNormalizer::new(prefix, max_message_bytes))
            }
        }
    }

    /// The venue.
    pub fn venue(&self) -> Venue {
        match self {
            Normalizer::Binance(_) => Venue::Binance,
            Normalizer::Coinbase(_) => Venue::Coinbase,
        }
    }

    /// Normalizes one message; `now_ns` stamps messages that carry no event time.
    pub fn normalize(&mut self, message: &[u8], now_ns: u64) -> Result<Normalized, NormalizeError> {
        match self {
            Normalizer::Binance(n) => n.normalize(message, now_ns),
            Normalizer::Coinbase(n) => n.normalize(message, now_ns),
        }
    }

    /// The level changes of the last message normalized (empty unless it was a
    /// [`MessageKind::Book`] message that changed a book), to send in order.
    pub fn book_changes(&self) -> &[FeedTick] {
        match self {
            Normalizer::Binance(n) => n.book_changes(),
            Normalizer::Coinbase(n) => n.book_changes(),
        }
    }

    /// Venue symbols whose book snapshot must be fetched (Binance diff depth: a book
    /// joining its stream, or one that found a gap), each once until its snapshot
    /// is normalized. Empty for Coinbase, whose snapshots come over the WebSocket.
    pub fn take_snapshot_requests(&mut self) -> Vec<String> {
        match self {
            Normalizer::Binance(n) => n.take_snapshot_requests(),
            Normalizer::Coinbase(_) => Vec::new(),
        }
    }

    /// Accepts book snapshots of up to `max` bytes (other messages keep the
    /// `max_message_bytes` limit): a venue's whole book is far larger than a trade.
    pub fn set_max_snapshot_bytes(&mut self, max: usize) {
        match self {
            Normalizer::Binance(n) => n.max_snapshot_bytes = max,
            Normalizer::Coinbase(n) => n.max_snapshot_bytes = max,
        }
    }

    /// Forgets per-symbol state (last trade ids and sequences), for a replay that
    /// starts the same capture over.
    pub fn reset(&mut self) {
        match self {
            Normalizer::Binance(n) => n.reset(),
            Normalizer::Coinbase(n) => n.reset(),
        }
    }
}

/// The levels of a venue's `[["price","size"],…]` array, appended to `out` with
/// `side`; nothing is appended when any entry is malformed (the error names `key`).
pub(crate) fn levels(
    v: Option<Value<'_, '_>>,
    key: &'static str,
    side: crate::book::Side,
    out: &mut Vec<(crate::book::Side, i64, i64)>,
) -> Result<(), NormalizeError> {
    let start = out.len();
    let result = (|| {
        let array = v
            .and_then(|v| v.as_array())
            .ok_or(NormalizeError::Field(key))?;
        for level in array.iter() {
            let pair = level.as_array().ok_or(NormalizeError::Field(key))?;
            let price = required_decimal(pair.get(0).and_then(|p| p.into_string()), key)?;
            let size = required_decimal(pair.get(1).and_then(|p| p.into_string()), key)?;
            out.push((side, price, size));
        }
        Ok(())
    })();
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Checks the size limit, shared by the venues.
pub(crate) fn check_size(message: &[u8], max: usize) -> Result<(), NormalizeError> {
    if message.len() > max {
        return Err(NormalizeError::Oversize {
            len: message.len(),
            max,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `max_message_bytes` is inclusive: a message of exactly the limit is read.
    #[test]
    fn the_size_limit_is_inclusive() {
        assert!(check_size(&[b' '; 100], 100).is_ok());
        assert!(matches!(
            check_size(&[b' '; 101], 100),
            Err(NormalizeError::Oversize { len: 101, max: 100 })
        ));
        let msg = br#"{"result":null,"id":1}"#;
        let mut n = Normalizer::new(Venue::Binance, "", msg.len());
        assert!(n.normalize(msg, 0).is_ok());
        let mut n = Normalizer::new(Venue::Binance, "", msg.len() - 1);
        assert!(matches!(
            n.normalize(msg, 0),
            Err(NormalizeError::Oversize { .. })
        ));
    }

    #[test]
    fn truncation_is_told_apart_from_malformed_json() {
        let mut s = JsonScratch::new();
        let table: &[(&[u8], &str)] = &[
            (br#"{"a":"b"#, "truncated"),
            (br#"{"a":{"b":1}"#, "truncated"),
            (br#"{"a":[1,2"#, "truncated"),
            (br#"{"a" 1}"#, "malformed"),
            (b"", "malformed"),
            (b"}{", "malformed"),
            (b"\xff\xfe", "malformed"),
            (br#"{"a":1}}"#, "malformed"),
        ];
        for (input, label) in table {
            let e = s.parse(input, |_| Ok(())).unwrap_err();
            assert_eq!(e.label(), *label, "{input:?}: {e}");
        }
        assert_eq!(s.parse(br#"{"a":1}"#, |v| v.u64_field("a")).unwrap(), 1);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        for venue in Venue::ALL {
            let mut n = Normalizer::new(venue, "", DEFAULT_MAX_MESSAGE_BYTES);
            let open = "[".repeat(60_000);
            assert_eq!(
                n.normalize(open.as_bytes(), 0).unwrap_err().label(),
                "truncated"
            );
            let deep = format!("{}{}", open, "]".repeat(60_000));
            assert!(n.normalize(deep.as_bytes(), 0).is_err());
            let deep = format!(
                r#"{{"type":{}1{}}}"#,
                "[".repeat(30_000),
                "]".repeat(30_000)
            );
            assert!(n.normalize(deep.as_bytes(), 0).is_err());
        }
    }

    #[test]
    fn scratch_is_reusable_across_messages() {
        let mut s = JsonScratch::new();
        for i in 0..100u64 {
            let msg = format!(r#"{{"n":{i},"s":"x\"{i}"}}"#);
            let (n, text) = s
                .parse(msg.as_bytes(), |v| {
                    Ok((v.u64_field("n")?, v.str_field("s")?.to_string()))
                })
                .unwrap();
            assert_eq!(n, i);
            assert_eq!(text, format!("x\"{i}"));
        }
    }

    #[test]
    fn trade_ids_find_gaps_and_stale_ids() {
        let sym = Symbol::new("X").unwrap();
        let mut t = TradeIds::default();
        assert_eq!(t.check(sym, 10), IdCheck::InOrder);
        assert_eq!(t.check(sym, 11), IdCheck::InOrder);
        assert_eq!(t.check(sym, 11), IdCheck::Stale);
        let gap = Gap {
            symbol: sym,
            expected: 12,
            got: 15,
        };
        assert_eq!(t.check(sym, 15), IdCheck::Gap(gap));
        assert_eq!(gap.missed(), 3);
        assert_eq!(t.latest(sym, 15), None);
        let hb = t.latest(sym, 17).unwrap();
        assert_eq!(hb.missed(), 2);
        assert_eq!(t.check(sym, 18), IdCheck::InOrder);
        t.clear();
        assert_eq!(t.check(sym, 1), IdCheck::InOrder);
    }

    #[test]
    fn epoch_units() {
        assert_eq!(
            epoch_ms_or_us_to_ns(1_763_650_000_123, "T").unwrap(),
            1_763_650_000_123_000_000
        );
        assert_eq!(
            epoch_ms_or_us_to_ns(1_763_650_000_123_456, "T").unwrap(),
            1_763_650_000_123_456_000
        );
        assert!(epoch_ms_or_us_to_ns(u64::MAX, "T").is_err());
    }

    #[test]
    fn venues_by_name_and_shape() {
        assert_eq!("binance".parse::<Venue>().unwrap(), Venue::Binance);
        assert!("kraken".parse::<Venue>().is_err());
        assert_eq!(
            Venue::detect(br#"{"stream":"btcusdt@trade","data":{}}"#),
            Some(Venue::Binance)
        );
        assert_eq!(
            Venue::detect(br#"{"result":null,"id":1}"#),
            Some(Venue::Binance)
        );
        assert_eq!(Venue::detect(br#"{"type":"match"}"#), Some(Venue::Coinbase));
        assert_eq!(Venue::detect(b"[1]"), None);
        assert_eq!(Venue::detect(b"nonsense"), None);
    }
}
