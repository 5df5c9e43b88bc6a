//! `Recorder`: one client thread's latency histogram and counters, and `SeqTracker`,
//! one connection's per-symbol sequence accounting. Sans-IO: the caller passes each
//! record and the time it was received.
//!
//! What is counted, never hidden:
//!
//! - latency (`now − ts_event`) of every live record whose `ts_event` falls in the
//!   measured window (after the warm-up, before the end), wherever it arrives, so a
//!   record held up past the end still counts;
//! - snapshots (flag bit 0) and replays (bit 2) are counted apart and left out of the
//!   latency: their `ts_event` is old on purpose;
//! - conflated records (bit 1) and the updates they stand for (`count`);
//! - gaps: per symbol, the sequence numbers advanced minus the updates the records
//!   received stand for (`docs/protocol.md`: counts add up, merging is never loss).

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency the histograms hold, ns (one hour); larger values are clamped.
pub const MAX_LATENCY_NS: u64 = 3_600 * 1_000_000_000;
/// Significant figures of every histogram.
pub const SIGFIG: u8 = 3;

/// A fresh latency histogram, 1 ns … 1 h at 3 significant figures.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, SIGFIG).expect("static bounds are valid")
}

/// Flag bit 0: snapshot.
pub const FLAG_SNAPSHOT: u8 = 1;
/// Flag bit 1: conflated.
pub const FLAG_CONFLATED: u8 = 2;
/// Flag bit 2: replay.
pub const FLAG_REPLAY: u8 = 4;

/// One record as received: the fields loadgen needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rec {
    /// Symbol key, unique per connection (binary: the server's id).
    pub symbol: u32,
    /// Per-symbol sequence number.
    pub seq: u64,
    /// Flag bits.
    pub flags: u8,
    /// Updates this record stands for.
    pub count: u32,
    /// Event time, ns since the Unix epoch.
    pub ts_event: u64,
    /// A record of a book message before its last one: counted, not measured (the
    /// message is, once, at its last record).
    pub partial: bool,
}

/// Counters of one thread, summed over threads at the end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Subscribers that stopped reading on purpose (`--stalled-fraction`).
    pub stalled: u64,
    /// Records received, all kinds, the whole run.
    pub records: u64,
    /// Records whose `ts_event` is in the measured window.
    pub window_records: u64,
    /// WebSocket payload bytes received, the whole run.
    pub bytes: u64,
    /// Payload bytes received during the measured window (by receive time).
    pub window_bytes: u64,
    /// Data messages received.
    pub messages: u64,
    /// Records flagged snapshot.
    pub snapshots: u64,
    /// Records flagged replay.
    pub replays: u64,
    /// Records flagged conflated.
    pub conflated: u64,
    /// Updates the conflated records stand for.
    pub conflated_updates: u64,
    /// Sequence gaps found (per connection and symbol).
    pub gaps: u64,
    /// Updates missing in those gaps.
    pub gap_updates: u64,
    /// Snapshots that re-synchronised a symbol already streaming (the server fell a
    /// ring behind); they are flagged, so not gaps, but they are counted.
    pub resyncs: u64,
    /// Records at or below a symbol's last sequence (not flagged snapshot).
    pub duplicates: u64,
    /// Records received before their `ts_event` (clock skew); recorded as 1 ns.
    pub clock_skew: u64,
    /// Error messages from the server, undecodable messages, failed connections.
    pub errors: u64,
    /// Connections that opened and subscribed.
    pub connected: u64,
    /// Connections that failed to open or subscribe.
    pub connect_failed: u64,
    /// Connections closed by the server during the run.
    pub closed_by_server: u64,
    /// Messages the server sent with `"type":"conflation","state":"on"`.
    pub conflation_episodes: u64,
    /// Book messages that did not follow their book's last one.
    #[serde(default)]
    pub book_gaps: u64,
    /// Books compared with the in-process server's at the end of the run.
    #[serde(default)]
    pub books_checked: u64,
    /// Of those, books not equal to the server's.
    #[serde(default)]
    pub book_mismatches: u64,
}

