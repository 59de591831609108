//! Provider lookups in flight and recently answered: one lookup per key
//! however many callers ask, each caller answered as soon as it has the
//! providers it asked for, every lookup bounded by a deadline, and answers
//! reused for a few seconds. Generic over the DHT's query and peer IDs so
//! it can be tested without a network.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

use kagami_core::Key;
use kagami_core::router::Peer;
use tokio::sync::oneshot;

/// The most providers a lookup collects (Kademlia's `k`).
pub(crate) const MAX_PROVIDERS: usize = 20;
/// The most lookups in flight at once; callers beyond it get no providers
/// (a miss) rather than a queue that grows without bound.
pub(crate) const MAX_LOOKUPS: usize = 512;

pub(crate) type Reply = oneshot::Sender<Vec<Peer>>;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) timeout: Duration,
    pub(crate) settle: Duration,
    pub(crate) cache_ttl: Duration,
    pub(crate) cache_capacity: usize,
}

struct Waiter {
    limit: usize,
    reply: Reply,
}

struct Lookup<P> {
    key: Key,
    found: Vec<Peer>,
    waiters: Vec<Waiter>,
    /// Providers found whose address is still being learned, with the
    /// best guess to answer with if it is not learned in time.
    unresolved: HashMap<P, Option<Peer>>,
    query_done: bool,
    deadline: Instant,
}

struct Cached {
    at: Instant,
    peers: Vec<Peer>,
    /// The largest `limit` this answer serves: the lookup stopped early
    /// once its callers had enough, so a caller asking for more looks again.
    enough_for: usize,
}

pub(crate) struct Lookups<Q, P> {
    settings: Settings,
    active: HashMap<Q, Lookup<P>>,
    by_key: HashMap<Key, Q>,
    cache: HashMap<Key, Cached>,
    cache_order: VecDeque<(Instant, Key)>,
}

impl<Q: Copy + Eq + Hash, P: Copy + Eq + Hash> Lookups<Q, P> {
    pub(crate) fn new(settings: Settings) -> Self {
        Lookups {
            settings,
            active: HashMap::new(),
            by_key: HashMap::new(),
            cache: HashMap::new(),
            cache_order: VecDeque::new(),
        }
    }

    /// Answers from the cache, or joins the lookup in flight for `key`;
    /// hands `reply` back when a new lookup must be started with [`start`].
    pub(crate) fn request(
        &mut self,
        key: &Key,
        limit: usize,
        reply: Reply,
        now: Instant,
    ) -> Option<Reply> {
        if limit == 0 {
            let _ = reply.send(Vec::new());
            return None;
        }
        if let Some(cached) = self.cache.get(key)
            && now < later(cached.at, self.settings.cache_ttl)
            && limit <= cached.enough_for
        {
            let _ = reply.send(cached.peers.iter().take(limit).cloned().collect());
            return None;
        }
        if let Some(lookup) = self.by_key.get(key).and_then(|q| self.active.get_mut(q)) {
            if lookup.found.len() >= limit {
                let _ = reply.send(lookup.found[..limit].to_vec());
            } else {
                lookup.waiters.push(Waiter { limit, reply });
            }
            return None;
        }
        if self.active.len() >= MAX_LOOKUPS {
            tracing::warn!(%key, "too many provider lookups in flight; answering with none");
            let _ = reply.send(Vec::new());
            return None;
        }
        Some(reply)
    }

    /// Tracks a new lookup, query `q`, for the caller [`request`] handed back.
    pub(crate) fn start(&mut self, q: Q, key: Key, limit: usize, reply: Reply, now: Instant) {
        self.by_key.insert(key.clone(), q);
        self.active.insert(
            q,
            Lookup {
                key,
                found: Vec::new(),
                waiters: vec![Waiter { limit, reply }],
                unresolved: HashMap::new(),
                query_done: false,
                deadline: later(now, self.settings.timeout),
            },
        );
    }

    /// A provider was found. Returns `q` when that completed the lookup
    /// (every caller has enough), so the DHT query can be stopped.
    pub(crate) fn found(&mut self, q: Q, peer: Peer, now: Instant) -> Option<Q> {
        let lookup = self.active.get_mut(&q)?;
        if lookup.found.len() >= MAX_PROVIDERS || lookup.found.iter().any(|p| p.id == peer.id) {
            return None;
        }
        lookup.found.push(peer);
        if lookup.found.len() == 1 {
            lookup.deadline = lookup.deadline.min(later(now, self.settings.settle));
        }
        let (ready, waiting): (Vec<Waiter>, Vec<Waiter>) = std::mem::take(&mut lookup.waiters)
            .into_iter()
            .partition(|w| w.limit <= lookup.found.len());
        lookup.waiters = waiting;
        let mut enough_for = 0;
        for waiter in ready {
            enough_for = enough_for.max(waiter.limit);
            let _ = waiter.reply.send(lookup.found[..waiter.limit].to_vec());
        }
        if lookup.waiters.is_empty() {
            self.complete(q, enough_for, now);
            return Some(q);
        }
        None
    }

