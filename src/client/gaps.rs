//! Per-symbol gap detection from sequence accounting, sans-IO.
//!
//! The protocol's rule (`docs/protocol.md`, "Sequence numbers and gaps"): for a symbol,
//! the `count`s of the records received add up to the sequence numbers advanced, and a
//! record flagged `snapshot` stands for everything before it. So each symbol keeps the
//! highest `seq` seen and a *deficit*, the updates not yet accounted for. A deficit can
//! be temporary: a conflated quote and trade of one symbol go out together, the
//! lower `seq` first, and the first of them may jump ahead of what it accounts for
//! until the second arrives. The records of one flush arrive in one message, so the
//! deficit is judged at the end of each message; a message that is full (the server
//! splits larger batches) defers the judgement to the next one.

use std::collections::HashMap;

use crate::tick::Flags;
use crate::wire::{HEADER_SIZE, RECORD_SIZE};

/// Largest payload of a server data message, in bytes (`docs/protocol.md`, "Batching").
const MAX_MESSAGE_BYTES: usize = 65_535;

/// Updates of a symbol that were lost: sequence numbers from `expected` up to (not
/// including) `got` were never accounted for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The symbol's name.
    pub symbol: String,
    /// The first sequence number not accounted for.
    pub expected: u64,
    /// The sequence number that showed the jump: the highest seen.
    pub got: u64,
}

impl Gap {
    /// How many updates were lost.
    pub fn missed(&self) -> u64 {
        self.got.saturating_sub(self.expected)
    }
}

/// One symbol's accounting.
#[derive(Debug, Clone, Default)]
struct Tracker {
    name: String,
    /// Highest seq seen since the last snapshot; 0 before any record.
    last: u64,
    /// Updates up to `last` not accounted for by any record yet.
    deficit: u64,
    /// Highest `ts_recv` seen: a lower seq with a later ingest time means the
    /// server numbers afresh (a restart).
    last_recv: u64,
    /// Touched by the current message (listed in `GapDetector::touched`).
    touched: bool,
}

/// Tracks every symbol's sequence and reports [`Gap`]s. Symbols are kept by name, so
/// the accounting survives a reconnect, where ids may be numbered afresh.
#[derive(Debug, Default)]
pub struct GapDetector {
    trackers: Vec<Tracker>,
    by_name: HashMap<String, usize>,
    /// Symbol id (index) → tracker, for the current connection; `u32::MAX` unknown.
    by_id: Vec<u32>,
    /// Trackers touched since the last judgement.
    touched: Vec<usize>,
}

impl GapDetector {
    /// An empty detector.
    pub fn new() -> GapDetector {
        GapDetector::default()
    }

    /// Maps `id` to `name` on the current connection (from a `symbols` message).
    pub fn bind(&mut self, id: u32, name: &str) {
        let idx = match self.by_name.get(name) {
            Some(&i) => i,
            None => {
                self.trackers.push(Tracker {
                    name: name.to_string(),
                    ..Tracker::default()
                });
                self.by_name
                    .insert(name.to_string(), self.trackers.len() - 1);
                self.trackers.len() - 1
            }
        };
        // Ids are dense from 0 on the server; refuse absurd ones rather than allocate.
        let Ok(i) = usize::try_from(id) else { return };
        if i > 16 << 20 {
            return;
        }
        if self.by_id.len() <= i {
            self.by_id.resize(i + 1, u32::MAX);
        }
        self.by_id[i] = idx as u32;
    }

    /// Forgets the id map: a new connection sends its own `symbols` messages.
    pub fn new_connection(&mut self) {
        self.by_id.clear();
        self.touched.clear();
        for t in &mut self.trackers {
            t.touched = false;
            t.deficit = 0;
        }
    }

    /// Forgets a symbol (unsubscribed): a later subscribe starts it afresh.
    pub fn forget(&mut self, name: &str) {
        if let Some(&i) = self.by_name.get(name) {
            let t = &mut self.trackers[i];
            t.last = 0;
            t.deficit = 0;
            t.last_recv = 0;
        }
    }

    /// The name of `id` on the current connection.
    pub fn name(&self, id: u32) -> Option<&str> {
        let idx = *self.by_id.get(id as usize)?;
        self.trackers.get(idx as usize).map(|t| t.name.as_str())
    }

