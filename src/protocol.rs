//! Client control messages: parsing and the errors they can earn.
//!
//! Clients send small JSON text messages (`docs/protocol.md`):
//! `{"op":"subscribe","symbols":["SYM0"],"format":"json","max_rate":2}`,
//! `{"op":"unsubscribe","symbols":["SYM0"]}`. Any message may carry an `"id"`, echoed
//! in the answer. This is the cold path, so it favours clear error messages over speed:
//! each [`ProtocolError`] becomes an `{"type":"error","message":…}` reply.

use serde_json::{json, Map, Value};
use thiserror::Error;

use crate::fanout::Format;

/// Which symbols a subscribe or unsubscribe names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// `["*"]`: every symbol, including ones that appear later.
    All,
    /// These names, deduplicated, in the order given.
    Names(Vec<String>),
}

/// Which kinds of update a subscription carries (`"channels"`): a set of
/// `"trade"`, `"quote"`, `"book"`. Default: trades and quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Channels(pub u8);

impl Channels {
    /// Trades.
    pub const TRADE: Channels = Channels(1);
    /// Top-of-book quotes.
    pub const QUOTE: Channels = Channels(2);
    /// Order-book changes.
    pub const BOOK: Channels = Channels(4);
    /// What a subscribe without `"channels"` gets: trades and quotes.
    pub const DEFAULT: Channels = Channels(3);
    /// Channel names, as in JSON.
    pub const NAMES: [(Channels, &'static str); 3] = [
        (Channels::TRADE, "trade"),
        (Channels::QUOTE, "quote"),
        (Channels::BOOK, "book"),
    ];

    /// Whether every channel of `other` is in `self`.
    pub const fn contains(self, other: Channels) -> bool {
        self.0 & other.0 == other.0
    }

    /// The channel that carries updates of `kind`.
    pub const fn of(kind: crate::tick::Kind) -> Channels {
        match kind {
            crate::tick::Kind::Trade => Channels::TRADE,
            crate::tick::Kind::Quote => Channels::QUOTE,
            crate::tick::Kind::Book => Channels::BOOK,
        }
    }

    /// Whether updates of `kind` go out on these channels.
    pub const fn carries(self, kind: crate::tick::Kind) -> bool {
        self.contains(Channels::of(kind))
    }

    /// The names of the channels, in order.
    pub fn names(self) -> Vec<&'static str> {
        Channels::NAMES
            .iter()
            .filter(|(c, _)| self.contains(*c))
            .map(|&(_, n)| n)
            .collect()
    }
}

impl Default for Channels {
    fn default() -> Self {
        Channels::DEFAULT
    }
}

/// A parsed control message.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// Start (or retune) a subscription.
    Subscribe {
        /// Symbols to subscribe.
        symbols: Selection,
        /// Wire format for the connection; `None` keeps the current one (initially
        /// binary).
        format: Option<Format>,
        /// Most updates per second per symbol; `Some(0.0)` or absent means unlimited;
        /// otherwise at least [`MIN_MAX_RATE`].
        max_rate: Option<f64>,
        /// Last sequence seen per symbol name, for a client resuming after a reconnect.
        resume: Vec<(String, u64)>,
        /// Last book sequence seen per symbol name (`"resume_book"`): book changes are
        /// numbered apart.
        resume_book: Vec<(String, u64)>,
        /// The channels of the symbols it names (`"channels"`); `None`: trades and
        /// quotes for new subscriptions, unchanged for held ones.
        channels: Option<Channels>,
        /// Send the session summary of the symbols this subscribe adds, before their
        /// snapshot (`"summary": true`). Default: false.
        summary: bool,
    },
    /// Stop receiving symbols.
    Unsubscribe {
        /// Symbols to drop.
        symbols: Selection,
    },
}

/// What is wrong with a client's message. The `Display` text is sent to the client.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ProtocolError {
    /// Not valid JSON.
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// Valid JSON but not an object.
    #[error("a control message must be a JSON object")]
    NotAnObject,
    /// No `op` field, or not a string.
    #[error("missing \"op\" (expected \"subscribe\" or \"unsubscribe\")")]
    MissingOp,
    /// An `op` this server does not know.
    #[error("unknown op {0:?} (expected \"subscribe\" or \"unsubscribe\")")]
    UnknownOp(String),
    /// A required field is missing.
    #[error("missing field {0:?}")]
    MissingField(&'static str),
    /// A field has the wrong type or value.
    #[error("invalid {field:?}: {expected}")]
    InvalidField {
        /// The field name.
        field: &'static str,
        /// What it should be.
        expected: &'static str,
    },
    /// Symbols the server does not know; nothing was subscribed.
    #[error("unknown symbol{} {}", if .0.len() == 1 { "" } else { "s" }, quoted(.0))]
    UnknownSymbols(Vec<String>),
    /// Symbols outside the client's entitlements; nothing was subscribed.
    #[error("not entitled to symbol{} {}", if .0.len() == 1 { "" } else { "s" }, quoted(.0))]
    NotEntitled(Vec<String>),
    /// The client sent a binary message on a connection that only takes text.
    #[error("binary messages are not accepted here: send JSON text control messages")]
    BinaryMessage,
    /// More symbols in one connection than allowed; nothing was subscribed.
    #[error("too many subscriptions: at most {0} symbols per connection")]
    TooManySymbols(usize),
    /// Control messages faster than the connection's budget; the message was dropped.
    #[error("rate limit: at most {0} control messages per second; message dropped")]
    RateLimited(u32),
}

