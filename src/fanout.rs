//! The fan-out core: writer cores that own connections and push ticks to them.
//!
//! Each writer core is one thread, pinned to a CPU, running a current-thread tokio
//! runtime with its own `SO_REUSEPORT` listener, so the kernel spreads connections over
//! cores and a connection never changes thread. Inside, a sans-IO state machine and a
//! thin I/O shell:
//!
//! - [`core`]: [`Core`], which takes every input as a call with `now` — ring slots,
//!   client bytes, bytes written, timers — and returns what to write, whom to close,
//!   and when to be called next. Its concerns, each an `impl Core` in its own file:
//!   [`subscriptions`] (routing slots to subscribers), [`conflation`] (budgets,
//!   merging, `max_rate`), [`control`] (client messages and their budget), [`resume`]
//!   (snapshots and replays), [`liveness`] (pings, idle and stall timeouts), and
//!   [`outbox`] (each connection's queue of encoded frames);
//! - [`session`]: the shell — sockets, one shared read buffer, one task per
//!   connection that waits on readiness, writes, lingering closes;
//! - [`thread`]: the thread, its dispatch loop, its timer, and the [`Handle`] the HTTP
//!   layer hands upgraded connections to.
//!
//! fastwebsockets writes each frame in its own system call and cannot send one
//! pre-encoded frame to many sockets, so both directions of a connection's WebSocket
//! are ours after the handshake: server frames are unmasked and the same bytes for
//! every subscriber ([`outbox`]), client frames go through
//! [`crate::wire::frame::FrameReader`].

pub mod conflation;
pub mod control;
pub mod core;
pub mod liveness;
pub mod outbox;
pub mod resume;
pub mod session;
pub mod subscriptions;
pub mod thread;

#[cfg(test)]
mod tests;

pub use self::conflation::{Conflator, RateGate};
pub use self::core::{ConnId, Core, IoState, Mode, Settings};
pub use self::outbox::{Format, Outbox};
pub use self::thread::{spawn, CoreHandle, Handle};
