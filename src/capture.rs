//! Capture files (`.tcrec`): a recorded tick stream, the binary messages exactly as a
//! subscriber received them, for the replay feed and for offline analysis.
//!
//! The layout is spelled out in `docs/protocol.md` (section "Capture files"). In short:
//! a 24-byte fixed header (magic `TCREC1`, version, creation time, length of a JSON
//! header), the JSON header (the id → name map and where the stream came from), then
//! entries, each an 8-byte entry header (length, kind) and its payload: a *block* of
//! data messages (their headers, then all their records back to back), or a `symbols`
//! control message that maps ids appearing later. Every entry starts on an 8-byte
//! boundary, so a file read whole into an aligned buffer gives rkyv-accessible records
//! in place, and the records of a block are one contiguous array whatever the sizes
//! of the messages they came in.
//!
//! [`CaptureWriter`] writes one (the `record` example does, through the client),
//! gathering messages into blocks of about [`BLOCK_RECORD_BYTES`];
//! [`CaptureReader`] reads one with a bounded buffer, whatever the file holds: a bad
//! file is an error, never a panic or an unbounded allocation. [`export`] turns one
//! into CSV, JSON lines or Parquet and [`inspect`] summarises one (`tickcast capture`).

pub mod export;
pub mod inspect;

use std::io::{self, Read, Write};

use rkyv::util::AlignedVec;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::client::batch::{records_of, Records};
use crate::wire::{self, DecodeError, MessageHeader, HEADER_SIZE, RECORD_SIZE};

/// The first six bytes of every capture file.
pub const MAGIC: &[u8; 6] = b"TCREC1";
/// The format version this module writes and reads.
pub const VERSION: u16 = 2;
/// Bytes of the fixed header before the JSON header.
pub const FIXED_HEADER_SIZE: usize = 24;
/// Bytes of an entry header.
pub const ENTRY_HEADER_SIZE: usize = 8;
/// Largest JSON header or entry payload a reader accepts, in bytes: far above any
/// message the server sends (65,535 bytes), small enough that a corrupt length cannot
/// make the reader allocate without bound.
pub const MAX_ENTRY_BYTES: usize = 16 << 20;

/// Entry kind: a block of binary data messages (their 16-byte headers, then their
/// records back to back), as received.
pub const ENTRY_BLOCK: u8 = 1;
/// Entry kind: a `symbols` control message (JSON text), as received.
pub const ENTRY_SYMBOLS: u8 = 2;
/// Bytes of a block's own header (message count, record count).
pub const BLOCK_HEADER_SIZE: usize = 8;
/// A writer closes its block once the block holds this many bytes of records.
pub const BLOCK_RECORD_BYTES: usize = 1 << 20;

/// One symbol of an id → name map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SymbolEntry {
    /// The id binary records carry.
    pub id: u32,
    /// The symbol's name.
    pub name: String,
}

/// The JSON header of a capture.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureHeader {
    /// When the recording started, ns since the Unix epoch (also in the fixed header).
    #[serde(default)]
    pub created_at_ns: u64,
    /// The id → name map known when the recording started; `symbols` entries add to it.
    #[serde(default)]
    pub symbols: Vec<SymbolEntry>,
    /// Where the stream came from (a `ws://` URL), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// Why a capture could not be read or written.
