//! Which ingest node leads: a lease in a NATS JetStream key-value bucket, sans-IO.
//!
//! Every ingest node of a cluster runs an [`Election`]. The lease is one key
//! (`leader`) in the bucket `bus.lease_bucket()`; its value ([`LeaseValue`]) names the
//! holder, its term and the epoch it publishes under. Every write is a compare-and-set
//! on the key's revision (JetStream's expected-last-subject-sequence), so of two nodes
//! that try at once exactly one wins.
//!
//! - The **leader** rewrites the value every `bus.lease_check_interval_ms` (a renewal,
//!   expecting the revision of its last write). A renewal refused because the revision
//!   moved makes it read the key: unless the value still names it under its term (a
//!   NATS server that restarted may have lost the last write), another node took the
//!   lease and the leader steps down. A renewal that fails otherwise (NATS away, a timeout) is tried again at the next check; the node
//!   still holds the lease, but [`Election::is_leader`] says false once `bus.lease_ms`
//!   passed without a confirmed renewal.
//! - A **standby** reads the key at every check. It takes the lease (a write expecting
//!   the revision it read) when the key is absent, released by its holder (clean
//!   shutdown), unreadable, or when the same revision has stood for `bus.lease_ms`
//!   since the standby first saw it: the leader stopped renewing. Counting from the
//!   standby's own first sight (on its own monotonic clock) needs no clock agreement
//!   between machines, only that their clocks run at about the same rate; the leader
//!   stops calling itself leader earlier, `bus.lease_ms` after it *sent* its last
//!   confirmed renewal.
//! - A **term** numbers leaderships: the new holder writes the old value's term + 1
//!   (or more, when the bus showed it a higher one), so terms only grow, even across a
//!   lost bucket as long as one node saw the old terms. Every bus message carries its
//!   publisher's term; an edge drops a message whose term is older than one it has
//!   seen (the fence: a paused leader that wakes up after losing its lease publishes
//!   into the void until its next renewal is refused).
//!
//! The I/O shell (the election task of the `bus-publisher` thread, in
//! [`super::publisher`]) asks [`Election::tick`] what to do at each check, performs it
//! against the bucket, and reports back ([`Election::on_read`],
//! [`Election::on_written`]); every decision here takes `now`, so the tests run in
//! simulated time.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The key of the lease in its bucket.
pub const LEASE_KEY: &str = "leader";

/// The value of the lease key (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseValue {
    /// The holder's node name (`bus.node_name`).
    pub node: String,
    /// The holder's term.
    pub term: u64,
    /// The epoch the holder publishes under (0 while it has not decided yet).
    pub epoch: u64,
    /// The holder gave the lease up (clean shutdown): any node may take it at once.
    #[serde(default)]
    pub released: bool,
}

impl LeaseValue {
    /// Parses a value read from the bucket; `None` when it is not a lease value.
    pub fn parse(bytes: &[u8]) -> Option<LeaseValue> {
        serde_json::from_slice(bytes).ok()
    }

    /// The bytes to write.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// What the key held when it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The key's revision (the bucket stream's sequence of its last write).
    pub revision: u64,
    /// The value; `None` when the key was deleted or purged, or holds something that is
    /// not a lease value.
    pub value: Option<LeaseValue>,
}

/// What the I/O shell should do against the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Read the key and report with [`Election::on_read`].
    Read,
    /// Write `value` if the key's revision is still `expect` (0: the key must not
    /// exist), and report with [`Election::on_written`].
    Write {
        /// The revision the write expects.
        expect: u64,
        /// The value to write.
        value: LeaseValue,
    },
}

/// How a write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Written: the key's new revision.
    Ok(u64),
    /// Refused: the revision had moved (another node wrote).
    Conflict,
    /// No answer, or another error: nothing is known.
    Failed,
}

/// A change of leadership, for the node to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// This node now leads under `term`; the previous holder's value said `epoch`
    /// (0: none), which a node that must start a new numbering run has to exceed.
    Lead {
        /// The new term.
        term: u64,
        /// The epoch of the lease value this node replaced.
        previous_epoch: u64,
    },
    /// This node no longer leads: another one took the lease.
    StepDown,
}

/// What the I/O shell does after a report.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Step {
    /// The next operation to perform right away (and report).
    pub next: Option<Action>,
    /// A leadership change to act on.
    pub change: Option<Change>,
}

