//! Where a new subscription starts: a replay from the ring, or a snapshot.
//!
//! A subscribe may carry `resume: {symbol: last_seq}`. The core knows, per symbol, the
//! highest sequence it has read (`seen_seq`); it scans the ring backwards once for all
//! resumed symbols. If every tick from `last_seq + 1` up to `seen_seq` is still there,
//! they are replayed (flagged `replay`) and live ticks follow; otherwise the client gets
//! the latest values flagged `snapshot`.
//!
//! A `last_seq` above anything the last-value cache holds means this node has not
//! reached the client's resume point. On an edge (or an ingest standby), that is
//! usually a few milliseconds of lag behind the node the client came from: the
//! subscription *waits* ([`Waiting`]), for at most `resume_wait_ms`. Its `last_seq` is
//! the client's, so the ticks it already has are skipped as they arrive and the next
//! ones go out live: no gap, no duplicate, no snapshot. The core looks at the waiting
//! resumes after each batch it reads from the ring; one whose point the core has read
//! is done (`resumes_caught_up`); one still short of it when the wait ends gets the
//! latest values flagged `snapshot` (`resumes_timed_out`): the client's numbers may
//! come from another run of the numbering (every ingest restarted). A standalone
//! node is the source of its numbers: it never waits, a `last_seq` above its own is
//! from another run and gets a snapshot at once.
//!
//! Every subscription's `last_seq` is what makes the start meet the live stream with no
//! gap and no duplicate: a tick at or below it is skipped. The same snapshot path
//! brings subscribers up to date after the core was lapped by the ring, or after an
//! edge node resynchronised its cache from the ingest.

use std::collections::HashMap;

use std::sync::atomic::Ordering::Relaxed;

use super::core::{ConnId, Core};
use super::subscriptions::SubKey;
use crate::lvc::{BookSnapshot, Latest, TradeSummary};
use crate::protocol::Channels;
use crate::symbol::Symbol;
use crate::tick::{Flags, Kind, Tick};
use crate::wire::{self, BookMessage};

/// A resume waiting for this node to reach the client's resume point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waiting {
    /// The subscription.
    pub sub: SubKey,
    /// The client's last sequence.
    pub from: u64,
    /// When the wait ends (ns); the subscription's `resume_until_ns` holds the same,
    /// which tells a reused key from the subscription that waits.
    pub until_ns: u64,
}

impl Core {
    /// Starts each of `key`'s newly `added` subscriptions: replayed from `resume`'s
    /// point when the ring still has it, else the cached latest values, flagged. With
    /// `summary`, their session summaries go first (`docs/protocol.md`, "Session
    /// summary"), each read after the latest values its snapshot sends, so that it
    /// counts every trade up to the snapshot's.
    pub(super) fn start_subscriptions(
        &mut self,
        key: ConnId,
        added: &[u32],
        resume: &HashMap<u32, u64>,
        summary: bool,
        now: u64,
    ) {
        let replays = self.replay_from_ring(resume, false);
        let wait = self.settings.resume_wait_ns;
        let snapshots: Vec<(u32, Latest, TradeSummary)> = added
            .iter()
            .map(|&sym| {
                let (latest, summary) = self.lvc.snapshot(sym);
                (sym, latest, summary)
            })
            .collect();
        if summary {
            let names: Vec<Symbol> = added.iter().map(|&sym| self.name(sym)).collect();
            let entries = names
                .iter()
                .zip(&snapshots)
                .map(|(name, (_, _, s))| (name.as_str(), *s));
            let mut messages = Vec::new();
            wire::write_summary_messages(entries, |m| messages.push(m.to_vec()));
            for m in &messages {
                self.push_control(key, m, now);
            }
        }
        for (sym, latest, _) in snapshots {
            let Some(sk) = super::subscriptions::find(&self.conns[key].subs, sym) else {
                continue;
            };
            if let Some(&from) = resume.get(&sym) {
                if wait > 0 && from > latest.seq() {
                    self.wait_for(sk, from, now + wait);
                    continue;
                }
            }
            match (resume.get(&sym), replays.get(&sym)) {
                (Some(&from), Some(Some(ticks))) => {
                    // Everything after `from` up to what this core has read is still in
                    // the ring: replay it; live ticks follow.
                    if let Some(sub) = self.subs.get_mut(sk) {
                        sub.last_seq = from;
                    }
                    for t in ticks {
                        let replay = Tick {
                            flags: t.flags.with(Flags::REPLAY),
                            ..*t
                        };
                        self.deliver_one(sk, &replay, now);
                    }
                }
                _ => self.snapshot_sub(sk, &latest, now),
            }
        }
    }

