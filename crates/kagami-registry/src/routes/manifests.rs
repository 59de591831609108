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
//! `MANIFEST_UNKNOWN` at once.

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;
use kagami_core::store::{self, Store};
use kagami_core::{Digest, MediaType, Reference, Registry, Repository};

use super::{bounded, content};
use crate::error::Error;
use crate::mirror::Mirror;
use crate::path::TagOrDigest;

/// Answers a manifest request; `head` leaves the body out.
pub(super) async fn get(
    store: &dyn Store,
    mirror: Option<&Mirror>,
    registry: Registry,
    repository: Repository,
    reference: TagOrDigest,
    head: bool,
) -> Result<Response, Error> {
    let mut found = held(store, &registry, &repository, &reference).await?;
    if found.is_none()
        && let Some(mirror) = mirror
    {
        found = mirror.manifest(&registry, &repository, &reference).await;
    }
    let Some((media_type, digest, bytes)) = found else {
        let reference = match reference {
            TagOrDigest::Digest(digest) => digest.to_string(),
            TagOrDigest::Tag(tag) => Reference::tagged(registry, repository, tag).to_string(),
        };
        return Err(Error::ManifestUnknown { reference });
    };
    let length = bytes.len() as u64;
    let body = if head {
        Body::empty()
    } else {
        Body::from(bytes)
    };
    content(StatusCode::OK, media_type.as_str(), length, &digest, body)
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
