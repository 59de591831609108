//! `GET` and `HEAD /v2/<name>/blobs/<digest>`, whole or one byte range.
//!
//! The body streams from the store as the client reads it; a client that
//! goes away drops the store's stream with the response. A manifest's
//! digest is not a blob here (`BLOB_UNKNOWN`): manifests are served from
//! `/manifests/` with their media type. `HEAD` answers the headers `GET`
//! would, `Range` included, without opening the content.
//!
//! A digest the store does not hold is asked of the mirror, when the
//! request may use one, with the client's range passed on; a peer asking
//! this node as the blob's origin gets it pulled through from the upstream.

use std::ops::Range;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::response::Response;
use http::header::{ACCEPT_RANGES, CONTENT_RANGE, RANGE};
use http::{HeaderMap, HeaderValue, StatusCode};
use kagami_core::store::{self, BlobStream, ContentKind, Store};
use kagami_core::{Digest, Registry, Repository};

use super::{bounded, content};
use crate::budget::BodyBudget;
use crate::error::Error;
use crate::mirror::ARRIVING_HEADER;
use crate::mirror::Mirror;
use crate::range::{self, ByteRange};
use crate::stats::{Kind, Outcome, Pull, RequestStats, SOURCE_HEADER};

/// A blob to answer with, from the store or from a peer.
pub(crate) struct Blob {
    /// The whole blob's size.
    pub(crate) size: u64,
    /// The bytes served, when the client asked for a range.
    pub(crate) range: Option<Range<u64>>,
    /// The body, for `GET`.
    pub(crate) body: Option<BlobStream>,
    /// Served from the pull-through cache while it arrives from the
    /// upstream, at the upstream's pace ([`ARRIVING_HEADER`] tells a peer).
    ///
    /// [`ARRIVING_HEADER`]: crate::mirror::ARRIVING_HEADER
    pub(crate) arriving: bool,
    /// Where the bytes come from.
    pub(crate) from: Outcome,
}

/// Answers a blob request; `head` leaves the body out.
pub(super) async fn get(
    store: &dyn Store,
    (mirror, origin): (Option<&Mirror>, Option<&Mirror>),
    (registry, repository): (&Registry, &Repository),
    digest: Digest,
    headers: &HeaderMap,
    head: bool,
    (budget, stats): (&BodyBudget, &RequestStats),
) -> Result<Response, Error> {
    let started = Instant::now();
    let requested = headers
        .get(RANGE)
        .and_then(|value| value.to_str().ok())
        .and_then(ByteRange::parse);
    let mut found = held(store, &digest, requested, head).await?;
    if found.is_none() {
        if let Some(mirror) = mirror {
            found = mirror
                .blob(registry, repository, &digest, requested, head)
                .await?;
        } else if let Some(origin) = origin {
            found = origin
                .origin_blob(registry, repository, &digest, requested, head)
                .await?;
        }
    }
    let Some(mut blob) = found else {
        stats.count(registry.as_str(), Kind::Blob, Outcome::Miss);
        return Err(Error::BlobUnknown { digest });
    };
    stats.count(registry.as_str(), Kind::Blob, blob.from);
    if let Some(body) = blob.body.take() {
        let pull = Pull {
            at: SystemTime::now(),
            reference: format!("{registry}/{repository}@{digest}"),
            kind: Kind::Blob,
            outcome: blob.from,
            bytes: 0,
            took: Duration::ZERO,
        };
        blob.body = Some(stats.stream(body, pull, started));
    }
    let from = blob.from;
    let mut response = render(&digest, blob, budget)?;
    response
        .headers_mut()
        .insert(SOURCE_HEADER, HeaderValue::from_static(from.as_str()));
    Ok(response)
}

/// The blob from the store; `None` when it is not held.
async fn held(
    store: &dyn Store,
    digest: &Digest,
    requested: Option<ByteRange>,
    head: bool,
) -> Result<Option<Blob>, Error> {
    let info = match bounded("stat", store.stat(digest)).await {
        Ok(info) => info,
        Err(store::Error::ContentNotFound { .. }) => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    if let ContentKind::Manifest(_) = info.kind {
        return Err(Error::BlobUnknown {
            digest: digest.clone(),
        });
    }
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
    let body = if head {
        None
    } else {
        Some(bounded("read", store.read(digest, range.clone())).await?)
    };
    Ok(Some(Blob {
        size,
        range,
        body,
        arriving: false,
        from: Outcome::Local,
    }))
}

/// The response for `blob`: 200, or 206 with `Content-Range`.
fn render(digest: &Digest, blob: Blob, budget: &BodyBudget) -> Result<Response, Error> {
    let (status, length) = match &blob.range {
        Some(range) => (StatusCode::PARTIAL_CONTENT, range.end - range.start),
        None => (StatusCode::OK, blob.size),
    };
    let body = blob
        .body
        .map_or_else(Body::empty, |body| Body::from_stream(budget.meter(body)));
    let mut response = content(status, "application/octet-stream", length, digest, body)?;
    let headers = response.headers_mut();
    headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(range) = &blob.range {
        headers.insert(CONTENT_RANGE, content_range(range, blob.size)?);
    }
    if blob.arriving {
        headers.insert(ARRIVING_HEADER, HeaderValue::from_static("true"));
    }
    Ok(response)
}

fn content_range(range: &Range<u64>, size: u64) -> Result<HeaderValue, Error> {
    HeaderValue::try_from(range::content_range(range, size)).map_err(|source| Error::Render {
        what: "Content-Range",
        source: source.into(),
    })
}
