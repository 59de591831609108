//! The vocabulary of kagami, with no I/O.
//!
//! This crate owns the OCI types every other crate speaks: [`Digest`],
//! [`Reference`] (parsed and normalised as docker and containerd do),
//! repository names and tags, manifest [`MediaType`]s, and the routing
//! [`Key`] a node advertises. It also defines the two seams the node is
//! built around: the [`store::Store`] trait (what this node holds) and the
//! [`router::Router`] trait (who else holds it), and a third for the
//! pull-through path, [`upstream::Upstream`] (the registry an image comes
//! from). Implementations live in
//! other crates; this one never touches a file, a socket or a runtime.

mod digest;
mod error_code;
mod hasher;
mod key;
pub mod manifest;
mod media_type;
mod name;
mod reference;
mod registry_set;

pub mod router;
pub mod store;
pub mod upstream;

pub use digest::{Algorithm, Digest};
pub use error_code::ErrorCode;
pub use hasher::Hasher;
pub use key::Key;
pub use media_type::MediaType;
pub use name::{Registry, Repository, Tag};
pub use reference::Reference;
pub use registry_set::{RegistrySet, host as registry_host};

/// Why a string was refused by one of this crate's parsers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A digest was not `algorithm:hex` with a supported algorithm and the
    /// exact number of lowercase hex digits.
    #[error("invalid digest {input:?}: {reason}")]
    Digest {
        /// The refused text (truncated to a sensible length).
        input: String,
        /// What was wrong with it.
        reason: &'static str,
    },
    /// A repository name did not match the distribution-spec grammar.
    #[error("invalid repository name {input:?}: {reason}")]
    Repository {
        /// The refused text (truncated).
        input: String,
        /// What was wrong with it.
        reason: &'static str,
    },
    /// A tag did not match `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
    #[error("invalid tag {input:?}")]
    Tag {
        /// The refused text (truncated).
        input: String,
    },
    /// A registry host was not `host[:port]`.
    #[error("invalid registry {input:?}: {reason}")]
    Registry {
        /// The refused text (truncated).
        input: String,
        /// What was wrong with it.
        reason: &'static str,
    },
    /// An image reference could not be parsed.
    #[error("invalid image reference {input:?}: {reason}")]
    Reference {
        /// The refused text (truncated).
        input: String,
        /// What was wrong with it.
        reason: String,
    },
    /// A routing key was neither a digest nor `registry/repo:tag`.
    #[error("invalid routing key {input:?}: {reason}")]
    Key {
        /// The refused text (truncated).
        input: String,
        /// What was wrong with it.
        reason: String,
    },
}

/// Keeps error messages bounded when a caller feeds us megabytes of junk.
pub(crate) fn excerpt(input: &str) -> String {
    const MAX: usize = 200;
    if input.len() <= MAX {
        return input.to_owned();
    }
    let mut end = MAX;
    while !input.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &input[..end])
}

#[cfg(test)]
mod proptests;