    /// The highest sequence number seen per symbol (what a resume continues from).
    pub fn last_seqs(&self) -> impl Iterator<Item = (&str, u64)> {
        self.trackers
            .iter()
            .filter(|t| t.last > 0)
            .map(|t| (t.name.as_str(), t.last))
    }

    /// The highest sequence number seen for `name`, if any.
    pub fn last_seq(&self, name: &str) -> Option<u64> {
        let t = &self.trackers[*self.by_name.get(name)?];
        (t.last > 0).then_some(t.last)
    }

    /// Accounts for one record. Records of ids without a name are ignored (the server
    /// names every id before its first record).
    pub fn observe(&mut self, symbol_id: u32, seq: u64, flags: u8, count: u32, ts_recv: u64) {
        let Some(&idx) = self.by_id.get(symbol_id as usize) else {
            return;
        };
        let Some(t) = self.trackers.get_mut(idx as usize) else {
            return;
        };
        if !t.touched {
            t.touched = true;
            self.touched.push(idx as usize);
        }
        let afresh = seq <= t.last && ts_recv > t.last_recv;
        t.last_recv = t.last_recv.max(ts_recv);
        if Flags(flags).contains(Flags::SNAPSHOT) || t.last == 0 || afresh {
            // A snapshot stands for everything before it, even when its seq is lower
            // (a restarted server numbers afresh). A first record starts the count, and
            // so does a lower seq ingested later than anything seen: a restarted server
            // that had no value to snapshot when the client came back.
            t.last = seq;
            t.deficit = 0;
            if afresh {
                t.last_recv = ts_recv;
            }
        } else if seq <= t.last {
            // A late record of a flush: it accounts for updates already counted short.
            t.deficit = t.deficit.saturating_sub(u64::from(count));
        } else {
            let need = (seq - t.last).saturating_add(t.deficit);
            t.deficit = need.saturating_sub(u64::from(count));
            t.last = seq;
        }
    }

