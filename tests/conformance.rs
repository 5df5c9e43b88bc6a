//! RFC 6455 conformance, over a raw socket, against the echo route (`echo_path`), which
//! is served by the same connection code as `/ws`: the same frame reader, outbox,
//! write path and limits. The families follow the Autobahn test suite's: framing,
//! pings and pongs, reserved bits, reserved opcodes, fragmentation, UTF-8 and close
//! handling, plus the size limit. Every case asserts the exact frames the RFC asks
//! for — the echo, the close code, or the connection failed — and that the server
//! still serves a new connection afterwards. `docs/protocol.md` (Conformance) sums the
//! results up.

mod common;

use std::net::SocketAddr;

use common::raw::{Frame, RawWs, MASK};
use common::*;
use tickcast::server::ServerHandle;
use tickcast::wire::frame::{
    client_frame, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT,
};

/// The largest message the test server takes (`max_control_message_bytes`).
const LIMIT: usize = 65_536;

/// A server with the echo route on `/echo`. The input budget is raised so that a
/// family's many large messages on one connection are not throttled (throttling is
/// `tests/abuse.rs`'s subject); every other limit is the default.
fn server() -> ServerHandle {
    let mut cfg = config(2, 100);
    cfg.echo_path = Some("/echo".into());
    cfg.max_control_message_bytes = LIMIT;
    cfg.limits.max_input_bytes_per_sec = 64 << 20;
    start_server(cfg)
}

async fn echo(addr: SocketAddr) -> RawWs {
    RawWs::connect(addr, "/echo").await
}

fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    client_frame(fin, opcode, payload, MASK)
}

fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

/// Asserts that the next frame is exactly one final frame of `opcode` and `payload`.
async fn expect(ws: &mut RawWs, opcode: u8, payload: &[u8], case: &str) {
    let f = ws.frame().await;
    assert_eq!(
        (f.fin, f.opcode, f.payload.len()),
        (true, opcode, payload.len()),
        "{case}: frame kind and length"
    );
    assert!(f.payload == payload, "{case}: payload differs");
}

/// Asserts that the server closes with `code` next, then ends the TCP connection.
async fn expect_close(ws: &mut RawWs, code: u16, case: &str) {
    let f: Frame = ws.frame().await;
    assert_eq!(
        f.opcode, OP_CLOSE,
        "{case}: expected a close frame, got {f:?}"
    );
    assert_eq!(f.close().map(|(c, _)| c), Some(code), "{case}: close code");
    ws.expect_end().await;
}

/// The connection still echoes, and closes cleanly on a 1000.
async fn finish_ok(ws: &mut RawWs, case: &str) {
    ws.send(&frame(true, OP_TEXT, b"still here")).await;
    expect(ws, OP_TEXT, b"still here", case).await;
    ws.send(&frame(true, OP_CLOSE, &close_payload(1000, b"")))
        .await;
    expect_close(ws, 1000, case).await;
}

/// A new connection is served: the server came through the case unharmed.
async fn still_serving(addr: SocketAddr, case: &str) {
    let mut ws = echo(addr).await;
    ws.send(&frame(true, OP_BINARY, case.as_bytes())).await;
    expect(&mut ws, OP_BINARY, case.as_bytes(), case).await;
}

/// A case that must fail the connection with `code`: `wire` is sent in one write, then
/// the frames answered before the failure, then the close.
async fn fails(addr: SocketAddr, wire: &[u8], before: &[(u8, &[u8])], code: u16, case: &str) {
    let mut ws = echo(addr).await;
    let _ = ws.try_send(wire).await;
    for (op, payload) in before {
        expect(&mut ws, *op, payload, case).await;
    }
    expect_close(&mut ws, code, case).await;
    still_serving(addr, case).await;
}

// ---- 1. framing ----------------------------------------------------------------------

