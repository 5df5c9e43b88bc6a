//! The wall clock, read at the edges only.
//!
//! Timestamps on the wire (`ts_event`, `ts_recv`, `ts_out`) are nanoseconds since the
//! Unix epoch, so that a client on the same host (or a PTP/NTP-disciplined one) can
//! subtract them from its own clock. The sans-IO parts of the server never call this:
//! they take `now` as an argument, which is what lets their tests run in simulated time.

/// Current time, ns since the Unix epoch (CLOCK_REALTIME).
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
