//! The I/O shell around a [`Core`]: sockets, reads, writes, lingering closes.
//!
//! One [`Shell`] per writer core holds the core, every connection's socket, and one read
//! buffer that all of them share (a connection holds no read buffer of its own). Each
//! connection has one task that waits on its socket's readiness as the core's
//! [`IoState`] says — readable while the core takes input, writable while the socket
//! is full — and on a notification when that state changes. Writes normally happen in
//! [`Shell::write_some`], right after the dispatch loop filled outboxes: one write per
//! connection per turn, oldest first, at most [`WRITES_PER_TURN`] connections before
//! the other tasks (handshakes, reads, the timer) get a turn; a connection's own input
//! is answered at once (`Shell::flush_conn`). Everything here is glue; every
//! decision is the core's.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;

use super::core::{ConnId, Core, IoState};
use crate::admission::Permit;
use crate::clock::now_ns;
use crate::park::Parker;
use crate::transport::Transport;

/// Size of the read buffer a core's connections share.
pub const READ_BUF_BYTES: usize = 64 * 1024;
/// Connections [`Shell::write_some`] writes before it lets the core's other tasks run.
pub const WRITES_PER_TURN: usize = 256;
/// Reads per readiness event before a connection yields to the others.
const READS_PER_WAKE: usize = 4;
/// How long a closing connection may take to flush and say goodbye.
pub const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// Connection open/close log lines per second per core; past it they are counted and
/// the count is reported with the next line.
const LOG_LINES_PER_SEC: u32 = 20;

/// A connection's socket and the notification its task waits on.
#[derive(Debug)]
struct Socket {
    sock: Rc<Transport>,
    wake: Rc<Notify>,
}

/// A writer core with its sockets.
#[derive(Debug)]
pub struct Shell {
    /// The state machine.
    pub core: RefCell<Core>,
    sockets: RefCell<Vec<Option<Socket>>>,
    read_buf: RefCell<Box<[u8]>>,
    /// Wakes the core's timer task when an earlier deadline appeared.
    pub(super) timer: Notify,
    scratch: RefCell<Vec<ConnId>>,
    log: RefCell<LogLimiter>,
    /// Where the core's dispatch loop sleeps.
    parker: Arc<Parker>,
}

impl Shell {
    /// A shell around `core`.
    pub fn new(core: Core, parker: Arc<Parker>) -> Shell {
        Shell {
            core: RefCell::new(core),
            sockets: RefCell::new(Vec::new()),
            read_buf: RefCell::new(vec![0u8; READ_BUF_BYTES].into_boxed_slice()),
            timer: Notify::new(),
            scratch: RefCell::new(Vec::new()),
            log: RefCell::new(LogLimiter::default()),
            parker,
        }
    }

    /// Writes the connections the core has bytes for, oldest first and at most
    /// [`WRITES_PER_TURN`] of them (each until it is empty or its socket is full),
    /// then tells the sessions whose state changed. Returns whether connections are
    /// left to write: the dispatch loop goes on with them after the other tasks had a
    /// turn, so that on a saturated core a handshake, a subscribe or a pong waits for
    /// a few hundred writes, not for ten thousand. Called by the dispatch loop.
    pub fn write_some(&self) -> bool {
        let now = now_ns();
        let mut core = self.core.borrow_mut();
        let sockets = self.sockets.borrow();
        for _ in 0..WRITES_PER_TURN {
            let Some(key) = core.next_ready() else { break };
            if let Some(Some(s)) = sockets.get(key) {
                write_out(&mut core, key, &s.sock, now);
            }
        }
        let more = core.has_ready();
        drop(sockets);
        drop(core);
        self.after_writes(now);
        more
    }

    /// [`Shell::write_some`] from a session or the timer: wakes the dispatch loop,
    /// which may be parked, when connections are left to write.
    pub fn flush(&self) {
        if self.write_some() {
            self.parker.wake(true);
        }
    }

    /// Writes `key` now if it has bytes (its place among the others is kept), then
    /// does what [`Shell::flush`] does after its writes: the path of a session's own
    /// input, so that its answer does not wait behind every other connection.
    fn flush_conn(&self, key: ConnId) {
        let now = now_ns();
        {
            let mut core = self.core.borrow_mut();
            if let Some(Some(s)) = self.sockets.borrow().get(key) {
                if core.io_state(key).is_some_and(|st| !st.blocked && !st.dead) {
                    write_out(&mut core, key, &s.sock, now);
                }
            }
        }
        self.after_writes(now);
    }

