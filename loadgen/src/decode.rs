//! Server messages into [`Rec`]s: binary records read in place with
//! `from_le_bytes` (no alignment needed, no copy), JSON tick arrays with serde_json
//! borrowing from the message. Control messages come back as [`Control`].

use std::collections::HashMap;
use std::fmt;

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use crate::recorder::{Rec, FLAG_CONFLATED, FLAG_REPLAY, FLAG_SNAPSHOT};

/// Binary message header size, bytes.
pub const HEADER_SIZE: usize = 16;
/// Binary record size, bytes (the header's `record_size`, checked).
pub const RECORD_SIZE: usize = 72;

/// Why a server message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// A binary message whose length does not fit its header.
    Length(usize),
    /// A binary header with an unknown version or record size.
    Version(u16, u16),
    /// A text message that is not valid JSON of the expected shape.
    Json(String),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Length(n) => {
                write!(f, "binary message of {n} bytes does not fit its header")
            }
            DecodeError::Version(v, s) => write!(f, "binary header version {v}, record size {s}"),
            DecodeError::Json(e) => write!(f, "bad JSON message: {e}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// What a text message was, other than ticks.
#[derive(Debug, Clone, PartialEq)]
pub enum Control {
    /// `{"type":"subscribed",…}`.
    Subscribed,
    /// `{"type":"error","message":…}`.
    Error(String),
    /// `{"type":"conflation","state":"on"}`.
    ConflationOn,
    /// `{"type":"conflation","state":"off",…}`.
    ConflationOff,
    /// Anything else (`symbols`, `unsubscribed`, later additions).
    Other,
}

/// A decoded text message.
#[derive(Debug, Clone, PartialEq)]
pub enum Text {
    /// A tick array; this many records were handed to the callback.
    Records(usize),
    /// A control message.
    Control(Control),
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Decodes a binary data message, calling `f` for each record. Returns the count.
pub fn binary(payload: &[u8], mut f: impl FnMut(Rec)) -> Result<usize, DecodeError> {
    if payload.len() < HEADER_SIZE {
        return Err(DecodeError::Length(payload.len()));
    }
    let version = u16::from_le_bytes([payload[0], payload[1]]);
    let record_size = u16::from_le_bytes([payload[2], payload[3]]);
    if version != 1 || usize::from(record_size) < RECORD_SIZE {
        return Err(DecodeError::Version(version, record_size));
    }
    let size = usize::from(record_size);
    let count = u32_at(payload, 4) as usize;
    let body = &payload[HEADER_SIZE..];
    if body.len() != count.saturating_mul(size) {
        return Err(DecodeError::Length(payload.len()));
    }
    for r in body.chunks_exact(size) {
        // A book message is a group of records (one per level) sharing its seq, count
        // and times: it is measured once, at its last record.
        let partial = r[0] == tickcast::tick::Kind::Book as u8 && {
            let (levels, index) = (u32_at(r, 64), u32_at(r, 68));
            levels > 0 && index + 1 < levels
        };
        f(Rec {
            partial,
            symbol: u32_at(r, 4),
            seq: u64_at(r, 8),
            flags: r[1],
            count: u32_at(r, 32),
            ts_event: u64_at(r, 16),
        });
    }
    Ok(count)
}

/// Symbol names of a JSON connection mapped to dense local keys.
#[derive(Debug, Default, Clone)]
pub struct Names {
    map: HashMap<Box<str>, u32>,
}

impl Names {
    /// The key of `name`, assigning the next one on first sight.
    pub fn key(&mut self, name: &str) -> u32 {
        if let Some(&k) = self.map.get(name) {
            return k;
        }
        let k = self.map.len() as u32;
        self.map.insert(name.into(), k);
        k
    }
}

/// The flag names of a JSON tick as bits.
struct FlagBits(u8);

impl<'de> Deserialize<'de> for FlagBits {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FlagBits;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of flag names")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FlagBits, A::Error> {
                let mut bits = 0u8;
                while let Some(name) = seq.next_element::<&str>()? {
                    bits |= match name {
                        "snapshot" => FLAG_SNAPSHOT,
                        "conflated" => FLAG_CONFLATED,
                        "replay" => FLAG_REPLAY,
                        _ => 0,
                    };
                }
                Ok(FlagBits(bits))
            }
        }
        d.deserialize_seq(V)
    }
}

