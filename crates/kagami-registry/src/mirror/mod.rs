//! The mirror path: content this node does not hold, served from peers
//! that do.
//!
//! On a local miss (content or tag not held; a blob asked for as a
//! manifest is not a miss), a request goes through, in order:
//! - the loop guard: a request carrying [`MIRRORED_HEADER`] came from a
//!   peer's mirror and is answered from the store alone, so one miss never
//!   sets off lookups from node to node;
//! - the policy: the registry must be mirrored, and a `latest` tag is
//!   looked up only with [`MirrorConfig::resolve_latest`] (a reference
//!   with neither tag nor digest means `latest`; digests always pass);
//! - the lookup (`lookup`): providers of the digest, or of the
//!   `registry/repository:tag` key, from the [`Router`];
//! - the fetch (`hedge`, `fetch`): the best peer first, raced by the next
//!   when slow; manifests are read whole and checked against their digest,
//!   blobs stream through `relay`, checked as they pass and resumed on
//!   another peer when a stream breaks. Peers are asked over plain HTTP,
//!   or over HTTPS with [`MirrorConfig::peer_tls`] (`clients`, `tls`).
//!
//! Whatever fails, the client gets the ordinary 404 within the budget, and
//! containerd moves on to its next endpoint.

mod clients;
mod config;
mod fetch;
mod hedge;
mod lookup;
mod peers;
mod pull;
mod relay;
mod report;
mod stats;
mod through;
mod tls;
mod verify;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use http::HeaderMap;
use kagami_core::router::Router;
use kagami_core::{Registry, Tag};

pub use config::{MirrorConfig, Mirrored};
pub use stats::{MirrorStats, TagSource, Through};
pub(crate) use through::Fresh;
pub use through::{ARRIVING_HEADER, MAX_ORIGINS, ORIGIN_HEADER, PullThrough};
pub use tls::PeerTls;

use crate::error::Error;

/// The header that marks a request as sent by a peer's mirror (any value;
/// peers send `true`). Such a request is answered from the local store
/// only: a miss is 404 at once, with no lookup, so requests never bounce
/// between nodes. Header names are case-insensitive; this is the form
/// `http` spells them in.
pub const MIRRORED_HEADER: &str = "x-kagami-mirrored";

/// Serves local misses from peers: the router to find them, an HTTP client
/// to fetch from them, and what has been learnt about them. Cloning is
/// cheap and shares all of it.
#[derive(Clone)]
pub struct Mirror {
    inner: Arc<Inner>,
}

/// What the mirror path shares between requests.
struct Inner {
    config: MirrorConfig,
    lookup: lookup::Lookup,
    fetch: fetch::Fetch,
    peers: peers::Peers,
    latency: hedge::Latency,
    stats: MirrorStats,
    report: report::Report,
    /// Pull-through, when configured.
    through: Option<through::State>,
}

impl Mirror {
    /// A mirror that finds providers with `router`. Fails only when the
    /// HTTP client cannot be built.
    pub fn new(router: Arc<dyn Router>, config: MirrorConfig) -> Result<Mirror, Error> {
        Mirror::with_pull_through(router, config, None)
    }

    /// A mirror that also pulls through `pull`: misses no peer serves are
    /// fetched from the upstream by their origin (see `through`).
    pub fn with_pull_through(
        router: Arc<dyn Router>,
        config: MirrorConfig,
        pull: Option<PullThrough>,
    ) -> Result<Mirror, Error> {
        let fetch = fetch::Fetch::new(&config)?;
        let lookup = lookup::Lookup::new(
            router,
            config.resolve_timeout,
            config.max_providers,
            config.own_addrs.clone(),
        );
        Ok(Mirror {
            inner: Arc::new(Inner {
                peers: peers::Peers::new(config.bad_peer_ttl),
                config,
                lookup,
                fetch,
                latency: hedge::Latency::default(),
                stats: MirrorStats::default(),
                report: report::Report::default(),
                through: pull.map(through::State::new),
            }),
        })
    }

    /// The settings it runs with.
    pub fn config(&self) -> &MirrorConfig {
        &self.inner.config
    }

    /// What it has done so far.
    pub fn stats(&self) -> &MirrorStats {
        &self.inner.stats
    }

    /// Drops the HTTP clients kept for peers with
    /// [`MirrorConfig::peer_tls`], and lifts the marks of peers that
    /// failed the TLS checks: call it once this node's TLS material has
    /// changed (its certificate renewed, say), so that every peer is asked
    /// again with a configuration made afresh. Requests in flight finish
    /// on the clients they have. Without `peer_tls`, it does nothing.
    pub fn reset_peer_clients(&self) {
        self.inner.fetch.reset_clients();
        if self.inner.config.peer_tls.is_some() {
            self.inner.peers.forgive_untrusted();
        }
    }

    /// The mirror as this node's role of origin: for a peer's request
    /// that asks this node as the content's origin ([`ORIGIN_HEADER`]),
    /// when it pulls through.
    pub(crate) fn as_origin<'a>(
        mirror: Option<&'a Mirror>,
        headers: &HeaderMap,
    ) -> Option<&'a Mirror> {
        mirror.filter(|m| m.inner.through.is_some() && headers.contains_key(ORIGIN_HEADER))
    }

    /// The mirror a request may use: none for a request from a peer.
    pub(crate) fn for_request<'a>(
        mirror: Option<&'a Mirror>,
        headers: &HeaderMap,
    ) -> Option<&'a Mirror> {
        mirror.filter(|_| !headers.contains_key(MIRRORED_HEADER))
    }

    /// Whether a miss in `registry` (for `tag`, if by tag) is looked up.
    fn allows(&self, registry: &Registry, tag: Option<&Tag>) -> bool {
        let config = &self.inner.config;
        config.mirrored.contains(registry)
            && tag.is_none_or(|tag| config.resolve_latest || !tag.is_latest())
    }
}

impl fmt::Debug for Mirror {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mirror")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked
/// (every critical section here is a single map or queue update).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
