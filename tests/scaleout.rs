//! Scale-out: ingests and edges on a real `nats-server` with JetStream (`-js`, the
//! leader's lease), started by each test on a free loopback port with its own store
//! directory and stopped at its end. `nats-server` must be installed
//! (`tests/extra-deps` does it): a missing one fails the test, it never skips. The
//! resume test goes through HAProxy, with the configuration of `docs/deploy.md`, when
//! `haproxy` is installed, and straight to the surviving edge otherwise. The failover
//! tests run ingests as child processes, so that they can be killed (SIGKILL), paused
//! (SIGSTOP, SIGCONT) and stopped (SIGTERM) like real ones.

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
use tickcast::clock::now_ns;
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

/// A `nats-server` of this test's own, on loopback, with JetStream storing into a
/// directory of its own (kept across restarts, removed at the end).
struct Nats {
    port: u16,
    store: std::path::PathBuf,
    child: Option<Child>,
}

impl Nats {
    fn start() -> Nats {
        let port = free_port();
        let store =
            std::env::temp_dir().join(format!("tickcast-nats-{}-{port}", std::process::id()));
        let mut n = Nats {
            port,
            store,
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
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store)
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
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// A child process killed when dropped.
struct Proc(Child);

impl Proc {
    /// Sends `signal` (SIGKILL, SIGSTOP, SIGCONT, SIGTERM) to the process.
    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) with the pid of a child this test started and has not
        // reaped (it is reaped only in `wait` or `drop`); no memory is involved.
        let r = unsafe { libc::kill(self.0.id() as libc::pid_t, signal) };
        assert_eq!(r, 0, "kill({}, {signal})", self.0.id());
    }

