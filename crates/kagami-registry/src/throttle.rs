//! Rate-limited logging: an event that may repeat thousands of times a
//! second (a refused connection, a wrong join token) is logged at most once
//! per interval and key, with the number of times it happened since.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most keys remembered at once; beyond it, keys not logged within the
/// interval are forgotten, and if none is, a new key is not logged.
const MAX_KEYS: usize = 4096;

/// Says when an event of a given key should be logged.
#[derive(Debug)]
pub struct Throttle<K> {
    interval: Duration,
    slots: Mutex<HashMap<K, Slot>>,
}

#[derive(Debug)]
struct Slot {
    logged: Instant,
    /// Events since the last one logged.
    unlogged: u64,
}

impl<K: Hash + Eq> Throttle<K> {
    /// Logs each key at most once per `interval`.
    pub fn new(interval: Duration) -> Throttle<K> {
        Throttle {
            interval,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one event of `key`. Returns `Some(n)` when this one is to be
    /// logged, `n` being the events since the last logged one of the same
    /// key, this one included; `None` when it is to stay quiet.
    pub fn hit(&self, key: K) -> Option<u64> {
        let now = Instant::now();
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(slot) = slots.get_mut(&key) {
            slot.unlogged += 1;
            if now.duration_since(slot.logged) < self.interval {
                return None;
            }
            let count = slot.unlogged;
            *slot = Slot {
                logged: now,
                unlogged: 0,
            };
            return Some(count);
        }
        if slots.len() >= MAX_KEYS {
            let interval = self.interval;
            slots.retain(|_, slot| now.duration_since(slot.logged) < interval);
            if slots.len() >= MAX_KEYS {
                return None;
            }
        }
        slots.insert(
            key,
            Slot {
                logged: now,
                unlogged: 0,
            },
        );
        Some(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_a_key_once_per_interval_with_the_count_since() {
        let throttle = Throttle::new(Duration::from_millis(50));
        assert_eq!(throttle.hit("a"), Some(1));
        assert_eq!(throttle.hit("a"), None);
        assert_eq!(throttle.hit("a"), None);
        assert_eq!(throttle.hit("b"), Some(1), "keys are apart");
        let deadline = Instant::now() + Duration::from_secs(10);
        let count = loop {
            if let Some(count) = throttle.hit("a") {
                break count;
            }
            assert!(Instant::now() < deadline, "never logged again");
            std::thread::yield_now();
        };
        assert!(count >= 3, "counts what it kept quiet: {count}");
    }

    #[test]
    fn forgets_old_keys_when_full() {
        let throttle = Throttle::new(Duration::ZERO);
        for key in 0..MAX_KEYS + 10 {
            assert_eq!(throttle.hit(key), Some(1));
        }
    }
}