/// Text and binary messages of every length encoding (7-bit: 0, 125; 16-bit: 126,
/// 127, 65,535; 64-bit: 65,536), sent whole and in 1-byte writes, come back
/// unchanged; so do messages of exactly the size limit, and one over it is refused
/// with 1009 before its payload is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing() {
    let server = server();
    let addr = server.local_addr();
    for len in [0usize, 125, 126, 127, 65_535, 65_536] {
        for (op, name) in [(OP_TEXT, "text"), (OP_BINARY, "binary")] {
            let payload: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            for chunk in [usize::MAX, 1] {
                let case = format!("{name} of {len} bytes in writes of {chunk}");
                let mut ws = echo(addr).await;
                ws.send_chunked(&frame(true, op, &payload), chunk).await;
                expect(&mut ws, op, &payload, &case).await;
                finish_ok(&mut ws, &case).await;
                still_serving(addr, &case).await;
            }
        }
    }
    // Several messages in one write are echoed in order.
    let mut ws = echo(addr).await;
    let mut wire = frame(true, OP_TEXT, b"one");
    wire.extend(frame(true, OP_BINARY, &[2; 300]));
    wire.extend(frame(true, OP_TEXT, b"three"));
    ws.send(&wire).await;
    expect(&mut ws, OP_TEXT, b"one", "batch").await;
    expect(&mut ws, OP_BINARY, &[2; 300], "batch").await;
    expect(&mut ws, OP_TEXT, b"three", "batch").await;
    finish_ok(&mut ws, "batch").await;

    // §5.1: a client frame without a mask fails the connection.
    fails(addr, &[0x81, 0x02, b'h', b'i'], &[], 1002, "unmasked").await;
    // §5.2: a 64-bit length with its most significant bit set.
    let mut bad = vec![0x82, 0x80 | 127];
    bad.extend_from_slice(&(1u64 << 63).to_be_bytes());
    bad.extend_from_slice(&MASK);
    fails(addr, &bad, &[], 1002, "64-bit length with the top bit").await;

    // The size limit is inclusive and counts every fragment.
    let over = frame(true, OP_BINARY, &vec![0; LIMIT + 1]);
    // Only the header is sent: the refusal must not wait for the payload.
    fails(addr, &over[..14], &[], 1009, "one byte over the limit").await;
    let mut ws = echo(addr).await;
    let mut wire = frame(false, OP_TEXT, &[b'x'; LIMIT / 2]);
    wire.extend(frame(true, OP_CONTINUATION, &[b'x'; LIMIT / 2]));
    ws.send(&wire).await;
    expect(
        &mut ws,
        OP_TEXT,
        &[b'x'; LIMIT],
        "fragments adding up to the limit",
    )
    .await;
    finish_ok(&mut ws, "fragments adding up to the limit").await;
    let mut wire = frame(false, OP_TEXT, &[b'x'; LIMIT / 2]);
    wire.extend(frame(true, OP_CONTINUATION, &[b'x'; LIMIT / 2 + 1]));
    fails(addr, &wire, &[], 1009, "fragments one byte over the limit").await;
    server.shutdown();
}

// ---- 2. pings and pongs ---------------------------------------------------------------

