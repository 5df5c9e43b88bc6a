//! tickcast: a live market-data streaming server.
//!
//! # Layout
//!
//! In data-path order (see `docs/architecture.md` for the whole design):
//!
//! - [`feed`]: feed adapters turn sources into [`feed::FeedTick`]s
//!   ([`feed::synthetic`] is the built-in default).
//! - [`sequencer`]: the single writer; interns [`symbol`]s, assigns per-symbol
//!   sequence numbers, updates the [`lvc`] and publishes into the [`ring`].
//! - [`ring`]: the lock-free SPMC broadcast ring, built on [`seqlock`] cells.
//! - [`lvc`]: the last-value cache, for snapshots, lap recovery and conflation.
//! - [`writer`]: pinned writer cores, each owning its connections; they read every
//!   slot once and append encoded records to subscribers' [`outbox`]es, written to
//!   each [`transport`] (TCP, or TLS with rustls) in one call per batch.
//! - [`conflate`]: what a slow or rate-limited subscription merges, sans-IO.
//! - [`wire`]: the binary and JSON encodings; [`protocol`]: client control messages.
//! - [`http`]: the one port's routes (`/ws`, `/healthz`, `/symbols`, `/stats`,
//!   `/metrics`), [`metrics`] (Prometheus text) and [`dashboard`], the page at `/`.
//! - [`publish`]: the `/publish` endpoint, external publishers' way into the sequencer.
//! - [`client`]: the Rust subscriber (zero-copy batches, gap detection, reconnect with
//!   resume); [`capture`] files record its sessions for the replay feed and for
//!   analysis (`tickcast capture info|export|cat`: [`capture::export`],
//!   [`capture::inspect`]). It and the
//!   exchange feed connect through [`wsclient`] (`ws://` or `wss://`).
//! - [`recorder`]: the rolling recorder, a sequencer sink that writes every sequenced
//!   tick into rotated capture files (`[record]`).
//! - [`bus`]: scale-out over NATS: an `ingest` node publishes every sequenced batch,
//!   `edge` nodes take them into their own ring and cache ([`bus::edge`]).
//! - [`server`]: wires it all together; [`config`] holds every setting and
//!   [`admission`] and [`auth`] decide who may connect and subscribe.
//!
//! Values: [`tick`] is the normalized fixed-size tick, [`fixed`] its fixed-point
//! decimals.

pub mod admission;
pub mod auth;
pub mod bus;
pub mod capture;
pub mod client;
pub mod config;
pub mod conflate;
pub mod dashboard;
pub mod feed;
pub mod fixed;
pub mod http;
pub mod lvc;
pub mod metrics;
pub mod outbox;
pub mod park;
pub mod protocol;
pub mod publish;
pub mod recorder;
pub mod ring;
pub mod seqlock;
pub mod sequencer;
pub mod server;
pub mod stats;
pub mod symbol;
pub mod tick;
pub mod transport;
pub mod wire;
pub mod writer;
pub mod wsclient;