impl Counters {
    /// Adds `other` into `self`.
    pub fn add(&mut self, o: &Counters) {
        self.stalled += o.stalled;
        self.records += o.records;
        self.window_records += o.window_records;
        self.bytes += o.bytes;
        self.window_bytes += o.window_bytes;
        self.messages += o.messages;
        self.snapshots += o.snapshots;
        self.replays += o.replays;
        self.conflated += o.conflated;
        self.conflated_updates += o.conflated_updates;
        self.gaps += o.gaps;
        self.gap_updates += o.gap_updates;
        self.resyncs += o.resyncs;
        self.duplicates += o.duplicates;
        self.clock_skew += o.clock_skew;
        self.errors += o.errors;
        self.connected += o.connected;
        self.connect_failed += o.connect_failed;
        self.closed_by_server += o.closed_by_server;
        self.conflation_episodes += o.conflation_episodes;
        self.book_gaps += o.book_gaps;
        self.books_checked += o.books_checked;
        self.book_mismatches += o.book_mismatches;
    }
}

/// The measured window, by `ts_event`: `[from_ns, to_ns)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Start (end of the warm-up), ns since the Unix epoch.
    pub from_ns: u64,
    /// End, ns since the Unix epoch.
    pub to_ns: u64,
}

impl Window {
    /// No window yet: nothing is measured.
    pub const NONE: Window = Window {
        from_ns: u64::MAX,
        to_ns: u64::MAX,
    };

    /// Whether `t` is inside.
    pub fn contains(&self, t: u64) -> bool {
        t >= self.from_ns && t < self.to_ns
    }
}

/// One thread's measurements.
#[derive(Debug, Clone)]
pub struct Recorder {
    /// Latency of every measured record, ns.
    pub hist: Histogram<u64>,
    /// Latency since the last progress report, ns.
    pub interval: Histogram<u64>,
    /// Everything counted.
    pub counters: Counters,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    /// Empty histograms and counters.
    pub fn new() -> Recorder {
        Recorder {
            hist: new_histogram(),
            interval: new_histogram(),
            counters: Counters::default(),
        }
    }

    /// Accounts one received data message of `bytes` payload bytes at `now_ns`.
    pub fn on_message(&mut self, bytes: usize, now_ns: u64, window: Window) {
        self.counters.messages += 1;
        self.counters.bytes += bytes as u64;
        if window.contains(now_ns) {
            self.counters.window_bytes += bytes as u64;
        }
    }

    /// Accounts one record received at `now_ns` on the connection tracked by `seqs`.
    pub fn on_record(&mut self, seqs: &mut SeqTracker, r: Rec, now_ns: u64, window: Window) {
        let c = &mut self.counters;
        c.records += 1;
        if r.partial {
            return;
        }
        seqs.on_record(r, c);
        if r.flags & FLAG_CONFLATED != 0 {
            c.conflated += 1;
            c.conflated_updates += u64::from(r.count);
        }
        if r.flags & FLAG_SNAPSHOT != 0 {
            c.snapshots += 1;
            return;
        }
        if r.flags & FLAG_REPLAY != 0 {
            c.replays += 1;
            return;
        }
        if !window.contains(r.ts_event) {
            return;
        }
        c.window_records += 1;
        let latency = if now_ns >= r.ts_event {
            now_ns - r.ts_event
        } else {
            c.clock_skew += 1;
            0
        };
        let v = latency.clamp(1, MAX_LATENCY_NS);
        self.hist.saturating_record(v);
        self.interval.saturating_record(v);
    }

    /// Adds another thread's measurements.
    pub fn merge(&mut self, other: &Recorder) {
        // Same bounds on both sides: addition cannot fail.
        let _ = self.hist.add(&other.hist);
        let _ = self.interval.add(&other.interval);
        self.counters.add(&other.counters);
    }
}

