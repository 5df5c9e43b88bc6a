//! The session summary a subscribe asks for with `"summary": true` (`docs/protocol.md`,
//! "Session summary"), with a real WebSocket client: a subscriber that adds each trade
//! after its summary's `seq` to it ends with exactly the summary a later subscriber
//! gets, in JSON and in binary mode; a subscribe that does not ask gets none.

mod common;

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use common::*;
use serde_json::{json, Value};
use tickcast::feed::synthetic::SyntheticConfig;
use tickcast::feed::FeedSpec;
use tokio_tungstenite::tungstenite::Message;

const SYMBOLS: usize = 4;
const LIMIT: u64 = 4_000;

/// A symbol's running summary, as a client keeps it.
#[derive(Debug, Clone, PartialEq)]
struct Totals {
    seq: u64,
    trades: u64,
    volume: i64,
    open: i64,
    high: i64,
    low: i64,
    since: u64,
}

fn fixed(v: &Value) -> i64 {
    tickcast::fixed::parse(v.as_str().expect("decimal string").as_bytes()).expect("decimal")
}

fn totals(e: &Value) -> Totals {
    Totals {
        seq: e["seq"].as_u64().unwrap(),
        trades: e["trades"].as_u64().unwrap(),
        volume: fixed(&e["volume"]),
        open: fixed(&e["open"]),
        high: fixed(&e["high"]),
        low: fixed(&e["low"]),
        since: e["since"].as_u64().unwrap(),
    }
}

impl Totals {
    /// Adds a trade record (price, size, high, low, count) that comes after the summary.
    fn add(&mut self, seq: u64, ts_event: u64, v: [i64; 4], count: u64) {
        if seq <= self.seq {
            return;
        }
        if self.trades == 0 {
            (self.open, self.high, self.low, self.since) = (v[0], v[2], v[3], ts_event);
        }
        self.seq = seq;
        self.trades += count;
        self.volume += v[1];
        self.high = self.high.max(v[2]);
        self.low = self.low.min(v[3]);
    }
}

/// Reads until every symbol has a summary; returns them and the messages after them.
async fn summaries(ws: &mut Ws, names: &mut HashMap<u32, String>) -> HashMap<String, Totals> {
    let mut out = HashMap::new();
    while out.len() < SYMBOLS {
        let v = match next(ws).await {
            Message::Text(t) => serde_json::from_str::<Value>(&t).unwrap(),
            other => panic!("a summary comes before any tick, got {other:?}"),
        };
        match v["type"].as_str() {
            Some("symbols") => {
                for s in v["symbols"].as_array().unwrap() {
                    names.insert(
                        s["id"].as_u64().unwrap() as u32,
                        s["name"].as_str().unwrap().into(),
                    );
                }
            }
            Some("summary") => {
                for e in v["symbols"].as_array().unwrap() {
                    out.insert(e["symbol"].as_str().unwrap().to_string(), totals(e));
                }
            }
            Some("subscribed") => {}
            other => panic!("unexpected {other:?}: {v}"),
        }
    }
    out
}

