//! The ingest side of the bus: every sequenced batch goes to NATS, and edges' snapshot
//! requests are answered from the last-value cache.
//!
//! [`BusSink`] runs on the sequencer's thread: it encodes the batch (once per tick,
//! grouped by shard) and queues it for the `bus-publisher` thread without waiting. The
//! queue holds `bus.publish_queue_batches` batches; when it is full, or NATS is away,
//! the batch is dropped and counted (`dropped_batches`): the sequencer never waits for
//! the bus, and the edges find the gap in the sequence numbers and resynchronise from a
//! snapshot, which is cheaper than replaying a backlog of stale ticks.
//!
//! The `bus-publisher` thread runs a current-thread tokio runtime with the NATS client:
//! it publishes the queued batches in order and answers `<prefix>.snapshot` requests
//! with pages of (symbol names, latest trade and quote of each).

use std::sync::Arc;
use std::time::Duration;

use async_nats::{HeaderMap, Subject};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};

use super::codec;
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

/// One shard's part of a batch, queued for NATS.
#[derive(Debug)]
struct Outgoing {
    shard: u32,
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
        let symbols = (!batch.new_symbols.is_empty())
            .then(|| Arc::new((batch.new_symbols_from, codec::join_names(batch.new_symbols))));
        for g in &mut self.grouped {
            g.clear();
        }
        for t in batch.ticks {
            self.grouped[(t.symbol_id % self.shards) as usize].push(*t);
        }
        let ts_out = now_ns();
        for shard in 0..self.shards {
            let ticks = &self.grouped[shard as usize];
            // Announcements go with every shard's message, so that an edge learns the
            // names whichever subject it reads first; an empty shard carries them only
            // when nothing else does.
            if ticks.is_empty() && (symbols.is_none() || shard > 0 && !batch.ticks.is_empty()) {
                continue;
            }
            codec::encode_ticks(ticks.iter(), ts_out, &mut self.buf);
            let out = Outgoing {
                shard,
                symbols: symbols.clone(),
                payload: Bytes::copy_from_slice(&self.buf),
                ticks: ticks.len(),
            };
            match self.tx.try_send(out) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => self.dropped(),
                // The publisher thread has stopped: the server is shutting down.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
    }
}

impl BusSink {
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
    /// This ingest's epoch: its start time, ns since the Unix epoch.
    pub epoch: u64,
    /// Becomes true when the server shuts down.
    pub shutdown: watch::Receiver<bool>,
}

/// Starts the `bus-publisher` thread; returns the sink to give the sequencer.
pub fn start(ctx: PublisherContext) -> std::io::Result<(BusSink, std::thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel(ctx.config.bus.publish_queue_batches);
    let shards = ctx.config.bus.shards.max(1);
    ctx.stats.bus.epoch.store(ctx.epoch, Relaxed);
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

async fn run(mut ctx: PublisherContext, mut rx: mpsc::Receiver<Outgoing>) {
    let bus = ctx.config.bus.clone();
    let client = match super::connect(&ctx.config, ctx.stats.clone(), None).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(url = %ctx.config.nats_url, error = %e, "bus: cannot use the NATS URL");
            return;
        }
    };
    tracing::info!(url = %ctx.config.nats_url, epoch = ctx.epoch, shards = bus.shards, "bus: ingest publishing");
    let mut requests = match client.subscribe(bus.snapshot_subject()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "bus: cannot subscribe to snapshot requests");
            return;
        }
    };
    let subjects: Vec<Subject> = (0..bus.shards.max(1))
        .map(|s| Subject::from(bus.ticks_subject(s)))
        .collect();
    let epoch = ctx.epoch.to_string();
    let mut page = Vec::new();
    loop {
        tokio::select! {
            biased;
            _ = ctx.shutdown.changed() => break,
            out = rx.recv() => {
                let Some(out) = out else { break };
                let mut headers = HeaderMap::new();
                headers.insert(codec::EPOCH, epoch.as_str());
                if let Some(sym) = &out.symbols {
                    headers.insert(codec::SYMBOLS_FROM, sym.0.to_string());
                    headers.insert(codec::SYMBOLS, sym.1.as_str());
                }
                let len = out.payload.len() as u64;
                let subject = subjects[out.shard as usize % subjects.len()].clone();
                match client.publish_with_headers(subject, headers, out.payload).await {
                    Ok(()) => {
                        ctx.stats.bus.messages.fetch_add(1, Relaxed);
                        ctx.stats.bus.ticks.fetch_add(out.ticks as u64, Relaxed);
                        ctx.stats.bus.bytes.fetch_add(len, Relaxed);
                        ctx.stats.bus.last_message_ns.store(now_ns(), Relaxed);
                    }
                    Err(e) => {
                        let n = ctx.stats.bus.publish_errors.fetch_add(1, Relaxed) + 1;
                        if n <= 10 || n.is_power_of_two() {
                            tracing::warn!(error = %e, errors = n, "bus: publish failed");
                        }
                    }
                }
            }
            req = requests.next() => {
                let Some(req) = req else { break };
                answer(&client, &ctx, &epoch, req, &mut page).await;
            }
        }
    }
    // What was published is in the client's queue: give it a moment to reach NATS.
    let _ = tokio::time::timeout(Duration::from_millis(500), client.flush()).await;
}

