//! `Schedule`: the publisher's fixed-rate timetable, sans-IO.
//!
//! Tick `i` is *intended* to go out at `start + i / rate`, and is stamped with that
//! time as its `ts_event`, whenever it actually goes out. A publisher that was held up
//! (by the server's backpressure, or its own scheduling) finds a backlog of due ticks
//! and sends them at once with their old intended times, so the hold-up is measured
//! as latency on every tick it delayed, not on one: coordinated omission corrected,
//! as in wrk2. The caller passes `now`; nothing here reads a clock.

use std::ops::Range;

/// A constant-rate schedule of `limit` ticks from `start_ns`.
#[derive(Debug, Clone)]
pub struct Schedule {
    start_ns: u64,
    rate: u64,
    limit: u64,
    next: u64,
}

impl Schedule {
    /// `rate` ticks per second (at least 1) from `start_ns`, `limit` ticks in all.
    pub fn new(start_ns: u64, rate: u64, limit: u64) -> Schedule {
        Schedule {
            start_ns,
            rate: rate.max(1),
            limit,
            next: 0,
        }
    }

    /// The intended send time of tick `i`, ns.
    pub fn intended(&self, i: u64) -> u64 {
        self.start_ns + (u128::from(i) * 1_000_000_000 / u128::from(self.rate)) as u64
    }

    /// Ticks due at `now_ns` and not yet taken, at most `max` of them; marks them taken.
    pub fn take_due(&mut self, now_ns: u64, max: usize) -> Range<u64> {
        let from = self.next;
        if now_ns < self.start_ns {
            return from..from;
        }
        let elapsed = u128::from(now_ns - self.start_ns);
        let due = ((elapsed * u128::from(self.rate) / 1_000_000_000) as u64 + 1).min(self.limit);
        let to = due.min(from.saturating_add(max as u64)).max(from);
        self.next = to;
        from..to
    }

    /// When the next tick is due, or `None` when all `limit` ticks are taken.
    pub fn next_due(&self) -> Option<u64> {
        (self.next < self.limit).then(|| self.intended(self.next))
    }

    /// Ticks taken so far.
    pub fn taken(&self) -> u64 {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::Histogram;

    const MS: u64 = 1_000_000;

    #[test]
    fn takes_what_is_due_in_order() {
        let mut s = Schedule::new(1_000, 1_000, 5);
        assert_eq!(s.take_due(999, 10), 0..0);
        assert_eq!(s.take_due(1_000, 10), 0..1);
        assert_eq!(s.next_due(), Some(1_000 + MS));
        assert_eq!(s.take_due(1_000 + 3 * MS, 10), 1..4);
        assert_eq!(s.take_due(1_000 + 100 * MS, 10), 4..5, "limit");
        assert_eq!(s.next_due(), None);
        let mut s = Schedule::new(0, 1_000, 100);
        assert_eq!(s.take_due(50 * MS, 8), 0..8, "batch bound");
        assert_eq!(s.take_due(50 * MS, 100), 8..51);
    }

    /// Simulates a 1 kHz publisher for 2 s whose sends take 50 µs, with a 100 ms stall
    /// at t = 1 s, and measures latency two ways. The open-loop schedule (wrk2) sees
    /// the stall in every tick it held up, so it shows in p99; a closed-loop sender
    /// that measures from its actual send time sees it once, in the max only.
    #[test]
    fn a_stall_shows_in_p99_not_only_in_max() {
        let service = 50_000;
        let stall_at = 1_000 * MS;
        let stall = 100 * MS;
        let total = 2_000;
        let new_hist = || Histogram::<u64>::new_with_bounds(1, 3_600_000 * MS, 3).unwrap();

        // Open loop: the sender wakes at each due time, or after the stall.
        let mut corrected = new_hist();
        let mut sched = Schedule::new(0, 1_000, total);
        let mut now = 0;
        let mut stalled = false;
        while let Some(due) = sched.next_due() {
            now = now.max(due);
            if !stalled && now >= stall_at {
                stalled = true;
                now += stall;
            }
            for i in sched.take_due(now, 1_000) {
                now += service / 10; // batching: later ticks of a backlog go out fast
                corrected.record(now + service - sched.intended(i)).unwrap();
            }
        }
        assert_eq!(corrected.len(), total);

        // Closed loop: the next request waits for the previous one; latency is
        // measured from when it was actually sent.
        let mut naive = new_hist();
        let mut now = 0;
        let mut sent = 0;
        let mut stalled = false;
        while sent < total {
            now = now.max(sent * MS);
            let mut took = service;
            if !stalled && now >= stall_at {
                stalled = true;
                took += stall;
            }
            naive.record(took).unwrap();
            now += took;
            sent += 1;
        }

        let p99 = |h: &Histogram<u64>| h.value_at_quantile(0.99);
        assert!(corrected.max() >= stall, "max {}", corrected.max());
        assert!(naive.max() >= stall, "max {}", naive.max());
        assert!(
            p99(&corrected) >= 50 * MS,
            "corrected p99 {}",
            p99(&corrected)
        );
        assert!(
            p99(&naive) < MS,
            "closed-loop p99 {} hides the stall",
            p99(&naive)
        );
    }
}