#[derive(Debug, Error)]
pub enum CaptureError {
    /// Reading or writing the file failed.
    #[error("capture i/o: {0}")]
    Io(#[from] io::Error),
    /// The file does not start with [`MAGIC`].
    #[error("not a tickcast capture (no TCREC1 magic)")]
    Magic,
    /// A version this reader does not know.
    #[error("unsupported capture version {0} (this reader knows version 2)")]
    Version(u16),
    /// The JSON header or a `symbols` entry is not valid.
    #[error("invalid JSON in capture at byte {offset}: {message}")]
    Json {
        /// Offset of the JSON in the file.
        offset: u64,
        /// What is wrong with it.
        message: String,
    },
    /// An entry header that makes no sense (unknown kind, too long), or a file that
    /// ends in the middle of an entry.
    #[error("bad capture entry at byte {offset}: {message}")]
    Entry {
        /// Offset of the entry header in the file.
        offset: u64,
        /// What is wrong with it.
        message: String,
    },
    /// A block whose contents disagree with its length or with themselves. The reader
    /// has read past it: the next [`CaptureReader::next_entry`] reads the entry after.
    #[error("bad capture block at byte {offset}: {message}")]
    Block {
        /// Offset of the entry header in the file.
        offset: u64,
        /// What is wrong with it.
        message: String,
    },
    /// A message handed to [`CaptureWriter::write_message`] that is not a valid binary
    /// data message.
    #[error("not a binary data message: {0}")]
    Message(#[from] DecodeError),
}

/// One entry of a capture, borrowed from the reader's buffer.
#[derive(Debug)]
pub enum Entry<'a> {
    /// A block of binary data messages, checked: iterate it for the messages, or take
    /// [`Block::records`] for all their records at once.
    Block(Block<'a>),
    /// Ids that the following messages use.
    Symbols(Vec<SymbolEntry>),
}

/// The messages of one block, borrowed from the reader's buffer (8-byte aligned).
/// Checked when read: every header is a version-1 header and the record counts add up
/// to the records held, so iterating cannot fail.
#[derive(Debug, Clone)]
pub struct Block<'a> {
    headers: std::slice::ChunksExact<'a, u8>,
    records: &'a [u8],
}

impl<'a> Block<'a> {
    /// Checks a block's payload (`n`, `m`, `n` headers, `m` records).
    fn parse(payload: &'a [u8]) -> Result<Block<'a>, String> {
        let word = |at: usize| {
            payload
                .get(at..at + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        };
        let (Some(n), Some(m)) = (word(0), word(4)) else {
            return Err(format!(
                "block of {} bytes has no block header",
                payload.len()
            ));
        };
        let want = (BLOCK_HEADER_SIZE as u64)
            + n as u64 * HEADER_SIZE as u64
            + m as u64 * RECORD_SIZE as u64;
        if payload.len() as u64 != want {
            return Err(format!(
                "block of {} bytes does not hold its {n} messages and {m} records ({want} bytes)",
                payload.len()
            ));
        }
        let (headers, records) = payload[BLOCK_HEADER_SIZE..].split_at(n * HEADER_SIZE);
        let mut total = 0u64;
        for (i, h) in headers.chunks_exact(HEADER_SIZE).enumerate() {
            let h = wire::check_header(h).map_err(|e| format!("message {i} of the block: {e}"))?;
            total += u64::from(h.record_count);
        }
        if total != m as u64 {
            return Err(format!(
                "the block's message headers count {total} records, the block holds {m}"
            ));
        }
        Ok(Block {
            headers: headers.chunks_exact(HEADER_SIZE),
            records,
        })
    }

    /// Messages in the block (left to iterate).
    pub fn message_count(&self) -> usize {
        self.headers.len()
    }

    /// Records in the block (left to iterate).
    pub fn record_count(&self) -> usize {
        self.records.len() / RECORD_SIZE
    }

    /// All the records of the block's (remaining) messages, in place, in order.
    pub fn records(&self) -> Records<'a> {
        records_of(self.records)
    }
}

impl<'a> Iterator for Block<'a> {
    type Item = Message<'a>;

    fn next(&mut self) -> Option<Message<'a>> {
        let header = wire::check_header(self.headers.next()?).ok()?;
        let (records, rest) = self
            .records
            .split_at_checked(header.record_count as usize * RECORD_SIZE)?;
        self.records = rest;
        Some(Message { header, records })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.headers.size_hint()
    }
}

/// One recorded message: its header and its records, in place.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The message's header as received (record count, `ts_out`).
    pub header: MessageHeader,
    records: &'a [u8],
}

