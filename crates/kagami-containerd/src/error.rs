//! The one error type of this crate, and how gRPC failures become
//! [`store::Error`]s at the `Store` boundary.

use std::path::PathBuf;

use containerd_client::tonic::{Code, Status};
use kagami_core::store;

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
}

/// A gRPC failure as a store error: containerd gone or overloaded is
/// [`store::Error::Unavailable`]; `not_found` says what a `NotFound` means.
pub(crate) fn from_status(
    status: Status,
    operation: &str,
    not_found: impl FnOnce() -> store::Error,
) -> store::Error {
    match status.code() {
        Code::NotFound => not_found(),
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
