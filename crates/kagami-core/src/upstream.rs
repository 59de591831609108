//! The `Upstream` trait: fetching content from the registry an image name
//! belongs to, for the pull-through path (a miss no peer serves). An
//! implementation knows the endpoints to try, their TLS and credentials;
//! the mirror only asks for a tag's digest, a manifest or a blob.

use bytes::Bytes;

use crate::store::BlobStream;
use crate::{Digest, MediaType, Registry, Repository, Tag};

/// What a tag points at, as the registry answers a `HEAD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The manifest's digest (`Docker-Content-Digest`).
    pub digest: Digest,
    /// Its media type.
    pub media_type: MediaType,
    /// Its size.
    pub size: u64,
}

/// A blob's body from the registry, from some offset on. The bytes are not
/// checked: the caller hashes them against the digest it asked for.
pub struct UpstreamBlob {
    /// The whole blob's size.
    pub size: u64,
    /// The bytes from the offset asked for to the end.
    pub body: BlobStream,
}

impl std::fmt::Debug for UpstreamBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBlob")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// Why the registry could not be asked. A 404 is not an error: it is an
/// answer (`Ok(None)`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No endpoint of the registry answered usefully (refused, timed out,
    /// `429`, `5xx`, TLS or credentials refused…): the client should try
    /// its own endpoints.
    #[error("{registry} is unavailable: {reason}")]
    Unavailable {
        /// The registry asked.
        registry: Registry,
        /// What each endpoint did.
        reason: String,
    },
    /// The registry answered with something that is not what was asked for
    /// (a manifest whose bytes do not hash to its digest, a wrong size…).
    #[error("{registry} answered badly for {what}: {reason}")]
    Invalid {
        /// The registry asked.
        registry: Registry,
        /// What was asked for.
        what: String,
        /// What was wrong.
        reason: String,
    },
}

/// Fetches from the registries images come from.
#[async_trait::async_trait]
pub trait Upstream: Send + Sync + 'static {
    /// What `tag` points at now (a `HEAD` of the manifest); `None` when
    /// the registry says there is no such tag.
    async fn resolve(
        &self,
        registry: &Registry,
        repository: &Repository,
        tag: &Tag,
    ) -> Result<Option<Resolved>, Error>;

    /// The manifest `digest`, checked against it; `None` when the
    /// registry does not hold it.
    async fn manifest(
        &self,
        registry: &Registry,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<Option<(MediaType, Bytes)>, Error>;

    /// The blob `digest` from byte `offset` on; `None` when the registry
    /// does not hold it.
    async fn blob(
        &self,
        registry: &Registry,
        repository: &Repository,
        digest: &Digest,
        offset: u64,
    ) -> Result<Option<UpstreamBlob>, Error>;
}
