//! Coinbase Exchange WebSocket feed: the subscribe message and the normalizer.
//!
//! Format reference: Coinbase Exchange, "WebSocket Feed" and "WebSocket Channels"
//! (<https://docs.cdp.coinbase.com/exchange/docs/websocket-overview>,
//! <https://docs.cdp.coinbase.com/exchange/docs/websocket-channels>).
//! Three channels are used: `matches` (every trade; `last_match` first, right after
//! subscribing), `ticker` (best bid and offer with the last trade) and `heartbeat`
//! (one message per product per second, with the latest trade id).
//!
//! # Gaps
//!
//! Every message carries the product's `sequence`, but that counter advances on
//! every order-book event of the product (received, open, done, change, match), so a
//! client of these channels sees it jump by design. The dense counter of the
//! `matches` channel is `trade_id`: a skipped trade id is a gap, and so is a
//! heartbeat whose `last_trade_id` is past the last trade delivered. `sequence` is
//! used to drop tickers that are not newer than the last one delivered for their
//! product (the venue sends the current ticker again on every subscribe), as
//! `trade_id` drops the `last_match` already seen before a reconnect.
//!
//! # Books
//!
//! With books on, the `level2_batch` channel is added: a `snapshot` of each product's
//! whole book right after subscribing (and after every reconnect), then `l2update`
//! messages (every 50 ms) with the levels that changed:
//!
//! ```json
//! {"type":"snapshot","product_id":"BTC-USD","bids":[["10101.10","0.45054140"]],"asks":[["10102.55","0.57753524"]]}
//! {"type":"l2update","product_id":"BTC-USD","changes":[["buy","10101.80000000","0.162567"]],"time":"2019-08-14T20:42:27.265Z"}
//! ```
//!
//! Sizes are absolute, `"0"` removes the level. The channel has no sequence numbers:
//! a reconnect's fresh snapshot is what repairs a book, sent as the difference from
//! the book so far ([`VenueBooks`]).

use std::collections::HashMap;

use simd_json::prelude::*;
use simd_json::tape::Value;

use super::normalize::{
    check_size, levels, object_fields, required, required_decimal, Fields, IdCheck, JsonScratch,
    MessageKind, NormalizeError, Normalized, TradeIds,
};
use super::venue_book::VenueBooks;
use super::FeedTick;
use crate::book::Side;
use crate::symbol::Symbol;
use crate::tick::Body;

/// The public market-data endpoint.
pub const DEFAULT_URL: &str = "wss://ws-feed.exchange.coinbase.com";

/// Products subscribed when the config names none.
pub const DEFAULT_SYMBOLS: [&str; 2] = ["BTC-USD", "ETH-USD"];

/// The subscribe request for the `matches`, `ticker` and `heartbeat` channels of
/// `products`:
///
/// ```json
/// {"type":"subscribe","product_ids":["BTC-USD","ETH-USD"],"channels":["matches","ticker","heartbeat"]}
/// ```
pub fn subscribe_message(products: &[String]) -> String {
    subscribe_message_with(products, false)
}

/// [`subscribe_message`], adding the `level2_batch` channel when `book` is set.
pub fn subscribe_message_with(products: &[String], book: bool) -> String {
    // Built by hand to keep the documented key order; each name is JSON-escaped.
    let mut out = String::from(r#"{"type":"subscribe","product_ids":["#);
    for (i, p) in products.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::Value::String(p.clone()).to_string());
    }
    out.push_str(r#"],"channels":["matches","ticker","heartbeat""#);
    if book {
        out.push_str(r#","level2_batch""#);
    }
    out.push_str("]}");
    out
}

/// A trade of the `matches` channel (`type` is `match`, or `last_match` for the one
/// sent right after subscribing):
///
/// ```json
/// {
///   "type": "match",
///   "trade_id": 10,
///   "sequence": 50,
///   "maker_order_id": "ac928c66-ca53-498f-9c13-a110027a60e8",
///   "taker_order_id": "132fb6ae-456b-4654-b4e0-d681ac05cea1",
///   "time": "2014-11-07T08:19:27.028459Z",
///   "product_id": "BTC-USD",
///   "size": "5.23512",
///   "price": "400.23",
///   "side": "sell"
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match<'a> {
    /// `product_id`.
    pub product_id: &'a str,
    /// `trade_id`, dense per product.
    pub trade_id: u64,
    /// `price`, fixed point.
    pub price: i64,
    /// `size`, fixed point.
    pub size: i64,
    /// `time`, ns since the Unix epoch.
    pub time_ns: u64,
}

