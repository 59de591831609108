//! The crate's one error type, and its mapping onto the `Store` trait's.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use kagami_core::{Digest, Reference, store};

/// Why a layout could not be opened, an archive imported, an image removed
/// or content read. Each variant names the file, archive or digest at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The layout directory (or its `oci-layout`/`index.json`) could not be
    /// created.
    #[error("cannot create the image layout at {root}")]
    CreateLayout {
        /// The layout directory.
        root: PathBuf,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
    /// A file of the layout is not what the OCI image-layout spec says.
    #[error("{path} is not a valid OCI image-layout file: {reason}")]
    InvalidLayout {
        /// The offending file (`oci-layout`, `index.json`) or directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A file of the layout could not be read.
    #[error("cannot read {path}")]
    ReadLayout {
        /// The file.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
    /// A file of the layout could not be written, renamed or removed.
    #[error("cannot write {path}")]
    WriteLayout {
        /// The file.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
    /// The writers' lock file could not be opened or locked.
    #[error("cannot take the write lock {path}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
    /// Another writer (an import or remove, maybe in another process) held
    /// the lock for longer than the configured wait.
    #[error(
        "gave up after {waited:?} waiting for the write lock {path}: another import or remove is running"
    )]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// How long we waited.
        waited: Duration,
    },
    /// The archive could not be read (I/O, a corrupt tar header, a corrupt
    /// or truncated compressed stream).
    #[error("cannot read archive {archive}")]
    ReadArchive {
        /// The archive.
        archive: PathBuf,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
    /// The file is not a tar archive, plain or gzip/zstd compressed.
    #[error("{archive} is not a tar archive (plain, gzip or zstd): {reason}")]
    NotAnArchive {
        /// The file.
        archive: PathBuf,
        /// What the first bytes looked like.
        reason: &'static str,
    },
    /// A tar entry names an absolute path, leaves the archive with `..`, or
    /// is otherwise unusable.
    #[error("archive {archive}: refusing entry {entry:?}: {reason}")]
    UnsafeEntry {
        /// The archive.
        archive: PathBuf,
        /// The entry's path as written in the archive.
        entry: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A tar entry ended before the size its header declares.
    #[error("archive {archive}: entry {entry} is truncated ({actual} of {expected} bytes)")]
    TruncatedEntry {
        /// The archive.
        archive: PathBuf,
        /// The entry.
        entry: String,
        /// The size its header declares.
        expected: u64,
        /// The bytes actually there.
        actual: u64,
    },
    /// A JSON file read into memory (`manifest.json`, `index.json`, a
    /// manifest) is larger than the limit.
    #[error("archive {archive}: {entry} is larger than the {limit}-byte limit for JSON files")]
    EntryTooLarge {
        /// The archive.
        archive: PathBuf,
        /// The entry, or the digest of the manifest.
        entry: String,
        /// The limit.
        limit: u64,
    },
    /// The blobs of the archive that may be manifests, which an import
    /// holds in memory, add up to more than
    /// [`MAX_JSON_BYTES`](crate::MAX_JSON_BYTES).
    #[error(
        "archive {archive}: its manifest-sized JSON blobs add up to more than the {limit}-byte limit"
    )]
    ManifestsTooLarge {
        /// The archive.
        archive: PathBuf,
        /// The limit.
        limit: u64,
    },
    /// The tar stream decompressed past
    /// [`EXPANSION_RATIO`](crate::EXPANSION_RATIO) times the archive's
    /// size (and past [`EXPANSION_FLOOR`](crate::EXPANSION_FLOOR)): a
    /// decompression bomb.
    #[error(
        "archive {archive}: refusing it as a decompression bomb: its {compressed} bytes decompress to more than {limit}"
    )]
    DecompressedTooLarge {
        /// The archive.
        archive: PathBuf,
        /// The archive file's size (0 for a pipe).
        compressed: u64,
        /// How far it was allowed to decompress.
        limit: u64,
    },
    /// Files that no named image references hold more than
    /// [`MAX_UNREFERENCED_BYTES`](crate::MAX_UNREFERENCED_BYTES). They are
    /// never written; the archive is refused before anything is.
    #[error(
        "archive {archive}: refusing it as a possible decompression bomb: {total} bytes in files no \
         named image references (the limit is {limit}); the largest is {largest} ({largest_size} bytes)"
    )]
    UnreferencedEntries {
        /// The archive.
        archive: PathBuf,
        /// The bytes of all unreferenced files.
        total: u64,
        /// The limit.
        limit: u64,
        /// The largest unreferenced file.
        largest: String,
        /// Its size.
        largest_size: u64,
    },
    /// A file of an OCI archive is not the size its descriptor declares;
    /// refused before it is written.
    #[error(
        "archive {archive}: entry {entry} is {actual} bytes but the descriptor of {digest} says {declared}"
    )]
    EntrySizeMismatch {
        /// The archive.
        archive: PathBuf,
        /// The entry.
        entry: String,
        /// The digest the descriptor names.
        digest: Digest,
        /// The size in the descriptor.
        declared: u64,
        /// The size in the entry's tar header.
        actual: u64,
    },
    /// The second pass over the archive found another file where the first
    /// found the one it planned to write.
    #[error("archive {archive} changed while it was imported (at entry {entry})")]
    ArchiveChanged {
        /// The archive.
        archive: PathBuf,
        /// The entry that differs.
        entry: String,
    },
    /// A JSON file of the archive did not parse.
    #[error("archive {archive}: cannot parse {entry}")]
    ParseEntry {
        /// The archive.
        archive: PathBuf,
        /// The entry.
        entry: String,
        /// The parse failure.
        #[source]
        source: serde_json::Error,
    },
    /// The archive has neither an OCI `index.json` nor a docker
    /// `manifest.json`.
    #[error("archive {archive} has neither index.json (OCI) nor manifest.json (docker save)")]
    NoImageIndex {
        /// The archive.
        archive: PathBuf,
    },
    /// `manifest.json` (or a symlink) names a file the archive does not hold.
    #[error("archive {archive}: {entry} refers to {target}, which the archive does not hold")]
    MissingEntry {
        /// The archive.
        archive: PathBuf,
        /// The file that refers (`manifest.json`, or a link).
        entry: String,
        /// The missing path.
        target: String,
    },
    /// Content does not hash to the digest the archive declares for it.
    #[error("archive {archive}: content declared as {expected} hashes to {actual}")]
    DigestMismatch {
        /// The archive.
        archive: PathBuf,
        /// The declared digest.
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// Content is not the size its descriptor declares.
    #[error("archive {archive}: {digest} is {actual} bytes but its descriptor says {declared}")]
    SizeMismatch {
        /// The archive.
        archive: PathBuf,
        /// The content.
        digest: Digest,
        /// The size in the descriptor.
        declared: u64,
        /// The size of the bytes.
        actual: u64,
    },
    /// A manifest refers to a blob that neither the archive nor the layout
    /// holds.
    #[error(
        "archive {archive}: {digest} is referenced but neither the archive nor the store holds it"
    )]
    MissingBlob {
        /// The archive.
        archive: PathBuf,
        /// The missing content.
        digest: Digest,
    },
    /// A manifest or index of the archive is not one we can walk.
    #[error("archive {archive}: manifest {digest} is invalid: {reason}")]
    InvalidManifest {
        /// The archive.
        archive: PathBuf,
        /// The manifest.
        digest: Digest,
        /// What is wrong with it.
        reason: String,
    },
    /// An image name in the archive is not a valid tagged reference.
    #[error("archive {archive}: image name {name:?} is invalid: {reason}")]
    InvalidName {
        /// The archive.
        archive: PathBuf,
        /// The name as written.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An OCI archive names an image by a bare tag only, which says nothing
    /// of its registry or repository.
    #[error(
        "archive {archive}: image {digest} is named only by the tag {tag:?}; it needs a full name: \
         export it with one (e.g. `skopeo copy … oci-archive:FILE:registry/repo:tag`, or an \
         io.containerd.image.name annotation)"
    )]
    ImageNeedsName {
        /// The archive.
        archive: PathBuf,
        /// The unnamed image's manifest.
        digest: Digest,
        /// The bare tag it carries.
        tag: String,
    },
    /// The archive holds no named image at all.
    #[error(
        "archive {archive} holds no named image (no io.containerd.image.name or \
         org.opencontainers.image.ref.name annotation, no RepoTags)"
    )]
    NoNamedImage {
        /// The archive.
        archive: PathBuf,
    },
    /// No image has that name.
    #[error("image {reference} not found")]
    ImageNotFound {
        /// The name looked up.
        reference: Reference,
    },
    /// No named image reaches that digest, or its file is gone.
    #[error("content {digest} not found")]
    ContentNotFound {
        /// The digest looked up.
        digest: Digest,
    },
    /// The content is a blob, not a manifest.
    #[error("content {digest} is not a manifest")]
    NotAManifest {
        /// The digest looked up.
        digest: Digest,
    },
    /// A blob file could not be opened or read.
    #[error("cannot read content {digest} from {path}")]
    ReadContent {
        /// The content.
        digest: Digest,
        /// Its file.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
    /// A blocking task (tar work, file I/O) panicked or was cancelled.
    #[error("the background task to {operation} failed")]
    Task {
        /// What it was doing.
        operation: &'static str,
        /// The join failure.
        #[source]
        source: tokio::task::JoinError,
    },
}

impl Error {
    /// The operation that failed, in a few words, for `store::Error::Backend`.
    fn operation(&self) -> String {
        match self {
            Error::CreateLayout { .. } => "create the layout".into(),
            Error::InvalidLayout { .. } | Error::ReadLayout { .. } => "read the layout".into(),
            Error::WriteLayout { .. } => "write the layout".into(),
            Error::Lock { .. } | Error::LockTimeout { .. } => "lock the layout".into(),
            Error::ReadContent { digest, .. } => format!("read {digest}"),
            Error::Task { operation, .. } => (*operation).into(),
            _ => "import an archive".into(),
        }
    }
}

impl From<Error> for store::Error {
    fn from(error: Error) -> store::Error {
        match error {
            Error::ImageNotFound { reference } => store::Error::ImageNotFound { reference },
            Error::ContentNotFound { digest } => store::Error::ContentNotFound { digest },
            Error::NotAManifest { digest } => store::Error::NotAManifest { digest },
            other => store::Error::Backend {
                operation: other.operation(),
                source: Box::new(other),
            },
        }
    }
}

/// Runs blocking work (file and tar I/O) off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    operation: &'static str,
    work: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|source| Error::Task { operation, source })?
}
