//! `Session`: what a client knows across connections, sans-IO. It takes the server's
//! messages and returns [`Event`]s, and writes the control messages to send: the
//! subscriptions to restore, with resume points, after a reconnect.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use rkyv::util::AlignedVec;
use serde_json::{json, Value};

use super::batch::{Batch, SymbolNames};
use super::book::BookTracker;
use super::gaps::GapDetector;
use super::Event;
use crate::wire::DecodeError;

/// Subscriptions, sequence accounting and pending events of one client.
#[derive(Debug, Default)]
pub struct Session {
    /// Symbols the user subscribed (and did not unsubscribe); restored on reconnect.
    wanted: BTreeSet<String>,
    /// Whether the user subscribed to `*`.
    wildcard: bool,
    /// The `max_rate` of the latest subscribe, sent again on reconnect.
    max_rate: Option<f64>,
    /// Per-symbol sequence accounting; also the resume points.
    gaps: GapDetector,
    /// Id → name on the current connection (copy on write: batches share it).
    names: SymbolNames,
    /// Events decoded but not yet returned.
    events: VecDeque<Event>,
    /// The server announced its shutdown on the current connection.
    shutdown_announced: bool,
    /// Resubscribes sent so far (each carries its own `id`).
    resubscribes: u64,
    /// The `id` of the resubscribe awaiting its reply.
    awaiting: Option<String>,
    /// The server rejected the resubscribe: send it again later.
    retry: bool,
    /// The `channels` of the latest subscribe that named them, sent again on
    /// reconnect (`None`: the server's default, trades and quotes).
    channels: Option<Vec<String>>,
    /// Each symbol's book, rebuilt from its book records, by name (so it survives a
    /// reconnect, and `resume_book` continues it).
    books: HashMap<String, BookTracker>,
}

impl Session {
    /// An empty session.
    pub fn new() -> Session {
        Session::default()
    }

