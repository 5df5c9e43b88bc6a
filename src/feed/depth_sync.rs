//! `DepthSync`: joining a venue's diff-depth stream to a depth snapshot, sans-IO.
//!
//! Binance's documented procedure for a local order book
//! (<https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams#how-to-manage-a-local-order-book-correctly>):
//! open `<symbol>@depth@100ms` and buffer its events; fetch a snapshot
//! (`GET /api/v3/depth`, whose `lastUpdateId` is where it stands); drop every buffered
//! event with `u <= lastUpdateId`; the first event applied must have
//! `U <= lastUpdateId + 1 <= u`; from then on each event's `U` is the previous event's
//! `u + 1`. Anything else is a gap, and the book must be fetched again.
//!
//! A diff-depth event, for reference:
//!
//! ```json
//! {"e":"depthUpdate","E":1672515782136,"s":"BNBBTC","U":157,"u":160,
//!  "b":[["0.0024","10"]],"a":[["0.0026","100"]]}
//! ```
//!
//! `DepthSync` is that procedure alone, generic over the event's payload: the feed
//! hands it each event's `(U, u)` and the snapshot's `lastUpdateId`, and it answers
//! what to apply, what to drop, and when to fetch a snapshot again. The buffer is
//! bounded: past `max_buffered` events the oldest is dropped (counted), since a
//! snapshot that slow will be newer than it anyway.

use std::collections::VecDeque;

/// What to do with one event ([`DepthSync::on_event`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<E> {
    /// It follows the last one applied: apply it.
    Apply(E),
    /// Kept until the snapshot arrives.
    Buffered,
    /// Already covered (`u` not above what was applied): drop it.
    Stale,
    /// It does not follow the last one applied: the book is no longer the venue's.
    /// Fetch a snapshot and hand it to [`DepthSync::on_snapshot`]; the event is kept.
    Resync {
        /// The first update id missing.
        expected: u64,
        /// The first update id of the event that showed it.
        got: u64,
    },
}

/// Why a snapshot could not be joined to the buffered events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// The oldest event after the snapshot starts after `lastUpdateId + 1`: events in
    /// between were never buffered (the stream started late, or the buffer dropped
    /// them). Fetch a newer snapshot.
    #[error("snapshot {last_update_id} is older than the first buffered event ({first})")]
    SnapshotTooOld {
        /// The snapshot's `lastUpdateId`.
        last_update_id: u64,
        /// `U` of the oldest buffered event after it.
        first: u64,
    },
    /// A buffered event starts past the one after the last applied.
    #[error("buffered events jump from {last} to {next}")]
    Gap {
        /// `u` of the last event applied (or the snapshot's id).
        last: u64,
        /// `U` of the event after it.
        next: u64,
    },
}

#[derive(Debug)]
enum State<E> {
    /// Waiting for a snapshot: the events so far, `(U, u, event)`.
    Buffering(VecDeque<(u64, u64, E)>),
    /// Joined: `u` of the last event applied (or the snapshot's id).
    Live(u64),
}

/// The join of one symbol's diff-depth stream to its snapshots.
#[derive(Debug)]
pub struct DepthSync<E> {
    state: State<E>,
    max_buffered: usize,
    /// Buffered events dropped at the bound.
    pub dropped: u64,
}

impl<E> DepthSync<E> {
    /// Buffering, before the first snapshot; at most `max_buffered` events kept.
    pub fn new(max_buffered: usize) -> DepthSync<E> {
        DepthSync {
            state: State::Buffering(VecDeque::new()),
            max_buffered: max_buffered.max(1),
            dropped: 0,
        }
    }

    /// Whether a snapshot is awaited.
    pub fn needs_snapshot(&self) -> bool {
        matches!(self.state, State::Buffering(_))
    }

    /// `u` of the last event applied (or the snapshot's id) when live; `None` while
    /// a snapshot is awaited.
    pub fn applied(&self) -> Option<u64> {
        match self.state {
            State::Live(applied) => Some(applied),
            State::Buffering(_) => None,
        }
    }

    /// One event whose update ids run from `first` (`U`) to `last` (`u`). Live, it is
    /// applied when it follows the last one (`U == u + 1` of it, or right after a
    /// snapshot `U <= lastUpdateId + 1 <= u`: the documented first event, whether it
    /// was buffered or read after the snapshot arrived).
    pub fn on_event(&mut self, first: u64, last: u64, event: E) -> Step<E> {
        match &mut self.state {
            State::Buffering(buf) => {
                if buf.len() >= self.max_buffered {
                    buf.pop_front();
                    self.dropped += 1;
                }
                buf.push_back((first, last, event));
                Step::Buffered
            }
            State::Live(applied) => {
                let applied = *applied;
                if last <= applied {
                    Step::Stale
                } else if first <= applied + 1 {
                    // `first < applied + 1` only right after a snapshot: the event
                    // straddles it, and its absolute sizes may be applied again.
                    self.state = State::Live(last);
                    Step::Apply(event)
                } else {
                    self.state = State::Buffering(VecDeque::from([(first, last, event)]));
                    Step::Resync {
                        expected: applied + 1,
                        got: first,
                    }
                }
            }
        }
    }

