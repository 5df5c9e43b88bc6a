//! The messages on the bus, sans-IO: bytes and header values in, ticks and names out.
//!
//! Every message (a batch on `<prefix>.ticks.<shard>`, a page of a snapshot reply)
//! has the payload of a binary WebSocket data message (`docs/protocol.md`): the
//! 16-byte rkyv header, then 72-byte rkyv records, so the ingest encodes each tick
//! once with the same code as the writer cores. What the records cannot carry travels
//! in NATS headers:
//!
//! | header | value |
//! |---|---|
//! | [`EPOCH`] | the numbering run: when its first leader started, ns since the Unix epoch, decimal |
//! | [`TERM`] | the publishing leader's term (its lease's), decimal |
//! | [`SYMBOLS_FROM`] | id of the first name in [`SYMBOLS`] |
//! | [`SYMBOLS`] | symbol names for the ids from [`SYMBOLS_FROM`] on, comma-separated |
//! | [`SYMBOLS_TOTAL`] | snapshot pages only: symbols the ingest knows in all |
//!
//! Symbol names never hold a comma (`A-Z a-z 0-9 . _ - : /`), so the list needs no
//! escaping.

use rkyv::util::AlignedVec;
use thiserror::Error;

use crate::symbol::{Symbol, SymbolError};
use crate::tick::Tick;
use crate::wire::{self, DecodeError, HEADER_SIZE, RECORD_SIZE};

/// Header: the epoch (decimal ns), on every message.
pub const EPOCH: &str = "Tickcast-Epoch";
/// Header: the publishing leader's term (decimal), on every message.
pub const TERM: &str = "Tickcast-Term";
/// Header: id of the first name in [`SYMBOLS`].
pub const SYMBOLS_FROM: &str = "Tickcast-Symbols-From";
/// Header: comma-separated symbol names, in id order.
pub const SYMBOLS: &str = "Tickcast-Symbols";
/// Header: number of symbols the ingest knows (snapshot pages).
pub const SYMBOLS_TOTAL: &str = "Tickcast-Symbols-Total";
/// Header: why a snapshot request was refused.
pub const ERROR: &str = "Tickcast-Error";

/// Why a bus message was skipped.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MalformedError {
    /// A required header is absent.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// A numeric header does not hold a number.
    #[error("header {header}: {value:?} is not a number")]
    BadNumber {
        /// The header.
        header: &'static str,
        /// Its value.
        value: String,
    },
    /// A name in [`SYMBOLS`] is not a valid symbol.
    #[error("symbol {name:?}: {error}")]
    BadSymbol {
        /// The name.
        name: String,
        /// What is wrong with it.
        error: SymbolError,
    },
    /// The payload is not a binary data message.
    #[error("payload: {0}")]
    Payload(#[from] DecodeError),
}

/// The header values of one message, as the IO layer found them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Headers<'a> {
    /// [`EPOCH`].
    pub epoch: Option<&'a str>,
    /// [`TERM`].
    pub term: Option<&'a str>,
    /// [`SYMBOLS_FROM`].
    pub symbols_from: Option<&'a str>,
    /// [`SYMBOLS`].
    pub symbols: Option<&'a str>,
    /// [`SYMBOLS_TOTAL`].
    pub symbols_total: Option<&'a str>,
}

/// One decoded message; borrows the [`Decoder`]'s buffers.
#[derive(Debug, PartialEq, Eq)]
pub struct Message<'a> {
    /// The epoch.
    pub epoch: u64,
    /// The publisher's term.
    pub term: u64,
    /// Id of `symbols[0]`.
    pub symbols_from: u32,
    /// Names announced by this message (often none).
    pub symbols: &'a [Symbol],
    /// Snapshot pages: symbols the ingest knows in all.
    pub symbols_total: Option<u32>,
    /// `ts_out` of the payload header: when the ingest encoded it.
    pub ts_out: u64,
    /// The ticks, with the ingest's symbol ids.
    pub ticks: &'a [Tick],
}

/// Decodes messages into reused buffers: after warm-up, decoding allocates only the
/// record index of `wire::records`.
#[derive(Debug, Default)]
pub struct Decoder {
    aligned: AlignedVec<8>,
    ticks: Vec<Tick>,
    names: Vec<Symbol>,
}

fn number<T: std::str::FromStr>(header: &'static str, v: &str) -> Result<T, MalformedError> {
    v.trim().parse().map_err(|_| MalformedError::BadNumber {
        header,
        value: v.chars().take(64).collect(),
    })
}

impl Decoder {
    /// A decoder with empty buffers.
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Decodes one message.
    pub fn decode(
        &mut self,
        headers: Headers<'_>,
        payload: &[u8],
    ) -> Result<Message<'_>, MalformedError> {
        let epoch = number(
            EPOCH,
            headers.epoch.ok_or(MalformedError::MissingHeader(EPOCH))?,
        )?;
        let term = number(
            TERM,
            headers.term.ok_or(MalformedError::MissingHeader(TERM))?,
        )?;
        self.names.clear();
        let symbols_from = match headers.symbols {
            Some(list) if !list.is_empty() => {
                for name in list.split(',') {
                    let s = Symbol::new(name).map_err(|error| MalformedError::BadSymbol {
                        name: name.chars().take(64).collect(),
                        error,
                    })?;
                    self.names.push(s);
                }
                number(
                    SYMBOLS_FROM,
                    headers
                        .symbols_from
                        .ok_or(MalformedError::MissingHeader(SYMBOLS_FROM))?,
                )?
            }
            _ => 0,
        };
        let symbols_total = headers
            .symbols_total
            .map(|v| number(SYMBOLS_TOTAL, v))
            .transpose()?;
        // rkyv reads records in place from 8-byte-aligned memory; a NATS payload has
        // no such guarantee, so it is copied once into a reused aligned buffer.
        self.aligned.clear();
        self.aligned.extend_from_slice(payload);
        let (header, records) = wire::records(&self.aligned)?;
        self.ticks.clear();
        for r in records {
            let t = r
                .to_tick()
                .ok_or_else(|| DecodeError::Invalid(format!("unknown kind {}", r.kind)))?;
            self.ticks.push(t);
        }
        Ok(Message {
            epoch,
            term,
            symbols_from,
            symbols: &self.names,
            symbols_total,
            ts_out: header.ts_out,
            ticks: &self.ticks,
        })
    }
}