/// Answers one snapshot request with the page of symbols from the id it names.
async fn answer(
    client: &async_nats::Client,
    ctx: &PublisherContext,
    epoch: &str,
    req: async_nats::Message,
    page: &mut Vec<u8>,
) {
    let Some(reply) = req.reply else {
        ctx.stats.bus.malformed.fetch_add(1, Relaxed);
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(codec::EPOCH, epoch);
    let Some(from) = codec::parse_snapshot_request(&req.payload) else {
        ctx.stats.bus.malformed.fetch_add(1, Relaxed);
        headers.insert(codec::ERROR, "the request names no symbol id");
        let _ = client
            .publish_with_headers(reply, headers, Bytes::new())
            .await;
        return;
    };
    // A symbol costs at most its name and two 72-byte records.
    let per_symbol = crate::symbol::MAX_SYMBOL_LEN + 1 + 2 * crate::wire::RECORD_SIZE;
    let room = client.server_info().max_payload.saturating_sub(4096);
    let max = (room / per_symbol).clamp(1, MAX_PAGE_SYMBOLS);
    let (names, ticks, total) = snapshot_page(&ctx.symbols, &ctx.lvc, from, max);
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
/// symbol that has them, its latest values in sequence order; and the number of
/// symbols known in all. Sans-IO.
pub fn snapshot_page(
    symbols: &SymbolTable,
    lvc: &LastValueCache,
    from: u32,
    max: usize,
) -> (Vec<Symbol>, Vec<Tick>, u32) {
    let mut names = Vec::new();
    symbols.names_since(from as usize, &mut names);
    // The table only grows: its length now covers every name just read.
    let total = symbols.len();
    names.truncate(max);
    let mut ticks = Vec::with_capacity(names.len() * 2);
    for id in from..from + names.len() as u32 {
        ticks.extend(lvc.latest(id).in_seq_order());
    }
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
        let (names, ticks, total) = snapshot_page(&symbols, &lvc, 0, 2);
        assert_eq!(
            names,
            [Symbol::new("A").unwrap(), Symbol::new("B").unwrap()]
        );
        assert_eq!((ticks, total), (vec![t], 3));
        let (names, ticks, total) = snapshot_page(&symbols, &lvc, 2, 2);
        assert_eq!((names.len(), ticks.len(), total), (1, 0, 3));
        let (names, _, total) = snapshot_page(&symbols, &lvc, 9, 2);
        assert_eq!((names.len(), total), (0, 3));
    }
}
