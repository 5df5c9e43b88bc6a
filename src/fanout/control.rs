//! Client control messages on a core: budget, subscribe, unsubscribe, replies.
//!
//! Every text (or binary) message a subscriber sends spends one token of its
//! [`TokenBucket`] (`control_messages_per_sec`, `control_burst`). A message past the
//! budget is dropped and counted; the first one of a run gets an error reply, the rest
//! none, and the next accepted message is preceded by an error saying how many were
//! dropped. So a client cannot make the server write more replies than its budget
//! allows, however fast it sends — and the replies it does earn count against its
//! control-output bound (see `Core::input_flow`).

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;

use serde_json::{json, Value};

use super::core::{ConnId, Core};
use crate::protocol::{self, Channels, ClientMessage, ProtocolError, Selection};

/// A control-message budget: `rate` tokens a second, at most `burst` saved up.
/// Sans-IO: the caller passes `now`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucket {
    tokens: f64,
    at_ns: u64,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens at `now_ns`.
    pub fn full(burst: u32, now_ns: u64) -> TokenBucket {
        TokenBucket::full_of(f64::from(burst), now_ns)
    }

    /// A full bucket of `burst` tokens (a fractional amount, such as bytes).
    pub fn full_of(burst: f64, now_ns: u64) -> TokenBucket {
        TokenBucket {
            tokens: burst,
            at_ns: now_ns,
        }
    }

    /// Takes one token at `now_ns`, refilling at `rate` a second up to `burst`; false
    /// when none is left.
    pub fn take(&mut self, rate: u32, burst: u32, now_ns: u64) -> bool {
        self.refill(f64::from(rate), f64::from(burst), now_ns);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Spends `amount` tokens at `now_ns`, into debt if need be. Returns `None` while
    /// the bucket is not in debt, else how long (ns) until it is out of it.
    pub fn spend(&mut self, amount: f64, rate: f64, burst: f64, now_ns: u64) -> Option<u64> {
        self.refill(rate, burst, now_ns);
        self.tokens -= amount;
        (self.tokens < 0.0).then(|| (-self.tokens / rate * 1e9).ceil() as u64)
    }

    fn refill(&mut self, rate: f64, burst: f64, now_ns: u64) {
        let elapsed = now_ns.saturating_sub(self.at_ns) as f64 / 1e9;
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.at_ns = now_ns.max(self.at_ns);
    }
}

impl Core {
    /// Takes one control message from `key`'s budget; false (and the message is
    /// dropped, counted, and reported once per run) when it is spent.
    fn admit_message(&mut self, key: ConnId, now: u64) -> bool {
        let (rate, burst) = (
            self.settings.control_messages_per_sec,
            self.settings.control_burst,
        );
        let conn = &mut self.conns[key];
        if conn.bucket.take(rate, burst, now) {
            let dropped = std::mem::take(&mut conn.rate_dropped);
            if dropped > 1 {
                let msg = json!({
                    "type": "error",
                    "message": format!("rate limit: {dropped} control messages were dropped"),
                    "dropped": dropped,
                });
                self.push_control(key, &protocol::with_id(msg, None), now);
            }
            return true;
        }
        conn.rate_dropped += 1;
        self.stats.control_rate_limited.fetch_add(1, Relaxed);
        if conn.rate_dropped == 1 {
            let e = ProtocolError::RateLimited(rate);
            let reply = protocol::error_message(&e, None);
            self.push_control(key, &reply, now);
        }
        false
    }

    /// A binary message on a connection that takes only text.
    pub(super) fn on_binary(&mut self, key: ConnId, now: u64) {
        if !self.admit_message(key, now) {
            return;
        }
        self.counters.protocol_errors += 1;
        let reply = protocol::error_message(&ProtocolError::BinaryMessage, None);
        self.push_control(key, &reply, now);
    }

    /// One text message from a subscriber.
    pub(super) fn on_text(&mut self, key: ConnId, text: &[u8], now: u64) {
        if !self.admit_message(key, now) {
            return;
        }
        let (id, msg) = protocol::parse(text);
        let result = msg.and_then(|m| self.apply(key, m, id.as_ref(), now));
        if let Err(e) = result {
            self.counters.protocol_errors += 1;
            let reply = protocol::error_message(&e, id.as_ref());
            self.push_control(key, &reply, now);
        }
    }

