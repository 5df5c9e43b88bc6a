//! The ingest's bus thread: the election, and while this node leads, every sequenced
//! batch to NATS and the edges' snapshot requests answered from the last-value cache;
//! while it does not, the leader's stream to the sequencer thread.
//!
//! [`BusSink`] runs on the sequencer's thread: it encodes the batch (once per tick,
//! grouped by shard), stamps it with the epoch and term it was sequenced under, and
//! queues it for the `bus-publisher` thread without waiting. The queue holds
//! `bus.publish_queue_batches` batches; when it is full, or NATS is away, the batch is
//! dropped and counted (`dropped_batches`): the sequencer never waits for the bus, and
//! the edges find the gap in the sequence numbers and resynchronise from a snapshot,
//! which is cheaper than replaying a backlog of stale ticks.
//!
//! The `bus-publisher` thread runs a current-thread tokio runtime with the NATS client
//! and two tasks:
//!
//! - the **election** ([`super::election`]): every `bus.lease_check_interval_ms` it
//!   renews or checks the lease in the JetStream key-value bucket, and reports
//!   leadership changes;
//! - the **main loop**: while leading, it publishes the queued batches of the current
//!   term in order (a batch of an older term is counted in `unpublished_batches`, not
//!   sent) and answers `<prefix>.snapshot` requests with pages of (symbol names,
//!   latest trade and quote of each); while standing by, it hands the leader's
//!   messages and snapshots to the sequencer thread ([`super::ingest::Command`]).
//!   Leadership changes go to the sequencer thread through the same queue, after
//!   every message received before them, so a standby takes over with everything the
//!   old leader published.
//!
//! A leader stops publishing when it learns it lost the lease (its renewal is
//! refused); a leader that was paused past its lease publishes until then, and the
//! edges drop those messages by their older term. On shutdown the leader publishes
//! what the sequencer still hands over, then gives the lease up so that a standby
//! takes over at its next check.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use async_nats::{HeaderMap, Subject};
use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::{mpsc, oneshot, watch};

use super::codec;
use super::edge::{SnapshotError, SnapshotPage};
use super::election::{self, Action, Change, Election, LeaseValue, Observed, Written};
use super::ingest::Command;
use crate::clock::now_ns;
use crate::config::Config;
use crate::lvc::LastValueCache;
use crate::sequencer::{Batch, BatchSink};
use crate::stats::Stats;
use crate::symbol::{Symbol, SymbolTable};
use crate::tick::Tick;

use std::sync::atomic::Ordering::Relaxed;

/// Most symbols in one snapshot page, whatever the server's `max_payload` allows.
const MAX_PAGE_SYMBOLS: usize = 1024;

/// Most names announced by one message; a longer announcement (a new leader's whole
/// table) goes first in messages of its own.
const MAX_ANNOUNCED: usize = 1024;

/// One shard's part of a batch, queued for NATS.
#[derive(Debug)]
struct Outgoing {
    shard: u32,
    /// The epoch and term it was sequenced under.
    epoch: u64,
    term: u64,
    /// Symbols announced with this batch: the first id and the comma-joined names.
    symbols: Option<Arc<(u32, String)>>,
    payload: Bytes,
    ticks: usize,
}

/// The sequencer's hand-off to the bus (see the module docs). Never blocks.
#[derive(Debug)]
pub struct BusSink {
    tx: mpsc::Sender<Outgoing>,
    shards: u32,
    stats: Arc<Stats>,
    /// Per shard: the ticks of the current batch (reused).
    grouped: Vec<Vec<Tick>>,
    buf: Vec<u8>,
}