impl<'a> Match<'a> {
    /// Reads the message object.
    pub(crate) fn from_value(v: &Value<'_, 'a>) -> Result<Match<'a>, NormalizeError> {
        let (mut product, mut id, mut price, mut size, mut time) = (None, None, None, None, None);
        for (key, f) in &object_fields(v)? {
            match key {
                "product_id" => product = f.into_string(),
                "trade_id" => id = f.as_u64(),
                "price" => price = f.into_string(),
                "size" => size = f.into_string(),
                "time" => time = f.into_string(),
                _ => {}
            }
        }
        Ok(Match {
            product_id: required(product, "product_id")?,
            trade_id: required(id, "trade_id")?,
            price: required_decimal(price, "price")?,
            size: required_decimal(size, "size")?,
            time_ns: rfc3339_ns(required(time, "time")?, "time")?,
        })
    }
}

/// A message of the `ticker` channel:
///
/// ```json
/// {
///   "type": "ticker",
///   "sequence": 37475248783,
///   "product_id": "ETH-USD",
///   "price": "1285.22",
///   "open_24h": "1310.79",
///   "volume_24h": "245532.79269678",
///   "low_24h": "1280.52",
///   "high_24h": "1313.8",
///   "volume_30d": "9788783.60117027",
///   "best_bid": "1285.04",
///   "best_bid_size": "0.46688654",
///   "best_ask": "1285.27",
///   "best_ask_size": "1.56637040",
///   "side": "buy",
///   "time": "2022-10-19T23:28:22.061769Z",
///   "trade_id": 370843401,
///   "last_size": "11.4396987"
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticker<'a> {
    /// `product_id`.
    pub product_id: &'a str,
    /// `sequence`.
    pub sequence: u64,
    /// `best_bid`, fixed point.
    pub best_bid: i64,
    /// `best_bid_size`, fixed point.
    pub best_bid_size: i64,
    /// `best_ask`, fixed point.
    pub best_ask: i64,
    /// `best_ask_size`, fixed point.
    pub best_ask_size: i64,
    /// `time`, ns since the Unix epoch.
    pub time_ns: u64,
}

impl<'a> Ticker<'a> {
    /// Reads the message object.
    pub(crate) fn from_value(v: &Value<'_, 'a>) -> Result<Ticker<'a>, NormalizeError> {
        let (mut product, mut sequence, mut time) = (None, None, None);
        let (mut bid, mut bid_size, mut ask, mut ask_size) = (None, None, None, None);
        for (key, f) in &object_fields(v)? {
            match key {
                "product_id" => product = f.into_string(),
                "sequence" => sequence = f.as_u64(),
                "best_bid" => bid = f.into_string(),
                "best_bid_size" => bid_size = f.into_string(),
                "best_ask" => ask = f.into_string(),
                "best_ask_size" => ask_size = f.into_string(),
                "time" => time = f.into_string(),
                _ => {}
            }
        }
        Ok(Ticker {
            product_id: required(product, "product_id")?,
            sequence: required(sequence, "sequence")?,
            best_bid: required_decimal(bid, "best_bid")?,
            best_bid_size: required_decimal(bid_size, "best_bid_size")?,
            best_ask: required_decimal(ask, "best_ask")?,
            best_ask_size: required_decimal(ask_size, "best_ask_size")?,
            time_ns: rfc3339_ns(required(time, "time")?, "time")?,
        })
    }
}

