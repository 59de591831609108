//! The `Router` trait: who else holds a key, and telling others what this
//! node holds.

use std::net::SocketAddr;

use crate::Key;

/// Another node that can serve a key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Peer {
    /// The peer's identity in the routing network.
    pub id: String,
    /// Where its registry API listens.
    pub addr: SocketAddr,
}

/// A node the DHT names for a key by closeness.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Near {
    /// This node itself.
    ThisNode,
    /// Another node.
    Peer(Peer),
}

/// Why a routing operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The router is not running (shut down, or never started).
    #[error("router is not running")]
    Stopped,
    /// A lookup did not finish in time.
    #[error("lookup of {key} timed out")]
    Timeout {
        /// The key looked up.
        key: Key,
    },
    /// The network layer failed.
    #[error("router failed to {operation}")]
    Network {
        /// What it was doing.
        operation: String,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Finds the peers that hold a key, and announces the keys this node holds.
#[async_trait::async_trait]
pub trait Router: Send + Sync + 'static {
    /// Announces that this node holds `keys`, until withdrawn.
    async fn provide(&self, keys: &[Key]) -> Result<(), Error>;

    /// Stops announcing `keys`.
    async fn withdraw(&self, keys: &[Key]) -> Result<(), Error>;

    /// Up to `limit` peers other than this node that announce `key`.
    async fn find_providers(&self, key: &Key, limit: usize) -> Result<Vec<Peer>, Error>;

    /// The live nodes closest to `key` in the routing network's metric,
    /// closest first, at most `limit`, this node among them in its place:
    /// on a converged network every node gets the same order, which makes
    /// the first the key's *origin* without a vote.
    async fn closest(&self, key: &Key, limit: usize) -> Result<Vec<Near>, Error>;

    /// Whether the router can take part in lookups (it knows some peer).
    fn is_ready(&self) -> bool;
}