    fn apply(
        &mut self,
        key: ConnId,
        msg: ClientMessage,
        id: Option<&Value>,
        now: u64,
    ) -> Result<(), ProtocolError> {
        match msg {
            ClientMessage::Subscribe {
                symbols,
                format,
                max_rate,
                resume,
                resume_book,
                channels,
                summary,
            } => {
                // A core with nothing to deliver may be up to half a ring behind
                // (`Core::wake_at`): it reads up to the head first, so that this
                // subscription starts where a busy core's would, and a resume replays,
                // flagged, every tick the client missed.
                if self.wake_at() != 0 {
                    let upto = self.mark_ring();
                    self.pump(upto, usize::MAX, now);
                }
                let ids = self.resolve(key, &symbols)?;
                let limit = self.settings.max_subscriptions;
                let max_subs = self.conns[key]
                    .entitlements
                    .as_ref()
                    .and_then(|e| e.max_subscriptions)
                    .map_or(limit, |m| m.min(limit));
                let held = &self.conns[key].subs;
                let new = ids
                    .iter()
                    .filter(|&&id| super::subscriptions::find(held, id).is_none())
                    .count();
                if held.len() + new > max_subs {
                    return Err(ProtocolError::TooManySymbols(max_subs));
                }
                let rate = max_rate.unwrap_or(0.0);
                let conn = &mut self.conns[key];
                if let Some(f) = format {
                    if f != conn.format {
                        conn.out.finish(now);
                        conn.format = f;
                    }
                }
                let format = conn.format;
                if symbols == Selection::All {
                    self.set_wildcard(key, Some((rate, channels.unwrap_or_default())));
                }
                let (added, book_added) = self.add_subs(key, &ids, rate, channels, now);
                let names: Vec<String> = ids.iter().map(|&i| self.name(i).to_string()).collect();
                let mut ack = json!({
                    "type": "subscribed",
                    "symbols": names,
                    "format": format.name(),
                    "channels": channels.unwrap_or_default().names(),
                });
                if let Some(r) = max_rate {
                    ack["max_rate"] = json!(r);
                }
                let ack = protocol::with_id(ack, id);
                self.push_control(key, &ack, now);
                if !added.is_empty() {
                    let map = self.symbols_message(&added);
                    self.push_control(key, &map, now);
                }
                let points = |list: &[(String, u64)], ids: &[u32]| -> HashMap<u32, u64> {
                    list.iter()
                        .filter_map(|(name, seq)| Some((self.symbols.id_of(name)?, *seq)))
                        .filter(|(id, _)| ids.contains(id))
                        .collect()
                };
                let resume = points(&resume, &added);
                let mut book_ids = added.clone();
                book_ids.extend_from_slice(&book_added);
                let resume_book = points(&resume_book, &book_ids);
                self.start_subscriptions(key, &added, &resume, summary, now);
                self.start_books(key, &book_ids, &resume_book, now);
                Ok(())
            }
            ClientMessage::Unsubscribe { symbols } => {
                let ids = match &symbols {
                    Selection::All => {
                        self.set_wildcard(key, None);
                        self.conns[key].subs.iter().map(|&(s, _)| s).collect()
                    }
                    Selection::Names(_) => self.resolve(key, &symbols)?,
                };
                let mut removed = Vec::new();
                for sym in ids {
                    if self.remove_sub(key, sym) {
                        removed.push(self.name(sym).to_string());
                    }
                }
                let ack =
                    protocol::with_id(json!({"type": "unsubscribed", "symbols": removed}), id);
                self.push_control(key, &ack, now);
                Ok(())
            }
        }
    }

