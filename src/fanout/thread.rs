//! A writer core's thread: pinned, one current-thread tokio runtime, three loops.
//!
//! - the **dispatch loop** reads new ring slots ([`Core::pump`]), writes the
//!   connections that got bytes, a bounded number per turn ([`Shell::write_some`]),
//!   lets the other tasks run, and with nothing to read or write parks
//!   ([`Parker`]) until the sequencer wakes it (for the next batch, or with nothing
//!   to deliver half a ring later: [`Core::wake_at`]);
//! - the **timer** sleeps until [`Core::next_deadline`] (or until an earlier one
//!   appears) and runs [`Core::on_timer`];
//! - whatever the server starts on the core with its [`Handle`] — the accept loop of
//!   `crate::http` — hands upgraded connections over with [`Handle::adopt`], and each
//!   gets its session task (`fanout::session`).

use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::core::{Core, Mode};
use super::session::{Adopted, Shell, CLOSE_LINGER};
use crate::admission::Permit;
use crate::clock::now_ns;
use crate::park::Parker;
use crate::transport::Transport;

/// Ring slots read before the dispatch loop flushes and yields to other tasks.
const MAX_SLOTS_PER_BATCH: usize = 4096;

/// Handle to a running core thread.
#[derive(Debug)]
pub struct CoreHandle {
    /// How the sequencer wakes it.
    pub parker: Arc<Parker>,
    /// The thread.
    pub thread: std::thread::JoinHandle<()>,
}

/// A writer core as seen from the tasks running on its thread (the HTTP layer): it
/// adopts upgraded connections.
#[derive(Debug, Clone)]
pub struct Handle(Rc<Shell>);

impl Handle {
    /// Runs an upgraded WebSocket connection on this core until it closes. `prefix`
    /// holds bytes the HTTP layer read past the handshake.
    pub fn adopt(
        &self,
        transport: Transport,
        prefix: bytes::Bytes,
        peer: std::net::SocketAddr,
        permit: Permit,
        entitlements: Option<crate::auth::Entitlements>,
        mode: Mode,
    ) {
        self.0.adopt(Adopted {
            transport,
            prefix,
            peer,
            permit,
            entitlements,
            mode,
        });
    }

    /// This core's number.
    pub fn core_id(&self) -> usize {
        self.0.core.borrow().id()
    }
}

/// Starts `core` on its own thread, pinned to `cpu` if given. `start` runs on the
/// core's runtime with its [`Handle`] (the server passes its accept loop) and is
/// stopped at shutdown.
pub fn spawn<F, Fut>(
    core: Core,
    cpu: Option<core_affinity::CoreId>,
    shutdown: watch::Receiver<bool>,
    start: F,
) -> std::io::Result<CoreHandle>
where
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let parker = Arc::new(Parker::default());
    let p = parker.clone();
    let id = core.id();
    let thread = std::thread::Builder::new()
        .name(format!("writer-{id}"))
        .spawn(move || {
            if let Some(cpu) = cpu {
                if !core_affinity::set_for_current(cpu) {
                    tracing::warn!(core = id, "could not pin writer core");
                }
            }
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(core = id, error = %e, "cannot build runtime");
                    return;
                }
            };
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, run(core, p, shutdown, start));
        })?;
    Ok(CoreHandle { parker, thread })
}

async fn run<F, Fut>(core: Core, parker: Arc<Parker>, mut shutdown: watch::Receiver<bool>, start: F)
where
    F: FnOnce(Handle) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    let shell = Rc::new(Shell::new(core, parker.clone()));
    let accept = tokio::task::spawn_local(start(Handle(shell.clone())));
    let timer = tokio::task::spawn_local(timer_loop(shell.clone()));
    loop {
        if *shutdown.borrow() {
            break;
        }
        let n = {
            let mut core = shell.core.borrow_mut();
            let upto = core.mark_ring();
            core.pump(upto, MAX_SLOTS_PER_BATCH, now_ns())
        };
        let more = shell.write_some();
        {
            let mut core = shell.core.borrow_mut();
            core.record_latency(now_ns());
            if core.needs_rearm() {
                shell.timer.notify_one();
            }
        }
        if n > 0 || more {
            tokio::task::yield_now().await;
            continue;
        }
        let wake_at = shell.core.borrow().wake_at();
        parker.prepare(wake_at);
        if shell.core.borrow().ring_due(wake_at) || *shutdown.borrow() {
            parker.cancel();
            continue;
        }
        tokio::select! {
            _ = parker.sleep() => {}
            _ = shutdown.changed() => {}
        }
    }
    accept.abort();
    // Say goodbye to every client, then give them a moment to read it.
    shell.core.borrow_mut().shutdown(now_ns());
    while shell.write_some() {}
    let deadline = tokio::time::Instant::now() + CLOSE_LINGER + Duration::from_millis(500);
    while shell.core.borrow().connections() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    timer.abort();
}

/// Runs the core's timer work when it is due.
async fn timer_loop(shell: Rc<Shell>) {
    loop {
        let deadline = shell.core.borrow_mut().next_deadline();
        match deadline {
            None => shell.timer.notified().await,
            Some(at) => {
                let now = now_ns();
                if at > now {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_nanos(at - now)) => {}
                        _ = shell.timer.notified() => {}
                    }
                }
            }
        }
        shell.core.borrow_mut().on_timer(now_ns());
        shell.flush();
    }
}
