//! `Ring`: the lock-free single-producer, multi-consumer broadcast ring of ticks.
//!
//! Every reader sees every tick (broadcast, not work-sharing). The producer never waits
//! for readers: slot `p & mask` is overwritten by position `p + capacity` whether or
//! not a reader has read it. A reader that falls more than a ring behind is *lapped*;
//! it finds out from the slot's stamp (position `p` is complete when the slot's stamp
//! is `2p + 2`), skips to the head and resynchronises from the last-value cache.
//! No locks, no allocation after construction, no per-reader copy on the producer side.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_utils::CachePadded;

use crate::seqlock::SeqCell;
use crate::tick::Tick;

/// The shared storage. Create with [`Ring::new`], which hands back the one
/// [`Publisher`]; readers come from [`Ring::reader`].
#[derive(Debug)]
pub struct Ring {
    slots: Box<[SeqCell]>,
    mask: u64,
    /// Number of ticks ever published; position `head - 1` is the newest.
    head: CachePadded<AtomicU64>,
    /// Resynchronisations marked by the producer ([`Publisher::mark_resync`]); readers
    /// compare it with the last one they handled, once per batch.
    resyncs: CachePadded<AtomicU64>,
    /// The number of the latest resynchronisation that was a restart (sequences
    /// started over); 0 for none.
    restart: AtomicU64,
    /// Position of the latest resynchronisation: a resume never replays from below it.
    floor: AtomicU64,
}

/// The single writer of a [`Ring`]. Not `Clone`: one producer is the invariant that
/// makes the slots' seqlocks sound in meaning.
#[derive(Debug)]
pub struct Publisher {
    ring: Arc<Ring>,
    next: u64,
}

/// One consumer's position in a [`Ring`].
#[derive(Debug, Clone)]
pub struct Reader {
    ring: Arc<Ring>,
    next: u64,
    /// Last head seen, so that the shared head is loaded only when the reader catches up.
    cached_head: u64,
}

/// What [`Reader::read`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// The tick at the reader's position; the position advanced.
    Tick(Tick),
    /// Nothing new yet.
    Empty,
    /// The producer overwrote the reader's position: the reader must call
    /// [`Reader::resync`] and recover from the last-value cache.
    Lapped,
}

impl Ring {
    /// A ring of `capacity` slots (rounded up to a power of two, at least 2) and its
    /// publisher.
    pub fn new(capacity: usize) -> (Publisher, Arc<Ring>) {
        let capacity = capacity.max(2).next_power_of_two();
        let slots = (0..capacity).map(|_| SeqCell::new()).collect();
        let ring = Arc::new(Ring {
            slots,
            mask: capacity as u64 - 1,
            head: CachePadded::new(AtomicU64::new(0)),
            resyncs: CachePadded::new(AtomicU64::new(0)),
            restart: AtomicU64::new(0),
            floor: AtomicU64::new(0),
        });
        (
            Publisher {
                ring: ring.clone(),
                next: 0,
            },
            ring,
        )
    }

    /// Number of slots.
    pub fn capacity(&self) -> u64 {
        self.mask + 1
    }

    /// Number of ticks published so far (acquire: the slots below it are complete).
    pub fn head(&self) -> u64 {
        self.head.load(Ordering::Acquire)
    }

    /// How many resynchronisations the producer has marked (acquire: the last-value
    /// cache already holds the values it restored). A reader that sees a number it has
    /// not handled yet brings its subscribers up to date from the cache.
    pub fn resync_generation(&self) -> u64 {
        self.resyncs.load(Ordering::Acquire)
    }

    /// The number of the latest resynchronisation that was a restart, when the source's
    /// sequence numbers started over (0: none). Read after [`Ring::resync_generation`].
    pub fn restart_generation(&self) -> u64 {
        self.restart.load(Ordering::Relaxed)
    }

