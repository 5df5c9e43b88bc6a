//! Binance spot market streams: the subscribe message and the normalizer.
//!
//! Format reference: Binance Spot API, "WebSocket Streams"
//! (<https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams>).
//! Two streams per symbol are used: `<symbol>@trade` (every trade, with the venue's
//! dense per-symbol trade id `t`, used to find gaps) and `<symbol>@bookTicker` (best
//! bid and offer on every change). The combined endpoint (`/stream`) wraps each
//! event in `{"stream": …, "data": …}`; the raw endpoint (`/ws`) sends the bare event.
//! Both are accepted.
//!
//! Spot `bookTicker` events carry no time, so they are stamped with the `now_ns`
//! the caller passes (receive time live, the capture's clock in replay).
//!
//! The server sends a ping frame every 20 s and drops a connection that has not
//! answered within a minute; the exchange adapter answers pings itself.

use std::collections::{HashMap, HashSet};

use simd_json::prelude::*;
use simd_json::tape::Value;

use super::depth_sync::{DepthSync, JoinError, Step};
use super::normalize::{
    check_size, epoch_ms_or_us_to_ns, levels, object_fields, required, required_decimal, Gap,
    IdCheck, JsonScratch, MessageKind, NormalizeError, Normalized, TradeIds,
};
use super::venue_book::VenueBooks;
use super::FeedTick;
use crate::book::Side;
use crate::symbol::Symbol;
use crate::tick::Body;

/// The public market-data endpoint, combined-stream form.
pub const DEFAULT_URL: &str = "wss://stream.binance.com:9443/stream";

/// The REST endpoint depth snapshots are fetched from.
pub const DEFAULT_REST_URL: &str = "https://api.binance.com";

/// Symbols subscribed when the config names none.
pub const DEFAULT_SYMBOLS: [&str; 2] = ["BTCUSDT", "ETHUSDT"];

/// The request id sent with the subscription.
pub const SUBSCRIBE_ID: u64 = 1;

/// The subscribe request for the `trade` and `bookTicker` streams of `symbols`
/// (case-insensitive; Binance stream names are lower case):
///
/// ```json
/// {"method":"SUBSCRIBE","params":["btcusdt@trade","btcusdt@bookTicker"],"id":1}
/// ```
pub fn subscribe_message(symbols: &[String]) -> String {
    subscribe_message_with(symbols, false)
}

/// [`subscribe_message`], adding each symbol's diff-depth stream
/// (`btcusdt@depth@100ms`) when `book` is set.
pub fn subscribe_message_with(symbols: &[String], book: bool) -> String {
    // Built by hand to keep the documented key order; each name is JSON-escaped.
    let mut out = String::from(r#"{"method":"SUBSCRIBE","params":["#);
    for (i, s) in symbols.iter().enumerate() {
        let s = s.to_ascii_lowercase();
        if i > 0 {
            out.push(',');
        }
        let trade = serde_json::Value::String(format!("{s}@trade"));
        let ticker = serde_json::Value::String(format!("{s}@bookTicker"));
        out.push_str(&format!("{trade},{ticker}"));
        if book {
            let depth = serde_json::Value::String(format!("{s}@depth@100ms"));
            out.push_str(&format!(",{depth}"));
        }
    }
    out.push_str(&format!(r#"],"id":{SUBSCRIBE_ID}}}"#));
    out
}

/// One event of the `<symbol>@trade` stream:
///
/// ```json
/// {
///   "e": "trade",         // event type
///   "E": 1672515782136,   // event time, ms
///   "s": "BNBBTC",        // symbol
///   "t": 12345,           // trade id, dense per symbol
///   "p": "0.001",         // price
///   "q": "100",           // quantity
///   "T": 1672515782136,   // trade time, ms
///   "m": true,            // is the buyer the market maker?
///   "M": true             // ignore
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trade<'a> {
    /// `s`.
    pub symbol: &'a str,
    /// `t`.
    pub trade_id: u64,
    /// `p`, fixed point.
    pub price: i64,
    /// `q`, fixed point.
    pub quantity: i64,
    /// `T`, in ns.
    pub trade_time_ns: u64,
}

impl<'a> Trade<'a> {
    /// Reads the event object.
    pub(crate) fn from_value(v: &Value<'_, 'a>) -> Result<Trade<'a>, NormalizeError> {
        let (mut s, mut t, mut p, mut q, mut time) = (None, None, None, None, None);
        for (key, f) in &object_fields(v)? {
            match key {
                "s" => s = f.into_string(),
                "t" => t = f.as_u64(),
                "p" => p = f.into_string(),
                "q" => q = f.into_string(),
                "T" => time = f.as_u64(),
                _ => {}
            }
        }
        Ok(Trade {
            symbol: required(s, "s")?,
            trade_id: required(t, "t")?,
            price: required_decimal(p, "p")?,
            quantity: required_decimal(q, "q")?,
            trade_time_ns: epoch_ms_or_us_to_ns(required(time, "T")?, "T")?,
        })
    }
}

/// One event of the `<symbol>@bookTicker` stream:
///
/// ```json
/// {
///   "u": 400900217,       // order book update id
///   "s": "BNBUSDT",       // symbol
///   "b": "25.35190000",   // best bid price
///   "B": "31.21000000",   // best bid quantity
///   "a": "25.36520000",   // best ask price
///   "A": "40.66000000"    // best ask quantity
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BookTicker<'a> {
    /// `s`.
    pub symbol: &'a str,
    /// `u`.
    pub update_id: u64,
    /// `b`, fixed point.
    pub bid_price: i64,
    /// `B`, fixed point.
    pub bid_quantity: i64,
    /// `a`, fixed point.
    pub ask_price: i64,
    /// `A`, fixed point.
    pub ask_quantity: i64,
}

