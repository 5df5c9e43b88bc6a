//! The wire encodings of ticks: binary records (rkyv) and JSON objects; WebSocket
//! frames as the server reads and writes them ([`frame`]) and their close codes
//! ([`close`]).
//!
//! A binary message is a [`MessageHeader`] (16 bytes) followed by `record_count`
//! [`WireRecord`]s (72 bytes each), all little-endian, 8-byte aligned fields. Both are
//! rkyv archives, so a Rust client reads them in place with `rkyv::access`; the byte
//! layout is spelled out in `docs/protocol.md` for everyone else.

use rkyv::rancor::Failure;
use rkyv::ser::allocator::SubAllocator;
use rkyv::ser::writer::Buffer;
use rkyv::{Archive, Deserialize, Serialize};

use crate::book::{Level, Side};
use crate::fixed;
use crate::lvc::TradeSummary;

pub mod close;
pub mod frame;

use crate::tick::{Body, Flags, Kind, Tick};
pub use close::CloseCode;
pub use frame::{write_frame_header, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT};

/// Protocol version in every binary message header.
pub const VERSION: u16 = 1;
/// Size of one binary record in bytes.
pub const RECORD_SIZE: usize = 72;
/// Size of the binary message header in bytes.
pub const HEADER_SIZE: usize = 16;

/// One tick on the wire. Field order is the byte layout (`repr(C)` in its archived
/// form, no padding): see `docs/protocol.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Archive, Serialize, Deserialize)]
#[rkyv(derive(Debug))]
pub struct WireRecord {
    /// 1 = trade, 2 = quote, 3 = book.
    pub kind: u8,
    /// Bit 0 snapshot, bit 1 conflated, bit 2 replay.
    pub flags: u8,
    /// Zero.
    pub reserved: u16,
    /// Symbol id, as in the `symbols` map.
    pub symbol_id: u32,
    /// Per-symbol sequence number.
    pub seq: u64,
    /// Event time at the source, ns since the Unix epoch.
    pub ts_event: u64,
    /// Ingest time, ns since the Unix epoch.
    pub ts_recv: u64,
    /// Updates this record stands for (1 unless conflated).
    pub count: u32,
    /// Zero.
    pub reserved2: u32,
    /// Trade: price, size, high, low. Quote: bid_px, bid_sz, ask_px, ask_sz. Book:
    /// price, size (fixed point), side word, group word ([`Body::book_words`]). Fixed
    /// point in units of 10⁻⁸.
    pub values: [i64; 4],
}

/// The start of every binary message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Archive, Serialize, Deserialize)]
#[rkyv(derive(Debug))]
pub struct MessageHeader {
    /// [`VERSION`].
    pub version: u16,
    /// [`RECORD_SIZE`], so that a reader can skip fields added later.
    pub record_size: u16,
    /// Number of records after the header.
    pub record_count: u32,
    /// When the server wrote this message, ns since the Unix epoch.
    pub ts_out: u64,
}

impl From<&Tick> for WireRecord {
    fn from(t: &Tick) -> Self {
        WireRecord {
            kind: t.body.kind() as u8,
            flags: t.flags.0,
            reserved: 0,
            symbol_id: t.symbol_id,
            seq: t.seq,
            ts_event: t.ts_event,
            ts_recv: t.ts_recv,
            count: t.count,
            reserved2: 0,
            values: t.body.values(),
        }
    }
}

impl WireRecord {
    /// The tick back, or `None` for an unknown kind byte.
    pub fn to_tick(&self) -> Option<Tick> {
        Some(Tick {
            symbol_id: self.symbol_id,
            seq: self.seq,
            ts_event: self.ts_event,
            ts_recv: self.ts_recv,
            flags: Flags(self.flags),
            count: self.count,
            body: Body::from_values(Kind::from_u8(self.kind)?, self.values),
        })
    }
}

