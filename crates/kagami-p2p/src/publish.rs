//! Which keys this node provides, and when each is (re)announced.
//!
//! Announcing a key is one DHT query (find the closest peers, then store a
//! record on each). Keys wait in a queue and at most `concurrency` of those
//! queries run at once, so providing thousands of keys at start does not
//! flood the network. Each key is announced again `interval` after its own
//! last announcement, which keeps republishing as spread out as the first
//! round was instead of one burst every interval; a failed announcement
//! is retried sooner.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use kagami_core::Key;

pub(crate) struct Publisher {
    interval: Duration,
    retry: Duration,
    concurrency: usize,
    provided: HashSet<Key>,
    queue: VecDeque<Key>,
    queued: HashSet<Key>,
    in_flight: HashSet<Key>,
    due: HashMap<Key, Instant>,
    schedule: BTreeSet<(Instant, Key)>,
}

impl Publisher {
    pub(crate) fn new(interval: Duration, retry: Duration, concurrency: usize) -> Publisher {
        Publisher {
            interval,
            retry,
            concurrency,
            provided: HashSet::new(),
            queue: VecDeque::new(),
            queued: HashSet::new(),
            in_flight: HashSet::new(),
            due: HashMap::new(),
            schedule: BTreeSet::new(),
        }
    }

    /// Adds keys to the provided set; new ones are queued for announcement,
    /// ones already provided keep their schedule.
    pub(crate) fn provide(&mut self, keys: &[Key]) {
        for key in keys {
            if self.provided.insert(key.clone()) {
                self.enqueue(key.clone());
            }
        }
    }

    /// Removes keys from the provided set; returns those that were in it.
    pub(crate) fn withdraw(&mut self, keys: &[Key]) -> Vec<Key> {
        let mut removed = Vec::new();
        for key in keys {
            if self.provided.remove(key) {
                self.queued.remove(key);
                self.unschedule(key);
                removed.push(key.clone());
            }
        }
        removed
    }

    /// The next key to announce now, if one is waiting and fewer than
    /// `concurrency` announcements are in flight.
    pub(crate) fn next(&mut self, now: Instant) -> Option<Key> {
        while let Some((at, _)) = self.schedule.first()
            && *at <= now
        {
            if let Some((_, key)) = self.schedule.pop_first() {
                self.due.remove(&key);
                self.enqueue(key);
            }
        }
        if self.in_flight.len() >= self.concurrency {
            return None;
        }
        while let Some(key) = self.queue.pop_front() {
            if self.queued.remove(&key) && self.provided.contains(&key) {
                self.in_flight.insert(key.clone());
                return Some(key);
            }
        }
        None
    }

    /// An announcement ended; schedules the key's next one.
    pub(crate) fn done(&mut self, key: &Key, succeeded: bool, now: Instant) {
        self.in_flight.remove(key);
        if self.provided.contains(key) && !self.queued.contains(key) {
            let after = if succeeded { self.interval } else { self.retry };
            self.unschedule(key);
            self.due.insert(key.clone(), now + after);
            self.schedule.insert((now + after, key.clone()));
        }
    }

    /// Queues every provided key again (after the node was isolated, when
    /// earlier announcements may have reached no one).
    pub(crate) fn requeue_all(&mut self) {
        let keys: Vec<Key> = self.provided.iter().cloned().collect();
        for key in keys {
            self.unschedule(&key);
            self.enqueue(key);
        }
    }

    /// When the next scheduled republish falls due.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.schedule.first().map(|(at, _)| *at)
    }

    /// How many keys this node provides.
    pub(crate) fn len(&self) -> usize {
        self.provided.len()
    }

    fn enqueue(&mut self, key: Key) {
        if !self.in_flight.contains(&key) && self.queued.insert(key.clone()) {
            self.queue.push_back(key);
        }
    }

    fn unschedule(&mut self, key: &Key) {
        if let Some(at) = self.due.remove(key) {
            self.schedule.remove(&(at, key.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn keys(n: usize) -> Vec<Key> {
        (0..n)
            .map(|i| format!("docker.io/library/app:{i}").parse().unwrap())
            .collect()
    }

    fn drain(p: &mut Publisher, now: Instant) -> Vec<Key> {
        std::iter::from_fn(|| p.next(now)).collect()
    }

    #[test]
    fn announcements_are_capped_in_flight_and_republished_one_interval_later() {
        let now = Instant::now();
        let mut p = Publisher::new(15 * MINUTE, MINUTE, 2);
        p.provide(&keys(5));
        assert_eq!(p.len(), 5);
        let first = drain(&mut p, now);
        assert_eq!(first, keys(5)[..2], "at most two in flight, in order");
        p.done(&first[0], true, now);
        assert_eq!(drain(&mut p, now), keys(5)[2..3]);
        p.done(&first[1], false, now);
        p.done(&keys(5)[2], true, now);
        assert_eq!(drain(&mut p, now), keys(5)[3..5]);
        p.done(&keys(5)[3], true, now);
        p.done(&keys(5)[4], true, now);
        assert!(drain(&mut p, now).is_empty());

        // The failed one comes back after the retry delay, the rest after
        // the interval, each at its own time.
        assert_eq!(p.next_due(), Some(now + MINUTE));
        assert_eq!(drain(&mut p, now + MINUTE), keys(5)[1..2]);
        p.done(&keys(5)[1], true, now + MINUTE);
        assert_eq!(drain(&mut p, now + 15 * MINUTE).len(), 2);
    }

    #[test]
    fn providing_again_does_not_republish_and_withdrawn_keys_are_never_announced() {
        let now = Instant::now();
        let mut p = Publisher::new(15 * MINUTE, MINUTE, 10);
        p.provide(&keys(3));
        let announced = drain(&mut p, now);
        for key in &announced {
            p.done(key, true, now);
        }
        p.provide(&keys(3));
        assert!(drain(&mut p, now).is_empty());

        assert_eq!(p.withdraw(&keys(2)), keys(2));
        assert_eq!(p.withdraw(&keys(2)), Vec::<Key>::new());
        assert_eq!(drain(&mut p, now + 15 * MINUTE), keys(3)[2..]);

        p.provide(&keys(1));
        p.withdraw(&keys(1));
        assert!(drain(&mut p, now).is_empty(), "withdrawn before its turn");
    }

    #[test]
    fn requeue_all_announces_everything_once_more() {
        let now = Instant::now();
        let mut p = Publisher::new(15 * MINUTE, MINUTE, 10);
        p.provide(&keys(3));
        for key in drain(&mut p, now) {
            p.done(&key, true, now);
        }
        p.requeue_all();
        assert_eq!(drain(&mut p, now).len(), 3);
        assert_eq!(p.next_due(), None);
    }
}
