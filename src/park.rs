//! `Parker`: how an idle writer core sleeps and how the sequencer wakes it.
//!
//! A core with nothing to read sets `parked`, checks the ring once more, and awaits its
//! `Notify`. The sequencer, after publishing a batch, swaps `parked` back to false and
//! notifies only the cores that were parked, so a busy core costs the sequencer one
//! atomic load. Both sides use `SeqCst` on the flag and a `SeqCst` fence around the ring
//! head (Dekker's pattern): either the core sees the new head, or the sequencer sees
//! the flag, so no wake-up is lost. A spurious notification only costs one extra loop.
//!
//! A core with nothing to deliver (no subscription, no resume waiting) still reads the
//! ring, to keep its per-symbol sequence numbers for a later resume, but it need not
//! be woken for every batch: it parks with a `wake_at` ring position half a ring past
//! its own, and [`Parker::published`] wakes it only once the head reaches that point.
//! Whatever gives the core something to deliver runs on the core's own thread and
//! wakes it with [`Parker::wake`] (`force`).

use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};

use tokio::sync::Notify;

/// One core's parking spot.
#[derive(Debug, Default)]
pub struct Parker {
    parked: AtomicBool,
    /// The ring head from which [`Parker::published`] wakes the parked core (0: any).
    wake_at: AtomicU64,
    notify: Notify,
    /// Times the core was woken by the sequencer.
    pub wakeups: AtomicU64,
}

impl Parker {
    /// Announces that the core is about to sleep until the ring head reaches
    /// `wake_at` (0: any new slot). The caller must re-check for work after this and
    /// before [`Parker::sleep`].
    pub fn prepare(&self, wake_at: u64) {
        self.wake_at.store(wake_at, Ordering::Relaxed);
        self.parked.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// Withdraws [`Parker::prepare`] when the re-check found work.
    pub fn cancel(&self) {
        self.parked.store(false, Ordering::SeqCst);
    }

    /// Sleeps until woken (returns at once if a wake-up is already pending).
    pub async fn sleep(&self) {
        self.notify.notified().await;
        self.parked.store(false, Ordering::SeqCst);
    }

    /// Called by the sequencer after publishing up to ring position `head`: wakes the
    /// core if it is parked and waits for a head this far.
    pub fn published(&self, head: u64) {
        fence(Ordering::SeqCst);
        // The load that sees `parked` (SeqCst) also sees the `wake_at` stored before it.
        if self.parked.load(Ordering::SeqCst)
            && head >= self.wake_at.load(Ordering::Relaxed)
            && self.parked.swap(false, Ordering::SeqCst)
        {
            self.wakeups.fetch_add(1, Ordering::Relaxed);
            self.notify.notify_one();
        }
    }

    /// Called on the core's own thread when it got something to deliver: wakes it if
    /// it parked waiting for a head past `wake_at`.
    pub fn want(&self, wake_at: u64) {
        if self.parked.load(Ordering::SeqCst)
            && self.wake_at.load(Ordering::Relaxed) > wake_at
            && self.parked.swap(false, Ordering::SeqCst)
        {
            self.notify.notify_one();
        }
    }

    /// Wakes the core if it is parked, whatever it waits for, or unconditionally when
    /// `force` is set (shutdown, new work on the core's own thread).
    pub fn wake(&self, force: bool) {
        fence(Ordering::SeqCst);
        if force
            || (self.parked.load(Ordering::SeqCst) && self.parked.swap(false, Ordering::SeqCst))
        {
            self.wakeups.fetch_add(1, Ordering::Relaxed);
            self.notify.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a wake-up is pending: the next `sleep` would return at once.
    fn woken(p: &Parker) -> bool {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::select! {
                biased;
                _ = p.sleep() => true,
                _ = std::future::ready(()) => false,
            }
        })
    }

    #[test]
    fn a_core_waiting_for_any_slot_is_woken_by_the_next_publish() {
        let p = Parker::default();
        p.prepare(0);
        p.published(1);
        assert!(woken(&p));
        assert_eq!(p.wakeups.load(Ordering::Relaxed), 1);
        // Not parked any more: a second publish costs nothing.
        p.published(2);
        assert_eq!(p.wakeups.load(Ordering::Relaxed), 1);
        assert!(!woken(&p));
    }

    #[test]
    fn a_core_waiting_for_a_head_sleeps_through_earlier_publishes() {
        let p = Parker::default();
        p.prepare(100);
        for head in 1..100 {
            p.published(head);
        }
        assert!(!woken(&p));
        assert_eq!(p.wakeups.load(Ordering::Relaxed), 0);
        p.published(100);
        assert_eq!(p.wakeups.load(Ordering::Relaxed), 1);
        assert!(woken(&p));
    }

    #[test]
    fn a_core_that_got_a_subscriber_wakes_itself_once() {
        let p = Parker::default();
        p.prepare(0);
        // Parked for any slot already: nothing to do.
        p.want(0);
        assert!(!woken(&p));
        p.prepare(1 << 20);
        p.want(0);
        assert!(woken(&p));
        // It is no longer parked: the sequencer's next publish does not wake it again.
        p.published(1 << 20);
        assert!(!woken(&p));
    }

    #[test]
    fn a_forced_wake_ignores_the_head() {
        let p = Parker::default();
        p.prepare(u64::MAX);
        p.wake(true);
        assert!(woken(&p));
        // A cancelled park is not woken by a later publish.
        p.prepare(0);
        p.cancel();
        p.published(5);
        assert_eq!(p.wakeups.load(Ordering::Relaxed), 1);
    }
}