impl ArchivedWireRecord {
    /// The tick, read in place, or `None` for an unknown kind byte.
    pub fn to_tick(&self) -> Option<Tick> {
        Some(Tick {
            symbol_id: self.symbol_id.to_native(),
            seq: self.seq.to_native(),
            ts_event: self.ts_event.to_native(),
            ts_recv: self.ts_recv.to_native(),
            flags: Flags(self.flags),
            count: self.count.to_native(),
            body: Body::from_values(
                Kind::from_u8(self.kind)?,
                [
                    self.values[0].to_native(),
                    self.values[1].to_native(),
                    self.values[2].to_native(),
                    self.values[3].to_native(),
                ],
            ),
        })
    }
}

/// Encodes one record with rkyv into a fixed buffer: no allocation.
pub fn encode_record(tick: &Tick, out: &mut [u8; RECORD_SIZE]) {
    let rec = WireRecord::from(tick);
    let written = rkyv::api::low::to_bytes_in_with_alloc::<_, _, Failure>(
        &rec,
        Buffer::from(&mut out[..]),
        SubAllocator::empty(),
    )
    .map(|buf| buf.len());
    debug_assert_eq!(written.ok(), Some(RECORD_SIZE));
}

/// Encodes a message header.
pub fn encode_header(record_count: u32, ts_out: u64, out: &mut [u8; HEADER_SIZE]) {
    let h = MessageHeader {
        version: VERSION,
        record_size: RECORD_SIZE as u16,
        record_count,
        ts_out,
    };
    let written = rkyv::api::low::to_bytes_in_with_alloc::<_, _, Failure>(
        &h,
        Buffer::from(&mut out[..]),
        SubAllocator::empty(),
    )
    .map(|buf| buf.len());
    debug_assert_eq!(written.ok(), Some(HEADER_SIZE));
}

/// Why a binary message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than a header, or the length disagrees with the record count.
    #[error("message length {len} does not fit {count} records")]
    Length {
        /// Bytes in the message.
        len: usize,
        /// Records the header announced.
        count: u32,
    },
    /// A header this decoder does not understand.
    #[error("unsupported version {0} or record size")]
    Version(u16),
    /// rkyv rejected the bytes (bad alignment or invalid values).
    #[error("invalid record: {0}")]
    Invalid(String),
}

/// Decodes a whole binary message into its header and ticks (copying). Rust clients
/// that want zero copy use [`records`].
pub fn decode_message(bytes: &[u8]) -> Result<(MessageHeader, Vec<Tick>), DecodeError> {
    let (header, recs) = records(bytes)?;
    let mut out = Vec::with_capacity(recs.len());
    for r in recs {
        out.push(
            r.to_tick()
                .ok_or_else(|| DecodeError::Invalid(format!("unknown kind {}", r.kind)))?,
        );
    }
    Ok((header, out))
}

/// Checks a binary message's header: a version-1 header whose record count matches the
/// length. Records need no further check: every byte pattern is a valid record.
pub fn check_message(bytes: &[u8]) -> Result<MessageHeader, DecodeError> {
    if bytes.len() < HEADER_SIZE {
        return Err(DecodeError::Length {
            len: bytes.len(),
            count: 0,
        });
    }
    let header = check_header(&bytes[..HEADER_SIZE])?;
    if (bytes.len() - HEADER_SIZE) as u64 != u64::from(header.record_count) * RECORD_SIZE as u64 {
        return Err(DecodeError::Length {
            len: bytes.len(),
            count: header.record_count,
        });
    }
    Ok(header)
}

/// Reads a message header (the first [`HEADER_SIZE`] bytes of a message, 8-byte
/// aligned) and checks its version and record size; the record count is not checked
/// against anything.
pub fn check_header(bytes: &[u8]) -> Result<MessageHeader, DecodeError> {
    let h = rkyv::access::<ArchivedMessageHeader, Failure>(bytes)
        .map_err(|e| DecodeError::Invalid(e.to_string()))?;
    let header = MessageHeader {
        version: h.version.to_native(),
        record_size: h.record_size.to_native(),
        record_count: h.record_count.to_native(),
        ts_out: h.ts_out.to_native(),
    };
    if header.version != VERSION || usize::from(header.record_size) != RECORD_SIZE {
        return Err(DecodeError::Version(header.version));
    }
    Ok(header)
}

