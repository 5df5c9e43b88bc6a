//! Which symbols each connection subscribes to: all, uniform or Zipf-skewed, seeded.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::settings::Select;

/// A connection's subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscription {
    /// `["*"]`: every symbol, including later ones.
    All,
    /// These symbol indices into the universe, distinct, in the order picked.
    Some(Vec<usize>),
}

/// Picks subscriptions for many connections from one seed, so a run is repeatable.
#[derive(Debug)]
pub struct Picker {
    rng: SmallRng,
    select: Select,
    universe: usize,
    per_conn: usize,
    /// Zipf: cumulative weights of ranks 1..=universe, normalised to end at 1.
    cdf: Vec<f64>,
}

impl Picker {
    /// A picker of `per_conn` symbols out of `universe` (0 or ≥ `universe` means all).
    pub fn new(select: Select, universe: usize, per_conn: usize, zipf_s: f64, seed: u64) -> Picker {
        let mut cdf = Vec::new();
        if select == Select::Zipf && universe > 0 {
            let mut acc = 0.0;
            for rank in 1..=universe {
                acc += 1.0 / (rank as f64).powf(zipf_s);
                cdf.push(acc);
            }
            for c in &mut cdf {
                *c /= acc;
            }
        }
        Picker {
            rng: SmallRng::seed_from_u64(seed),
            select,
            universe,
            per_conn,
            cdf,
        }
    }

    /// The next connection's subscription.
    pub fn next_subscription(&mut self) -> Subscription {
        if self.select == Select::All || self.per_conn == 0 || self.per_conn >= self.universe {
            return Subscription::All;
        }
        let mut chosen = Vec::with_capacity(self.per_conn);
        let mut taken = vec![false; self.universe];
        // Rejection sampling of distinct symbols, bounded; then the lowest free ids.
        let max_tries = self.per_conn * 64;
        let mut tries = 0;
        while chosen.len() < self.per_conn && tries < max_tries {
            tries += 1;
            let i = self.draw();
            if !taken[i] {
                taken[i] = true;
                chosen.push(i);
            }
        }
        for (i, t) in taken.iter_mut().enumerate() {
            if chosen.len() >= self.per_conn {
                break;
            }
            if !*t {
                *t = true;
                chosen.push(i);
            }
        }
        Subscription::Some(chosen)
    }

    fn draw(&mut self) -> usize {
        match self.select {
            Select::Zipf => {
                let u: f64 = self.rng.random();
                self.cdf.partition_point(|&c| c < u).min(self.universe - 1)
            }
            _ => self.rng.random_range(0..self.universe),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_seeded_and_skewed() {
        let mut a = Picker::new(Select::Zipf, 100, 20, 1.0, 7);
        let mut b = Picker::new(Select::Zipf, 100, 20, 1.0, 7);
        let mut hits = [0usize; 100];
        for _ in 0..500 {
            let s = a.next_subscription();
            assert_eq!(s, b.next_subscription(), "same seed, same picks");
            let Subscription::Some(list) = s else {
                panic!("expected a list")
            };
            let mut sorted = list.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), 20, "distinct");
            for i in list {
                hits[i] += 1;
            }
        }
        assert!(hits[0] > hits[99] * 2, "Zipf favours low ranks: {hits:?}");
        let mut u = Picker::new(Select::Uniform, 10, 10, 1.0, 1);
        assert_eq!(u.next_subscription(), Subscription::All);
        let mut u = Picker::new(Select::Uniform, 10, 3, 1.0, 1);
        assert!(matches!(u.next_subscription(), Subscription::Some(l) if l.len() == 3));
    }
}