    /// Wakes the sessions whose state changed, re-arms the timer if needed, makes sure
    /// the dispatch loop is not parked past new work, and logs closed connections.
    fn after_writes(&self, now: u64) {
        let mut core = self.core.borrow_mut();
        let sockets = self.sockets.borrow();
        let mut wakes = self.scratch.borrow_mut();
        core.take_wakes(&mut wakes);
        for key in wakes.drain(..) {
            if let Some(Some(s)) = sockets.get(key) {
                s.wake.notify_one();
            }
        }
        if core.needs_rearm() {
            self.timer.notify_one();
        }
        // A subscription or a resume made here (this core's thread) must not wait
        // for the half-ring wake-up the dispatch loop may be parked on.
        self.parker.want(core.wake_at());
        drop(core);
        drop(sockets);
        self.log_closed(now);
    }

    /// Registers a connection and starts its task.
    pub(super) fn adopt(self: &Rc<Self>, conn: Adopted) {
        let now = now_ns();
        let key = self.core.borrow_mut().open(
            conn.peer,
            conn.mode,
            conn.entitlements.map(Into::into),
            now,
        );
        let sock = Rc::new(conn.transport);
        let wake = Rc::new(Notify::new());
        {
            let mut sockets = self.sockets.borrow_mut();
            if sockets.len() <= key {
                sockets.resize_with(key + 1, || None);
            }
            sockets[key] = Some(Socket {
                sock: sock.clone(),
                wake: wake.clone(),
            });
        }
        let (core_id, conn_id) = {
            let core = self.core.borrow();
            (core.id(), core.conn_id(key).unwrap_or(0))
        };
        if let Some(suppressed) = self.log.borrow_mut().allow(now) {
            tracing::info!(conn = conn_id, peer = %conn.peer, core = core_id, mode = ?conn.mode, suppressed, "connection opened");
        }
        if !conn.prefix.is_empty() {
            // Bytes the client sent right behind its handshake (hyper read them).
            let mut early = conn.prefix.to_vec();
            self.core.borrow_mut().on_input(key, &mut early, now);
        }
        // Also arms the timer for the new connection's liveness scan.
        self.flush_conn(key);
        // Even an empty `prefix` can hold hyper's whole read buffer alive: drop it
        // here, not at the end of the connection.
        drop(conn.prefix);
        tokio::task::spawn_local(run(self.clone(), key, sock, wake, conn.permit));
    }

    fn log_closed(&self, now: u64) {
        let closed = self.core.borrow_mut().take_closed();
        if closed.is_empty() {
            return;
        }
        let core = self.core.borrow().id();
        let mut log = self.log.borrow_mut();
        for c in closed {
            if let Some(suppressed) = log.allow(now) {
                tracing::info!(
                    conn = c.id,
                    peer = %c.peer,
                    core,
                    code = c.code.map(|c| c.as_u16()),
                    duration_ms = c.duration_ns / 1_000_000,
                    records = c.records,
                    suppressed,
                    "connection closed"
                );
            }
        }
    }

    /// Reads what `key`'s socket has into the shared buffer and gives it to the core,
    /// at most [`READS_PER_WAKE`] times. Returns whether the socket may have more.
    fn read_some(&self, key: ConnId, sock: &Transport) -> bool {
        for _ in 0..READS_PER_WAKE {
            let mut buf = self.read_buf.borrow_mut();
            match sock.try_read(&mut buf) {
                Ok(0) => {
                    drop(buf);
                    self.core.borrow_mut().on_eof(key);
                    return false;
                }
                Ok(n) => {
                    let now = now_ns();
                    self.core.borrow_mut().on_input(key, &mut buf[..n], now);
                    drop(buf);
                    self.flush_conn(key);
                    if !self.state(key).is_some_and(|s| s.read) {
                        return true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    drop(buf);
                    self.core.borrow_mut().on_io_error(key);
                    return false;
                }
            }
        }
        true
    }

    fn state(&self, key: ConnId) -> Option<IoState> {
        self.core.borrow().io_state(key)
    }

    /// Forgets `key` and its socket.
    fn remove(&self, key: ConnId) {
        self.core.borrow_mut().remove(key, now_ns());
        if let Some(slot) = self.sockets.borrow_mut().get_mut(key) {
            *slot = None;
        }
        self.log_closed(now_ns());
    }
}

/// Writes `key`'s queue until it is empty or the socket is full.
fn write_out(core: &mut Core, key: ConnId, sock: &Transport, now: u64) {
    loop {
        let bytes = core.transmit(key, now);
        if bytes.is_empty() {
            match sock.flush() {
                Ok(()) => core.on_flushed(key, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    core.on_blocked(key, now);
                    return;
                }
                Err(_) => {
                    core.on_io_error(key);
                    return;
                }
            }
            // Leaving conflation may have queued more.
            if core.transmit(key, now).is_empty() {
                return;
            }
            continue;
        }
        match sock.try_write(bytes) {
            Ok(0) => {
                core.on_io_error(key);
                return;
            }
            Ok(n) => core.on_written(key, n, now),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                core.on_blocked(key, now);
                return;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                core.on_io_error(key);
                return;
            }
        }
    }
}

