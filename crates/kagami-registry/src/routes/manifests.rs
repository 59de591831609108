//! `GET` and `HEAD /v2/<name>/manifests/<reference>`.
//!
//! A tag is resolved to a digest first; the manifest is then read by that
//! digest, so the bytes served always belong to the digest announced in
//! `Docker-Content-Digest`. Manifests are small and are read whole. The
//! client's `Accept` header is not consulted: a mirror serves the manifest
//! it holds, in its own media type, and the client decides.
//!
//! A tag or digest the store does not hold is asked of the mirror, when
//! the request may use one; content that is held but is not a manifest is
//! `MANIFEST_UNKNOWN` at once. With pull-through, a tag is first resolved
//! at the upstream (through the tag's origin), and a peer asking this node
//! as an origin gets the manifest fetched from the upstream.

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use kagami_core::store::{self, Store};
use kagami_core::{Digest, MediaType, Reference, Registry, Repository};

use super::{bounded, content};
use crate::error::Error;
use crate::mirror::{Fresh, Mirror};
use crate::path::TagOrDigest;
use crate::stats::{Kind, Outcome, Pull, RequestStats, SOURCE_HEADER};
use std::time::{Instant, SystemTime};

/// Answers a manifest request; `head` leaves the body out.
pub(super) async fn get(
    store: &dyn Store,
    (mirror, origin): (Option<&Mirror>, Option<&Mirror>),
    registry: Registry,
    repository: Repository,
    reference: TagOrDigest,
    head: bool,
    stats: &RequestStats,
) -> Result<Response, Error> {
    let started = Instant::now();
    // Pulled through, a tag is what the upstream says it is now; what
    // this node or its peers recorded for it counts only when the upstream
    // cannot be asked (and a tag the upstream does not know is looked for
    // here alone). A peer asking this node as the tag's origin wants the
    // upstream's answer, never this node's record: when the upstream
    // cannot be asked it is told so, and asks the next origin.
    let mut asked = reference.clone();
    let mut from_peers = true;
    if let TagOrDigest::Tag(tag) = &reference {
        let (fresh, for_origin) = match (mirror, origin) {
            (Some(mirror), _) => (mirror.fresh_tag(&registry, &repository, tag).await, false),
            (None, Some(origin)) if origin.pulls_through(&registry) => {
                (origin.origin_tag(&registry, &repository, tag).await, true)
            }
            _ => (Fresh::Unavailable, false),
        };
        match fresh {
            Fresh::Is(digest) => {
                // This node's own record of the tag, if any, is
                // compared (peers' records are, by the tag's origin).
                let tagged = Reference::tagged(registry.clone(), repository.clone(), tag.clone());
                if let (Some(checker), Ok(image)) = (
                    mirror.or(origin),
                    bounded("resolve", store.resolve(&tagged)).await,
                ) {
                    checker.check_own_record(&tagged, &image.digest, &digest);
                }
                asked = TagOrDigest::Digest(digest);
            }
            Fresh::NotFound if for_origin => {
                let reference = Reference::tagged(registry, repository, tag.clone());
                return Err(Error::ManifestUnknown {
                    reference: reference.to_string(),
                });
            }
            Fresh::NotFound => from_peers = false,
            Fresh::Unavailable if for_origin => {
                return Err(Error::UpstreamUnavailable { registry });
            }
            Fresh::Unavailable => {}
        }
    }
    let mut found = held(store, &registry, &repository, &asked)
        .await?
        .map(|found| (found, Outcome::Local));
    if found.is_none() {
        if let Some(mirror) = mirror.filter(|_| from_peers) {
            found = mirror.manifest(&registry, &repository, &asked).await;
        } else if let (Some(origin), TagOrDigest::Digest(digest)) = (origin, &asked) {
            found = origin
                .origin_manifest(&registry, &repository, digest)
                .await
                .map(|found| (found, Outcome::Upstream));
        }
    }
    let Some(((media_type, digest, bytes), from)) = found else {
        stats.count(registry.as_str(), Kind::Manifest, Outcome::Miss);
        let reference = match reference {
            TagOrDigest::Digest(digest) => digest.to_string(),
            TagOrDigest::Tag(tag) => Reference::tagged(registry, repository, tag).to_string(),
        };
        return Err(Error::ManifestUnknown { reference });
    };
    let length = bytes.len() as u64;
    stats.count(registry.as_str(), Kind::Manifest, from);
    if !head {
        stats.pulled(Pull {
            at: SystemTime::now(),
            reference: match &reference {
                TagOrDigest::Tag(tag) => format!("{registry}/{repository}:{tag}"),
                TagOrDigest::Digest(digest) => format!("{registry}/{repository}@{digest}"),
            },
            kind: Kind::Manifest,
            outcome: from,
            bytes: length,
            took: started.elapsed(),
        });
    }
    let body = if head {
        Body::empty()
    } else {
        Body::from(bytes)
    };
    let mut response = content(StatusCode::OK, media_type.as_str(), length, &digest, body)?;
    response
        .headers_mut()
        .insert(SOURCE_HEADER, HeaderValue::from_static(from.as_str()));
    Ok(response)
}

/// The manifest from the store; `None` when its tag or content is not held.
async fn held(
    store: &dyn Store,
    registry: &Registry,
    repository: &Repository,
    reference: &TagOrDigest,
) -> Result<Option<(MediaType, Digest, Bytes)>, Error> {
    let digest = match reference {
        TagOrDigest::Digest(digest) => digest.clone(),
        TagOrDigest::Tag(tag) => {
            let reference = Reference::tagged(registry.clone(), repository.clone(), tag.clone());
            match bounded("resolve", store.resolve(&reference)).await {
                Ok(image) => image.digest,
                Err(store::Error::ImageNotFound { .. }) => return Ok(None),
                Err(error) => return Err(error.into()),
            }
        }
    };
    match bounded("read_manifest", store.read_manifest(&digest)).await {
        Ok((media_type, bytes)) => Ok(Some((media_type, digest, bytes))),
        Err(store::Error::ContentNotFound { .. }) => Ok(None),
        Err(error) => Err(Error::for_manifest(error)),
    }
}