    /// The snapshot, standing at `last_update_id`, arrived: returns the buffered events
    /// to apply after it, in order, and the stream is live. On an error the events
    /// stay buffered and a newer snapshot is needed.
    pub fn on_snapshot(&mut self, last_update_id: u64) -> Result<Vec<E>, JoinError> {
        let State::Buffering(buf) = &mut self.state else {
            // A snapshot while live replaces the book: continue from it.
            self.state = State::Live(last_update_id);
            return Ok(Vec::new());
        };
        while buf.front().is_some_and(|&(_, u, _)| u <= last_update_id) {
            buf.pop_front();
        }
        if let Some(&(first, _, _)) = buf.front() {
            if first > last_update_id + 1 {
                return Err(JoinError::SnapshotTooOld {
                    last_update_id,
                    first,
                });
            }
        }
        // Each event must start at or before the one after the last applied; one
        // wholly covered by those before it (a re-sent event) is dropped, one that
        // overlaps them is applied (its sizes are absolute).
        let mut applied = last_update_id;
        for &(first, last, _) in buf.iter() {
            if last <= applied {
                continue;
            }
            if first > applied + 1 {
                return Err(JoinError::Gap {
                    last: applied,
                    next: first,
                });
            }
            applied = last;
        }
        let mut applied = last_update_id;
        let mut out = Vec::with_capacity(buf.len());
        for (_, u, e) in buf.drain(..) {
            if u > applied {
                applied = u;
                out.push(e);
            }
        }
        self.state = State::Live(applied);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Binance's own example: snapshot 160 joins events 157–160 (dropped) and
    /// 161–165 (applied), then 166–170 follows and 172–175 is a gap.
    #[test]
    fn joins_the_snapshot_then_checks_continuity() {
        let mut s = DepthSync::new(16);
        assert!(s.needs_snapshot());
        assert_eq!(s.on_event(150, 156, "a"), Step::Buffered);
        assert_eq!(s.on_event(157, 160, "b"), Step::Buffered);
        assert_eq!(s.on_event(161, 165, "c"), Step::Buffered);
        assert_eq!(s.on_snapshot(160), Ok(vec!["c"]));
        assert!(!s.needs_snapshot());
        assert_eq!(s.on_event(161, 165, "dup"), Step::Stale);
        assert_eq!(s.on_event(166, 170, "d"), Step::Apply("d"));
        assert_eq!(
            s.on_event(172, 175, "e"),
            Step::Resync {
                expected: 171,
                got: 172
            }
        );
        assert!(s.needs_snapshot());
        // The event that showed the gap is kept for the next join.
        assert_eq!(s.on_snapshot(173), Ok(vec!["e"]));
        assert_eq!(s.on_event(176, 176, "f"), Step::Apply("f"));
        assert_eq!(s.applied(), Some(176));
    }

    /// A snapshot fetched before the events that straddle it were read (the feed
    /// fetches it in line): the straddling event, read live, is applied.
    #[test]
    fn an_event_read_after_the_snapshot_may_straddle_it() {
        let mut s = DepthSync::new(16);
        s.on_event(100, 104, "a");
        assert_eq!(s.on_snapshot(106), Ok(vec![]), "100–104 is older than 106");
        assert_eq!(s.applied(), Some(106));
        assert_eq!(s.on_event(105, 108, "b"), Step::Apply("b"));
        assert_eq!(
            s.on_event(110, 111, "c"),
            Step::Resync {
                expected: 109,
                got: 110
            },
            "only straddling the snapshot is allowed; later events must follow exactly"
        );
    }

    #[test]
    fn a_snapshot_straddling_an_event_joins_and_an_old_one_does_not() {
        let mut s = DepthSync::new(16);
        s.on_event(100, 110, 1);
        s.on_event(111, 111, 2);
        assert_eq!(s.on_snapshot(105), Ok(vec![1, 2]), "U <= id + 1 <= u");
        let mut late = DepthSync::new(16);
        late.on_event(200, 210, 1);
        assert_eq!(
            late.on_snapshot(150),
            Err(JoinError::SnapshotTooOld {
                last_update_id: 150,
                first: 200
            })
        );
        assert!(late.needs_snapshot(), "still buffering");
        assert_eq!(late.on_snapshot(205), Ok(vec![1]));
        let mut holes = DepthSync::new(16);
        holes.on_event(10, 11, 1);
        holes.on_event(13, 14, 2);
        assert_eq!(
            holes.on_snapshot(9),
            Err(JoinError::Gap { last: 11, next: 13 })
        );
    }

    /// A re-sent event in the buffer is dropped, an overlapping one applied: neither
    /// is a gap (found by fuzzing: a backwards "gap" asked for snapshots forever).
    #[test]
    fn re_sent_and_overlapping_buffered_events_join() {
        let mut s = DepthSync::new(16);
        s.on_event(10, 12, "a");
        s.on_event(13, 15, "b");
        s.on_event(13, 15, "b again");
        s.on_event(14, 17, "overlap");
        s.on_event(18, 18, "c");
        assert_eq!(s.on_snapshot(11), Ok(vec!["a", "b", "overlap", "c"]));
        assert_eq!(s.applied(), Some(18));
    }

    #[test]
    fn the_buffer_is_bounded() {
        let mut s = DepthSync::new(2);
        for i in 0..5u64 {
            s.on_event(i * 10, i * 10 + 9, i);
        }
        assert_eq!(s.dropped, 3);
        assert_eq!(s.on_snapshot(35), Ok(vec![3, 4]), "30–39 straddles 35");
    }
}
