//! loadgen: an open-loop tail-latency load generator for tickcast (or any server that
//! speaks its protocol, `docs/protocol.md`).
//!
//! # Layout
//!
//! In the order a run uses them:
//!
//! - [`settings`]: every knob of a run, the named scenarios of `scenarios.toml`, and
//!   the flags that override them.
//! - [`select`]: which symbols each connection subscribes to (all, uniform, Zipf).
//! - [`client`]: WebSocket connections (fastwebsockets client), the subscriber and
//!   publisher loops, and a minimal HTTP GET for `/symbols` and `/stats`.
//! - [`schedule`]: the publisher's fixed-rate schedule, sans-IO: every tick is stamped
//!   with its *intended* send time, so a stall shows up as latency (coordinated
//!   omission corrected, as wrk2 does).
//! - [`decode`]: server messages (binary records or JSON) into [`recorder::Rec`]s.
//! - [`recorder`]: per-thread latency histogram and counters; per-symbol sequence
//!   tracking that counts gaps and conflation instead of hiding them. Sans-IO.
//! - [`run`]: threads, the in-process server, progress, drain, the final [`report::Summary`];
//!   [`cpu`] reads the server's CPU time for it.
//! - [`report`]: the summary (JSON), the percentile table, the `.hgrm` file, `compare`.
//! - [`plot`]: the percentile spectrum as SVG, several runs on one plot.
//! - [`idle`]: `loadgen idle`, the server's memory per idle subscribed connection.
//!
//! Latency is receive time (CLOCK_REALTIME) − `ts_event`, so client and server must
//! share a clock: on one host they do.

pub mod client;
pub mod cpu;
pub mod decode;
pub mod idle;
pub mod plot;
pub mod recorder;
pub mod report;
pub mod run;
pub mod schedule;
pub mod select;
pub mod settings;

/// Current time, ns since the Unix epoch (CLOCK_REALTIME), the clock `ts_event` uses.
pub fn now_ns() -> u64 {
    tickcast::clock::now_ns()
}