fn quoted(names: &[String]) -> String {
    let shown: Vec<String> = names.iter().take(10).map(|n| format!("{n:?}")).collect();
    let more = names.len().saturating_sub(10);
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// The slowest `max_rate` a client may ask for, in updates per second (one update
/// every 11.6 days). A positive rate below it is an error rather than a rate whose
/// interval no clock can hold (`1e-20` would be 3·10¹² years); `0` means unlimited.
pub const MIN_MAX_RATE: f64 = 1e-6;

/// Parses one text message. Returns the client's `id` (if any) alongside the result,
/// so that an error can still be correlated.
pub fn parse(text: &[u8]) -> (Option<Value>, Result<ClientMessage, ProtocolError>) {
    let value: Value = match serde_json::from_slice(text) {
        Ok(v) => v,
        Err(e) => return (None, Err(ProtocolError::InvalidJson(e.to_string()))),
    };
    let Value::Object(obj) = value else {
        return (None, Err(ProtocolError::NotAnObject));
    };
    let id = obj.get("id").cloned();
    (id, parse_object(&obj))
}

fn parse_object(obj: &Map<String, Value>) -> Result<ClientMessage, ProtocolError> {
    let op = obj
        .get("op")
        .and_then(Value::as_str)
        .ok_or(ProtocolError::MissingOp)?;
    match op {
        "subscribe" => {
            let format = match obj.get("format") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if s == "binary" => Some(Format::Binary),
                Some(Value::String(s)) if s == "json" => Some(Format::Json),
                Some(_) => {
                    return Err(ProtocolError::InvalidField {
                        field: "format",
                        expected: "\"binary\" or \"json\"",
                    })
                }
            };
            let max_rate = match obj.get("max_rate") {
                None | Some(Value::Null) => None,
                Some(v) => match v.as_f64() {
                    Some(0.0) => Some(0.0),
                    Some(r) if r.is_finite() && r >= MIN_MAX_RATE => Some(r),
                    _ => {
                        return Err(ProtocolError::InvalidField {
                            field: "max_rate",
                            expected: "a number of updates per second: 0 for unlimited, \
                                       or at least 0.000001",
                        })
                    }
                },
            };
            let resume = resume_points(obj, "resume")?;
            let resume_book = resume_points(obj, "resume_book")?;
            let channels = match obj.get("channels") {
                None | Some(Value::Null) => None,
                Some(Value::Array(list)) if !list.is_empty() => {
                    let mut c = Channels(0);
                    for v in list {
                        let Some(&(ch, _)) =
                            Channels::NAMES.iter().find(|(_, n)| v.as_str() == Some(n))
                        else {
                            return Err(ProtocolError::InvalidField {
                                field: "channels",
                                expected: CHANNELS,
                            });
                        };
                        c.0 |= ch.0;
                    }
                    Some(c)
                }
                Some(_) => {
                    return Err(ProtocolError::InvalidField {
                        field: "channels",
                        expected: CHANNELS,
                    })
                }
            };
            let summary = match obj.get("summary") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => {
                    return Err(ProtocolError::InvalidField {
                        field: "summary",
                        expected: "true or false",
                    })
                }
            };
            Ok(ClientMessage::Subscribe {
                symbols: selection(obj)?,
                format,
                max_rate,
                resume,
                resume_book,
                channels,
                summary,
            })
        }
        "unsubscribe" => Ok(ClientMessage::Unsubscribe {
            symbols: selection(obj)?,
        }),
        other => Err(ProtocolError::UnknownOp(other.chars().take(64).collect())),
    }
}

const CHANNELS: &str = "a non-empty list of \"trade\", \"quote\", \"book\"";