/// The fields of a JSON tick loadgen reads; the rest are skipped.
#[derive(Deserialize)]
struct JsonTick<'a> {
    #[serde(borrow)]
    symbol: &'a str,
    seq: u64,
    ts_event: u64,
    #[serde(default)]
    flags: Option<FlagBits>,
    #[serde(default)]
    count: Option<u32>,
}

#[derive(Deserialize)]
struct JsonControl<'a> {
    #[serde(borrow, rename = "type")]
    kind: &'a str,
    #[serde(default, borrow)]
    state: Option<&'a str>,
    #[serde(default)]
    message: Option<String>,
}

/// Decodes a text message: a tick array (records go to `f`) or a control object.
pub fn text(
    payload: &[u8],
    names: &mut Names,
    mut f: impl FnMut(Rec),
) -> Result<Text, DecodeError> {
    let first = payload.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        let ticks: Vec<JsonTick<'_>> =
            serde_json::from_slice(payload).map_err(|e| DecodeError::Json(e.to_string()))?;
        let n = ticks.len();
        for t in ticks {
            f(Rec {
                symbol: names.key(t.symbol),
                seq: t.seq,
                flags: t.flags.map_or(0, |b| b.0),
                count: t.count.unwrap_or(1),
                ts_event: t.ts_event,
                partial: false,
            });
        }
        return Ok(Text::Records(n));
    }
    let c: JsonControl<'_> =
        serde_json::from_slice(payload).map_err(|e| DecodeError::Json(e.to_string()))?;
    Ok(Text::Control(match (c.kind, c.state) {
        ("subscribed", _) => Control::Subscribed,
        ("error", _) => Control::Error(c.message.unwrap_or_default()),
        ("conflation", Some("on")) => Control::ConflationOn,
        ("conflation", Some("off")) => Control::ConflationOff,
        _ => Control::Other,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tickcast::tick::{Body, Flags, Tick};

    #[test]
    fn binary_matches_the_server_encoding() {
        let t = Tick {
            symbol_id: 3,
            seq: 42,
            ts_event: 1_000,
            ts_recv: 2_000,
            flags: Flags::CONFLATED,
            count: 7,
            body: Body::trade(5, 6),
        };
        let mut msg = vec![0u8; HEADER_SIZE];
        let mut h = [0u8; HEADER_SIZE];
        tickcast::wire::encode_header(2, 9, &mut h);
        msg.copy_from_slice(&h);
        let mut r = [0u8; RECORD_SIZE];
        tickcast::wire::encode_record(&t, &mut r);
        msg.extend_from_slice(&r);
        msg.extend_from_slice(&r);
        let mut got = Vec::new();
        assert_eq!(binary(&msg, |r| got.push(r)).unwrap(), 2);
        assert_eq!(
            got[0],
            Rec {
                symbol: 3,
                seq: 42,
                flags: FLAG_CONFLATED,
                count: 7,
                partial: false,
                ts_event: 1_000
            }
        );
        assert!(binary(&msg[..20], |_| {}).is_err());
        assert!(binary(&[0; 3], |_| {}).is_err());
    }

    #[test]
    fn json_ticks_and_controls() {
        let mut tick = Vec::new();
        let t = Tick {
            symbol_id: 0,
            seq: 9,
            ts_event: 77,
            ts_recv: 78,
            flags: Flags::SNAPSHOT,
            count: 1,
            body: Body::trade(5, 6),
        };
        tick.push(b'[');
        tickcast::wire::write_json_tick(&t, "SYM9", &mut tick);
        tick.push(b']');
        let mut names = Names::default();
        let mut got = Vec::new();
        assert_eq!(
            text(&tick, &mut names, |r| got.push(r)).unwrap(),
            Text::Records(1)
        );
        assert_eq!(
            (got[0].seq, got[0].ts_event, got[0].flags, got[0].symbol),
            (9, 77, FLAG_SNAPSHOT, 0)
        );
        let mut c = |s: &str| text(s.as_bytes(), &mut names, |_| {}).unwrap();
        assert_eq!(
            c(r#"{"type":"conflation","state":"on"}"#),
            Text::Control(Control::ConflationOn)
        );
        assert_eq!(
            c(r#"{"type":"error","message":"x"}"#),
            Text::Control(Control::Error("x".into()))
        );
        assert_eq!(
            c(r#"{"type":"symbols","symbols":[]}"#),
            Text::Control(Control::Other)
        );
        assert!(text(b"{", &mut names, |_| {}).is_err());
    }
}
