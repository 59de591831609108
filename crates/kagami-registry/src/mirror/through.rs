//! Pull-through: what no peer serves comes from the registry itself,
//! fetched once for the whole cluster by the key's *origin*, the live node
//! closest to the key in the DHT ([`Router::closest`]), which every node
//! names alike. A node that is its own origin fetches into its cache
//! ([`Cache::fill`], once however many ask) and serves from it while the
//! bytes arrive; any other node asks the origin, marking the request with
//! [`ORIGIN_HEADER`] (and the loop guard): the origin then fetches what it
//! lacks itself, and never asks anyone else. An origin that does not answer
//! within [`MirrorConfig::origin_timeout`](super::MirrorConfig), or does
//! not mirror the registry (404), gives way to the next closest.
//!
//! Tags are resolved the same way while the upstream answers: the tag
//! key's origin asks the registry (a `HEAD`), and keeps the answer for
//! [`MirrorConfig::tag_ttl`](super::MirrorConfig), so a rollout of a
//! thousand nodes costs one request; the manifest then comes by digest.
//! Having asked, the origin also asks the peers that record the tag what
//! they hold under it, and logs those that disagree with the upstream.
//!
//! [`Router::closest`]: kagami_core::router::Router::closest

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use http::Method;
use kagami_core::router::Near;
use kagami_core::store::{BlobStream, Cache, ContentKind, Source};
use kagami_core::upstream::{self, Resolved, Upstream};
use kagami_core::{Digest, Key, MediaType, Reference, Registry, Repository, Tag};
use tokio::time::Instant;
use tracing::Instrument;

use super::fetch::{Opened, Target};
use super::relay::Relay;
use super::stats::Through as Outcome;
use super::{Inner, Mirror, lock};
use crate::error::Error;
use crate::range::{self, ByteRange};
use crate::routes::Blob;

/// The header that asks a node, as a key's origin, for what it may have to
/// fetch from the upstream (always with the loop guard, so it asks no one
/// else). Any value; nodes send `true`.
pub const ORIGIN_HEADER: &str = "x-kagami-origin";
/// The header on an origin's blob response that says the blob is still
/// arriving from the upstream, so it comes at the upstream's pace: the
/// asker then holds the origin to no rate floor. Without it, the origin
/// serves what it holds, and a slow one is gone past like any peer.
pub const ARRIVING_HEADER: &str = "x-kagami-arriving";
/// Origins asked in turn, closest first.
pub const MAX_ORIGINS: usize = 3;
/// Peers' records of a tag compared with the upstream's answer, per
/// resolution at the upstream.
const MAX_RECORDS_CHECKED: usize = 8;

/// What pull-through needs: where content comes from, and where it is kept.
#[derive(Clone)]
pub struct PullThrough {
    /// The registries images come from.
    pub upstream: Arc<dyn Upstream>,
    /// Where fetched content is kept and served from while it arrives.
    pub cache: Arc<dyn Cache>,
}

impl std::fmt::Debug for PullThrough {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PullThrough(..)")
    }
}

/// A tag's address.
type TagName = (Registry, Repository, Tag);

/// Pull-through's state on one node.
pub(super) struct State {
    upstream: Arc<dyn Upstream>,
    cache: Arc<dyn Cache>,
    /// One upstream request per digest at a time.
    opening: Flights<Digest>,
    /// One upstream resolution per tag at a time, and the answers kept.
    resolving: Flights<TagName>,
    tags: Mutex<HashMap<TagName, (Option<Resolved>, Instant)>>,
}

/// Per-key locks for single flight, dropped when nobody waits.
struct Flights<K> {
    locks: Mutex<HashMap<K, Arc<tokio::sync::Mutex<()>>>>,
}

impl<K: Hash + Eq + Clone> Flights<K> {
    fn new() -> Flights<K> {
        Flights {
            locks: Mutex::new(HashMap::new()),
        }
    }

    async fn hold(&self, key: &K) -> tokio::sync::OwnedMutexGuard<()> {
        let flight = {
            let mut locks = lock(&self.locks);
            locks.retain(|_, flight| Arc::strong_count(flight) > 1);
            locks.entry(key.clone()).or_default().clone()
        };
        flight.lock_owned().await
    }
}