impl<'a> BookTicker<'a> {
    /// Reads the event object.
    pub(crate) fn from_value(v: &Value<'_, 'a>) -> Result<BookTicker<'a>, NormalizeError> {
        let (mut s, mut u) = (None, None);
        let (mut b, mut bq, mut a, mut aq) = (None, None, None, None);
        for (key, f) in &object_fields(v)? {
            match key {
                "s" => s = f.into_string(),
                "u" => u = f.as_u64(),
                "b" => b = f.into_string(),
                "B" => bq = f.into_string(),
                "a" => a = f.into_string(),
                "A" => aq = f.into_string(),
                _ => {}
            }
        }
        Ok(BookTicker {
            symbol: required(s, "s")?,
            update_id: required(u, "u")?,
            bid_price: required_decimal(b, "b")?,
            bid_quantity: required_decimal(bq, "B")?,
            ask_price: required_decimal(a, "a")?,
            ask_quantity: required_decimal(aq, "A")?,
        })
    }
}

/// Normalizes Binance spot messages. Besides the two events above it recognises:
///
/// ```json
/// {"result":null,"id":1}                                   // subscription ack
/// {"stream":"btcusdt@trade","data":{…}}                    // combined-stream envelope
/// {"error":{"code":2,"msg":"Invalid request"},"id":1}      // request rejected
/// ```
///
/// and, for books, the diff-depth events and snapshots described at [`Depth`].
#[derive(Debug)]
pub struct BinanceNormalizer {
    /// Symbol prefix (`BINANCE`), or empty for bare venue names.
    prefix: String,
    /// Largest message accepted, in bytes.
    max_message_bytes: usize,
    /// Reused parse buffers.
    scratch: JsonScratch,
    /// Last trade id per symbol, for gaps and re-sent trades.
    trades: TradeIds,
    /// Largest book snapshot accepted, in bytes (at least `max_message_bytes`).
    pub(crate) max_snapshot_bytes: usize,
    /// The diff-depth books.
    depth: Depth,
}

impl BinanceNormalizer {
    /// A normalizer prefixing symbols with `prefix` (`""` for none).
    pub fn new(prefix: &str, max_message_bytes: usize) -> BinanceNormalizer {
        BinanceNormalizer {
            prefix: prefix.to_string(),
            max_message_bytes,
            scratch: JsonScratch::new(),
            trades: TradeIds::default(),
            max_snapshot_bytes: max_message_bytes,
            depth: Depth::default(),
        }
    }

    /// Forgets the last trade id of every symbol, and every book (a replay that
    /// starts over joins each book to its first snapshot again).
    pub fn reset(&mut self) {
        self.trades.clear();
        self.depth = Depth::default();
    }