/// Validates a binary message and returns its header and archived records, borrowed
/// from `bytes` (zero copy). `bytes` must be 8-byte aligned; copy into an
/// `rkyv::util::AlignedVec` first when it may not be.
pub fn records(bytes: &[u8]) -> Result<(MessageHeader, Vec<&ArchivedWireRecord>), DecodeError> {
    let header = check_message(bytes)?;
    let body = &bytes[HEADER_SIZE..];
    let mut out = Vec::with_capacity(header.record_count as usize);
    for chunk in body.chunks_exact(RECORD_SIZE) {
        out.push(
            rkyv::access::<ArchivedWireRecord, Failure>(chunk)
                .map_err(|e| DecodeError::Invalid(e.to_string()))?,
        );
    }
    Ok((header, out))
}

/// One book message: a snapshot (flag `snapshot`: replace the whole book) or changes
/// (size 0 removes a level) of one symbol's book, as [`encode_book_records`] and
/// [`write_json_book`] write it.
#[derive(Debug, Clone, Copy)]
pub struct BookMessage<'a> {
    /// Symbol id.
    pub symbol_id: u32,
    /// Book sequence number of the last change it includes.
    pub seq: u64,
    /// `ts_event` of that change.
    pub ts_event: u64,
    /// `ts_recv` of that change.
    pub ts_recv: u64,
    /// Snapshot, conflated, replay.
    pub flags: Flags,
    /// Book changes it stands for.
    pub count: u32,
    /// Bid levels `(price, size)`.
    pub bids: &'a [Level],
    /// Ask levels `(price, size)`.
    pub asks: &'a [Level],
}

impl BookMessage<'_> {
    /// Levels it carries.
    pub fn levels(&self) -> usize {
        self.bids.len() + self.asks.len()
    }

    /// Its binary size: one record per level, one for none.
    pub fn binary_len(&self) -> usize {
        self.levels().max(1) * RECORD_SIZE
    }
}

/// Encodes a book message as binary records, one per level (`group` = (levels,
/// index)), or one record of group `(0, 0)` when it carries no level, handing each
/// to `emit`.
pub fn encode_book_records(m: &BookMessage<'_>, mut emit: impl FnMut(&[u8; RECORD_SIZE])) {
    let mut out = [0u8; RECORD_SIZE];
    for_each_book_tick(m, |tick| {
        encode_record(tick, &mut out);
        emit(&out);
    });
}

/// The records of a book message as ticks, in wire order (what
/// [`encode_book_records`] encodes), handed to `f`.
pub fn for_each_book_tick(m: &BookMessage<'_>, mut f: impl FnMut(&Tick)) {
    let n = m.levels() as u32;
    let mut tick = Tick {
        symbol_id: m.symbol_id,
        seq: m.seq,
        ts_event: m.ts_event,
        ts_recv: m.ts_recv,
        flags: m.flags,
        count: m.count,
        body: Body::Book {
            side: Side::Bid,
            price: 0,
            size: 0,
            new_level: false,
            group: (0, 0),
        },
    };
    if n == 0 {
        f(&tick);
        return;
    }
    let levels = m
        .bids
        .iter()
        .map(|l| (Side::Bid, l))
        .chain(m.asks.iter().map(|l| (Side::Ask, l)));
    for (i, (side, &(price, size))) in levels.enumerate() {
        tick.body = Body::Book {
            side,
            price,
            size,
            new_level: false,
            group: (n, i as u32),
        };
        f(&tick);
    }
}