/// A message of the `heartbeat` channel:
///
/// ```json
/// {
///   "type": "heartbeat",
///   "sequence": 90,
///   "last_trade_id": 20,
///   "product_id": "BTC-USD",
///   "time": "2014-11-07T08:19:28.464459Z"
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat<'a> {
    /// `product_id`.
    pub product_id: &'a str,
    /// `last_trade_id`.
    pub last_trade_id: u64,
}

impl<'a> Heartbeat<'a> {
    /// Reads the message object.
    pub(crate) fn from_value(v: &Value<'_, 'a>) -> Result<Heartbeat<'a>, NormalizeError> {
        Ok(Heartbeat {
            product_id: v.str_field("product_id")?,
            last_trade_id: v.u64_field("last_trade_id")?,
        })
    }
}

/// Normalizes Coinbase Exchange messages. Besides the three above it recognises:
///
/// ```json
/// {"type":"subscriptions","channels":[{"name":"matches","product_ids":["BTC-USD"]}]}
/// {"type":"error","message":"Failed to subscribe","reason":"ABC-XYZ is not a valid product"}
/// ```
#[derive(Debug)]
pub struct CoinbaseNormalizer {
    /// Symbol prefix (`COINBASE`), or empty for bare product ids.
    prefix: String,
    /// Largest message accepted, in bytes.
    max_message_bytes: usize,
    /// Reused parse buffers.
    scratch: JsonScratch,
    /// Last trade id per product, for gaps and re-sent trades.
    trades: TradeIds,
    /// Last ticker `sequence` per product, to drop re-sent tickers.
    tickers: HashMap<Symbol, u64>,
    /// Largest book snapshot accepted, in bytes (at least `max_message_bytes`).
    pub(crate) max_snapshot_bytes: usize,
    /// The feed's copy of each product's book.
    books: VenueBooks,
    /// The levels of the message being read, before they are applied.
    levels: Vec<(Side, i64, i64)>,
}

impl CoinbaseNormalizer {
    /// A normalizer prefixing symbols with `prefix` (`""` for none).
    pub fn new(prefix: &str, max_message_bytes: usize) -> CoinbaseNormalizer {
        CoinbaseNormalizer {
            prefix: prefix.to_string(),
            max_message_bytes,
            scratch: JsonScratch::new(),
            trades: TradeIds::default(),
            tickers: HashMap::new(),
            max_snapshot_bytes: max_message_bytes,
            books: VenueBooks::default(),
            levels: Vec::new(),
        }
    }

    /// Forgets the last trade id and ticker sequence of every product, and every book.
    pub fn reset(&mut self) {
        self.trades.clear();
        self.tickers.clear();
        self.books.clear();
    }

    /// The level changes of the last message.
    pub fn book_changes(&self) -> &[FeedTick] {
        self.books.changes()
    }