    /// The position of the latest resynchronisation. Below it the ring may miss ticks
    /// (lost upstream) or hold an earlier run's sequence numbers, so a resume never
    /// replays from there.
    pub fn replay_floor(&self) -> u64 {
        self.floor.load(Ordering::Relaxed)
    }

    /// A reader starting at the current head: it sees ticks published from now on.
    pub fn reader(self: &Arc<Ring>) -> Reader {
        let head = self.head();
        Reader {
            ring: self.clone(),
            next: head,
            cached_head: head,
        }
    }

    /// The tick at absolute position `pos`, if the ring still holds it. Used to replay
    /// a gap after a resume.
    pub fn get(&self, pos: u64) -> Option<Tick> {
        if pos >= self.head() {
            return None;
        }
        let (stamp, words) = self.slots[(pos & self.mask) as usize].try_read()?;
        if stamp != 2 * pos + 2 {
            return None;
        }
        Tick::from_words(&words)
    }
}

impl Publisher {
    /// Appends `tick`, overwriting the oldest slot; never blocks.
    pub fn publish(&mut self, tick: &Tick) {
        let pos = self.next;
        self.ring.slots[(pos & self.ring.mask) as usize].write(2 * pos + 2, &tick.to_words());
        self.next = pos + 1;
        self.ring.head.store(self.next, Ordering::Release);
    }

    /// Marks a resynchronisation: the producer's source lost its place (an edge node
    /// missed ticks from its ingest, or the ingest restarted, `restart`) and the
    /// last-value cache now holds fresh values that did not come through the ring.
    /// Readers notice at their next batch ([`Ring::resync_generation`]) and send their
    /// subscribers those values flagged snapshot. Call it after the cache is updated.
    pub fn mark_resync(&mut self, restart: bool) {
        let generation = self.ring.resyncs.load(Ordering::Relaxed) + 1;
        self.ring.floor.store(self.next, Ordering::Relaxed);
        if restart {
            self.ring.restart.store(generation, Ordering::Relaxed);
        }
        // Publishes the floor, the restart mark and the cache writes before it.
        self.ring.resyncs.store(generation, Ordering::Release);
    }

    /// The ring this publisher writes.
    pub fn ring(&self) -> &Arc<Ring> {
        &self.ring
    }
}

impl Reader {
    /// Reads the tick at this reader's position, if published, and advances.
    pub fn read(&mut self) -> Read {
        if self.next >= self.cached_head {
            self.cached_head = self.ring.head();
            if self.next >= self.cached_head {
                return Read::Empty;
            }
        }
        if self.cached_head - self.next > self.ring.capacity() {
            return Read::Lapped;
        }
        let slot = &self.ring.slots[(self.next & self.ring.mask) as usize];
        match slot.try_read() {
            Some((stamp, words)) if stamp == 2 * self.next + 2 => match Tick::from_words(&words) {
                Some(tick) => {
                    self.next += 1;
                    Read::Tick(tick)
                }
                None => Read::Lapped,
            },
            // A published position whose slot holds another stamp, or is being written,
            // has been overwritten by a later lap.
            _ => Read::Lapped,
        }
    }

    /// The ring's head now, a bound for [`Reader::read_before`]. Taken before the
    /// caller reads its clock, it makes every tick read up to it older than that reading.
    pub fn mark(&self) -> u64 {
        self.ring.head()
    }

    /// [`Reader::read`] for positions before `limit` (a [`Reader::mark`]) only: the
    /// ones past it are [`Read::Empty`] until the next mark.
    pub fn read_before(&mut self, limit: u64) -> Read {
        if self.next >= limit {
            return Read::Empty;
        }
        self.read()
    }

    /// Moves to the current head after a lap; returns how many positions were skipped.
    /// The caller recovers the skipped values from the last-value cache: because the
    /// sequencer updates the cache before it publishes, everything below the new
    /// position is already reflected there.
    pub fn resync(&mut self) -> u64 {
        let head = self.ring.head();
        let skipped = head.saturating_sub(self.next);
        self.next = head;
        self.cached_head = head;
        skipped
    }