impl<'a> Message<'a> {
    /// Records in the message.
    pub fn len(&self) -> usize {
        self.header.record_count as usize
    }

    /// Whether the message holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The records, in place.
    pub fn records(&self) -> Records<'a> {
        records_of(self.records)
    }

    /// The message's bytes exactly as received (header and records), copied into an
    /// aligned buffer.
    pub fn to_bytes(&self) -> AlignedVec<8> {
        let mut out = AlignedVec::with_capacity(HEADER_SIZE + self.records.len());
        let mut h = [0u8; HEADER_SIZE];
        wire::encode_header(self.header.record_count, self.header.ts_out, &mut h);
        out.extend_from_slice(&h);
        out.extend_from_slice(self.records);
        out
    }
}

fn padding(len: usize) -> usize {
    (8 - len % 8) % 8
}

/// Writes a capture. Messages are gathered into a block, written once it holds
/// [`BLOCK_RECORD_BYTES`] of records, before a `symbols` entry, on [`flush`] and on
/// [`finish`]; beyond that nothing is buffered but what `W` buffers. A writer dropped
/// without [`finish`] writes its open block, ignoring errors (call [`finish`] to see
/// them).
///
/// [`flush`]: CaptureWriter::flush
/// [`finish`]: CaptureWriter::finish
#[derive(Debug)]
pub struct CaptureWriter<W: Write> {
    /// `None` only once [`CaptureWriter::finish`] took it.
    out: Option<W>,
    /// The open block: its header, then its messages' headers.
    headers: Vec<u8>,
    /// The open block's records.
    records: Vec<u8>,
}

fn entry_header(kind: u8, len: usize) -> Result<[u8; ENTRY_HEADER_SIZE], CaptureError> {
    let len = u32::try_from(len)
        .ok()
        .filter(|&n| n as usize <= MAX_ENTRY_BYTES)
        .ok_or_else(|| CaptureError::Entry {
            offset: 0,
            message: format!("entry of {len} bytes is too long"),
        })?;
    let mut head = [0u8; ENTRY_HEADER_SIZE];
    head[..4].copy_from_slice(&len.to_le_bytes());
    head[4] = kind;
    Ok(head)
}

impl<W: Write> CaptureWriter<W> {
    /// Writes the fixed and JSON headers.
    pub fn new(mut out: W, header: &CaptureHeader) -> Result<CaptureWriter<W>, CaptureError> {
        let json = serde_json::to_vec(header).map_err(|e| CaptureError::Json {
            offset: FIXED_HEADER_SIZE as u64,
            message: e.to_string(),
        })?;
        let len = u32::try_from(json.len())
            .ok()
            .filter(|&n| n as usize <= MAX_ENTRY_BYTES)
            .ok_or_else(|| CaptureError::Json {
                offset: FIXED_HEADER_SIZE as u64,
                message: format!("header of {} bytes is too long", json.len()),
            })?;
        let mut fixed = [0u8; FIXED_HEADER_SIZE];
        fixed[..6].copy_from_slice(MAGIC);
        fixed[6..8].copy_from_slice(&VERSION.to_le_bytes());
        fixed[8..16].copy_from_slice(&header.created_at_ns.to_le_bytes());
        fixed[16..20].copy_from_slice(&len.to_le_bytes());
        out.write_all(&fixed)?;
        out.write_all(&json)?;
        out.write_all(&[0u8; 8][..padding(json.len())])?;
        let mut headers = Vec::with_capacity(64 << 10);
        headers.extend_from_slice(&[0u8; BLOCK_HEADER_SIZE]);
        Ok(CaptureWriter {
            out: Some(out),
            headers,
            records: Vec::with_capacity(BLOCK_RECORD_BYTES + (64 << 10)),
        })
    }

    fn out(&mut self) -> &mut W {
        self.out
            .as_mut()
            .expect("the writer is only taken by finish, which consumes self")
    }