/// §5.5.2–5.5.3: a ping is answered by a pong with its payload (empty, text, binary,
/// 125 bytes, sent in 1-byte writes); an unsolicited pong is ignored; of many pings
/// sent at once, at least the latest is answered; a ping of 126 bytes fails the
/// connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_and_pongs() {
    let server = server();
    let addr = server.local_addr();
    let binary: Vec<u8> = (0..=255u8).cycle().take(125).collect();
    let cases: [(&str, &[u8], usize); 5] = [
        ("ping without payload", b"", usize::MAX),
        ("ping with a text payload", b"Hello, world!", usize::MAX),
        (
            "ping with a binary payload",
            &[0x00, 0xff, 0xfe, 0xfd, 0xfc],
            usize::MAX,
        ),
        ("ping of 125 bytes", &binary, usize::MAX),
        ("ping of 125 bytes in 1-byte writes", &binary, 1),
    ];
    for (case, payload, chunk) in cases {
        let mut ws = echo(addr).await;
        ws.send_chunked(&frame(true, OP_PING, payload), chunk).await;
        expect(&mut ws, OP_PONG, payload, case).await;
        finish_ok(&mut ws, case).await;
        still_serving(addr, case).await;
    }

    // An unsolicited pong gets nothing; the ping after it gets its own pong.
    let mut ws = echo(addr).await;
    let mut wire = frame(true, OP_PONG, b"unsolicited");
    wire.extend(frame(true, OP_PING, b"solicited"));
    ws.send(&wire).await;
    expect(
        &mut ws,
        OP_PONG,
        b"solicited",
        "unsolicited pong, then a ping",
    )
    .await;
    finish_ok(&mut ws, "unsolicited pong").await;
    // An unsolicited pong of 125 bytes, alone.
    let mut ws = echo(addr).await;
    ws.send(&frame(true, OP_PONG, &binary)).await;
    finish_ok(&mut ws, "unsolicited pong alone").await;

    // Ten pings in one write: the pongs that come back are for pings sent, in order,
    // and the last is for the last ping (§5.5.3 allows answering only the latest).
    let mut ws = echo(addr).await;
    let mut wire = Vec::new();
    for i in 0..10u8 {
        wire.extend(frame(true, OP_PING, &[b'0' + i; 10]));
    }
    ws.send(&wire).await;
    let mut last = None;
    while last != Some(b'9') {
        let f = ws.frame().await;
        assert_eq!(f.opcode, OP_PONG, "ten pings: {f:?}");
        let i = f.payload[0];
        assert_eq!(f.payload, vec![i; 10]);
        assert!(last.is_none_or(|l| i > l), "pongs in order");
        last = Some(i);
    }
    finish_ok(&mut ws, "ten pings").await;
    // Ten pings one at a time, each waited for: ten pongs.
    let mut ws = echo(addr).await;
    for i in 0..10u8 {
        ws.send(&frame(true, OP_PING, &[i; 3])).await;
        expect(&mut ws, OP_PONG, &[i; 3], "ping after ping").await;
    }
    finish_ok(&mut ws, "ping after ping").await;

    fails(
        addr,
        &frame(true, OP_PING, &[0; 126]),
        &[],
        1002,
        "ping of 126 bytes",
    )
    .await;
    fails(
        addr,
        &frame(true, OP_PONG, &[0; 126]),
        &[],
        1002,
        "pong of 126 bytes",
    )
    .await;
    server.shutdown();
}

// ---- 3. reserved bits ------------------------------------------------------------------

/// §5.2: RSV1–3 need a negotiated extension (none is offered), so any of them fails
/// the connection; what was valid before is answered first, and nothing after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_bits() {
    let server = server();
    let addr = server.local_addr();
    let with_rsv = |opcode: u8, payload: &[u8], rsv: u8| {
        let mut f = frame(true, opcode, payload);
        f[0] |= rsv << 4;
        f
    };
    for rsv in 1..=7u8 {
        for (op, name) in [
            (OP_TEXT, "text"),
            (OP_BINARY, "binary"),
            (OP_PING, "ping"),
            (OP_CLOSE, "close"),
        ] {
            let case = format!("{name} with RSV {rsv}");
            let payload: &[u8] = if op == OP_CLOSE {
                &[0x03, 0xe8]
            } else {
                b"rsv"
            };
            // Alone.
            fails(addr, &with_rsv(op, payload, rsv), &[], 1002, &case).await;
        }
        // After a valid message and before a ping, in one write and in 1-byte writes.
        let case = format!("text, text with RSV {rsv}, ping");
        let mut wire = frame(true, OP_TEXT, b"valid");
        wire.extend(with_rsv(OP_TEXT, b"bad", rsv));
        wire.extend(frame(true, OP_PING, b"never answered"));
        fails(addr, &wire, &[(OP_TEXT, b"valid")], 1002, &case).await;
        let mut ws = echo(addr).await;
        ws.send_chunked(&wire, 1).await;
        expect(&mut ws, OP_TEXT, b"valid", &case).await;
        expect_close(&mut ws, 1002, &case).await;
        still_serving(addr, &case).await;
    }
    server.shutdown();
}