/// `"resume"` or `"resume_book"`: symbol name → last sequence seen.
fn resume_points(
    obj: &Map<String, Value>,
    field: &'static str,
) -> Result<Vec<(String, u64)>, ProtocolError> {
    let invalid = ProtocolError::InvalidField {
        field,
        expected: "an object of symbol name to last sequence seen",
    };
    match obj.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| v.as_u64().map(|s| (k.clone(), s)).ok_or(invalid.clone()))
            .collect(),
        Some(_) => Err(invalid),
    }
}

fn selection(obj: &Map<String, Value>) -> Result<Selection, ProtocolError> {
    const EXPECTED: &str = "a non-empty list of symbol names, or [\"*\"] for all";
    let list = match obj.get("symbols") {
        None => return Err(ProtocolError::MissingField("symbols")),
        Some(Value::Array(list)) if !list.is_empty() => list,
        Some(_) => {
            return Err(ProtocolError::InvalidField {
                field: "symbols",
                expected: EXPECTED,
            })
        }
    };
    let mut names: Vec<String> = Vec::with_capacity(list.len());
    for v in list {
        let Some(s) = v.as_str() else {
            return Err(ProtocolError::InvalidField {
                field: "symbols",
                expected: EXPECTED,
            });
        };
        if s == "*" {
            return Ok(Selection::All);
        }
        if !names.iter().any(|n| n == s) {
            names.push(s.to_string());
        }
    }
    Ok(Selection::Names(names))
}

/// The `{"type":"error",…}` reply for `err`.
pub fn error_message(err: &ProtocolError, id: Option<&Value>) -> Vec<u8> {
    let mut v = json!({"type": "error", "message": err.to_string()});
    if let ProtocolError::UnknownSymbols(names) | ProtocolError::NotEntitled(names) = err {
        v["symbols"] = json!(names);
    }
    with_id(v, id)
}