/// One symbol's accounting on one connection.
#[derive(Debug, Clone, Copy, Default)]
struct SymSeq {
    /// The sequence from which `covered` counts.
    baseline: u64,
    /// Updates the records since `baseline` stand for.
    covered: u64,
    /// Highest sequence seen.
    last: u64,
    started: bool,
    /// A live (not snapshot) record came since the last snapshot: a later snapshot
    /// is a re-synchronisation, not the second half of the initial one.
    streaming: bool,
}

impl SymSeq {
    fn missing(&self) -> u64 {
        self.last
            .saturating_sub(self.baseline.saturating_add(self.covered))
    }

    /// Counts what is missing as a gap and starts afresh from `last`.
    fn settle(&mut self, c: &mut Counters) {
        let m = self.missing();
        if m > 0 {
            c.gaps += 1;
            c.gap_updates += m;
        }
        self.baseline = self.last;
        self.covered = 0;
    }
}

/// Per-symbol sequence accounting for one connection.
///
/// A plain record (count 1, not conflated) on a connection that is neither
/// conflating nor rate-limited must continue its symbol's sequence exactly, so a
/// jump is a gap at once. Elsewhere the server may release a merged quote and a merged
/// trade of one symbol in either order, so the check waits until the accounting can
/// be complete: the end of a conflation episode, a snapshot, or the end of the run.
#[derive(Debug, Clone, Default)]
pub struct SeqTracker {
    syms: Vec<SymSeq>,
    /// The connection asked for a `max_rate`: every release may be merged.
    pub rate_limited: bool,
    /// Between `conflation on` and `conflation off`.
    pub conflating: bool,
    /// With the `book` channel (binary): each symbol's book, rebuilt.
    pub books: Option<std::collections::HashMap<u32, tickcast::client::BookTracker>>,
}

impl SeqTracker {
    /// A tracker; `rate_limited` when the subscription has a `max_rate`.
    pub fn new(rate_limited: bool) -> SeqTracker {
        SeqTracker {
            syms: Vec::new(),
            rate_limited,
            conflating: false,
            books: None,
        }
    }

    fn on_record(&mut self, r: Rec, c: &mut Counters) {
        let i = r.symbol as usize;
        if i >= self.syms.len() {
            // Symbol keys are dense (server ids, or local indices for JSON).
            self.syms.resize(i + 1, SymSeq::default());
        }
        let s = &mut self.syms[i];
        let count = u64::from(r.count.max(1));
        if r.flags & FLAG_SNAPSHOT != 0 {
            if s.started && r.seq > s.last {
                s.settle(c);
                if s.streaming {
                    c.resyncs += 1;
                }
            }
            if !s.started || r.seq > s.last {
                *s = SymSeq {
                    baseline: r.seq,
                    covered: 0,
                    last: r.seq,
                    started: true,
                    streaming: false,
                };
            }
            return;
        }
        if !s.started {
            *s = SymSeq {
                baseline: r.seq.saturating_sub(count),
                covered: count,
                last: r.seq,
                started: true,
                streaming: true,
            };
            return;
        }
        s.streaming = true;
        if r.seq <= s.last {
            c.duplicates += 1;
            return;
        }
        s.covered += count;
        s.last = r.seq;
        let plain = r.count <= 1 && r.flags & FLAG_CONFLATED == 0;
        if plain && !self.rate_limited && !self.conflating {
            s.settle(c);
        } else if s.missing() == 0 {
            s.baseline = s.last;
            s.covered = 0;
        }
    }

