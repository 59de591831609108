//! Finding the providers of a key: one router lookup in flight per key,
//! its answer cached for a few seconds, this node left out.
//!
//! Requests for the same key share one slot: the first runs the lookup,
//! the others wait for its answer. If the request running it goes away,
//! a waiting one takes over, so the lookup is safe to cancel. Empty
//! answers are cached too, so a burst of misses for content nobody holds
//! costs one lookup, not one each.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kagami_core::Key;
use kagami_core::router::{Peer, Router};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use super::lock;
use super::stats::MirrorStats;

/// How long a lookup's answer is reused, from the lookup's start.
const CACHE_TTL: Duration = Duration::from_secs(5);
/// Most keys cached at once.
const CACHE_CAP: usize = 4096;

/// Providers of a key, best first as the router ranked them.
pub(super) type Providers = Arc<[Peer]>;

struct Slot {
    answer: Arc<OnceCell<Providers>>,
    born: Instant,
}

impl Slot {
    /// A slot whose lookup is still running is never stale: joining it
    /// is cheaper than starting another.
    fn is_fresh(&self, now: Instant) -> bool {
        !self.answer.initialized() || now.duration_since(self.born) < CACHE_TTL
    }
}

/// The provider cache in front of the router.
pub(super) struct Lookup {
    router: Arc<dyn Router>,
    timeout: Duration,
    limit: usize,
    own_addrs: Vec<SocketAddr>,
    cache: Mutex<HashMap<Key, Slot>>,
}

impl Lookup {
    pub(super) fn new(
        router: Arc<dyn Router>,
        timeout: Duration,
        limit: usize,
        own_addrs: Vec<SocketAddr>,
    ) -> Lookup {
        Lookup {
            router,
            timeout,
            limit: limit.max(1),
            own_addrs,
            cache: Mutex::default(),
        }
    }

    /// The router lookups go to.
    pub(super) fn router(&self) -> &Arc<dyn Router> {
        &self.router
    }

    /// The providers of `key`; empty when none was found in time.
    pub(super) async fn providers(&self, key: &Key, stats: &MirrorStats) -> Providers {
        let answer = self.slot(key);
        answer.get_or_init(|| self.find(key, stats)).await.clone()
    }

    fn slot(&self, key: &Key) -> Arc<OnceCell<Providers>> {
        let now = Instant::now();
        let mut cache = lock(&self.cache);
        if let Some(slot) = cache.get(key)
            && slot.is_fresh(now)
        {
            return slot.answer.clone();
        }
        if cache.len() >= CACHE_CAP {
            cache.retain(|_, slot| slot.is_fresh(now));
            if cache.len() >= CACHE_CAP
                && let Some(oldest) = cache
                    .iter()
                    .min_by_key(|(_, slot)| slot.born)
                    .map(|(key, _)| key.clone())
            {
                cache.remove(&oldest);
            }
        }
        let answer = Arc::new(OnceCell::new());
        cache.insert(
            key.clone(),
            Slot {
                answer: answer.clone(),
                born: now,
            },
        );
        answer
    }

    async fn find(&self, key: &Key, stats: &MirrorStats) -> Providers {
        stats.lookup();
        let started = Instant::now();
        let found = tokio::time::timeout(self.timeout, self.router.find_providers(key, self.limit));
        let found = found.await;
        stats.looked_up(started.elapsed());
        let peers = match found {
            Ok(Ok(peers)) => peers,
            Ok(Err(error)) => {
                tracing::debug!(%key, %error, "provider lookup failed");
                Vec::new()
            }
            Err(_) => {
                tracing::debug!(%key, budget = ?self.timeout, "provider lookup timed out");
                Vec::new()
            }
        };
        let mut kept: Vec<Peer> = Vec::with_capacity(peers.len());
        for peer in peers {
            if !self.own_addrs.contains(&peer.addr) && !kept.iter().any(|p| p.id == peer.id) {
                kept.push(peer);
            }
        }
        kept.truncate(self.limit);
        if kept.is_empty() {
            stats.lookup_failed();
        }
        tracing::debug!(%key, providers = kept.len(), "providers found");
        kept.into()
    }
}