    /// The level changes of the last message.
    pub fn book_changes(&self) -> &[FeedTick] {
        self.depth.books.changes()
    }

    /// Venue symbols (`BTCUSDT`) whose depth snapshot must be fetched now.
    pub fn take_snapshot_requests(&mut self) -> Vec<String> {
        std::mem::take(&mut self.depth.requests)
    }

    /// Normalizes one message; `now_ns` stamps book tickers and depth snapshots,
    /// which carry no time.
    pub fn normalize(&mut self, message: &[u8], now_ns: u64) -> Result<Normalized, NormalizeError> {
        check_size(message, self.max_message_bytes.max(self.max_snapshot_bytes))?;
        let max_message_bytes = self.max_message_bytes;
        let BinanceNormalizer {
            prefix,
            scratch,
            trades,
            depth,
            ..
        } = self;
        depth.books.begin();
        scratch.parse(message, |root| {
            if !root.is_object() {
                return Err(NormalizeError::NotObject);
            }
            if let Some(stream) = root.get("stream") {
                let stream = stream.as_str().ok_or(NormalizeError::Field("stream"))?;
                let data = root.get("data").ok_or(NormalizeError::Field("data"))?;
                let snapshot = stream.ends_with("@depth@snapshot");
                if !snapshot {
                    check_size(message, max_message_bytes)?;
                }
                return match stream_kind(stream) {
                    "trade" => trade(&data, prefix, trades),
                    "bookTicker" => book_ticker(&data, prefix, now_ns),
                    "depth" if snapshot => depth.snapshot(stream, &data, prefix, now_ns),
                    "depth" => depth.update(&data, prefix),
                    _ => Err(NormalizeError::unknown(stream)),
                };
            }
            check_size(message, max_message_bytes)?;
            if let Some(error) = root.get("error") {
                let msg = error.get("msg").and_then(|m| m.into_string()).unwrap_or("");
                let code = error.get("code").and_then(|c| c.as_i64()).unwrap_or(0);
                return Err(NormalizeError::Venue(format!("code {code}: {msg}")));
            }
            if root.contains_key("result") && root.contains_key("id") {
                return Ok(Normalized::control(MessageKind::Subscribed));
            }
            if let Some(event) = root.get("e") {
                return match event.as_str() {
                    Some("trade") => trade(&root, prefix, trades),
                    Some("depthUpdate") => depth.update(&root, prefix),
                    Some(other) => Err(NormalizeError::unknown(other)),
                    None => Err(NormalizeError::Field("e")),
                };
            }
            if root.contains_key("u") && root.contains_key("b") {
                return book_ticker(&root, prefix, now_ns);
            }
            Err(NormalizeError::unknown("<no event type>"))
        })
    }
}

/// Events kept per symbol while its book waits for a snapshot: 100 s of
/// `@depth@100ms`; past it the oldest are dropped (a snapshot that late is newer than
/// them anyway).
pub const MAX_BUFFERED_DEPTH_EVENTS: usize = 1_000;

/// The diff-depth books of a Binance feed: Binance's procedure for a local order book
/// ([`DepthSync`]) per symbol, and the feed's copy of each book ([`VenueBooks`]).
///
/// One event of `<symbol>@depth@100ms` (levels are absolute quantities, `"0"`
/// removes):
///
/// ```json
/// {"e":"depthUpdate","E":1672515782136,"s":"BNBBTC","U":157,"u":160,
///  "b":[["0.0024","10"]],"a":[["0.0026","100"]]}
/// ```
///
/// The snapshot is not a stream message: the feed fetches
/// `GET /api/v3/depth?symbol=BNBBTC&limit=N`, whose body is
/// `{"lastUpdateId":160,"bids":[["0.0024","10"]],"asks":[["0.0026","100"]]}`, and
/// hands it to the normalizer (and a capture records it) as one message under the
/// stream name `<symbol>@depth@snapshot`:
///
/// ```json
/// {"stream":"bnbbtc@depth@snapshot","data":{"lastUpdateId":160,"bids":[…],"asks":[…]}}
/// ```
///
/// Until a symbol's first snapshot its events are buffered and nothing is sent; the
/// snapshot is sent as the difference from the book so far, then the buffered events
/// after it. A `U`/`u` gap is reported as a [`Gap`] (counted in the feed's gaps), the
/// book stays as it was and a snapshot is requested again.
#[derive(Debug, Default)]
pub struct Depth {
    syncs: HashMap<Symbol, DepthSync<DepthEvent>>,
    /// Symbols with a snapshot requested and not yet normalized.
    requested: HashSet<Symbol>,
    /// Venue symbols to fetch, not yet taken by the feed.
    requests: Vec<String>,
    books: VenueBooks,
    /// The levels of the event being read, before they are applied.
    levels: Vec<(Side, i64, i64)>,
}

