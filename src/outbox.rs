//! `Outbox`: one connection's outbound bytes, as complete WebSocket frames.
//!
//! Writer cores append already-encoded records to the *open* data message; at the end
//! of a batch the message is closed (its frame header and `ts_out` filled in) and the
//! whole queue goes out in one write. Space for the frame header is reserved when a
//! message opens; because a data message is capped at 65,535 payload bytes the header
//! is 2 or 4 bytes, and the rare 2-byte case shifts a payload of under 126 bytes.
//! Sans-IO: the owner passes `now` and writes [`Outbox::pending`] itself.

use std::collections::VecDeque;

use crate::wire::{self, HEADER_SIZE, OP_BINARY, OP_TEXT};

/// Largest data message payload; keeps the frame header at 4 bytes.
pub const MAX_DATA_PAYLOAD: usize = u16::MAX as usize;
/// Bytes reserved for the frame header of an open data message.
const RESERVE: usize = 4;
/// Message boundaries remembered for the queue-age bound.
const MAX_MARKS: usize = 64;

/// How a connection wants ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Binary messages: header + rkyv records.
    Binary,
    /// Text messages: a JSON array of tick objects.
    Json,
}

impl Format {
    /// The name used in the protocol.
    pub fn name(self) -> &'static str {
        match self {
            Format::Binary => "binary",
            Format::Json => "json",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct OpenMessage {
    start: usize,
    records: u32,
    format: Format,
}

/// A connection's queue of outbound frames.
#[derive(Debug, Default)]
pub struct Outbox {
    /// Frames; `buf[sent..]` is not written yet. The open message, if any, is last.
    buf: Vec<u8>,
    sent: usize,
    open: Option<OpenMessage>,
    /// Bytes ever consumed from the front of `buf` (makes `marks` absolute).
    consumed: u64,
    /// `(absolute end offset, enqueue time)` of closed frames, oldest first.
    marks: VecDeque<(u64, u64)>,
    /// Records ever appended.
    pub records: u64,
    /// Frames ever closed.
    pub frames: u64,
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Outbox {
        Outbox::default()
    }

    /// Appends one encoded record (binary record or JSON object) to the open data
    /// message of `format`, opening or rolling over a message as needed.
    pub fn push_record(&mut self, format: Format, record: &[u8], now_ns: u64) {
        let extra = record.len() + 1;
        if let Some(open) = self.open {
            let payload = self.buf.len() - open.start - RESERVE;
            if open.format != format || payload + extra > MAX_DATA_PAYLOAD {
                self.finish(now_ns);
            }
        }
        if self.open.is_none() {
            let start = self.buf.len();
            self.buf.extend_from_slice(&[0; RESERVE]);
            match format {
                Format::Binary => self.buf.extend_from_slice(&[0; HEADER_SIZE]),
                Format::Json => self.buf.push(b'['),
            }
            self.open = Some(OpenMessage {
                start,
                records: 0,
                format,
            });
        }
        self.buf.extend_from_slice(record);
        if format == Format::Json {
            self.buf.push(b',');
        }
        if let Some(open) = self.open.as_mut() {
            open.records += 1;
        }
        self.records += 1;
    }

    /// Closes the open data message, stamping `ts_out = now_ns` into a binary header.
    pub fn finish(&mut self, now_ns: u64) {
        let Some(open) = self.open.take() else {
            return;
        };
        let body = open.start + RESERVE;
        let opcode = match open.format {
            Format::Binary => {
                let mut h = [0u8; HEADER_SIZE];
                wire::encode_header(open.records, now_ns, &mut h);
                self.buf[body..body + HEADER_SIZE].copy_from_slice(&h);
                OP_BINARY
            }
            Format::Json => {
                // Replace the trailing comma with the closing bracket.
                if let Some(last) = self.buf.last_mut() {
                    *last = b']';
                }
                OP_TEXT
            }
        };
        let len = self.buf.len() - body;
        if len < 126 {
            self.buf[open.start + 2] = 0x80 | opcode;
            self.buf[open.start + 3] = len as u8;
            self.buf.drain(open.start..open.start + 2);
        } else {
            self.buf[open.start] = 0x80 | opcode;
            self.buf[open.start + 1] = 126;
            self.buf[open.start + 2..open.start + 4].copy_from_slice(&(len as u16).to_be_bytes());
        }
        self.mark(now_ns);
    }

    /// Appends a whole frame (a control message, ping, pong or close) after closing
    /// the open data message, so that order is kept.
    pub fn push_frame(&mut self, opcode: u8, payload: &[u8], now_ns: u64) {
        self.finish(now_ns);
        wire::write_frame_header(opcode, payload.len(), &mut self.buf);
        self.buf.extend_from_slice(payload);
        self.mark(now_ns);
    }

    fn mark(&mut self, now_ns: u64) {
        self.frames += 1;
        if self.marks.len() < MAX_MARKS {
            self.marks
                .push_back((self.consumed + self.buf.len() as u64, now_ns));
        }
    }

    /// Complete frames not yet written.
    pub fn pending(&self) -> &[u8] {
        let end = self.open.map_or(self.buf.len(), |o| o.start);
        &self.buf[self.sent..end]
    }

    /// Records that `n` bytes of [`Outbox::pending`] were written.
    pub fn consume(&mut self, n: usize) {
        self.sent += n;
        let done = self.consumed + self.sent as u64;
        while self.marks.front().is_some_and(|&(end, _)| end <= done) {
            self.marks.pop_front();
        }
        if self.sent == self.buf.len() {
            self.consumed += self.sent as u64;
            self.buf.clear();
            self.sent = 0;
        } else if self.sent >= 64 * 1024 && self.sent * 2 >= self.buf.len() {
            // Compact now and then, so that the buffer does not creep forward.
            self.buf.drain(..self.sent);
            self.consumed += self.sent as u64;
            if let Some(open) = self.open.as_mut() {
                open.start -= self.sent;
            }
            self.sent = 0;
        }
    }

    /// Bytes queued and not yet written, the open message included.
    pub fn queued(&self) -> usize {
        self.buf.len() - self.sent
    }

    /// Whether nothing at all is queued.
    pub fn is_empty(&self) -> bool {
        self.queued() == 0
    }

    /// Whether a data message is open.
    pub fn has_open(&self) -> bool {
        self.open.is_some()
    }

    /// Age of the oldest unwritten complete frame, in ns (0 when none). Conservative:
    /// past 64 queued frames it may report an older time, never a newer one.
    pub fn oldest_age_ns(&self, now_ns: u64) -> u64 {
        if self.pending().is_empty() {
            return 0;
        }
        self.marks
            .front()
            .map_or(0, |&(_, t)| now_ns.saturating_sub(t))
    }

    /// Drops every queued frame that has not started to go out, keeps the rest of a
    /// frame already partly written (so the stream stays well-formed) and returns the
    /// bytes dropped. Used before a close frame when a connection is evicted.
    pub fn truncate_unsent(&mut self) -> usize {
        self.open = None;
        let sent_abs = self.consumed + self.sent as u64;
        let keep_to = if self.sent == 0 {
            0
        } else {
            // The end of the frame in progress: the first mark past the sent offset.
            self.marks
                .iter()
                .find(|&&(end, _)| end > sent_abs)
                .map_or(self.buf.len(), |&(end, _)| (end - self.consumed) as usize)
        };
        let keep_to = keep_to.max(self.sent).min(self.buf.len());
        let dropped = self.buf.len() - keep_to;
        self.buf.truncate(keep_to);
        let end_abs = self.consumed + keep_to as u64;
        self.marks.retain(|&(end, _)| end <= end_abs);
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tick::{Body, Flags, Tick};
    use crate::wire::{decode_message, encode_record, RECORD_SIZE};

    fn tick(seq: u64) -> Tick {
        Tick {
            symbol_id: 1,
            seq,
            ts_event: 1,
            ts_recv: 2,
            flags: Flags::empty(),
            count: 1,
            body: Body::trade(5, 6),
        }
    }

    /// Splits `bytes` into (opcode, payload) frames, checking minimal length encoding.
    fn frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            assert_eq!(bytes[0] & 0x80, 0x80, "FIN set");
            let op = bytes[0] & 0x0f;
            let (len, hdr) = match bytes[1] {
                126 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
                127 => panic!("data frames stay under 64 KiB"),
                n => (n as usize, 2),
            };
            if hdr == 4 {
                assert!(len >= 126, "minimal length encoding");
            }
            out.push((op, bytes[hdr..hdr + len].to_vec()));
            bytes = &bytes[hdr + len..];
        }
        out
    }

    #[test]
    fn binary_batch_is_one_frame_with_header() {
        let mut o = Outbox::new();
        let mut r = [0u8; RECORD_SIZE];
        for s in 1..=3 {
            encode_record(&tick(s), &mut r);
            o.push_record(Format::Binary, &r, 10);
        }
        assert!(o.pending().is_empty(), "open message is not pending");
        o.finish(77);
        let f = frames(o.pending());
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].0, OP_BINARY);
        let mut aligned = rkyv::util::AlignedVec::<8>::new();
        aligned.extend_from_slice(&f[0].1);
        let (h, ticks) = decode_message(&aligned).unwrap();
        assert_eq!((h.record_count, h.ts_out), (3, 77));
        assert_eq!(ticks.iter().map(|t| t.seq).collect::<Vec<_>>(), [1, 2, 3]);
    }

    #[test]
    fn small_json_message_uses_two_byte_header() {
        let mut o = Outbox::new();
        o.push_record(Format::Json, br#"{"a":1}"#, 0);
        o.push_record(Format::Json, br#"{"a":2}"#, 0);
        o.finish(0);
        let f = frames(o.pending());
        assert_eq!(f, vec![(OP_TEXT, br#"[{"a":1},{"a":2}]"#.to_vec())]);
    }

    #[test]
    fn control_frames_keep_order_and_large_batches_roll_over() {
        let mut o = Outbox::new();
        let r = [0u8; RECORD_SIZE];
        o.push_record(Format::Binary, &r, 0);
        o.push_frame(OP_TEXT, b"{\"type\":\"x\"}", 0);
        for _ in 0..2000 {
            o.push_record(Format::Binary, &r, 0);
        }
        o.finish(0);
        let f = frames(o.pending());
        assert_eq!(f[0].0, OP_BINARY);
        assert_eq!(f[1], (OP_TEXT, b"{\"type\":\"x\"}".to_vec()));
        let records: usize = f[2..]
            .iter()
            .map(|(_, p)| (p.len() - 16) / RECORD_SIZE)
            .sum();
        assert_eq!(records, 2000);
        assert!(f.len() > 3, "rolled over at 64 KiB");
        assert!(f.iter().all(|(_, p)| p.len() <= MAX_DATA_PAYLOAD));
    }

    #[test]
    fn consume_and_age() {
        let mut o = Outbox::new();
        o.push_frame(OP_TEXT, b"aaaa", 100);
        o.push_frame(OP_TEXT, b"bbbb", 200);
        assert_eq!(o.queued(), 12);
        assert_eq!(o.oldest_age_ns(1_000), 900);
        o.consume(6);
        assert_eq!(o.oldest_age_ns(1_000), 800);
        o.consume(6);
        assert!(o.is_empty());
        assert_eq!(o.oldest_age_ns(1_000), 0);
    }

    #[test]
    fn truncate_keeps_the_frame_in_progress() {
        let mut o = Outbox::new();
        o.push_frame(OP_TEXT, b"first", 0);
        o.push_frame(OP_TEXT, b"second", 0);
        o.push_frame(OP_TEXT, b"third", 0);
        o.consume(3); // part of "first"
        let dropped = o.truncate_unsent();
        assert_eq!(dropped, 8 + 7);
        o.push_frame(0x8, &[0x0f, 0xa8], 0);
        let pending = o.pending().to_vec();
        assert_eq!(&pending[..4], b"irst");
        assert_eq!(frames(&pending[4..]), vec![(0x8, vec![0x0f, 0xa8])]);
    }
}