    /// Normalizes one message; `now_ns` stamps book snapshots, the one message
    /// without a time of its own.
    pub fn normalize(&mut self, message: &[u8], now_ns: u64) -> Result<Normalized, NormalizeError> {
        check_size(message, self.max_message_bytes.max(self.max_snapshot_bytes))?;
        let max_message_bytes = self.max_message_bytes;
        let CoinbaseNormalizer {
            prefix,
            scratch,
            trades,
            tickers,
            books,
            levels: scratch_levels,
            ..
        } = self;
        books.begin();
        scratch.parse(message, |root| {
            if !root.is_object() {
                return Err(NormalizeError::NotObject);
            }
            let kind = root.str_field("type")?;
            if kind != "snapshot" {
                check_size(message, max_message_bytes)?;
            }
            match kind {
                "snapshot" => {
                    let product = root.str_field("product_id")?;
                    let symbol = Symbol::namespaced(prefix, product.as_bytes())?;
                    scratch_levels.clear();
                    levels(root.get("bids"), "bids", Side::Bid, scratch_levels)?;
                    let bids: Vec<_> = scratch_levels.drain(..).map(|(_, p, s)| (p, s)).collect();
                    levels(root.get("asks"), "asks", Side::Ask, scratch_levels)?;
                    let asks: Vec<_> = scratch_levels.drain(..).map(|(_, p, s)| (p, s)).collect();
                    books.snapshot(symbol, now_ns, &bids, &asks);
                    Ok(Normalized::control(MessageKind::Book))
                }
                "l2update" => {
                    let product = root.str_field("product_id")?;
                    let symbol = Symbol::namespaced(prefix, product.as_bytes())?;
                    let time_ns = rfc3339_ns(root.str_field("time")?, "time")?;
                    scratch_levels.clear();
                    changes(root.get("changes"), scratch_levels)?;
                    books.apply(symbol, time_ns, scratch_levels);
                    Ok(Normalized::control(MessageKind::Book))
                }
                "match" | "last_match" => {
                    let m = Match::from_value(&root)?;
                    let symbol = Symbol::namespaced(prefix, m.product_id.as_bytes())?;
                    let gap = match trades.check(symbol, m.trade_id) {
                        IdCheck::Stale => return Ok(Normalized::control(MessageKind::Duplicate)),
                        IdCheck::InOrder => None,
                        IdCheck::Gap(g) => Some(g),
                    };
                    Ok(Normalized {
                        kind: MessageKind::Trade,
                        tick: Some(FeedTick {
                            symbol,
                            ts_event: m.time_ns,
                            body: Body::trade(m.price, m.size),
                        }),
                        gap,
                    })
                }
                "ticker" => {
                    let t = Ticker::from_value(&root)?;
                    let symbol = Symbol::namespaced(prefix, t.product_id.as_bytes())?;
                    match tickers.get_mut(&symbol) {
                        Some(last) if t.sequence <= *last => {
                            return Ok(Normalized::control(MessageKind::Duplicate))
                        }
                        Some(last) => *last = t.sequence,
                        None => {
                            tickers.insert(symbol, t.sequence);
                        }
                    }
                    Ok(Normalized {
                        kind: MessageKind::Quote,
                        tick: Some(FeedTick {
                            symbol,
                            ts_event: t.time_ns,
                            body: Body::Quote {
                                bid_px: t.best_bid,
                                bid_sz: t.best_bid_size,
                                ask_px: t.best_ask,
                                ask_sz: t.best_ask_size,
                            },
                        }),
                        gap: None,
                    })
                }
                "heartbeat" => {
                    let h = Heartbeat::from_value(&root)?;
                    let symbol = Symbol::namespaced(prefix, h.product_id.as_bytes())?;
                    Ok(Normalized {
                        kind: MessageKind::Heartbeat,
                        tick: None,
                        gap: trades.latest(symbol, h.last_trade_id),
                    })
                }
                "subscriptions" => Ok(Normalized::control(MessageKind::Subscribed)),
                "error" => {
                    let message = root
                        .get("message")
                        .and_then(|m| m.into_string())
                        .unwrap_or("");
                    let reason = root
                        .get("reason")
                        .and_then(|m| m.into_string())
                        .unwrap_or("");
                    Err(NormalizeError::Venue(format!("{message}: {reason}")))
                }
                other => Err(NormalizeError::unknown(other)),
            }
        })
    }
}

