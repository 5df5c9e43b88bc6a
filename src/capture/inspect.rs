//! What a capture holds, without exporting it (`tickcast capture info`): its version
//! and header, time range, records by kind and flag, and per symbol the records,
//! sequence range and gaps, and the same for its book changes, which are numbered
//! apart (`docs/protocol.md`, "Order books").
//!
//! Gaps are judged as a subscriber judges them ([`GapDetector`], `docs/protocol.md`,
//! "Sequence numbers and gaps"): a record flagged `snapshot` starts a symbol afresh,
//! a conflated record accounts for its `count` updates, any other jump is a gap. A
//! capture of a live subscription has none; the recorder's captures neither, unless it
//! dropped batches (counted in `/stats`).

use std::collections::BTreeMap;
use std::io::Read;

use serde::Serialize;

use super::{CaptureError, CaptureReader, Entry, VERSION};
use crate::client::gaps::GapDetector;
use crate::tick::{Flags, Kind};
use crate::wire::{HEADER_SIZE, RECORD_SIZE};

/// One symbol's part of a capture.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SymbolInfo {
    /// Records of the symbol.
    pub records: u64,
    /// Of which trades.
    pub trades: u64,
    /// Of which quotes.
    pub quotes: u64,
    /// Lowest sequence number.
    pub first_seq: u64,
    /// Highest sequence number.
    pub last_seq: u64,
    /// Gaps found.
    pub gaps: u64,
    /// Sequence numbers missing in those gaps.
    pub missed: u64,
    /// Book records (one per level of a book message).
    pub book_records: u64,
    /// Book messages (a snapshot or change of one or more levels).
    pub book_messages: u64,
    /// Lowest book sequence number.
    pub first_book_seq: u64,
    /// Highest book sequence number.
    pub last_book_seq: u64,
    /// Book gaps: a message not flagged `snapshot` whose number is not the last
    /// one's plus its `count`.
    pub book_gaps: u64,
    /// Book sequence numbers missing in those gaps.
    pub book_missed: u64,
}

/// Where a symbol's book numbering stands while walking a capture.
#[derive(Debug, Default)]
struct BookSeq {
    /// The last complete message's number (0: none yet).
    last: u64,
    /// Records of the current message still expected.
    remaining: u32,
}

/// A range of timestamps, ns since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TimeRange {
    /// The earliest.
    pub first_ns: u64,
    /// The latest.
    pub last_ns: u64,
}

impl TimeRange {
    fn add(range: &mut Option<TimeRange>, ts: u64) {
        match range {
            Some(r) => {
                r.first_ns = r.first_ns.min(ts);
                r.last_ns = r.last_ns.max(ts);
            }
            None => {
                *range = Some(TimeRange {
                    first_ns: ts,
                    last_ns: ts,
                })
            }
        }
    }
}

impl BookSeq {
    /// One book record (`group`: its group word, which says how many levels its
    /// message has and where in it this record is). When it completes a message that
    /// does not follow the last one, how many numbers are missing.
    fn record(&mut self, group: i64, seq: u64, flags: Flags, count: u32) -> Option<u64> {
        let (levels, index) = (group as u64 as u32, (group as u64 >> 32) as u32);
        if index == 0 {
            self.remaining = levels;
        }
        if levels > 0 {
            self.remaining = self.remaining.saturating_sub(1);
        }
        if self.remaining > 0 {
            return None;
        }
        let expected = self.last + u64::from(count.max(1));
        let first = self.last == 0;
        self.last = seq;
        (!first && !flags.contains(Flags::SNAPSHOT) && seq > expected).then(|| seq - expected)
    }
}