/// A buffered diff-depth event.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct DepthEvent {
    ts_event: u64,
    levels: Vec<(Side, i64, i64)>,
}

impl Depth {
    fn sync(&mut self, symbol: Symbol) -> &mut DepthSync<DepthEvent> {
        self.syncs
            .entry(symbol)
            .or_insert_with(|| DepthSync::new(MAX_BUFFERED_DEPTH_EVENTS))
    }

    fn request(&mut self, symbol: Symbol, venue_symbol: &str) {
        if self.requested.insert(symbol) {
            self.requests.push(venue_symbol.to_string());
        }
    }

    /// A `depthUpdate` event.
    fn update(&mut self, v: &Value<'_, '_>, prefix: &str) -> Result<Normalized, NormalizeError> {
        let (mut s, mut time, mut first, mut last, mut b, mut a) =
            (None, None, None, None, None, None);
        for (key, f) in &object_fields(v)? {
            match key {
                "s" => s = f.into_string(),
                "E" => time = f.as_u64(),
                "U" => first = f.as_u64(),
                "u" => last = f.as_u64(),
                "b" => b = Some(f),
                "a" => a = Some(f),
                _ => {}
            }
        }
        let venue_symbol = required(s, "s")?;
        let symbol = Symbol::namespaced(prefix, venue_symbol.as_bytes())?;
        let ts_event = epoch_ms_or_us_to_ns(required(time, "E")?, "E")?;
        let (first, last) = (required(first, "U")?, required(last, "u")?);
        if first > last {
            return Err(NormalizeError::Field("U"));
        }
        self.levels.clear();
        levels(b, "b", Side::Bid, &mut self.levels)?;
        levels(a, "a", Side::Ask, &mut self.levels)?;
        // Live and following: applied straight from the parse, without a copy.
        let sync = self
            .syncs
            .entry(symbol)
            .or_insert_with(|| DepthSync::new(MAX_BUFFERED_DEPTH_EVENTS));
        if let Some(applied) = sync.applied() {
            if last <= applied {
                return Ok(Normalized::control(MessageKind::Duplicate));
            }
            if first <= applied + 1 {
                sync.on_event(first, last, DepthEvent::default());
                self.books.apply(symbol, ts_event, &self.levels);
                return Ok(Normalized::control(MessageKind::Book));
            }
        }
        let event = DepthEvent {
            ts_event,
            levels: self.levels.clone(),
        };
        let gap = match sync.on_event(first, last, event) {
            Step::Resync { expected, got } => Some(Gap {
                symbol,
                expected,
                got,
            }),
            _ => None,
        };
        self.request(symbol, venue_symbol);
        Ok(Normalized {
            kind: MessageKind::Book,
            tick: None,
            gap,
        })
    }