/// Appends the JSON form of a book message to `out`:
///
/// ```json
/// {"type":"book","symbol":"SYM0","seq":7,"ts_event":1,"ts_recv":2,"flags":["snapshot"],
///  "count":1,"bids":[["101.25","3"]],"asks":[["101.5","1"]]}
/// ```
pub fn write_json_book(m: &BookMessage<'_>, symbol: &str, out: &mut Vec<u8>) {
    let mut n = itoa::Buffer::new();
    out.extend_from_slice(b"{\"type\":\"book\",\"symbol\":\"");
    // Symbol names are restricted to characters that need no escaping.
    out.extend_from_slice(symbol.as_bytes());
    out.extend_from_slice(b"\",\"seq\":");
    out.extend_from_slice(n.format(m.seq).as_bytes());
    out.extend_from_slice(b",\"ts_event\":");
    out.extend_from_slice(n.format(m.ts_event).as_bytes());
    out.extend_from_slice(b",\"ts_recv\":");
    out.extend_from_slice(n.format(m.ts_recv).as_bytes());
    write_json_flags(m.flags, out);
    out.extend_from_slice(b",\"count\":");
    out.extend_from_slice(n.format(m.count).as_bytes());
    for (name, levels) in [(&b",\"bids\":["[..], m.bids), (b"],\"asks\":[", m.asks)] {
        out.extend_from_slice(name);
        for (i, &(price, size)) in levels.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"[\"");
            fixed::write(price, out);
            out.extend_from_slice(b"\",\"");
            fixed::write(size, out);
            out.extend_from_slice(b"\"]");
        }
    }
    out.extend_from_slice(b"]}");
}

/// `,"flags":[…]`.
fn write_json_flags(flags: Flags, out: &mut Vec<u8>) {
    out.extend_from_slice(b",\"flags\":[");
    let mut first = true;
    for (flag, name) in Flags::NAMES {
        if flags.contains(flag) {
            if !first {
                out.push(b',');
            }
            first = false;
            out.push(b'"');
            out.extend_from_slice(name.as_bytes());
            out.push(b'"');
        }
    }
    out.push(b']');
}

/// Appends the JSON form of `tick` (an object with `"type":"tick"`; a book change is a
/// one-level `"type":"book"` message, [`write_json_book`]) to `out`.
pub fn write_json_tick(tick: &Tick, symbol: &str, out: &mut Vec<u8>) {
    if let Body::Book {
        side, price, size, ..
    } = tick.body
    {
        let level = [(price, size)];
        let (bids, asks): (&[Level], &[Level]) = match side {
            Side::Bid => (&level, &[]),
            Side::Ask => (&[], &level),
        };
        let m = BookMessage {
            symbol_id: tick.symbol_id,
            seq: tick.seq,
            ts_event: tick.ts_event,
            ts_recv: tick.ts_recv,
            flags: tick.flags,
            count: tick.count,
            bids,
            asks,
        };
        return write_json_book(&m, symbol, out);
    }
    let mut n = itoa::Buffer::new();
    out.extend_from_slice(b"{\"type\":\"tick\",\"symbol\":\"");
    // Symbol names are restricted to characters that need no escaping.
    out.extend_from_slice(symbol.as_bytes());
    out.extend_from_slice(b"\",\"seq\":");
    out.extend_from_slice(n.format(tick.seq).as_bytes());
    out.extend_from_slice(b",\"kind\":\"");
    out.extend_from_slice(tick.body.kind().name().as_bytes());
    out.extend_from_slice(b"\",\"ts_event\":");
    out.extend_from_slice(n.format(tick.ts_event).as_bytes());
    out.extend_from_slice(b",\"ts_recv\":");
    out.extend_from_slice(n.format(tick.ts_recv).as_bytes());
    write_json_flags(tick.flags, out);
    out.extend_from_slice(b",\"count\":");
    out.extend_from_slice(n.format(tick.count).as_bytes());
    let names: [&[u8]; 4] = match tick.body.kind() {
        Kind::Trade => [b"price", b"size", b"high", b"low"],
        Kind::Quote => [b"bid_px", b"bid_sz", b"ask_px", b"ask_sz"],
        // Written by `write_json_book` above; named as in a binary record.
        Kind::Book => [b"price", b"size", b"side", b"group"],
    };
    for (name, value) in names.iter().zip(tick.body.values()) {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(name);
        out.extend_from_slice(b"\":\"");
        fixed::write(value, out);
        out.push(b'"');
    }
    out.push(b'}');
}

/// Largest `summary` message [`write_summary_messages`] writes, in bytes: a subscribe to
/// every symbol of a large server gets several, each well under the bundled clients'
/// message limit (1 MiB).
pub const MAX_SUMMARY_MESSAGE_BYTES: usize = 32 * 1024;

