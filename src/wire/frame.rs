//! WebSocket frames as the server reads and writes them (RFC 6455 §5), sans-IO.
//!
//! [`FrameReader`] is one connection's read state. The I/O shell reads whatever the
//! socket has into a buffer shared by every connection of its core and hands it to
//! [`FrameReader::feed`], which unmasks in place and reports whole messages and control
//! frames as [`Message`]s borrowed from that buffer. Only a frame cut by the end of a
//! read, or a fragmented message, is copied into the reader's own buffer, and that
//! buffer is freed once the message is complete: an idle connection holds no read
//! buffer at all.
//!
//! What the RFC requires of a server, and what each breach costs ([`FrameError`]):
//! client frames must be masked (§5.1); reserved bits need a negotiated extension and
//! reserved opcodes are errors (§5.2); control frames carry at most 125 bytes and are
//! never fragmented (§5.5); continuations need a message to continue and a new message
//! must wait for the last fragment (§5.4); text must be UTF-8 (§8.1), checked as
//! fragments arrive so a bad byte fails the connection at once; close frames carry no
//! payload or a valid code and a UTF-8 reason (§5.5.1, §7.4). The size limit applies to
//! the whole (reassembled) message: a message of exactly the limit is accepted, and one
//! over it fails as soon as a frame header shows it will pass it, before its payload
//! is read.

use thiserror::Error;

use super::close::CloseCode;

