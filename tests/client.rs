//! The Rust client against a real server: zero-copy records equal to the JSON form of
//! the same ticks; reconnect after a dropped connection resumes without a gap
//! (missed ticks replayed); reconnect after a server restart gets flagged snapshots.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use common::*;
use serde_json::json;
use tickcast::client::{Client, Event, Options};
use tickcast::tick::Flags;
use tokio::net::TcpListener;

const SYMBOLS: [&str; 4] = ["SYM0", "SYM1", "SYM2", "SYM3"];

/// Short delays, so that the restart tests reconnect quickly; a short connect timeout,
/// so that an attempt that reached a server on its way out is retried soon.
fn options() -> Options {
    Options {
        backoff_initial_ms: 20,
        backoff_max_ms: 200,
        connect_timeout_ms: 1_000,
        jitter_seed: Some(7),
        ..Options::symbols(SYMBOLS)
    }
}

/// The next event, within [`WAIT`].
async fn next(client: &mut Client) -> Event {
    tokio::time::timeout(WAIT, client.next())
        .await
        .expect("an event in time")
        .expect("no client error")
}

/// One record as the tests compare them.
fn seen(batch: &tickcast::client::Batch, r: &tickcast::wire::ArchivedWireRecord) -> Seen {
    let t = r.to_tick().expect("known kind");
    let names: HashMap<u32, String> = [(
        t.symbol_id,
        batch.symbol(t.symbol_id).expect("named").to_string(),
    )]
    .into();
    seen_from_tick(&t, &names)
}

#[tokio::test]
async fn zero_copy_records_equal_the_json_ticks() {
    let server = start_server(config(10, 5_000));
    let addr = server.local_addr();
    let mut client = Client::connect(&format!("ws://{addr}/ws"), options())
        .await
        .unwrap();
    let mut ws = connect(addr).await;
    send_json(
        &mut ws,
        json!({"op":"subscribe","symbols":SYMBOLS,"format":"json"}),
    )
    .await;

    // Both subscribers get the same live ticks from the ring; key them by
    // (symbol, seq, kind) and compare every field of the overlap.
    let mut from_client: HashMap<(String, u64, String), Seen> = HashMap::new();
    let mut from_json: HashMap<(String, u64, String), Seen> = HashMap::new();
    let key = |s: &Seen| (s.symbol.clone(), s.seq, s.kind.clone());
    let mut names = HashMap::new();
    let mut subscribed = false;
    while from_client.len() < 1_000 || from_json.len() < 1_000 {
        if from_client.len() < 1_000 {
            match next(&mut client).await {
                Event::Ticks(batch) => {
                    assert_eq!(batch.header().version, 1);
                    for r in batch.records() {
                        if Flags(r.flags) == Flags::empty() {
                            let s = seen(&batch, r);
                            from_client.insert(key(&s), s);
                        }
                    }
                }
                Event::Subscribed { symbols } => {
                    assert_eq!(symbols, SYMBOLS);
                    subscribed = true;
                }
                Event::Symbols(map) => assert_eq!(map.len(), SYMBOLS.len()),
                Event::Gap(g) => panic!("unexpected gap {g:?}"),
                other => panic!("unexpected {other:?}"),
            }
        }
        if from_json.len() < 1_000 {
            if let Ok(ticks) = next_ticks(&mut ws, &mut names).await {
                for t in ticks.into_iter().filter(|t| t.flags.is_empty()) {
                    from_json.insert(key(&t), t);
                }
            }
        }
    }
    assert!(subscribed);
    let mut both = 0;
    for (k, c) in &from_client {
        if let Some(j) = from_json.get(k) {
            assert_eq!(c, j, "{k:?}");
            both += 1;
        }
    }
    assert!(both >= 500, "only {both} ticks seen by both subscribers");
    client.close().await.unwrap();
    assert!(matches!(client.next().await, Err(e) if e.is_terminal()));
    server.shutdown();
}