/// A connection handed to a core after its WebSocket handshake.
#[derive(Debug)]
pub struct Adopted {
    /// The socket.
    pub transport: Transport,
    /// Bytes the HTTP layer read past the handshake.
    pub prefix: Bytes,
    /// Remote address.
    pub peer: std::net::SocketAddr,
    /// Its admission slot, released when the connection ends.
    pub permit: Permit,
    /// What an authenticated client may subscribe to; `None` when auth is off.
    pub entitlements: Option<crate::auth::Entitlements>,
    /// Subscriber or echo.
    pub mode: super::core::Mode,
}

/// One connection's task: reads while the core takes input, writes while its socket is
/// full, and when the core closes it, flushes, half-closes and lingers.
async fn run(shell: Rc<Shell>, key: ConnId, sock: Rc<Transport>, wake: Rc<Notify>, permit: Permit) {
    let mut more = false;
    let mut closing_since: Option<tokio::time::Instant> = None;
    while let Some(st) = shell.state(key) {
        if st.dead {
            break;
        }
        if st.closing {
            let since = *closing_since.get_or_insert_with(tokio::time::Instant::now);
            if st.drained || since.elapsed() >= CLOSE_LINGER {
                linger(&shell, &sock, since + CLOSE_LINGER).await;
                break;
            }
        }
        if st.backlog {
            shell.core.borrow_mut().resume_input(key, now_ns());
            shell.flush_conn(key);
            continue;
        }
        if st.read && more {
            more = shell.read_some(key, &sock);
            tokio::task::yield_now().await;
            continue;
        }
        let linger_at = closing_since.map(|s| s + CLOSE_LINGER);
        tokio::select! {
            biased;
            _ = wake.notified() => {}
            r = sock.tcp().writable(), if st.blocked => {
                if r.is_err() {
                    shell.core.borrow_mut().on_io_error(key);
                    continue;
                }
                shell.core.borrow_mut().on_writable(key);
                shell.flush_conn(key);
            }
            r = sock.tcp().readable(), if st.read => {
                if r.is_err() {
                    shell.core.borrow_mut().on_io_error(key);
                    continue;
                }
                more = shell.read_some(key, &sock);
            }
            _ = sleep_until(linger_at), if linger_at.is_some() => {}
        }
    }
    shell.remove(key);
    drop(permit);
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Half-closes and reads until the peer closes too, so that unread input does not
/// turn our close into a reset. Bounded by `deadline`.
async fn linger(shell: &Shell, sock: &Transport, deadline: tokio::time::Instant) {
    sock.shutdown_write();
    let tcp = sock.tcp();
    let _ = tokio::time::timeout_at(deadline, async {
        loop {
            if tcp.readable().await.is_err() {
                return;
            }
            let mut buf = shell.read_buf.borrow_mut();
            match tcp.try_read(&mut buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    })
    .await;
}

/// A token bucket for log lines, so that connection churn cannot flood the log.
#[derive(Debug, Default)]
struct LogLimiter {
    second: u64,
    lines: u32,
    suppressed: u64,
}

impl LogLimiter {
    /// `Some(lines suppressed before this one)` when a line may be written at `now`.
    fn allow(&mut self, now: u64) -> Option<u64> {
        let second = now / 1_000_000_000;
        if second != self.second {
            self.second = second;
            self.lines = 0;
        }
        if self.lines < LOG_LINES_PER_SEC {
            self.lines += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}