#[tokio::test]
async fn a_summary_plus_the_trades_after_it_is_the_next_summary() {
    let mut cfg = config(SYMBOLS, 2_000);
    cfg.feeds = vec![FeedSpec::Synthetic(SyntheticConfig {
        symbols: SYMBOLS,
        rate: 2_000,
        limit: LIMIT,
        ..SyntheticConfig::default()
    })];
    let server = start_server(cfg);
    let addr = server.local_addr();
    let all: Vec<String> = (0..SYMBOLS).map(|i| format!("SYM{i}")).collect();

    // Two subscribers while the feed runs, one per format.
    let mut json_ws = connect(addr).await;
    send_json(
        &mut json_ws,
        json!({"op":"subscribe","symbols":all,"format":"json","summary":true}),
    )
    .await;
    let mut bin_ws = connect(addr).await;
    send_json(
        &mut bin_ws,
        json!({"op":"subscribe","symbols":all,"summary":true}),
    )
    .await;
    let mut json_names = HashMap::new();
    let mut bin_names = HashMap::new();
    let mut by_json = summaries(&mut json_ws, &mut json_names).await;
    let mut by_bin = summaries(&mut bin_ws, &mut bin_names).await;
    assert!(
        by_json.values().any(|t| t.trades > 0),
        "the feed traded before: {by_json:?}"
    );

    // Wait for the feed to finish, then for both to have every tick.
    let deadline = std::time::Instant::now() + WAIT;
    while server.stats().sequencer.ticks.load(Ordering::Relaxed) < LIMIT {
        assert!(std::time::Instant::now() < deadline, "feed did not finish");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut late = connect(addr).await;
    send_json(
        &mut late,
        json!({"op":"subscribe","symbols":all,"summary":true}),
    )
    .await;
    let final_summary = summaries(&mut late, &mut HashMap::new()).await;
    let last_seq: HashMap<String, u64> = all
        .iter()
        .map(|n| {
            let id = server.symbols().id_of(n).unwrap();
            (n.clone(), server.lvc().latest(id).seq())
        })
        .collect();

    let mut seen: HashMap<String, u64> = HashMap::new();
    while seen.len() < SYMBOLS || seen.iter().any(|(n, s)| *s < last_seq[n]) {
        match next(&mut json_ws).await {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                for tick in v.as_array().into_iter().flatten() {
                    let name = tick["symbol"].as_str().unwrap().to_string();
                    let seq = tick["seq"].as_u64().unwrap();
                    seen.insert(name.clone(), seq.max(seen.get(&name).copied().unwrap_or(0)));
                    if tick["kind"] == "trade" {
                        let v =
                            [&tick["price"], &tick["size"], &tick["high"], &tick["low"]].map(fixed);
                        let ts = tick["ts_event"].as_u64().unwrap();
                        let count = tick["count"].as_u64().unwrap();
                        by_json.get_mut(&name).unwrap().add(seq, ts, v, count);
                    }
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let mut seen: HashMap<String, u64> = HashMap::new();
    while seen.len() < SYMBOLS || seen.iter().any(|(n, s)| *s < last_seq[n]) {
        match next(&mut bin_ws).await {
            Message::Binary(b) => {
                for t in decode_binary(&b) {
                    let name = bin_names[&t.symbol_id].clone();
                    seen.insert(
                        name.clone(),
                        t.seq.max(seen.get(&name).copied().unwrap_or(0)),
                    );
                    if t.body.kind() == tickcast::tick::Kind::Trade {
                        let count = u64::from(t.count);
                        by_bin.get_mut(&name).unwrap().add(
                            t.seq,
                            t.ts_event,
                            t.body.values(),
                            count,
                        );
                    }
                }
            }
            Message::Text(t) => panic!("unexpected {t}"),
            other => panic!("unexpected {other:?}"),
        }
    }
    for name in &all {
        let want = &final_summary[name];
        assert!(want.trades > 0, "{name} traded");
        assert!(
            want.low <= want.open && want.open <= want.high,
            "{name}: {want:?}"
        );
        assert_eq!(&by_json[name], want, "{name} in JSON");
        assert_eq!(&by_bin[name], want, "{name} in binary");
    }

    // Not asked for: the subscribed and symbols replies, then the snapshot.
    let mut plain = connect(addr).await;
    send_json(&mut plain, json!({"op":"subscribe","symbols":all})).await;
    let mut texts = Vec::new();
    loop {
        match next(&mut plain).await {
            Message::Text(t) => {
                texts.push(serde_json::from_str::<Value>(&t).unwrap()["type"].clone())
            }
            Message::Binary(_) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(texts, [json!("subscribed"), json!("symbols")]);
    server.shutdown();
}
