//! The `Store` trait: what this node holds, whatever keeps it (containerd's
//! content store, or an OCI image-layout directory).

use std::ops::Range;
use std::pin::Pin;

use bytes::Bytes;
use futures_core::Stream;

use crate::{Digest, MediaType, Reference};

/// A body read from a store, chunk by chunk; never the whole blob at once.
pub type BlobStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// Opens the source a [`Cache`] entry is filled from; started only when
/// the entry is neither kept nor arriving already.
pub type Source =
    Pin<Box<dyn std::future::Future<Output = Result<BlobStream, std::io::Error>> + Send>>;

/// A stream of store changes; see [`Event`].
pub type EventStream = Pin<Box<dyn Stream<Item = Event> + Send>>;

/// A named image the store holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Image {
    /// The full name and tag, e.g. `docker.io/library/nginx:1.25` (no digest).
    pub reference: Reference,
    /// The digest of the manifest or index the name points at.
    pub digest: Digest,
    /// That manifest's media type.
    pub media_type: MediaType,
    /// That manifest's size in bytes.
    pub size: u64,
}

/// What a digest is, as far as a registry cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContentKind {
    /// A manifest or index, served from `/manifests/`.
    Manifest(MediaType),
    /// Anything else (configs and layers), served from `/blobs/`.
    Blob,
}

/// The size and kind of one piece of content.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContentInfo {
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Whether it is a manifest or a blob.
    pub kind: ContentKind,
}

/// A change in what the store holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A name now points at a manifest (new, or moved to another digest).
    ImageAdded(Image),
    /// A name was removed, or moved away from this digest.
    ImageRemoved(Image),
    /// Content became readable.
    ContentAdded(Digest),
    /// Content is gone.
    ContentRemoved(Digest),
    /// Events were missed (the subscriber was too slow, or the backend lost
    /// its own event source): re-read everything with [`Store::list_images`]
    /// and [`Store::list_content`].
    Resync,
}

/// Why a store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No image of that name (or tag) is held.
    #[error("image {reference} not found")]
    ImageNotFound {
        /// The name that was looked up.
        reference: Reference,
    },
    /// No content with that digest is held (or it is not readable).
    #[error("content {digest} not found")]
    ContentNotFound {
        /// The digest that was looked up.
        digest: Digest,
    },
    /// The content is held, but is not a manifest.
    #[error("content {digest} is not a manifest")]
    NotAManifest {
        /// The digest that was looked up.
        digest: Digest,
    },
    /// A byte range lies outside the content.
    #[error("range {start}..{end} is outside {digest} of {size} bytes")]
    RangeOutOfBounds {
        /// The content.
        digest: Digest,
        /// First byte asked for.
        start: u64,
        /// One past the last byte asked for.
        end: u64,
        /// The content's size.
        size: u64,
    },
    /// The backend is not reachable now (containerd restarting, say).
    #[error("store unavailable: {reason}")]
    Unavailable {
        /// Why, for the log.
        reason: String,
    },
    /// The backend failed.
    #[error("store failed to {operation}")]
    Backend {
        /// What it was doing.
        operation: String,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// Whether the error means "not held here" rather than a failure.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Error::ImageNotFound { .. }
                | Error::ContentNotFound { .. }
                | Error::NotAManifest { .. }
        )
    }
}

/// The bytes a read of `range` covers in content of `size` bytes (all of
/// them for `None`), or [`Error::RangeOutOfBounds`]; every backend's
/// [`Store::read`] checks its range with this.
pub fn span(digest: &Digest, size: u64, range: Option<Range<u64>>) -> Result<Range<u64>, Error> {
    let range = range.unwrap_or(0..size);
    if range.start > range.end || range.end > size {
        return Err(Error::RangeOutOfBounds {
            digest: digest.clone(),
            start: range.start,
            end: range.end,
            size,
        });
    }
    Ok(range)
}

/// What a node holds. Every method is safe to cancel: dropping a future or
/// a [`BlobStream`] part-way leaves the store as it was and frees what the
/// read held.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Every named image, in no particular order.
    async fn list_images(&self) -> Result<Vec<Image>, Error>;

    /// Every digest that can be read, manifests and blobs alike.
    async fn list_content(&self) -> Result<Vec<ContentInfo>, Error>;

    /// The image a tagged reference names. A reference with a digest is
    /// resolved by its tag; the digest is not checked here.
    async fn resolve(&self, reference: &Reference) -> Result<Image, Error>;

    /// The size and kind of a digest.
    async fn stat(&self, digest: &Digest) -> Result<ContentInfo, Error>;

    /// A manifest's bytes and type. Manifests are small (a few KiB), so
    /// they are returned whole; anything that is not a manifest is
    /// [`Error::NotAManifest`].
    async fn read_manifest(&self, digest: &Digest) -> Result<(MediaType, Bytes), Error>;

    /// Streams content, whole or the bytes in `range` (which must lie
    /// inside it).
    async fn read(&self, digest: &Digest, range: Option<Range<u64>>) -> Result<BlobStream, Error>;

    /// Changes from now on. A subscriber that falls behind gets
    /// [`Event::Resync`] rather than a silent gap.
    fn events(&self) -> EventStream;
}

/// What [`Cache::fill`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filling {
    /// The content was kept already.
    Kept,
    /// It was arriving already (another caller's fill): this one joins it.
    Arriving,
    /// This call started the fill.
    Started,
}

/// A store that keeps content fetched from elsewhere (the pull-through
/// cache): each entry is filled once however many ask for it, and
/// [`Store::read`] serves it while it arrives, waiting for bytes not
/// written yet. Entries are checked against their digest when the last
/// byte arrives; a reader never gets the last byte of a wrong one.
#[async_trait::async_trait]
pub trait Cache: Store {
    /// Makes sure `digest` (`size` bytes of `kind`) is kept or arriving:
    /// when it is neither, `source` is started and its bytes written as
    /// they come. Returns as soon as the entry can be read.
    async fn fill(
        &self,
        digest: &Digest,
        kind: ContentKind,
        size: u64,
        source: Source,
    ) -> Result<Filling, Error>;

    /// Whether `digest` is arriving now: a reader of it waits on its
    /// source, and goes at the source's pace.
    fn arriving(&self, digest: &Digest) -> bool;
}