    /// A depth snapshot (`<symbol>@depth@snapshot`), stamped `now_ns`.
    fn snapshot(
        &mut self,
        stream: &str,
        v: &Value<'_, '_>,
        prefix: &str,
        now_ns: u64,
    ) -> Result<Normalized, NormalizeError> {
        // Snapshots are rare: the upper-case copy of the name is not worth avoiding.
        let venue_symbol = stream.split('@').next().unwrap_or("").to_ascii_uppercase();
        let symbol = Symbol::namespaced(prefix, venue_symbol.as_bytes())?;
        let (mut id, mut b, mut a) = (None, None, None);
        for (key, f) in &object_fields(v)? {
            match key {
                "lastUpdateId" => id = f.as_u64(),
                "bids" => b = Some(f),
                "asks" => a = Some(f),
                _ => {}
            }
        }
        let id = required(id, "lastUpdateId")?;
        self.levels.clear();
        levels(b, "bids", Side::Bid, &mut self.levels)?;
        levels(a, "asks", Side::Ask, &mut self.levels)?;
        self.requested.remove(&symbol);
        let gap = match self.sync(symbol).on_snapshot(id) {
            Ok(events) => {
                let (mut bids, mut asks) = (Vec::new(), Vec::new());
                for &(side, price, size) in &self.levels {
                    match side {
                        Side::Bid => bids.push((price, size)),
                        Side::Ask => asks.push((price, size)),
                    }
                }
                self.books.snapshot(symbol, now_ns, &bids, &asks);
                for e in events {
                    self.books.apply(symbol, e.ts_event, &e.levels);
                }
                None
            }
            // The snapshot cannot be joined: fetch another.
            Err(JoinError::SnapshotTooOld {
                last_update_id,
                first,
            }) => {
                self.request(symbol, &venue_symbol);
                Some(Gap {
                    symbol,
                    expected: last_update_id + 1,
                    got: first,
                })
            }
            Err(JoinError::Gap { last, next }) => {
                self.request(symbol, &venue_symbol);
                Some(Gap {
                    symbol,
                    expected: last + 1,
                    got: next,
                })
            }
        };
        Ok(Normalized {
            kind: MessageKind::Book,
            tick: None,
            gap,
        })
    }
}

/// The stream type of a combined-stream name: `btcusdt@trade` → `trade`,
/// `btcusdt@depth@100ms` → `depth`, no `@` → `""`. A byte loop: these names are
/// a dozen bytes, too short for `memchr` to pay off.
fn stream_kind(stream: &str) -> &str {
    let bytes = stream.as_bytes();
    let Some(at) = bytes.iter().position(|&c| c == b'@') else {
        return "";
    };
    let rest = &bytes[at + 1..];
    let end = rest.iter().position(|&c| c == b'@').unwrap_or(rest.len());
    // Both cuts are next to an ASCII '@', so they fall on char boundaries.
    stream.get(at + 1..at + 1 + end).unwrap_or("")
}

fn trade(
    v: &Value<'_, '_>,
    prefix: &str,
    trades: &mut TradeIds,
) -> Result<Normalized, NormalizeError> {
    let t = Trade::from_value(v)?;
    let symbol = Symbol::namespaced(prefix, t.symbol.as_bytes())?;
    let gap = match trades.check(symbol, t.trade_id) {
        IdCheck::Stale => return Ok(Normalized::control(MessageKind::Duplicate)),
        IdCheck::InOrder => None,
        IdCheck::Gap(g) => Some(g),
    };
    Ok(Normalized {
        kind: MessageKind::Trade,
        tick: Some(FeedTick {
            symbol,
            ts_event: t.trade_time_ns,
            body: Body::trade(t.price, t.quantity),
        }),
        gap,
    })
}

