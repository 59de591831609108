//! The one error type of this crate, and how gRPC failures become
//! [`store::Error`]s at the `Store` boundary.

use std::path::PathBuf;

use kagami_containerd_api::tonic::{Code, Status};
use kagami_core::{Digest, store};

/// What failed, and on what.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The namespace is not usable as gRPC metadata.
    #[error("containerd namespace {namespace:?} is not a valid name")]
    Namespace {
        /// The namespace given.
        namespace: String,
    },
    /// containerd did not answer on its socket.
    #[error("cannot reach containerd at {}", address.display())]
    Connect {
        /// The socket.
        address: PathBuf,
        /// What the first call said.
        #[source]
        source: Box<Status>,
    },
    /// containerd's introspection API did not name its content directory.
    #[error("containerd at {} does not say where its content directory is", address.display())]
    ContentDir {
        /// The socket.
        address: PathBuf,
    },
    /// Reading a file of the mirror configuration failed.
    #[error("cannot read {}", path.display())]
    ReadHosts {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Writing, moving or removing a file of the mirror configuration failed.
    #[error("cannot write {}", path.display())]
    WriteHosts {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An operator's `hosts.toml` is not valid TOML, so it cannot be merged.
    #[error("{} is not valid TOML", path.display())]
    ParseHosts {
        /// The file.
        path: PathBuf,
        /// Where and why.
        #[source]
        source: Box<toml_edit::TomlError>,
    },
    /// kagami's record of what it wrote cannot be read or written.
    #[error("kagami's state file {} is unusable", path.display())]
    State {
        /// The state file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The store an image is copied from could not give a manifest or blob.
    #[error("cannot read {digest} from the image source")]
    ReadSource {
        /// The content.
        digest: Digest,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The image source gave more or fewer bytes than the descriptor says.
    #[error("the image source holds {got} bytes of {digest}, its descriptor says {expected}")]
    SourceSize {
        /// The content.
        digest: Digest,
        /// The size the descriptor gives.
        expected: u64,
        /// The bytes the source gave (at least).
        got: u64,
    },
    /// A manifest or index of the image source is not valid JSON.
    #[error("manifest {digest} of the image source cannot be parsed")]
    ParseManifest {
        /// The manifest.
        digest: Digest,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// Indexes nest deeper than any real image does.
    #[error("manifest {digest} is nested more than {limit} indexes deep")]
    NestedTooDeep {
        /// The manifest.
        digest: Digest,
        /// The depth allowed.
        limit: usize,
    },
    /// containerd refused to take content: the write failed, or the
    /// committed bytes did not match the expected digest and size.
    #[error("cannot write {digest} into containerd")]
    WriteContent {
        /// The content.
        digest: Digest,
        /// What containerd said.
        #[source]
        source: Box<Status>,
    },
    /// containerd committed content under another digest than expected.
    #[error("containerd committed {digest} as {committed:?}")]
    CommittedDigest {
        /// The digest expected.
        digest: Digest,
        /// What containerd reported.
        committed: String,
    },
    /// The labels of content already in containerd could not be updated.
    #[error("cannot label {digest} in containerd")]
    LabelContent {
        /// The content.
        digest: Digest,
        /// What containerd said.
        #[source]
        source: Box<Status>,
    },
    /// The lease that keeps content from garbage collection while an image
    /// is copied could not be taken.
    #[error("cannot take a containerd lease for {image}")]
    Lease {
        /// The image being copied.
        image: String,
        /// What containerd said.
        #[source]
        source: Box<Status>,
    },
    /// An image record could not be created or updated.
    #[error("cannot create or update the image record {name}")]
    SaveImage {
        /// The image name.
        name: String,
        /// What containerd said.
        #[source]
        source: Box<Status>,
    },
    /// The image records could not be listed.
    #[error("cannot list containerd's images")]
    ListImages {
        /// What containerd said.
        #[source]
        source: Box<Status>,
    },
    /// The pin labels of an image record could not be removed.
    #[error("cannot remove the pin of {name}")]
    Unpin {
        /// The image name.
        name: String,
        /// What containerd said.
        #[source]
        source: Box<Status>,
    },
}

/// A gRPC failure as a store error: containerd gone or overloaded is
/// [`store::Error::Unavailable`]; `not_found` says what a `NotFound` means.
pub(crate) fn from_status(
    status: Status,
    operation: &str,
    not_found: impl FnOnce() -> store::Error,
) -> store::Error {
    // A connection that broke under a call (containerd stopped) comes back
    // as `Unknown` with the transport's error as its source: that is
    // containerd gone too, not a failure of the call.
    let transport = std::error::Error::source(&status)
        .is_some_and(|source| source.is::<kagami_containerd_api::tonic::transport::Error>());
    match status.code() {
        Code::NotFound => not_found(),
        Code::Unknown if transport => store::Error::Unavailable {
            reason: format!("containerd: {operation}: connection lost"),
        },
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::ResourceExhausted => {
            store::Error::Unavailable {
                reason: format!("containerd: {operation}: {}", status.message()),
            }
        }
        _ => store::Error::Backend {
            operation: operation.to_owned(),
            source: Box::new(status),
        },
    }
}

/// A store error for a failure with no natural not-found meaning.
pub(crate) fn backend(status: Status, operation: &str) -> store::Error {
    let what = operation.to_owned();
    from_status(status, operation, move || store::Error::Backend {
        operation: what,
        source: "containerd said not found".into(),
    })
}
