//! Counters of the mirror path, for metrics: cheap to bump on the data
//! path, read whenever a scrape asks.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use super::lock;

/// Peers whose relayed bytes are counted one by one; bytes from any
/// further peer are counted together (see
/// [`MirrorStats::bytes_relayed_unattributed`]), so the map stays bounded.
const MAX_PEERS_COUNTED: usize = 256;

/// What the mirror has done since the node started.
#[derive(Debug, Default)]
pub struct MirrorStats {
    lookups: AtomicU64,
    lookup_failures: AtomicU64,
    verify_failures: AtomicU64,
    tls_failures: AtomicU64,
    resumes: AtomicU64,
    hedges: AtomicU64,
    relayed: Mutex<HashMap<String, u64>>,
    relayed_unattributed: AtomicU64,
    upstream_bytes: AtomicU64,
    through: [AtomicU64; 4],
    tags: [AtomicU64; 2],
    tag_disagreements: AtomicU64,
    lookup_durations: LookupDurations,
}

/// How long provider lookups took: 1 ms to about 4 s, the resolve budget's
/// range.
#[derive(Debug)]
struct LookupDurations(Histogram);

impl Default for LookupDurations {
    fn default() -> LookupDurations {
        LookupDurations(Histogram::new(exponential_buckets(0.001, 2.0, 13)))
    }
}

/// How a pull-through request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Through {
    /// This node, the origin, fetched it from the upstream (or found it
    /// arriving or kept).
    Fetched,
    /// Another node, the origin, served it.
    FromOrigin,
    /// The upstream said it has no such content or tag.
    NotFound,
    /// No origin could get it: the upstream unavailable, origins silent.
    Unavailable,
}

impl Through {
    /// Every outcome, for reporting.
    pub const ALL: [Through; 4] = [
        Through::Fetched,
        Through::FromOrigin,
        Through::NotFound,
        Through::Unavailable,
    ];

    /// A short name for labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Through::Fetched => "fetched",
            Through::FromOrigin => "from_origin",
            Through::NotFound => "not_found",
            Through::Unavailable => "unavailable",
        }
    }
}

/// Where a tag was resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagSource {
    /// At the upstream (by this node or the tag's origin).
    Upstream,
    /// From peers' tag records, the upstream being unreachable.
    Peers,
}

impl TagSource {
    /// Every source, for reporting.
    pub const ALL: [TagSource; 2] = [TagSource::Upstream, TagSource::Peers];

    /// A short name for labels.
    pub fn as_str(self) -> &'static str {
        match self {
            TagSource::Upstream => "upstream",
            TagSource::Peers => "peers",
        }
    }
}

impl MirrorStats {
    /// Lookups sent to the router (cache hits and shared lookups not
    /// counted).
    pub fn lookups(&self) -> u64 {
        self.lookups.load(Ordering::Relaxed)
    }

    /// Lookups that named no provider: the router failed, timed out, or
    /// knew none.
    pub fn lookup_failures(&self) -> u64 {
        self.lookup_failures.load(Ordering::Relaxed)
    }

    /// How long the lookups sent to the router took, answered or not; a
    /// clone shares the histogram (to register with a metrics registry).
    pub fn lookup_durations(&self) -> Histogram {
        self.lookup_durations.0.clone()
    }

    /// Responses from peers whose bytes did not match their digest.
    pub fn verify_failures(&self) -> u64 {
        self.verify_failures.load(Ordering::Relaxed)
    }

    /// Requests to peers that failed the TLS checks: a certificate not
    /// from the cluster, or not binding the peer ID the router named, or
    /// the peer refusing this node's.
    pub fn tls_failures(&self) -> u64 {
        self.tls_failures.load(Ordering::Relaxed)
    }

    /// Blob transfers continued on another peer after a break.
    pub fn resumes(&self) -> u64 {
        self.resumes.load(Ordering::Relaxed)
    }

    /// Extra requests raced against a peer slow to answer.
    pub fn hedges(&self) -> u64 {
        self.hedges.load(Ordering::Relaxed)
    }

    /// Bytes received from each peer (by id) and passed on to clients.
    pub fn bytes_relayed(&self) -> HashMap<String, u64> {
        lock(&self.relayed).clone()
    }

    /// Bytes received from the peer with this id and passed on.
    pub fn bytes_relayed_from(&self, peer_id: &str) -> u64 {
        lock(&self.relayed).get(peer_id).copied().unwrap_or(0)
    }

    /// Bytes from peers beyond the first 256 seen (the map is bounded).
    pub fn bytes_relayed_unattributed(&self) -> u64 {
        self.relayed_unattributed.load(Ordering::Relaxed)
    }

    /// Bytes this node received from upstream registries.
    pub fn upstream_bytes(&self) -> u64 {
        self.upstream_bytes.load(Ordering::Relaxed)
    }

    /// Pull-through requests that ended `how`.
    pub fn through(&self, how: Through) -> u64 {
        self.through[how as usize].load(Ordering::Relaxed)
    }

    /// Tags resolved from `source`.
    pub fn tags(&self, source: TagSource) -> u64 {
        self.tags[source as usize].load(Ordering::Relaxed)
    }

    /// Peers' tag records seen to name another manifest than the
    /// upstream does (each tag and digest counted once).
    pub fn tag_disagreements(&self) -> u64 {
        self.tag_disagreements.load(Ordering::Relaxed)
    }

    pub(super) fn tag_disagreed(&self) {
        self.tag_disagreements.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn upstream_bytes_received(&self, bytes: u64) {
        self.upstream_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(super) fn pulled_through(&self, how: Through) {
        self.through[how as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn tag_resolved(&self, source: TagSource) {
        self.tags[source as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn lookup(&self) {
        self.lookups.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn looked_up(&self, took: std::time::Duration) {
        self.lookup_durations.0.observe(took.as_secs_f64());
    }

    pub(super) fn lookup_failed(&self) {
        self.lookup_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn verify_failed(&self) {
        self.verify_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn tls_failed(&self) {
        self.tls_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn resumed(&self) {
        self.resumes.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn hedged(&self) {
        self.hedges.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn relayed(&self, peer_id: &str, bytes: u64) {
        let mut relayed = lock(&self.relayed);
        if let Some(total) = relayed.get_mut(peer_id) {
            *total += bytes;
        } else if relayed.len() < MAX_PEERS_COUNTED {
            relayed.insert(peer_id.to_owned(), bytes);
        } else {
            self.relayed_unattributed
                .fetch_add(bytes, Ordering::Relaxed);
        }
    }
}