// ---- 4. reserved opcodes --------------------------------------------------------------

/// §5.2: opcodes 3–7 (data) and 0xB–0xF (control) are reserved: any of them fails the
/// connection, with or without a payload, after what was valid before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_opcodes() {
    let server = server();
    let addr = server.local_addr();
    for op in (3..=7u8).chain(0xB..=0xF) {
        let case = format!("opcode {op:#x}");
        fails(addr, &frame(true, op, b""), &[], 1002, &case).await;
        let mut wire = frame(true, OP_TEXT, b"valid");
        wire.extend(frame(true, op, b"reserved"));
        wire.extend(frame(true, OP_PING, b"never answered"));
        fails(addr, &wire, &[(OP_TEXT, b"valid")], 1002, &case).await;
    }
    server.shutdown();
}

// ---- 5. fragmentation ------------------------------------------------------------------

/// §5.4–5.5: fragmented messages are reassembled, with control frames (and empty
/// fragments) between fragments answered at once; fragmented control frames, a
/// continuation with nothing to continue, and a new message before the last fragment
/// fail the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragmentation() {
    let server = server();
    let addr = server.local_addr();

    fails(
        addr,
        &frame(false, OP_PING, b"frag"),
        &[],
        1002,
        "fragmented ping",
    )
    .await;
    fails(
        addr,
        &frame(false, OP_PONG, b"frag"),
        &[],
        1002,
        "fragmented pong",
    )
    .await;
    fails(
        addr,
        &frame(false, OP_CLOSE, &[0x03, 0xe8]),
        &[],
        1002,
        "fragmented close",
    )
    .await;
    let mut wire = frame(false, OP_PING, b"fr");
    wire.extend(frame(true, OP_CONTINUATION, b"ag"));
    fails(addr, &wire, &[], 1002, "ping in two fragments").await;

    // Text and binary in two fragments, in one write and frame by frame.
    for (op, name) in [(OP_TEXT, "text"), (OP_BINARY, "binary")] {
        let case = format!("{name} in two fragments");
        let mut ws = echo(addr).await;
        let mut wire = frame(false, op, b"fragment1");
        wire.extend(frame(true, OP_CONTINUATION, b"fragment2"));
        ws.send(&wire).await;
        expect(&mut ws, op, b"fragment1fragment2", &case).await;
        ws.send(&frame(false, op, b"fragment1")).await;
        ws.send(&frame(true, OP_CONTINUATION, b"fragment2")).await;
        expect(&mut ws, op, b"fragment1fragment2", &case).await;
        finish_ok(&mut ws, &case).await;
        still_serving(addr, &case).await;
    }

    // A ping (and an unsolicited pong) between fragments is answered before the
    // message, which still arrives whole; in one write, frame by frame, and in 1-byte
    // writes.
    let mut wire = frame(false, OP_TEXT, b"fragment1");
    wire.extend(frame(true, OP_PING, b"between"));
    wire.extend(frame(true, OP_PONG, b"unsolicited"));
    wire.extend(frame(false, OP_CONTINUATION, b"fragment2"));
    wire.extend(frame(true, OP_CONTINUATION, b"fragment3"));
    for chunk in [usize::MAX, 1] {
        let case = format!("ping between fragments, writes of {chunk}");
        let mut ws = echo(addr).await;
        ws.send_chunked(&wire, chunk).await;
        expect(&mut ws, OP_PONG, b"between", &case).await;
        expect(&mut ws, OP_TEXT, b"fragment1fragment2fragment3", &case).await;
        finish_ok(&mut ws, &case).await;
        still_serving(addr, &case).await;
    }
    // Frame by frame, each ping answered while the message is still open.
    let mut ws = echo(addr).await;
    ws.send(&frame(false, OP_TEXT, b"a")).await;
    for i in 0..5u8 {
        ws.send(&frame(true, OP_PING, &[i])).await;
        expect(&mut ws, OP_PONG, &[i], "pings while a message is open").await;
        ws.send(&frame(false, OP_CONTINUATION, b"b")).await;
    }
    ws.send(&frame(true, OP_CONTINUATION, b"c")).await;
    expect(
        &mut ws,
        OP_TEXT,
        b"abbbbbc",
        "pings while a message is open",
    )
    .await;
    finish_ok(&mut ws, "pings while a message is open").await;

    // Empty fragments, and a message of nothing but empty fragments.
    let mut ws = echo(addr).await;
    let mut wire = frame(false, OP_TEXT, b"");
    wire.extend(frame(false, OP_CONTINUATION, b"middle"));
    wire.extend(frame(true, OP_CONTINUATION, b""));
    wire.extend(frame(false, OP_BINARY, b""));
    wire.extend(frame(false, OP_CONTINUATION, b""));
    wire.extend(frame(true, OP_CONTINUATION, b""));
    ws.send(&wire).await;
    expect(&mut ws, OP_TEXT, b"middle", "empty fragments").await;
    expect(&mut ws, OP_BINARY, b"", "only empty fragments").await;
    finish_ok(&mut ws, "empty fragments").await;

    // A thousand fragments of one byte.
    let mut ws = echo(addr).await;
    let mut wire = frame(false, OP_BINARY, &[0]);
    for i in 1..999u32 {
        wire.extend(frame(false, OP_CONTINUATION, &[i as u8]));
    }
    wire.extend(frame(true, OP_CONTINUATION, &[231]));
    ws.send(&wire).await;
    let want: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
    expect(&mut ws, OP_BINARY, &want, "a thousand fragments").await;
    finish_ok(&mut ws, "a thousand fragments").await;

    // Continuations with nothing to continue.
    for fin in [true, false] {
        let case = format!("continuation (fin {fin}) without a message");
        fails(
            addr,
            &frame(fin, OP_CONTINUATION, b"orphan"),
            &[],
            1002,
            &case,
        )
        .await;
        let mut wire = frame(true, OP_TEXT, b"whole");
        wire.extend(frame(fin, OP_CONTINUATION, b"orphan"));
        fails(addr, &wire, &[(OP_TEXT, b"whole")], 1002, &case).await;
    }
    // A new message before the last fragment of the previous one.
    for op in [OP_TEXT, OP_BINARY] {
        let mut wire = frame(false, OP_TEXT, b"first");
        wire.extend(frame(true, op, b"second"));
        fails(
            addr,
            &wire,
            &[],
            1002,
            "new message inside a fragmented one",
        )
        .await;
    }
    server.shutdown();
}

