//! The core data path through a real WebSocket client: snapshot first, then live ticks
//! with gap-free per-symbol sequences, identical in binary and JSON.

mod common;

use std::collections::HashMap;

use common::*;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn snapshot_first_then_gap_free_live_ticks_in_json() {
    let server = start_server(config(20, 20_000));
    let mut ws = connect(server.local_addr()).await;
    let symbols: Vec<String> = (0..5).map(|i| format!("SYM{i}")).collect();
    send_json(
        &mut ws,
        json!({"op":"subscribe","symbols":symbols,"format":"json","id":1}),
    )
    .await;
    let ack = next_json(&mut ws).await;
    assert_eq!(ack["type"], "subscribed");
    assert_eq!(ack["id"], 1);
    assert_eq!(ack["format"], "json");
    let map = next_json(&mut ws).await;
    assert_eq!(map["type"], "symbols");
    assert_eq!(map["symbols"].as_array().unwrap().len(), 5);

    let mut names = HashMap::new();
    let mut last: HashMap<String, u64> = HashMap::new();
    let mut live = 0;
    while live < 3_000 {
        let ticks = next_ticks(&mut ws, &mut names)
            .await
            .expect("only ticks after the snapshot");
        for t in ticks {
            assert!(
                symbols.contains(&t.symbol),
                "only subscribed symbols: {}",
                t.symbol
            );
            match last.get(&t.symbol) {
                None => assert_eq!(
                    t.flags,
                    vec!["snapshot"],
                    "first record of {} is a snapshot",
                    t.symbol
                ),
                Some(&prev) if t.flags.contains(&"snapshot".to_string()) => {
                    assert!(t.seq > prev, "snapshot seqs increase")
                }
                Some(&prev) => {
                    assert_eq!(t.seq, prev + 1, "no gap in {}", t.symbol);
                    assert!(t.flags.is_empty());
                    assert_eq!(t.count, 1);
                    live += 1;
                }
            }
            last.insert(t.symbol.clone(), t.seq);
        }
    }
    assert_eq!(last.len(), 5);
    server.shutdown();
}

#[tokio::test]
async fn binary_records_decode_with_rkyv_and_match_json() {
    let server = start_server(config(10, 20_000));
    let addr = server.local_addr();
    let symbols: Vec<String> = (0..10).map(|i| format!("SYM{i}")).collect();
    let mut bin = connect(addr).await;
    let mut txt = connect(addr).await;
    send_json(&mut bin, json!({"op":"subscribe","symbols":symbols})).await;
    send_json(
        &mut txt,
        json!({"op":"subscribe","symbols":symbols,"format":"json"}),
    )
    .await;
    assert_eq!(next_json(&mut bin).await["format"], "binary");

    let collect = |mut ws: Ws| async move {
        let mut names = HashMap::new();
        let mut out = HashMap::new();
        let mut binary_messages = 0;
        while out.len() < 4_000 {
            match next(&mut ws).await {
                Message::Binary(b) => {
                    binary_messages += 1;
                    for t in decode_binary(&b) {
                        let s = seen_from_tick(&t, &names);
                        out.insert((s.symbol.clone(), s.seq), s);
                    }
                }
                Message::Text(t) => {
                    let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                    if let Some(list) = v.as_array() {
                        for s in list.iter().map(seen_from_json) {
                            out.insert((s.symbol.clone(), s.seq), s);
                        }
                    } else if v["type"] == "symbols" {
                        for s in v["symbols"].as_array().unwrap() {
                            names.insert(
                                s["id"].as_u64().unwrap() as u32,
                                s["name"].as_str().unwrap().to_string(),
                            );
                        }
                    }
                }
                other => panic!("{other:?}"),
            }
        }
        (out, binary_messages)
    };
    let ((b, nb), (j, nj)) = tokio::join!(collect(bin), collect(txt));
    assert!(nb > 0, "binary connection got binary messages");
    assert_eq!(nj, 0, "json connection got no binary messages");
    let mut common_keys = 0;
    for (key, bt) in &b {
        if let Some(jt) = j.get(key) {
            // Snapshot flags depend on when each connection subscribed; everything
            // else is the same tick.
            if bt.flags == jt.flags {
                assert_eq!(bt, jt, "binary and JSON agree on {key:?}");
            } else {
                assert_eq!(
                    (bt.kind.clone(), bt.values, bt.ts_event),
                    (jt.kind.clone(), jt.values, jt.ts_event)
                );
            }
            common_keys += 1;
        }
    }
    assert!(
        common_keys > 3_000,
        "most ticks seen by both: {common_keys}"
    );
    server.shutdown();
}

#[tokio::test]
async fn wildcard_unsubscribe_and_http_endpoints() {
    let server = start_server(config(30, 5_000));
    let addr = server.local_addr();

    let (status, body) = http_get(addr, "/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["status"],
        "ok"
    );
    let (status, body) = http_get(addr, "/symbols").await;
    assert_eq!(status, 200);
    let list: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(list.len(), 30);
    assert_eq!(list[3], json!({"id": 3, "name": "SYM3"}));
    assert_eq!(http_get(addr, "/nope").await.0, 404);
    assert_eq!(
        http_get(addr, "/ws").await.0,
        426,
        "plain GET on /ws asks for an upgrade"
    );

    let mut ws = connect(addr).await;
    send_json(
        &mut ws,
        json!({"op":"subscribe","symbols":["*"],"format":"json"}),
    )
    .await;
    let ack = next_json(&mut ws).await;
    assert_eq!(ack["symbols"].as_array().unwrap().len(), 30);
    let map = next_json(&mut ws).await;
    assert_eq!(map["symbols"].as_array().unwrap().len(), 30);

    send_json(&mut ws, json!({"op":"unsubscribe","symbols":["SYM0"]})).await;
    let mut names = HashMap::new();
    loop {
        if let Err(v) = next_ticks(&mut ws, &mut names).await {
            if v["type"] == "unsubscribed" {
                assert_eq!(v["symbols"], json!(["SYM0"]));
                break;
            }
        }
    }
    let mut after = 0;
    while after < 500 {
        if let Ok(ticks) = next_ticks(&mut ws, &mut names).await {
            for t in ticks {
                assert_ne!(t.symbol, "SYM0", "no SYM0 after unsubscribe");
                after += 1;
            }
        }
    }
    let stats: serde_json::Value = serde_json::from_str(&http_get(addr, "/stats").await.1).unwrap();
    assert!(stats["totals"]["records_out"].as_u64().unwrap() >= 500);
    assert_eq!(stats["totals"]["connections"], 1);
    server.shutdown();
}

#[tokio::test]
async fn shutdown_tells_clients_then_closes_with_1001() {
    let server = start_server(config(5, 1_000));
    let mut ws = connect(server.local_addr()).await;
    send_json(
        &mut ws,
        json!({"op":"subscribe","symbols":["SYM1"],"format":"json"}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["type"], "subscribed");
    let stopper = std::thread::spawn(move || server.shutdown());
    let notice = until_type(&mut ws, "shutdown").await;
    assert_eq!(notice["message"], "server shutting down");
    match next(&mut ws).await {
        Message::Close(Some(f)) => assert_eq!(u16::from(f.code), 1001),
        other => panic!("expected close 1001, got {other:?}"),
    }
    stopper.join().unwrap();
}