impl BatchSink for BusSink {
    fn publish(&mut self, batch: &Batch<'_>) {
        let bus = &self.stats.bus;
        if bus.connected.load(Relaxed) == 0 {
            // Queued ticks would reach the edges only after they have resynchronised
            // from a snapshot anyway: drop them now.
            self.dropped();
            return;
        }
        // Written by the sequencer thread itself when this node took the lease.
        let (epoch, term) = (bus.epoch.load(Relaxed), bus.term.load(Relaxed));
        let mut names = batch.new_symbols;
        let mut from = batch.new_symbols_from;
        while names.len() > MAX_ANNOUNCED {
            let (head, rest) = names.split_at(MAX_ANNOUNCED);
            let symbols = Some(Arc::new((from, codec::join_names(head))));
            codec::encode_ticks([].iter(), now_ns(), &mut self.buf);
            self.queue(0, epoch, term, symbols, 0);
            from += MAX_ANNOUNCED as u32;
            names = rest;
        }
        let symbols = (!names.is_empty()).then(|| Arc::new((from, codec::join_names(names))));
        for g in &mut self.grouped {
            g.clear();
        }
        for t in batch.ticks {
            self.grouped[(t.symbol_id % self.shards) as usize].push(*t);
        }
        let ts_out = now_ns();
        for shard in 0..self.shards {
            let ticks = std::mem::take(&mut self.grouped[shard as usize]);
            // Announcements go with every shard's message, so that an edge learns the
            // names whichever subject it reads first; an empty shard carries them only
            // when nothing else does.
            if ticks.is_empty() && (symbols.is_none() || shard > 0 && !batch.ticks.is_empty()) {
                self.grouped[shard as usize] = ticks;
                continue;
            }
            codec::encode_ticks(ticks.iter(), ts_out, &mut self.buf);
            self.queue(shard, epoch, term, symbols.clone(), ticks.len());
            self.grouped[shard as usize] = ticks;
        }
    }
}

impl BusSink {
    /// Queues `self.buf` as one message.
    fn queue(
        &mut self,
        shard: u32,
        epoch: u64,
        term: u64,
        symbols: Option<Arc<(u32, String)>>,
        ticks: usize,
    ) {
        let out = Outgoing {
            shard,
            epoch,
            term,
            symbols,
            payload: Bytes::copy_from_slice(&self.buf),
            ticks,
        };
        match self.tx.try_send(out) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.dropped(),
            // The publisher thread has stopped: the server is shutting down.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    fn dropped(&self) {
        let n = self.stats.bus.dropped_batches.fetch_add(1, Relaxed) + 1;
        if n <= 10 || n.is_power_of_two() {
            tracing::warn!(
                dropped = n,
                "bus: batch dropped (NATS away or not keeping up); edges will resynchronise"
            );
        }
    }
}

/// What the `bus-publisher` thread needs.
#[derive(Debug)]
pub struct PublisherContext {
    /// Settings (`nats_url`, `bus`).
    pub config: Config,
    /// The ingest's symbol table, for snapshot pages.
    pub symbols: Arc<SymbolTable>,
    /// The ingest's last-value cache, for snapshot pages.
    pub lvc: Arc<LastValueCache>,
    /// Counters (`stats.bus`).
    pub stats: Arc<Stats>,
    /// To the sequencer thread: the leader's stream, snapshots, leadership changes.
    pub commands: crossbeam_channel::Sender<Command>,
    /// Becomes true when the server shuts down.
    pub shutdown: watch::Receiver<bool>,
}

/// Starts the `bus-publisher` thread; returns the sink to give the sequencer.
pub fn start(ctx: PublisherContext) -> std::io::Result<(BusSink, std::thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel(ctx.config.bus.publish_queue_batches);
    let shards = ctx.config.bus.shards.max(1);
    let sink = BusSink {
        tx,
        shards,
        stats: ctx.stats.clone(),
        grouped: (0..shards).map(|_| Vec::new()).collect(),
        buf: Vec::new(),
    };
    let thread = super::spawn_runtime_thread("bus-publisher", move || run(ctx, rx))?;
    Ok((sink, thread))
}

/// Leadership as the election task reports it to the main loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Leadership {
    /// The term this node leads under.
    term: Option<u64>,
    /// The epoch of the lease value it replaced when it took the lease.
    previous_epoch: u64,
}

/// The cached header values of the epoch and term being published.
#[derive(Debug, Default)]
struct Stamp {
    epoch: u64,
    term: u64,
    epoch_text: String,
    term_text: String,
}

impl Stamp {
    fn set(&mut self, epoch: u64, term: u64) {
        if self.epoch != epoch || self.epoch_text.is_empty() {
            self.epoch = epoch;
            self.epoch_text = epoch.to_string();
        }
        if self.term != term || self.term_text.is_empty() {
            self.term = term;
            self.term_text = term.to_string();
        }
    }

    fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(codec::EPOCH, self.epoch_text.as_str());
        h.insert(codec::TERM, self.term_text.as_str());
        h
    }
}

