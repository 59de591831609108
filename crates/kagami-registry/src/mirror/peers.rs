//! What this node has seen of each peer, and the order peers are tried
//! in: peers that served corrupt bytes or failed the TLS checks not at
//! all for a while, then the fewest recent failures first, then the least
//! used, then the router's order.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kagami_core::router::Peer;
use tokio::time::Instant;

use super::lock;

/// Most peers remembered; past that, everything but the bad marks is
/// forgotten (a cluster rarely has this many peers serving one node).
const MAX_PEERS: usize = 1024;

#[derive(Default)]
struct Health {
    /// Failures since the last success.
    failures: u32,
    /// Requests started.
    uses: u64,
    /// Skipped until then, after serving bytes that did not match.
    bad_until: Option<Instant>,
    /// Skipped until then, after failing the TLS checks.
    untrusted_until: Option<Instant>,
    /// Skipped until then, after sending a body too slowly.
    slow_until: Option<Instant>,
}

impl Health {
    fn skipped(&self, now: Instant) -> bool {
        let until = self
            .bad_until
            .max(self.untrusted_until)
            .max(self.slow_until);
        until.is_some_and(|until| until > now)
    }
}

/// The peer record.
pub(super) struct Peers {
    bad_ttl: Duration,
    health: Mutex<HashMap<String, Health>>,
}

impl Peers {
    pub(super) fn new(bad_ttl: Duration) -> Peers {
        Peers {
            bad_ttl,
            health: Mutex::default(),
        }
    }

    /// `providers` in the order to try them, bad peers left out.
    pub(super) fn order(&self, providers: &[Peer]) -> Vec<Peer> {
        let now = Instant::now();
        let health = lock(&self.health);
        let mut ranked: Vec<(u32, u64, &Peer)> = providers
            .iter()
            .filter_map(|peer| match health.get(&peer.id) {
                None => Some((0, 0, peer)),
                Some(h) if h.skipped(now) => None,
                Some(h) => Some((h.failures, h.uses, peer)),
            })
            .collect();
        // Stable: equal peers keep the router's order.
        ranked.sort_by_key(|(failures, uses, _)| (*failures, *uses));
        ranked
            .into_iter()
            .map(|(_, _, peer)| peer.clone())
            .collect()
    }

    /// Whether `peer` is skipped for now.
    pub(super) fn is_bad(&self, peer: &Peer) -> bool {
        let now = Instant::now();
        lock(&self.health)
            .get(&peer.id)
            .is_some_and(|h| h.skipped(now))
    }

    pub(super) fn started(&self, peer: &Peer) {
        self.update(peer, |h| h.uses += 1);
    }

    pub(super) fn succeeded(&self, peer: &Peer) {
        self.update(peer, |h| h.failures = 0);
    }

    pub(super) fn failed(&self, peer: &Peer) {
        self.update(peer, |h| h.failures = h.failures.saturating_add(1));
    }

    /// Skips `peer` for the bad-peer TTL.
    pub(super) fn mark_bad(&self, peer: &Peer) {
        let until = Instant::now() + self.bad_ttl;
        self.update(peer, |h| {
            h.failures = h.failures.saturating_add(1);
            h.bad_until = Some(until);
        });
    }

    /// Skips `peer` for the bad-peer TTL, as one that sent a body slower
    /// than the mirror's floor.
    pub(super) fn mark_slow(&self, peer: &Peer) {
        let until = Instant::now() + self.bad_ttl;
        self.update(peer, |h| {
            h.failures = h.failures.saturating_add(1);
            h.slow_until = Some(until);
        });
    }

    /// Skips `peer` for the bad-peer TTL, as one that failed the TLS
    /// checks.
    pub(super) fn mark_untrusted(&self, peer: &Peer) {
        let until = Instant::now() + self.bad_ttl;
        self.update(peer, |h| {
            h.failures = h.failures.saturating_add(1);
            h.untrusted_until = Some(until);
        });
    }

    /// Lifts every mark for failed TLS checks: this node's own TLS
    /// material changed, and the failures may have been its fault (a
    /// certificate that had expired, say).
    pub(super) fn forgive_untrusted(&self) {
        for h in lock(&self.health).values_mut() {
            h.untrusted_until = None;
        }
    }

    fn update(&self, peer: &Peer, change: impl FnOnce(&mut Health)) {
        let mut health = lock(&self.health);
        if !health.contains_key(&peer.id) && health.len() >= MAX_PEERS {
            let now = Instant::now();
            health.retain(|_, h| h.skipped(now));
            if health.len() >= MAX_PEERS {
                health.clear();
            }
        }
        change(health.entry(peer.id.clone()).or_default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: &str) -> Peer {
        Peer {
            id: id.to_owned(),
            addr: "127.0.0.1:1".parse().unwrap(),
        }
    }

    fn ids(peers: &[Peer]) -> Vec<&str> {
        peers.iter().map(|p| p.id.as_str()).collect()
    }

    #[test]
    fn fewest_failures_then_least_used_then_router_order() {
        let peers = Peers::new(Duration::from_secs(60));
        let (a, b, c) = (peer("a"), peer("b"), peer("c"));
        let all = [a.clone(), b.clone(), c.clone()];
        assert_eq!(ids(&peers.order(&all)), ["a", "b", "c"]);
        peers.started(&a);
        assert_eq!(ids(&peers.order(&all)), ["b", "c", "a"]);
        peers.started(&b);
        peers.failed(&b);
        assert_eq!(ids(&peers.order(&all)), ["c", "a", "b"]);
        peers.succeeded(&b);
        assert_eq!(ids(&peers.order(&all)), ["c", "a", "b"]);
    }

    #[test]
    fn bad_peers_are_skipped_until_their_mark_expires() {
        let peers = Peers::new(Duration::ZERO);
        let (a, b) = (peer("a"), peer("b"));
        peers.mark_bad(&a);
        // A zero TTL has already expired.
        assert!(!peers.is_bad(&a));
        let peers = Peers::new(Duration::from_secs(60));
        peers.mark_bad(&a);
        assert!(peers.is_bad(&a));
        assert_eq!(ids(&peers.order(&[a, b])), ["b"]);
    }

    #[test]
    fn slow_peers_are_skipped_for_a_while() {
        let peers = Peers::new(Duration::from_secs(60));
        let (a, b) = (peer("a"), peer("b"));
        peers.mark_slow(&a);
        assert!(peers.is_bad(&a));
        assert_eq!(ids(&peers.order(&[a, b])), ["b"]);
    }

    #[test]
    fn untrusted_peers_are_skipped_until_forgiven() {
        let peers = Peers::new(Duration::from_secs(60));
        let (a, b, c) = (peer("a"), peer("b"), peer("c"));
        peers.mark_untrusted(&a);
        peers.mark_bad(&b);
        assert!(peers.is_bad(&a));
        let all = [a.clone(), b.clone(), c];
        assert_eq!(ids(&peers.order(&all)), ["c"]);
        // Only the TLS marks are lifted: corrupt bytes stay held against b.
        peers.forgive_untrusted();
        assert!(!peers.is_bad(&a));
        assert!(peers.is_bad(&b));
        assert_eq!(ids(&peers.order(&all)), ["c", "a"]);
    }
}