/// What a capture holds.
#[derive(Debug, Default, Serialize)]
pub struct Info {
    /// The format version.
    pub version: u16,
    /// When the recording started, ns since the Unix epoch.
    pub created_at_ns: u64,
    /// Where the stream came from, if the header says.
    pub source: Option<String>,
    /// Bytes read, up to the end of the last whole entry.
    pub bytes: u64,
    /// Blocks of messages.
    pub blocks: u64,
    /// Data messages.
    pub messages: u64,
    /// `symbols` entries.
    pub symbol_maps: u64,
    /// Records in all.
    pub records: u64,
    /// Trade records.
    pub trades: u64,
    /// Quote records.
    pub quotes: u64,
    /// Book records.
    pub book_records: u64,
    /// Records of an unknown kind.
    pub unknown_kind: u64,
    /// Records flagged `snapshot`.
    pub snapshots: u64,
    /// Records flagged `conflated`.
    pub conflated: u64,
    /// Records flagged `replay`.
    pub replayed: u64,
    /// Range of the records' `ts_event`.
    pub ts_event: Option<TimeRange>,
    /// Range of the records' `ts_recv`.
    pub ts_recv: Option<TimeRange>,
    /// Per symbol name (ids without a name as `#id`).
    pub symbols: BTreeMap<String, SymbolInfo>,
    /// Gaps over every symbol.
    pub gaps: u64,
    /// Book gaps over every symbol.
    pub book_gaps: u64,
    /// The fault that ended the walk before the end of the file, if any (its text):
    /// the rest of the summary covers the whole entries before it.
    pub fault: Option<String>,
}