    /// Writes the open block, if it holds a message.
    fn write_block(&mut self) -> Result<(), CaptureError> {
        let n = (self.headers.len() - BLOCK_HEADER_SIZE) / HEADER_SIZE;
        if n == 0 {
            return Ok(());
        }
        let m = self.records.len() / RECORD_SIZE;
        self.headers[..4].copy_from_slice(&(n as u32).to_le_bytes());
        self.headers[4..8].copy_from_slice(&(m as u32).to_le_bytes());
        // Both parts are multiples of 8 bytes: no padding.
        let head = entry_header(ENTRY_BLOCK, self.headers.len() + self.records.len())?;
        let (headers, records) = (
            std::mem::take(&mut self.headers),
            std::mem::take(&mut self.records),
        );
        let written = (|| {
            let out = self.out();
            out.write_all(&head)?;
            out.write_all(&headers)?;
            out.write_all(&records)
        })();
        self.headers = headers;
        self.records = records;
        self.headers.truncate(BLOCK_HEADER_SIZE);
        self.records.clear();
        Ok(written?)
    }

    /// Appends a binary data message exactly as received. A message that is not one
    /// (bad header, length that disagrees with its record count) is refused.
    pub fn write_message(&mut self, message: &[u8]) -> Result<(), CaptureError> {
        wire::check_message(message)?;
        self.headers.extend_from_slice(&message[..HEADER_SIZE]);
        self.records.extend_from_slice(&message[HEADER_SIZE..]);
        if self.records.len() >= BLOCK_RECORD_BYTES {
            self.write_block()?;
        }
        Ok(())
    }

    /// Appends an id → name map for the messages that follow.
    pub fn write_symbols(&mut self, symbols: &[SymbolEntry]) -> Result<(), CaptureError> {
        let json = serde_json::to_vec(&serde_json::json!({"type": "symbols", "symbols": symbols}))
            .map_err(|e| CaptureError::Json {
                offset: 0,
                message: e.to_string(),
            })?;
        self.write_block()?;
        let head = entry_header(ENTRY_SYMBOLS, json.len())?;
        let out = self.out();
        out.write_all(&head)?;
        out.write_all(&json)?;
        out.write_all(&[0u8; 8][..padding(json.len())])?;
        Ok(())
    }

    /// Writes the open block and flushes `W`: everything written so far is in the file.
    pub fn flush(&mut self) -> Result<(), CaptureError> {
        self.write_block()?;
        self.out().flush()?;
        Ok(())
    }

    /// Writes the open block, flushes, and returns the inner writer.
    pub fn finish(mut self) -> Result<W, CaptureError> {
        self.flush()?;
        Ok(self.out.take().expect("present until finish"))
    }
}

impl<W: Write> Drop for CaptureWriter<W> {
    fn drop(&mut self) {
        if self.out.is_some() {
            let _ = self.flush();
        }
    }
}

/// The `symbols` list of a `{"type":"symbols","symbols":[…]}` message.
#[derive(Deserialize)]
struct SymbolsMessage {
    symbols: Vec<SymbolEntry>,
}

/// Reads a capture entry by entry, in constant memory (one entry at a time, at most
/// [`MAX_ENTRY_BYTES`]).
#[derive(Debug)]
pub struct CaptureReader<R: Read> {
    input: R,
    header: CaptureHeader,
    /// The current entry's payload, 8-byte aligned so records can be read in place.
    buf: AlignedVec<8>,
    /// Bytes consumed so far, for error messages.
    offset: u64,
}

/// Reads exactly `buf.len()` bytes; `Ok(false)` at a clean end of input (no byte read).
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

