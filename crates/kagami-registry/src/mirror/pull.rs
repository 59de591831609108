//! The two requests the mirror answers: a manifest (by tag or digest) and
//! a blob (whole or a range, `GET` or `HEAD`).
//!
//! Everything up to the response head (lookup included) is bounded by
//! [`MirrorConfig::manifest_timeout`](super::MirrorConfig); a blob's body
//! then streams for as long as it keeps moving.

use std::future::Future;

use bytes::Bytes;
use http::Method;
use kagami_core::router::Peer;
use kagami_core::{Digest, Key, MediaType, Reference, Registry, Repository};

use super::fetch::{Manifest, Opened, Target};
use super::hedge::race;
use super::relay::Relay;
use super::{Inner, Mirror};
use crate::error::Error;
use crate::path::TagOrDigest;
use crate::range::ByteRange;
use crate::routes::Blob;
use crate::stats::Outcome;

impl Mirror {
    /// The manifest `reference` names, from a peer: its type, digest and
    /// bytes. `None` when the policy refuses it or no peer served it in
    /// time.
    pub(crate) async fn manifest(
        &self,
        registry: &Registry,
        repository: &Repository,
        reference: &TagOrDigest,
    ) -> Option<((MediaType, Digest, Bytes), Outcome)> {
        let (key, tag) = match reference {
            TagOrDigest::Digest(digest) => (Key::Digest(digest.clone()), None),
            TagOrDigest::Tag(tag) => {
                let tagged = Reference::tagged(registry.clone(), repository.clone(), tag.clone());
                (Key::for_tag(&tagged)?, Some(tag))
            }
        };
        if !self.allows(registry, tag) {
            return None;
        }
        let inner = &*self.inner;
        let target = target(registry, repository);
        let fetched = self.bounded(&key, async {
            let peers = inner.providers(&key).await?;
            let won = race(inner, &key, &peers, |peer| {
                let target = &target;
                async move { inner.fetch.manifest(&peer, target, reference).await }
            })
            .await;
            inner.settle(&key, won)
        });
        let Some(won) = fetched.await else {
            if let TagOrDigest::Digest(digest) = reference
                && self.pulls_through(registry)
            {
                return self
                    .manifest_through_origins(registry, repository, digest)
                    .await
                    .map(|found| (found, Outcome::Upstream));
            }
            return None;
        };
        inner
            .stats
            .relayed(&won.peer.id, won.value.bytes.len() as u64);
        if tag.is_some() && self.pulls_through(registry) {
            // The upstream could not be asked: the peers' record stood in.
            inner.stats.tag_resolved(super::stats::TagSource::Peers);
        }
        let Manifest {
            media_type,
            digest,
            bytes,
        } = won.value;
        Some(((media_type, digest, bytes), Outcome::Peer))
    }

    /// The blob `digest` (or the bytes `range` selects), from a peer.
    /// `Ok(None)` when the policy refuses it or no peer served it in
    /// time; an error only for a range that selects nothing.
    pub(crate) async fn blob(
        &self,
        registry: &Registry,
        repository: &Repository,
        digest: &Digest,
        range: Option<ByteRange>,
        head: bool,
    ) -> Result<Option<Blob>, Error> {
        if !self.allows(registry, None) {
            return Ok(None);
        }
        let inner = &*self.inner;
        let key = Key::Digest(digest.clone());
        let target = target(registry, repository);
        let method = if head { Method::HEAD } else { Method::GET };
        let opened = self.bounded(&key, async {
            let peers = inner.providers(&key).await?;
            let won = race(inner, &key, &peers, |peer| {
                let (target, method) = (&target, method.clone());
                async move { inner.fetch.blob(method, &peer, target, digest, range).await }
            })
            .await;
            Some((inner.settle(&key, won)?, peers))
        });
        let Some((won, peers)) = opened.await else {
            if self.pulls_through(registry) {
                return self
                    .blob_through_origins(registry, repository, digest, range, head)
                    .await;
            }
            return Ok(None);
        };
        let (response, part) = match won.value {
            Opened::Unsatisfiable { size } => {
                return Err(Error::RangeNotSatisfiable {
                    digest: digest.clone(),
                    size,
                });
            }
            Opened::Body { response, part } => (response, part),
        };
        let blob = Blob {
            size: part.size,
            range: range.map(|_| part.range.clone()),
            body: None,
            arriving: false,
            from: Outcome::Peer,
        };
        if head {
            return Ok(Some(blob));
        }
        let spare: Vec<Peer> = peers
            .into_iter()
            .filter(|peer| *peer != won.peer && !won.failed.contains(peer))
            .collect();
        let relay = Relay::new(
            self.inner.clone(),
            target,
            digest.clone(),
            (won.peer, response, part),
            spare,
        );
        Ok(Some(Blob {
            body: Some(relay.into_stream()),
            ..blob
        }))
    }

    /// `work` within the manifest budget; `None` (logged) past it.
    async fn bounded<T>(&self, key: &Key, work: impl Future<Output = Option<T>>) -> Option<T> {
        let budget = self.inner.config.manifest_timeout;
        match tokio::time::timeout(budget, work).await {
            Ok(found) => found,
            Err(_) => {
                let why = format!("no peer answered within {budget:?}");
                self.inner.report.gave_up(key, &why);
                None
            }
        }
    }
}

impl Inner {
    /// The providers of `key` in the order to try them; `None` (logged)
    /// when there are none.
    async fn providers(&self, key: &Key) -> Option<Vec<Peer>> {
        let found = self.lookup.providers(key, &self.stats).await;
        let peers = self.peers.order(&found);
        if peers.is_empty() {
            let why = if found.is_empty() {
                "no provider found"
            } else {
                "every provider is marked bad"
            };
            self.report.gave_up(key, why);
            return None;
        }
        Some(peers)
    }

    /// The winner of a race, or `None` (logged) when every peer failed.
    fn settle<T, E>(&self, key: &Key, won: Result<T, Vec<E>>) -> Option<T> {
        match won {
            Ok(won) => Some(won),
            Err(failures) => {
                let why = format!("all {} providers failed", failures.len());
                self.report.gave_up(key, &why);
                None
            }
        }
    }
}

fn target(registry: &Registry, repository: &Repository) -> Target {
    Target {
        registry: registry.clone(),
        repository: repository.clone(),
        origin: false,
    }
}