    /// The next event decoded, if any.
    pub fn pop(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Queues an event made by the connection layer (reconnects, disconnects).
    pub fn push(&mut self, event: Event) {
        self.events.push_back(event);
    }

    /// Records a subscribe and returns the message to send.
    pub fn subscribe(&mut self, symbols: &[String], max_rate: Option<f64>) -> String {
        for s in symbols {
            if s == "*" {
                self.wildcard = true;
            } else {
                self.wanted.insert(s.clone());
            }
        }
        if max_rate.is_some() {
            self.max_rate = max_rate;
        }
        subscribe_message(symbols, max_rate, None)
    }

    /// Records a subscribe on `channels` (`"trade"`, `"quote"`, `"book"`) and returns
    /// the message to send; reconnects ask for the same channels.
    pub fn subscribe_channels(
        &mut self,
        symbols: &[String],
        max_rate: Option<f64>,
        channels: &[&str],
    ) -> String {
        let msg = self.subscribe(symbols, max_rate);
        let channels: Vec<String> = channels.iter().map(|c| c.to_string()).collect();
        let mut v: Value = serde_json::from_str(&msg).unwrap_or_default();
        v["channels"] = json!(channels);
        self.channels = Some(channels);
        v.to_string()
    }

    /// The book of `symbol` as rebuilt from its book messages (subscribed with the
    /// `book` channel), if any arrived.
    pub fn book(&self, symbol: &str) -> Option<&BookTracker> {
        self.books.get(symbol)
    }

    /// Records an unsubscribe and returns the message to send.
    pub fn unsubscribe(&mut self, symbols: &[String]) -> String {
        for s in symbols {
            if s == "*" {
                self.wildcard = false;
                for name in std::mem::take(&mut self.wanted) {
                    self.gaps.forget(&name);
                }
                self.books.clear();
            } else {
                self.wanted.remove(s);
                self.gaps.forget(s);
                self.books.remove(s);
            }
        }
        json!({"op": "unsubscribe", "symbols": symbols}).to_string()
    }

    /// Whether anything is subscribed.
    pub fn has_subscriptions(&self) -> bool {
        self.wildcard || !self.wanted.is_empty()
    }

    /// A new connection is up: forgets the old id map and returns the subscribe to
    /// send, resuming each symbol from the last `seq` seen (`None` when nothing is
    /// subscribed).
    pub fn connected(&mut self) -> Option<String> {
        self.gaps.new_connection();
        self.names = SymbolNames::default();
        self.shutdown_announced = false;
        self.retry = false;
        self.resubscribe()
    }

    /// Whether the server rejected the last resubscribe (a restarted server whose feed
    /// has not yet seen every symbol answers `unknown symbol`): the caller sends
    /// [`Session::resubscribe`] again after a delay. Reading clears it.
    pub fn take_retry(&mut self) -> bool {
        std::mem::take(&mut self.retry)
    }

    /// The subscribe that restores every subscription, with resume points and an `id`
    /// to recognise its reply; `None` when nothing is subscribed.
    pub fn resubscribe(&mut self) -> Option<String> {
        if !self.has_subscriptions() {
            self.awaiting = None;
            return None;
        }
        let symbols: Vec<String> = if self.wildcard {
            vec!["*".to_string()]
        } else {
            self.wanted.iter().cloned().collect()
        };
        let resume: serde_json::Map<String, Value> = self
            .gaps
            .last_seqs()
            .filter(|(name, _)| self.wildcard || self.wanted.contains(*name))
            .map(|(name, seq)| (name.to_string(), json!(seq)))
            .collect();
        self.resubscribes += 1;
        let id = format!("resubscribe-{}", self.resubscribes);
        let mut msg: Value =
            serde_json::from_str(&subscribe_message(&symbols, self.max_rate, Some(resume)))
                .unwrap_or_default();
        msg["id"] = json!(id);
        if let Some(c) = &self.channels {
            msg["channels"] = json!(c);
        }
        let resume_book: serde_json::Map<String, Value> = self
            .books
            .iter()
            .filter(|(name, t)| t.is_synced() && (self.wildcard || self.wanted.contains(*name)))
            .map(|(name, t)| (name.clone(), json!(t.seq())))
            .collect();
        if !resume_book.is_empty() {
            msg["resume_book"] = Value::Object(resume_book);
        }
        self.awaiting = Some(id);
        Some(msg.to_string())
    }

    /// The resume points a reconnect would send: the highest `seq` seen per symbol.
    pub fn last_seqs(&self) -> Vec<(String, u64)> {
        self.gaps
            .last_seqs()
            .map(|(n, s)| (n.to_string(), s))
            .collect()
    }

    /// Whether the server said `{"type":"shutdown"}` on the current connection.
    pub fn shutdown_announced(&self) -> bool {
        self.shutdown_announced
    }

    /// A binary data message (already in an aligned buffer): checked, accounted, and
    /// queued as [`Event::Ticks`] followed by any [`Event::Gap`].
    pub fn on_binary(&mut self, buf: AlignedVec<8>) -> Result<(), DecodeError> {
        let len = buf.len();
        let batch = Batch::new(buf, self.names.clone())?;
        for r in batch.records() {
            if r.kind == crate::tick::Kind::Book as u8 {
                // Numbered apart: the symbol's `BookTracker` accounts for them.
                let id = r.symbol_id.to_native();
                let (Some(t), Some(name)) = (r.to_tick(), batch.symbol(id)) else {
                    continue;
                };
                let tracker = self.books.entry(name.to_string()).or_default();
                if let Err(gap) = tracker.on_record(&t) {
                    self.events.push_back(Event::BookGap {
                        symbol: name.to_string(),
                        gap,
                    });
                }
                continue;
            }
            self.gaps.observe(
                r.symbol_id.to_native(),
                r.seq.to_native(),
                r.flags,
                r.count.to_native(),
                r.ts_recv.to_native(),
            );
        }
        self.events.push_back(Event::Ticks(batch));
        let events = &mut self.events;
        self.gaps
            .end_message(len, |g| events.push_back(Event::Gap(g)));
        Ok(())
    }

    /// A text message: a control message (or a JSON tick array, passed on as is).
    pub fn on_text(&mut self, text: &str) {
        let v: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                self.events.push_back(Event::Control(
                    json!({"type": "invalid", "error": e.to_string(), "text": text}),
                ));
                return;
            }
        };
        let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
        let reply_to_resubscribe = self.awaiting.is_some()
            && v.get("id").and_then(Value::as_str) == self.awaiting.as_deref();
        if reply_to_resubscribe {
            self.awaiting = None;
            self.retry = kind == "error";
        }
        let names = |v: &Value| -> Vec<String> {
            v.get("symbols")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let event = match kind {
            "symbols" => {
                let mut map = Vec::new();
                for s in v
                    .get("symbols")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let (Some(id), Some(name)) = (
                        s.get("id").and_then(Value::as_u64),
                        s.get("name").and_then(Value::as_str),
                    ) else {
                        continue;
                    };
                    let Ok(id) = u32::try_from(id) else { continue };
                    self.bind(id, name);
                    map.push((id, name.to_string()));
                }
                Event::Symbols(map)
            }
            "subscribed" => Event::Subscribed { symbols: names(&v) },
            "unsubscribed" => Event::Unsubscribed { symbols: names(&v) },
            "conflation" => Event::Conflation {
                on: v.get("state").and_then(Value::as_str) == Some("on"),
                merged: v.get("merged").and_then(Value::as_u64),
            },
            "shutdown" => {
                self.shutdown_announced = true;
                Event::Shutdown
            }
            "error" => Event::ServerError {
                message: v
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            },
            _ => Event::Control(v),
        };
        self.events.push_back(event);
    }

    fn bind(&mut self, id: u32, name: &str) {
        self.gaps.bind(id, name);
        let Ok(i) = usize::try_from(id) else { return };
        if i > 16 << 20 {
            return; // absurd id: not mapped rather than a huge allocation
        }
        let names = Arc::make_mut(&mut self.names);
        if names.len() <= i {
            names.resize(i + 1, None);
        }
        names[i] = Some(Arc::from(name));
    }
}