/// Reads the whole capture (one entry in memory at a time) and summarises it,
/// calling `progress` with the bytes read after each entry. A fault in the file ends
/// the walk: it is returned with the summary of what came before it.
pub fn inspect<R: Read>(
    mut reader: CaptureReader<R>,
    mut progress: impl FnMut(u64),
) -> (Info, Option<CaptureError>) {
    let header = reader.header().clone();
    let mut info = Info {
        version: VERSION,
        created_at_ns: header.created_at_ns,
        source: header.source.clone(),
        bytes: reader.offset(),
        ..Info::default()
    };
    let mut gaps = GapDetector::new();
    // Names by id, for the per-symbol table; the detector keeps its own map.
    let mut names: BTreeMap<u32, String> = BTreeMap::new();
    let bind = |gaps: &mut GapDetector, names: &mut BTreeMap<u32, String>, id, name: &str| {
        gaps.bind(id, name);
        names.insert(id, name.to_string());
    };
    for s in &header.symbols {
        bind(&mut gaps, &mut names, s.id, &s.name);
    }
    let mut books: BTreeMap<u32, BookSeq> = BTreeMap::new();
    let mut fault = None;
    loop {
        match reader.next_entry() {
            Ok(None) => break,
            Ok(Some(Entry::Symbols(map))) => {
                info.symbol_maps += 1;
                for s in &map {
                    bind(&mut gaps, &mut names, s.id, &s.name);
                }
            }
            Ok(Some(Entry::Block(block))) => {
                info.blocks += 1;
                for message in block {
                    info.messages += 1;
                    for r in message.records() {
                        let id = r.symbol_id.to_native();
                        let seq = r.seq.to_native();
                        let flags = Flags(r.flags);
                        info.records += 1;
                        let name = names.get(&id).cloned().unwrap_or_else(|| format!("#{id}"));
                        let s = info.symbols.entry(name).or_default();
                        s.records += 1;
                        match Kind::from_u8(r.kind) {
                            Some(Kind::Trade) => {
                                info.trades += 1;
                                s.trades += 1;
                            }
                            Some(Kind::Quote) => {
                                info.quotes += 1;
                                s.quotes += 1;
                            }
                            Some(Kind::Book) => {
                                info.book_records += 1;
                                s.book_records += 1;
                                s.first_book_seq = if s.book_records == 1 {
                                    seq
                                } else {
                                    s.first_book_seq.min(seq)
                                };
                                s.last_book_seq = s.last_book_seq.max(seq);
                                let count = r.count.to_native();
                                let book = books.entry(id).or_default();
                                if let Some(gap) =
                                    book.record(r.values[3].to_native(), seq, flags, count)
                                {
                                    info.book_gaps += 1;
                                    s.book_gaps += 1;
                                    s.book_missed += gap;
                                }
                                s.book_messages += u64::from(book.remaining == 0);
                            }
                            None => {
                                info.unknown_kind += 1;
                                continue;
                            }
                        }
                        info.snapshots += u64::from(flags.contains(Flags::SNAPSHOT));
                        info.conflated += u64::from(flags.contains(Flags::CONFLATED));
                        info.replayed += u64::from(flags.contains(Flags::REPLAY));
                        TimeRange::add(&mut info.ts_event, r.ts_event.to_native());
                        TimeRange::add(&mut info.ts_recv, r.ts_recv.to_native());
                        // Book changes are numbered apart from trades and quotes.
                        if Kind::from_u8(r.kind) == Some(Kind::Book) {
                            continue;
                        }
                        s.first_seq = if s.trades + s.quotes == 1 {
                            seq
                        } else {
                            s.first_seq.min(seq)
                        };
                        s.last_seq = s.last_seq.max(seq);
                        gaps.observe(id, seq, r.flags, r.count.to_native(), r.ts_recv.to_native());
                    }
                    let len = HEADER_SIZE + message.len() * RECORD_SIZE;
                    gaps.end_message(len, |g| {
                        info.gaps += 1;
                        if let Some(s) = info.symbols.get_mut(&g.symbol) {
                            s.gaps += 1;
                            s.missed += g.missed();
                        }
                    });
                }
            }
            Err(e) => {
                info.fault = Some(e.to_string());
                fault = Some(e);
                break;
            }
        }
        info.bytes = reader.offset();
        progress(info.bytes);
    }
    (info, fault)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{CaptureHeader, CaptureWriter, SymbolEntry};
    use crate::tick::{Body, Tick};
    use crate::wire;

    fn message(records: &[(u32, u64, Flags, u32)]) -> Vec<u8> {
        let mut h = [0u8; HEADER_SIZE];
        wire::encode_header(records.len() as u32, 0, &mut h);
        let mut msg = h.to_vec();
        for (i, &(symbol_id, seq, flags, count)) in records.iter().enumerate() {
            let t = Tick {
                symbol_id,
                seq,
                ts_event: 100 + i as u64,
                ts_recv: 200 + seq,
                flags,
                count,
                body: if seq % 2 == 0 {
                    Body::trade(1, 1)
                } else {
                    Body::Quote {
                        bid_px: 1,
                        bid_sz: 1,
                        ask_px: 2,
                        ask_sz: 1,
                    }
                },
            };
            let mut r = [0u8; RECORD_SIZE];
            wire::encode_record(&t, &mut r);
            msg.extend_from_slice(&r);
        }
        msg
    }

    #[test]
    fn counts_kinds_flags_and_gaps_per_symbol() {
        let header = CaptureHeader {
            created_at_ns: 7,
            symbols: vec![SymbolEntry {
                id: 0,
                name: "A".into(),
            }],
            source: Some("ws://x/ws".into()),
        };
        let mut w = CaptureWriter::new(Vec::new(), &header).unwrap();
        let none = Flags::empty();
        // A: snapshot 5, then 6, 7, then 10 (a gap of 8 and 9), then a conflated 12
        // standing for 11 and 12.
        w.write_message(&message(&[(0, 5, Flags::SNAPSHOT, 1), (0, 6, none, 1)]))
            .unwrap();
        w.write_symbols(&[SymbolEntry {
            id: 1,
            name: "B".into(),
        }])
        .unwrap();
        w.write_message(&message(&[(0, 7, none, 1), (1, 1, none, 1)]))
            .unwrap();
        w.write_message(&message(&[(0, 10, none, 1)])).unwrap();
        w.write_message(&message(&[(0, 12, Flags::CONFLATED, 2), (1, 2, none, 1)]))
            .unwrap();
        let bytes = w.finish().unwrap();
        let mut seen = Vec::new();
        let (info, fault) = inspect(CaptureReader::new(&bytes[..]).unwrap(), |b| seen.push(b));
        assert!(fault.is_none());
        assert_eq!(info.created_at_ns, 7);
        assert_eq!((info.blocks, info.messages, info.symbol_maps), (2, 4, 1));
        assert_eq!((info.records, info.trades, info.quotes), (7, 4, 3));
        assert_eq!((info.snapshots, info.conflated), (1, 1));
        assert_eq!(
            info.symbols["A"],
            SymbolInfo {
                records: 5,
                trades: 3,
                quotes: 2,
                first_seq: 5,
                last_seq: 12,
                gaps: 1,
                missed: 2,
                ..SymbolInfo::default()
            }
        );
        assert_eq!(info.symbols["B"].gaps, 0);
        assert_eq!(info.gaps, 1);
        assert_eq!(info.bytes, bytes.len() as u64);
        assert_eq!(seen.last(), Some(&(bytes.len() as u64)));

        // Cut short: the summary of the whole entries, and the fault.
        let (cut, fault) = inspect(
            CaptureReader::new(&bytes[..bytes.len() - 8]).unwrap(),
            |_| {},
        );
        assert!(matches!(fault, Some(CaptureError::Entry { .. })));
        assert!(cut.fault.unwrap().contains("ends inside"));
        assert_eq!(cut.records, 2, "the second block is cut");
    }

    /// Book records: ranges and gaps of their own numbering, a message of K levels
    /// counted once, a trade's number never mixed in.
    #[test]
    fn book_records_have_their_own_ranges_and_gaps() {
        use crate::book::Side;
        let book = |seq: u64, flags: Flags, count: u32, levels: u32| -> Vec<u8> {
            let n = levels.max(1);
            let mut h = [0u8; HEADER_SIZE];
            wire::encode_header(n, 0, &mut h);
            let mut msg = h.to_vec();
            for index in 0..n {
                let t = Tick {
                    symbol_id: 0,
                    seq,
                    ts_event: 1,
                    ts_recv: 2,
                    flags,
                    count,
                    body: Body::Book {
                        side: Side::Bid,
                        price: 100 + i64::from(index),
                        size: 1,
                        new_level: false,
                        group: (levels, index),
                    },
                };
                let mut r = [0u8; RECORD_SIZE];
                wire::encode_record(&t, &mut r);
                msg.extend_from_slice(&r);
            }
            msg
        };
        let header = CaptureHeader {
            created_at_ns: 7,
            symbols: vec![SymbolEntry {
                id: 0,
                name: "A".into(),
            }],
            source: None,
        };
        let mut w = CaptureWriter::new(Vec::new(), &header).unwrap();
        let none = Flags::empty();
        // A snapshot of 3 levels at 20, a change at 21, a merge of 2 levels standing
        // for 3 changes (22–24), a change at 27 (25 and 26 missing), a trade at 2, and
        // a snapshot at 40 (no gap: a snapshot starts afresh).
        w.write_message(&book(20, Flags::SNAPSHOT, 1, 3)).unwrap();
        w.write_message(&message(&[(0, 2, none, 1)])).unwrap();
        w.write_message(&book(21, none, 1, 1)).unwrap();
        w.write_message(&book(24, Flags::CONFLATED, 3, 2)).unwrap();
        w.write_message(&book(27, none, 1, 1)).unwrap();
        w.write_message(&book(40, Flags::SNAPSHOT, 1, 0)).unwrap();
        let bytes = w.finish().unwrap();
        let (info, fault) = inspect(CaptureReader::new(&bytes[..]).unwrap(), |_| {});
        assert!(fault.is_none());
        assert_eq!((info.records, info.trades, info.book_records), (9, 1, 8));
        assert_eq!(
            info.symbols["A"],
            SymbolInfo {
                records: 9,
                trades: 1,
                quotes: 0,
                first_seq: 2,
                last_seq: 2,
                gaps: 0,
                missed: 0,
                book_records: 8,
                book_messages: 5,
                first_book_seq: 20,
                last_book_seq: 40,
                book_gaps: 1,
                book_missed: 2,
            }
        );
        assert_eq!((info.gaps, info.book_gaps), (0, 1));
        assert_eq!(
            info.snapshots, 4,
            "three snapshot levels and an empty snapshot"
        );
    }
}