async fn next_of(sub: &mut Option<async_nats::Subscriber>) -> Option<async_nats::Message> {
    match sub {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

async fn run(mut ctx: PublisherContext, mut rx: mpsc::Receiver<Outgoing>) {
    let bus = ctx.config.bus.clone();
    let (events_tx, mut events) = mpsc::channel(64);
    let client = match super::connect(&ctx.config, ctx.stats.clone(), Some(events_tx)).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(url = %ctx.config.nats_url, error = %e, "bus: cannot use the NATS URL");
            return;
        }
    };
    let node = ctx
        .stats
        .bus
        .election
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .node
        .clone();
    tracing::info!(url = %ctx.config.nats_url, node = %node, shards = bus.shards, bucket = %bus.lease_bucket(), "bus: ingest joining the election");
    let (lead_tx, mut lead_rx) = watch::channel(Leadership::default());
    let (release_tx, release_rx) = oneshot::channel();
    let (reconnect_tx, reconnect_rx) = mpsc::channel(4);
    let election = tokio::spawn(run_election(
        client.clone(),
        bus.clone(),
        node,
        ctx.stats.clone(),
        lead_tx,
        release_rx,
        reconnect_rx,
    ));
    let subjects: Vec<Subject> = (0..bus.shards.max(1))
        .map(|s| Subject::from(bus.ticks_subject(s)))
        .collect();
    let mut stamp = Stamp::default();
    let mut page = Vec::new();
    let mut leading = Leadership::default();
    let mut ticks: Option<async_nats::Subscriber> = None;
    let mut requests: Option<async_nats::Subscriber> = None;
    let mut fetch: Option<tokio::task::JoinHandle<Result<Vec<SnapshotPage>, SnapshotError>>> = None;
    let mut failures = 0u32;
    let mut next_try = tokio::time::Instant::now();
    let mut poll = tokio::time::interval(Duration::from_millis(bus.lease_check_interval_ms));
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        // Subscriptions follow the role: the leader answers snapshot requests, a
        // standby reads the ticks. (Subscribing while NATS is away is queued by the
        // client and sent when it connects.)
        if let Some(term) = leading.term {
            ticks = None;
            if let Some(f) = fetch.take() {
                f.abort();
            }
            // Snapshots are answered once the sequencer thread leads under this term
            // (it sets the term and epoch it publishes under): before that, the cache
            // and the epoch are still the follower's.
            if requests.is_none() && ctx.stats.bus.term.load(Relaxed) == term {
                requests = client.subscribe(bus.snapshot_subject()).await.ok();
            }
        } else {
            requests = None;
            if ticks.is_none() {
                ticks = client.subscribe(bus.ticks_wildcard()).await.ok();
            }
            let bus_status = &ctx.stats.bus;
            if fetch.is_none()
                && bus_status.connected.load(Relaxed) == 1
                && bus_status.resync_pending.load(Relaxed) == 1
                && tokio::time::Instant::now() >= next_try
            {
                let (client, bus) = (client.clone(), bus.clone());
                fetch = Some(tokio::spawn(async move {
                    let mut decoder = codec::Decoder::new();
                    super::edge::fetch_snapshot(&client, &bus, &mut decoder).await
                }));
            }
        }
        tokio::select! {
            biased;
            _ = ctx.shutdown.changed() => break,
            changed = lead_rx.changed() => {
                if changed.is_err() {
                    break;
                }
                let now = *lead_rx.borrow_and_update();
                if now.term != leading.term {
                    // Everything the old leader published that has arrived goes to the
                    // sequencer first.
                    if let Some(sub) = ticks.as_mut() {
                        while let Some(Some(msg)) = sub.next().now_or_never() {
                            forward(&ctx, Command::Batch(msg));
                        }
                    }
                    let command = match now.term {
                        Some(term) => Command::Lead { term, previous_epoch: now.previous_epoch },
                        None => Command::StepDown,
                    };
                    // Rare, and the sequencer never waits for this thread: blocking
                    // for a full queue cannot deadlock.
                    let _ = ctx.commands.send(command);
                    leading = now;
                }
            }
            out = rx.recv() => {
                let Some(out) = out else { break };
                publish(&client, &ctx, &subjects, &mut stamp, leading, out).await;
            }
            req = next_of(&mut requests) => match req {
                Some(req) => answer(&client, &ctx, leading, req, &mut page).await,
                None => requests = None,
            },
            // While a snapshot is on its way, the leader's messages wait in the
            // subscription: those published after the snapshot must reach the
            // sequencer after it (the edge's loop does the same by awaiting it).
            msg = next_of(&mut ticks), if fetch.is_none() => match msg {
                Some(msg) => forward(&ctx, Command::Batch(msg)),
                None => ticks = None,
            },
            done = async { fetch.as_mut().expect("guarded").await }, if fetch.is_some() => {
                fetch = None;
                match done {
                    Ok(Ok(pages)) => {
                        failures = 0;
                        let _ = ctx.commands.send(Command::Snapshot(pages));
                        // If it is still wanted then, the snapshot did not apply.
                        next_try = tokio::time::Instant::now() + Duration::from_millis(bus.snapshot_timeout_ms);
                    }
                    Ok(Err(e)) => {
                        ctx.stats.bus.snapshot_failures.fetch_add(1, Relaxed);
                        failures = failures.saturating_add(1);
                        if failures <= 3 || failures.is_power_of_two() {
                            tracing::warn!(error = %e, attempts = failures, "bus: no snapshot from a leader yet");
                        }
                        next_try = tokio::time::Instant::now() + bus.backoff(failures);
                    }
                    Err(_) => {}
                }
            }
            ev = events.recv() => match ev {
                Some(async_nats::Event::Connected) => {
                    let _ = reconnect_tx.try_send(());
                    if leading.term.is_none() {
                        let _ = ctx.commands.send(Command::Reconnected);
                    }
                }
                Some(async_nats::Event::Disconnected) => {
                    tracing::warn!("bus: NATS connection lost");
                }
                Some(async_nats::Event::SlowConsumer(_)) => {
                    ctx.stats.bus.lost.fetch_add(1, Relaxed);
                    tracing::warn!("bus: NATS dropped messages (slow consumer)");
                }
                Some(_) => {}
                None => break,
            },
            _ = poll.tick() => {}
        }
    }
    // Shutting down. A leader publishes what the sequencer still hands over (it stops
    // when the feeds have), then gives the lease up.
    if leading.term.is_some() {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while let Ok(Some(out)) = tokio::time::timeout_at(deadline, rx.recv()).await {
            publish(&client, &ctx, &subjects, &mut stamp, leading, out).await;
        }
    }
    let _ = tokio::time::timeout(Duration::from_millis(500), client.flush()).await;
    let _ = release_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(1), election).await;
    let _ = tokio::time::timeout(Duration::from_millis(500), client.flush()).await;
}

