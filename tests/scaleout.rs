//! Scale-out: one ingest and two edges on a real `nats-server`, started by each test on
//! a free loopback port and stopped at its end. `nats-server` must be installed
//! (`tests/extra-deps` does it): a missing one fails the test, it never skips. The
//! resume test goes through HAProxy, with the configuration of `docs/deploy.md`, when
//! `haproxy` is installed, and straight to the surviving edge otherwise.

mod common;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tickcast::bus::Role;
use tickcast::config::Config;
use tickcast::server::{Server, ServerHandle};
use tokio_tungstenite::tungstenite::Message;

const SYMBOLS: [&str; 4] = ["SYM0", "SYM1", "SYM2", "SYM3"];

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().unwrap().port()
}

/// Polls `ok` every 5 ms until it holds; fails the test after [`WAIT`].
fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn find(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"])
        .map(|d| std::path::Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// A `nats-server` of this test's own, on loopback.
struct Nats {
    port: u16,
    child: Option<Child>,
}

impl Nats {
    fn start() -> Nats {
        let mut n = Nats {
            port: free_port(),
            child: None,
        };
        n.restart();
        n
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on the same port.
    fn restart(&mut self) {
        let bin = find("nats-server").expect(
            "nats-server is not installed: run scripts/test, whose tests/extra-deps installs \
             it (apt-get install nats-server)",
        );
        let child = Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        wait_for("nats-server to listen", || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok()
        });
    }

    /// Kills the server (SIGKILL: the clients see the connection drop).
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn node_config(role: Role, nats: &Nats) -> Config {
    let mut c = config(10, 2_000);
    c.workers = 1;
    c.role = role;
    c.nats_url = nats.url();
    c.bus.reconnect_max_delay_ms = 100;
    c.bus.snapshot_timeout_ms = 1_000;
    c
}

fn start_ingest(nats: &Nats) -> ServerHandle {
    let s = Server::start(node_config(Role::Ingest, nats)).expect("ingest starts");
    wait_for("the ingest to reach NATS", || {
        s.stats().bus.connected.load(Relaxed) == 1
    });
    s
}

fn start_edge(nats: &Nats) -> ServerHandle {
    let s = Server::start(node_config(Role::Edge, nats)).expect("edge starts");
    wait_for("the edge's first snapshot", || {
        s.stats().bus.synced.load(Relaxed) == 1
    });
    s
}

/// Subscribes to [`SYMBOLS`] in JSON, optionally resuming.
async fn subscribe(addr: SocketAddr, resume: Option<&HashMap<String, u64>>) -> Ws {
    let mut ws = connect(addr).await;
    let mut msg = json!({"op":"subscribe","symbols":SYMBOLS,"format":"json"});
    if let Some(r) = resume {
        msg["resume"] = json!(r);
    }
    send_json(&mut ws, msg).await;
    ws
}

/// Per-symbol sequence accounting of one client: every record must be newer than
/// the last, and a jump is allowed only at a record flagged snapshot.
#[derive(Debug, Default)]
struct Book {
    last: HashMap<String, u64>,
    /// Every record seen, by (symbol, seq), flags cleared.
    seen: HashMap<(String, u64), Seen>,
    /// Records with no flag (live ticks).
    live: usize,
    /// Per symbol: snapshot-flagged records seen since `mark`.
    snapshots: HashMap<String, usize>,
    names: HashMap<u32, String>,
    /// The source restarted: a snapshot-flagged record may go back in numbers.
    restarted: bool,
}

impl Book {
    fn resumed(last: &HashMap<String, u64>) -> Book {
        Book {
            last: last.clone(),
            ..Book::default()
        }
    }

    fn take(&mut self, t: Seen) {
        let snapshot = t.flags.iter().any(|f| f == "snapshot");
        if let Some(&prev) = self.last.get(&t.symbol) {
            assert!(
                t.seq > prev || snapshot && self.restarted,
                "{}: seq {} after {prev} (flags {:?})",
                t.symbol,
                t.seq,
                t.flags
            );
            assert!(
                t.seq == prev + 1 || snapshot,
                "{}: silent gap {prev} -> {} (flags {:?})",
                t.symbol,
                t.seq,
                t.flags
            );
        }
        if snapshot {
            *self.snapshots.entry(t.symbol.clone()).or_default() += 1;
        }
        if t.flags.is_empty() {
            self.live += 1;
        }
        self.last.insert(t.symbol.clone(), t.seq);
        let key = (t.symbol.clone(), t.seq);
        self.seen.insert(
            key,
            Seen {
                flags: Vec::new(),
                ..t
            },
        );
    }

    /// Reads until `done` holds, checking every record.
    async fn read_until(&mut self, ws: &mut Ws, mut done: impl FnMut(&Book) -> bool) {
        while !done(self) {
            if let Ok(ticks) = next_ticks(ws, &mut self.names).await {
                for t in ticks {
                    self.take(t);
                }
            }
        }
    }

    /// Reads until the connection fails or closes (the edge was killed); returns
    /// without panicking.
    async fn read_until_closed(&mut self, ws: &mut Ws) {
        loop {
            let m = tokio::time::timeout(WAIT, ws.next())
                .await
                .expect("the killed edge's connection ends in time");
            match m {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if let Some(list) = v.as_array() {
                        for t in list {
                            self.take(seen_from_json(t));
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            }
        }
    }

    fn reached(&self, want: &HashMap<String, u64>) -> bool {
        want.iter()
            .all(|(s, &seq)| self.last.get(s).is_some_and(|&l| l >= seq))
    }
}

#[tokio::test]
async fn an_edge_is_alive_but_not_ready_until_it_has_the_ingests_snapshot() {
    let nats = Nats::start();
    let edge = Server::start(node_config(Role::Edge, &nats)).expect("edge starts");
    wait_for("the edge to reach NATS", || {
        edge.stats().bus.connected.load(Relaxed) == 1
    });
    let addr = edge.local_addr();
    let (status, body) = http_get(addr, "/healthz").await;
    assert_eq!(status, 200, "liveness: the process serves: {body}");
    assert!(body.contains("\"status\":\"syncing\""), "{body}");
    let (status, body) = http_get(addr, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    let readiness: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(readiness["status"], "not_ready");
    assert_eq!(readiness["reasons"][0]["source"], "bus", "{body}");

    let ingest = start_ingest(&nats);
    let deadline = Instant::now() + WAIT;
    while !ready(addr).await {
        assert!(Instant::now() < deadline, "the edge never became ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    edge.shutdown();
    ingest.shutdown();
}

#[tokio::test]
async fn edges_carry_the_ingests_sequence_numbers() {
    let nats = Nats::start();
    let ingest = start_ingest(&nats);
    let e1 = start_edge(&nats);
    let e2 = start_edge(&nats);
    let (status, body) = http_get(e1.local_addr(), "/healthz").await;
    assert_eq!(status, 200, "{body}");
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (health["status"].as_str(), health["role"].as_str()),
        (Some("ok"), Some("edge"))
    );

    let mut a = subscribe(e1.local_addr(), None).await;
    let mut b = subscribe(e2.local_addr(), None).await;
    let mut c = subscribe(ingest.local_addr(), None).await;
    let (mut ba, mut bb, mut bc) = (Book::default(), Book::default(), Book::default());
    ba.read_until(&mut a, |k| k.live >= 400).await;
    let target = ba.last.clone();
    bb.read_until(&mut b, |k| k.reached(&target)).await;
    bc.read_until(&mut c, |k| k.reached(&target)).await;

    // The same tick has the same number, times and values on both edges and at the
    // ingest itself.
    let mut common = 0;
    for (key, t) in &ba.seen {
        for other in [&bb, &bc] {
            if let Some(o) = other.seen.get(key) {
                assert_eq!(o, t, "{key:?}");
                common += 1;
            }
        }
    }
    assert!(common >= 400, "only {common} ticks seen on both sides");

    // Garbage on the bus is counted and skipped; the edges keep going.
    let raw = async_nats::connect(nats.url()).await.expect("test client");
    raw.publish("tickcast.ticks.0", "not a batch".into())
        .await
        .unwrap();
    let mut h = async_nats::HeaderMap::new();
    h.insert("Tickcast-Epoch", "1");
    raw.publish_with_headers("tickcast.ticks.0", h, vec![1u8; 20].into())
        .await
        .unwrap();
    raw.flush().await.unwrap();
    wait_for("the malformed messages to be counted", || {
        e1.stats().bus.malformed.load(Relaxed) >= 2
    });
    let more = ba.live + 200;
    ba.read_until(&mut a, |k| k.live >= more).await;
    let stats: Value = serde_json::from_str(&http_get(e2.local_addr(), "/stats").await.1).unwrap();
    assert!(
        stats["bus"]["malformed"].as_u64() >= Some(2),
        "{}",
        stats["bus"]
    );
    assert_eq!(stats["bus"]["gaps"], 0, "{}", stats["bus"]);
    drop((a, b, c));
    for s in [e1, e2, ingest] {
        s.shutdown();
    }
}

/// A `tickcast serve` child process and the address it printed.
fn spawn_binary(args: &[&str]) -> (Proc, SocketAddr) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tickcast"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("tickcast starts");
    let out = child.stdout.take().unwrap();
    let proc = Proc(child);
    let mut line = String::new();
    std::io::BufReader::new(out)
        .read_line(&mut line)
        .expect("startup line");
    // "tickcast listening on http://127.0.0.1:PORT (WebSocket: …)"
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (proc, addr)
}

/// The HAProxy configuration of `docs/deploy.md`, with this test's ports.
fn haproxy_config(front: u16, edges: [SocketAddr; 2]) -> String {
    let doc = include_str!("../docs/deploy.md");
    let start = doc
        .find("```haproxy\n")
        .expect("an haproxy block in docs/deploy.md")
        + 11;
    let len = doc[start..].find("```").unwrap();
    doc[start..start + len]
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{front}"))
        .replace("127.0.0.1:9101", &edges[0].to_string())
        .replace("127.0.0.1:9102", &edges[1].to_string())
}

/// Whether `addr` answers `/readyz` with 200 (an edge: once it has its snapshot).
async fn ready(addr: SocketAddr) -> bool {
    match tokio::net::TcpStream::connect(addr).await {
        Ok(_) => http_get(addr, "/readyz").await.0 == 200,
        Err(_) => false,
    }
}

#[tokio::test]
async fn a_client_resumes_on_the_other_edge_without_a_gap() {
    let nats = Nats::start();
    let url = nats.url();
    let ingest = start_ingest(&nats);
    let edge_args = [
        "serve",
        "--role",
        "edge",
        "--nats",
        &url,
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--no-pin",
    ];
    let mut edges = vec![
        Some(spawn_binary(&edge_args)),
        Some(spawn_binary(&edge_args)),
    ];
    let addrs = [edges[0].as_ref().unwrap().1, edges[1].as_ref().unwrap().1];
    for a in addrs {
        let deadline = Instant::now() + WAIT;
        while !ready(a).await {
            assert!(Instant::now() < deadline, "edge {a} never became ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // Through HAProxy when it is installed, as in docs/deploy.md.
    let mut _haproxy = None;
    let front = match find("haproxy") {
        Some(bin) => {
            let port = free_port();
            let dir = std::env::temp_dir().join(format!("tickcast-haproxy-{port}"));
            std::fs::create_dir_all(&dir).unwrap();
            let cfg = dir.join("haproxy.cfg");
            std::fs::write(&cfg, haproxy_config(port, addrs)).unwrap();
            let child = Command::new(bin)
                .arg("-db")
                .arg("-f")
                .arg(&cfg)
                .stdout(Stdio::null())
                .spawn()
                .expect("haproxy starts");
            _haproxy = Some(Proc(child));
            let front = SocketAddr::from(([127, 0, 0, 1], port));
            let deadline = Instant::now() + WAIT;
            while !ready(front).await {
                assert!(Instant::now() < deadline, "haproxy never served /readyz");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            front
        }
        None => {
            eprintln!("haproxy not installed: connecting to the edges directly");
            addrs[0]
        }
    };

    let mut ws = subscribe(front, None).await;
    let mut book = Book::default();
    book.read_until(&mut ws, |k| k.live >= 200).await;

    // Kill the edge holding the connection, mid-stream.
    let mut holder = None;
    for (i, a) in addrs.iter().enumerate() {
        let stats: Value = serde_json::from_str(&http_get(*a, "/stats").await.1).unwrap();
        if stats["totals"]["connections"] == 1 {
            holder = Some(i);
        }
    }
    let holder = holder.expect("one edge holds the client's connection");
    drop(edges[holder].take());
    book.read_until_closed(&mut ws).await;
    let last = book.last.clone();
    assert_eq!(last.len(), SYMBOLS.len());

    // The survivor has every tick the client saw (both follow the same ingest; this
    // only waits for it to have read them too).
    let survivor = addrs[1 - holder];
    let mut probe = subscribe(survivor, None).await;
    Book::default()
        .read_until(&mut probe, |k| k.reached(&last))
        .await;
    drop(probe);

    // Reconnect to the same address; the dead edge may refuse until HAProxy notices.
    let deadline = Instant::now() + WAIT;
    let mut ws = loop {
        let url = format!("ws://{front}/ws");
        match tokio_tungstenite::connect_async(url).await {
            Ok((ws, _)) => break ws,
            Err(e) => {
                assert!(Instant::now() < deadline, "no edge took the reconnect: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    send_json(
        &mut ws,
        json!({"op":"subscribe","symbols":SYMBOLS,"format":"json","resume":last}),
    )
    .await;
    let mut after = Book::resumed(&last);
    let mut first: HashMap<String, (u64, Vec<String>)> = HashMap::new();
    while first.len() < SYMBOLS.len() || after.live < 200 {
        if let Ok(ticks) = next_ticks(&mut ws, &mut after.names).await {
            for t in ticks {
                first
                    .entry(t.symbol.clone())
                    .or_insert((t.seq, t.flags.clone()));
                after.take(t);
            }
        }
    }
    for s in SYMBOLS {
        let (seq, flags) = &first[s];
        assert_eq!(
            *seq,
            last[s] + 1,
            "{s}: resumed right after the last seq seen"
        );
        assert!(
            flags.iter().all(|f| f == "replay"),
            "{s}: replayed or live, not a snapshot: {flags:?}"
        );
    }
    drop(ws);
    drop(edges);
    ingest.shutdown();
}

#[tokio::test]
async fn edges_survive_a_nats_restart_and_resynchronise() {
    let mut nats = Nats::start();
    let ingest = start_ingest(&nats);
    let e1 = start_edge(&nats);
    let e2 = start_edge(&nats);
    let mut ws = subscribe(e1.local_addr(), None).await;
    let mut book = Book::default();
    book.read_until(&mut ws, |k| k.live >= 100).await;

    nats.stop();
    for e in [&e1, &e2] {
        wait_for("the edge to notice the outage", || {
            e.stats().bus.connected.load(Relaxed) == 0
        });
    }
    let (status, body) = http_get(e1.local_addr(), "/healthz").await;
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (status, health["status"].as_str()),
        (200, Some("degraded")),
        "{body}"
    );
    let metrics = http_get(e1.local_addr(), "/metrics").await.1;
    assert!(
        metrics.contains("tickcast_bus_connected{role=\"edge\"} 0"),
        "{metrics}"
    );
    // The client is still served: it gets its answers.
    send_json(&mut ws, json!({"op":"unsubscribe","symbols":["SYM9"]})).await;
    let mut names = HashMap::new();
    loop {
        match next_ticks(&mut ws, &mut names).await {
            Ok(ticks) => ticks.into_iter().for_each(|t| book.take(t)),
            Err(v) if v["type"] == "unsubscribed" => break,
            Err(_) => {}
        }
    }
    // The ingest goes on meanwhile, and drops what it cannot publish: once it has
    // noticed, every subscribed symbol moves on without the edges.
    wait_for("the ingest to notice the outage", || {
        ingest.stats().bus.connected.load(Relaxed) == 0
    });
    let seq_at_ingest = |s: &str| {
        let id = ingest.symbols().id_of(s).unwrap();
        ingest.lvc().latest(id).seq()
    };
    let noticed: Vec<u64> = SYMBOLS.iter().map(|s| seq_at_ingest(s)).collect();
    wait_for("the ingest to move on during the outage", || {
        SYMBOLS
            .iter()
            .zip(&noticed)
            .all(|(s, &n)| seq_at_ingest(s) > n)
    });

    nats.restart();
    for e in [&e1, &e2] {
        wait_for("the edge to resynchronise", || {
            let b = &e.stats().bus;
            b.connected.load(Relaxed) == 1
                && b.resyncs.load(Relaxed) >= 2
                && b.resync_pending.load(Relaxed) == 0
        });
    }
    // Every symbol gets a snapshot-flagged record past the outage, and live ticks
    // follow; `Book::take` fails on any unflagged jump.
    book.snapshots.clear();
    let live = book.live;
    book.read_until(&mut ws, |k| {
        k.snapshots.len() == SYMBOLS.len() && k.live >= live + 200
    })
    .await;
    let (status, body) = http_get(e1.local_addr(), "/healthz").await;
    assert_eq!(status, 200);
    assert!(body.contains("\"status\":\"ok\""), "{body}");
    let stats: Value = serde_json::from_str(&http_get(e1.local_addr(), "/stats").await.1).unwrap();
    assert!(
        stats["bus"]["disconnects"].as_u64() >= Some(1),
        "{}",
        stats["bus"]
    );
    drop(ws);
    for s in [e1, e2, ingest] {
        s.shutdown();
    }
}

#[tokio::test]
async fn an_ingest_restart_resynchronises_the_edges() {
    let nats = Nats::start();
    let ingest = start_ingest(&nats);
    let edge = start_edge(&nats);
    let mut ws = subscribe(edge.local_addr(), None).await;
    let mut book = Book::default();
    book.read_until(&mut ws, |k| k.live >= 100).await;

    ingest.shutdown();
    let ingest = start_ingest(&nats);
    wait_for("the edge to follow the new ingest", || {
        edge.stats().bus.restarts.load(Relaxed) == 1
            && edge.stats().bus.resync_pending.load(Relaxed) == 0
    });
    // The new ingest's numbers start over: the client is told with a snapshot-flagged
    // record per symbol (lower numbers are allowed only there), then live ticks.
    book.restarted = true;
    book.snapshots.clear();
    let live = book.live;
    book.read_until(&mut ws, |k| {
        k.snapshots.len() == SYMBOLS.len() && k.live >= live + 100
    })
    .await;
    drop(ws);
    edge.shutdown();
    ingest.shutdown();
}
