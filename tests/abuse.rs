//! Hostile clients against the real binary, over real sockets: floods of pings,
//! invalid messages and fragments from clients that never read, and the RFC 6455
//! corners a careless server gets wrong. Each must cost the server a bounded amount of
//! memory, never disturb the other subscribers on the same core, and get the close
//! code the RFC asks for.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::raw::{RawWs, MASK};
use common::*;
use serde_json::json;
use tickcast::wire::frame::{client_frame, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_TEXT};

/// Sends `frame` over and over for `during` without reading anything; the writes block
/// once the server stops reading and the socket buffers are full.
async fn flood(mut ws: RawWs, frame: Vec<u8>, during: Duration) -> RawWs {
    let mut burst = Vec::new();
    while burst.len() < 64 * 1024 {
        burst.extend_from_slice(&frame);
    }
    let _ = tokio::time::timeout(during, async { while ws.try_send(&burst).await {} }).await;
    ws
}

/// A hostile client of each kind floods one core for three seconds without reading;
/// a well-behaved subscriber on the same core keeps receiving every tick, in order;
/// the server grows by less than 16 MiB; the endless message is refused with 1009, and
/// the other two are throttled to `max_input_bytes_per_sec` (their replies are few
/// and small, so their sockets never fill: they cost a bounded trickle of CPU, no
/// memory, and stay open).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_from_clients_that_never_read_are_bounded() {
    let dir = std::env::temp_dir().join(format!("tickcast-abuse-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("tickcast.toml");
    std::fs::write(&cfg, "stall_timeout_ms = 4000\nmax_queue_age_ms = 0\n").unwrap();
    let (mut child, addr) = spawn_binary(&[
        "--config",
        cfg.to_str().unwrap(),
        "--workers",
        "1",
        "--symbols",
        "20",
        "--rate",
        "2000",
    ]);
    let pid = child.id();

    // The good subscriber: every symbol, checking sequence continuity.
    let mut good = connect(addr).await;
    send_json(
        &mut good,
        json!({"op":"subscribe","symbols":["*"],"format":"json"}),
    )
    .await;
    until_type(&mut good, "subscribed").await;
    let reader = tokio::spawn(async move {
        let mut names = HashMap::new();
        let mut last: HashMap<String, u64> = HashMap::new();
        let mut ticks = 0u64;
        let until = Instant::now() + Duration::from_secs(6);
        while Instant::now() < until {
            if let Ok(batch) = next_ticks(&mut good, &mut names).await {
                for t in batch {
                    // A snapshot is the latest trade and quote: not contiguous itself,
                    // but live ticks must follow it without a gap.
                    let snapshot = t.flags == ["snapshot"];
                    let prev = last.insert(t.symbol.clone(), t.seq);
                    if let (Some(prev), false) = (prev, snapshot) {
                        assert_eq!(t.seq, prev + 1, "{}: gap or duplicate", t.symbol);
                    }
                    if !snapshot {
                        assert!(t.flags.is_empty(), "no lap, no conflation: {t:?}");
                        ticks += 1;
                    }
                }
            }
        }
        ticks
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid);

    let pinger = RawWs::connect(addr, "/ws").await;
    let junk = RawWs::connect(addr, "/ws").await;
    let mut fragments = RawWs::connect(addr, "/ws").await;
    fragments
        .send(&client_frame(false, OP_TEXT, b"[", MASK))
        .await;
    let three = Duration::from_secs(3);
    let (pinger, junk, fragments) = tokio::join!(
        flood(
            pinger,
            client_frame(true, OP_PING, &[b'p'; 125], MASK),
            three
        ),
        flood(junk, client_frame(true, OP_TEXT, b"x", MASK), three),
        flood(
            fragments,
            client_frame(false, OP_CONTINUATION, &[b' '; 1000], MASK),
            three
        ),
    );
    let after = rss_kib(pid);
    let grew_kib = after.saturating_sub(before);
    eprintln!("server RSS {before} KiB before the floods, {after} KiB after");
    assert!(
        grew_kib < 16 * 1024,
        "server RSS grew by {grew_kib} KiB ({before} -> {after})"
    );
    let (_, stats) = http_get(addr, "/stats").await;
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["totals"]["laps"], 0, "no core was lapped");

    // The endless message was refused with 1009 once it passed the limit.
    let mut fragments = fragments;
    assert_eq!(
        fragments.close_frame().await.map(|(c, _)| c),
        Some(1009),
        "endless fragments"
    );
    // The other two were throttled to their input budget, and are still open.
    assert!(
        stats["totals"]["input_throttled"].as_u64().unwrap() >= 2,
        "{}",
        stats["totals"]
    );
    // The server still takes new subscribers.
    let mut late = connect(addr).await;
    send_json(&mut late, json!({"op":"subscribe","symbols":["SYM0"]})).await;
    until_type(&mut late, "subscribed").await;
    let ticks = reader.await.unwrap();
    assert!(
        ticks > 1_000,
        "the good subscriber kept receiving ({ticks})"
    );
    drop((pinger, junk));
    child.kill().unwrap();
    let _ = child.wait();
}

/// RFC 6455 corners over a real socket: each breach gets its close code, limits are
/// inclusive, control frames stay within 125 bytes, and the server carries on.
#[tokio::test]
async fn rfc_6455_corners_over_a_socket() {
    let server = start_server(config(4, 500));
    let addr = server.local_addr();

    // §5.1: an unmasked client frame fails the connection with 1002.
    let mut ws = RawWs::connect(addr, "/ws").await;
    ws.send(&[0x81, 0x02, b'h', b'i']).await;
    assert_eq!(ws.close_frame().await.map(|(c, _)| c), Some(1002));

    // §5.5: a client close with a 123-byte reason gets a close of at most 125 bytes
    // (RawWs checks every control frame), echoing its code.
    let mut ws = RawWs::connect(addr, "/ws").await;
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(&[b'z'; 123]);
    ws.send(&client_frame(true, OP_CLOSE, &payload, MASK)).await;
    assert_eq!(ws.close_frame().await, Some((1000, String::new())));

    // A message of exactly the limit (65,536 bytes) is read (and answered: it is not
    // a valid control message), and the connection carries on.
    let mut ws = RawWs::connect(addr, "/ws").await;
    let mut text = vec![b' '; 65_536];
    text[0] = b'{';
    text[65_535] = b'}';
    ws.send(&client_frame(true, OP_TEXT, &text, MASK)).await;
    let e = ws.until_type("error").await;
    assert!(
        e["message"].as_str().unwrap().contains("missing \"op\""),
        "{e}"
    );
    ws.text(r#"{"op":"subscribe","symbols":["SYM0"]}"#).await;
    ws.until_type("subscribed").await;

    // 80 KB in two 40 KB fragments is over the limit: 1009, not "invalid JSON".
    let mut ws = RawWs::connect(addr, "/ws").await;
    let mut wire = client_frame(false, OP_TEXT, &[b' '; 40_000], MASK);
    wire.extend(client_frame(true, OP_CONTINUATION, &[b' '; 40_000], MASK));
    let _ = ws.try_send(&wire).await;
    assert_eq!(ws.close_frame().await.map(|(c, _)| c), Some(1009));

    // A ping of 126 bytes is a protocol error; one of 125 is answered with the same
    // payload.
    let mut ws = RawWs::connect(addr, "/ws").await;
    ws.send(&client_frame(true, OP_PING, &[7; 125], MASK)).await;
    loop {
        match ws.next().await {
            common::raw::Next::Frame(f) if f.opcode == tickcast::wire::OP_PONG => {
                assert_eq!(f.payload, vec![7; 125]);
                break;
            }
            common::raw::Next::Frame(_) => {}
            common::raw::Next::Closed => panic!("closed"),
        }
    }
    ws.send(&client_frame(true, OP_PING, &[7; 126], MASK)).await;
    assert_eq!(ws.close_frame().await.map(|(c, _)| c), Some(1002));

    // The server is still serving.
    let mut ws = connect(addr).await;
    send_json(&mut ws, json!({"op":"subscribe","symbols":["SYM1"]})).await;
    until_type(&mut ws, "subscribed").await;
    server.shutdown();
}