    /// Subscribes `key` to `ids` it does not hold yet, on `channels` (default: trades
    /// and quotes); retunes the rate of those it holds, and their channels when
    /// `channels` is given. Returns the newly added ids, and the held ones that gained
    /// the book channel.
    pub(super) fn add_subs(
        &mut self,
        key: ConnId,
        ids: &[u32],
        max_rate: f64,
        channels: Option<Channels>,
        now: u64,
    ) -> (Vec<u32>, Vec<u32>) {
        let mut added = Vec::new();
        let mut book_added = Vec::new();
        let mut list = std::mem::take(&mut self.conns[key].subs);
        for &id in ids {
            if id as usize >= self.seen_seq.len() {
                self.seen_seq.resize(id as usize + 1, 0);
                self.seen_book_seq.resize(id as usize + 1, 0);
            }
            if let Some(sk) = super::subscriptions::find(&list, id) {
                if let Some(sub) = self.subs.get_mut(sk) {
                    sub.rate.retune(max_rate, now);
                    if let Some(c) = channels {
                        if c.contains(Channels::BOOK) && !sub.channels.contains(Channels::BOOK) {
                            book_added.push(id);
                        }
                        if !c.contains(Channels::BOOK) {
                            // What it merged of the book is not wanted any more.
                            sub.book_seq = 0;
                            if let Some(m) = sub.merged.as_mut() {
                                m.take_book();
                            }
                        }
                        sub.channels = c;
                    }
                }
                continue;
            }
            let c = channels.unwrap_or_default();
            if self.subs.add(key, &mut list, id, max_rate, c).is_some() {
                added.push(id);
            }
        }
        let conn = &mut self.conns[key];
        conn.subs = list;
        let n = added.len() as u64;
        conn.stats
            .subscriptions
            .store(conn.subs.len() as u64, Relaxed);
        self.core_stats().subscriptions.fetch_add(n, Relaxed);
        (added, book_added)
    }

    fn remove_sub(&mut self, key: ConnId, id: u32) -> bool {
        let mut list = std::mem::take(&mut self.conns[key].subs);
        let removed = self.subs.remove(&mut list, id);
        let conn = &mut self.conns[key];
        conn.subs = list;
        if removed {
            conn.stats
                .subscriptions
                .store(conn.subs.len() as u64, Relaxed);
            self.core_stats().subscriptions.fetch_sub(1, Relaxed);
        }
        removed
    }

    /// The `{"type":"symbols",…}` map of `ids` to names.
    pub(super) fn symbols_message(&mut self, ids: &[u32]) -> Vec<u8> {
        let list: Vec<Value> = ids
            .iter()
            .map(|&id| json!({"id": id, "name": self.name(id).as_str()}))
            .collect();
        serde_json::to_vec(&json!({"type": "symbols", "symbols": list})).unwrap_or_default()
    }

    /// Resolves a selection to ids, or the names that are unknown. Entitled ids only:
    /// a wildcard quietly covers what the client may see, an explicit name outside its
    /// entitlements is an error.
    fn resolve(&mut self, key: ConnId, sel: &Selection) -> Result<Vec<u32>, ProtocolError> {
        let ent = self.conns[key].entitlements.clone();
        match sel {
            Selection::All => {
                let all: Vec<u32> = (0..self.symbols.len() as u32).collect();
                Ok(match ent {
                    None => all,
                    Some(e) => all
                        .into_iter()
                        .filter(|&id| e.allows(self.name(id).as_str()))
                        .collect(),
                })
            }
            Selection::Names(names) => {
                let mut ids = Vec::with_capacity(names.len());
                let mut unknown = Vec::new();
                let mut refused = Vec::new();
                for n in names {
                    match self.symbols.id_of(n) {
                        Some(_) if ent.as_ref().is_some_and(|e| !e.allows(n)) => {
                            refused.push(n.clone())
                        }
                        Some(id) => ids.push(id),
                        None => unknown.push(n.clone()),
                    }
                }
                if !refused.is_empty() {
                    Err(ProtocolError::NotEntitled(refused))
                } else if !unknown.is_empty() {
                    Err(ProtocolError::UnknownSymbols(unknown))
                } else {
                    Ok(ids)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_spends_its_burst_then_refills_at_the_rate() {
        let s = 1_000_000_000u64;
        let mut b = TokenBucket::full(3, 0);
        assert!((0..3).all(|_| b.take(2, 3, 0)));
        assert!(!b.take(2, 3, 0), "burst spent");
        assert!(!b.take(2, 3, s / 4), "half a token after 250 ms");
        assert!(b.take(2, 3, s / 2), "one token after 500 ms");
        assert!(b.take(2, 3, 100 * s) && b.take(2, 3, 100 * s) && b.take(2, 3, 100 * s));
        assert!(!b.take(2, 3, 100 * s), "never more than the burst saved up");
    }
}
