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

use simd_json::prelude::*;
use simd_json::tape::Value;

use super::normalize::{
    check_size, epoch_ms_or_us_to_ns, object_fields, required, required_decimal, IdCheck,
    JsonScratch, MessageKind, NormalizeError, Normalized, TradeIds,
};
use super::FeedTick;
use crate::symbol::Symbol;
use crate::tick::Body;

/// The public market-data endpoint, combined-stream form.
pub const DEFAULT_URL: &str = "wss://stream.binance.com:9443/stream";

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
    // Built by hand to keep the documented key order; each name is JSON-escaped.
    let mut out = String::from(r#"{"method":"SUBSCRIBE","params":["#);
    for (i, s) in symbols.iter().enumerate() {
        let s = s.to_ascii_lowercase();
        if i > 0 {
            out.push(',');
        }
        let trade = serde_json::Value::String(format!("{s}@trade"));
        let book = serde_json::Value::String(format!("{s}@bookTicker"));
        out.push_str(&format!("{trade},{book}"));
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
}

impl BinanceNormalizer {
    /// A normalizer prefixing symbols with `prefix` (`""` for none).
    pub fn new(prefix: &str, max_message_bytes: usize) -> BinanceNormalizer {
        BinanceNormalizer {
            prefix: prefix.to_string(),
            max_message_bytes,
            scratch: JsonScratch::new(),
            trades: TradeIds::default(),
        }
    }

    /// Forgets the last trade id of every symbol.
    pub fn reset(&mut self) {
        self.trades.clear();
    }

    /// Normalizes one message; `now_ns` stamps book tickers, which carry no time.
    pub fn normalize(&mut self, message: &[u8], now_ns: u64) -> Result<Normalized, NormalizeError> {
        check_size(message, self.max_message_bytes)?;
        let BinanceNormalizer {
            prefix,
            scratch,
            trades,
            ..
        } = self;
        scratch.parse(message, |root| {
            if !root.is_object() {
                return Err(NormalizeError::NotObject);
            }
            if let Some(stream) = root.get("stream") {
                let stream = stream.as_str().ok_or(NormalizeError::Field("stream"))?;
                let data = root.get("data").ok_or(NormalizeError::Field("data"))?;
                return match stream_kind(stream) {
                    "trade" => trade(&data, prefix, trades),
                    "bookTicker" => book_ticker(&data, prefix, now_ns),
                    _ => Err(NormalizeError::unknown(stream)),
                };
            }
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
            (
                r#"{"stream":"btcusdt@depth@100ms","data":{}}"#,
                "unknown_type",
            ),
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
}