    /// Starts the book of each of `key`'s subscriptions of `ids` that carries the book
    /// channel: the changes after `resume`'s point replayed from the ring when it
    /// still has every one of them (flagged `replay`), else the current book flagged
    /// `snapshot`. Live changes follow from the ring, each numbered one above the last.
    pub(super) fn start_books(
        &mut self,
        key: ConnId,
        ids: &[u32],
        resume: &HashMap<u32, u64>,
        now: u64,
    ) {
        let wanted: Vec<(u32, SubKey)> = ids
            .iter()
            .filter_map(|&sym| {
                let sk = super::subscriptions::find(&self.conns[key].subs, sym)?;
                let sub = self.subs.get(sk)?;
                sub.channels.contains(Channels::BOOK).then_some((sym, sk))
            })
            .collect();
        if wanted.is_empty() {
            return;
        }
        let replays = self.replay_from_ring(resume, true);
        for (sym, sk) in wanted {
            match (resume.get(&sym), replays.get(&sym)) {
                (Some(&from), Some(Some(ticks))) => {
                    if let Some(sub) = self.subs.get_mut(sk) {
                        sub.book_seq = from;
                    }
                    for t in ticks {
                        let replay = Tick {
                            flags: t.flags.with(Flags::REPLAY),
                            ..*t
                        };
                        self.deliver_one(sk, &replay, now);
                    }
                }
                _ => {
                    if let Some(sub) = self.subs.get_mut(sk) {
                        sub.book_seq = 0;
                    }
                    let book = self.lvc.book(sym);
                    self.book_snapshot_sub(sk, &book, now);
                }
            }
        }
    }

    /// Sends subscription `sk` the whole `book` flagged snapshot, unless it has that
    /// book already (or a later one); a conflating connection gets it when it
    /// leaves conflation, as a fresh snapshot then.
    pub(super) fn book_snapshot_sub(&mut self, sk: SubKey, book: &BookSnapshot, now: u64) {
        let Some(sub) = self.subs.get_mut(sk) else {
            return;
        };
        if !sub.channels.contains(Channels::BOOK) || (sub.book_seq > 0 && book.seq <= sub.book_seq)
        {
            return;
        }
        sub.book_seq = book.seq;
        let key = sub.conn;
        let conn = &mut self.conns[key];
        if !conn.live() {
            return;
        }
        if conn.conflating {
            sub.conflator().want_book_snapshot();
            if !sub.pending {
                sub.pending = true;
                self.pending.push(sk);
            }
            return;
        }
        // Changes a `max_rate` held back are older than the snapshot: drop them, or
        // their release would come after it.
        if let Some(m) = sub.merged.as_mut() {
            m.take_book();
        }
        let m = BookMessage {
            symbol_id: sub.symbol,
            seq: book.seq,
            ts_event: book.ts_event,
            ts_recv: book.ts_recv,
            flags: Flags::SNAPSHOT,
            count: 1,
            bids: &book.bids,
            asks: &book.asks,
        };
        self.push_book(key, &m, now);
    }

    /// Makes subscription `sk` wait until `until_ns` for this node to read `from`.
    fn wait_for(&mut self, sk: SubKey, from: u64, until_ns: u64) {
        let Some(sub) = self.subs.get_mut(sk) else {
            return;
        };
        // What the client has is skipped as it arrives; what follows goes out live.
        sub.last_seq = from;
        sub.resume_until_ns = until_ns;
        self.waiting.push(Waiting {
            sub: sk,
            from,
            until_ns,
        });
        self.arm_resume(until_ns);
        self.core_stats().resumes_waited.fetch_add(1, Relaxed);
    }

