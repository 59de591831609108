//! kagami's cluster trust: who is a member of the cluster and how members
//! recognise each other.
//!
//! - [`ClusterCa`]: the cluster's certificate authority, created once by
//!   the first server; it signs every node's certificate.
//! - [`NodeKey`] and [`NodeCert`]: a node's own key (never leaves the node)
//!   and its certificate, valid for the node's names and addresses and
//!   binding its libp2p peer ID.
//! - [`Token`]: the join tokens, `K10<sha256 of the CA>::node:<secret>`
//!   (agents) and `…::server:<secret>` (servers, derived from the CA key),
//!   which pin the CA so a joining node can check the server before it
//!   sends anything secret.
//! - [`IdentityProof`]: a joining node's signature, with its libp2p key,
//!   over its signing request; the CA certifies only the peer ID a node
//!   proves it holds, and only names that pass [`NodeNames::check`].
//! - [`tls`]: the rustls configurations built from that material (the
//!   registry's mTLS server side, peer and join clients).
//! - [`Material`]: where all of it lives in a node's data directory, files
//!   0600 in directories 0700.
//!
//! Network protocol (the join endpoint and its client) lives in the
//! `kagami` crate, which wires HTTP; this crate does no network I/O.

mod ca;
mod error;
mod files;
mod material;
mod node;
mod proof;
pub mod tls;
mod token;

pub use ca::{CA_VALIDITY, ClusterCa, MIN_VALIDITY};
pub use error::Error;
pub use material::{Joined, Material, Psk, Settings};
pub use node::{MAX_NAMES, NODE_CERT_VALIDITY, NodeCert, NodeKey, NodeNames, RENEW_BEFORE};
pub use proof::IdentityProof;
pub use token::{Role, Token};