/// Adds the client's `id` to a reply and serializes it.
pub fn with_id(mut v: Value, id: Option<&Value>) -> Vec<u8> {
    if let Some(id) = id {
        v["id"] = id.clone();
    }
    serde_json::to_vec(&v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(text.as_bytes()).1.unwrap_err().to_string()
    }

    #[test]
    fn parses_subscribe_and_unsubscribe() {
        let (id, m) = parse(
            br#"{"op":"subscribe","symbols":["A","B","A"],"format":"json","max_rate":2,"id":7}"#,
        );
        assert_eq!(id, Some(json!(7)));
        assert_eq!(
            m.unwrap(),
            ClientMessage::Subscribe {
                symbols: Selection::Names(vec!["A".into(), "B".into()]),
                format: Some(Format::Json),
                max_rate: Some(2.0),
                resume: vec![],
                resume_book: vec![],
                channels: None,
                summary: false,
            }
        );
        assert_eq!(
            parse(br#"{"op":"subscribe","symbols":["*"]}"#).1.unwrap(),
            ClientMessage::Subscribe {
                symbols: Selection::All,
                format: None,
                max_rate: None,
                resume: vec![],
                resume_book: vec![],
                channels: None,
                summary: false,
            }
        );
        match parse(br#"{"op":"subscribe","symbols":["A"],"summary":true}"#).1 {
            Ok(ClientMessage::Subscribe { summary, .. }) => assert!(summary),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse(br#"{"op":"unsubscribe","symbols":["A"]}"#).1.unwrap(),
            ClientMessage::Unsubscribe {
                symbols: Selection::Names(vec!["A".into()])
            }
        );
        // The slowest rate allowed, and 0 (also written -0) for unlimited.
        for (text, want) in [("1e-6", 1e-6), ("0", 0.0), ("-0.0", 0.0), ("1e300", 1e300)] {
            let msg = format!(r#"{{"op":"subscribe","symbols":["A"],"max_rate":{text}}}"#);
            match parse(msg.as_bytes()).1 {
                Ok(ClientMessage::Subscribe { max_rate, .. }) => {
                    assert_eq!(max_rate, Some(want), "{text}");
                    assert!(max_rate.unwrap().is_sign_positive());
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        match parse(br#"{"op":"subscribe","symbols":["A"],"resume":{"A":41}}"#).1 {
            Ok(ClientMessage::Subscribe { resume, .. }) => {
                assert_eq!(resume, vec![("A".into(), 41)])
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_channels_and_book_resume() {
        let msg = br#"{"op":"subscribe","symbols":["A"],"channels":["book","trade"],"resume_book":{"A":9}}"#;
        match parse(msg).1 {
            Ok(ClientMessage::Subscribe {
                channels,
                resume_book,
                ..
            }) => {
                let c = channels.unwrap();
                assert!(c.contains(Channels::BOOK) && c.contains(Channels::TRADE));
                assert!(!c.contains(Channels::QUOTE));
                assert_eq!(c.names(), ["trade", "book"]);
                assert_eq!(resume_book, vec![("A".into(), 9)]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(Channels::default().names(), ["trade", "quote"]);
        for bad in [r#"[]"#, r#"["depth"]"#, r#""book""#, r#"[1]"#] {
            let msg = format!(r#"{{"op":"subscribe","symbols":["A"],"channels":{bad}}}"#);
            let e = parse(msg.as_bytes()).1.unwrap_err();
            assert!(e.to_string().contains("channels"), "{bad}: {e}");
        }
        let e = parse(br#"{"op":"subscribe","symbols":["A"],"resume_book":{"A":-1}}"#)
            .1
            .unwrap_err();
        assert!(e.to_string().contains("resume_book"), "{e}");
    }

    #[test]
    fn an_error_carries_a_long_float_id_back_exactly() {
        // 2222222222222222.22222 is 2222222222222222.25 as an f64, written back as
        // "2222222222222222.2", which only an exact parser reads as .25 (serde_json
        // needs `float_roundtrip`; found by fuzz/control_message).
        let (id, result) = parse(b"{\"op\":\"subscrib\x7f\",\"id\":2222222222222222.22222}");
        let reply = error_message(&result.unwrap_err(), id.as_ref());
        let v: serde_json::Value = serde_json::from_slice(&reply).unwrap();
        assert_eq!(v.get("id"), id.as_ref());
        assert_eq!(v["id"].as_f64(), Some(2_222_222_222_222_222.0 + 0.25));
    }

    #[test]
    fn errors_name_the_problem() {
        let cases = [
            ("{", "invalid JSON"),
            ("[1]", "must be a JSON object"),
            (r#"{"symbols":["A"]}"#, "missing \"op\""),
            (r#"{"op":"frobnicate"}"#, "unknown op \"frobnicate\""),
            (r#"{"op":"subscribe"}"#, "missing field \"symbols\""),
            (r#"{"op":"subscribe","symbols":[]}"#, "invalid \"symbols\""),
            (r#"{"op":"subscribe","symbols":[1]}"#, "invalid \"symbols\""),
            (
                r#"{"op":"subscribe","symbols":["A"],"format":"xml"}"#,
                "invalid \"format\"",
            ),
            (
                r#"{"op":"subscribe","symbols":["A"],"max_rate":-1}"#,
                "invalid \"max_rate\"",
            ),
            (
                r#"{"op":"subscribe","symbols":["A"],"max_rate":1e-20}"#,
                "invalid \"max_rate\": a number of updates per second: 0 for unlimited, or at least 0.000001",
            ),
            (
                r#"{"op":"subscribe","symbols":["A"],"max_rate":5e-324}"#,
                "invalid \"max_rate\"",
            ),
            (
                r#"{"op":"subscribe","symbols":["A"],"max_rate":9.99e-7}"#,
                "invalid \"max_rate\"",
            ),
            (
                r#"{"op":"subscribe","symbols":["A"],"resume":{"A":"x"}}"#,
                "invalid \"resume\"",
            ),
            (
                r#"{"op":"subscribe","symbols":["A"],"summary":1}"#,
                "invalid \"summary\": true or false",
            ),
        ];
        for (input, want) in cases {
            let got = err(input);
            assert!(got.contains(want), "{input}: {got}");
        }
        let e = ProtocolError::UnknownSymbols(vec!["FOO".into()]);
        let v: Value = serde_json::from_slice(&error_message(&e, Some(&json!("x")))).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["message"], "unknown symbol \"FOO\"");
        assert_eq!(v["symbols"], json!(["FOO"]));
        assert_eq!(v["id"], "x");
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// Arbitrary bytes never panic the parser.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes);
        }

        /// Structured but hostile JSON: any op, any field types, deep nesting.
        #[test]
        fn hostile_json_never_panics(
            op in prop_oneof![Just("subscribe".to_string()), Just("unsubscribe".to_string()), ".{0,12}"],
            symbols in proptest::collection::vec(".{0,40}", 0..20),
            rate in any::<f64>(),
            depth in 0usize..200,
        ) {
            let nested = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
            let text = format!(
                r#"{{"op":{},"symbols":{},"max_rate":{},"format":{nested},"resume":{{"A":{nested}}}}}"#,
                serde_json::to_string(&op).unwrap(),
                serde_json::to_string(&symbols).unwrap(),
                if rate.is_finite() { rate.to_string() } else { "1e999".into() },
            );
            let (_, result) = parse(text.as_bytes());
            if let Ok(ClientMessage::Subscribe { max_rate: Some(r), .. }) = result {
                prop_assert!(r == 0.0 || (r.is_finite() && r >= MIN_MAX_RATE));
            }
        }
    }
}