/// The `changes` of an `l2update`, `[["buy","price","size"],…]` (`buy` is a bid,
/// `sell` an ask), appended to `out`; nothing is appended when one is malformed.
fn changes(
    v: Option<Value<'_, '_>>,
    out: &mut Vec<(Side, i64, i64)>,
) -> Result<(), NormalizeError> {
    let start = out.len();
    let result = (|| {
        let array = v
            .and_then(|v| v.as_array())
            .ok_or(NormalizeError::Field("changes"))?;
        for change in array.iter() {
            let c = change.as_array().ok_or(NormalizeError::Field("changes"))?;
            let field = |i: usize| c.get(i).and_then(|v| v.into_string());
            let side = match field(0) {
                Some("buy") => Side::Bid,
                Some("sell") => Side::Ask,
                _ => return Err(NormalizeError::Field("changes")),
            };
            let price = required_decimal(field(1), "changes")?;
            let size = required_decimal(field(2), "changes")?;
            out.push((side, price, size));
        }
        Ok(())
    })();
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// An RFC 3339 UTC time (`2014-11-07T08:19:27.028459Z`) as ns since the Unix epoch.
fn rfc3339_ns(s: &str, key: &'static str) -> Result<u64, NormalizeError> {
    let t = humantime::parse_rfc3339(s).map_err(|_| NormalizeError::Time(key))?;
    let d = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| NormalizeError::Time(key))?;
    u64::try_from(d.as_nanos()).map_err(|_| NormalizeError::Time(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(s: &str) -> Symbol {
        Symbol::new(s).unwrap()
    }

    fn px(s: &str) -> i64 {
        crate::fixed::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn subscribe_message_is_the_documented_request() {
        assert_eq!(
            subscribe_message(&["BTC-USD".into(), "ETH-USD".into()]),
            r#"{"type":"subscribe","product_ids":["BTC-USD","ETH-USD"],"channels":["matches","ticker","heartbeat"]}"#
        );
    }

    #[test]
    fn matches() {
        let table: &[(&str, &str, u64, &str, &str)] = &[
            (
                r#"{"type":"match","trade_id":10,"sequence":50,"maker_order_id":"ac928c66-ca53-498f-9c13-a110027a60e8","taker_order_id":"132fb6ae-456b-4654-b4e0-d681ac05cea1","time":"2014-11-07T08:19:27.028459Z","product_id":"BTC-USD","size":"5.23512","price":"400.23","side":"sell"}"#,
                "COINBASE:BTC-USD",
                1_415_348_367_028_459_000,
                "400.23",
                "5.23512",
            ),
            (
                r#"{"type":"last_match","trade_id":612000001,"maker_order_id":"a","taker_order_id":"b","side":"buy","size":"0.00010000","price":"91250.01","product_id":"BTC-USD","sequence":98765432101,"time":"2026-11-20T14:30:00.000001Z"}"#,
                "COINBASE:BTC-USD",
                1_795_185_000_000_001_000,
                "91250.01",
                "0.0001",
            ),
        ];
        for (msg, symbol, ts, price, size) in table {
            let mut n = CoinbaseNormalizer::new("COINBASE", 4096);
            let out = n.normalize(msg.as_bytes(), 0).unwrap();
            assert_eq!(out.kind, MessageKind::Trade);
            assert_eq!(
                out.tick,
                Some(FeedTick {
                    symbol: sym(symbol),
                    ts_event: *ts,
                    body: Body::trade(px(price), px(size)),
                }),
                "{msg}"
            );
        }
    }

    #[test]
    fn tickers() {
        let table: &[(&str, &str, u64, [&str; 4])] = &[(
            r#"{"type":"ticker","sequence":37475248783,"product_id":"ETH-USD","price":"1285.22","open_24h":"1310.79","volume_24h":"245532.79269678","low_24h":"1280.52","high_24h":"1313.8","volume_30d":"9788783.60117027","best_bid":"1285.04","best_bid_size":"0.46688654","best_ask":"1285.27","best_ask_size":"1.56637040","side":"buy","time":"2022-10-19T23:28:22.061769Z","trade_id":370843401,"last_size":"11.4396987"}"#,
            "COINBASE:ETH-USD",
            1_666_222_102_061_769_000,
            ["1285.04", "0.46688654", "1285.27", "1.5663704"],
        )];
        for (msg, symbol, ts, [b, bs, a, as_]) in table {
            let mut n = CoinbaseNormalizer::new("COINBASE", 4096);
            let out = n.normalize(msg.as_bytes(), 0).unwrap();
            assert_eq!(out.kind, MessageKind::Quote);
            assert_eq!(
                out.tick,
                Some(FeedTick {
                    symbol: sym(symbol),
                    ts_event: *ts,
                    body: Body::Quote {
                        bid_px: px(b),
                        bid_sz: px(bs),
                        ask_px: px(a),
                        ask_sz: px(as_),
                    },
                })
            );
            // The same ticker again (as after a resubscribe) is a duplicate.
            let again = n.normalize(msg.as_bytes(), 0).unwrap();
            assert_eq!((again.kind, again.tick), (MessageKind::Duplicate, None));
        }
    }

    #[test]
    fn control_messages_are_not_errors() {
        let mut n = CoinbaseNormalizer::new("COINBASE", 4096);
        let table: &[(&str, MessageKind)] = &[
            (
                r#"{"type":"subscriptions","channels":[{"name":"matches","product_ids":["BTC-USD"]},{"name":"heartbeat","product_ids":["BTC-USD"]}]}"#,
                MessageKind::Subscribed,
            ),
            (
                r#"{"type":"heartbeat","sequence":90,"last_trade_id":20,"product_id":"BTC-USD","time":"2014-11-07T08:19:28.464459Z"}"#,
                MessageKind::Heartbeat,
            ),
        ];
        for (msg, kind) in table {
            assert_eq!(
                n.normalize(msg.as_bytes(), 0).unwrap(),
                Normalized::control(*kind)
            );
        }
    }

    #[test]
    fn errors_by_kind() {
        let big = format!(r#"{{"type":"subscriptions","pad":"{}"}}"#, "x".repeat(300));
        let table: &[(&str, &str)] = &[
            (
                r#"{"type":"match","trade_id":10,"sequence":50,"time":"2014-11-07T08:19:27.02"#,
                "truncated",
            ),
            (r#"{"type":"match",}"#, "malformed"),
            (
                r#"{"type":"l3update","product_id":"BTC-USD","changes":[]}"#,
                "unknown_type",
            ),
            (
                r#"{"type":"l2update","product_id":"BTC-USD","changes":[]}"#,
                "invalid",
            ),
            (r#"{"type":"status","products":[]}"#, "unknown_type"),
            (r#"{"product_id":"BTC-USD"}"#, "invalid"),
            (r#""match""#, "invalid"),
            (
                r#"{"type":"match","trade_id":10,"time":"yesterday","product_id":"BTC-USD","size":"1","price":"1"}"#,
                "invalid",
            ),
            (
                r#"{"type":"match","trade_id":10,"time":"2014-11-07T08:19:27.028459Z","product_id":"BTC-USD","size":"1","price":"-"}"#,
                "invalid",
            ),
            (
                r#"{"type":"ticker","sequence":1,"product_id":"ETH-USD","best_bid":"1","best_bid_size":"1","best_ask":"1","time":"2014-11-07T08:19:27.028459Z"}"#,
                "invalid",
            ),
            (
                r#"{"type":"error","message":"Failed to subscribe","reason":"ABC-XYZ is not a valid product"}"#,
                "venue",
            ),
            (big.as_str(), "oversize"),
        ];
        for (msg, label) in table {
            let mut n = CoinbaseNormalizer::new("COINBASE", 300);
            let e = n.normalize(msg.as_bytes(), 0).unwrap_err();
            assert_eq!(e.label(), *label, "{msg}: {e}");
        }
    }

    #[test]
    fn trade_id_gaps_duplicates_and_heartbeats() {
        let mut n = CoinbaseNormalizer::new("COINBASE", 4096);
        let m = |ty: &str, id: u64| {
            format!(
                r#"{{"type":"{ty}","trade_id":{id},"sequence":{},"maker_order_id":"a","taker_order_id":"b","time":"2026-11-20T14:30:00.000001Z","product_id":"BTC-USD","size":"1","price":"2","side":"buy"}}"#,
                id * 10
            )
        };
        let hb = |id: u64| {
            format!(
                r#"{{"type":"heartbeat","sequence":1,"last_trade_id":{id},"product_id":"BTC-USD","time":"2026-11-20T14:30:01.000001Z"}}"#
            )
        };
        assert_eq!(
            n.normalize(m("last_match", 100).as_bytes(), 0).unwrap().gap,
            None
        );
        assert_eq!(
            n.normalize(m("match", 101).as_bytes(), 0).unwrap().gap,
            None
        );
        assert_eq!(n.normalize(hb(101).as_bytes(), 0).unwrap().gap, None);
        // A reconnect sends the last match again: dropped, not a second tick.
        let again = n.normalize(m("last_match", 101).as_bytes(), 0).unwrap();
        assert_eq!(again.kind, MessageKind::Duplicate);
        let gap = n
            .normalize(m("match", 104).as_bytes(), 0)
            .unwrap()
            .gap
            .unwrap();
        assert_eq!(
            (gap.symbol, gap.expected, gap.missed()),
            (sym("COINBASE:BTC-USD"), 102, 2)
        );
        // The heartbeat knows of trades 105 and 106 that never came.
        let gap = n.normalize(hb(106).as_bytes(), 0).unwrap().gap.unwrap();
        assert_eq!(gap.missed(), 2);
        assert_eq!(
            n.normalize(m("match", 107).as_bytes(), 0).unwrap().gap,
            None
        );
    }

    #[test]
    fn level2_snapshots_replace_and_updates_apply() {
        use crate::book::Side;
        let mut n = CoinbaseNormalizer::new("", 4096);
        let changes = |n: &CoinbaseNormalizer| -> Vec<(Side, i64, i64)> {
            crate::feed::book_levels(n.book_changes())
        };
        let snap = |bids: &str, asks: &str| {
            format!(r#"{{"type":"snapshot","product_id":"BTC-USD","bids":{bids},"asks":{asks}}}"#)
        };
        let out = n
            .normalize(
                snap(r#"[["10.00","1"],["9.99","2"]]"#, r#"[["10.01","3"]]"#).as_bytes(),
                7,
            )
            .unwrap();
        assert_eq!((out.kind, out.tick), (MessageKind::Book, None));
        assert_eq!(changes(&n).len(), 3);
        assert_eq!(n.book_changes()[0].ts_event, 7);
        let update = r#"{"type":"l2update","product_id":"BTC-USD","changes":[["buy","9.99","0"],["sell","10.02","1.5"]],"time":"2019-08-14T20:42:27.265Z"}"#;
        n.normalize(update.as_bytes(), 7).unwrap();
        assert_eq!(
            changes(&n),
            [
                (Side::Bid, px("9.99"), 0),
                (Side::Ask, px("10.02"), px("1.5"))
            ]
        );
        assert_eq!(n.book_changes()[0].ts_event, 1_565_815_347_265_000_000);
        // A reconnect's snapshot: the difference from the book so far.
        n.normalize(
            snap(r#"[["10.00","1"]]"#, r#"[["10.03","1"]]"#).as_bytes(),
            8,
        )
        .unwrap();
        assert_eq!(
            changes(&n),
            [
                (Side::Ask, px("10.01"), 0),
                (Side::Ask, px("10.02"), 0),
                (Side::Ask, px("10.03"), px("1"))
            ]
        );
        for bad in [
            r#"{"type":"l2update","product_id":"BTC-USD","changes":[["hold","1","1"]],"time":"2019-08-14T20:42:27.265Z"}"#,
            r#"{"type":"l2update","product_id":"BTC-USD","changes":[["buy","1","1"],["sell","x","1"]],"time":"2019-08-14T20:42:27.265Z"}"#,
            r#"{"type":"l2update","product_id":"BTC-USD","changes":[["buy","1","1"]]}"#,
            r#"{"type":"snapshot","product_id":"BTC-USD","bids":[["1"]],"asks":[]}"#,
        ] {
            assert!(n.normalize(bad.as_bytes(), 9).is_err(), "{bad}");
            assert!(n.book_changes().is_empty(), "{bad}");
        }
        assert_eq!(
            subscribe_message_with(&["BTC-USD".into()], true),
            r#"{"type":"subscribe","product_ids":["BTC-USD"],"channels":["matches","ticker","heartbeat","level2_batch"]}"#
        );
    }
}
