//! One run: start the server if asked, open the connections over the client threads,
//! publish on schedule, print progress, drain, and merge everything into a
//! [`Summary`].
//!
//! Phases, each bounded in time: connect (≤ `connect_timeout_s`), warm-up and
//! measurement (`warmup_s + duration_s`), drain (≤ `drain_s`), stop (connections
//! close at once; the in-process server shuts down with its own bounded linger).

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use hdrhistogram::Histogram;
use tickcast::config::Config;
use tickcast::feed::synthetic::SyntheticConfig;
use tickcast::feed::FeedSpec;
use tickcast::server::{Server, ServerHandle};
use tickcast::symbol::Symbol;
use tokio::sync::{watch, Semaphore};

use crate::client::{
    self, Live, PublishReport, PublishSpec, SharedWindow, SubSpec, ThreadCtx, WsUrl,
};
use crate::cpu::Probe;
use crate::now_ns;
use crate::recorder::{new_histogram, Recorder, Window};
use crate::report::{self, Percentiles, Summary};
use crate::select::{Picker, Subscription};
use crate::settings::Settings;

const SEC: u64 = 1_000_000_000;

/// Raises `RLIMIT_NOFILE` to at least `needed` descriptors: the soft limit up to the
/// hard one, and the hard one too when the process may (root, or
/// `CAP_SYS_RESOURCE`). Returns the limit in force, or an error saying what to do.
pub fn raise_nofile(needed: u64) -> anyhow::Result<u64> {
    use rlimit::Resource;
    let (soft, hard) = Resource::NOFILE.get().context("getrlimit(RLIMIT_NOFILE)")?;
    if soft >= needed {
        return Ok(soft);
    }
    if hard >= needed {
        Resource::NOFILE
            .set(needed, hard)
            .context("setrlimit(RLIMIT_NOFILE)")?;
    } else if Resource::NOFILE.set(needed, needed).is_err() {
        // Not allowed to raise the hard limit: take what there is.
        let _ = Resource::NOFILE.set(hard, hard);
    }
    let (soft, hard) = Resource::NOFILE.get().context("getrlimit(RLIMIT_NOFILE)")?;
    if soft < needed {
        bail!(
            "need {needed} file descriptors but RLIMIT_NOFILE is {soft} (hard {hard}) and \
             cannot be raised: run with `ulimit -n {needed}` or fewer --connections"
        );
    }
    Ok(soft)
}

/// Starts the in-process server for `s` and waits until its symbols exist.
fn start_server(s: &Settings, token: &str) -> anyhow::Result<ServerHandle> {
    let feeds = if s.rate > 0 {
        vec![FeedSpec::Synthetic(SyntheticConfig {
            symbols: s.symbols,
            rate: s.rate,
            book_depth: s.book_depth,
            ..SyntheticConfig::default()
        })]
    } else {
        Vec::new()
    };
    let mut config = Config {
        listen: "127.0.0.1:0".parse().expect("valid address"),
        workers: s.server_workers,
        pin_cores: s.pin,
        feeds,
        publish_token: (s.publish_rate > 0).then(|| token.to_string()),
        ..Config::default()
    };
    // Every loadgen connection comes from 127.0.0.1: lift the per-address cap (the
    // publisher and the HTTP requests need a few more).
    let wanted = s.connections + 16;
    config.limits.max_connections_per_ip = config.limits.max_connections_per_ip.max(wanted);
    config.limits.max_connections = config.limits.max_connections.max(wanted);
    let server = Server::start(config).map_err(|e| anyhow!("cannot start tickcast: {e}"))?;
    // Publishers and subscribers need the names before the first tick.
    for i in 0..s.symbols {
        let sym = Symbol::new(&format!("SYM{i}")).expect("SYMn is a valid symbol");
        server
            .symbols()
            .intern(sym)
            .map_err(|e| anyhow!("cannot intern SYM{i}: {e}"))?;
    }
    Ok(server)
}