// ---- 6. UTF-8 ---------------------------------------------------------------------------

/// Valid UTF-8 that a careless validator refuses: boundaries of every length, the
/// largest code point, noncharacters (valid UTF-8), the first and last around the
/// surrogates.
const VALID: &[&[u8]] = &[
    "κόσμε".as_bytes(),
    b"\x00",
    b"\xc2\x80",
    b"\xe0\xa0\x80",
    b"\xf0\x90\x80\x80",
    b"\x7f",
    b"\xdf\xbf",
    b"\xef\xbf\xbf",
    b"\xf4\x8f\xbf\xbf",
    b"\xed\x9f\xbf",
    b"\xee\x80\x80",
    b"\xef\xbf\xbd",
    b"\xef\xbf\xbe",
    "Hello-µ@ßöäüàá-UTF-8!! 😀 ∮ E⋅da = Q".as_bytes(),
];

/// Invalid UTF-8: lone continuation bytes, starts without continuations, overlong
/// forms, surrogates (alone and paired), code points past U+10FFFF, 5- and 6-byte
/// forms, 0xFE and 0xFF, and sequences cut at the end of the message.
const INVALID: &[&[u8]] = &[
    b"\x80",
    b"\xbf",
    b"\x80\xbf\x80",
    b"\xc0 ",
    b"\xe0 ",
    b"\xf0 ",
    b"\xc0\x80",
    b"\xc1\xbf",
    b"\xe0\x80\x80",
    b"\xe0\x9f\xbf",
    b"\xf0\x80\x80\x80",
    b"\xf0\x8f\xbf\xbf",
    b"\xed\xa0\x80",
    b"\xed\xbf\xbf",
    b"\xed\xa0\x80\xed\xb0\x80",
    b"\xf4\x90\x80\x80",
    b"\xf5\x80\x80\x80",
    b"\xf8\x88\x80\x80\x80",
    b"\xfc\x84\x80\x80\x80\x80",
    b"\xfe",
    b"\xff",
    b"\xfe\xfe\xff\xff",
    b"ab\xe2\x82",
    b"ab\xf0\x9f\x98",
    b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
];

