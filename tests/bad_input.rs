//! Bad input over live connections earns an error message or a documented close code,
//! and the server keeps serving everyone else.

mod common;

use std::collections::HashMap;

use common::*;
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

/// A well-behaved client keeps receiving gap-free ticks while others misbehave.
async fn assert_still_streaming(
    ws: &mut Ws,
    names: &mut HashMap<u32, String>,
    last: &mut HashMap<String, u64>,
    n: usize,
) {
    let mut got = 0;
    while got < n {
        if let Ok(ticks) = next_ticks(ws, names).await {
            for t in ticks {
                let snapshot = t.flags.iter().any(|f| f == "snapshot");
                if let (Some(&prev), false) = (last.get(&t.symbol), snapshot) {
                    assert_eq!(t.seq, prev + 1, "bystander has no gap in {}", t.symbol);
                }
                last.insert(t.symbol.clone(), t.seq);
                got += 1;
            }
        }
    }
}

#[tokio::test]
async fn errors_for_bad_control_messages_and_the_connection_stays_usable() {
    let server = start_server(config(10, 5_000));
    let addr = server.local_addr();
    let mut bystander = connect(addr).await;
    send_json(
        &mut bystander,
        json!({"op":"subscribe","symbols":["SYM1","SYM2"]}),
    )
    .await;
    let (mut names, mut last) = (HashMap::new(), HashMap::new());
    assert_still_streaming(&mut bystander, &mut names, &mut last, 50).await;

    let mut ws = connect(addr).await;
    let cases: Vec<(Message, &str)> = vec![
        (Message::text("{not json"), "invalid JSON"),
        (Message::text("[1,2]"), "must be a JSON object"),
        (
            Message::text(r#"{"op":"frobnicate"}"#),
            "unknown op \"frobnicate\"",
        ),
        (
            Message::text(r#"{"op":"subscribe"}"#),
            "missing field \"symbols\"",
        ),
        (
            Message::text(r#"{"op":"subscribe","symbols":["SYM1","NOPE"]}"#),
            "unknown symbol \"NOPE\"",
        ),
        (
            Message::text(r#"{"op":"subscribe","symbols":["SYM1"],"format":"xml"}"#),
            "invalid \"format\"",
        ),
        (
            Message::binary(vec![1u8, 2, 3]),
            "binary messages are not accepted",
        ),
    ];
    for (msg, want) in cases {
        ws.send(msg).await.unwrap();
        let reply = next_json(&mut ws).await;
        assert_eq!(reply["type"], "error", "{reply}");
        let text = reply["message"].as_str().unwrap();
        assert!(text.contains(want), "{text:?} should contain {want:?}");
    }
    // The unknown-symbol subscribe subscribed nothing; a good one works.
    send_json(
        &mut ws,
        json!({"op":"subscribe","symbols":["SYM3"],"format":"json"}),
    )
    .await;
    let ack = next_json(&mut ws).await;
    assert_eq!(ack["type"], "subscribed");
    assert_eq!(ack["symbols"], json!(["SYM3"]));

    assert_still_streaming(&mut bystander, &mut names, &mut last, 200).await;
    let stats: serde_json::Value = serde_json::from_str(&http_get(addr, "/stats").await.1).unwrap();
    assert_eq!(stats["totals"]["protocol_errors"], 7);
    server.shutdown();
}

#[tokio::test]
async fn oversize_message_closes_with_1009_and_others_carry_on() {
    let server = start_server(config(10, 5_000));
    let addr = server.local_addr();
    let mut bystander = connect(addr).await;
    send_json(
        &mut bystander,
        json!({"op":"subscribe","symbols":["SYM4"],"format":"json"}),
    )
    .await;
    let (mut names, mut last) = (HashMap::new(), HashMap::new());
    assert_still_streaming(&mut bystander, &mut names, &mut last, 20).await;

    let mut ws = connect(addr).await;
    let huge = format!(
        r#"{{"op":"subscribe","symbols":["{}"]}}"#,
        "A".repeat(1 << 20)
    );
    ws.send(Message::text(huge)).await.unwrap();
    match next(&mut ws).await {
        Message::Close(Some(f)) => {
            assert_eq!(u16::from(f.code), 1009);
            assert!(f.reason.contains("message too big"), "{}", f.reason);
        }
        other => panic!("expected close 1009, got {other:?}"),
    }
    assert_still_streaming(&mut bystander, &mut names, &mut last, 100).await;

    // A fresh client is served normally afterwards.
    let mut again = connect(addr).await;
    send_json(&mut again, json!({"op":"subscribe","symbols":["SYM5"]})).await;
    assert_eq!(next_json(&mut again).await["type"], "subscribed");
    server.shutdown();
}

#[tokio::test]
async fn garbage_bytes_and_abrupt_disconnects_do_not_hurt_the_server() {
    use tokio::io::AsyncWriteExt;
    let server = start_server(config(10, 5_000));
    let addr = server.local_addr();
    // Not HTTP at all.
    let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
    raw.write_all(&[0xff; 4096]).await.unwrap();
    drop(raw);
    // A WebSocket client that vanishes mid-stream without a close frame.
    for _ in 0..5 {
        let mut ws = connect(addr).await;
        send_json(&mut ws, json!({"op":"subscribe","symbols":["*"]})).await;
        let _ = next(&mut ws).await;
        drop(ws);
    }
    let mut ws = connect(addr).await;
    send_json(
        &mut ws,
        json!({"op":"subscribe","symbols":["SYM0"],"format":"json"}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["type"], "subscribed");
    let (mut names, mut last) = (HashMap::new(), HashMap::new());
    assert_still_streaming(&mut ws, &mut names, &mut last, 20).await;
    // The vanished connections are gone from the books.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let stats: serde_json::Value =
            serde_json::from_str(&http_get(addr, "/stats").await.1).unwrap();
        if stats["totals"]["connections"] == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "dropped connections freed: {}",
            stats["totals"]
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    server.shutdown();
}

/// One raw HTTP/1.1 request; returns the response's status, its head (header names
/// lowercase) and its body.
async fn http_raw(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, String, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head")
        + 4;
    let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
    let status = head[9..12].parse().unwrap();
    (status, head, buf[end..].to_vec())
}

fn content_length(head: &str) -> Option<usize> {
    head.lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map(|v| v.trim().parse().unwrap())
}

/// HEAD on every GET route answers as GET does, without the body (and never
/// upgrades); every other method on a route is 405 with `Allow: GET, HEAD`; an unknown
/// path is 404 whatever the method.
#[tokio::test]
async fn head_is_get_without_a_body_and_every_405_says_allow() {
    let mut cfg = config(3, 100);
    cfg.echo_path = Some("/echo".into());
    cfg.publish_token = Some("t0ken".into());
    let server = start_server(cfg);
    let addr = server.local_addr();
    let routes = [
        "/healthz", "/symbols", "/stats", "/metrics", "/", "/ws", "/echo", "/publish",
    ];
    for path in routes {
        let (get, get_head, get_body) = http_raw(addr, "GET", path).await;
        let (head, head_head, head_body) = http_raw(addr, "HEAD", path).await;
        assert_eq!(head, get, "HEAD {path}: the status of GET");
        assert!(head_body.is_empty(), "HEAD {path}: no body");
        if path == "/stats" || path == "/metrics" {
            // Their bodies change between requests (counters, process figures): HEAD
            // still says the length of the body it would have sent.
            assert!(
                content_length(&head_head).is_some(),
                "HEAD {path}: {head_head}"
            );
        } else {
            assert_eq!(
                content_length(&head_head),
                content_length(&get_head),
                "HEAD {path}: the length of GET's body"
            );
            assert_eq!(content_length(&get_head), Some(get_body.len()), "{path}");
        }
        for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
            let (status, head, _) = http_raw(addr, method, path).await;
            assert_eq!(status, 405, "{method} {path}");
            assert!(
                head.contains("\r\nallow: get, head\r\n"),
                "{method} {path}: {head}"
            );
        }
    }
    // /ws without an upgrade, by GET or HEAD, is 426 and says what to upgrade to.
    let (status, head, _) = http_raw(addr, "HEAD", "/ws").await;
    assert_eq!(status, 426);
    assert!(head.contains("\r\nupgrade: websocket\r\n"), "{head}");
    for method in ["GET", "HEAD", "POST"] {
        assert_eq!(http_raw(addr, method, "/nowhere").await.0, 404, "{method}");
    }
    server.shutdown();
}
