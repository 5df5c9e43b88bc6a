//! `/publish`: token checked before the upgrade, published ticks reach subscribers,
//! bad messages earn an error and the connection stays, oversize messages close with
//! 1009, and the server keeps serving.

mod common;

use std::net::SocketAddr;

use common::*;
use futures_util::SinkExt;
use serde_json::json;
use tickcast::config::Config;
use tickcast::server::ServerHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "t0ken";

fn publish_config() -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        workers: 2,
        pin_cores: false,
        feeds: Vec::new(),
        publish_token: Some(TOKEN.into()),
        max_publish_message_bytes: 4096,
        ..Config::default()
    }
}

/// The HTTP status of a refused handshake on `url`, with optional extra header.
async fn refused_status(url: &str, auth: Option<&str>) -> u16 {
    let mut req = url.into_client_request().unwrap();
    if let Some(a) = auth {
        req.headers_mut()
            .insert("Authorization", a.parse().unwrap());
    }
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
        .await
        .expect("answer in time")
    {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected a refusal, got a WebSocket"),
    }
}

async fn publisher(addr: SocketAddr) -> Ws {
    let (ws, _) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::connect_async(format!("ws://{addr}/publish?token={TOKEN}")),
    )
    .await
    .expect("connect in time")
    .expect("connect");
    ws
}

fn trade(symbol: &str, ts_event: u64, price: &str) -> serde_json::Value {
    json!({"symbol": symbol, "kind": "trade", "ts_event": ts_event, "price": price, "size": "2"})
}

/// Waits (bounded) until the sequencer has interned `name`; returns its id.
fn wait_for_symbol(server: &ServerHandle, name: &str) -> u32 {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(id) = server.symbols().id_of(name) {
            return id;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} never appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Subscribes to `symbol` in JSON and reads past the ack, map and snapshot.
async fn subscriber(addr: SocketAddr, symbol: &str) -> Ws {
    let mut ws = connect(addr).await;
    send_json(
        &mut ws,
        json!({"op":"subscribe","symbols":[symbol],"format":"json"}),
    )
    .await;
    until_type(&mut ws, "symbols").await;
    ws
}

/// The next `n` non-snapshot ticks in JSON (a message may carry several).
async fn live(ws: &mut Ws, n: usize) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    while out.len() < n {
        if let Message::Text(t) = next(ws).await {
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            for t in v.as_array().into_iter().flatten() {
                if !t["flags"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|f| f == "snapshot")
                {
                    out.push(t.clone());
                }
            }
        }
    }
    assert_eq!(out.len(), n, "no more ticks than published");
    out
}

/// The next non-snapshot tick in JSON.
async fn next_live(ws: &mut Ws) -> serde_json::Value {
    live(ws, 1).await.remove(0)
}

