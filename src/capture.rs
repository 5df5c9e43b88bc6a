//! Capture files (`.tcrec`): a recorded tick stream, the binary messages exactly as a
//! subscriber received them, for the replay feed and for offline analysis.
//!
//! The layout is spelled out in `docs/protocol.md` (section "Capture files"). In short:
//! a 24-byte fixed header (magic `TCREC1`, version, creation time, length of a JSON
//! header), the JSON header (the id → name map and where the stream came from), then
//! entries, each an 8-byte entry header (length, kind) and its payload: a binary data
//! message, or a `symbols` control message that maps ids appearing later. Every entry
//! starts on an 8-byte boundary, so a file read whole into an aligned buffer gives
//! rkyv-accessible records in place.
//!
//! [`CaptureWriter`] writes one (the `record` example does, through the client);
//! [`CaptureReader`] reads one with a bounded buffer, whatever the file holds: a bad
//! file is an error, never a panic or an unbounded allocation.

use std::io::{self, Read, Write};

use rkyv::util::AlignedVec;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The first six bytes of every capture file.
pub const MAGIC: &[u8; 6] = b"TCREC1";
/// The format version this module writes and reads.
pub const VERSION: u16 = 1;
/// Bytes of the fixed header before the JSON header.
pub const FIXED_HEADER_SIZE: usize = 24;
/// Bytes of an entry header.
pub const ENTRY_HEADER_SIZE: usize = 8;
/// Largest JSON header or entry payload a reader accepts, in bytes: far above any
/// message the server sends (65,535 bytes), small enough that a corrupt length cannot
/// make the reader allocate without bound.
pub const MAX_ENTRY_BYTES: usize = 16 << 20;

/// Entry kind: a binary data message (16-byte header and records), as received.
pub const ENTRY_MESSAGE: u8 = 1;
/// Entry kind: a `symbols` control message (JSON text), as received.
pub const ENTRY_SYMBOLS: u8 = 2;

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
    #[error("unsupported capture version {0} (this reader knows version 1)")]
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
}

/// One entry of a capture, borrowed from the reader's buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Entry<'a> {
    /// A binary data message, exactly as received; 8-byte aligned.
    Message(&'a [u8]),
    /// Ids that the following messages use.
    Symbols(Vec<SymbolEntry>),
}

fn padding(len: usize) -> usize {
    (8 - len % 8) % 8
}

/// Writes a capture. Nothing is buffered beyond what `W` buffers: wrap a file in a
/// `BufWriter` and call [`CaptureWriter::finish`] at the end.
#[derive(Debug)]
pub struct CaptureWriter<W: Write> {
    out: W,
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
        Ok(CaptureWriter { out })
    }

    fn entry(&mut self, kind: u8, payload: &[u8]) -> Result<(), CaptureError> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|&n| n as usize <= MAX_ENTRY_BYTES)
            .ok_or_else(|| CaptureError::Entry {
                offset: 0,
                message: format!("entry of {} bytes is too long", payload.len()),
            })?;
        let mut head = [0u8; ENTRY_HEADER_SIZE];
        head[..4].copy_from_slice(&len.to_le_bytes());
        head[4] = kind;
        self.out.write_all(&head)?;
        self.out.write_all(payload)?;
        self.out.write_all(&[0u8; 8][..padding(payload.len())])?;
        Ok(())
    }

    /// Appends a binary data message exactly as received (not checked here).
    pub fn write_message(&mut self, message: &[u8]) -> Result<(), CaptureError> {
        self.entry(ENTRY_MESSAGE, message)
    }

    /// Appends an id → name map for the messages that follow.
    pub fn write_symbols(&mut self, symbols: &[SymbolEntry]) -> Result<(), CaptureError> {
        let json = serde_json::to_vec(&serde_json::json!({"type": "symbols", "symbols": symbols}))
            .map_err(|e| CaptureError::Json {
                offset: 0,
                message: e.to_string(),
            })?;
        self.entry(ENTRY_SYMBOLS, &json)
    }

    /// Flushes and returns the inner writer.
    pub fn finish(mut self) -> Result<W, CaptureError> {
        self.out.flush()?;
        Ok(self.out)
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
        if kind != ENTRY_MESSAGE && kind != ENTRY_SYMBOLS {
            return Err(CaptureError::Entry {
                offset: at,
                message: format!("unknown entry kind {kind}"),
            });
        }
        self.read_payload(len, at)?;
        if kind == ENTRY_MESSAGE {
            return Ok(Some(Entry::Message(&self.buf)));
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

    fn sample() -> Vec<u8> {
        let header = CaptureHeader {
            created_at_ns: 1_795_000_000_000_000_000,
            symbols: vec![SymbolEntry {
                id: 0,
                name: "SYM0".into(),
            }],
            source: Some("ws://127.0.0.1:9001/ws".into()),
        };
        let mut w = CaptureWriter::new(Vec::new(), &header).unwrap();
        let mut msg = [0u8; crate::wire::HEADER_SIZE];
        crate::wire::encode_header(0, 7, &mut msg);
        w.write_message(&msg).unwrap();
        w.write_symbols(&[SymbolEntry {
            id: 1,
            name: "SYM1".into(),
        }])
        .unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn round_trip_and_alignment() {
        let bytes = sample();
        assert_eq!(&bytes[..6], MAGIC);
        assert_eq!(bytes.len() % 8, 0, "every entry is padded to 8 bytes");
        let mut r = CaptureReader::new(&bytes[..]).unwrap();
        assert_eq!(r.header().created_at_ns, 1_795_000_000_000_000_000);
        assert_eq!(r.header().symbols[0].name, "SYM0");
        match r.next_entry().unwrap() {
            Some(Entry::Message(m)) => {
                assert_eq!(m.len(), 16);
                assert_eq!(m.as_ptr() as usize % 8, 0);
                assert_eq!(crate::wire::records(m).unwrap().0.ts_out, 7);
            }
            other => panic!("{other:?}"),
        }
        match r.next_entry().unwrap() {
            Some(Entry::Symbols(s)) => assert_eq!(s[0].id, 1),
            other => panic!("{other:?}"),
        }
        assert!(r.next_entry().unwrap().is_none());
    }

    #[test]
    fn bad_files_are_errors() {
        let good = sample();
        assert!(matches!(
            CaptureReader::new(&b"{\"e\":1}\n"[..]),
            Err(CaptureError::Magic)
        ));
        assert!(matches!(
            CaptureReader::new(&b""[..]),
            Err(CaptureError::Magic)
        ));
        let mut v2 = good.clone();
        v2[6] = 2;
        assert!(matches!(
            CaptureReader::new(&v2[..]),
            Err(CaptureError::Version(2))
        ));
        // Every truncation is an error or a clean end at an entry boundary, never a panic.
        for cut in 0..good.len() {
            let Ok(mut r) = CaptureReader::new(&good[..cut]) else {
                continue;
            };
            while let Ok(Some(_)) = r.next_entry() {}
        }
        // A huge length is refused before any allocation.
        let mut huge = good.clone();
        let json_len = u32::from_le_bytes(good[16..20].try_into().unwrap()) as usize;
        let first_entry = FIXED_HEADER_SIZE + json_len + padding(json_len);
        huge[first_entry..first_entry + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut r = CaptureReader::new(&huge[..]).unwrap();
        assert!(matches!(r.next_entry(), Err(CaptureError::Entry { .. })));
        let mut kind = good.clone();
        kind[first_entry + 4] = 9;
        let mut r = CaptureReader::new(&kind[..]).unwrap();
        assert!(matches!(r.next_entry(), Err(CaptureError::Entry { .. })));
    }
}