fn book_ticker(v: &Value<'_, '_>, prefix: &str, now_ns: u64) -> Result<Normalized, NormalizeError> {
    let b = BookTicker::from_value(v)?;
    Ok(Normalized {
        kind: MessageKind::Quote,
        tick: Some(FeedTick {
            symbol: Symbol::namespaced(prefix, b.symbol.as_bytes())?,
            ts_event: now_ns,
            body: Body::Quote {
                bid_px: b.bid_price,
                bid_sz: b.bid_quantity,
                ask_px: b.ask_price,
                ask_sz: b.ask_quantity,
            },
        }),
        gap: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixed::SCALE;
    use crate::symbol::Symbol;

    const NOW: u64 = 1_763_650_000_000_000_000;

    fn sym(s: &str) -> Symbol {
        Symbol::new(s).unwrap()
    }

    fn px(s: &str) -> i64 {
        crate::fixed::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn subscribe_message_is_the_documented_request() {
        assert_eq!(
            subscribe_message(&["BTCUSDT".into(), "ethusdt".into()]),
            r#"{"method":"SUBSCRIBE","params":["btcusdt@trade","btcusdt@bookTicker","ethusdt@trade","ethusdt@bookTicker"],"id":1}"#
        );
    }

    #[test]
    fn trades() {
        let table: &[(&str, &str, u64, &str, &str)] = &[
            (
                r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1763650000123,"s":"BTCUSDT","t":5432100001,"p":"91234.56000000","q":"0.00120000","T":1763650000122,"m":true,"M":true}}"#,
                "BINANCE:BTCUSDT",
                1_763_650_000_122_000_000,
                "91234.56",
                "0.0012",
            ),
            (
                r#"{"e":"trade","E":1672515782136,"s":"BNBBTC","t":12345,"p":"0.001","q":"100","T":1672515782136,"m":true,"M":true}"#,
                "BINANCE:BNBBTC",
                1_672_515_782_136_000_000,
                "0.001",
                "100",
            ),
            (
                r#"{"stream":"ethusdt@trade","data":{"e":"trade","E":1763650000123456,"s":"ETHUSDT","t":7,"p":"3012.01","q":"1.5","T":1763650000123450,"m":false,"M":true}}"#,
                "BINANCE:ETHUSDT",
                1_763_650_000_123_450_000,
                "3012.01",
                "1.5",
            ),
        ];
        for (msg, symbol, ts, price, qty) in table {
            let mut n = BinanceNormalizer::new("BINANCE", 4096);
            let out = n.normalize(msg.as_bytes(), NOW).unwrap();
            assert_eq!(out.kind, MessageKind::Trade, "{msg}");
            assert_eq!(
                out.tick,
                Some(FeedTick {
                    symbol: sym(symbol),
                    ts_event: *ts,
                    body: Body::trade(px(price), px(qty)),
                }),
                "{msg}"
            );
            assert_eq!(out.gap, None);
        }
    }

    #[test]
    fn book_tickers() {
        let table: &[(&str, &str, [&str; 4])] = &[
            (
                r#"{"stream":"btcusdt@bookTicker","data":{"u":400900217,"s":"BTCUSDT","b":"91234.56000000","B":"1.20000000","a":"91234.57000000","A":"0.00310000"}}"#,
                "BINANCE:BTCUSDT",
                ["91234.56", "1.2", "91234.57", "0.0031"],
            ),
            (
                r#"{"u":400900217,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}"#,
                "BINANCE:BNBUSDT",
                ["25.3519", "31.21", "25.3652", "40.66"],
            ),
        ];
        for (msg, symbol, [b, bq, a, aq]) in table {
            let mut n = BinanceNormalizer::new("BINANCE", 4096);
            let out = n.normalize(msg.as_bytes(), NOW).unwrap();
            assert_eq!(out.kind, MessageKind::Quote);
            assert_eq!(
                out.tick,
                Some(FeedTick {
                    symbol: sym(symbol),
                    ts_event: NOW,
                    body: Body::Quote {
                        bid_px: px(b),
                        bid_sz: px(bq),
                        ask_px: px(a),
                        ask_sz: px(aq),
                    },
                })
            );
        }
    }

    #[test]
    fn control_messages_are_not_errors() {
        let mut n = BinanceNormalizer::new("BINANCE", 4096);
        for msg in [
            r#"{"result":null,"id":1}"#,
            r#"{"result":["btcusdt@trade"],"id":3}"#,
        ] {
            assert_eq!(
                n.normalize(msg.as_bytes(), NOW).unwrap(),
                Normalized::control(MessageKind::Subscribed)
            );
        }
    }

    #[test]
    fn errors_by_kind() {
        let big = format!(r#"{{"result":null,"id":1,"pad":"{}"}}"#, "x".repeat(200));
        let table: &[(&str, &str)] = &[
            (
                r#"{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTC"#,
                "truncated",
            ),
            (r#"{"stream":"btcusdt@trade" "data":{}}"#, "malformed"),
            (r#"{"stream":"btcusdt@kline_1m","data":{}}"#, "unknown_type"),
            (r#"{"stream":"btcusdt@depth@100ms","data":{}}"#, "invalid"),
            (r#"{"e":"aggTrade","s":"BTCUSDT"}"#, "unknown_type"),
            (r#"{"hello":"world"}"#, "unknown_type"),
            (r#"["btcusdt@trade"]"#, "invalid"),
            (
                r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"1e3","q":"1","T":1}}"#,
                "invalid",
            ),
            (
                r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":91234.5,"q":"1","T":1}}"#,
                "invalid",
            ),
            (
                r#"{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTC USDT","b":"1","B":"1","a":"1","A":"1"}}"#,
                "invalid",
            ),
            (
                r#"{"error":{"code":2,"msg":"Invalid request"},"id":1}"#,
                "venue",
            ),
            (big.as_str(), "oversize"),
        ];
        for (msg, label) in table {
            let mut n = BinanceNormalizer::new("BINANCE", 200);
            let e = n.normalize(msg.as_bytes(), NOW).unwrap_err();
            assert_eq!(e.label(), *label, "{msg}: {e}");
        }
    }

    #[test]
    fn stream_kinds() {
        let table = [
            ("btcusdt@trade", "trade"),
            ("btcusdt@bookTicker", "bookTicker"),
            ("btcusdt@depth@100ms", "depth"),
            ("btcusdt", ""),
            ("@", ""),
            ("é@é", "é"),
        ];
        for (stream, kind) in table {
            assert_eq!(stream_kind(stream), kind, "{stream}");
        }
    }

    #[test]
    fn trade_id_gaps_and_duplicates() {
        let mut n = BinanceNormalizer::new("", 4096);
        let msg = |t: u64| {
            format!(
                r#"{{"stream":"btcusdt@trade","data":{{"e":"trade","E":1,"s":"BTCUSDT","t":{t},"p":"1","q":"1","T":1}}}}"#
            )
        };
        assert_eq!(n.normalize(msg(100).as_bytes(), NOW).unwrap().gap, None);
        assert_eq!(n.normalize(msg(101).as_bytes(), NOW).unwrap().gap, None);
        let dup = n.normalize(msg(101).as_bytes(), NOW).unwrap();
        assert_eq!((dup.kind, dup.tick), (MessageKind::Duplicate, None));
        let out = n.normalize(msg(105).as_bytes(), NOW).unwrap();
        let gap = out.gap.unwrap();
        assert_eq!((gap.symbol, gap.missed()), (sym("BTCUSDT"), 3));
        assert_eq!(out.tick.unwrap().body, Body::trade(SCALE, SCALE));
    }

    /// `(side, price, size)` of each change of the last message.
    fn changes(n: &BinanceNormalizer) -> Vec<(Side, i64, i64)> {
        crate::feed::book_levels(n.book_changes())
    }

    fn depth(first: u64, last: u64, bids: &str, asks: &str) -> String {
        format!(
            r#"{{"stream":"btcusdt@depth@100ms","data":{{"e":"depthUpdate","E":1000,"s":"BTCUSDT","U":{first},"u":{last},"b":{bids},"a":{asks}}}}}"#
        )
    }

    fn snapshot(id: u64, bids: &str, asks: &str) -> String {
        format!(
            r#"{{"stream":"btcusdt@depth@snapshot","data":{{"lastUpdateId":{id},"bids":{bids},"asks":{asks}}}}}"#
        )
    }

    /// Binance's procedure: events buffered (and one snapshot asked for) until the
    /// snapshot; the snapshot sent whole, then the buffered events after it; a
    /// re-sent event dropped; a gap reported, the book kept, a snapshot asked again;
    /// the next snapshot sent as the difference.
    #[test]
    fn diff_depth_joins_its_snapshot_and_resyncs_after_a_gap() {
        let mut n = BinanceNormalizer::new("", 4096);
        let out = n
            .normalize(depth(10, 12, r#"[["100","1"]]"#, "[]").as_bytes(), NOW)
            .unwrap();
        assert_eq!((out.kind, out.gap), (MessageKind::Book, None));
        assert!(n.book_changes().is_empty(), "nothing before the snapshot");
        assert_eq!(n.take_snapshot_requests(), ["BTCUSDT"]);
        n.normalize(
            depth(13, 15, r#"[["100","2"]]"#, r#"[["101","4"]]"#).as_bytes(),
            NOW,
        )
        .unwrap();
        assert!(n.take_snapshot_requests().is_empty(), "asked once");
        // Standing at 14: 10–12 is older, 13–15 straddles it and is applied after.
        n.normalize(
            snapshot(14, r#"[["100","9"],["99","1"]]"#, r#"[["101","3"]]"#).as_bytes(),
            NOW,
        )
        .unwrap();
        assert_eq!(
            changes(&n),
            [
                (Side::Bid, 100 * SCALE, 9 * SCALE),
                (Side::Bid, 99 * SCALE, SCALE),
                (Side::Ask, 101 * SCALE, 3 * SCALE),
                (Side::Bid, 100 * SCALE, 2 * SCALE),
                (Side::Ask, 101 * SCALE, 4 * SCALE),
            ]
        );
        assert_eq!(n.book_changes()[0].ts_event, NOW, "a snapshot has no time");
        assert_eq!(n.book_changes()[3].ts_event, 1_000_000_000, "E, in ns");
        let dup = n
            .normalize(depth(13, 15, r#"[["100","5"]]"#, "[]").as_bytes(), NOW)
            .unwrap();
        assert_eq!(dup.kind, MessageKind::Duplicate);
        assert!(n.book_changes().is_empty());
        n.normalize(depth(16, 16, r#"[["99","0"]]"#, "[]").as_bytes(), NOW)
            .unwrap();
        assert_eq!(changes(&n), [(Side::Bid, 99 * SCALE, 0)]);
        // 17 is missing.
        let out = n
            .normalize(depth(18, 19, r#"[["98","1"]]"#, "[]").as_bytes(), NOW)
            .unwrap();
        let gap = out.gap.expect("a gap");
        assert_eq!((gap.expected, gap.got), (17, 18));
        assert!(
            n.book_changes().is_empty(),
            "the book is kept until the snapshot"
        );
        assert_eq!(n.take_snapshot_requests(), ["BTCUSDT"]);
        n.normalize(
            snapshot(19, r#"[["98","1"]]"#, r#"[["101","4"]]"#).as_bytes(),
            NOW,
        )
        .unwrap();
        assert_eq!(
            changes(&n),
            [(Side::Bid, 100 * SCALE, 0), (Side::Bid, 98 * SCALE, SCALE)],
            "the difference: 100 removed, 98 new, ask 101 unchanged"
        );
    }

    #[test]
    fn a_malformed_depth_event_changes_nothing() {
        let mut n = BinanceNormalizer::new("", 4096);
        n.normalize(snapshot(5, r#"[["100","1"]]"#, "[]").as_bytes(), NOW)
            .unwrap();
        for bad in [
            depth(6, 6, r#"[["100","2"],["x","1"]]"#, "[]"),
            depth(6, 6, r#"[["100"]]"#, "[]"),
            depth(6, 5, "[]", "[]"),
            depth(6, 6, "{}", "[]"),
        ] {
            assert!(n.normalize(bad.as_bytes(), NOW).is_err(), "{bad}");
            assert!(n.book_changes().is_empty(), "{bad}");
        }
        n.normalize(depth(6, 6, r#"[["100","2"]]"#, "[]").as_bytes(), NOW)
            .unwrap();
        assert_eq!(
            changes(&n),
            [(Side::Bid, 100 * SCALE, 2 * SCALE)],
            "6 still follows 5"
        );
    }

    #[test]
    fn a_snapshot_may_be_larger_than_other_messages() {
        let mut n = BinanceNormalizer::new("", 256);
        n.max_snapshot_bytes = 4096;
        let levels: Vec<String> = (0..20).map(|i| format!(r#"["{}","1"]"#, 100 + i)).collect();
        let big = snapshot(5, &format!("[{}]", levels.join(",")), "[]");
        assert!(big.len() > 256);
        n.normalize(big.as_bytes(), NOW).unwrap();
        assert_eq!(n.book_changes().len(), 20);
        let big_event = depth(6, 6, &format!("[{}]", levels.join(",")), "[]");
        assert!(matches!(
            n.normalize(big_event.as_bytes(), NOW),
            Err(NormalizeError::Oversize { max: 256, .. })
        ));
    }

    #[test]
    fn the_depth_stream_is_subscribed_with_books_on() {
        assert_eq!(
            subscribe_message_with(&["BTCUSDT".into()], true),
            r#"{"method":"SUBSCRIBE","params":["btcusdt@trade","btcusdt@bookTicker","btcusdt@depth@100ms"],"id":1}"#
        );
    }
}
