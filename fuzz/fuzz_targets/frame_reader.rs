//! WebSocket frames as the server reads them: `wire::frame::FrameReader` fed
//! arbitrary client bytes, whole and cut into arbitrary pieces. Both must give the
//! same messages and the same error (a read boundary changes nothing), every message
//! must obey the size limit, text must be UTF-8, and the reader must never hold more
//! than a message's worth of memory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickcast::wire::frame::{Flow, FrameError, FrameReader, Message, MAX_CONTROL_PAYLOAD};

#[derive(Debug, PartialEq, Eq)]
enum Got {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
}

fn record(out: &mut Vec<Got>, m: Message<'_>, limit: usize) -> Flow {
    let got = match m {
        Message::Text(t) => {
            assert!(std::str::from_utf8(t).is_ok(), "text is UTF-8");
            Got::Text(t.to_vec())
        }
        Message::Binary(b) => Got::Binary(b.to_vec()),
        Message::Ping(p) => Got::Ping(p.to_vec()),
        Message::Pong(p) => Got::Pong(p.to_vec()),
        Message::Close(code, reason) => Got::Close(code, reason.to_string()),
    };
    match &got {
        Got::Text(p) | Got::Binary(p) => assert!(p.len() <= limit, "message over the limit"),
        Got::Ping(p) | Got::Pong(p) => assert!(p.len() <= MAX_CONTROL_PAYLOAD),
        Got::Close(_, r) => assert!(r.len() <= MAX_CONTROL_PAYLOAD - 2),
    }
    out.push(got);
    Flow::Continue
}

fn run(input: &[u8], cuts: &[usize], limit: usize) -> (Vec<Got>, Result<(), FrameError>) {
    let mut reader = FrameReader::new();
    let mut got = Vec::new();
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&input.len())) {
        let mut piece = input[start..end].to_vec();
        match reader.feed(&mut piece, limit, |m| record(&mut got, m, limit)) {
            Ok(used) => {
                // Only a close frame stops the reader before the end of its input.
                assert!(used == piece.len() || reader.is_closed());
            }
            Err(e) => return (got, Err(e)),
        }
        // What is kept is at most the message in progress and one control frame.
        assert!(reader.heap_bytes() <= 2 * limit + 2 * MAX_CONTROL_PAYLOAD + 64);
        if reader.is_closed() {
            break;
        }
        start = end;
    }
    (got, Ok(()))
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    // The first two bytes choose the limit (1..=65,536), the third how to cut.
    let limit = usize::from(u16::from_le_bytes([data[0], data[1]])) + 1;
    let mut seed = u32::from(data[2]) | 1;
    let input = &data[3..];
    let mut cuts = Vec::new();
    let mut at = 0usize;
    while !input.is_empty() {
        // xorshift: reproducible cut points of 1 to 64 bytes apart.
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        at += 1 + (seed % 64) as usize;
        if at >= input.len() {
            break;
        }
        cuts.push(at);
    }
    let whole = run(input, &[], limit);
    let pieces = run(input, &cuts, limit);
    assert_eq!(whole, pieces, "the same bytes, cut differently");
});
