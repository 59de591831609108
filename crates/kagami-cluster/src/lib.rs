//! kagami's cluster trust: who is a member of the cluster and how members
//! recognise each other.
//!
//! - [`ClusterCa`]: the cluster's certificate authority, created once by
//!   the first server; it signs every node's certificate.
//! - [`NodeKey`] and [`NodeCert`]: a node's own key (never leaves the node)
//!   and its certificate, valid for the node's names and addresses and
//!   binding its libp2p peer ID.
//! - [`Token`]: the join token, `K10<sha256 of the CA>::node:<secret>`,
//!   which pins the CA so a joining node can check the server before it
//!   sends anything secret.
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
pub mod tls;
mod token;

pub use ca::{CA_VALIDITY, ClusterCa};
pub use error::Error;
pub use material::{Joined, Material, Psk, Settings};
pub use node::{NODE_CERT_VALIDITY, NodeCert, NodeKey, NodeNames, RENEW_BEFORE};
pub use token::Token;