    /// Whether the producer has published past this reader's position.
    pub fn has_pending(&self) -> bool {
        self.ring.head() > self.next
    }

    /// The absolute position of the next tick this reader returns.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// How many published ticks this reader has not read yet.
    pub fn lag(&self) -> u64 {
        self.ring.head().saturating_sub(self.next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tick::{Body, Flags};

    fn tick(seq: u64) -> Tick {
        Tick {
            symbol_id: (seq % 7) as u32,
            seq,
            ts_event: seq * 10,
            ts_recv: seq * 10 + 1,
            flags: Flags::empty(),
            count: 1,
            body: Body::trade(seq as i64, 1),
        }
    }

    #[test]
    fn capacity_rounds_to_power_of_two() {
        assert_eq!(Ring::new(1000).1.capacity(), 1024);
        assert_eq!(Ring::new(0).1.capacity(), 2);
    }

    #[test]
    fn reader_sees_every_tick_in_order() {
        let (mut p, ring) = Ring::new(8);
        let mut r = ring.reader();
        assert_eq!(r.read(), Read::Empty);
        for s in 1..=5 {
            p.publish(&tick(s));
        }
        for s in 1..=5 {
            assert_eq!(r.read(), Read::Tick(tick(s)));
        }
        assert_eq!(r.read(), Read::Empty);
    }

    #[test]
    fn wraps_around_many_times() {
        let (mut p, ring) = Ring::new(4);
        let mut r = ring.reader();
        for s in 1..=1000 {
            p.publish(&tick(s));
            assert_eq!(r.read(), Read::Tick(tick(s)));
        }
        assert_eq!(ring.head(), 1000);
    }

    #[test]
    fn lapped_reader_detects_and_resyncs() {
        let (mut p, ring) = Ring::new(4);
        let mut r = ring.reader();
        for s in 1..=3 {
            p.publish(&tick(s));
        }
        assert_eq!(r.read(), Read::Tick(tick(1)));
        for s in 4..=10 {
            p.publish(&tick(s));
        }
        assert_eq!(r.read(), Read::Lapped);
        assert_eq!(r.resync(), 9);
        assert_eq!(r.read(), Read::Empty);
        p.publish(&tick(11));
        assert_eq!(r.read(), Read::Tick(tick(11)));
    }

    #[test]
    fn get_returns_only_positions_still_held() {
        let (mut p, ring) = Ring::new(4);
        for s in 1..=6 {
            p.publish(&tick(s));
        }
        assert_eq!(ring.get(0), None, "overwritten");
        assert_eq!(ring.get(2), Some(tick(3)));
        assert_eq!(ring.get(5), Some(tick(6)));
        assert_eq!(ring.get(6), None, "not yet published");
    }

    #[test]
    fn resync_marks_generation_floor_and_restart() {
        let (mut p, ring) = Ring::new(8);
        assert_eq!((ring.resync_generation(), ring.replay_floor()), (0, 0));
        p.publish(&tick(1));
        p.publish(&tick(2));
        p.mark_resync(false);
        assert_eq!(ring.resync_generation(), 1);
        assert_eq!(ring.replay_floor(), 2);
        assert_eq!(ring.restart_generation(), 0);
        p.publish(&tick(3));
        p.mark_resync(true);
        assert_eq!(ring.resync_generation(), 2);
        assert_eq!(ring.restart_generation(), 2);
        assert_eq!(ring.replay_floor(), 3);
    }

    #[test]
    fn independent_readers() {
        let (mut p, ring) = Ring::new(16);
        let mut a = ring.reader();
        p.publish(&tick(1));
        let mut b = ring.reader();
        p.publish(&tick(2));
        assert_eq!(a.read(), Read::Tick(tick(1)));
        assert_eq!(a.read(), Read::Tick(tick(2)));
        assert_eq!(b.read(), Read::Tick(tick(2)));
    }
}