/// Hands a command to the sequencer thread without waiting; a message that finds the
/// queue full is lost, and counted, which asks for a snapshot.
fn forward(ctx: &PublisherContext, command: Command) {
    if ctx.commands.try_send(command).is_err() {
        ctx.stats.bus.lost.fetch_add(1, Relaxed);
    }
}

/// Publishes one queued batch if this node leads under the term it was sequenced in.
async fn publish(
    client: &async_nats::Client,
    ctx: &PublisherContext,
    subjects: &[Subject],
    stamp: &mut Stamp,
    leading: Leadership,
    out: Outgoing,
) {
    let status = &ctx.stats.bus;
    if leading.term != Some(out.term) {
        status.unpublished_batches.fetch_add(1, Relaxed);
        return;
    }
    stamp.set(out.epoch, out.term);
    let mut headers = stamp.headers();
    if let Some(sym) = &out.symbols {
        headers.insert(codec::SYMBOLS_FROM, sym.0.to_string());
        headers.insert(codec::SYMBOLS, sym.1.as_str());
    }
    let len = out.payload.len() as u64;
    let subject = subjects[out.shard as usize % subjects.len()].clone();
    match client
        .publish_with_headers(subject, headers, out.payload)
        .await
    {
        Ok(()) => {
            status.messages.fetch_add(1, Relaxed);
            status.ticks.fetch_add(out.ticks as u64, Relaxed);
            status.bytes.fetch_add(len, Relaxed);
            status.last_message_ns.store(now_ns(), Relaxed);
        }
        Err(e) => {
            let n = status.publish_errors.fetch_add(1, Relaxed) + 1;
            if n <= 10 || n.is_power_of_two() {
                tracing::warn!(error = %e, errors = n, "bus: publish failed");
            }
        }
    }
}