#[derive(Debug, Clone)]
enum State {
    Standby {
        /// The last revision read, the value it held, and when this node first saw
        /// that revision.
        seen: Option<(Observed, Instant)>,
    },
    Leading {
        term: u64,
        /// Revision of this node's last confirmed write.
        revision: u64,
        /// When that write was sent.
        renewed_at: Instant,
        /// A renewal was refused: read the key before giving up (a NATS server that
        /// restarted may have lost the last write, and the lease still names this
        /// node under its term).
        verify: bool,
    },
}

/// One node's view of the election (see the module docs).
#[derive(Debug, Clone)]
pub struct Election {
    node: String,
    lease: Duration,
    state: State,
    /// Highest term seen in the bucket or on the bus.
    max_term: u64,
    /// The epoch of the last value read.
    kv_epoch: u64,
    /// The epoch to write with renewals (given at each tick).
    epoch: u64,
    /// A write is out: when it was sent, and the term it claims when it acquires
    /// (`None`: a renewal).
    pending: Option<(Instant, Option<u64>)>,
}

impl Election {
    /// A standby named `node` that counts a lease as `lease` long.
    pub fn new(node: impl Into<String>, lease: Duration) -> Election {
        Election {
            node: node.into(),
            lease,
            state: State::Standby { seen: None },
            max_term: 0,
            kv_epoch: 0,
            epoch: 0,
            pending: None,
        }
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The term this node leads under, if it holds the lease (confirmed or not).
    pub fn term(&self) -> Option<u64> {
        match self.state {
            State::Leading { term, .. } => Some(term),
            State::Standby { .. } => None,
        }
    }

    /// Whether this node leads with a lease confirmed less than `lease` ago.
    pub fn is_leader(&self, now: Instant) -> bool {
        match self.state {
            State::Leading { renewed_at, .. } => {
                now.saturating_duration_since(renewed_at) < self.lease
            }
            State::Standby { .. } => false,
        }
    }

    /// The holder named by the last value read (a standby's view of who leads).
    pub fn observed_holder(&self) -> Option<&LeaseValue> {
        match &self.state {
            State::Standby {
                seen: Some((o, _)), ..
            } => o.value.as_ref().filter(|v| !v.released),
            _ => None,
        }
    }

    /// The check is due: what to do first. `epoch` is the epoch this node publishes
    /// under (written with each renewal); `bus_term` the highest term it has seen on
    /// the bus.
    pub fn tick(&mut self, now: Instant, epoch: u64, bus_term: u64) -> Action {
        self.max_term = self.max_term.max(bus_term);
        self.epoch = epoch;
        match self.state {
            State::Leading {
                revision,
                verify: false,
                ..
            } => self.renew(revision, now),
            State::Leading { verify: true, .. } | State::Standby { .. } => Action::Read,
        }
    }

    fn renew(&mut self, expect: u64, now: Instant) -> Action {
        let State::Leading { term, .. } = self.state else {
            return Action::Read;
        };
        self.pending = Some((now, None));
        Action::Write {
            expect,
            value: LeaseValue {
                node: self.node.clone(),
                term,
                epoch: self.epoch,
                released: false,
            },
        }
    }

    /// The key was read (`None`: it does not exist). A standby takes the lease when
    /// it is free or has lapsed; a leader whose renewal was refused keeps it only if
    /// it still names this node under its term.
    pub fn on_read(&mut self, entry: Option<Observed>, now: Instant) -> Step {
        if let Some(v) = entry.as_ref().and_then(|o| o.value.as_ref()) {
            self.max_term = self.max_term.max(v.term);
            self.kv_epoch = v.epoch;
        }
        match &mut self.state {
            State::Leading {
                term, verify: true, ..
            } => {
                let term = *term;
                let ours = entry.as_ref().and_then(|o| {
                    o.value
                        .as_ref()
                        .filter(|v| v.node == self.node && v.term == term && !v.released)
                        .map(|_| o.revision)
                });
                match ours {
                    Some(revision) => Step {
                        next: Some(self.renew(revision, now)),
                        change: None,
                    },
                    None => {
                        self.state = State::Standby {
                            seen: entry.map(|o| (o, now)),
                        };
                        Step {
                            next: None,
                            change: Some(Change::StepDown),
                        }
                    }
                }
            }
            State::Leading { .. } => Step::default(),
            State::Standby { seen } => {
                let Some(observed) = entry else {
                    *seen = None;
                    return Step {
                        next: Some(self.acquire(0, now)),
                        change: None,
                    };
                };
                let since = match seen {
                    Some((o, at)) if o.revision == observed.revision => *at,
                    _ => now,
                };
                let free = observed.value.as_ref().is_none_or(|v| v.released);
                let lapsed = now.saturating_duration_since(since) >= self.lease;
                let revision = observed.revision;
                *seen = Some((observed, since));
                Step {
                    next: (free || lapsed).then(|| self.acquire(revision, now)),
                    change: None,
                }
            }
        }
    }

    fn acquire(&mut self, expect: u64, now: Instant) -> Action {
        let term = self.max_term + 1;
        self.pending = Some((now, Some(term)));
        Action::Write {
            expect,
            value: LeaseValue {
                node: self.node.clone(),
                term,
                epoch: self.kv_epoch,
                released: false,
            },
        }
    }

    /// The write of the last [`Action::Write`] ended with `result`.
    pub fn on_written(&mut self, result: Written) -> Step {
        let Some((sent_at, claim)) = self.pending.take() else {
            return Step::default();
        };
        match (&mut self.state, result, claim) {
            (
                State::Leading {
                    revision,
                    renewed_at,
                    verify,
                    ..
                },
                Written::Ok(rev),
                None,
            ) => {
                *revision = rev;
                *renewed_at = sent_at;
                *verify = false;
                Step::default()
            }
            (State::Leading { verify, .. }, Written::Conflict, None) => {
                *verify = true;
                Step {
                    next: Some(Action::Read),
                    change: None,
                }
            }
            (State::Standby { .. }, Written::Ok(rev), Some(term)) => {
                self.max_term = self.max_term.max(term);
                self.state = State::Leading {
                    term,
                    revision: rev,
                    renewed_at: sent_at,
                    verify: false,
                };
                Step {
                    next: None,
                    change: Some(Change::Lead {
                        term,
                        previous_epoch: self.kv_epoch,
                    }),
                }
            }
            (State::Standby { seen }, Written::Conflict, Some(_)) => {
                // Someone else got there first: read again at the next check.
                *seen = None;
                Step::default()
            }
            _ => Step::default(),
        }
    }

    /// The NATS connection came back. A standby starts counting the holder's lease
    /// afresh, so that a leader that was cut off like everyone else gets a whole lease
    /// to renew before anyone takes over.
    pub fn on_reconnect(&mut self) {
        if let State::Standby { seen } = &mut self.state {
            *seen = None;
        }
        self.pending = None;
    }

    /// The write that gives the lease up (clean shutdown), if this node holds it.
    pub fn release(&mut self, epoch: u64) -> Option<Action> {
        let State::Leading { term, revision, .. } = self.state else {
            return None;
        };
        self.state = State::Standby { seen: None };
        self.pending = None;
        Some(Action::Write {
            expect: revision,
            value: LeaseValue {
                node: self.node.clone(),
                term,
                epoch,
                released: true,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_millis(1_000);
    const CHECK: Duration = Duration::from_millis(100);

    fn value(node: &str, term: u64) -> LeaseValue {
        LeaseValue {
            node: node.into(),
            term,
            epoch: 77,
            released: false,
        }
    }

    /// A bucket with one key, as JetStream keeps it: a revision that every write
    /// moves, compare-and-set on it.
    #[derive(Default)]
    struct Bucket {
        revision: u64,
        value: Option<LeaseValue>,
        next: u64,
    }

    impl Bucket {
        fn read(&self) -> Option<Observed> {
            (self.revision > 0).then(|| Observed {
                revision: self.revision,
                value: self.value.clone(),
            })
        }

        fn write(&mut self, expect: u64, value: LeaseValue) -> Written {
            if expect != self.revision {
                return Written::Conflict;
            }
            self.next += 1;
            self.revision = self.next;
            self.value = Some(value);
            Written::Ok(self.revision)
        }
    }

    /// One check of `e` against `b` at `now`, as the I/O shell runs it.
    fn check(e: &mut Election, b: &mut Bucket, now: Instant) -> Option<Change> {
        let mut next = Some(e.tick(now, 77, 0));
        let mut change = None;
        while let Some(action) = next {
            let step = match action {
                Action::Read => e.on_read(b.read(), now),
                Action::Write { expect, value } => e.on_written(b.write(expect, value)),
            };
            change = change.or(step.change);
            next = step.next;
        }
        change
    }

    #[test]
    fn the_first_node_leads_and_renews() {
        let t0 = Instant::now();
        let mut b = Bucket::default();
        let mut a = Election::new("a", LEASE);
        assert!(!a.is_leader(t0));
        assert_eq!(
            check(&mut a, &mut b, t0),
            Some(Change::Lead {
                term: 1,
                previous_epoch: 0
            })
        );
        assert!(a.is_leader(t0));
        for i in 1..30 {
            assert_eq!(check(&mut a, &mut b, t0 + CHECK * i), None);
        }
        assert_eq!(b.value.as_ref().map(|v| v.term), Some(1));
        assert!(b.revision > 20, "every check renews");
        // A standby never takes a lease that keeps moving.
        let mut s = Election::new("s", LEASE);
        for i in 30..60 {
            let now = t0 + CHECK * i;
            assert_eq!(check(&mut a, &mut b, now), None);
            assert_eq!(check(&mut s, &mut b, now), None);
        }
        assert_eq!(s.observed_holder().map(|v| v.node.as_str()), Some("a"));
        assert!(!s.is_leader(t0 + CHECK * 60));
    }

    #[test]
    fn a_standby_takes_over_one_lease_after_the_last_renewal() {
        let t0 = Instant::now();
        let mut b = Bucket::default();
        let mut a = Election::new("a", LEASE);
        let mut s = Election::new("s", LEASE);
        check(&mut a, &mut b, t0);
        check(&mut s, &mut b, t0);
        // a renews up to 500 ms, then stops (killed).
        for i in 1..=5 {
            check(&mut a, &mut b, t0 + CHECK * i);
            check(&mut s, &mut b, t0 + CHECK * i);
        }
        let last_renewal = t0 + CHECK * 5;
        let mut took = None;
        for i in 6..40 {
            let now = t0 + CHECK * i;
            if let Some(c) = check(&mut s, &mut b, now) {
                took = Some((now, c));
                break;
            }
        }
        let (at, change) = took.expect("the standby takes over");
        assert_eq!(
            change,
            Change::Lead {
                term: 2,
                previous_epoch: 77
            }
        );
        // It saw the last renewal at the check right after it, and waited a lease.
        let waited = at - last_renewal;
        assert!(waited >= LEASE && waited <= LEASE + CHECK, "{waited:?}");
        // The old leader stopped calling itself leader before that.
        assert!(!a.is_leader(last_renewal + LEASE));
        // It wakes up (a paused process): its renewal is refused, it steps down.
        assert!(a.term() == Some(1));
        assert_eq!(check(&mut a, &mut b, at + CHECK), Some(Change::StepDown));
        assert_eq!(a.term(), None);
        assert_eq!(
            b.value.as_ref().map(|v| (v.node.as_str(), v.term)),
            Some(("s", 2))
        );
    }

    #[test]
    fn a_released_lease_is_taken_at_once() {
        let t0 = Instant::now();
        let mut b = Bucket::default();
        let mut a = Election::new("a", LEASE);
        let mut s = Election::new("s", LEASE);
        check(&mut a, &mut b, t0);
        check(&mut s, &mut b, t0);
        match a.release(99) {
            Some(Action::Write { expect, value }) => {
                assert!(value.released);
                assert_eq!(b.write(expect, value), Written::Ok(2));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(a.term(), None);
        assert_eq!(
            check(&mut s, &mut b, t0 + CHECK),
            Some(Change::Lead {
                term: 2,
                previous_epoch: 99
            })
        );
        assert!(s.release(1).is_some());
        assert_eq!(a.release(1), None, "a standby has nothing to release");
    }

    #[test]
    fn two_standbys_racing_get_one_leader() {
        let t0 = Instant::now();
        let mut b = Bucket::default();
        let mut x = Election::new("x", LEASE);
        let mut y = Election::new("y", LEASE);
        // Both read the empty key, then both write.
        let wx = x.on_read(b.read(), t0).next;
        let wy = y.on_read(b.read(), t0).next;
        let (
            Some(Action::Write {
                expect: ex,
                value: vx,
            }),
            Some(Action::Write {
                expect: ey,
                value: vy,
            }),
        ) = (wx, wy)
        else {
            panic!("both want the free lease");
        };
        assert!(x.on_written(b.write(ex, vx)).change.is_some());
        assert_eq!(y.on_written(b.write(ey, vy)), Step::default());
        assert_eq!((x.term(), y.term()), (Some(1), None));
        // y then follows x's renewals.
        for i in 1..30 {
            check(&mut x, &mut b, t0 + CHECK * i);
            assert_eq!(check(&mut y, &mut b, t0 + CHECK * i), None);
        }
    }

    #[test]
    fn failed_renewals_keep_the_lease_but_not_the_claim() {
        let t0 = Instant::now();
        let mut b = Bucket::default();
        let mut a = Election::new("a", LEASE);
        check(&mut a, &mut b, t0);
        // NATS away: every write fails.
        for i in 1..=12 {
            let now = t0 + CHECK * i;
            assert!(matches!(a.tick(now, 77, 0), Action::Write { .. }));
            assert_eq!(a.on_written(Written::Failed), Step::default());
        }
        assert_eq!(a.term(), Some(1), "still the holder");
        assert!(!a.is_leader(t0 + CHECK * 12), "unconfirmed past the lease");
        // Back: the renewal succeeds, nobody took over.
        assert_eq!(check(&mut a, &mut b, t0 + CHECK * 13), None);
        assert!(a.is_leader(t0 + CHECK * 13));
    }

    #[test]
    fn a_reconnect_gives_the_leader_a_whole_lease() {
        let t0 = Instant::now();
        let mut b = Bucket::default();
        let mut a = Election::new("a", LEASE);
        let mut s = Election::new("s", LEASE);
        check(&mut a, &mut b, t0);
        check(&mut s, &mut b, t0);
        // A NATS outage of 3 s: nobody reads or writes; then s reconnects first.
        let back = t0 + Duration::from_secs(3);
        s.on_reconnect();
        assert_eq!(check(&mut s, &mut b, back), None, "counts afresh");
        assert_eq!(check(&mut a, &mut b, back + CHECK), None, "a renews");
        assert_eq!(check(&mut s, &mut b, back + CHECK * 2), None);
        assert_eq!(a.term(), Some(1));
    }

    #[test]
    fn terms_grow_past_what_the_bus_showed_and_junk_is_free() {
        let t0 = Instant::now();
        let mut b = Bucket::default();
        // The bucket was lost, but the bus carried term 41.
        let mut s = Election::new("s", LEASE);
        let Action::Read = s.tick(t0, 0, 41) else {
            panic!("a standby reads");
        };
        let w = s.on_read(b.read(), t0).next.unwrap();
        let Action::Write { expect, value: v } = w else {
            panic!()
        };
        assert_eq!((expect, v.term), (0, 42));
        // Someone wrote junk to the key: it does not hold the lease.
        b.revision = 9;
        b.next = 9;
        b.value = None;
        let mut t = Election::new("t", LEASE);
        assert!(matches!(
            t.on_read(b.read(), t0).next,
            Some(Action::Write { expect: 9, .. })
        ));
        // A value naming this very node (a restart under the same bus.node_name) is no
        // exception: the lease must lapse first.
        b.value = Some(value("t", 5));
        let mut t = Election::new("t", LEASE);
        assert_eq!(t.on_read(b.read(), t0), Step::default());
        assert_eq!(
            LeaseValue::parse(&value("a", 3).to_bytes()),
            Some(value("a", 3))
        );
        assert_eq!(LeaseValue::parse(b"nope"), None);
    }

    #[test]
    fn a_leader_whose_last_write_was_lost_keeps_its_lease() {
        let t0 = Instant::now();
        let mut b = Bucket::default();
        let mut a = Election::new("a", LEASE);
        check(&mut a, &mut b, t0);
        check(&mut a, &mut b, t0 + CHECK);
        // The NATS server restarted and lost the last write: the bucket is one
        // revision back, still naming a under term 1.
        b.revision -= 1;
        b.next += 5;
        assert_eq!(check(&mut a, &mut b, t0 + CHECK * 2), None, "no step-down");
        assert_eq!(a.term(), Some(1));
        assert!(a.is_leader(t0 + CHECK * 2));
        assert_eq!(b.revision, b.next, "renewed over the revision it read");
        // Taken by another node meanwhile: the refused renewal, then the read, step
        // it down.
        b.write(b.revision, value("s", 2));
        assert_eq!(
            check(&mut a, &mut b, t0 + CHECK * 3),
            Some(Change::StepDown)
        );
        assert_eq!(a.term(), None);
    }
}
