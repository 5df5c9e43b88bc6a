//! `Subscriptions`: which of a core's connections want which symbol.
//!
//! The routing table the dispatch loop walks per tick: `by_symbol[id]` lists the
//! subscriptions of symbol `id`, each naming its connection. A connection keeps its
//! own sorted list of `(symbol, subscription)` so that unsubscribing and closing are
//! a lookup, not a scan; with one symbol per connection that list is one 8-byte entry.

use slab::Slab;

use super::conflation::{Conflator, RateGate};
use crate::protocol::Channels;

/// Key of a subscription in [`Subscriptions`].
pub type SubKey = u32;

/// One subscription: a connection's interest in one symbol.
#[derive(Debug)]
pub struct Sub {
    /// The connection (a key of the core's connections).
    pub conn: usize,
    /// The symbol id.
    pub symbol: u32,
    /// Highest sequence delivered or absorbed; anything at or below it is skipped,
    /// which makes snapshots and live ticks meet without gap or duplicate.
    pub last_seq: u64,
    /// The same for book changes, which are numbered apart.
    pub book_seq: u64,
    /// The kinds of update it carries.
    pub channels: Channels,
    /// `max_rate` spacing of deliveries.
    pub rate: RateGate,
    /// Whether `merged` holds updates waiting to be sent (and the subscription is on
    /// the core's pending list).
    pub pending: bool,
    /// What was merged while the connection conflated or the rate held updates back;
    /// allocated on first use.
    pub merged: Option<Box<Conflator>>,
    /// While its resume waits for this node to reach the client's resume point: when
    /// the wait ends, ns (0: not waiting).
    pub resume_until_ns: u64,
}

impl Sub {
    /// The merge state, made on first use.
    pub fn conflator(&mut self) -> &mut Conflator {
        self.merged.get_or_insert_with(Box::default)
    }
}

/// Every subscription of one core.
#[derive(Debug, Default)]
pub struct Subscriptions {
    subs: Slab<Sub>,
    by_symbol: Vec<Vec<SubKey>>,
}

impl Subscriptions {
    /// None yet.
    pub fn new() -> Subscriptions {
        Subscriptions::default()
    }

    /// Number of live subscriptions.
    pub fn len(&self) -> usize {
        self.subs.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }

    /// Symbol ids the table has room for.
    pub fn symbols(&self) -> usize {
        self.by_symbol.len()
    }

    /// Makes room for symbol ids below `len`.
    pub fn grow(&mut self, len: usize) {
        if len > self.by_symbol.len() {
            self.by_symbol.resize_with(len, Vec::new);
        }
    }

    /// The subscriptions of `symbol`.
    pub fn of_symbol(&self, symbol: u32) -> &[SubKey] {
        self.by_symbol
            .get(symbol as usize)
            .map_or(&[], |v| v.as_slice())
    }

    /// The subscription `key`.
    pub fn get(&self, key: SubKey) -> Option<&Sub> {
        self.subs.get(key as usize)
    }

    /// The subscription `key`, mutably.
    pub fn get_mut(&mut self, key: SubKey) -> Option<&mut Sub> {
        self.subs.get_mut(key as usize)
    }

    /// Every subscription, mutably (cold paths: restarts).
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Sub> {
        self.subs.iter_mut().map(|(_, s)| s)
    }

    /// Adds a subscription of `conn` to `symbol` and records it in `list` (the
    /// connection's own sorted list). Returns its key, or `None` if `list` has it.
    pub fn add(
        &mut self,
        conn: usize,
        list: &mut Vec<(u32, SubKey)>,
        symbol: u32,
        max_rate: f64,
        channels: Channels,
    ) -> Option<SubKey> {
        let at = match list.binary_search_by_key(&symbol, |&(s, _)| s) {
            Ok(_) => return None,
            Err(at) => at,
        };
        self.grow(symbol as usize + 1);
        let key = self.subs.insert(Sub {
            conn,
            symbol,
            last_seq: 0,
            book_seq: 0,
            channels,
            rate: RateGate::new(max_rate),
            pending: false,
            merged: None,
            resume_until_ns: 0,
        }) as SubKey;
        self.by_symbol[symbol as usize].push(key);
        list.insert(at, (symbol, key));
        Some(key)
    }

    /// Removes `conn`'s subscription to `symbol` from the table and from `list`.
    /// Returns whether there was one.
    pub fn remove(&mut self, list: &mut Vec<(u32, SubKey)>, symbol: u32) -> bool {
        let Ok(at) = list.binary_search_by_key(&symbol, |&(s, _)| s) else {
            return false;
        };
        let (_, key) = list.remove(at);
        if let Some(routes) = self.by_symbol.get_mut(symbol as usize) {
            if let Some(pos) = routes.iter().position(|&k| k == key) {
                routes.swap_remove(pos);
            }
            if routes.is_empty() {
                // Give the memory back: a symbol nobody here wants costs nothing.
                *routes = Vec::new();
            }
        }
        self.subs.remove(key as usize);
        true
    }
}

/// The subscription key `conn` holds for `symbol`, from its sorted list.
pub fn find(list: &[(u32, SubKey)], symbol: u32) -> Option<SubKey> {
    list.binary_search_by_key(&symbol, |&(s, _)| s)
        .ok()
        .map(|i| list[i].1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_route_and_remove() {
        let mut t = Subscriptions::new();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let c = Channels::DEFAULT;
        let k1 = t.add(1, &mut a, 5, 0.0, c).unwrap();
        let k2 = t.add(2, &mut b, 5, 0.0, c).unwrap();
        let k3 = t.add(1, &mut a, 3, 2.0, Channels::BOOK).unwrap();
        assert!(t.add(1, &mut a, 5, 0.0, c).is_none(), "already held");
        assert_eq!(a, vec![(3, k3), (5, k1)], "sorted by symbol");
        assert_eq!(t.of_symbol(5), &[k1, k2]);
        assert_eq!(find(&a, 3), Some(k3));
        assert!(t.remove(&mut a, 5));
        assert!(!t.remove(&mut a, 5));
        assert_eq!(t.of_symbol(5), &[k2]);
        assert_eq!(t.len(), 2);
        assert!(t.get(k1).is_none());
        assert_eq!(t.get(k3).map(|s| s.symbol), Some(3));
        assert!(t.of_symbol(99).is_empty());
    }
}