/// Opens (creating it if needed) the lease bucket: one value, kept on disk by the
/// NATS server so that terms survive its restart. The bucket's stream is created here
/// with the key-value conventions (`KV_<bucket>` on `$KV.<bucket>.>`, one message per
/// key, roll-ups, direct gets), since async-nats's `create_key_value` first reads the
/// account's JetStream limits in a form NATS 2.9 does not send.
async fn open_bucket(
    js: &async_nats::jetstream::Context,
    bucket: &str,
) -> Result<kv::Store, String> {
    use async_nats::jetstream::stream;
    js.get_or_create_stream(stream::Config {
        name: format!("KV_{bucket}"),
        description: Some("tickcast: the ingest leader's lease".into()),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        storage: stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        num_replicas: 1,
        ..Default::default()
    })
    .await
    .map_err(|e| format!("cannot create the lease bucket {bucket:?}: {e}"))?;
    js.get_key_value(bucket)
        .await
        .map_err(|e| format!("cannot open the lease bucket {bucket:?}: {e}"))
}

/// The election task (see the module docs).
async fn run_election(
    client: async_nats::Client,
    bus: super::BusConfig,
    node: String,
    stats: Arc<Stats>,
    lead_tx: watch::Sender<Leadership>,
    mut release: oneshot::Receiver<()>,
    mut reconnects: mpsc::Receiver<()>,
) {
    let status = &stats.bus;
    let check = Duration::from_millis(bus.lease_check_interval_ms);
    let lease = Duration::from_millis(bus.lease_ms);
    // A key-value operation that takes longer than half a lease has failed.
    let js = async_nats::jetstream::context::ContextBuilder::new()
        .timeout(lease / 2)
        .build(client);
    let bucket = bus.lease_bucket();
    let mut attempt = 0u32;
    let store = loop {
        match open_bucket(&js, &bucket).await {
            Ok(s) => break s,
            Err(e) => {
                attempt = attempt.saturating_add(1);
                let e = format!("{e} (is JetStream enabled? nats-server -js)");
                if attempt <= 3 || attempt.is_power_of_two() {
                    tracing::error!(error = %e, "bus: no election: this ingest cannot lead");
                }
                status.set_election(None, Some(&e));
                tokio::select! {
                    _ = tokio::time::sleep(bus.backoff(attempt).max(check)) => {}
                    _ = &mut release => return,
                }
            }
        }
    };
    status.set_election(None, Some(""));
    let mut e = Election::new(node, lease);
    let mut tick = tokio::time::interval(check);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            biased;
            _ = &mut release => {
                if let Some(action) = e.release(status.epoch.load(Relaxed)) {
                    perform(&store, action).await;
                    status.lease_term.store(0, Relaxed);
                    tracing::info!("bus: lease given up");
                }
                return;
            }
            Some(()) = reconnects.recv() => {
                e.on_reconnect();
                continue;
            }
            _ = tick.tick() => {}
        }
        let now = std::time::Instant::now();
        let mut next = Some(e.tick(now, status.epoch.load(Relaxed), status.term.load(Relaxed)));
        // A check is a read or a write, and what follows from it (a standby that finds
        // the lease free writes; a refused renewal reads): a few operations at most.
        for _ in 0..4 {
            let Some(action) = next.take() else { break };
            let step = match action {
                Action::Read => match read(&store).await {
                    Ok(entry) => {
                        let holder = entry
                            .as_ref()
                            .and_then(|o| o.value.as_ref())
                            .filter(|v| !v.released)
                            .map(|v| v.node.clone())
                            .unwrap_or_default();
                        status.set_election(Some(&holder), None);
                        e.on_read(entry, now)
                    }
                    Err(()) => break,
                },
                write => {
                    let sent_ns = now_ns();
                    let written = perform(&store, write).await;
                    if let Written::Ok(_) = written {
                        status.lease_renewed_ns.store(sent_ns, Relaxed);
                    }
                    e.on_written(written)
                }
            };
            next = step.next;
            match step.change {
                Some(Change::Lead {
                    term,
                    previous_epoch,
                }) => {
                    status.lease_term.store(term, Relaxed);
                    status.set_election(Some(e.node()), None);
                    tracing::info!(term, "bus: this ingest took the lease");
                    let _ = lead_tx.send(Leadership {
                        term: Some(term),
                        previous_epoch,
                    });
                }
                Some(Change::StepDown) => {
                    status.lease_term.store(0, Relaxed);
                    tracing::warn!("bus: the lease was taken by another ingest");
                    let _ = lead_tx.send(Leadership::default());
                }
                None => {}
            }
        }
    }
}