/// §8.1: text messages (and close reasons) must be UTF-8. Valid text comes back whole
/// in one frame, in 1-byte writes and in one-byte fragments (characters split across
/// fragments); invalid text fails the connection with 1007 in each of those forms,
/// and as soon as the bad byte arrives: before the message ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn utf8() {
    let server = server();
    let addr = server.local_addr();
    let per_byte_fragments = |text: &[u8]| {
        let mut wire = Vec::new();
        let n = text.len().max(1);
        for i in 0..n {
            let op = if i == 0 { OP_TEXT } else { OP_CONTINUATION };
            let byte = text.get(i..i + 1).unwrap_or(b"");
            wire.extend(frame(i + 1 == n, op, byte));
        }
        wire
    };
    for (i, text) in VALID.iter().enumerate() {
        let case = format!("valid UTF-8 #{i}");
        let mut ws = echo(addr).await;
        ws.send(&frame(true, OP_TEXT, text)).await;
        expect(&mut ws, OP_TEXT, text, &case).await;
        ws.send_chunked(&frame(true, OP_TEXT, text), 1).await;
        expect(&mut ws, OP_TEXT, text, &case).await;
        ws.send(&per_byte_fragments(text)).await;
        expect(&mut ws, OP_TEXT, text, &case).await;
        finish_ok(&mut ws, &case).await;
        still_serving(addr, &case).await;
    }
    for (i, text) in INVALID.iter().enumerate() {
        let case = format!("invalid UTF-8 #{i}");
        fails(addr, &frame(true, OP_TEXT, text), &[], 1007, &case).await;
        fails(addr, &per_byte_fragments(text), &[], 1007, &case).await;
        let mut ws = echo(addr).await;
        ws.send_chunked(&frame(true, OP_TEXT, text), 1).await;
        expect_close(&mut ws, 1007, &case).await;
        // Binary messages are not text: the same bytes are echoed.
        let mut ws = echo(addr).await;
        ws.send(&frame(true, OP_BINARY, text)).await;
        expect(&mut ws, OP_BINARY, text, &case).await;
        finish_ok(&mut ws, &case).await;
    }

    // Fail fast: the message is never finished, yet the bad byte closes it.
    let mut ws = echo(addr).await;
    ws.send(&frame(false, OP_TEXT, "κόσμε".as_bytes())).await;
    ws.send(&frame(false, OP_CONTINUATION, b"\xed\xa0\x80"))
        .await;
    expect_close(&mut ws, 1007, "fail fast: bad fragment").await;
    // In one frame, cut after the bad bytes (its length says 1,000 bytes).
    let mut text = "κόσμε".as_bytes().to_vec();
    text.extend_from_slice(b"\xf4\x90\x80\x80");
    text.resize(1000, b'a');
    let wire = frame(true, OP_TEXT, &text);
    let cut = wire.len() - (1000 - "κόσμε".len() - 4);
    let mut ws = echo(addr).await;
    ws.send(&wire[..cut]).await;
    expect_close(&mut ws, 1007, "fail fast: inside a frame").await;
    // A character split across fragments is not a failure until the message ends.
    let mut ws = echo(addr).await;
    ws.send(&frame(false, OP_TEXT, b"\xe2\x82")).await;
    ws.send(&frame(true, OP_PING, b"still open")).await;
    expect(&mut ws, OP_PONG, b"still open", "split character").await;
    ws.send(&frame(true, OP_CONTINUATION, b"\xac")).await;
    expect(&mut ws, OP_TEXT, "€".as_bytes(), "split character").await;
    finish_ok(&mut ws, "split character").await;
    still_serving(addr, "utf-8").await;
    server.shutdown();
}