/// Writes the `summary` messages (`docs/protocol.md`, "Session summary") of `entries`,
/// `(symbol name, summary)`, handing each to `emit`; every message holds as many entries
/// as fit [`MAX_SUMMARY_MESSAGE_BYTES`] (at least one):
///
/// ```json
/// {"type":"summary","symbols":[{"symbol":"SYM0","seq":98,"trades":12,"open":"816.36",
///  "high":"820","low":"810.5","volume":"24.5","since":1795312649479377653}]}
/// ```
pub fn write_summary_messages<'a>(
    entries: impl IntoIterator<Item = (&'a str, TradeSummary)>,
    mut emit: impl FnMut(&[u8]),
) {
    const OPEN: &[u8] = b"{\"type\":\"summary\",\"symbols\":[";
    let mut n = itoa::Buffer::new();
    let mut out = Vec::with_capacity(1024);
    let mut entry = Vec::with_capacity(256);
    for (symbol, s) in entries {
        entry.clear();
        entry.extend_from_slice(b"{\"symbol\":\"");
        // Symbol names are restricted to characters that need no escaping.
        entry.extend_from_slice(symbol.as_bytes());
        entry.extend_from_slice(b"\",\"seq\":");
        entry.extend_from_slice(n.format(s.seq).as_bytes());
        entry.extend_from_slice(b",\"trades\":");
        entry.extend_from_slice(n.format(s.trades).as_bytes());
        for (name, value) in [
            (&b"open"[..], s.open),
            (b"high", s.high),
            (b"low", s.low),
            (b"volume", s.volume),
        ] {
            entry.extend_from_slice(b",\"");
            entry.extend_from_slice(name);
            entry.extend_from_slice(b"\":\"");
            fixed::write(value, &mut entry);
            entry.push(b'"');
        }
        entry.extend_from_slice(b",\"since\":");
        entry.extend_from_slice(n.format(s.since).as_bytes());
        entry.push(b'}');
        if out.len() > OPEN.len() && out.len() + entry.len() + 2 > MAX_SUMMARY_MESSAGE_BYTES {
            out.extend_from_slice(b"]}");
            emit(&out);
            out.clear();
        }
        if out.is_empty() {
            out.extend_from_slice(OPEN);
        } else {
            out.push(b',');
        }
        out.extend_from_slice(&entry);
    }
    if !out.is_empty() {
        out.extend_from_slice(b"]}");
        emit(&out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_messages_are_json_split_under_the_limit() {
        let s = TradeSummary {
            seq: 98,
            trades: 12,
            volume: 2_450_000_000,
            open: 81_636_000_000,
            high: 82_000_000_000,
            low: -1,
            since: 1_795_312_649_479_377_653,
        };
        let mut one = Vec::new();
        write_summary_messages([("SYM0", s)], |m| one.push(m.to_vec()));
        assert_eq!(
            std::str::from_utf8(&one[0]).unwrap(),
            r#"{"type":"summary","symbols":[{"symbol":"SYM0","seq":98,"trades":12,"open":"816.36","high":"820","low":"-0.00000001","volume":"24.5","since":1795312649479377653}]}"#
        );
        let names: Vec<String> = (0..2_000).map(|i| format!("SYM{i}")).collect();
        let mut many = Vec::new();
        write_summary_messages(names.iter().map(|n| (n.as_str(), s)), |m| {
            many.push(m.to_vec())
        });
        assert!(many.len() > 1, "split");
        let mut seen = Vec::new();
        for m in &many {
            assert!(m.len() <= MAX_SUMMARY_MESSAGE_BYTES, "{}", m.len());
            let v: serde_json::Value = serde_json::from_slice(m).unwrap();
            assert_eq!(v["type"], "summary");
            for e in v["symbols"].as_array().unwrap() {
                assert_eq!(e["since"].as_u64(), Some(s.since));
                seen.push(e["symbol"].as_str().unwrap().to_string());
            }
        }
        assert_eq!(seen, names, "every entry once, in order");
        let mut none = 0;
        write_summary_messages(std::iter::empty(), |_| none += 1);
        assert_eq!(none, 0);
    }

    fn sample() -> Tick {
        Tick {
            symbol_id: 7,
            seq: 42,
            ts_event: 1_700_000_000_000_000_001,
            ts_recv: 1_700_000_000_000_000_999,
            flags: Flags::SNAPSHOT.with(Flags::CONFLATED),
            count: 3,
            body: Body::Trade {
                price: 6_423_157_000_000,
                size: 150_000_000,
                high: 6_423_200_000_000,
                low: 6_423_000_000_000,
            },
        }
    }

    #[test]
    fn record_layout_is_the_documented_one() {
        let t = sample();
        let mut out = [0u8; RECORD_SIZE];
        encode_record(&t, &mut out);
        assert_eq!(out[0], 1, "kind");
        assert_eq!(out[1], 3, "flags");
        assert_eq!(&out[2..4], &[0, 0]);
        assert_eq!(u32::from_le_bytes(out[4..8].try_into().unwrap()), 7);
        assert_eq!(u64::from_le_bytes(out[8..16].try_into().unwrap()), 42);
        assert_eq!(
            u64::from_le_bytes(out[16..24].try_into().unwrap()),
            t.ts_event
        );
        assert_eq!(
            u64::from_le_bytes(out[24..32].try_into().unwrap()),
            t.ts_recv
        );
        assert_eq!(u32::from_le_bytes(out[32..36].try_into().unwrap()), 3);
        assert_eq!(
            i64::from_le_bytes(out[40..48].try_into().unwrap()),
            6_423_157_000_000
        );
        assert_eq!(
            i64::from_le_bytes(out[64..72].try_into().unwrap()),
            6_423_000_000_000
        );
        assert_eq!(std::mem::size_of::<ArchivedWireRecord>(), RECORD_SIZE);
        assert_eq!(std::mem::size_of::<ArchivedMessageHeader>(), HEADER_SIZE);
    }

    #[test]
    fn message_round_trips_zero_copy() {
        let t = sample();
        let mut msg = rkyv::util::AlignedVec::<8>::new();
        let mut h = [0u8; HEADER_SIZE];
        encode_header(2, 99, &mut h);
        msg.extend_from_slice(&h);
        let mut r = [0u8; RECORD_SIZE];
        encode_record(&t, &mut r);
        msg.extend_from_slice(&r);
        encode_record(&Tick { seq: 43, ..t }, &mut r);
        msg.extend_from_slice(&r);
        let (header, recs) = records(&msg).unwrap();
        assert_eq!((header.record_count, header.ts_out), (2, 99));
        assert_eq!(recs[0].to_tick(), Some(t));
        assert_eq!(recs[1].seq.to_native(), 43);
        assert!(matches!(
            decode_message(&msg[..msg.len() - 1]),
            Err(DecodeError::Length { .. })
        ));
    }

    #[test]
    fn json_tick_has_the_fixed_field_names() {
        let mut out = Vec::new();
        write_json_tick(&sample(), "BTC-USD", &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["type"], "tick");
        assert_eq!(v["symbol"], "BTC-USD");
        assert_eq!(v["seq"], 42);
        assert_eq!(v["kind"], "trade");
        assert_eq!(v["ts_event"], 1_700_000_000_000_000_001u64);
        assert_eq!(v["flags"], serde_json::json!(["snapshot", "conflated"]));
        assert_eq!(v["count"], 3);
        assert_eq!(v["price"], "64231.57");
        assert_eq!(v["size"], "1.5");
        let q = Tick {
            flags: Flags::empty(),
            body: Body::Quote {
                bid_px: 100,
                bid_sz: 1,
                ask_px: 200,
                ask_sz: 2,
            },
            ..sample()
        };
        out.clear();
        write_json_tick(&q, "X", &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["flags"], serde_json::json!([]));
        assert_eq!(v["bid_px"], "0.000001");
        assert_eq!(v["ask_sz"], "0.00000002");
    }

    #[test]
    fn frame_headers_use_minimal_length() {
        for (len, want) in [
            (0usize, vec![0x82, 0]),
            (125, vec![0x82, 125]),
            (126, vec![0x82, 126, 0, 126]),
            (65535, vec![0x82, 126, 255, 255]),
            (65536, vec![0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        ] {
            let mut out = Vec::new();
            write_frame_header(OP_BINARY, len, &mut out);
            assert_eq!(out, want, "len {len}");
        }
    }
}