/// `(id, name)` of every symbol the server knows, from `/symbols`.
async fn fetch_symbols(url: &WsUrl) -> anyhow::Result<Vec<(u32, String)>> {
    let (status, body) = client::http_get(&url.authority(), "/symbols").await?;
    if status != 200 {
        bail!("GET /symbols: HTTP {status}");
    }
    let v: serde_json::Value = serde_json::from_str(&body).context("GET /symbols: bad JSON")?;
    let list = v
        .as_array()
        .ok_or_else(|| anyhow!("GET /symbols: not a list"))?;
    let mut out: Vec<(u32, String)> = list
        .iter()
        .filter_map(|s| Some((s["id"].as_u64()? as u32, s["name"].as_str()?.to_string())))
        .collect();
    out.sort();
    Ok(out)
}

/// What the server says it sent: `totals.records_out` of `/stats`.
async fn fetch_records_out(url: &WsUrl) -> Option<u64> {
    let (status, body) = client::http_get(&url.authority(), "/stats").await.ok()?;
    if status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["totals"]["records_out"].as_u64()
}

/// Publishes one tick for each of `names` so an external server learns them.
async fn prime(url: &WsUrl, names: &[String]) -> anyhow::Result<()> {
    let mut ws = fastwebsockets::FragmentCollector::new(client::connect(url, &[]).await?);
    let now = now_ns();
    let ticks: Vec<serde_json::Value> = names
        .iter()
        .map(|n| serde_json::json!({"symbol": n, "kind": "trade", "ts_event": now, "price": "100", "size": "1"}))
        .collect();
    for chunk in ticks.chunks(500) {
        let text = serde_json::to_vec(chunk)?;
        ws.write_frame(fastwebsockets::Frame::text(fastwebsockets::Payload::Owned(
            text,
        )))
        .await?;
    }
    let _ = ws
        .write_frame(fastwebsockets::Frame::close(1000, b""))
        .await;
    Ok(())
}

/// One client thread's work.
struct ThreadPlan {
    specs: Vec<SubSpec>,
    cpu: Option<core_affinity::CoreId>,
}

fn client_thread(
    plan: ThreadPlan,
    window: Arc<SharedWindow>,
    live: Arc<Live>,
    stop: watch::Receiver<bool>,
    progress: mpsc::Sender<Histogram<u64>>,
    concurrency: usize,
    connect_deadline_ns: u64,
) -> anyhow::Result<Recorder> {
    if let Some(cpu) = plan.cpu {
        core_affinity::set_for_current(cpu);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot build a client runtime")?;
    let local = tokio::task::LocalSet::new();
    let ctx = Rc::new(ThreadCtx {
        rec: std::cell::RefCell::new(Recorder::new()),
        window,
        live,
        stop: stop.clone(),
    });
    let task_ctx = ctx.clone();
    local.block_on(&rt, async move {
        let ctx = task_ctx;
        let gate = Arc::new(Semaphore::new(concurrency));
        let mut tasks = Vec::with_capacity(plan.specs.len());
        for spec in plan.specs {
            let ctx = ctx.clone();
            let gate = gate.clone();
            tasks.push(tokio::task::spawn_local(async move {
                // At most `concurrency` handshakes at once; the permit is held only
                // while connecting, and a closed gate cannot happen here.
                let permit = gate.acquire_owned().await.ok();
                client::subscriber(ctx, spec, connect_deadline_ns, permit).await;
            }));
        }
        let ticker_ctx = ctx.clone();
        let mut ticker_stop = stop.clone();
        let ticker = tokio::task::spawn_local(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            every.tick().await;
            loop {
                tokio::select! {
                    _ = every.tick() => {
                        let h = {
                            let mut rec = ticker_ctx.rec.borrow_mut();
                            let h = rec.interval.clone();
                            rec.interval.reset();
                            h
                        };
                        let _ = progress.send(h);
                    }
                    _ = ticker_stop.changed() => break,
                }
            }
        });
        for t in tasks {
            let _ = t.await;
        }
        ticker.abort();
    });
    drop(local);
    let rec = ctx.rec.borrow().clone();
    Ok(rec)
}