    /// Looks at the waiting resumes (after a batch from the ring, and when a wait
    /// ends): those whose point this core has read are done; those whose wait is over
    /// get a snapshot.
    pub(super) fn retry_resumes(&mut self, now: u64) {
        let mut next = u64::MAX;
        let mut i = 0;
        while i < self.waiting.len() {
            let w = self.waiting[i];
            let Some(sub) = self
                .subs
                .get_mut(w.sub)
                .filter(|s| s.resume_until_ns == w.until_ns)
            else {
                // Unsubscribed, closed, or brought up to date by a restart.
                self.waiting.swap_remove(i);
                continue;
            };
            let seen = self.seen_seq.get(sub.symbol as usize).copied().unwrap_or(0);
            if seen >= w.from {
                sub.resume_until_ns = 0;
                self.waiting.swap_remove(i);
                self.core_stats().resumes_caught_up.fetch_add(1, Relaxed);
            } else if now >= w.until_ns {
                // Still short of the client's point: its numbers may be another run's.
                sub.resume_until_ns = 0;
                sub.last_seq = 0;
                self.waiting.swap_remove(i);
                let latest = self.lvc.latest(sub.symbol);
                self.core_stats().resumes_timed_out.fetch_add(1, Relaxed);
                self.snapshot_sub(w.sub, &latest, now);
            } else {
                next = next.min(w.until_ns);
                i += 1;
            }
        }
        self.next_resume_ns = u64::MAX;
        if next != u64::MAX {
            self.arm_resume(next);
        }
    }

    /// Sends subscription `sk` the `latest` values of its symbol newer than what it
    /// has, flagged snapshot.
    fn snapshot_sub(&mut self, sk: SubKey, latest: &Latest, now: u64) {
        for t in latest.in_seq_order() {
            let snap = Tick {
                flags: t.flags.with(Flags::SNAPSHOT),
                ..t
            };
            self.deliver_one(sk, &snap, now);
        }
    }

    /// Brings every subscriber up to date from the cache, flagged snapshot.
    pub(super) fn snapshot_subscribers(&mut self, now: u64) {
        for sym in 0..self.subs.symbols() {
            let routes = self.subs.of_symbol(sym as u32).len();
            if routes == 0 {
                continue;
            }
            let latest = self.lvc.latest(sym as u32);
            if let Some(seen) = self.seen_seq.get_mut(sym) {
                *seen = (*seen).max(latest.seq());
            }
            let books = self.subs.of_symbol(sym as u32).iter().any(|&sk| {
                self.subs
                    .get(sk)
                    .is_some_and(|s| s.channels.contains(Channels::BOOK))
            });
            if books {
                let book = self.lvc.book(sym as u32);
                if let Some(seen) = self.seen_book_seq.get_mut(sym) {
                    *seen = (*seen).max(book.seq);
                }
                for i in 0..self.subs.of_symbol(sym as u32).len() {
                    let sk = self.subs.of_symbol(sym as u32)[i];
                    self.book_snapshot_sub(sk, &book, now);
                }
            }
            for t in latest.in_seq_order() {
                let snap = Tick {
                    flags: t.flags.with(Flags::SNAPSHOT),
                    ..t
                };
                for i in 0..self.subs.of_symbol(sym as u32).len() {
                    let sk = self.subs.of_symbol(sym as u32)[i];
                    self.deliver_one(sk, &snap, now);
                }
            }
        }
    }

    /// The ring's producer resynchronised the cache from outside the ring (an edge
    /// node took a fresh snapshot from its ingest: `bus::edge`): skip to the head and
    /// bring every subscriber up to date from the cache, flagged snapshot. After an
    /// ingest restart, whose sequence numbers start over, the old numbers are forgotten
    /// first, and so is what conflation held from before.
    pub(super) fn recover_resync(&mut self, generation: u64, now: u64) {
        let restart = self.ring.restart_generation() > self.resync_seen;
        self.resync_seen = generation;
        if restart {
            self.seen_seq.fill(0);
            self.seen_book_seq.fill(0);
            for sub in self.subs.iter_mut() {
                sub.last_seq = 0;
                sub.book_seq = 0;
                sub.pending = false;
                sub.merged = None;
                sub.resume_until_ns = 0;
            }
            // The snapshot below answers the waiting resumes too.
            self.waiting.clear();
            self.next_resume_ns = u64::MAX;
        }
        self.reader.resync();
        self.snapshot_subscribers(now);
    }