/// Encodes `ticks` as a binary data message (header stamped `ts_out`) into `out`,
/// which is cleared first.
pub fn encode_ticks<'a>(
    ticks: impl ExactSizeIterator<Item = &'a Tick>,
    ts_out: u64,
    out: &mut Vec<u8>,
) {
    out.clear();
    out.reserve(HEADER_SIZE + ticks.len() * RECORD_SIZE);
    let mut h = [0u8; HEADER_SIZE];
    wire::encode_header(ticks.len() as u32, ts_out, &mut h);
    out.extend_from_slice(&h);
    let mut rec = [0u8; RECORD_SIZE];
    for t in ticks {
        wire::encode_record(t, &mut rec);
        out.extend_from_slice(&rec);
    }
}

/// The [`SYMBOLS`] value for `names`.
pub fn join_names(names: &[Symbol]) -> String {
    let mut out = String::with_capacity(names.len() * 12);
    for (i, n) in names.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(n.as_str());
    }
    out
}

/// Parses a snapshot request's payload: the first symbol id wanted, decimal; empty
/// means 0.
pub fn parse_snapshot_request(payload: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(payload).ok()?.trim();
    if text.is_empty() {
        return Some(0);
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tick::{Body, Flags};

    fn tick(id: u32, seq: u64) -> Tick {
        Tick {
            symbol_id: id,
            seq,
            ts_event: 10 + seq,
            ts_recv: 20 + seq,
            flags: Flags::empty(),
            count: 1,
            body: Body::trade(seq as i64 * 100, 3),
        }
    }

    #[test]
    fn round_trips_ticks_and_names() {
        let ticks = [tick(0, 1), tick(1, 1), tick(0, 2)];
        let mut payload = Vec::new();
        encode_ticks(ticks.iter(), 99, &mut payload);
        let names = [Symbol::new("A").unwrap(), Symbol::new("B:C-D/E").unwrap()];
        let joined = join_names(&names);
        assert_eq!(joined, "A,B:C-D/E");
        // An odd offset, as a NATS payload may have.
        let mut shifted = vec![0u8];
        shifted.extend_from_slice(&payload);
        let mut d = Decoder::new();
        let m = d
            .decode(
                Headers {
                    epoch: Some("7"),
                    term: Some("3"),
                    symbols_from: Some("0"),
                    symbols: Some(&joined),
                    symbols_total: Some("2"),
                },
                &shifted[1..],
            )
            .unwrap();
        assert_eq!((m.epoch, m.term), (7, 3));
        assert_eq!(m.symbols, &names);
        assert_eq!(m.symbols_total, Some(2));
        assert_eq!(m.ts_out, 99);
        assert_eq!(m.ticks, &ticks);
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        let mut ok = Vec::new();
        encode_ticks([tick(0, 1)].iter(), 1, &mut ok);
        let epoch = Headers {
            epoch: Some("1"),
            term: Some("1"),
            ..Headers::default()
        };
        let mut bad_kind = ok.clone();
        bad_kind[HEADER_SIZE] = 9;
        let cases: Vec<(Headers<'_>, Vec<u8>)> = vec![
            (Headers::default(), ok.clone()),
            (
                Headers {
                    term: None,
                    ..epoch
                },
                ok.clone(),
            ),
            (
                Headers {
                    term: Some("-2"),
                    ..epoch
                },
                ok.clone(),
            ),
            (
                Headers {
                    epoch: Some("x"),
                    ..epoch
                },
                ok.clone(),
            ),
            (
                Headers {
                    symbols: Some("A,B"),
                    ..epoch
                },
                ok.clone(),
            ),
            (
                Headers {
                    symbols: Some("A,,B"),
                    symbols_from: Some("0"),
                    ..epoch
                },
                ok.clone(),
            ),
            (
                Headers {
                    symbols_total: Some("-1"),
                    ..epoch
                },
                ok.clone(),
            ),
            (epoch, ok[..ok.len() - 1].to_vec()),
            (epoch, vec![]),
            (epoch, bad_kind),
            (
                epoch,
                b"garbage that is long enough to have a header".to_vec(),
            ),
        ];
        let mut d = Decoder::new();
        for (i, (h, p)) in cases.iter().enumerate() {
            assert!(d.decode(*h, p).is_err(), "case {i} must be rejected");
        }
        assert!(d.decode(epoch, &ok).is_ok(), "the decoder still works");
    }

    #[test]
    fn snapshot_requests() {
        assert_eq!(parse_snapshot_request(b""), Some(0));
        assert_eq!(parse_snapshot_request(b" 1024\n"), Some(1024));
        assert_eq!(parse_snapshot_request(b"-1"), None);
        assert_eq!(parse_snapshot_request(&[0xff]), None);
    }
}