/// Runs `settings`; `progress` prints a line each second to stderr.
pub fn run(settings: &Settings, progress: bool) -> anyhow::Result<(Summary, Histogram<u64>)> {
    settings.validate()?;
    let s = settings;
    let in_process = s.url.is_none();
    // Each connection is one socket here, and one more in an in-process server; the
    // margin covers listeners, epoll and the like.
    let fds = s.connections as u64 * if in_process { 2 } else { 1 } + 128;
    let nofile = raise_nofile(fds)?;
    if progress {
        eprintln!("loadgen: RLIMIT_NOFILE {nofile} (need about {fds})");
    }
    let token = s
        .publish_token
        .clone()
        .unwrap_or_else(|| format!("loadgen-{:x}", now_ns()));
    let server = if in_process {
        Some(start_server(s, &token)?)
    } else {
        None
    };
    let url = match (&s.url, &server) {
        (Some(u), _) => WsUrl::parse(u)?,
        (None, Some(h)) => WsUrl {
            host: "127.0.0.1".into(),
            port: h.local_addr().port(),
            path: "/ws".into(),
        },
        (None, None) => unreachable!("in-process runs start a server"),
    };
    let setup = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let publish_url = url.with_path(&format!("/publish?token={token}"));

    // The symbol universe, primed on an external server when publishing needs it.
    let wanted: Vec<String> = (0..s.symbols).map(|i| format!("SYM{i}")).collect();
    let mut universe = setup.block_on(fetch_symbols(&url))?;
    if s.publish_rate > 0 && !in_process {
        let missing: Vec<String> = wanted
            .iter()
            .filter(|n| !universe.iter().any(|(_, u)| u == *n))
            .cloned()
            .collect();
        if !missing.is_empty() {
            setup.block_on(prime(&publish_url, &missing))?;
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                universe = setup.block_on(fetch_symbols(&url))?;
                if missing.iter().all(|n| universe.iter().any(|(_, u)| u == n)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    if universe.is_empty() && s.connections > 0 {
        bail!("the server has no symbols to subscribe to");
    }

    // Subscriptions, seeded.
    let threads = s.thread_count();
    let cpus = if s.pin {
        core_affinity::get_core_ids().unwrap_or_default()
    } else {
        Vec::new()
    };
    let mut plans: Vec<ThreadPlan> = (0..threads)
        .map(|t| ThreadPlan {
            specs: Vec::new(),
            cpu: (!cpus.is_empty()).then(|| cpus[cpus.len() - 1 - t % cpus.len()]),
        })
        .collect();
    let mut picker = Picker::new(
        s.select,
        universe.len(),
        s.symbols_per_conn,
        s.zipf_s,
        s.seed,
    );
    let stalled = (s.connections as f64 * s.stalled_fraction).round() as usize;
    for i in 0..s.connections {
        let symbols = match picker.next_subscription() {
            Subscription::All => Vec::new(),
            Subscription::Some(list) => list.into_iter().map(|k| universe[k].1.clone()).collect(),
        };
        // A stalled subscriber takes every symbol: the heaviest slow consumer, whose
        // socket buffers fill within seconds, so that the server must conflate it.
        let symbols = if i < stalled { Vec::new() } else { symbols };
        plans[i % threads].specs.push(SubSpec {
            url: url.clone(),
            symbols,
            format: s.format,
            max_rate: s.max_rate,
            channels: s.channels.clone(),
            stalled: i < stalled,
        });
    }

    // Client threads.
    let window = Arc::new(SharedWindow::default());
    let live = Arc::new(Live {
        server_books: server.as_ref().map(|h| h.lvc().clone()),
        ..Live::default()
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let (prog_tx, prog_rx) = mpsc::channel::<Histogram<u64>>();
    let started_unix_s = now_ns() / SEC;
    let connect_deadline = now_ns() + (s.connect_timeout_s * 1e9) as u64;
    let mut handles = Vec::with_capacity(threads);
    for (t, plan) in plans.into_iter().enumerate() {
        let (w, l, st, p) = (
            window.clone(),
            live.clone(),
            stop_rx.clone(),
            prog_tx.clone(),
        );
        let conc = s.connect_concurrency;
        handles.push(
            std::thread::Builder::new()
                .name(format!("loadgen-{t}"))
                .spawn(move || client_thread(plan, w, l, st, p, conc, connect_deadline))
                .context("cannot start a client thread")?,
        );
    }
    drop(prog_tx);

    // Connect phase.
    let connect_started = Instant::now();
    let n = s.connections as u64;
    let mut last_print = Instant::now();
    while live.connected.load(Relaxed) + live.failed.load(Relaxed) + live.stalled.load(Relaxed) < n
        && now_ns() < connect_deadline + SEC
    {
        std::thread::sleep(Duration::from_millis(20));
        if progress && last_print.elapsed() >= Duration::from_secs(1) {
            last_print = Instant::now();
            eprintln!(
                "loadgen: connecting {}/{} ({} failed)",
                live.connected.load(Relaxed),
                n,
                live.failed.load(Relaxed)
            );
        }
    }
    if progress {
        eprintln!(
            "loadgen: {} connections subscribed, {} failed; {} thread(s)",
            live.connected.load(Relaxed),
            live.failed.load(Relaxed),
            threads
        );
    }

    let connect_s = connect_started.elapsed().as_secs_f64();

    // Warm-up and measurement.
    let t0 = now_ns();
    let w = Window {
        from_ns: t0 + (s.warmup_s * 1e9) as u64,
        to_ns: t0 + ((s.warmup_s + s.duration_s) * 1e9) as u64,
    };
    window.set(w);
    let pub_stop = Arc::new(AtomicBool::new(false));
    let publisher = if s.publish_rate > 0 {
        let ids: Vec<(String, u32)> = wanted
            .iter()
            .filter_map(|n| {
                universe
                    .iter()
                    .find(|(_, u)| u == n)
                    .map(|(id, u)| (u.clone(), *id))
            })
            .collect();
        let spec = PublishSpec {
            url: publish_url.clone(),
            format: s.publish_format,
            rate: s.publish_rate,
            batch: s.publish_batch,
            symbols: ids,
            start_ns: t0,
            end_ns: w.to_ns,
        };
        let stop = pub_stop.clone();
        Some(
            std::thread::Builder::new()
                .name("loadgen-publish".into())
                .spawn(move || -> PublishReport {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            return PublishReport {
                                errors: 1,
                                first_error: Some(e.to_string()),
                                ..PublishReport::default()
                            }
                        }
                    };
                    let local = tokio::task::LocalSet::new();
                    local.block_on(&rt, client::publisher(spec, stop))
                })
                .context("cannot start the publisher thread")?,
        )
    } else {
        None
    };
    let mut last_records = live.records.load(Relaxed);
    let mut last_at = Instant::now();
    let mut interval = new_histogram();
    let probe = match (in_process, s.server_pid) {
        (true, _) => Some(Probe::InProcess),
        (false, Some(pid)) => Some(Probe::Process(pid)),
        (false, None) => None,
    };
    let mut cpu_from = None;
    let mut cpu_to = None;
    // Bounded: ends at the window's end; one pass per second at most.
    while now_ns() < w.to_ns {
        let until = if cpu_from.is_none() {
            w.from_ns
        } else {
            w.to_ns
        };
        let left = Duration::from_nanos(until.saturating_sub(now_ns()));
        std::thread::sleep(left.min(Duration::from_secs(1)));
        if cpu_from.is_none() && now_ns() >= w.from_ns {
            cpu_from = probe.and_then(|p| p.seconds().ok());
        }
        for h in prog_rx.try_iter() {
            let _ = interval.add(&h);
        }
        if progress && last_at.elapsed() >= Duration::from_millis(900) {
            let records = live.records.load(Relaxed);
            let rate = (records - last_records) as f64 / last_at.elapsed().as_secs_f64();
            let phase = if now_ns() < w.from_ns {
                " (warm-up)"
            } else {
                ""
            };
            eprintln!(
                "[{:6.1} s] {:>12} records/s  p99 {:>10}  connections {}{}",
                (now_ns() - t0) as f64 / 1e9,
                report::human_count(rate),
                if interval.is_empty() {
                    "-".to_string()
                } else {
                    report::human_ns(interval.value_at_quantile(0.99))
                },
                live.connected.load(Relaxed),
                phase
            );
            interval.reset();
            last_records = records;
            last_at = Instant::now();
        }
    }

    if let Some(p) = probe {
        cpu_to = p.seconds().ok();
    }
    // Drain: stop the sources, then wait until what the server sent has arrived. An
    // external server's feed cannot be stopped from here and keeps sending, so the
    // two counts never settle equal: there, the count the server reports once the
    // publisher has stopped is the mark, and drained means every record up to it
    // arrived.
    pub_stop.store(true, Relaxed);
    let publish = publisher.map(|h| h.join().unwrap_or_default());
    if let Some(h) = &server {
        h.stop_feeds();
    }
    let settle = Duration::from_millis(300).max(if s.max_rate > 0.0 {
        Duration::from_secs_f64(2.0 / s.max_rate)
    } else {
        Duration::ZERO
    });
    let drain_deadline = Instant::now() + Duration::from_secs_f64(s.drain_s);
    let mut server_out = None;
    let mut drained = false;
    let mut equal_since: Option<Instant> = None;
    while Instant::now() < drain_deadline {
        let got = live.records.load(Relaxed);
        if server.is_none() {
            if server_out.is_none() {
                server_out = setup.block_on(fetch_records_out(&url));
            }
            if server_out.is_some_and(|mark| got >= mark) {
                drained = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        let out = server.as_ref().map(|h| h.stats().total(|c| &c.records_out));
        server_out = out;
        match out {
            Some(o) if o == got => {
                let since = *equal_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= settle {
                    drained = true;
                    break;
                }
            }
            _ => equal_since = None,
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    // Stop.
    let _ = stop_tx.send(true);
    let mut total = Recorder::new();
    for h in handles {
        match h.join() {
            Ok(Ok(rec)) => total.merge(&rec),
            Ok(Err(e)) => return Err(e),
            Err(_) => bail!("a client thread panicked"),
        }
    }
    if let Some(h) = server {
        h.shutdown();
    }
    let c = total.counters;
    let server_cpu = match (cpu_from, cpu_to) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let publish = publish.unwrap_or_default();
    if let Some(e) = &publish.first_error {
        eprintln!("loadgen: publisher: {e}");
    }
    let h = total.hist;
    let summary = Summary {
        settings: s.clone(),
        url: url.to_string(),
        in_process_server: in_process,
        threads,
        started_unix_s,
        connect_s,
        measured_s: s.duration_s,
        clock: "receipt time (CLOCK_REALTIME) - ts_event, client and server on the same host"
            .into(),
        percentiles_ns: Percentiles::of(&h),
        mean_ns: if h.is_empty() { 0.0 } else { h.mean() },
        records: c.records,
        records_measured: h.len(),
        records_per_sec: c.window_records as f64 / s.duration_s,
        bytes: c.bytes,
        bytes_per_sec: c.window_bytes as f64 / s.duration_s,
        connections: c.connected,
        connections_failed: c.connect_failed,
        closed_by_server: c.closed_by_server,
        gaps: c.gaps,
        gap_updates: c.gap_updates,
        conflated: c.conflated,
        conflated_updates: c.conflated_updates,
        conflation_episodes: c.conflation_episodes,
        stalled: c.stalled,
        snapshots: c.snapshots,
        replays: c.replays,
        resyncs: c.resyncs,
        duplicates: c.duplicates,
        book_gaps: c.book_gaps,
        books_checked: c.books_checked,
        book_mismatches: c.book_mismatches,
        clock_skew: c.clock_skew,
        errors: c.errors + publish.errors,
        published: publish.published,
        server_records_out: server_out,
        drained,
        server_cpu_s: server_cpu,
        server_cpu_s_per_million: server_cpu
            .filter(|_| c.window_records > 0)
            .map(|cpu| cpu / (c.window_records as f64 / 1e6)),
        spectrum: report::spectrum(&h),
    };
    Ok((summary, h))
}
