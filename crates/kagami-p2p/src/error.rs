//! The crate's one error type: starting a node and handling its key files.
//! Routing calls themselves fail with [`kagami_core::router::Error`].

use std::io;
use std::path::PathBuf;

use libp2p::Multiaddr;

/// Why a key file could not be used, a bootstrap address parsed, or a node
/// started. Each variant names the file, address or setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pre-shared key file could not be read.
    #[error("cannot read the pre-shared key file {path}")]
    ReadPsk {
        /// The key file.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
    /// The pre-shared key file holds no key in a format we accept.
    #[error(
        "{path} is not a pre-shared key: {reason} (expected 32 raw bytes, 64 hex digits, \
         or the /key/swarm/psk/1.0.0/ key file format)"
    )]
    InvalidPsk {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The pre-shared key file could not be written.
    #[error("cannot write the pre-shared key file {path}")]
    WritePsk {
        /// The key file.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
    /// The node's identity key file could not be read.
    #[error("cannot read the node identity key {path}")]
    ReadIdentity {
        /// The key file.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
    /// The node's identity key file does not hold a usable key.
    #[error("{path} is not a node identity key: {reason}")]
    InvalidIdentity {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The node's identity key file could not be written.
    #[error("cannot write the node identity key {path}")]
    WriteIdentity {
        /// The key file.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
    /// A bootstrap peer was neither a TCP multiaddr nor `host[:port]`.
    #[error("invalid bootstrap peer {input:?}: {reason}")]
    ParseBootstrap {
        /// The refused text.
        input: String,
        /// What was wrong with it.
        reason: String,
    },
    /// A setting of [`Config`](crate::Config) is out of range.
    #[error("invalid p2p setting {field}: {reason}")]
    InvalidConfig {
        /// The field of `Config`.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The encrypted transport could not be set up from the node's key.
    #[error("cannot build the p2p transport")]
    BuildTransport {
        /// The underlying failure.
        #[source]
        source: libp2p::noise::Error,
    },
    /// The node could not listen on its address (in use, not local, ...).
    #[error("cannot listen on {addr}")]
    Listen {
        /// The listen address.
        addr: Multiaddr,
        /// The underlying failure.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}