    /// Settles every symbol: at `conflation off` and at the end of the run.
    pub fn settle_all(&mut self, c: &mut Counters) {
        for s in &mut self.syms {
            if s.started {
                s.settle(c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(symbol: u32, seq: u64, flags: u8, count: u32) -> Rec {
        Rec {
            symbol,
            seq,
            flags,
            count,
            ts_event: 100,
            partial: false,
        }
    }

    fn run(rate_limited: bool, recs: &[Rec]) -> Counters {
        let mut t = SeqTracker::new(rate_limited);
        let mut r = Recorder::new();
        let w = Window {
            from_ns: 0,
            to_ns: u64::MAX,
        };
        for x in recs {
            r.on_record(&mut t, *x, 150, w);
        }
        t.settle_all(&mut r.counters);
        r.counters
    }

    #[test]
    fn plain_stream_after_snapshot_has_no_gap() {
        let c = run(
            false,
            &[
                rec(0, 5, 1, 1),
                rec(0, 7, 1, 1),
                rec(0, 8, 0, 1),
                rec(0, 9, 0, 1),
            ],
        );
        assert_eq!((c.gaps, c.snapshots, c.records), (0, 2, 4));
        assert_eq!(
            c.resyncs, 0,
            "a trade and a quote snapshot are one snapshot"
        );
    }

    #[test]
    fn a_jump_is_a_gap_with_its_size() {
        let c = run(false, &[rec(0, 1, 0, 1), rec(0, 2, 0, 1), rec(0, 6, 0, 1)]);
        assert_eq!((c.gaps, c.gap_updates), (1, 3));
        let c = run(false, &[rec(0, 1, 0, 1), rec(1, 1, 0, 1), rec(0, 3, 0, 1)]);
        assert_eq!((c.gaps, c.gap_updates), (1, 1), "per symbol");
    }

    #[test]
    fn conflated_records_account_for_what_they_merge() {
        // Quotes 5, 7, 8 and trade 6 merged: trade(6, 1) then quote(8, 3, conflated).
        let c = run(
            true,
            &[
                rec(0, 4, 0, 1),
                rec(0, 6, 0, 1),
                rec(0, 8, 2, 3),
                rec(0, 9, 0, 1),
            ],
        );
        assert_eq!((c.gaps, c.conflated, c.conflated_updates), (0, 1, 3));
        // With real losses: 5..=8 claim 3 of 4 updates, and 9 never came.
        let c = run(true, &[rec(0, 4, 0, 1), rec(0, 8, 2, 3), rec(0, 10, 0, 1)]);
        assert_eq!((c.gaps, c.gap_updates), (1, 2));
    }

    #[test]
    fn resync_snapshot_is_counted_not_a_gap() {
        let c = run(
            false,
            &[rec(0, 1, 0, 1), rec(0, 50, 1, 1), rec(0, 51, 0, 1)],
        );
        assert_eq!((c.gaps, c.resyncs, c.duplicates), (0, 1, 0));
        let c = run(false, &[rec(0, 3, 0, 1), rec(0, 3, 0, 1)]);
        assert_eq!(c.duplicates, 1);
    }

    #[test]
    fn latency_only_inside_the_window_and_not_for_snapshots() {
        let mut t = SeqTracker::new(false);
        let mut r = Recorder::new();
        let w = Window {
            from_ns: 100,
            to_ns: 200,
        };
        let at = |seq, flags, ts| Rec {
            symbol: 0,
            seq,
            flags,
            count: 1,
            ts_event: ts,
            partial: false,
        };
        r.on_record(&mut t, at(1, 1, 150), 1_000, w); // snapshot
        r.on_record(&mut t, at(2, 0, 50), 1_000, w); // warm-up
        r.on_record(&mut t, at(3, 0, 150), 1_000, w); // measured: 850
        r.on_record(&mut t, at(4, 0, 199), 5_000, w); // late, still measured
        r.on_record(&mut t, at(5, 0, 200), 1_000, w); // after the window
        assert_eq!(r.hist.len(), 2);
        assert_eq!(r.counters.window_records, 2);
        assert_eq!(r.counters.records, 5);
        assert_eq!(r.hist.min(), 850);
    }
}