/// A subscribe control message in binary format.
pub fn subscribe_message(
    symbols: &[String],
    max_rate: Option<f64>,
    resume: Option<serde_json::Map<String, Value>>,
) -> String {
    let mut msg = json!({"op": "subscribe", "symbols": symbols, "format": "binary"});
    if let Some(r) = max_rate {
        msg["max_rate"] = json!(r);
    }
    if let Some(resume) = resume.filter(|r| !r.is_empty()) {
        msg["resume"] = Value::Object(resume);
    }
    msg.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tick::{Body, Flags, Tick};
    use crate::wire::{encode_header, encode_record, HEADER_SIZE, RECORD_SIZE};

    fn message(ticks: &[(u32, u64, Flags)]) -> AlignedVec<8> {
        let mut msg = AlignedVec::new();
        let mut h = [0u8; HEADER_SIZE];
        encode_header(ticks.len() as u32, 1, &mut h);
        msg.extend_from_slice(&h);
        for &(symbol_id, seq, flags) in ticks {
            let mut r = [0u8; RECORD_SIZE];
            let t = Tick {
                symbol_id,
                seq,
                ts_event: 1,
                ts_recv: 1,
                flags,
                count: 1,
                body: Body::trade(1, 1),
            };
            encode_record(&t, &mut r);
            msg.extend_from_slice(&r);
        }
        msg
    }

    #[test]
    fn resubscribes_with_resume_points_after_reconnect() {
        let mut s = Session::new();
        let sub = s.subscribe(&["A".into(), "B".into()], None);
        assert_eq!(
            serde_json::from_str::<Value>(&sub).unwrap(),
            json!({"op":"subscribe","symbols":["A","B"],"format":"binary"})
        );
        assert!(s.connected().is_some());
        s.on_text(r#"{"type":"symbols","symbols":[{"id":0,"name":"A"},{"id":1,"name":"B"}]}"#);
        assert!(matches!(s.pop(), Some(Event::Symbols(m)) if m.len() == 2));
        s.on_binary(message(&[
            (0, 7, Flags::SNAPSHOT),
            (1, 3, Flags::SNAPSHOT),
            (0, 8, Flags::empty()),
        ]))
        .unwrap();
        match s.pop() {
            Some(Event::Ticks(b)) => {
                assert_eq!(b.len(), 3);
                assert_eq!(b.symbol(1), Some("B"));
            }
            other => panic!("{other:?}"),
        }
        assert!(s.pop().is_none(), "no gap");
        let again: Value = serde_json::from_str(&s.connected().unwrap()).unwrap();
        assert_eq!(again["symbols"], json!(["A", "B"]));
        assert_eq!(again["resume"], json!({"A": 8, "B": 3}));
        // A restarted server that does not know the symbols yet rejects it: retry.
        s.on_text(&format!(
            r#"{{"type":"error","message":"unknown symbol A","id":{}}}"#,
            again["id"]
        ));
        assert!(matches!(s.pop(), Some(Event::ServerError { .. })));
        assert!(s.take_retry());
        assert!(!s.take_retry(), "reading clears it");
        let retry: Value = serde_json::from_str(&s.resubscribe().unwrap()).unwrap();
        assert_ne!(retry["id"], again["id"]);
        assert_eq!(retry["resume"], again["resume"]);
        // A user's own rejected subscribe is not retried.
        s.on_text(r#"{"type":"error","message":"unknown symbol \"X\""}"#);
        s.pop();
        assert!(!s.take_retry());
        s.on_text(&format!(
            r#"{{"type":"subscribed","symbols":["A","B"],"id":{}}}"#,
            retry["id"]
        ));
        s.pop();
        assert!(!s.take_retry());
        // After the reconnect, ids may differ: the new map is used.
        s.on_text(r#"{"type":"symbols","symbols":[{"id":0,"name":"B"},{"id":1,"name":"A"}]}"#);
        s.pop();
        s.on_binary(message(&[(1, 10, Flags::empty())])).unwrap();
        s.pop();
        match s.pop() {
            Some(Event::Gap(g)) => assert_eq!((g.symbol.as_str(), g.expected, g.got), ("A", 9, 10)),
            other => panic!("{other:?}"),
        }
        s.unsubscribe(&["A".into()]);
        let third: Value = serde_json::from_str(&s.connected().unwrap()).unwrap();
        assert_eq!(third["resume"], json!({"B": 3}));
        s.unsubscribe(&["*".into()]);
        assert!(s.connected().is_none());
    }

    /// Book records go to the symbol's book, not to the trade-and-quote accounting; a
    /// reconnect asks for the same channels and resumes the book.
    #[test]
    fn books_are_rebuilt_and_resumed() {
        use crate::book::Side;
        let mut s = Session::new();
        let sub = s.subscribe_channels(&["A".into()], None, &["book"]);
        assert_eq!(
            serde_json::from_str::<Value>(&sub).unwrap()["channels"],
            json!(["book"])
        );
        s.connected();
        s.on_text(r#"{"type":"symbols","symbols":[{"id":0,"name":"A"}]}"#);
        let mut msg = AlignedVec::<8>::new();
        let mut h = [0u8; HEADER_SIZE];
        encode_header(3, 1, &mut h);
        msg.extend_from_slice(&h);
        let level = |seq, flags, side, price, group| Tick {
            symbol_id: 0,
            seq,
            ts_event: 1,
            ts_recv: 1,
            flags,
            count: 1,
            body: Body::Book {
                side,
                price,
                size: 5,
                new_level: false,
                group,
            },
        };
        for t in [
            level(4, Flags::SNAPSHOT, Side::Bid, 10, (2, 0)),
            level(4, Flags::SNAPSHOT, Side::Ask, 11, (2, 1)),
            level(6, Flags::empty(), Side::Bid, 9, (1, 0)), // 5 is missing
        ] {
            let mut r = [0u8; RECORD_SIZE];
            encode_record(&t, &mut r);
            msg.extend_from_slice(&r);
        }
        s.on_binary(msg).unwrap();
        let events: Vec<Event> = std::iter::from_fn(|| s.pop()).collect();
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::BookGap { symbol, gap }
                if symbol == "A" && gap.expected == 5 && gap.got == 6)),
            "{events:?}"
        );
        assert!(
            !events.iter().any(|e| matches!(e, Event::Gap(_))),
            "book numbers are not trade numbers"
        );
        let b = s.book("A").unwrap();
        assert_eq!(b.book().bids(), &[(10, 5), (9, 5)]);
        assert!(!b.is_synced());
        let again: Value = serde_json::from_str(&s.connected().unwrap()).unwrap();
        assert_eq!(again["channels"], json!(["book"]));
        assert!(
            again.get("resume_book").is_none(),
            "out of sync: a snapshot"
        );
    }

    #[test]
    fn control_messages_become_events() {
        let mut s = Session::new();
        type Check = fn(&Event) -> bool;
        let table: &[(&str, Check)] = &[
            (r#"{"type":"conflation","state":"on"}"#, |e| {
                matches!(
                    e,
                    Event::Conflation {
                        on: true,
                        merged: None
                    }
                )
            }),
            (r#"{"type":"conflation","state":"off","merged":12}"#, |e| {
                matches!(
                    e,
                    Event::Conflation {
                        on: false,
                        merged: Some(12)
                    }
                )
            }),
            (
                r#"{"type":"shutdown","message":"server shutting down"}"#,
                |e| matches!(e, Event::Shutdown),
            ),
            (
                r#"{"type":"error","message":"unknown symbol \"X\""}"#,
                |e| matches!(e, Event::ServerError { message } if message.contains("X")),
            ),
            (
                r#"{"type":"unsubscribed","symbols":["A"]}"#,
                |e| matches!(e, Event::Unsubscribed { symbols } if symbols == &["A"]),
            ),
            (
                r#"not json"#,
                |e| matches!(e, Event::Control(v) if v["type"] == "invalid"),
            ),
            (
                r#"{"type":"symbols","symbols":[{"id":-1,"name":"A"},{"id":5}]}"#,
                |e| matches!(e, Event::Symbols(m) if m.is_empty()),
            ),
        ];
        for (text, ok) in table {
            s.on_text(text);
            let e = s.pop().unwrap();
            assert!(ok(&e), "{text}: {e:?}");
        }
        assert!(s.shutdown_announced());
        assert!(s.on_binary(AlignedVec::new()).is_err());
        s.connected();
        assert!(!s.shutdown_announced());
    }
}
