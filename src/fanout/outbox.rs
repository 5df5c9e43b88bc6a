//! `Outbox`: one connection's outbound bytes, as complete WebSocket frames.
//!
//! The core appends already-encoded records to the *open* data message; at the end of
//! a batch the message is closed (its frame header and `ts_out` filled in) and the
//! whole queue goes out in one write. Space for the frame header is reserved when a
//! message opens; because a data message is capped at 65,535 payload bytes the header
//! is 2 or 4 bytes, and the rare 2-byte case shifts a payload of under 126 bytes.
//!
//! Everything queued counts against the connection's budget ([`Outbox::queued`]):
//! records, and the control frames (acks, errors, symbol maps, pongs, close) appended
//! with [`Outbox::push_frame`], which are also counted on their own
//! ([`Outbox::control_queued`]) so that a client whose replies pile up can be stopped
//! from sending more. Memory follows the queue: a drained outbox hands its buffer back
//! ([`Outbox::take_spare`]) instead of keeping it at its high-water capacity.
//! Sans-IO: the owner passes `now` and writes [`Outbox::pending`] itself.

use crate::wire::{self, HEADER_SIZE, OP_BINARY, OP_TEXT};

/// Largest data message payload; keeps the frame header at 4 bytes.
pub const MAX_DATA_PAYLOAD: usize = u16::MAX as usize;
/// Bytes reserved for the frame header of an open data message.
const RESERVE: usize = 4;
/// Frame boundaries remembered for the queue-age bound. Past them, the newest mark is
/// stretched over the new frames, keeping its older time: ages stay conservative
/// (never younger than the truth).
const MAX_MARKS: usize = 4;
/// A drained buffer up to this capacity stays with its connection; a larger one is
/// handed back (see [`Outbox::take_spare`]).
pub const KEEP_CAPACITY: usize = 512;

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
    /// Bytes ever consumed from the front of `buf` (makes offsets absolute).
    consumed: u64,
    /// `(absolute end offset, enqueue time)` of closed frames, oldest first, in a ring
    /// of [`MAX_MARKS`].
    marks: [(u64, u64); MAX_MARKS],
    marks_head: u8,
    marks_len: u8,
    /// Control bytes queued since `control_from` (absolute offset): control frames are
    /// counted when appended and uncounted as the bytes before their end are written.
    control: ControlSpan,
    /// Records ever appended.
    pub records: u64,
    /// Frames ever closed.
    pub frames: u64,
}

/// The unwritten control frames, as one span per run of adjacent frames. Two spans
/// are enough to be exact in the common cases (a control frame between data messages,
/// or a run of them); past that the spans merge and the count is an over-estimate
/// until the queue drains, never an under-estimate.
#[derive(Debug, Default, Clone, Copy)]
struct ControlSpan {
    /// `(absolute start, absolute end)` of up to two spans, oldest first; empty when
    /// `start == end`.
    spans: [(u64, u64); 2],
}

impl ControlSpan {
    fn add(&mut self, start: u64, end: u64) {
        let [a, b] = &mut self.spans;
        if a.0 == a.1 {
            *a = (start, end);
        } else if a.1 == start && b.0 == b.1 {
            a.1 = end;
        } else if b.0 == b.1 {
            *b = (start, end);
        } else if b.1 == start {
            b.1 = end;
        } else {
            // A third span: fold the second into the first (counting the data between
            // them as control) and start again.
            a.1 = b.1;
            *b = (start, end);
        }
    }

    fn queued(&self, done: u64) -> usize {
        self.spans
            .iter()
            .map(|&(s, e)| e.saturating_sub(s.max(done)))
            .sum::<u64>() as usize
    }

    fn consume(&mut self, done: u64) {
        for span in &mut self.spans {
            if span.1 <= done {
                *span = (0, 0);
            }
        }
        if self.spans[0].0 == self.spans[0].1 {
            self.spans.swap(0, 1);
        }
    }

    fn truncate(&mut self, end: u64) {
        for span in &mut self.spans {
            span.1 = span.1.min(end);
            if span.0 >= span.1 {
                *span = (0, 0);
            }
        }
        if self.spans[0].0 == self.spans[0].1 {
            self.spans.swap(0, 1);
        }
    }
}