/// Reads the lease key.
async fn read(store: &kv::Store) -> Result<Option<Observed>, ()> {
    match store.entry(election::LEASE_KEY).await {
        Ok(None) => Ok(None),
        Ok(Some(entry)) => Ok(Some(Observed {
            revision: entry.revision,
            value: match entry.operation {
                kv::Operation::Put => LeaseValue::parse(&entry.value),
                kv::Operation::Delete | kv::Operation::Purge => None,
            },
        })),
        Err(e) => {
            tracing::debug!(error = %e, "bus: cannot read the lease");
            Err(())
        }
    }
}

/// Performs a write of the election.
async fn perform(store: &kv::Store, action: Action) -> Written {
    let Action::Write { expect, value } = action else {
        return Written::Failed;
    };
    match store
        .update(election::LEASE_KEY, value.to_bytes().into(), expect)
        .await
    {
        Ok(revision) => Written::Ok(revision),
        Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Written::Conflict,
        Err(e) => {
            tracing::debug!(error = %e, "bus: lease write failed");
            Written::Failed
        }
    }
}

/// Answers one snapshot request with the page of symbols from the id it names.
async fn answer(
    client: &async_nats::Client,
    ctx: &PublisherContext,
    leading: Leadership,
    req: async_nats::Message,
    page: &mut Vec<u8>,
) {
    let Some(term) = leading
        .term
        .filter(|&t| ctx.stats.bus.term.load(Relaxed) == t)
    else {
        return;
    };
    let Some(reply) = req.reply else {
        ctx.stats.bus.malformed.fetch_add(1, Relaxed);
        return;
    };
    let mut stamp = Stamp::default();
    stamp.set(ctx.stats.bus.epoch.load(Relaxed), term);
    let mut headers = stamp.headers();
    let Some(from) = codec::parse_snapshot_request(&req.payload) else {
        ctx.stats.bus.malformed.fetch_add(1, Relaxed);
        headers.insert(codec::ERROR, "the request names no symbol id");
        let _ = client
            .publish_with_headers(reply, headers, Bytes::new())
            .await;
        return;
    };
    // A symbol costs its name and two 72-byte records, and one more record per book
    // level: the page takes as many symbols as fit (`max_book_levels` is bounded so
    // that one symbol's whole book always does).
    let name = crate::symbol::MAX_SYMBOL_LEN + 1;
    let per_symbol = name + 2 * crate::wire::RECORD_SIZE;
    let room = client.server_info().max_payload.saturating_sub(4096);
    let max = (room / per_symbol).clamp(1, MAX_PAGE_SYMBOLS);
    let max_records = room.saturating_sub(max * name) / crate::wire::RECORD_SIZE;
    let (names, ticks, total) = snapshot_page(&ctx.symbols, &ctx.lvc, from, max, max_records);
    codec::encode_ticks(ticks.iter(), now_ns(), page);
    headers.insert(codec::SYMBOLS_TOTAL, total.to_string());
    headers.insert(codec::SYMBOLS_FROM, from.to_string());
    headers.insert(codec::SYMBOLS, codec::join_names(&names));
    match client
        .publish_with_headers(reply, headers, Bytes::copy_from_slice(page))
        .await
    {
        Ok(()) => {
            ctx.stats.bus.snapshot_pages_served.fetch_add(1, Relaxed);
        }
        Err(e) => tracing::warn!(error = %e, "bus: snapshot reply failed"),
    }
}

