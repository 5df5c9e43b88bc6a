//! `loadgen idle`: server memory per idle subscribed connection.
//!
//! Starts a tickcast server as a child process (or measures one given by `--pid` and
//! `--url`), reads its resident set from `/proc/PID/status`, opens `connections`
//! WebSocket connections that each subscribe to one symbol (round robin over the
//! server's symbols) and keep reading what they are sent, waits until every one has
//! its ack and its snapshot, lets the server settle, and reads the resident set again.
//! The difference divided by the connections is the figure: what one more idle
//! subscriber costs the server. The server runs in its own process so that the
//! client's memory is not counted.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use fastwebsockets::{Frame, OpCode, Payload};
use serde::Serialize;

use crate::client::{self, WsUrl};

/// Settings of an idle-memory run.
#[derive(Debug, Clone)]
pub struct IdleSettings {
    /// Connections to open.
    pub connections: usize,
    /// Connections being opened at once.
    pub concurrency: usize,
    /// Encoding asked for: `binary` or `json`.
    pub format: String,
    /// An external server to measure (with `pid`); `None` starts `server_bin`.
    pub url: Option<String>,
    /// The external server's process id.
    pub pid: Option<u32>,
    /// The tickcast binary to start.
    pub server_bin: PathBuf,
    /// Started server: synthetic ticks per second over all symbols.
    pub rate: u64,
    /// Started server: symbols.
    pub symbols: usize,
    /// Started server: writer cores.
    pub workers: usize,
    /// Time to let the server settle once every connection is subscribed.
    pub settle: Duration,
}

/// What an idle-memory run measured.
#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    /// Connections subscribed.
    pub connections: usize,
    /// Encoding.
    pub format: String,
    /// Started server's feed rate (0 for an external server: unknown).
    pub rate: u64,
    /// Server RSS before the connections, KiB.
    pub rss_before_kib: u64,
    /// Server RSS with every connection subscribed and settled, KiB.
    pub rss_after_kib: u64,
    /// Server RSS once the connections are closed again, KiB.
    pub rss_closed_kib: u64,
    /// (after − before) / connections, bytes.
    pub bytes_per_connection: f64,
    /// Messages the connections received while measured (they were live).
    pub messages_received: u64,
}

impl IdleReport {
    /// Human-readable lines.
    pub fn table(&self) -> String {
        format!(
            "idle connections: {} ({}), feed {} ticks/s\n\
             server RSS before: {} KiB\n\
             server RSS with the connections: {} KiB\n\
             server RSS after closing them: {} KiB\n\
             per connection: {:.0} bytes ({:.2} KiB)\n\
             messages received meanwhile: {}",
            self.connections,
            self.format,
            self.rate,
            self.rss_before_kib,
            self.rss_after_kib,
            self.rss_closed_kib,
            self.bytes_per_connection,
            self.bytes_per_connection / 1024.0,
            self.messages_received,
        )
    }
}

/// `VmRSS` of a process, in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS in /proc/{pid}/status"))
}

/// A started server, killed when dropped.
struct ChildServer(Child);

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("bind a probe port")?;
    Ok(l.local_addr()?.port())
}