/// Opcode of a continuation frame.
pub const OP_CONTINUATION: u8 = 0x0;
/// Opcode of a text frame.
pub const OP_TEXT: u8 = 0x1;
/// Opcode of a binary frame.
pub const OP_BINARY: u8 = 0x2;
/// Opcode of a close frame.
pub const OP_CLOSE: u8 = 0x8;
/// Opcode of a ping frame.
pub const OP_PING: u8 = 0x9;
/// Opcode of a pong frame.
pub const OP_PONG: u8 = 0xA;
/// Largest payload of a control frame (close, ping, pong).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Appends an unmasked, final server frame header for a payload of `len` bytes, with
/// the length in its shortest form (RFC 6455 §5.2 requires the minimal encoding).
pub fn write_frame_header(opcode: u8, len: usize, out: &mut Vec<u8>) {
    out.push(0x80 | opcode);
    if len < 126 {
        out.push(len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// A whole message or control frame from the client, unmasked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message, valid UTF-8.
    Text(&'a [u8]),
    /// A binary message.
    Binary(&'a [u8]),
    /// A ping and its payload (at most 125 bytes).
    Ping(&'a [u8]),
    /// A pong and its payload.
    Pong(&'a [u8]),
    /// A close frame: its code (`None` for an empty payload) and reason.
    Close(Option<u16>, &'a str),
}

/// What the caller of [`FrameReader::feed`] wants after a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on with the input.
    Continue,
    /// Stop here; the rest of the input is left unread (see [`FrameReader::feed`]).
    Pause,
}

/// How a client broke RFC 6455. The connection must be failed with
/// [`FrameError::close_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FrameError {
    /// A client frame without a mask (§5.1).
    #[error("client frames must be masked")]
    Unmasked,
    /// RSV1–3 set, and no extension was negotiated.
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    /// Opcode 3–7 or 0xB–0xF.
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// A close, ping or pong of over 125 bytes.
    #[error("control frame of {0} bytes (at most 125)")]
    ControlTooLong(u64),
    /// A close, ping or pong without FIN.
    #[error("fragmented control frame")]
    FragmentedControl,
    /// A continuation frame with no message to continue.
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    /// A text or binary frame before the last fragment of the previous message.
    #[error("new message before the last fragment of the previous one")]
    ExpectedContinuation,
    /// A 64-bit length with its most significant bit set.
    #[error("invalid 64-bit frame length")]
    BadLength,
    /// A message over the size limit.
    #[error("message too big (limit {limit} bytes)")]
    TooBig {
        /// The limit, in bytes.
        limit: usize,
    },
    /// A text message or close reason that is not UTF-8.
    #[error("invalid UTF-8")]
    InvalidUtf8,
    /// A close frame with a 1-byte payload.
    #[error("close frame with a 1-byte payload")]
    CloseTooShort,
    /// A close code a peer must not send.
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
}

impl FrameError {
    /// The code to close the connection with: 1009 for size, 1007 for UTF-8, 1002 for
    /// everything else.
    pub fn close_code(&self) -> CloseCode {
        match self {
            FrameError::TooBig { .. } => CloseCode::TooBig,
            FrameError::InvalidUtf8 => CloseCode::InvalidPayload,
            _ => CloseCode::Protocol,
        }
    }
}

/// The frame being read, once its header is complete.
#[derive(Debug, Clone, Copy, Default)]
struct Frame {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    /// Payload bytes not read yet.
    remaining: u64,
    /// Payload bytes read so far (the mask's phase).
    read: u64,
}

/// One connection's read state. Small when idle: about 100 bytes and no heap memory.
#[derive(Debug, Default)]
pub struct FrameReader {
    /// Header bytes of a header cut by the end of a read.
    head: [u8; 14],
    head_len: u8,
    frame: Option<Frame>,
    /// Opcode of the fragmented (or cut) data message in progress, 0 when none.
    message: u8,
    /// Bytes of the data message in progress, counted against the limit.
    message_len: u64,
    /// The data message's payload so far, when it could not be read in place.
    data: Vec<u8>,
    /// Prefix of `data` known to be valid UTF-8 (text only).
    checked: usize,
    /// A control frame's payload cut by the end of a read.
    control: Vec<u8>,
    /// A close frame was read: nothing after it is.
    closed: bool,
}

impl FrameReader {
    /// A reader at the start of a connection.
    pub fn new() -> FrameReader {
        FrameReader::default()
    }

    /// Whether a close frame has been read (every later byte is ignored).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Heap bytes held (for the memory accounting of idle connections).
    pub fn heap_bytes(&self) -> usize {
        self.data.capacity() + self.control.capacity()
    }

    /// Reads frames from `input` (bytes as they came off the socket; unmasked in place)
    /// and calls `on` for every whole message and control frame, in order. `limit` is
    /// the largest message accepted, in bytes (inclusive).
    ///
    /// Returns how many bytes of `input` were used: all of them, unless `on` returned
    /// [`Flow::Pause`] (the caller keeps the rest and feeds it again later) or a close
    /// frame was read (the rest is meaningless). Partial frames are kept inside.
    pub fn feed(
        &mut self,
        input: &mut [u8],
        limit: usize,
        mut on: impl FnMut(Message<'_>) -> Flow,
    ) -> Result<usize, FrameError> {
        let mut pos = 0;
        while pos < input.len() && !self.closed {
            let frame = match self.frame {
                Some(f) => f,
                None => match self.read_header(input, &mut pos, limit)? {
                    Some(f) => f,
                    None => return Ok(input.len()),
                },
            };
            let avail = (input.len() - pos) as u64;
            let is_control = frame.opcode >= OP_CLOSE;
            // The common case: a whole unfragmented message or control frame in this
            // read. It is unmasked and delivered in place.
            if frame.read == 0 && frame.remaining <= avail && (is_control || self.message == 0) {
                let len = frame.remaining as usize;
                let payload = &mut input[pos..pos + len];
                unmask(payload, frame.mask, 0);
                pos += len;
                self.frame = None;
                if is_control {
                    let flow = self.control_frame(frame.opcode, payload, &mut on)?;
                    if flow == Flow::Pause {
                        return Ok(pos);
                    }
                } else if frame.fin {
                    self.message_len = 0;
                    let flow = match frame.opcode {
                        OP_TEXT => {
                            std::str::from_utf8(payload).map_err(|_| FrameError::InvalidUtf8)?;
                            on(Message::Text(payload))
                        }
                        _ => on(Message::Binary(payload)),
                    };
                    if flow == Flow::Pause {
                        return Ok(pos);
                    }
                } else {
                    // The first fragment of a fragmented message.
                    self.message = frame.opcode;
                    self.append(frame.opcode, payload)?;
                }
                continue;
            }
            // Part of a frame, or a fragment: copy what there is.
            let take = frame.remaining.min(avail) as usize;
            let chunk = &mut input[pos..pos + take];
            unmask(chunk, frame.mask, frame.read);
            pos += take;
            let mut f = frame;
            f.read += take as u64;
            f.remaining -= take as u64;
            if is_control {
                self.control.extend_from_slice(chunk);
            } else {
                if self.message == 0 {
                    self.message = f.opcode;
                }
                if self.data.capacity() == 0 && f.fin {
                    // A cut frame of known size: hold exactly what it needs.
                    self.data.reserve_exact((f.read + f.remaining) as usize);
                }
                self.append(self.message, chunk)?;
            }
            if f.remaining > 0 {
                self.frame = Some(f);
                continue;
            }
            self.frame = None;
            let flow = if is_control {
                let payload = std::mem::take(&mut self.control);
                let flow = self.control_frame(f.opcode, &payload, &mut on);
                flow?
            } else if f.fin {
                let payload = std::mem::take(&mut self.data);
                let opcode = std::mem::replace(&mut self.message, 0);
                self.message_len = 0;
                self.checked = 0;
                match opcode {
                    OP_TEXT => {
                        // Everything but an unfinished last character was checked.
                        std::str::from_utf8(&payload).map_err(|_| FrameError::InvalidUtf8)?;
                        on(Message::Text(&payload))
                    }
                    _ => on(Message::Binary(&payload)),
                }
            } else {
                Flow::Continue
            };
            if flow == Flow::Pause {
                return Ok(pos);
            }
        }
        Ok(pos)
    }

    /// Parses a frame header at `input[*pos..]`, completing one cut by the last read.
    /// `None` when the header is still incomplete (its bytes are kept).
    fn read_header(
        &mut self,
        input: &[u8],
        pos: &mut usize,
        limit: usize,
    ) -> Result<Option<Frame>, FrameError> {
        // The two fixed bytes first: what they break fails at once, before the rest
        // of the header (an unmasked frame must not be waited on for a mask).
        if !self.gather(input, pos, 2) {
            return Ok(None);
        }
        let (b0, b1) = (self.head[0], self.head[1]);
        if b0 & 0x70 != 0 {
            return Err(FrameError::ReservedBits);
        }
        if b1 & 0x80 == 0 {
            return Err(FrameError::Unmasked);
        }
        if !self.gather(input, pos, header_len(b1)) {
            return Ok(None);
        }
        let h = self.head;
        self.head_len = 0;
        let fin = b0 & 0x80 != 0;
        let opcode = b0 & 0x0f;
        let (len, at) = match b1 & 0x7f {
            126 => (u64::from(u16::from_be_bytes([h[2], h[3]])), 4),
            127 => {
                let l = u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]);
                if l >> 63 != 0 {
                    return Err(FrameError::BadLength);
                }
                (l, 10)
            }
            n => (u64::from(n), 2),
        };
        let mask = [h[at], h[at + 1], h[at + 2], h[at + 3]];
        match opcode {
            OP_CLOSE | OP_PING | OP_PONG => {
                if !fin {
                    return Err(FrameError::FragmentedControl);
                }
                if len > MAX_CONTROL_PAYLOAD as u64 {
                    return Err(FrameError::ControlTooLong(len));
                }
            }
            OP_TEXT | OP_BINARY | OP_CONTINUATION => {
                if opcode == OP_CONTINUATION && self.message == 0 {
                    return Err(FrameError::UnexpectedContinuation);
                }
                if opcode != OP_CONTINUATION && self.message != 0 {
                    return Err(FrameError::ExpectedContinuation);
                }
                // The limit is on the whole message: fail before reading a payload
                // that would take it past.
                if self.message_len.saturating_add(len) > limit as u64 {
                    return Err(FrameError::TooBig { limit });
                }
                self.message_len += len;
            }
            other => return Err(FrameError::ReservedOpcode(other)),
        }
        let frame = Frame {
            fin,
            opcode,
            mask,
            remaining: len,
            read: 0,
        };
        self.frame = Some(frame);
        Ok(Some(frame))
    }

    /// Copies header bytes from `input` until `head` holds `need` of them; false when
    /// the input ran out first.
    fn gather(&mut self, input: &[u8], pos: &mut usize, need: usize) -> bool {
        let have = self.head_len as usize;
        if have < need {
            let take = (need - have).min(input.len() - *pos);
            self.head[have..have + take].copy_from_slice(&input[*pos..*pos + take]);
            self.head_len += take as u8;
            *pos += take;
        }
        self.head_len as usize >= need
    }

    /// Appends a fragment of a data message, checking text as it goes so that invalid
    /// UTF-8 fails at once (a character cut at the end may be finished later).
    fn append(&mut self, opcode: u8, bytes: &[u8]) -> Result<(), FrameError> {
        self.data.extend_from_slice(bytes);
        if opcode == OP_TEXT {
            match std::str::from_utf8(&self.data[self.checked..]) {
                Ok(_) => self.checked = self.data.len(),
                Err(e) if e.error_len().is_some() => return Err(FrameError::InvalidUtf8),
                Err(e) => self.checked += e.valid_up_to(),
            }
        }
        Ok(())
    }

    fn control_frame(
        &mut self,
        opcode: u8,
        payload: &[u8],
        on: &mut impl FnMut(Message<'_>) -> Flow,
    ) -> Result<Flow, FrameError> {
        Ok(match opcode {
            OP_PING => on(Message::Ping(payload)),
            OP_PONG => on(Message::Pong(payload)),
            _ => {
                let (code, reason) = match payload.len() {
                    0 => (None, ""),
                    1 => return Err(FrameError::CloseTooShort),
                    _ => {
                        let code = u16::from_be_bytes([payload[0], payload[1]]);
                        if !CloseCode::is_valid_to_receive(code) {
                            return Err(FrameError::InvalidCloseCode(code));
                        }
                        let reason = std::str::from_utf8(&payload[2..])
                            .map_err(|_| FrameError::InvalidUtf8)?;
                        (Some(code), reason)
                    }
                };
                self.closed = true;
                on(Message::Close(code, reason));
                Flow::Pause
            }
        })
    }
}

/// Length of a client frame header whose second byte is `b1` (masked: +4).
fn header_len(b1: u8) -> usize {
    match b1 & 0x7f {
        126 => 8,
        127 => 14,
        _ => 6,
    }
}

/// XORs `bytes` with `mask`, the first byte being payload byte number `offset`.
fn unmask(bytes: &mut [u8], mask: [u8; 4], offset: u64) {
    let phase = (offset % 4) as usize;
    let mut m = [0u8; 4];
    for (i, b) in m.iter_mut().enumerate() {
        *b = mask[(phase + i) % 4];
    }
    let word = u32::from_ne_bytes(m);
    let mut chunks = bytes.chunks_exact_mut(4);
    for c in &mut chunks {
        let v = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]) ^ word;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= m[i];
    }
}

/// Encodes a masked client frame (for tests and tools that play the client).
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(if fin { 0x80 } else { 0 } | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    unmask(&mut out[start..], mask, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Eq)]
    enum Got {
        Text(String),
        Binary(Vec<u8>),
        Ping(Vec<u8>),
        Pong(Vec<u8>),
        Close(Option<u16>, String),
    }

    fn collect(r: &mut FrameReader, bytes: &[u8], limit: usize) -> Result<Vec<Got>, FrameError> {
        let mut input = bytes.to_vec();
        let mut out = Vec::new();
        r.feed(&mut input, limit, |m| {
            out.push(match m {
                Message::Text(t) => Got::Text(String::from_utf8(t.to_vec()).unwrap()),
                Message::Binary(b) => Got::Binary(b.to_vec()),
                Message::Ping(p) => Got::Ping(p.to_vec()),
                Message::Pong(p) => Got::Pong(p.to_vec()),
                Message::Close(c, r) => Got::Close(c, r.to_string()),
            });
            Flow::Continue
        })?;
        Ok(out)
    }

    const M: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

    fn text(s: &str) -> Vec<u8> {
        client_frame(true, OP_TEXT, s.as_bytes(), M)
    }

    #[test]
    fn whole_and_byte_by_byte_give_the_same_messages() {
        let mut wire = text("hello");
        wire.extend(client_frame(true, OP_PING, b"p", M));
        wire.extend(client_frame(true, OP_BINARY, &vec![7u8; 300], M));
        wire.extend(client_frame(true, OP_BINARY, &vec![9u8; 70_000], M));
        wire.extend(client_frame(false, OP_TEXT, "héll".as_bytes(), M));
        wire.extend(client_frame(true, OP_PONG, b"", M));
        wire.extend(client_frame(true, OP_CONTINUATION, "o".as_bytes(), M));
        let want = vec![
            Got::Text("hello".into()),
            Got::Ping(b"p".to_vec()),
            Got::Binary(vec![7; 300]),
            Got::Binary(vec![9; 70_000]),
            Got::Pong(vec![]),
            Got::Text("héllo".into()),
        ];
        let mut r = FrameReader::new();
        assert_eq!(collect(&mut r, &wire, 1 << 20).unwrap(), want);
        let mut r = FrameReader::new();
        let mut got = Vec::new();
        for b in &wire {
            got.extend(collect(&mut r, &[*b], 1 << 20).unwrap());
        }
        assert_eq!(got, want);
        assert_eq!(r.heap_bytes(), 0, "nothing held once every message is out");
    }

    #[test]
    fn length_encodings_and_the_limit_is_inclusive() {
        for len in [0usize, 125, 126, 127, 65_535, 65_536] {
            let mut r = FrameReader::new();
            let got = collect(
                &mut r,
                &client_frame(true, OP_BINARY, &vec![1; len], M),
                65_536,
            );
            assert_eq!(got.unwrap(), vec![Got::Binary(vec![1; len])], "{len}");
        }
        let mut r = FrameReader::new();
        let over = client_frame(true, OP_BINARY, &vec![1; 65_537], M);
        // Only the header is needed to refuse it.
        assert_eq!(
            collect(&mut r, &over[..14], 65_536),
            Err(FrameError::TooBig { limit: 65_536 })
        );
    }

    #[test]
    fn the_limit_is_on_the_reassembled_message() {
        let mut r = FrameReader::new();
        let mut wire = client_frame(false, OP_TEXT, &[b'a'; 40_000], M);
        wire.extend(client_frame(true, OP_CONTINUATION, &[b'a'; 40_000], M));
        assert_eq!(
            collect(&mut r, &wire, 65_536),
            Err(FrameError::TooBig { limit: 65_536 })
        );
        // Endless fragments fail as soon as the total passes the limit.
        let mut r = FrameReader::new();
        let mut first = true;
        let mut sent = 0usize;
        let err = loop {
            let op = if first { OP_BINARY } else { OP_CONTINUATION };
            first = false;
            match collect(&mut r, &client_frame(false, op, &[0; 1000], M), 65_536) {
                Ok(_) => sent += 1000,
                Err(e) => break e,
            }
        };
        assert_eq!(err, FrameError::TooBig { limit: 65_536 });
        assert_eq!(sent, 65_000);
        assert!(r.heap_bytes() <= 2 * 65_536);
    }

    #[test]
    fn protocol_errors() {
        let unmasked = [0x81u8, 0x01, b'a'];
        let cases: Vec<(Vec<u8>, FrameError)> = vec![
            (unmasked.to_vec(), FrameError::Unmasked),
            (
                {
                    let mut f = text("a");
                    f[0] |= 0x40;
                    f
                },
                FrameError::ReservedBits,
            ),
            (
                client_frame(true, 0x3, b"", M),
                FrameError::ReservedOpcode(3),
            ),
            (
                client_frame(true, 0xB, b"", M),
                FrameError::ReservedOpcode(0xB),
            ),
            (
                client_frame(true, OP_PING, &[0; 126], M),
                FrameError::ControlTooLong(126),
            ),
            (
                client_frame(false, OP_PING, b"", M),
                FrameError::FragmentedControl,
            ),
            (
                client_frame(true, OP_CONTINUATION, b"x", M),
                FrameError::UnexpectedContinuation,
            ),
            (
                {
                    let mut f = client_frame(false, OP_TEXT, b"a", M);
                    f.extend(text("b"));
                    f
                },
                FrameError::ExpectedContinuation,
            ),
            (
                client_frame(true, OP_TEXT, &[0xff], M),
                FrameError::InvalidUtf8,
            ),
            (
                client_frame(true, OP_CLOSE, &[3], M),
                FrameError::CloseTooShort,
            ),
            (
                client_frame(true, OP_CLOSE, &1005u16.to_be_bytes(), M),
                FrameError::InvalidCloseCode(1005),
            ),
            (
                {
                    let mut p = 1000u16.to_be_bytes().to_vec();
                    p.push(0xff);
                    client_frame(true, OP_CLOSE, &p, M)
                },
                FrameError::InvalidUtf8,
            ),
        ];
        for (wire, want) in cases {
            let mut r = FrameReader::new();
            assert_eq!(collect(&mut r, &wire, 1024), Err(want), "{want}");
        }
        assert_eq!(FrameError::Unmasked.close_code(), CloseCode::Protocol);
        assert_eq!(
            FrameError::InvalidUtf8.close_code(),
            CloseCode::InvalidPayload
        );
        assert_eq!(
            FrameError::TooBig { limit: 1 }.close_code(),
            CloseCode::TooBig
        );
    }

    #[test]
    fn invalid_utf8_fails_fast_across_fragments_and_split_characters_pass() {
        // "é" split between two fragments is fine.
        let mut r = FrameReader::new();
        let mut wire = client_frame(false, OP_TEXT, &[0xc3], M);
        wire.extend(client_frame(true, OP_CONTINUATION, &[0xa9], M));
        assert_eq!(
            collect(&mut r, &wire, 1024).unwrap(),
            vec![Got::Text("é".into())]
        );
        // A bad byte in the first fragment fails before the message ends.
        let mut r = FrameReader::new();
        let first = client_frame(false, OP_TEXT, &[b'a', 0xff], M);
        assert_eq!(collect(&mut r, &first, 1024), Err(FrameError::InvalidUtf8));
        // A message that ends inside a character is invalid.
        let mut r = FrameReader::new();
        let mut wire = client_frame(false, OP_TEXT, b"a", M);
        wire.extend(client_frame(true, OP_CONTINUATION, &[0xe2, 0x82], M));
        assert_eq!(collect(&mut r, &wire, 1024), Err(FrameError::InvalidUtf8));
    }

    #[test]
    fn close_stops_reading_and_pause_leaves_the_rest() {
        let mut r = FrameReader::new();
        let mut close = 1000u16.to_be_bytes().to_vec();
        close.extend_from_slice(b"bye");
        let mut wire = client_frame(true, OP_CLOSE, &close, M);
        let close_len = wire.len();
        wire.extend(text("after"));
        let mut input = wire.clone();
        let mut got = Vec::new();
        let used = r
            .feed(&mut input, 1024, |m| {
                got.push(format!("{m:?}"));
                Flow::Continue
            })
            .unwrap();
        assert_eq!(used, close_len);
        assert_eq!(
            got,
            vec![format!("{:?}", Message::Close(Some(1000), "bye"))]
        );
        assert!(r.is_closed());

        let mut r = FrameReader::new();
        let mut wire = text("one");
        let first = wire.len();
        wire.extend(text("two"));
        let mut input = wire.clone();
        let used = r.feed(&mut input, 1024, |_| Flow::Pause).unwrap();
        assert_eq!(used, first);
        let mut rest = wire[first..].to_vec();
        let mut got = Vec::new();
        r.feed(&mut rest, 1024, |m| {
            if let Message::Text(t) = m {
                got.push(t.to_vec());
            }
            Flow::Continue
        })
        .unwrap();
        assert_eq!(got, vec![b"two".to_vec()]);
    }

    #[test]
    fn control_frames_between_fragments() {
        let mut r = FrameReader::new();
        let mut wire = client_frame(false, OP_TEXT, b"fr", M);
        wire.extend(client_frame(true, OP_PING, b"x", M));
        wire.extend(client_frame(true, OP_CONTINUATION, b"ag", M));
        assert_eq!(
            collect(&mut r, &wire, 1024).unwrap(),
            vec![Got::Ping(b"x".to_vec()), Got::Text("frag".into())]
        );
    }
}
