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

/// How the sequencer thread sleeps on an empty feed channel and how a feed wakes it.
///
/// A blocking `recv` on the channel spins and yields before it sleeps, which costs
/// more than the wake-up itself when ticks come in bursts a fraction of a millisecond
/// apart. The sequencer instead sets `parked`, checks the channel once more and parks
/// its thread; a sender, after its send, swaps `parked` back and unparks it only when
/// it was set, so a busy sequencer costs a sender one atomic load. The same Dekker
/// pattern as [`Parker`]: `SeqCst` on the flag, a `SeqCst` fence between the send and
/// the load.
#[derive(Debug, Default)]
pub struct Doorbell {
    parked: AtomicBool,
    thread: std::sync::OnceLock<std::thread::Thread>,
    /// Times a sender unparked the waiting thread.
    pub wakeups: AtomicU64,
}

impl Doorbell {
    /// Wakes the waiting thread if it is parked (called after a send).
    pub fn ring(&self) {
        fence(Ordering::SeqCst);
        if self.parked.load(Ordering::Relaxed) && self.parked.swap(false, Ordering::SeqCst) {
            if let Some(t) = self.thread.get() {
                self.wakeups.fetch_add(1, Ordering::Relaxed);
                t.unpark();
            }
        }
    }

    /// Parks the calling thread (always the same one) until a sender rings, unless
    /// `ready` says there is work after the flag is set; at most `timeout`.
    pub fn wait(&self, ready: impl Fn() -> bool, timeout: std::time::Duration) {
        self.thread.get_or_init(std::thread::current);
        self.parked.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if !ready() {
            std::thread::park_timeout(timeout);
        }
        self.parked.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

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

    #[test]
    fn a_ring_wakes_a_waiting_thread_and_none_is_lost() {
        let bell = Arc::new(Doorbell::default());
        let (tx, rx) = crossbeam_channel::unbounded::<u32>();
        let waiter = {
            let bell = bell.clone();
            std::thread::spawn(move || {
                let mut got = 0;
                while got < 1000 {
                    match rx.try_recv() {
                        Ok(_) => got += 1,
                        // A lost wake-up leaves this parked for an hour: the test runner's
                        // timeout fails it.
                        Err(_) => bell.wait(|| !rx.is_empty(), Duration::from_secs(3600)),
                    }
                }
                got
            })
        };
        for i in 0..1000 {
            tx.send(i).unwrap();
            bell.ring();
            if i % 100 == 0 {
                std::thread::yield_now();
            }
        }
        assert_eq!(waiter.join().unwrap(), 1000);
    }
}