/// A TCP proxy on loopback whose connections can all be cut at once.
struct Proxy {
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let list = conns.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
                list.lock().unwrap().push(task);
            }
        });
        Proxy {
            addr,
            conns,
            accept,
        }
    }

    /// Drops every open connection (both sides see the TCP connection end).
    fn cut(&self) {
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// Per symbol, the first record after the reconnect and whether every record after
/// it continued the sequence by exactly one.
#[derive(Debug, Default)]
struct AfterReconnect {
    /// Flags and seq of the first record.
    first: HashMap<String, (Flags, u64)>,
    contiguous: HashMap<String, bool>,
    records: usize,
}

/// Reads events until `n` records per symbol arrived after a reconnect; panics on a
/// gap. `last` holds the last seq per symbol before the disconnection. With
/// `continuing`, the first record after the reconnect must continue that sequence
/// (unless it is a snapshot); without, it may start a new one.
async fn read_after_reconnect(
    client: &mut Client,
    last: &mut HashMap<String, u64>,
    n: usize,
    continuing: bool,
) -> AfterReconnect {
    let mut out = AfterReconnect::default();
    let mut reconnected = false;
    let mut per_symbol: HashMap<String, usize> = HashMap::new();
    while !reconnected
        || SYMBOLS
            .iter()
            .any(|s| per_symbol.get(*s).copied().unwrap_or(0) < n)
    {
        match next(client).await {
            Event::Ticks(batch) => {
                for r in batch.records() {
                    let name = batch.symbol(r.symbol_id.to_native()).unwrap().to_string();
                    let seq = r.seq.to_native();
                    if reconnected {
                        let is_first = !out.first.contains_key(&name);
                        if is_first {
                            out.first.insert(name.clone(), (Flags(r.flags), seq));
                        }
                        let prev = last.get(&name).copied().unwrap_or(0);
                        // A snapshot starts the count afresh (the latest trade and
                        // quote, each with its own seq); every other record continues it.
                        if !Flags(r.flags).contains(Flags::SNAPSHOT) && (continuing || !is_first) {
                            let ok = seq == prev + 1;
                            *out.contiguous.entry(name.clone()).or_insert(true) &= ok;
                        }
                        *per_symbol.entry(name.clone()).or_insert(0) += 1;
                        out.records += 1;
                    }
                    last.insert(name, seq);
                }
            }
            Event::Gap(g) => panic!("gap after reconnect: {g:?}"),
            Event::Reconnected { resumed, .. } => {
                assert_eq!(resumed, SYMBOLS.len(), "every symbol resumed");
                reconnected = true;
            }
            Event::Disconnected { .. }
            | Event::Shutdown
            | Event::Subscribed { .. }
            | Event::Symbols(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    out
}

/// Reads until every symbol's seq passed `min_seq`; returns the last seq per symbol.
async fn read_until_seq(client: &mut Client, min_seq: u64) -> HashMap<String, u64> {
    let mut last: HashMap<String, u64> = HashMap::new();
    while SYMBOLS
        .iter()
        .any(|s| last.get(*s).copied().unwrap_or(0) < min_seq)
    {
        match next(client).await {
            Event::Ticks(batch) => {
                for r in batch.records() {
                    let name = batch.symbol(r.symbol_id.to_native()).unwrap().to_string();
                    last.insert(name, r.seq.to_native());
                }
            }
            Event::Gap(g) => panic!("gap {g:?}"),
            _ => {}
        }
    }
    last
}

#[tokio::test]
async fn dropped_connection_resumes_with_every_missed_tick_replayed() {
    let server = start_server(config(10, 2_000));
    let proxy = Proxy::start(server.local_addr()).await;
    let mut client = Client::connect(&format!("ws://{}/ws", proxy.addr), options())
        .await
        .unwrap();
    let mut last = read_until_seq(&mut client, 20).await;
    assert_eq!(client.last_seqs().len(), SYMBOLS.len());
    proxy.cut();
    let after = read_after_reconnect(&mut client, &mut last, 20, true).await;
    for s in SYMBOLS {
        let (flags, _) = after.first[s];
        assert!(
            !flags.contains(Flags::SNAPSHOT),
            "{s}: the ring still holds the gap, so no snapshot: {flags:?}"
        );
        assert!(after.contiguous[s], "{s}: every seq after the resume point");
    }
    client.close().await.unwrap();
    server.shutdown();
}

#[tokio::test]
async fn server_restart_on_the_same_port_gets_flagged_snapshots() {
    // The first run numbers far beyond what the second can reach within WAIT
    // (100 ticks/s over 4 symbols for 20 s is at most 500 per symbol), so the resume
    // points are sequences the new server never reached: the protocol answers those
    // with a snapshot. The client must see no gap.
    let first = start_server(config(4, 20_000));
    let addr = first.local_addr();
    let mut client = Client::connect(&format!("ws://{addr}/ws"), options())
        .await
        .unwrap();
    let mut last = read_until_seq(&mut client, 1_000).await;
    tokio::task::spawn_blocking(move || first.shutdown())
        .await
        .unwrap();
    let second = tokio::task::spawn_blocking(move || {
        start_server(tickcast::config::Config {
            listen: addr,
            ..config(4, 100)
        })
    })
    .await
    .unwrap();
    let before = last.clone();
    let after = read_after_reconnect(&mut client, &mut last, 3, false).await;
    for s in SYMBOLS {
        // The protocol: a resume point the server never reached gets a snapshot of the
        // symbol's latest values, if it has had any; otherwise its first tick (seq 1)
        // is the first record.
        let (flags, seq) = after.first[s];
        assert!(
            flags == Flags::SNAPSHOT || (flags == Flags::empty() && seq == 1),
            "{s}: the first record after a restart is a snapshot or the first tick: {flags:?} #{seq}"
        );
        assert!(after.contiguous[s], "{s}: live ticks follow the snapshot");
        assert!(last[s] < before[s], "{s}: the new run numbers afresh");
    }
    client.close().await.unwrap();
    tokio::task::spawn_blocking(move || second.shutdown())
        .await
        .unwrap();
}

#[tokio::test]
async fn subscribe_unsubscribe_and_server_errors_are_events() {
    let server = start_server(config(4, 200));
    let addr = server.local_addr();
    let mut client = Client::connect(&format!("ws://{addr}/ws"), Options::default())
        .await
        .unwrap();
    client.subscribe(&["NOPE"]).await.unwrap();
    match next(&mut client).await {
        Event::ServerError { message } => assert!(message.contains("NOPE"), "{message}"),
        other => panic!("unexpected {other:?}"),
    }
    client.subscribe(&["SYM1"]).await.unwrap();
    let mut ticks = 0;
    while ticks == 0 {
        match next(&mut client).await {
            Event::Ticks(b) => {
                assert!(b
                    .records()
                    .all(|r| b.symbol(r.symbol_id.to_native()) == Some("SYM1")));
                ticks += b.len();
            }
            Event::Subscribed { symbols } => assert_eq!(symbols, ["SYM1"]),
            Event::Symbols(m) => assert_eq!(m.len(), 1),
            other => panic!("unexpected {other:?}"),
        }
    }
    client.unsubscribe(&["SYM1"]).await.unwrap();
    loop {
        match next(&mut client).await {
            Event::Unsubscribed { symbols } => {
                assert_eq!(symbols, ["SYM1"]);
                break;
            }
            Event::Ticks(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        client.last_seqs().is_empty(),
        "unsubscribed symbols are forgotten"
    );
    client.close().await.unwrap();
    server.shutdown();

    // The first connection must work: a refused connect is an error, not a retry.
    let err = Client::connect(&format!("ws://{addr}/ws"), Options::default())
        .await
        .unwrap_err();
    assert!(err.is_terminal(), "{err}");
}

#[tokio::test]
async fn resubscribe_rejected_by_a_server_without_the_symbol_is_retried() {
    let first = start_server(config(1, 500));
    let addr = first.local_addr();
    let mut client = Client::connect(
        &format!("ws://{addr}/ws"),
        Options {
            backoff_initial_ms: 20,
            backoff_max_ms: 100,
            connect_timeout_ms: 1_000,
            ..Options::symbols(["SYM0"])
        },
    )
    .await
    .unwrap();
    while client.last_seqs().is_empty() {
        next(&mut client).await;
    }
    tokio::task::spawn_blocking(move || first.shutdown())
        .await
        .unwrap();
    // The new server has no feed: SYM0 exists only once a publisher sends it.
    let second = start_server(tickcast::config::Config {
        listen: addr,
        feeds: vec![],
        publish_token: Some("t".into()),
        ..config(0, 0)
    });
    loop {
        match next(&mut client).await {
            Event::ServerError { message } => {
                assert!(message.contains("SYM0"), "{message}");
                break;
            }
            Event::Ticks(_) | Event::Shutdown | Event::Disconnected { .. } => {}
            Event::Reconnected { resumed, .. } => assert_eq!(resumed, 1),
            other => panic!("unexpected {other:?}"),
        }
    }
    let (mut publisher, _) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::connect_async(format!("ws://{addr}/publish?token=t")),
    )
    .await
    .unwrap()
    .unwrap();
    use futures_util::SinkExt;
    publisher
        .send(tokio_tungstenite::tungstenite::Message::text(
            r#"{"symbol":"SYM0","kind":"trade","price":"1.5","size":"2"}"#,
        ))
        .await
        .unwrap();
    // The client retries until the server knows SYM0; it then gets the published trade
    // (as a snapshot, or live if it subscribed before the trade was sequenced).
    loop {
        match next(&mut client).await {
            Event::Ticks(batch) => {
                let r = batch.records().next().unwrap();
                assert_eq!(r.values[0].to_native(), 150_000_000);
                assert_eq!(r.seq.to_native(), 1);
                break;
            }
            Event::ServerError { .. } | Event::Subscribed { .. } | Event::Symbols(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    client.close().await.unwrap();
    second.shutdown();
}
