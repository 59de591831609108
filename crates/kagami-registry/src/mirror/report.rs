//! What the mirror logs beyond DEBUG (each peer's failure is at DEBUG;
//! see `hedge`), each at most once per subject per [`QUIET_FOR`]:
//! - when it gives up on a key, a DEBUG line only: the route logs the
//!   client's miss, once per repository a minute (one pull is several
//!   keys);
//! - when a peer fails the TLS checks, or no TLS client can be made for
//!   it, a WARN: the cluster's trust is broken there, which an operator
//!   must see, but a peer asked for many keys is still one line;
//! - when a peer's record of a tag names another manifest than the
//!   upstream does (stale, or forged), once per tag and digest.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use kagami_core::Key;
use kagami_core::router::Peer;
use tokio::time::Instant;

use super::fetch::AttemptError;
use super::lock;

/// Shortest time between two lines for one subject.
const QUIET_FOR: Duration = Duration::from_secs(60);
/// Most subjects remembered; past that, the oldest memories are dropped.
const MAX_SUBJECTS: usize = 4096;

/// When each key, and each peer, was last reported.
#[derive(Default)]
pub(super) struct Report {
    peers: Quiet<String>,
    registries: Quiet<String>,
    /// Tag records seen to disagree, as (tag, digest recorded).
    disagreements: Mutex<HashSet<(String, kagami_core::Digest)>>,
}

impl Report {
    /// Logs that `key` could not be served from peers, and why: DEBUG,
    /// since the request's miss is logged once per pull by the route.
    pub(super) fn gave_up(&self, key: &Key, why: &str) {
        tracing::debug!(%key, %why, "not served from peers");
    }

    /// Logs that an upstream registry could not be used (unavailable, or
    /// it answered badly): WARN once a minute per registry.
    pub(super) fn upstream(
        &self,
        registry: &kagami_core::Registry,
        error: &kagami_core::upstream::Error,
    ) {
        if self.registries.should_log(&registry.to_string()) {
            tracing::warn!(%registry, %error, "cannot pull through from the upstream");
        } else {
            tracing::debug!(%registry, %error, "cannot pull through from the upstream");
        }
    }

    /// Logs, once per tag and digest, that `holder` (a peer ID, or this
    /// node) records `tagged` as `recorded` while the upstream names
    /// `upstream`; whether it was new.
    pub(super) fn tag_disagrees(
        &self,
        tagged: &kagami_core::Reference,
        holder: &str,
        recorded: &kagami_core::Digest,
        upstream: &kagami_core::Digest,
    ) -> bool {
        let seen = (tagged.to_string(), recorded.clone());
        {
            let mut disagreements = lock(&self.disagreements);
            if disagreements.contains(&seen) {
                return false;
            }
            if disagreements.len() >= MAX_SUBJECTS {
                disagreements.clear();
            }
            disagreements.insert(seen);
        }
        tracing::info!(
            tag = %tagged, %holder, %recorded, %upstream,
            "a node's record of this tag disagrees with the upstream (stale, or forged); the upstream's answer is served"
        );
        true
    }

    /// Logs that `peer` failed the TLS checks, or that no TLS client
    /// could be made for it.
    pub(super) fn peer_tls(&self, peer: &Peer, error: &AttemptError) {
        if self.peers.should_log(&peer.id) {
            tracing::warn!(peer = %peer.id, addr = %peer.addr, %error, "not fetching from this peer over TLS");
        } else {
            tracing::debug!(peer = %peer.id, addr = %peer.addr, %error, "not fetching from this peer over TLS");
        }
    }
}

/// When each subject was last logged.
struct Quiet<K> {
    last: Mutex<HashMap<K, Instant>>,
}

impl<K> Default for Quiet<K> {
    fn default() -> Quiet<K> {
        Quiet {
            last: Mutex::default(),
        }
    }
}

impl<K: Hash + Eq + Clone> Quiet<K> {
    fn should_log(&self, subject: &K) -> bool {
        let now = Instant::now();
        let mut last = lock(&self.last);
        if last
            .get(subject)
            .is_some_and(|at| now.duration_since(*at) < QUIET_FOR)
        {
            return false;
        }
        if last.len() >= MAX_SUBJECTS {
            last.retain(|_, at| now.duration_since(*at) < QUIET_FOR);
            if last.len() >= MAX_SUBJECTS {
                last.clear();
            }
        }
        last.insert(subject.clone(), now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_per_peer_per_quiet_period() {
        let report = Report::default();
        let (a, b) = ("a".to_owned(), "b".to_owned());
        assert!(report.peers.should_log(&a));
        assert!(!report.peers.should_log(&a));
        assert!(report.peers.should_log(&b));
        // Peers and registries are remembered apart.
        assert!(report.registries.should_log(&a));
    }
}