impl State {
    pub(super) fn new(pull: PullThrough) -> State {
        State {
            upstream: pull.upstream,
            cache: pull.cache,
            opening: Flights::new(),
            resolving: Flights::new(),
            tags: Mutex::new(HashMap::new()),
        }
    }
}

/// What the upstream says a tag is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fresh {
    /// It names this manifest.
    Is(Digest),
    /// The registry has no such tag.
    NotFound,
    /// No origin could ask the registry.
    Unavailable,
}

/// Counts the bytes of an upstream body as they pass.
fn counted(body: BlobStream, inner: Arc<Inner>) -> BlobStream {
    Box::pin(body.inspect(move |chunk| {
        if let Ok(chunk) = chunk {
            inner.stats.upstream_bytes_received(chunk.len() as u64);
        }
    }))
}

impl Mirror {
    fn through(&self) -> Option<&State> {
        self.inner.through.as_ref()
    }

    /// Whether misses of `registry` are pulled through.
    pub(crate) fn pulls_through(&self, registry: &Registry) -> bool {
        self.through().is_some() && self.inner.config.mirrored.contains(registry)
    }

    // ---- as the origin -------------------------------------------------

    /// Makes sure the cache holds or receives `digest` (a blob), fetching
    /// it from the upstream if not; whether it is there now.
    async fn fetch_blob_here(
        &self,
        registry: &Registry,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<bool, upstream::Error> {
        let Some(state) = self.through() else {
            return Ok(false);
        };
        let _flight = state.opening.hold(digest).await;
        if state.cache.stat(digest).await.is_ok() {
            return Ok(true);
        }
        let Some(blob) = state.upstream.blob(registry, repository, digest, 0).await? else {
            return Ok(false);
        };
        tracing::debug!(%registry, %repository, %digest, size = blob.size, "fetching from the upstream");
        let body = counted(blob.body, self.inner.clone());
        let source: Source = Box::pin(async move { Ok(body) });
        match state
            .cache
            .fill(digest, ContentKind::Blob, blob.size, source)
            .await
        {
            Ok(_) => Ok(true),
            Err(error) => {
                tracing::warn!(%digest, %error, "cannot keep a pulled-through blob");
                Ok(false)
            }
        }
    }

    /// Like `fetch_blob_here`, for a manifest by digest.
    async fn fetch_manifest_here(
        &self,
        registry: &Registry,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<bool, upstream::Error> {
        let Some(state) = self.through() else {
            return Ok(false);
        };
        let _flight = state.opening.hold(digest).await;
        if state.cache.stat(digest).await.is_ok() {
            return Ok(true);
        }
        let Some((media_type, bytes)) = state
            .upstream
            .manifest(registry, repository, digest)
            .await?
        else {
            return Ok(false);
        };
        self.inner.stats.upstream_bytes_received(bytes.len() as u64);
        let size = bytes.len() as u64;
        let source: Source = Box::pin(async move {
            let body: BlobStream = Box::pin(futures::stream::iter(vec![Ok(bytes)]));
            Ok(body)
        });
        match state
            .cache
            .fill(digest, ContentKind::Manifest(media_type), size, source)
            .await
        {
            Ok(_) => Ok(true),
            Err(error) => {
                tracing::warn!(%digest, %error, "cannot keep a pulled-through manifest");
                Ok(false)
            }
        }
    }

    /// What `tag` names at the upstream, asked here: the answer kept for
    /// the tag TTL (a 404 too), one request per tag at a time.
    async fn resolve_here(
        &self,
        registry: &Registry,
        repository: &Repository,
        tag: &Tag,
    ) -> Result<Option<Resolved>, upstream::Error> {
        let Some(state) = self.through() else {
            return Ok(None);
        };
        let name = (registry.clone(), repository.clone(), tag.clone());
        let ttl = self.inner.config.tag_ttl;
        let fresh = |state: &State| {
            lock(&state.tags)
                .get(&name)
                .filter(|(_, at)| at.elapsed() < ttl)
                .map(|(answer, _)| answer.clone())
        };
        if let Some(answer) = fresh(state) {
            return Ok(answer);
        }
        let _flight = state.resolving.hold(&name).await;
        if let Some(answer) = fresh(state) {
            return Ok(answer);
        }
        let answer = state.upstream.resolve(registry, repository, tag).await?;
        {
            let mut tags = lock(&state.tags);
            tags.retain(|_, (_, at)| at.elapsed() < ttl);
            tags.insert(name, (answer.clone(), Instant::now()));
        }
        if let Some(resolved) = &answer {
            let tagged = Reference::tagged(registry.clone(), repository.clone(), tag.clone());
            self.check_records(tagged, resolved.digest.clone());
        }
        Ok(answer)
    }

    /// Reports this node's own record of `tagged`, `recorded`, when it
    /// names another manifest than the upstream's answer, `upstream`.
    pub(crate) fn check_own_record(
        &self,
        tagged: &Reference,
        recorded: &Digest,
        upstream: &Digest,
    ) {
        if recorded != upstream
            && self
                .inner
                .report
                .tag_disagrees(tagged, "this node", recorded, upstream)
        {
            self.inner.stats.tag_disagreed();
        }
    }

    /// In the background, asks the peers that record `tagged` what they
    /// hold under it, and reports those naming another manifest than
    /// `upstream`.
    fn check_records(&self, tagged: Reference, upstream: Digest) {
        let Some(key) = Key::for_tag(&tagged) else {
            return;
        };
        let inner = self.inner.clone();
        let work = async move {
            let found = inner.lookup.providers(&key, &inner.stats).await;
            let target = Target {
                registry: tagged.registry().clone(),
                repository: tagged.repository().clone(),
                origin: false,
            };
            let Some(tag) = tagged.tag() else {
                return;
            };
            let budget = inner.config.origin_timeout;
            let asks = inner
                .peers
                .order(&found)
                .into_iter()
                .take(MAX_RECORDS_CHECKED)
                .map(|peer| {
                    let (inner, target) = (&inner, &target);
                    async move {
                        let answer = inner.fetch.resolve(&peer, target, tag, budget).await;
                        (peer, answer)
                    }
                });
            for (peer, answer) in futures::future::join_all(asks).await {
                let Ok(Some(recorded)) = answer else {
                    continue;
                };
                if recorded.digest != upstream
                    && inner
                        .report
                        .tag_disagrees(&tagged, &peer.id, &recorded.digest, &upstream)
                {
                    inner.stats.tag_disagreed();
                }
            }
        };
        tokio::spawn(work.instrument(tracing::debug_span!("tag_records")));
    }

    /// A blob for a peer that asked this node as its origin: from the
    /// cache, fetched from the upstream first if need be.
    pub(crate) async fn origin_blob(
        &self,
        registry: &Registry,
        repository: &Repository,
        digest: &Digest,
        requested: Option<ByteRange>,
        head: bool,
    ) -> Result<Option<Blob>, Error> {
        if !self.pulls_through(registry) {
            return Ok(None);
        }
        match self.fetch_blob_here(registry, repository, digest).await {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(error) => {
                self.inner.report.upstream(registry, &error);
                return Ok(None);
            }
        }
        self.inner.stats.pulled_through(Outcome::Fetched);
        self.served_from_cache(digest, requested, head).await
    }

    /// What `tag` names now, asked of the upstream by this node, for a
    /// peer that asked this node as the tag's origin.
    pub(crate) async fn origin_tag(
        &self,
        registry: &Registry,
        repository: &Repository,
        tag: &Tag,
    ) -> Fresh {
        if !self.pulls_through(registry) {
            return Fresh::Unavailable;
        }
        match self.resolve_here(registry, repository, tag).await {
            Ok(Some(resolved)) => Fresh::Is(resolved.digest),
            Ok(None) => Fresh::NotFound,
            Err(error) => {
                self.inner.report.upstream(registry, &error);
                Fresh::Unavailable
            }
        }
    }

    /// A manifest by digest for a peer that asked this node as its
    /// origin: from the cache, fetched from the upstream first if need be.
    pub(crate) async fn origin_manifest(
        &self,
        registry: &Registry,
        repository: &Repository,
        digest: &Digest,
    ) -> Option<(MediaType, Digest, Bytes)> {
        if !self.pulls_through(registry) {
            return None;
        }
        self.manifest_here(registry, repository, digest).await
    }

    async fn manifest_here(
        &self,
        registry: &Registry,
        repository: &Repository,
        digest: &Digest,
    ) -> Option<(MediaType, Digest, Bytes)> {
        let state = self.through()?;
        match self.fetch_manifest_here(registry, repository, digest).await {
            Ok(true) => {}
            Ok(false) => return None,
            Err(error) => {
                self.inner.report.upstream(registry, &error);
                return None;
            }
        }
        let (media_type, bytes) = state.cache.read_manifest(digest).await.ok()?;
        Some((media_type, digest.clone(), bytes))
    }

    /// The blob as the cache serves it (while it arrives, too).
    async fn served_from_cache(
        &self,
        digest: &Digest,
        requested: Option<ByteRange>,
        head: bool,
    ) -> Result<Option<Blob>, Error> {
        let Some(state) = self.through() else {
            return Ok(None);
        };
        let Ok(info) = state.cache.stat(digest).await else {
            return Ok(None);
        };
        let size = info.size;
        let range = match requested {
            None => None,
            Some(requested) => Some(requested.resolve(size).map_err(|range::Unsatisfiable| {
                Error::RangeNotSatisfiable {
                    digest: digest.clone(),
                    size,
                }
            })?),
        };
        let arriving = state.cache.arriving(digest);
        let body = if head {
            None
        } else {
            match state.cache.read(digest, range.clone()).await {
                Ok(body) => Some(body),
                Err(_) => return Ok(None),
            }
        };
        Ok(Some(Blob {
            size,
            range,
            body,
            arriving,
            from: crate::stats::Outcome::Upstream,
        }))
    }

    // ---- asking the origins --------------------------------------------

    /// The nodes to ask for `key`, closest first.
    ///
    /// Peers this node skips for now (they sent bytes too slowly, or bad
    /// ones) are left out: an origin serves at its own link's pace, with
    /// no floor, so a slow provider must not be read from as an origin
    /// either. When that leaves a peer out, this node takes the last place.
    async fn origins(&self, key: &Key) -> Vec<Near> {
        let named = match self.inner.lookup.router().closest(key, MAX_ORIGINS).await {
            Ok(origins) if !origins.is_empty() => origins,
            Ok(_) | Err(_) => return vec![Near::ThisNode],
        };
        let mut origins: Vec<Near> = named
            .iter()
            .filter(|near| match near {
                Near::ThisNode => true,
                Near::Peer(peer) => !self.inner.peers.is_bad(peer),
            })
            .cloned()
            .collect();
        if origins.len() < named.len() && !origins.contains(&Near::ThisNode) {
            tracing::debug!(%key, "origins skipped for now; this node stands in");
            origins.push(Near::ThisNode);
        }
        origins
    }

    /// A blob through its origin, for this node's client: `Ok(None)` when
    /// no origin could get it (the client then falls back to its own
    /// endpoints).
    pub(super) async fn blob_through_origins(
        &self,
        registry: &Registry,
        repository: &Repository,
        digest: &Digest,
        requested: Option<ByteRange>,
        head: bool,
    ) -> Result<Option<Blob>, Error> {
        let key = Key::Digest(digest.clone());
        let budget = self.inner.config.origin_timeout;
        for origin in self.origins(&key).await {
            let peer = match origin {
                Near::ThisNode => {
                    let found = self
                        .origin_blob(registry, repository, digest, requested, head)
                        .await?;
                    if found.is_some() {
                        return Ok(found);
                    }
                    continue;
                }
                Near::Peer(peer) => peer,
            };
            let target = Target {
                registry: registry.clone(),
                repository: repository.clone(),
                origin: true,
            };
            let method = if head { Method::HEAD } else { Method::GET };
            let opened = tokio::time::timeout(
                budget,
                self.inner
                    .fetch
                    .blob(method, &peer, &target, digest, requested),
            )
            .await;
            let (response, part) = match opened {
                Ok(Ok(Opened::Body { response, part })) => (response, part),
                Ok(Ok(Opened::Unsatisfiable { size })) => {
                    return Err(Error::RangeNotSatisfiable {
                        digest: digest.clone(),
                        size,
                    });
                }
                Ok(Err(error)) => {
                    tracing::debug!(%digest, origin = %peer.id, %error, "the origin did not serve; trying the next");
                    continue;
                }
                Err(_) => {
                    tracing::debug!(%digest, origin = %peer.id, ?budget, "the origin did not answer in time; trying the next");
                    continue;
                }
            };
            self.inner.stats.pulled_through(Outcome::FromOrigin);
            let blob = Blob {
                size: part.size,
                range: requested.map(|_| part.range.clone()),
                body: None,
                arriving: false,
                from: crate::stats::Outcome::Upstream,
            };
            if head {
                return Ok(Some(blob));
            }
            let relay = Relay::new(
                self.inner.clone(),
                target,
                digest.clone(),
                (peer, response, part),
                Vec::new(),
            );
            return Ok(Some(Blob {
                body: Some(relay.into_stream()),
                ..blob
            }));
        }
        self.inner.stats.pulled_through(Outcome::Unavailable);
        self.inner
            .report
            .gave_up(&key, "no origin could pull it through");
        Ok(None)
    }

    /// A manifest by digest through its origin.
    pub(super) async fn manifest_through_origins(
        &self,
        registry: &Registry,
        repository: &Repository,
        digest: &Digest,
    ) -> Option<(MediaType, Digest, Bytes)> {
        let key = Key::Digest(digest.clone());
        let budget = self.inner.config.origin_timeout;
        let reference = crate::path::TagOrDigest::Digest(digest.clone());
        for origin in self.origins(&key).await {
            match origin {
                Near::ThisNode => {
                    if let Some(found) = self.manifest_here(registry, repository, digest).await {
                        self.inner.stats.pulled_through(Outcome::Fetched);
                        return Some(found);
                    }
                }
                Near::Peer(peer) => {
                    let target = Target {
                        registry: registry.clone(),
                        repository: repository.clone(),
                        origin: true,
                    };
                    let fetched = tokio::time::timeout(
                        budget,
                        self.inner.fetch.manifest(&peer, &target, &reference),
                    )
                    .await;
                    if let Ok(Ok(manifest)) = fetched {
                        self.inner.stats.pulled_through(Outcome::FromOrigin);
                        self.inner
                            .stats
                            .relayed(&peer.id, manifest.bytes.len() as u64);
                        return Some((manifest.media_type, manifest.digest, manifest.bytes));
                    }
                }
            }
        }
        self.inner.stats.pulled_through(Outcome::Unavailable);
        None
    }

    /// What `tag` names now, as the upstream says, asked of the tag's
    /// origin (this node, or the closest peer that answers).
    pub(crate) async fn fresh_tag(
        &self,
        registry: &Registry,
        repository: &Repository,
        tag: &Tag,
    ) -> Fresh {
        if !self.pulls_through(registry) {
            return Fresh::Unavailable;
        }
        let tagged = Reference::tagged(registry.clone(), repository.clone(), tag.clone());
        let Some(key) = Key::for_tag(&tagged) else {
            return Fresh::Unavailable;
        };
        let budget = self.inner.config.origin_timeout;
        for origin in self.origins(&key).await {
            let answer = match origin {
                Near::ThisNode => match self.resolve_here(registry, repository, tag).await {
                    Ok(answer) => answer,
                    Err(error) => {
                        self.inner.report.upstream(registry, &error);
                        continue;
                    }
                },
                Near::Peer(peer) => {
                    let target = Target {
                        registry: registry.clone(),
                        repository: repository.clone(),
                        origin: true,
                    };
                    match self.inner.fetch.resolve(&peer, &target, tag, budget).await {
                        Ok(answer) => answer,
                        Err(error) => {
                            tracing::debug!(%tagged, origin = %peer.id, %error, "the tag's origin did not answer; trying the next");
                            continue;
                        }
                    }
                }
            };
            self.inner
                .stats
                .tag_resolved(super::stats::TagSource::Upstream);
            return match answer {
                Some(resolved) => Fresh::Is(resolved.digest),
                None => {
                    self.inner.stats.pulled_through(Outcome::NotFound);
                    Fresh::NotFound
                }
            };
        }
        Fresh::Unavailable
    }
}
