//! `Server`: builds the data path from a [`Config`] and runs it on threads.
//!
//! Threads: one per feed, one sequencer, one per writer core. [`Server::start`]
//! returns once every listener is bound, so a caller (a test, `main`) can connect at
//! once; [`ServerHandle::shutdown`] closes every client with code 1001 and joins.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use thiserror::Error;
use tokio::sync::watch;

use crate::app::App;
use crate::bus::{self, BusStatus, Role};
use crate::config::{Config, ConfigError};
use crate::fanout;
use crate::feed::{self, FeedContext, FeedStatus};
use crate::lvc::LastValueCache;
use crate::ring::Ring;
use crate::sequencer::{Sequencer, SequencerStats};
use crate::stats::Stats;
use crate::symbol::SymbolTable;

/// Why the server could not start.
#[derive(Debug, Error)]
pub enum ServerError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A feed cannot start (a missing capture, a bad URL).
    #[error(transparent)]
    Feed(#[from] crate::feed::FeedError),
    /// The TLS certificate or key could not be used.
    #[error(transparent)]
    Tls(#[from] crate::transport::TlsError),
    /// A thread could not be started.
    #[error("cannot start thread: {0}")]
    Spawn(std::io::Error),
    /// The recorder (`[record]`) could not start.
    #[error(transparent)]
    Recorder(#[from] crate::recorder::RecorderError),
}

/// Entry point: see [`Server::start`].
#[derive(Debug)]
pub struct Server;

/// A running server.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    shared: Arc<App>,
    shutdown_tx: watch::Sender<bool>,
    feeds_stop: Arc<AtomicBool>,
    cores: Vec<fanout::CoreHandle>,
    others: Vec<JoinHandle<()>>,
    feed_tx: feed::FeedSender,
}

impl Server {
    /// Binds the listeners and starts every thread.
    pub fn start(config: Config) -> Result<ServerHandle, ServerError> {
        config.validate()?;
        if config.role != Role::Edge {
            for spec in &config.feeds {
                feed::check(spec)?;
            }
        }
        let tls = match &config.tls {
            Some(t) => Some(crate::transport::server_config(&t.cert_path, &t.key_path)?),
            None => None,
        };
        let workers = config.worker_count();
        let listeners = bind(config.listen, workers)?;
        let addr = listeners[0]
            .local_addr()
            .map_err(|source| ServerError::Bind {
                addr: config.listen,
                source,
            })?;

        let seq_stats = Arc::new(SequencerStats::default());
        let mut stats = Stats::new(workers, seq_stats.clone());
        stats.bus = BusStatus::new(config.role);
        let stats = Arc::new(stats);
        let symbols = Arc::new(SymbolTable::new(config.max_symbols));
        let (lvc_writer, lvc) =
            LastValueCache::with_books(config.max_symbols, config.max_book_levels);
        let (publisher, ring) = Ring::new(config.ring_capacity);
        let (tx, rx) = feed::channel(config.feed_channel_capacity);
        let publish_status = Arc::new(FeedStatus::passive("publish"));
        if config.publish_token.is_some() {
            stats
                .feeds
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(publish_status.clone());
        }
        let publish_tx = config.publish_token.is_some().then(|| tx.clone());
        let shared = Arc::new(App {
            config: config.clone(),
            symbols: symbols.clone(),
            lvc,
            ring,
            stats: stats.clone(),
            publish: crate::publish::Inlet::new(publish_tx, publish_status),
            tls,
            admission: crate::admission::Admission::new(
                config.limits.max_connections,
                config.limits.max_connections_per_ip,
            ),
        });

        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let cpus = if config.pin_cores {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        let settings = fanout::Settings::from_config(&config);
        let mut cores = Vec::with_capacity(workers);
        for (id, listener) in listeners.into_iter().enumerate() {
            let cpu = (!cpus.is_empty()).then(|| cpus[id % cpus.len()]);
            let core = fanout::Core::new(
                id,
                settings.clone(),
                shared.symbols.clone(),
                shared.lvc.clone(),
                shared.ring.clone(),
                shared.stats.clone(),
            );
            let app = shared.clone();
            cores.push(
                fanout::spawn(core, cpu, shutdown_rx.clone(), move |handle| {
                    crate::http::accept_loop(listener, handle, app)
                })
                .map_err(ServerError::Spawn)?,
            );
        }

        let parkers: Vec<_> = cores.iter().map(|c| c.parker.clone()).collect();
        let mut sequencer = Sequencer::new(symbols.clone(), lvc_writer, publisher, seq_stats);
        let mut others = Vec::new();
        // Every feed's status, in the order of the config; an edge runs none.
        let feeds_stop = Arc::new(AtomicBool::new(false));
        let mut feeds: Vec<(&feed::FeedSpec, FeedContext)> = Vec::new();
        if config.role != Role::Edge {
            for spec in &config.feeds {
                let status = Arc::new(FeedStatus::new(feed::name(spec)));
                stats
                    .feeds
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(status.clone());
                let ctx = FeedContext {
                    tx: tx.clone(),
                    symbols: symbols.clone(),
                    shutdown: feeds_stop.clone(),
                    status,
                };
                feeds.push((spec, ctx));
            }
        }
        let feed_count = feeds.len();
        // Roles (`bus`): an ingest leads (hands every batch to the bus) or follows; an
        // edge runs no feed and no sequencer thread, its bus thread publishes the
        // leader's ticks.
        match config.role {
            Role::Standalone => {
                // The first synthetic feed runs on the sequencer's thread: a burst then
                // costs one wake-up, not one for the feed and one for the sequencer.
                let local = feeds
                    .iter()
                    .position(|(spec, _)| matches!(spec, feed::FeedSpec::Synthetic(_)))
                    .map(|i| feeds.remove(i))
                    .map(|(spec, ctx)| match spec {
                        feed::FeedSpec::Synthetic(cfg) => feed::synthetic::LocalFeed::new(cfg, ctx),
                        _ => unreachable!("matched as synthetic"),
                    });
                if let Some(record) = &config.record {
                    let (sink, thread) = crate::recorder::start(record.clone(), stats.clone())?;
                    others.push(thread);
                    sequencer = sequencer.with_sink(Box::new(sink));
                }
                others.push(
                    std::thread::Builder::new()
                        .name("sequencer".into())
                        .spawn(move || sequencer.run(rx, parkers, local))
                        .map_err(ServerError::Spawn)?,
                );
            }
            Role::Ingest => {
                // Ingests elect a leader; the sequencer thread leads or follows
                // (`bus::ingest`), told by the bus thread which.
                stats.bus.lease_ns.store(
                    config.bus.lease_ms.saturating_mul(1_000_000),
                    Ordering::Relaxed,
                );
                stats
                    .bus
                    .election
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .node = config.bus.node_name();
                let (commands_tx, commands) =
                    crossbeam_channel::bounded(config.bus.publish_queue_batches);
                let (sink, thread) = bus::publisher::start(bus::publisher::PublisherContext {
                    config: config.clone(),
                    symbols: symbols.clone(),
                    lvc: shared.lvc.clone(),
                    stats: stats.clone(),
                    commands: commands_tx,
                    shutdown: shutdown_rx.clone(),
                })
                .map_err(ServerError::Spawn)?;
                others.push(thread);
                sequencer = sequencer.with_sink(Box::new(sink));
                if let Some(record) = &config.record {
                    // The recorder takes what this node sequences as the leader.
                    let (sink, thread) = crate::recorder::start(record.clone(), stats.clone())?;
                    others.push(thread);
                    sequencer = sequencer.with_sink(Box::new(sink));
                }
                let follower = bus::edge::Edge::new(sequencer, symbols.clone(), stats.clone());
                let ingest = bus::ingest::Ingest::new(follower, stats.clone());
                others.push(
                    std::thread::Builder::new()
                        .name("sequencer".into())
                        .spawn(move || bus::ingest::run(ingest, rx, commands, parkers))
                        .map_err(ServerError::Spawn)?,
                );
            }
            Role::Edge => {
                drop(rx);
                let edge = bus::edge::Edge::new(sequencer, symbols.clone(), stats.clone());
                others.push(
                    bus::edge::spawn(bus::edge::EdgeContext {
                        config: config.clone(),
                        edge,
                        cores: parkers,
                        stats: stats.clone(),
                        shutdown: shutdown_rx.clone(),
                    })
                    .map_err(ServerError::Spawn)?,
                );
            }
        }

        for (spec, ctx) in feeds {
            others.push(feed::spawn(spec, ctx).map_err(ServerError::Spawn)?);
        }
        tracing::info!(%addr, workers, feeds = feed_count, role = %config.role, "tickcast serving");
        Ok(ServerHandle {
            addr,
            shared,
            shutdown_tx,
            feeds_stop,
            cores,
            others,
            feed_tx: tx,
        })
    }
}

impl ServerHandle {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.shared.stats
    }

    /// The symbol table.
    pub fn symbols(&self) -> &Arc<SymbolTable> {
        &self.shared.symbols
    }

    /// The last-value cache.
    pub fn lvc(&self) -> &Arc<crate::lvc::LastValueCache> {
        &self.shared.lvc
    }

    /// Stops the feeds (they return at their next check) and leaves everything else
    /// running, so that what is in flight can drain; used by loadgen before it
    /// compares what it received with what the server sent.
    pub fn stop_feeds(&self) {
        self.feeds_stop.store(true, Ordering::Relaxed);
    }

    /// A sender into the sequencer, for in-process publishers and tests.
    pub fn feed_sender(&self) -> feed::FeedSender {
        self.feed_tx.clone()
    }

    /// Stops feeds, closes every client with 1001 "server shutting down", and joins
    /// every thread.
    pub fn shutdown(self) {
        self.feeds_stop.store(true, Ordering::Relaxed);
        // Publishers hold senders too: the sequencer stops only once they are gone.
        self.shared.publish.close();
        let _ = self.shutdown_tx.send(true);
        for c in &self.cores {
            c.parker.wake(true);
        }
        for c in self.cores {
            let _ = c.thread.join();
        }
        drop(self.feed_tx);
        for t in self.others {
            let _ = t.join();
        }
    }
}

/// One `SO_REUSEPORT` listener per core on the same address, so the kernel spreads
/// connections over cores, sharing the port with each other only.
///
/// The first socket is bound *without* `SO_REUSEPORT`: Linux lets a socket bind a port
/// that others hold only when every one of them set the option, so this bind fails
/// with "address in use" if anything already listens there (another tickcast
/// included). The option is set on it after the bind and before `listen`, so the
/// other cores' sockets, bound next, join its group.
fn bind(addr: SocketAddr, n: usize) -> Result<Vec<std::net::TcpListener>, ServerError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mut out = Vec::with_capacity(n);
    let mut actual = addr;
    for i in 0..n {
        let err = |source| ServerError::Bind {
            addr: actual,
            source,
        };
        let s = Socket::new(
            Domain::for_address(actual),
            Type::STREAM,
            Some(Protocol::TCP),
        )
        .map_err(err)?;
        s.set_reuse_address(true).map_err(err)?;
        if i > 0 {
            s.set_reuse_port(true).map_err(err)?;
        }
        s.set_nonblocking(true).map_err(err)?;
        s.bind(&actual.into()).map_err(err)?;
        if i == 0 {
            s.set_reuse_port(true).map_err(err)?;
        }
        s.listen(1024).map_err(err)?;
        let l: std::net::TcpListener = s.into();
        if out.is_empty() {
            actual = l.local_addr().map_err(err)?;
        }
        out.push(l);
    }
    Ok(out)
}