    /// A provider was found whose address must be learned first; the
    /// lookup waits for [`resolved`] (within its deadline, after which it
    /// answers with `guess`, if any).
    pub(crate) fn unresolved(&mut self, q: Q, peer: P, guess: Option<Peer>) {
        if let Some(lookup) = self.active.get_mut(&q) {
            lookup.unresolved.insert(peer, guess);
        }
    }

    /// The address of `peer` is known (`Some`) or cannot be learned
    /// (`None`: its guess, if any, stands). Returns the lookups this
    /// completed.
    pub(crate) fn resolved(&mut self, peer: P, found: Option<Peer>, now: Instant) -> Vec<Q> {
        let waiting: Vec<(Q, Option<Peer>)> = self
            .active
            .iter_mut()
            .filter_map(|(q, l)| l.unresolved.remove(&peer).map(|guess| (*q, guess)))
            .collect();
        let mut completed = Vec::new();
        for (q, guess) in waiting {
            if let Some(peer) = found.clone().or(guess)
                && let Some(q) = self.found(q, peer, now)
            {
                completed.push(q);
                continue;
            }
            if self.finish_if_done(q, now) {
                completed.push(q);
            }
        }
        completed
    }

    /// Whether a lookup is waiting for `peer`'s address.
    pub(crate) fn awaits(&self, peer: &P) -> bool {
        self.active
            .values()
            .any(|l| l.unresolved.contains_key(peer))
    }

    /// The DHT query ended; the lookup ends too unless addresses are still
    /// being learned.
    pub(crate) fn query_done(&mut self, q: Q, now: Instant) {
        if let Some(lookup) = self.active.get_mut(&q) {
            lookup.query_done = true;
            self.finish_if_done(q, now);
        }
    }

    /// Ends the lookups whose deadline has passed, answering with what they
    /// found; returns them so their DHT queries can be stopped.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<Q> {
        let due: Vec<Q> = self
            .active
            .iter()
            .filter(|(_, l)| l.deadline <= now)
            .map(|(q, _)| *q)
            .collect();
        for q in &due {
            self.complete(*q, usize::MAX, now);
        }
        due
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.active.values().map(|l| l.deadline).min()
    }

    fn finish_if_done(&mut self, q: Q, now: Instant) -> bool {
        let done = self
            .active
            .get(&q)
            .is_some_and(|l| l.query_done && l.unresolved.is_empty());
        if done {
            self.complete(q, usize::MAX, now);
        }
        done
    }

    fn complete(&mut self, q: Q, enough_for: usize, now: Instant) {
        let Some(mut lookup) = self.active.remove(&q) else {
            return;
        };
        self.by_key.remove(&lookup.key);
        for guess in lookup.unresolved.into_values().flatten() {
            if lookup.found.len() < MAX_PROVIDERS && !lookup.found.iter().any(|p| p.id == guess.id)
            {
                lookup.found.push(guess);
            }
        }
        for waiter in lookup.waiters {
            let n = waiter.limit.min(lookup.found.len());
            let _ = waiter.reply.send(lookup.found[..n].to_vec());
        }
        self.cache_insert(lookup.key, lookup.found, enough_for, now);
    }

    fn cache_insert(&mut self, key: Key, peers: Vec<Peer>, enough_for: usize, now: Instant) {
        if self.settings.cache_ttl.is_zero() {
            return;
        }
        // Entries leave in insertion order: when expired, or to make room.
        while let Some((at, _)) = self.cache_order.front() {
            let expired = later(*at, self.settings.cache_ttl) <= now;
            let full = self.cache.len() >= self.settings.cache_capacity
                || self.cache_order.len() >= 2 * self.settings.cache_capacity;
            if !expired && !full {
                break;
            }
            if let Some((at, old)) = self.cache_order.pop_front()
                && self.cache.get(&old).is_some_and(|c| c.at == at)
            {
                self.cache.remove(&old);
            }
        }
        self.cache_order.push_back((now, key.clone()));
        self.cache.insert(
            key,
            Cached {
                at: now,
                peers,
                enough_for,
            },
        );
    }
}

/// `at + d`, saturating far in the future instead of overflowing.
fn later(at: Instant, d: Duration) -> Instant {
    at.checked_add(d)
        .unwrap_or_else(|| at + Duration::from_secs(100 * 365 * 24 * 3600))
}

#[cfg(test)]
mod tests;