#[tokio::test]
async fn rejects_a_bad_or_missing_token_with_401_and_is_off_without_one() {
    let server = start_server(publish_config());
    let addr = server.local_addr();
    let base = format!("ws://{addr}/publish");
    assert_eq!(
        refused_status(&format!("{base}?token=wrong"), None).await,
        401
    );
    assert_eq!(refused_status(&base, None).await, 401);
    assert_eq!(refused_status(&base, Some("Bearer wrong")).await, 401);
    // The bearer header is accepted as well as the query.
    let mut req = base.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("Authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("accepted");
    ws.close(None).await.unwrap();
    server.shutdown();

    let mut off = publish_config();
    off.publish_token = None;
    let server = start_server(off);
    let url = format!("ws://{}/publish?token={TOKEN}", server.local_addr());
    assert_eq!(refused_status(&url, None).await, 404);
    server.shutdown();
}

#[tokio::test]
async fn published_json_and_binary_ticks_reach_subscribers() {
    let server = start_server(publish_config());
    let addr = server.local_addr();
    let mut publ = publisher(addr).await;
    publ.send(Message::text(trade("PUB0", 1, "1").to_string()))
        .await
        .unwrap();
    let id = wait_for_symbol(&server, "PUB0");
    let mut sub = subscriber(addr, "PUB0").await;

    let batch = json!([trade("PUB0", 1_000, "1.5"), trade("PUB0", 1_001, "1.75")]);
    publ.send(Message::text(batch.to_string())).await.unwrap();
    let ab = live(&mut sub, 2).await;
    let (a, b) = (&ab[0], &ab[1]);
    assert_eq!(
        (a["ts_event"].as_u64(), a["price"].as_str()),
        (Some(1_000), Some("1.5"))
    );
    assert_eq!(b["seq"].as_u64(), a["seq"].as_u64().map(|s| s + 1));

    // A binary record names its symbol by id.
    let mut msg = Vec::new();
    msg.extend_from_slice(&1u16.to_le_bytes());
    msg.extend_from_slice(&72u16.to_le_bytes());
    msg.extend_from_slice(&1u32.to_le_bytes());
    msg.extend_from_slice(&0u64.to_le_bytes());
    let mut rec = [0u8; 72];
    rec[0] = 2; // quote
    rec[4..8].copy_from_slice(&id.to_le_bytes());
    rec[16..24].copy_from_slice(&2_000u64.to_le_bytes());
    for (i, v) in [100_000_000i64, 5, 200_000_000, 6].iter().enumerate() {
        rec[40 + 8 * i..48 + 8 * i].copy_from_slice(&v.to_le_bytes());
    }
    msg.extend_from_slice(&rec);
    publ.send(Message::binary(msg)).await.unwrap();
    let q = next_live(&mut sub).await;
    assert_eq!(q["kind"], "quote");
    assert_eq!(
        (q["ts_event"].as_u64(), q["ask_px"].as_str()),
        (Some(2_000), Some("2"))
    );
    server.shutdown();
}

#[tokio::test]
async fn malformed_ticks_get_an_error_and_the_connection_stays() {
    let server = start_server(publish_config());
    let addr = server.local_addr();
    let mut publ = publisher(addr).await;
    publ.send(Message::text(trade("PUB1", 1, "1").to_string()))
        .await
        .unwrap();
    wait_for_symbol(&server, "PUB1");
    let mut sub = subscriber(addr, "PUB1").await;
    let cases: Vec<(Message, &str)> = vec![
        (Message::text("{nope"), "invalid JSON"),
        (Message::text("7"), "tick object or an array"),
        (
            Message::text(r#"{"kind":"trade"}"#),
            r#"tick 0: missing field "symbol""#,
        ),
        (
            Message::text(
                json!([trade("PUB1", 5, "1"), {"symbol":"PUB1","kind":"bid"}]).to_string(),
            ),
            r#"tick 1: unknown kind "bid""#,
        ),
        (
            Message::text(
                json!({"symbol":"PUB1","kind":"trade","price":"x","size":"1"}).to_string(),
            ),
            r#"invalid "price""#,
        ),
        (
            Message::binary(vec![1u8, 2, 3]),
            "does not hold a 16-byte header",
        ),
    ];
    for (msg, want) in cases {
        publ.send(msg).await.unwrap();
        let reply = next_json(&mut publ).await;
        assert_eq!(reply["type"], "error", "{reply}");
        let text = reply["message"].as_str().unwrap();
        assert!(text.contains(want), "{text:?} should contain {want:?}");
    }
    // Nothing of the half-bad array went out; the next good tick does.
    publ.send(Message::text(trade("PUB1", 77, "3").to_string()))
        .await
        .unwrap();
    let t = next_live(&mut sub).await;
    assert_eq!(t["ts_event"].as_u64(), Some(77));
    server.shutdown();
}

#[tokio::test]
async fn oversize_message_closes_with_1009_and_the_server_keeps_serving() {
    let server = start_server(publish_config());
    let addr = server.local_addr();
    let mut publ = publisher(addr).await;
    let big = format!(
        "[{}]",
        vec![trade("PUB2", 1, "1").to_string(); 100].join(",")
    );
    assert!(big.len() > 4096);
    publ.send(Message::text(big)).await.unwrap();
    let code = loop {
        match next(&mut publ).await {
            Message::Close(Some(frame)) => break frame.code,
            Message::Close(None) => panic!("close without a code"),
            _ => continue,
        }
    };
    assert_eq!(code, CloseCode::Size);

    // A new publisher and a subscriber still work.
    let mut publ = publisher(addr).await;
    publ.send(Message::text(trade("PUB2", 1, "1").to_string()))
        .await
        .unwrap();
    wait_for_symbol(&server, "PUB2");
    let mut sub = subscriber(addr, "PUB2").await;
    publ.send(Message::text(trade("PUB2", 9, "2").to_string()))
        .await
        .unwrap();
    assert_eq!(next_live(&mut sub).await["ts_event"].as_u64(), Some(9));
    server.shutdown();
}

/// `max_publish_message_bytes` is inclusive and counts every fragment, as on `/ws`: a
/// message of exactly the limit is published, whole or in fragments; one byte more,
/// whole or in fragments, closes with 1009.
#[tokio::test]
async fn the_publish_limit_is_inclusive_and_on_the_whole_message() {
    use common::raw::{RawWs, MASK};
    use tickcast::wire::frame::{client_frame, OP_CONTINUATION, OP_TEXT};
    let server = start_server(publish_config());
    let addr = server.local_addr();
    let path = format!("/publish?token={TOKEN}");
    // A tick padded with spaces to `len` bytes.
    let padded = |ts: u64, len: usize| {
        let mut t = trade("EXACT", ts, "1").to_string().into_bytes();
        t.resize(len, b' ');
        t
    };
    let mut publ = RawWs::connect(addr, &path).await;
    publ.send(&client_frame(true, OP_TEXT, &padded(1, 4096), MASK))
        .await;
    wait_for_symbol(&server, "EXACT");
    let mut sub = subscriber(addr, "EXACT").await;
    let msg = padded(2, 4096);
    let mut wire = client_frame(false, OP_TEXT, &msg[..2000], MASK);
    wire.extend(client_frame(true, OP_CONTINUATION, &msg[2000..], MASK));
    publ.send(&wire).await;
    assert_eq!(next_live(&mut sub).await["ts_event"].as_u64(), Some(2));

    for fragmented in [false, true] {
        let mut publ = RawWs::connect(addr, &path).await;
        let msg = padded(3, 4097);
        let wire = if fragmented {
            let mut w = client_frame(false, OP_TEXT, &msg[..4000], MASK);
            w.extend(client_frame(true, OP_CONTINUATION, &msg[4000..], MASK));
            w
        } else {
            client_frame(true, OP_TEXT, &msg, MASK)
        };
        let _ = publ.try_send(&wire).await;
        assert_eq!(
            publ.close_frame().await.map(|(c, _)| c),
            Some(1009),
            "4,097 bytes, fragmented: {fragmented}"
        );
    }
    server.shutdown();
}

/// Books published: changes, then a snapshot that replaces the server's book (a
/// level it leaves out is removed), reach a book subscriber that rebuilds exactly the
/// server's book; a bad book object gets an error and changes nothing.
#[tokio::test]
async fn published_books_reach_book_subscribers() {
    use tickcast::client::{Client, Event, Options};
    let server = start_server(publish_config());
    let addr = server.local_addr();
    let mut p = publisher(addr).await;
    let book = |v: serde_json::Value| Message::text(v.to_string());
    p.send(book(
        json!({"symbol":"BK","kind":"book","bids":[["100","1"],["99","2"]],"asks":[["101","3"]]}),
    ))
    .await
    .unwrap();
    let id = wait_for_symbol(&server, "BK");
    let options = Options {
        channels: Some(vec!["book".into()]),
        ..Options::symbols(["BK"])
    };
    let mut client = Client::connect(&format!("ws://{addr}/ws"), options)
        .await
        .unwrap();
    // Then a snapshot without the bid 99 and with the ask resized, and a bad object.
    p.send(book(json!({"symbol":"BK","kind":"book","flags":["snapshot"],"bids":[["100","1"]],"asks":[["101","4"],["102","1"]]})))
        .await
        .unwrap();
    p.send(book(
        json!({"symbol":"BK","kind":"book","bids":[["x","1"]]}),
    ))
    .await
    .unwrap();
    let reply = until_type(&mut p, "error").await;
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .contains("invalid \"bids\""),
        "{reply}"
    );
    let fixed = |s: &str| tickcast::fixed::parse(s.as_bytes()).unwrap();
    let want_bids = vec![(fixed("100"), fixed("1"))];
    let want_asks = vec![(fixed("101"), fixed("4")), (fixed("102"), fixed("1"))];
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let b = server.lvc().book(id);
        if (&b.bids, &b.asks) == (&want_bids, &want_asks) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "server book {b:?}");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let want_seq = server.lvc().book(id).seq;
    while client.book("BK").is_none_or(|b| b.seq() < want_seq) {
        match tokio::time::timeout(WAIT, client.next())
            .await
            .expect("in time")
        {
            Ok(Event::BookGap { symbol, gap }) => panic!("book gap {symbol} {gap:?}"),
            Ok(_) => {}
            Err(e) => panic!("client: {e}"),
        }
    }
    let b = client.book("BK").unwrap();
    assert!(b.is_synced());
    assert_eq!(
        (b.book().bids(), b.book().asks()),
        (&want_bids[..], &want_asks[..])
    );
    server.shutdown();
}