    /// Delivers one tick to one subscription, unless it already has it (cold paths:
    /// snapshots, replays, lap recovery). A conflating connection merges it.
    pub(super) fn deliver_one(&mut self, sk: SubKey, t: &Tick, now: u64) {
        let merge_levels = self.settings.book_merge_levels;
        let Some(sub) = self.subs.get_mut(sk) else {
            return;
        };
        let kind = t.body.kind();
        if !sub.channels.carries(kind) {
            return;
        }
        let last = if kind == Kind::Book {
            &mut sub.book_seq
        } else {
            &mut sub.last_seq
        };
        if t.seq <= *last {
            return;
        }
        *last = t.seq;
        let key = sub.conn;
        let conn = &mut self.conns[key];
        if !conn.live() {
            return;
        }
        if conn.conflating {
            sub.conflator().absorb_bounded(t, merge_levels);
            conn.conflated_updates += 1;
            self.counters.conflated_updates += 1;
            if !sub.pending {
                sub.pending = true;
                self.pending.push(sk);
            }
            return;
        }
        // A trade or quote a `max_rate` held back is older than this snapshot (after a
        // lap, a resync or a timed-out resume): it goes out first, or its release would
        // follow the snapshot with an older number and an older value.
        let held = t.flags.contains(Flags::SNAPSHOT)
            && sub.merged.as_ref().is_some_and(|m| m.holds_ticks());
        if held {
            self.release(sk, now);
        }
        self.push_tick(key, t, now);
    }

    /// For each `(symbol, last seq the client saw)`, the ticks it missed up to what
    /// this core has read, from the ring: `Some(ticks)` (possibly empty) when the ring
    /// still holds every one of them, `None` when some were overwritten. One backward
    /// scan over the ring serves every symbol. With `book`, the points are book
    /// sequence numbers and only book changes count; without, trades and quotes.
    pub(super) fn replay_from_ring(
        &self,
        resume: &HashMap<u32, u64>,
        book: bool,
    ) -> HashMap<u32, Option<Vec<Tick>>> {
        let mut out: HashMap<u32, Option<Vec<Tick>>> = HashMap::new();
        // Symbols with something to replay, and the seq the scan must reach down to.
        let mut open: HashMap<u32, (u64, u64)> = HashMap::new();
        let seen_seq = if book {
            &self.seen_book_seq
        } else {
            &self.seen_seq
        };
        for (&sym, &from) in resume {
            let seen = seen_seq.get(sym as usize).copied().unwrap_or(0);
            let cached = if book {
                self.lvc.book(sym).seq
            } else {
                self.lvc.latest(sym).seq()
            };
            if from > cached {
                // A sequence this server never reached: the client's numbers come from
                // another run (a restart). Only a snapshot can bring it up to date.
                out.insert(sym, None);
            } else if seen <= from {
                out.insert(sym, Some(Vec::new()));
            } else {
                open.insert(sym, (from, seen));
                out.insert(sym, None);
            }
        }
        if open.is_empty() {
            return out;
        }
        let ring = &self.ring;
        let end = self.reader.position();
        // Below the last resynchronisation the ring may miss ticks or hold another
        // run's numbers: never replay from there.
        let start = end.saturating_sub(ring.capacity()).max(ring.replay_floor());
        let mut found: HashMap<u32, Vec<Tick>> = HashMap::new();
        let mut pos = end;
        while pos > start && !open.is_empty() {
            pos -= 1;
            let Some(t) = ring.get(pos) else {
                break; // overwritten while scanning: the rest is gone too
            };
            if (t.body.kind() == Kind::Book) != book {
                continue;
            }
            if let Some(&(from, seen)) = open.get(&t.symbol_id) {
                if t.seq > from && t.seq <= seen {
                    found.entry(t.symbol_id).or_default().push(t);
                    if t.seq == from + 1 {
                        open.remove(&t.symbol_id);
                        let mut ticks = found.remove(&t.symbol_id).unwrap_or_default();
                        ticks.reverse();
                        out.insert(t.symbol_id, Some(ticks));
                    }
                }
            }
        }
        out
    }
}