    /// Waits for the process to exit (after SIGTERM); fails the test after [`WAIT`].
    fn wait(&mut self) {
        let deadline = Instant::now() + WAIT;
        while self.0.try_wait().expect("try_wait").is_none() {
            assert!(Instant::now() < deadline, "the process did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The lease of the tests' ingests (shorter than the default 1 s, to keep the tests
/// short) and its check interval.
const LEASE_MS: u64 = 600;
const CHECK_MS: u64 = 100;

fn node_config(role: Role, nats: &Nats) -> Config {
    let mut c = config(10, 2_000);
    c.workers = 1;
    c.role = role;
    c.nats_url = nats.url();
    c.bus.reconnect_max_delay_ms = 100;
    c.bus.snapshot_timeout_ms = 1_000;
    c.bus.lease_ms = LEASE_MS;
    c.bus.lease_check_interval_ms = CHECK_MS;
    c
}

/// Starts an ingest that finds no leader, and waits until it leads.
fn start_ingest(nats: &Nats) -> ServerHandle {
    let s = Server::start(node_config(Role::Ingest, nats)).expect("ingest starts");
    wait_for("the ingest to lead", || {
        s.stats().bus.connected.load(Relaxed) == 1 && s.stats().bus.is_leader(now_ns())
    });
    s
}

/// Starts an ingest beside a leader, and waits until it follows it.
fn start_standby(nats: &Nats) -> ServerHandle {
    let s = Server::start(node_config(Role::Ingest, nats)).expect("standby starts");
    wait_for("the standby to follow the leader", || {
        let b = &s.stats().bus;
        b.synced.load(Relaxed) == 1 && b.resync_pending.load(Relaxed) == 0
    });
    assert!(!s.stats().bus.is_leader(now_ns()));
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
    /// Per symbol: the largest `count` of those records (the updates one stands for).
    flagged_counts: HashMap<String, u32>,
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
            let c = self.flagged_counts.entry(t.symbol.clone()).or_default();
            *c = (*c).max(t.count);
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

    /// Starts counting snapshot-flagged records afresh.
    fn mark(&mut self) {
        self.snapshots.clear();
        self.flagged_counts.clear();
    }
}

/// A client that reads in a task of its own, checking every record with [`Book`],
/// while the test kills, pauses and restarts nodes.
struct Reader {
    book: std::sync::Arc<std::sync::Mutex<Book>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Reader {
    fn start(mut ws: Ws, book: Book) -> Reader {
        let book = std::sync::Arc::new(std::sync::Mutex::new(book));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (b, s) = (book.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut names = HashMap::new();
            while !s.load(Relaxed) {
                let read = tokio::time::timeout(
                    Duration::from_millis(200),
                    next_ticks(&mut ws, &mut names),
                )
                .await;
                if let Ok(Ok(ticks)) = read {
                    let mut book = b.lock().unwrap();
                    for t in ticks {
                        book.take(t);
                    }
                }
            }
        });
        Reader { book, stop, task }
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until `done` holds for the book; fails the test after [`WAIT`], or at
    /// once if the reader found a bad record.
    async fn until(&self, what: &str, done: impl Fn(&Book) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !done(&self.book()) {
            assert!(
                !self.task.is_finished(),
                "the client found a bad record (see the panic above) waiting for {what}"
            );
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops reading; fails the test if the reader found a bad record.
    async fn stop(self) -> Book {
        self.stop.store(true, Relaxed);
        self.task
            .await
            .expect("every record the client got was in order");
        std::sync::Arc::try_unwrap(self.book)
            .expect("the reader is done")
            .into_inner()
            .unwrap()
    }
}

/// An ingest child process (`tickcast serve --role ingest`, the tests' lease, a
/// synthetic feed of 10 symbols at 2,000 ticks/s) and its address.
struct IngestProc {
    proc: Proc,
    addr: SocketAddr,
}

fn spawn_ingest(nats: &Nats) -> IngestProc {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let path = std::env::temp_dir().join(format!(
        "tickcast-ingest-{}-{}.toml",
        std::process::id(),
        N.fetch_add(1, Relaxed)
    ));
    let toml = format!(
        "listen = \"127.0.0.1:0\"\nworkers = 1\npin_cores = false\nrole = \"ingest\"\n\
         nats_url = \"{}\"\n\n[bus]\nreconnect_max_delay_ms = 100\nsnapshot_timeout_ms = 1000\n\
         lease_ms = {LEASE_MS}\nlease_check_interval_ms = {CHECK_MS}\n\n\
         [[feeds]]\nkind = \"synthetic\"\nsymbols = 10\nrate = 2000\n",
        nats.url()
    );
    std::fs::write(&path, toml).unwrap();
    let (proc, addr) = spawn_binary(&["serve", "--config", path.to_str().unwrap()]);
    IngestProc { proc, addr }
}

async fn get_json(addr: SocketAddr, path: &str) -> Value {
    let (status, body) = http_get(addr, path).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Polls `ok` every 20 ms until it holds; fails the test after [`WAIT`].
async fn wait_async<F, Fut>(what: &str, mut ok: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !ok().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether the node at `addr` leads (its `/healthz`).
async fn leads(addr: SocketAddr) -> bool {
    get_json(addr, "/healthz").await["leader"] == true
}

/// Whether the ingest at `addr` follows a leader: in sync, not leading.
async fn follows(addr: SocketAddr) -> bool {
    let b = &get_json(addr, "/stats").await["bus"];
    b["synced"] == true && b["resync_pending"] == false && b["election"]["leader"] == false
}

/// How long after the leader was killed (at `killed_ns`) a standby may take to lead:
/// the documented bound (`lease_ms + lease_check_interval_ms` after the leader's last
/// renewal, plus one key-value round trip), with room for the scheduling of a test
/// machine whose cores are shared.
const TAKEOVER_BOUND_MS: u64 = LEASE_MS + CHECK_MS + 1_000;

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
    assert_eq!(health["leader"], false, "{body}");
    let health = get_json(ingest.local_addr(), "/healthz").await;
    assert_eq!(
        (&health["role"], &health["leader"]),
        (&json!("ingest"), &json!(true)),
        "{health}"
    );
    // /stats says who leads.
    let stats = get_json(ingest.local_addr(), "/stats").await;
    let election = &stats["bus"]["election"];
    assert_eq!(election["leader_node"], election["node"], "{election}");
    assert_eq!(election["leader"], true, "{election}");

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
    // The other edge got them too (it may be a little behind).
    wait_for("the other edge to count them", || {
        e2.stats().bus.malformed.load(Relaxed) >= 2
    });
    let stats: Value = serde_json::from_str(&http_get(e2.local_addr(), "/stats").await.1).unwrap();
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

/// The `n`th HAProxy configuration block of `docs/deploy.md`.
fn deploy_haproxy_block(n: usize) -> &'static str {
    let doc = include_str!("../docs/deploy.md");
    let mut rest = doc;
    for _ in 0..n {
        let at = rest
            .find("```haproxy\n")
            .expect("haproxy blocks in docs/deploy.md")
            + 11;
        rest = &rest[at..];
    }
    let start = rest
        .find("```haproxy\n")
        .expect("an haproxy block in docs/deploy.md")
        + 11;
    let len = rest[start..].find("```").unwrap();
    &rest[start..start + len]
}

/// The HAProxy configuration of `docs/deploy.md` for clients, with this test's ports.
fn haproxy_config(front: u16, edges: [SocketAddr; 2]) -> String {
    deploy_haproxy_block(0)
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{front}"))
        .replace("127.0.0.1:9101", &edges[0].to_string())
        .replace("127.0.0.1:9102", &edges[1].to_string())
}

/// Runs HAProxy with `config` (the `-db` foreground mode), killed when dropped.
fn start_haproxy(config: &str, port: u16) -> Proc {
    let bin = find("haproxy")
        .expect("haproxy is not installed: run scripts/test, whose tests/extra-deps installs it");
    let dir = std::env::temp_dir().join(format!("tickcast-haproxy-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("haproxy.cfg");
    std::fs::write(&cfg, config).unwrap();
    let child = Command::new(bin)
        .arg("-db")
        .arg("-f")
        .arg(&cfg)
        .stdout(Stdio::null())
        .spawn()
        .expect("haproxy starts");
    Proc(child)
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
        Some(_) => {
            let port = free_port();
            _haproxy = Some(start_haproxy(&haproxy_config(port, addrs), port));
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
    let standby = start_standby(&nats);
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
    // The lease survived in JetStream's store: one leader, the same, no failover.
    wait_for("the leader to renew its lease", || {
        ingest.stats().bus.is_leader(now_ns())
    });
    assert!(!standby.stats().bus.is_leader(now_ns()));
    assert_eq!(e1.stats().bus.handovers.load(Relaxed), 0);
    drop(ws);
    for s in [e1, e2, standby, ingest] {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_and_the_sequences_go_on() {
    let nats = Nats::start();
    let a = spawn_ingest(&nats);
    wait_async("the first ingest to lead", || leads(a.addr)).await;
    let b = spawn_ingest(&nats);
    wait_async("the second ingest to follow it", || follows(b.addr)).await;
    // Publishers reach the leader through HAProxy, as in docs/deploy.md.
    let port = free_port();
    let _haproxy = start_haproxy(
        &deploy_haproxy_block(1)
            .replace("127.0.0.1:8081", &format!("127.0.0.1:{port}"))
            .replace("127.0.0.1:9201", &a.addr.to_string())
            .replace("127.0.0.1:9202", &b.addr.to_string()),
        port,
    );
    let front = SocketAddr::from(([127, 0, 0, 1], port));
    let node_behind = |addr: SocketAddr| async move {
        match tokio::net::TcpStream::connect(addr).await {
            // The node that answered, if it leads (it names itself then).
            Ok(_) => match http_get(addr, "/healthz").await {
                (200, body) => {
                    let h: Value = serde_json::from_str(&body).unwrap();
                    (h["leader"] == true)
                        .then(|| h["bus"]["leader_node"].as_str().map(String::from))
                        .flatten()
                }
                _ => None,
            },
            Err(_) => None,
        }
    };
    let node_a = get_json(a.addr, "/stats").await["bus"]["election"]["node"].clone();
    let node_b = get_json(b.addr, "/stats").await["bus"]["election"]["node"].clone();
    wait_async("HAProxy to send publishers to the leader", || async {
        node_behind(front).await.as_deref() == node_a.as_str()
    })
    .await;
    let edge = start_edge(&nats);
    let reader = Reader::start(subscribe(edge.local_addr(), None).await, Book::default());
    reader.until("live ticks", |k| k.live >= 200).await;
    let bus = &edge.stats().bus;
    let (epoch, term) = (bus.epoch.load(Relaxed), bus.term.load(Relaxed));
    reader.book().mark();
    let live = reader.book().live;

    let killed_ns = now_ns();
    a.proc.signal(libc::SIGKILL);
    wait_async("the standby to lead", || leads(b.addr)).await;
    // The client reads on through the switch: `Book::take` fails on a number that goes
    // back or restarts and on an unflagged jump. Each symbol's first value from the new
    // leader comes flagged snapshot, standing for the updates the switch lost.
    reader
        .until(
            "live ticks from the new leader, and a flagged value per symbol",
            |k| k.live >= live + 200 && k.flagged_counts.len() == SYMBOLS.len(),
        )
        .await;
    assert_eq!(bus.epoch.load(Relaxed), epoch, "the same epoch: no reset");
    assert_eq!(bus.restarts.load(Relaxed), 0);
    assert_eq!(bus.handovers.load(Relaxed), 1);
    assert!(bus.term.load(Relaxed) > term);
    let stats = get_json(b.addr, "/stats").await;
    let sb = &stats["bus"];
    assert_eq!(
        (&sb["takeovers"], &sb["new_epoch_takeovers"]),
        (&json!(1), &json!(0)),
        "{sb}"
    );
    let took_ms = sb["last_takeover_ns"]
        .as_u64()
        .unwrap()
        .saturating_sub(killed_ns)
        / 1_000_000;
    assert!(
        took_ms <= TAKEOVER_BOUND_MS,
        "the standby led {took_ms} ms after the kill (lease {LEASE_MS} ms, check {CHECK_MS} ms)"
    );
    // What the switch lost is counted, and bounded by the lease at the feed's rate.
    let lost = sb["handover_ticks"].as_u64().unwrap();
    assert!(
        lost > 0 && lost <= 2_000 * TAKEOVER_BOUND_MS / 1_000,
        "{lost}"
    );
    let book = reader.stop().await;
    assert!(
        book.flagged_counts.values().all(|&c| c >= 1),
        "{:?}",
        book.flagged_counts
    );
    wait_async("HAProxy to send publishers to the new leader", || async {
        node_behind(front).await.as_deref() == node_b.as_str()
    })
    .await;
    edge.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_that_wakes_up_is_fenced() {
    let nats = Nats::start();
    let a = spawn_ingest(&nats);
    wait_async("the first ingest to lead", || leads(a.addr)).await;
    let b = spawn_ingest(&nats);
    wait_async("the second ingest to follow it", || follows(b.addr)).await;
    let edge = start_edge(&nats);
    let reader = Reader::start(subscribe(edge.local_addr(), None).await, Book::default());
    reader.until("live ticks", |k| k.live >= 200).await;
    let bus = &edge.stats().bus;

    // A paused leader (a stalled VM, a long GC pause, SIGSTOP) loses its lease.
    a.proc.signal(libc::SIGSTOP);
    wait_async("the standby to lead", || leads(b.addr)).await;
    let new_term = get_json(b.addr, "/stats").await["bus"]["lease_term"]
        .as_u64()
        .unwrap();
    wait_for("the edge to follow the new leader", || {
        bus.term.load(Relaxed) == new_term
    });
    let (epoch, stale) = (bus.epoch.load(Relaxed), bus.stale.load(Relaxed));
    // It wakes up believing it leads: its feed's backlog is sequenced under its old
    // term, and goes out until its next renewal is refused (then it is counted in its
    // `unpublished_batches`).
    a.proc.signal(libc::SIGCONT);
    wait_async("the old leader to step down", || async {
        let b = &get_json(a.addr, "/stats").await["bus"];
        b["lease_term"] == 0 && b["election"]["leader"] == false
    })
    .await;
    wait_async("the old leader to follow the new one", || follows(a.addr)).await;
    let sa = &get_json(a.addr, "/stats").await["bus"];
    eprintln!(
        "late messages of the old term dropped by the edge: {}; batches the old leader \
         held back once it knew: {}",
        bus.stale.load(Relaxed) - stale,
        sa["unpublished_batches"]
    );
    // How many of its late messages made it onto the bus depends on which of its
    // threads ran first after waking. One that is still in flight, delayed in a buffer
    // somewhere, looks like this: the old epoch and term, and the next number of a
    // symbol under the new leader's ids. The edge drops it.
    let new_ids: Value = get_json(b.addr, "/symbols").await;
    let sym0 = new_ids
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "SYM0")
        .unwrap()["id"]
        .as_u64()
        .unwrap() as u32;
    let local0 = edge.symbols().id_of("SYM0").unwrap();
    const MAGIC: i64 = 987_654_321;
    let late = tickcast::tick::Tick {
        symbol_id: sym0,
        seq: edge.lvc().latest(local0).seq() + 1,
        ts_event: now_ns(),
        ts_recv: now_ns(),
        flags: tickcast::tick::Flags::empty(),
        count: 1,
        body: tickcast::tick::Body::trade(MAGIC, 1),
    };
    let mut payload = Vec::new();
    tickcast::bus::codec::encode_ticks([late].iter(), now_ns(), &mut payload);
    let raw = async_nats::connect(nats.url()).await.expect("test client");
    let mut h = async_nats::HeaderMap::new();
    h.insert("Tickcast-Epoch", epoch.to_string().as_str());
    h.insert("Tickcast-Term", (new_term - 1).to_string().as_str());
    let stale = bus.stale.load(Relaxed);
    raw.publish_with_headers("tickcast.ticks.0", h, payload.into())
        .await
        .unwrap();
    raw.flush().await.unwrap();
    wait_for("the edge to drop the late message", || {
        bus.stale.load(Relaxed) > stale
    });
    let live = reader.book().live;
    reader
        .until("more live ticks", |k| k.live >= live + 200)
        .await;
    // Nothing of the old term reached the client (`Book::take` would have failed on a
    // number going back or jumping unflagged), and the edge saw one failover only.
    assert_eq!(bus.handovers.load(Relaxed), 1);
    assert_eq!(bus.restarts.load(Relaxed), 0);
    assert_eq!(bus.term.load(Relaxed), new_term);
    assert!(leads(b.addr).await && !leads(a.addr).await);
    let book = reader.stop().await;
    assert!(
        book.seen.values().all(|t| t.values[0] != MAGIC),
        "the late message reached the client"
    );
    edge.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_ingests_restart_one_after_the_other() {
    let nats = Nats::start();
    let mut a = spawn_ingest(&nats);
    wait_async("the first ingest to lead", || leads(a.addr)).await;
    let mut b = spawn_ingest(&nats);
    wait_async("the second ingest to follow it", || follows(b.addr)).await;
    let edge = start_edge(&nats);
    let reader = Reader::start(subscribe(edge.local_addr(), None).await, Book::default());
    reader.until("live ticks", |k| k.live >= 200).await;
    let bus = &edge.stats().bus;
    let epoch = bus.epoch.load(Relaxed);

    // The standby first, then the leader, each stopped cleanly (SIGTERM) and started
    // again: the leader gives its lease up on the way out, the standby takes it at its
    // next check and continues the numbers.
    b.proc.signal(libc::SIGTERM);
    b.proc.wait();
    let b2 = spawn_ingest(&nats);
    wait_async("the restarted standby to follow", || follows(b2.addr)).await;
    let live = reader.book().live;
    reader.until("live ticks", |k| k.live >= live + 100).await;
    a.proc.signal(libc::SIGTERM);
    a.proc.wait();
    wait_async("the standby to lead", || leads(b2.addr)).await;
    let a2 = spawn_ingest(&nats);
    wait_async("the restarted leader to follow", || follows(a2.addr)).await;
    let live = reader.book().live;
    reader
        .until("live ticks from the new leader", |k| k.live >= live + 200)
        .await;
    assert_eq!(bus.epoch.load(Relaxed), epoch, "no reset");
    assert_eq!(bus.restarts.load(Relaxed), 0);
    assert_eq!(bus.handovers.load(Relaxed), 1);
    let sb = &get_json(b2.addr, "/stats").await["bus"];
    assert_eq!(
        (&sb["takeovers"], &sb["new_epoch_takeovers"]),
        (&json!(1), &json!(0)),
        "{sb}"
    );
    reader.stop().await;
    edge.shutdown();
    drop((a2, b2));
}

/// A TCP relay between a node and NATS that can hold back what NATS sends the node,
/// so that the node falls behind while its connection stays up.
struct Relay {
    addr: SocketAddr,
    held: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(upstream: SocketAddr) -> Relay {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let held = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let h = held.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    continue;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut cr, &mut sw).await;
                });
                let h = h.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match sr.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        while h.load(Relaxed) {
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                        if cw.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Relay { addr, held, task }
    }

    fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    fn hold(&self, on: bool) {
        self.held.store(on, Relaxed);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One writer-core counter of `s`, summed over its cores.
fn core_total(s: &ServerHandle, name: &str) -> u64 {
    s.stats().to_json()["totals"][name].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resuming_onto_a_lagging_edge_waits_for_it_and_gets_no_snapshot() {
    let nats = Nats::start();
    let ingest = start_ingest(&nats);
    let ahead = start_edge(&nats);
    // The lagging edge reaches NATS through a relay that can hold its ticks back.
    let relay = Relay::start(SocketAddr::from(([127, 0, 0, 1], nats.port))).await;
    let mut c = node_config(Role::Edge, &nats);
    c.nats_url = relay.url();
    c.resume_wait_ms = 2_000;
    let behind = Server::start(c).expect("edge starts");
    wait_for("the lagging edge's first snapshot", || {
        behind.stats().bus.synced.load(Relaxed) == 1
    });

    let mut ws = subscribe(ahead.local_addr(), None).await;
    let mut book = Book::default();
    book.read_until(&mut ws, |k| k.live >= 100).await;
    // The second edge falls behind: it gets nothing more from NATS for a while (once
    // what was already on its way has arrived).
    relay.hold(true);
    let mut seen = (behind.stats().bus.messages.load(Relaxed), Instant::now());
    wait_for("the lagging edge to stop receiving", || {
        let now = behind.stats().bus.messages.load(Relaxed);
        if now != seen.0 {
            seen = (now, Instant::now());
        }
        seen.1.elapsed() > Duration::from_millis(200)
    });
    let lvc_seq = |s: &str| {
        let id = behind.symbols().id_of(s).unwrap();
        behind.lvc().latest(id).seq()
    };
    book.read_until(&mut ws, |k| {
        SYMBOLS
            .iter()
            .all(|s| k.last.get(*s).is_some_and(|&l| l > lvc_seq(s)))
    })
    .await;
    drop(ws);
    let last = book.last.clone();
    // The client moves to the lagging edge, which has not reached any of its points.
    let mut ws = subscribe(behind.local_addr(), Some(&last)).await;
    wait_for("the resumes to wait", || {
        core_total(&behind, "resumes_waited") == SYMBOLS.len() as u64
    });
    relay.hold(false);
    let mut after = Book::resumed(&last);
    let mut first: HashMap<String, (u64, Vec<String>)> = HashMap::new();
    while first.len() < SYMBOLS.len() || after.live < 100 {
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
        assert_eq!(*seq, last[s] + 1, "{s}: right after the last seq seen");
        assert!(
            flags.iter().all(|f| f == "replay"),
            "{s}: replayed or live, not a snapshot: {flags:?}"
        );
    }
    assert_eq!(
        core_total(&behind, "resumes_caught_up"),
        SYMBOLS.len() as u64
    );
    assert_eq!(core_total(&behind, "resumes_timed_out"), 0);
    drop(ws);
    for s in [behind, ahead, ingest] {
        s.shutdown();
    }
}

/// Books through the bus: an edge that starts while the ingest's books are well under
/// way, and one that starts after its feed ended, both end with exactly the ingest's
/// books (the snapshot carries each book whole, the bus the changes after it), and so
/// does a book subscriber of the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edges_get_whole_books_from_the_ingests_snapshot() {
    use tickcast::client::{Client, Event, Options};
    use tickcast::feed::synthetic::SyntheticConfig;
    use tickcast::feed::FeedSpec;
    const LIMIT: u64 = 4_000;
    let nats = Nats::start();
    let mut cfg = node_config(Role::Ingest, &nats);
    cfg.feeds = vec![FeedSpec::Synthetic(SyntheticConfig {
        symbols: SYMBOLS.len(),
        rate: 2_000,
        limit: LIMIT,
        book_depth: 6,
        ..SyntheticConfig::default()
    })];
    let ingest = Server::start(cfg).expect("ingest starts");
    wait_for("the ingest's books to be under way", || {
        ingest.stats().sequencer.ticks.load(Relaxed) > LIMIT / 3
    });
    let early = start_edge(&nats);
    wait_for("the ingest's feed to end", || {
        let feeds = ingest.stats().feeds.lock().unwrap();
        !feeds.is_empty() && feeds.iter().all(|f| f.finished.load(Relaxed) > 0)
    });
    let late = start_edge(&nats);
    let books = |s: &ServerHandle| -> Vec<_> {
        SYMBOLS
            .iter()
            .map(|n| s.symbols().id_of(n).map(|id| s.lvc().book(id)))
            .collect()
    };
    let want = books(&ingest);
    assert!(want.iter().all(|b| b
        .as_ref()
        .is_some_and(|b| b.seq > 100 && !b.bids.is_empty())));
    for (name, edge) in [("early", &early), ("late", &late)] {
        wait_for(&format!("the {name} edge's books"), || books(edge) == want);
    }
    let options = Options {
        channels: Some(vec!["book".into()]),
        ..Options::symbols(SYMBOLS)
    };
    let mut client = Client::connect(&format!("ws://{}/ws", early.local_addr()), options)
        .await
        .expect("the client connects");
    let synced = |client: &Client| {
        SYMBOLS.iter().zip(&want).all(|(n, w)| {
            let w = w.as_ref().unwrap();
            client.book(n).is_some_and(|b| {
                b.is_synced()
                    && b.seq() == w.seq
                    && (b.book().bids(), b.book().asks()) == (&w.bids[..], &w.asks[..])
            })
        })
    };
    while !synced(&client) {
        match tokio::time::timeout(WAIT, client.next())
            .await
            .expect("books in time")
        {
            Ok(Event::BookGap { symbol, gap }) => panic!("book gap {symbol} {gap:?}"),
            Ok(_) => {}
            Err(e) => panic!("client: {e}"),
        }
    }
    late.shutdown();
    early.shutdown();
    ingest.shutdown();
}