// ---- 7. close handling ----------------------------------------------------------------

/// §5.5.1, §7.4: every code a peer may send is echoed back and the server ends the
/// connection; codes it may not send, a 1-byte payload, a reason that is not UTF-8 or
/// a close frame over 125 bytes fail it; after a close nothing is read or answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_handling() {
    let server = server();
    let addr = server.local_addr();
    let close = |code: u16, reason: &[u8]| frame(true, OP_CLOSE, &close_payload(code, reason));

    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
        4000, 4999,
    ] {
        let case = format!("close {code}");
        let mut ws = echo(addr).await;
        ws.send(&close(code, b"")).await;
        expect_close(&mut ws, code, &case).await;
        still_serving(addr, &case).await;
    }
    for code in [
        0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        fails(addr, &close(code, b""), &[], 1002, &format!("close {code}")).await;
    }

    // No payload: answered with 1000. A reason, and the longest one (123 bytes).
    let mut ws = echo(addr).await;
    ws.send(&frame(true, OP_CLOSE, b"")).await;
    expect_close(&mut ws, 1000, "close without payload").await;
    for reason in [&b"Hello World!"[..], "κόσμε".as_bytes(), &[b'*'; 123]] {
        let mut ws = echo(addr).await;
        ws.send(&close(1000, reason)).await;
        expect_close(&mut ws, 1000, "close with a reason").await;
    }
    fails(
        addr,
        &frame(true, OP_CLOSE, &[0x03]),
        &[],
        1002,
        "1-byte close",
    )
    .await;
    fails(
        addr,
        &close(1000, &[b'*'; 124]),
        &[],
        1002,
        "close of 126 bytes",
    )
    .await;
    fails(
        addr,
        &close(1000, b"\xce\xba\xed\xa0\x80"),
        &[],
        1007,
        "close reason not UTF-8",
    )
    .await;

    // A message, then a close: the message is answered first.
    let mut wire = frame(true, OP_TEXT, b"before");
    wire.extend(close(1000, b""));
    fails(
        addr,
        &wire,
        &[(OP_TEXT, b"before")],
        1000,
        "text then close",
    )
    .await;
    // After a close, nothing: no echo, no pong, no second close.
    let mut wire = close(1000, b"");
    wire.extend(frame(true, OP_TEXT, b"after"));
    wire.extend(frame(true, OP_PING, b"after"));
    wire.extend(close(1001, b""));
    fails(addr, &wire, &[], 1000, "data, ping and close after a close").await;
    // Sent after the server's close arrived, too.
    let mut ws = echo(addr).await;
    ws.send(&close(1000, b"")).await;
    let f = ws.frame().await;
    assert_eq!(f.close().map(|(c, _)| c), Some(1000));
    let _ = ws.try_send(&frame(true, OP_TEXT, b"late")).await;
    ws.expect_end().await;
    // A close in the middle of a fragmented message ends it, unanswered.
    let mut wire = frame(false, OP_TEXT, b"unfinished");
    wire.extend(close(1000, b""));
    wire.extend(frame(true, OP_CONTINUATION, b"never"));
    fails(addr, &wire, &[], 1000, "close inside a fragmented message").await;
    // A close in 1-byte writes.
    let mut ws = echo(addr).await;
    ws.send_chunked(&close(3000, b"slowly"), 1).await;
    expect_close(&mut ws, 3000, "close in 1-byte writes").await;
    still_serving(addr, "close handling").await;
    server.shutdown();
}
