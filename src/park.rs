//! `Parker`: how an idle writer core sleeps and how the sequencer wakes it.
//!
//! A core with nothing to read sets `parked`, checks the ring once more, and awaits its
//! `Notify`. The sequencer, after publishing a batch, swaps `parked` back to false and
//! notifies only the cores that were parked, so a busy core costs the sequencer one
//! atomic load. Both sides use `SeqCst` on the flag and a `SeqCst` fence around the ring
//! head (Dekker's pattern): either the core sees the new head, or the sequencer sees
//! the flag, so no wake-up is lost. A spurious notification only costs one extra loop.

use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};

use tokio::sync::Notify;

/// One core's parking spot.
#[derive(Debug, Default)]
pub struct Parker {
    parked: AtomicBool,
    notify: Notify,
    /// Times the core was woken by the sequencer.
    pub wakeups: AtomicU64,
}

impl Parker {
    /// Announces that the core is about to sleep. The caller must re-check for work
    /// after this and before [`Parker::sleep`].
    pub fn prepare(&self) {
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

    /// Wakes the core if it is parked (called by the sequencer after publishing), or
    /// unconditionally when `force` is set (shutdown, new work from another thread).
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