/// A snapshot page: the names of symbols `from..from + max` (at most) and, for each
/// symbol that has them, its latest values in sequence order, then its book (one
/// record per level, flagged snapshot, numbered with the book's sequence number; one
/// empty record for a book without levels); and the number of symbols known in all.
/// The page stops before a symbol whose records would take it past `max_records`
/// (the first symbol always goes in). Sans-IO.
pub fn snapshot_page(
    symbols: &SymbolTable,
    lvc: &LastValueCache,
    from: u32,
    max: usize,
    max_records: usize,
) -> (Vec<Symbol>, Vec<Tick>, u32) {
    let mut names = Vec::new();
    symbols.names_since(from as usize, &mut names);
    // The table only grows: its length now covers every name just read.
    let total = symbols.len();
    names.truncate(max);
    let mut ticks = Vec::with_capacity(names.len() * 2);
    let mut kept = 0;
    for (i, id) in (from..from + names.len() as u32).enumerate() {
        let start = ticks.len();
        ticks.extend(lvc.latest(id).in_seq_order());
        let book = lvc.book(id);
        if book.seq > 0 {
            let m = crate::wire::BookMessage {
                symbol_id: id,
                seq: book.seq,
                ts_event: book.ts_event,
                ts_recv: book.ts_recv,
                flags: crate::tick::Flags::SNAPSHOT,
                count: 1,
                bids: &book.bids,
                asks: &book.asks,
            };
            crate::wire::for_each_book_tick(&m, |t| ticks.push(*t));
        }
        if i > 0 && ticks.len() > max_records {
            ticks.truncate(start);
            break;
        }
        kept = i + 1;
    }
    names.truncate(kept);
    (names, ticks, total as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tick::{Body, Flags};

    #[test]
    fn pages_hold_names_and_latest_values() {
        let symbols = SymbolTable::new(8);
        let (mut w, lvc) = LastValueCache::new(8);
        for n in ["A", "B", "C"] {
            symbols.intern(Symbol::new(n).unwrap()).unwrap();
        }
        let t = Tick {
            symbol_id: 1,
            seq: 4,
            ts_event: 1,
            ts_recv: 2,
            flags: Flags::empty(),
            count: 1,
            body: Body::trade(5, 6),
        };
        w.update(&t);
        let (names, ticks, total) = snapshot_page(&symbols, &lvc, 0, 2, 100);
        assert_eq!(
            names,
            [Symbol::new("A").unwrap(), Symbol::new("B").unwrap()]
        );
        assert_eq!((ticks, total), (vec![t], 3));
        let (names, ticks, total) = snapshot_page(&symbols, &lvc, 2, 2, 100);
        assert_eq!((names.len(), ticks.len(), total), (1, 0, 3));
        let (names, _, total) = snapshot_page(&symbols, &lvc, 9, 2, 100);
        assert_eq!((names.len(), total), (0, 3));
    }

    /// A symbol's book follows its values, one record per level flagged snapshot with
    /// the book's number; the page ends before a symbol whose records do not fit.
    #[test]
    fn pages_hold_books_and_stop_at_the_record_budget() {
        use crate::book::{Book, Side};
        let symbols = SymbolTable::new(8);
        let (mut w, lvc) = LastValueCache::new(8);
        for n in ["A", "B"] {
            symbols.intern(Symbol::new(n).unwrap()).unwrap();
        }
        let mut book = Book::unbounded();
        book.apply(Side::Bid, 100, 1);
        book.apply(Side::Bid, 99, 2);
        book.apply(Side::Ask, 101, 3);
        w.write_book(0, &book, 12, 5, 6);
        w.write_book(1, &Book::unbounded(), 4, 7, 8);
        let (names, ticks, _) = snapshot_page(&symbols, &lvc, 0, 2, 100);
        assert_eq!(names.len(), 2);
        let levels: Vec<_> = ticks
            .iter()
            .map(|t| match t.body {
                Body::Book {
                    side,
                    price,
                    size,
                    group,
                    ..
                } => (t.symbol_id, t.seq, side, price, size, group),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            levels,
            [
                (0, 12, Side::Bid, 100, 1, (3, 0)),
                (0, 12, Side::Bid, 99, 2, (3, 1)),
                (0, 12, Side::Ask, 101, 3, (3, 2)),
                (1, 4, Side::Bid, 0, 0, (0, 0)),
            ]
        );
        assert!(ticks.iter().all(|t| t.flags.contains(Flags::SNAPSHOT)));
        // Room for 3 records: A's book fits, B's one record does not.
        let (names, ticks, total) = snapshot_page(&symbols, &lvc, 0, 2, 3);
        assert_eq!((names.len(), ticks.len(), total), (1, 3, 2));
        // The first symbol always goes in.
        let (names, ticks, _) = snapshot_page(&symbols, &lvc, 0, 2, 1);
        assert_eq!((names.len(), ticks.len()), (1, 3));
    }
}
