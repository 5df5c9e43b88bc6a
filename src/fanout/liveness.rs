//! Liveness: pings, idle timeouts and slow-consumer eviction.
//!
//! Three clocks per connection, all checked by one scan of the core's connections:
//!
//! - a connection with bytes queued that made no write progress for `stall_timeout_ms`
//!   is evicted: its unsent frames are dropped and it is closed with 4008
//!   `slow consumer`;
//! - one that sent nothing (not even a pong) for `ping_interval_ms` is pinged;
//! - one that sent nothing for `idle_timeout_ms` is closed with 4010
//!   `heartbeat timeout` and freed at once (a vanished peer never reads the close);
//!
//! and one more: a connection whose input was throttled (it sent faster than
//! `max_input_bytes_per_sec`) is read again once its budget is out of debt.
//!
//! The scan runs when the earliest of these deadlines is due, so each fires exactly on
//! time, but at most once per [`MIN_SCAN_GAP_NS`] so that many connections with nearby
//! deadlines cost one scan, not one each.

use std::sync::atomic::Ordering::Relaxed;

use super::core::{ConnId, Core};
use crate::wire::{CloseCode, OP_PING};

/// Shortest time between two scans of a core's connections.
pub const MIN_SCAN_GAP_NS: u64 = 10_000_000;

impl Core {
    /// Evicts stalled connections, pings quiet ones, closes silent ones, and arms the
    /// next scan.
    pub(super) fn scan(&mut self, now: u64) {
        let s = &self.settings;
        let (stall, ping, idle) = (s.stall_timeout_ns, s.ping_interval_ns, s.idle_timeout_ns);
        let mut stalled = Vec::new();
        let mut silent = Vec::new();
        let mut quiet = Vec::new();
        let mut next = u64::MAX;
        let mut unthrottle = Vec::new();
        for (k, c) in self.conns.iter() {
            if !c.live() {
                continue;
            }
            if c.conflating {
                // A full socket writes nothing, so nothing else publishes what it
                // merges meanwhile.
                self.sync_conn_stats(c);
            }
            if c.throttled_until != 0 {
                if now >= c.throttled_until {
                    unthrottle.push(k);
                } else {
                    next = next.min(c.throttled_until);
                }
            }
            let queued = !c.out.pending().is_empty();
            let ping_due = c.last_seen_ns.max(c.last_ping_ns) + ping;
            if queued && now >= c.last_progress_ns + stall {
                stalled.push(k);
                continue;
            }
            if now >= c.last_seen_ns + idle {
                silent.push(k);
                continue;
            }
            if now >= ping_due {
                quiet.push(k);
                next = next.min(now + ping);
            } else {
                next = next.min(ping_due);
            }
            next = next.min(c.last_seen_ns + idle);
            if queued {
                next = next.min(c.last_progress_ns + stall);
            }
        }
        for key in unthrottle {
            self.conns[key].throttled_until = 0;
            self.wake(key);
        }
        for key in stalled {
            self.evict(key, now);
        }
        for key in silent {
            self.stats.heartbeat_timeouts.fetch_add(1, Relaxed);
            tracing::info!(
                core = self.id,
                conn = self.conns[key].stats.id,
                "closing silent connection"
            );
            self.close(
                key,
                CloseCode::HeartbeatTimeout,
                "heartbeat timeout",
                true,
                now,
            );
            // Nobody will read the close frame: free the connection now.
            self.on_io_error(key);
        }
        for key in quiet {
            let conn = &mut self.conns[key];
            conn.last_ping_ns = now;
            conn.out.push_frame(OP_PING, &now.to_be_bytes(), now);
            self.mark_ready(key);
        }
        self.next_scan_ns = u64::MAX;
        if next != u64::MAX {
            self.arm_scan(next.max(now + MIN_SCAN_GAP_NS));
        }
    }

    /// Closes a connection that stopped reading: 4008 `slow consumer`, with its unsent
    /// frames dropped so the close frame is next.
    fn evict(&mut self, key: ConnId, now: u64) {
        self.counters.evictions += 1;
        tracing::info!(
            core = self.id,
            conn = self.conns[key].stats.id,
            "evicting slow consumer"
        );
        self.close(key, CloseCode::SlowConsumer, "slow consumer", true, now);
    }
}