impl Outbox {
    /// An empty outbox (no memory held).
    pub fn new() -> Outbox {
        Outbox::default()
    }

    /// Gives an empty outbox a buffer to fill (one handed back by another connection's
    /// [`Outbox::take_spare`]), so that a busy core recycles buffers instead of
    /// allocating. Ignored unless the outbox holds no memory.
    pub fn give_buffer(&mut self, mut buf: Vec<u8>) {
        if self.buf.capacity() == 0 {
            buf.clear();
            self.buf = buf;
        }
    }

    /// Whether the outbox holds no buffer at all.
    pub fn has_no_buffer(&self) -> bool {
        self.buf.capacity() == 0
    }

    /// Heap bytes held.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// When everything is written and the buffer grew past [`KEEP_CAPACITY`], takes
    /// the buffer out (leaving none) for the caller to recycle or free.
    pub fn take_spare(&mut self) -> Option<Vec<u8>> {
        if self.buf.is_empty() && self.buf.capacity() > KEEP_CAPACITY {
            Some(std::mem::take(&mut self.buf))
        } else {
            None
        }
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

    /// Closes the open data message if `bytes` more bytes of records in `format` would
    /// not fit in it, so that records that belong together (a book message's levels)
    /// travel in one WebSocket message.
    pub fn make_room(&mut self, format: Format, bytes: usize, now_ns: u64) {
        if let Some(open) = self.open {
            let payload = self.buf.len() - open.start - RESERVE;
            if open.format == format && payload + bytes > MAX_DATA_PAYLOAD {
                self.finish(now_ns);
            }
        }
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

    /// Appends a whole control frame (a reply, notice, ping, pong or close; or an
    /// echoed message) after closing the open data message, so that order is kept.
    /// Its bytes count in [`Outbox::control_queued`] until they are written.
    pub fn push_frame(&mut self, opcode: u8, payload: &[u8], now_ns: u64) {
        self.finish(now_ns);
        let start = self.consumed + self.buf.len() as u64;
        wire::write_frame_header(opcode, payload.len(), &mut self.buf);
        self.buf.extend_from_slice(payload);
        self.control
            .add(start, self.consumed + self.buf.len() as u64);
        self.mark(now_ns);
    }

    fn mark(&mut self, now_ns: u64) {
        self.frames += 1;
        let end = self.consumed + self.buf.len() as u64;
        if (self.marks_len as usize) < MAX_MARKS {
            let i = (self.marks_head as usize + self.marks_len as usize) % MAX_MARKS;
            self.marks[i] = (end, now_ns);
            self.marks_len += 1;
        } else {
            let last = (self.marks_head as usize + MAX_MARKS - 1) % MAX_MARKS;
            self.marks[last].0 = end;
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
        while self.marks_len > 0 && self.marks[self.marks_head as usize].0 <= done {
            self.marks_head = ((self.marks_head as usize + 1) % MAX_MARKS) as u8;
            self.marks_len -= 1;
        }
        self.control.consume(done);
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

    /// Control-frame bytes queued and not yet written (exact for up to two runs of
    /// control frames between data; an over-estimate, never an under-estimate, past).
    pub fn control_queued(&self) -> usize {
        self.control
            .queued(self.consumed + self.sent as u64)
            .min(self.queued())
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
    /// past four queued frames it may report an older time, never a newer one.
    pub fn oldest_age_ns(&self, now_ns: u64) -> u64 {
        if self.pending().is_empty() || self.marks_len == 0 {
            return 0;
        }
        now_ns.saturating_sub(self.marks[self.marks_head as usize].1)
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
            (0..self.marks_len as usize)
                .map(|i| self.marks[(self.marks_head as usize + i) % MAX_MARKS].0)
                .find(|&end| end > sent_abs)
                .map_or(self.buf.len(), |end| (end - self.consumed) as usize)
        };
        let keep_to = keep_to.max(self.sent).min(self.buf.len());
        let dropped = self.buf.len() - keep_to;
        self.buf.truncate(keep_to);
        let end_abs = self.consumed + keep_to as u64;
        while self.marks_len > 0 {
            let last = (self.marks_head as usize + self.marks_len as usize - 1) % MAX_MARKS;
            if self.marks[last].0 <= end_abs {
                break;
            }
            self.marks_len -= 1;
        }
        self.control.truncate(end_abs);
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