fn start_child(s: &IdleSettings) -> anyhow::Result<(ChildServer, WsUrl)> {
    let port = free_port()?;
    let dir = std::env::temp_dir().join(format!("loadgen-idle-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let cfg = dir.join("tickcast.toml");
    // Every connection comes from 127.0.0.1: lift the per-address cap.
    std::fs::write(
        &cfg,
        format!(
            "[limits]\nmax_connections_per_ip = {}\nmax_connections = {}\n",
            s.connections + 64,
            s.connections + 64
        ),
    )?;
    let child = Command::new(&s.server_bin)
        .arg("serve")
        .arg("--config")
        .arg(&cfg)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--workers", &s.workers.to_string()])
        .args(["--symbols", &s.symbols.to_string()])
        .args(["--rate", &s.rate.to_string()])
        .arg("--no-pin")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", s.server_bin.display()))?;
    let url = WsUrl::parse(&format!("ws://127.0.0.1:{port}/ws"))?;
    Ok((ChildServer(child), url))
}

async fn wait_ready(url: &WsUrl, want_symbols: usize) -> anyhow::Result<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok((200, body)) = client::http_get(&url.authority(), "/symbols").await {
            let v: serde_json::Value = serde_json::from_str(&body)?;
            let names: Vec<String> = v
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s["name"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            if !names.is_empty() && names.len() >= want_symbols {
                return Ok(names);
            }
        }
        if Instant::now() > deadline {
            bail!("the server at {url} did not list its symbols within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Opens one subscriber: subscribe, then read until the ack and a first data message.
async fn open(url: &WsUrl, symbol: &str, format: &str) -> anyhow::Result<client::Ws> {
    let mut ws = client::connect(url, &[]).await?;
    ws.set_auto_pong(true);
    let msg = serde_json::json!({"op": "subscribe", "symbols": [symbol], "format": format});
    ws.write_frame(Frame::text(Payload::Owned(msg.to_string().into_bytes())))
        .await?;
    let mut acked = false;
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), ws.read_frame())
            .await
            .map_err(|_| anyhow!("no ack and snapshot within 30 s"))??;
        match frame.opcode {
            OpCode::Text if !acked => {
                let v: serde_json::Value = serde_json::from_slice(&frame.payload)?;
                match v["type"].as_str() {
                    Some("subscribed") => acked = true,
                    Some("error") => bail!("subscribe refused: {v}"),
                    _ => {}
                }
            }
            OpCode::Binary | OpCode::Text if acked => return Ok(ws),
            OpCode::Close => bail!("the server closed the connection"),
            _ => {}
        }
    }
}

/// Reads and discards what an open subscriber is sent until `stop`.
async fn idle(mut ws: client::Ws, messages: Rc<AtomicU64>, stop: Arc<AtomicBool>) {
    loop {
        if stop.load(Relaxed) {
            let _ = ws.write_frame(Frame::close(1000, b"")).await;
            return;
        }
        match tokio::time::timeout(Duration::from_millis(200), ws.read_frame()).await {
            Err(_) => {}
            Ok(Ok(f)) if matches!(f.opcode, OpCode::Binary | OpCode::Text) => {
                messages.fetch_add(1, Relaxed);
            }
            Ok(Ok(f)) if f.opcode == OpCode::Close => return,
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return,
        }
    }
}

/// Runs an idle-memory measurement.
pub fn run(s: &IdleSettings, progress: bool) -> anyhow::Result<IdleReport> {
    crate::run::raise_nofile(s.connections as u64 + 256)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let (_child, url, pid) = match (&s.url, s.pid) {
            (Some(u), Some(pid)) => (None, WsUrl::parse(u)?, pid),
            (None, None) => {
                let (child, url) = start_child(s)?;
                let pid = child.0.id();
                (Some(child), url, pid)
            }
            _ => bail!("--url and --pid go together"),
        };
        let names = wait_ready(&url, if s.url.is_some() { 1 } else { s.symbols }).await?;
        // Let the server's threads and allocator warm up before the baseline.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = rss_kib(pid)?;
        let ready = Rc::new(AtomicU64::new(0));
        let messages = Rc::new(AtomicU64::new(0));
        let failed = Rc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let gate = Arc::new(tokio::sync::Semaphore::new(s.concurrency.max(1)));
        let mut tasks = Vec::with_capacity(s.connections);
        for i in 0..s.connections {
            let permit = gate.clone().acquire_owned().await?;
            let url = url.clone();
            let symbol = names[i % names.len()].clone();
            let format = s.format.clone();
            let (ready, messages, failed, stop) = (
                ready.clone(),
                messages.clone(),
                failed.clone(),
                stop.clone(),
            );
            tasks.push(tokio::task::spawn_local(async move {
                let opened = open(&url, &symbol, &format).await;
                drop(permit);
                match opened {
                    Ok(ws) => {
                        ready.fetch_add(1, Relaxed);
                        idle(ws, messages, stop).await;
                    }
                    Err(e) => {
                        failed.fetch_add(1, Relaxed);
                        eprintln!("connection failed: {e:#}");
                    }
                }
            }));
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while (ready.load(Relaxed) + failed.load(Relaxed)) < s.connections as u64 {
            if Instant::now() > deadline {
                bail!(
                    "only {} of {} connections subscribed within 120 s",
                    ready.load(Relaxed),
                    s.connections
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if failed.load(Relaxed) > 0 {
            bail!("{} connections failed", failed.load(Relaxed));
        }
        if progress {
            eprintln!("{} connections subscribed; settling", s.connections);
        }
        let counted_from = messages.load(Relaxed);
        tokio::time::sleep(s.settle).await;
        let after = rss_kib(pid)?;
        let received = messages.load(Relaxed) - counted_from;
        stop.store(true, Relaxed);
        for t in tasks {
            let _ = t.await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let closed = rss_kib(pid)?;
        Ok(IdleReport {
            connections: s.connections,
            format: s.format.clone(),
            rate: if s.url.is_some() { 0 } else { s.rate },
            rss_before_kib: before,
            rss_after_kib: after,
            rss_closed_kib: closed,
            bytes_per_connection: (after as f64 - before as f64) * 1024.0 / s.connections as f64,
            messages_received: received,
        })
    })
}