    /// Ends a message of `message_len` bytes: every symbol it touched that is still
    /// short is a gap, unless the message was full (the rest of the batch follows).
    pub fn end_message(&mut self, message_len: usize, mut gap: impl FnMut(Gap)) {
        if message_len + RECORD_SIZE > MAX_MESSAGE_BYTES && message_len > HEADER_SIZE {
            return;
        }
        for idx in self.touched.drain(..) {
            let t = &mut self.trackers[idx];
            t.touched = false;
            if t.deficit > 0 {
                gap(Gap {
                    symbol: t.name.clone(),
                    expected: t.last.saturating_sub(t.deficit),
                    got: t.last,
                });
                t.deficit = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNAP: u8 = 1;
    const CONFLATED: u8 = 2;
    const REPLAY: u8 = 4;

    /// Feeds messages of `(seq, flags, count)` records of symbol "A" and returns the
    /// gaps reported after each message.
    fn run(messages: &[Message]) -> Reported {
        let mut d = GapDetector::new();
        d.bind(3, "A");
        messages
            .iter()
            .map(|m| {
                for &(seq, flags, count) in m.iter() {
                    d.observe(3, seq, flags, count, 1);
                }
                let mut gaps = Vec::new();
                d.end_message(HEADER_SIZE + m.len() * RECORD_SIZE, |g| {
                    gaps.push((g.expected, g.got))
                });
                gaps
            })
            .collect()
    }

    /// Records of one message: `(seq, flags, count)`.
    type Message<'a> = &'a [(u64, u8, u32)];
    /// Gaps reported after each message: `(expected, got)`.
    type Reported = Vec<Vec<(u64, u64)>>;

    #[test]
    fn accounting_table() {
        let none: Vec<(u64, u64)> = vec![];
        let table: &[(&str, &[Message], Reported)] = &[
            (
                "contiguous live ticks",
                &[&[(5, SNAP, 1), (6, 0, 1)], &[(7, 0, 1)]],
                vec![none.clone(), none.clone()],
            ),
            (
                "a jump is a gap",
                &[&[(5, 0, 1)], &[(9, 0, 1)], &[(10, 0, 1)]],
                vec![none.clone(), vec![(6, 9)], none.clone()],
            ),
            (
                "conflated pair, lower seq first, both partial",
                &[&[(10, 0, 1)], &[(14, CONFLATED, 3), (15, CONFLATED, 2)]],
                vec![none.clone(), none.clone()],
            ),
            (
                "conflated pair whose first record is a single update",
                &[&[(10, 0, 1)], &[(13, 0, 1), (15, CONFLATED, 4)]],
                vec![none.clone(), none.clone()],
            ),
            (
                "conflation that does not add up",
                &[&[(10, 0, 1)], &[(14, CONFLATED, 2), (15, 0, 1)]],
                vec![none.clone(), vec![(13, 15)]],
            ),
            (
                "a snapshot resets, even to a lower seq (restart)",
                &[&[(500, 0, 1)], &[(3, SNAP, 1), (4, 0, 1)]],
                vec![none.clone(), none.clone()],
            ),
            (
                "replayed records continue the sequence",
                &[
                    &[(20, 0, 1)],
                    &[(21, REPLAY, 1), (22, REPLAY, 1), (23, 0, 1)],
                ],
                vec![none.clone(), none.clone()],
            ),
            (
                "late record of a flush settles the deficit",
                &[&[(10, 0, 1)], &[(12, 0, 1), (11, 0, 1)]],
                vec![none.clone(), none.clone()],
            ),
        ];
        for (name, msgs, want) in table {
            assert_eq!(&run(msgs), want, "{name}");
        }
    }

    #[test]
    fn a_lower_seq_ingested_later_is_a_new_run() {
        let mut d = GapDetector::new();
        d.bind(0, "A");
        d.observe(0, 900, 0, 1, 1_000);
        // A late record of a flush: lower seq, older ingest time.
        d.observe(0, 899, 0, 1, 999);
        d.end_message(HEADER_SIZE + 2 * RECORD_SIZE, |g| panic!("{g:?}"));
        assert_eq!(d.last_seq("A"), Some(900));
        // A restarted server that had nothing to snapshot: seq 1, later ingest time.
        d.observe(0, 1, 0, 1, 5_000);
        d.observe(0, 2, 0, 1, 5_001);
        d.end_message(HEADER_SIZE + 2 * RECORD_SIZE, |g| panic!("{g:?}"));
        assert_eq!(d.last_seq("A"), Some(2));
        d.observe(0, 4, 0, 1, 5_002);
        let mut gaps = Vec::new();
        d.end_message(HEADER_SIZE + RECORD_SIZE, |g| gaps.push(g));
        assert_eq!(
            gaps,
            [Gap {
                symbol: "A".into(),
                expected: 3,
                got: 4
            }]
        );
        assert_eq!(gaps[0].missed(), 1);
    }

    #[test]
    fn full_message_defers_judgement() {
        let mut d = GapDetector::new();
        d.bind(0, "A");
        d.observe(0, 10, 0, 1, 1);
        d.end_message(HEADER_SIZE + RECORD_SIZE, |_| panic!("no gap"));
        // A full message ends with the first record of a conflated pair…
        d.observe(0, 14, CONFLATED, 3, 1);
        d.end_message(HEADER_SIZE + 910 * RECORD_SIZE, |_| {
            panic!("not judged yet")
        });
        // …whose second record opens the next message.
        d.observe(0, 15, CONFLATED, 2, 1);
        d.end_message(HEADER_SIZE + RECORD_SIZE, |g| panic!("{g:?}"));
    }

    #[test]
    fn names_survive_a_new_connection_and_unknown_ids_are_ignored() {
        let mut d = GapDetector::new();
        d.bind(0, "A");
        d.observe(0, 7, 0, 1, 1);
        d.observe(42, 1, 0, 1, 1);
        d.new_connection();
        assert_eq!(d.name(0), None);
        d.bind(5, "A");
        assert_eq!(d.name(5), Some("A"));
        assert_eq!(d.last_seqs().collect::<Vec<_>>(), vec![("A", 7)]);
        d.observe(5, 8, REPLAY, 1, 1);
        d.end_message(HEADER_SIZE + RECORD_SIZE, |g| panic!("{g:?}"));
        d.forget("A");
        assert_eq!(d.last_seq("A"), None);
        d.bind(u32::MAX, "B");
        d.observe(u32::MAX, 1, 0, 1, 1);
    }
}