impl<R: Read> CaptureReader<R> {
    /// Reads and checks the headers.
    pub fn new(mut input: R) -> Result<CaptureReader<R>, CaptureError> {
        let mut fixed = [0u8; FIXED_HEADER_SIZE];
        match read_full(&mut input, &mut fixed) {
            Ok(true) => {}
            Ok(false) => return Err(CaptureError::Magic),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(if fixed.starts_with(MAGIC) {
                    CaptureError::Entry {
                        offset: 0,
                        message: "file ends inside the header".into(),
                    }
                } else {
                    CaptureError::Magic
                })
            }
            Err(e) => return Err(e.into()),
        }
        if &fixed[..6] != MAGIC {
            return Err(CaptureError::Magic);
        }
        let version = u16::from_le_bytes([fixed[6], fixed[7]]);
        if version != VERSION {
            return Err(CaptureError::Version(version));
        }
        let created_at_ns = u64::from_le_bytes(fixed[8..16].try_into().unwrap_or_default());
        let json_len = u32::from_le_bytes(fixed[16..20].try_into().unwrap_or_default()) as usize;
        let mut reader = CaptureReader {
            input,
            header: CaptureHeader::default(),
            buf: AlignedVec::new(),
            offset: FIXED_HEADER_SIZE as u64,
        };
        reader.read_payload(json_len, FIXED_HEADER_SIZE as u64)?;
        let mut header: CaptureHeader =
            serde_json::from_slice(&reader.buf).map_err(|e| CaptureError::Json {
                offset: FIXED_HEADER_SIZE as u64,
                message: e.to_string(),
            })?;
        header.created_at_ns = created_at_ns;
        reader.header = header;
        Ok(reader)
    }

    /// The headers: creation time, the initial symbol map, the source.
    pub fn header(&self) -> &CaptureHeader {
        &self.header
    }

    /// Bytes of the file read so far: the offset of the next entry, once an entry was
    /// read whole (or its bad block skipped).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads `len` bytes and their padding into `buf`.
    fn read_payload(&mut self, len: usize, at: u64) -> Result<(), CaptureError> {
        if len > MAX_ENTRY_BYTES {
            return Err(CaptureError::Entry {
                offset: at,
                message: format!("length {len} is over the limit of {MAX_ENTRY_BYTES} bytes"),
            });
        }
        let padded = len + padding(len);
        self.buf.clear();
        self.buf.resize(padded, 0);
        match read_full(&mut self.input, &mut self.buf[..]) {
            Ok(true) => {}
            Ok(false) if padded == 0 => {}
            Ok(false) => {
                return Err(CaptureError::Entry {
                    offset: at,
                    message: "file ends before the entry's payload".into(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(CaptureError::Entry {
                    offset: at,
                    message: "file ends inside the entry's payload".into(),
                })
            }
            Err(e) => return Err(e.into()),
        }
        self.buf.resize(len, 0);
        self.offset += padded as u64;
        Ok(())
    }

    /// The next entry, or `None` at the end of the file.
    pub fn next_entry(&mut self) -> Result<Option<Entry<'_>>, CaptureError> {
        let at = self.offset;
        let mut head = [0u8; ENTRY_HEADER_SIZE];
        match read_full(&mut self.input, &mut head) {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(CaptureError::Entry {
                    offset: at,
                    message: "file ends inside an entry header".into(),
                })
            }
            Err(e) => return Err(e.into()),
        }
        self.offset += ENTRY_HEADER_SIZE as u64;
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let kind = head[4];
        if kind != ENTRY_BLOCK && kind != ENTRY_SYMBOLS {
            return Err(CaptureError::Entry {
                offset: at,
                message: format!("unknown entry kind {kind}"),
            });
        }
        self.read_payload(len, at)?;
        if kind == ENTRY_BLOCK {
            return Block::parse(&self.buf)
                .map(|b| Some(Entry::Block(b)))
                .map_err(|message| CaptureError::Block {
                    offset: at,
                    message,
                });
        }
        let msg: SymbolsMessage =
            serde_json::from_slice(&self.buf).map_err(|e| CaptureError::Json {
                offset: at + ENTRY_HEADER_SIZE as u64,
                message: e.to_string(),
            })?;
        Ok(Some(Entry::Symbols(msg.symbols)))
    }
}

