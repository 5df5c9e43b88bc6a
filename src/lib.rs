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
//! - [`fanout`]: pinned writer cores, each owning its connections: a sans-IO
//!   [`fanout::Core`] (routing, conflation, control messages, resume, liveness, each
//!   connection's [`fanout::Outbox`]) inside a thin I/O shell that reads and writes
//!   each [`transport`] (TCP, or TLS with rustls), one write per connection per batch.
//! - [`wire`]: the binary and JSON encodings, WebSocket frames ([`wire::frame`]) and
//!   close codes ([`wire::CloseCode`]); [`protocol`]: client control messages.
//! - [`http`]: the one port's routes (`/ws`, `/healthz`, `/readyz`, `/symbols`,
//!   `/stats`, `/metrics`), [`readiness`] (what `/readyz` decides), [`metrics`]
//!   (Prometheus text) and [`dashboard`], the page at `/`.
//! - [`publish`]: the `/publish` endpoint, external publishers' way into the sequencer.
//! - [`client`]: the Rust subscriber (zero-copy batches, gap detection, reconnect with
//!   resume); [`capture`] files record its sessions for the replay feed and for
//!   analysis (`tickcast capture info|export|cat`: [`capture::export`],
//!   [`capture::inspect`]). It and the
//!   exchange feed connect through [`wsclient`] (`ws://` or `wss://`).
//! - [`recorder`]: the rolling recorder, a sequencer sink that writes every sequenced
//!   tick into rotated capture files (`[record]`).
//! - [`bus`]: scale-out over NATS: `ingest` nodes elect a leader through a JetStream
//!   key-value lease ([`bus::election`]); the leader publishes every sequenced batch,
//!   a standby follows it and takes over continuing the numbers ([`bus::ingest`]);
//!   `edge` nodes take them into their own ring and cache ([`bus::edge`]).
//! - [`server`]: wires it all together and owns the [`app::App`] state the parts
//!   share; [`config`] holds every setting and [`admission`] and [`auth`] decide who
//!   may connect and subscribe. [`clock`] is the one place that reads the wall clock.
//!
//! Values: [`tick`] is the normalized fixed-size tick, [`fixed`] its fixed-point
//! decimals.

pub mod admission;
pub mod app;
pub mod auth;
pub mod book;
pub mod bus;
pub mod capture;
pub mod client;
pub mod clock;
pub mod config;
pub mod dashboard;
pub mod fanout;
pub mod feed;
pub mod fixed;
pub mod http;
pub mod lvc;
pub mod metrics;
pub mod park;
pub mod protocol;
pub mod publish;
pub mod readiness;
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
pub mod wsclient;