/// Whether `bytes` (the start of a file) is a capture.
pub fn has_magic(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// Whether the file at `path` is a capture (starts with [`MAGIC`]).
pub fn is_capture(path: &std::path::Path) -> io::Result<bool> {
    let mut start = [0u8; 6];
    let mut f = std::fs::File::open(path)?;
    Ok(read_full(&mut f, &mut start).unwrap_or(false) && has_magic(&start))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tick::{Body, Flags, Tick};

    /// A message of `count` records; record `i` has `seq` `first + i`.
    fn message(count: u32, first: u64, ts_out: u64) -> Vec<u8> {
        let mut msg = vec![0u8; HEADER_SIZE];
        let mut h = [0u8; HEADER_SIZE];
        wire::encode_header(count, ts_out, &mut h);
        msg.copy_from_slice(&h);
        for i in 0..u64::from(count) {
            let tick = Tick {
                symbol_id: (i % 3) as u32,
                seq: first + i,
                ts_event: 1_795_000_000_000_000_000 + i,
                ts_recv: 1_795_000_000_000_000_100 + i,
                flags: Flags::empty(),
                count: 1,
                body: Body::trade(10_000_000_000 + i as i64, 100_000_000),
            };
            let mut r = [0u8; RECORD_SIZE];
            wire::encode_record(&tick, &mut r);
            msg.extend_from_slice(&r);
        }
        msg
    }

    fn header() -> CaptureHeader {
        CaptureHeader {
            created_at_ns: 1_795_000_000_000_000_000,
            symbols: vec![SymbolEntry {
                id: 0,
                name: "SYM0".into(),
            }],
            source: Some("ws://127.0.0.1:9001/ws".into()),
        }
    }

    /// Messages of 0, 3 and 1 records, a symbols map, then one more message.
    fn sample() -> (Vec<u8>, Vec<Vec<u8>>) {
        let msgs = vec![
            message(0, 1, 7),
            message(3, 1, 8),
            message(1, 4, 9),
            message(2, 5, 10),
        ];
        let mut w = CaptureWriter::new(Vec::new(), &header()).unwrap();
        for m in &msgs[..3] {
            w.write_message(m).unwrap();
        }
        w.write_symbols(&[SymbolEntry {
            id: 1,
            name: "SYM1".into(),
        }])
        .unwrap();
        w.write_message(&msgs[3]).unwrap();
        (w.finish().unwrap(), msgs)
    }

    #[test]
    fn round_trip_and_alignment() {
        let (bytes, msgs) = sample();
        assert_eq!(&bytes[..6], MAGIC);
        assert_eq!(bytes.len() % 8, 0, "every entry is padded to 8 bytes");
        let mut r = CaptureReader::new(&bytes[..]).unwrap();
        assert_eq!(r.header().created_at_ns, 1_795_000_000_000_000_000);
        assert_eq!(r.header().symbols[0].name, "SYM0");
        match r.next_entry().unwrap() {
            Some(Entry::Block(block)) => {
                assert_eq!((block.message_count(), block.record_count()), (3, 4));
                let seqs: Vec<u64> = block.records().map(|r| r.seq.to_native()).collect();
                assert_eq!(seqs, [1, 2, 3, 4]);
                for rec in block.records() {
                    assert_eq!(rec as *const _ as usize % 8, 0, "records in place, aligned");
                }
                let got: Vec<Vec<u8>> = block.map(|m| m.to_bytes().to_vec()).collect();
                assert_eq!(got, msgs[..3], "each message exactly as received");
            }
            other => panic!("{other:?}"),
        }
        match r.next_entry().unwrap() {
            Some(Entry::Symbols(s)) => assert_eq!(s[0].id, 1),
            other => panic!("{other:?}"),
        }
        match r.next_entry().unwrap() {
            Some(Entry::Block(mut block)) => {
                let m = block.next().unwrap();
                assert_eq!((m.header.ts_out, m.len()), (10, 2));
                assert_eq!(
                    m.records().map(|r| r.seq.to_native()).collect::<Vec<_>>(),
                    [5, 6]
                );
                assert!(block.next().is_none());
            }
            other => panic!("{other:?}"),
        }
        assert!(r.next_entry().unwrap().is_none());
    }

    #[test]
    fn blocks_close_at_the_size_limit_and_on_drop() {
        // 910-record messages: a block closes once it holds 1 MiB of records.
        let msg = message(910, 1, 0);
        let per_block = BLOCK_RECORD_BYTES.div_ceil(910 * RECORD_SIZE);
        let mut out = Vec::new();
        {
            let mut w = CaptureWriter::new(&mut out, &header()).unwrap();
            for _ in 0..per_block + 1 {
                w.write_message(&msg).unwrap();
            }
            // Dropped without finish: the open block is still written.
        }
        let mut r = CaptureReader::new(&out[..]).unwrap();
        let mut sizes = Vec::new();
        while let Some(e) = r.next_entry().unwrap() {
            let Entry::Block(b) = e else {
                panic!("only blocks")
            };
            sizes.push(b.message_count());
        }
        assert_eq!(sizes, [per_block, 1]);
    }

    #[test]
    fn the_writer_refuses_what_is_not_a_message() {
        let mut w = CaptureWriter::new(Vec::new(), &header()).unwrap();
        let good = message(2, 1, 0);
        assert!(matches!(
            w.write_message(&good[..good.len() - 1]),
            Err(CaptureError::Message(_))
        ));
        assert!(matches!(
            w.write_message(&good[..8]),
            Err(CaptureError::Message(_))
        ));
        let mut v9 = good.clone();
        v9[0] = 9;
        assert!(matches!(
            w.write_message(&v9),
            Err(CaptureError::Message(_))
        ));
        w.write_message(&good).unwrap();
        let bytes = w.finish().unwrap();
        let mut r = CaptureReader::new(&bytes[..]).unwrap();
        let Some(Entry::Block(b)) = r.next_entry().unwrap() else {
            panic!("a block")
        };
        assert_eq!(b.record_count(), 2, "only the good message was kept");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2_000))]

        /// Any bytes after a valid header: the reader never panics, and every block it
        /// accepts holds exactly the records its messages count.
        #[test]
        fn arbitrary_entries_never_panic(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2_048),
            // Entry headers that mostly frame the bytes after them, so blocks get
            // parsed, not only refused at the first header.
            lens in proptest::collection::vec(0u32..512, 1..6),
        ) {
            let mut file = CaptureWriter::new(Vec::new(), &header()).unwrap().finish().unwrap();
            let mut rest = &body[..];
            for len in lens {
                let len = (len as usize).min(rest.len());
                file.extend_from_slice(&(len as u32).to_le_bytes());
                file.extend_from_slice(&[ENTRY_BLOCK, 0, 0, 0]);
                file.extend_from_slice(&rest[..len]);
                file.resize(file.len().next_multiple_of(8), 0);
                rest = &rest[len..];
            }
            file.extend_from_slice(rest);
            let mut r = CaptureReader::new(&file[..]).unwrap();
            for _ in 0..16 {
                match r.next_entry() {
                    Ok(Some(Entry::Block(block))) => {
                        let total = block.record_count();
                        let by_message: usize = block.clone().map(|m| m.len()).sum();
                        proptest::prop_assert_eq!(by_message, total);
                        proptest::prop_assert_eq!(block.records().count(), total);
                    }
                    Ok(Some(Entry::Symbols(_))) | Err(CaptureError::Block { .. }) => {}
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2_000))]

        /// A valid capture with a few bytes changed anywhere: never a panic, and every
        /// block still accepted holds exactly the records its messages count.
        #[test]
        fn mutated_captures_never_panic(
            edits in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 1..4),
        ) {
            let (mut file, _) = sample();
            for (at, byte) in edits {
                let at = at % file.len();
                file[at] = byte;
            }
            let Ok(mut r) = CaptureReader::new(&file[..]) else {
                return Ok(());
            };
            for _ in 0..16 {
                match r.next_entry() {
                    Ok(Some(Entry::Block(block))) => {
                        let total = block.record_count();
                        let by_message: usize = block.clone().map(|m| m.len()).sum();
                        proptest::prop_assert_eq!(by_message, total);
                    }
                    Ok(Some(Entry::Symbols(_))) | Err(CaptureError::Block { .. }) => {}
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }

    /// The offset of the first entry of a capture.
    fn first_entry(bytes: &[u8]) -> usize {
        let json_len = u32::from_le_bytes(bytes[16..20].try_into().unwrap()) as usize;
        FIXED_HEADER_SIZE + json_len + padding(json_len)
    }

    #[test]
    fn bad_files_are_errors() {
        let (good, _) = sample();
        assert!(matches!(
            CaptureReader::new(&b"{\"e\":1}\n"[..]),
            Err(CaptureError::Magic)
        ));
        assert!(matches!(
            CaptureReader::new(&b""[..]),
            Err(CaptureError::Magic)
        ));
        let mut v1 = good.clone();
        v1[6] = 1;
        assert!(matches!(
            CaptureReader::new(&v1[..]),
            Err(CaptureError::Version(1))
        ));
        // Every truncation is an error or a clean end at an entry boundary, never a panic.
        for cut in 0..good.len() {
            let Ok(mut r) = CaptureReader::new(&good[..cut]) else {
                continue;
            };
            while let Ok(Some(_)) = r.next_entry() {}
        }
        let first = first_entry(&good);
        let entry_error = |bytes: &[u8]| {
            let mut r = CaptureReader::new(bytes).unwrap();
            match r.next_entry() {
                Err(
                    CaptureError::Entry { offset, message }
                    | CaptureError::Block { offset, message },
                ) => {
                    assert_eq!(offset, first as u64);
                    message
                }
                other => panic!("{other:?}"),
            }
        };
        // A huge length is refused before any allocation.
        let mut huge = good.clone();
        huge[first..first + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(entry_error(&huge).contains("over the limit"));
        // The limit is inclusive: an entry of exactly 16 MiB is read (this one is cut
        // short), one byte more is refused.
        let mut limit = good[..first + ENTRY_HEADER_SIZE].to_vec();
        limit[first..first + 4].copy_from_slice(&(MAX_ENTRY_BYTES as u32).to_le_bytes());
        assert!(entry_error(&limit).contains("file ends"));
        limit[first..first + 4].copy_from_slice(&(MAX_ENTRY_BYTES as u32 + 1).to_le_bytes());
        assert!(entry_error(&limit).contains("over the limit"));
        let mut kind = good.clone();
        kind[first + 4] = 9;
        assert!(entry_error(&kind).contains("unknown entry kind 9"));
        // A block whose counts disagree with its length or its headers.
        let block = first + ENTRY_HEADER_SIZE;
        let mut count = good.clone();
        count[block + 4] += 1;
        assert!(entry_error(&count).contains("does not hold"));
        let mut header_count = good.clone();
        let second_header = block + BLOCK_HEADER_SIZE + HEADER_SIZE;
        header_count[second_header + 4] = 2; // message 1 claims 2 records, not 3
        assert!(entry_error(&header_count).contains("count 3 records"));
        let mut version = good.clone();
        version[second_header] = 5;
        assert!(entry_error(&version).contains("message 1 of the block"));
        // The reader reads on past a bad block.
        let mut r = CaptureReader::new(&version[..]).unwrap();
        assert!(matches!(r.next_entry(), Err(CaptureError::Block { .. })));
        assert!(matches!(r.next_entry(), Ok(Some(Entry::Symbols(_)))));
        assert!(matches!(r.next_entry(), Ok(Some(Entry::Block(_)))));
    }
}
