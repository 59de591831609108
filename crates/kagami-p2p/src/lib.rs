//! Peer-to-peer routing for kagami: who else holds a key.
//!
//! This crate owns [`Router`], the libp2p implementation of
//! [`kagami_core::router::Router`]: a Kademlia DHT on a private network
//! (every connection proves the cluster's pre-shared key [`Psk`] before
//! noise and yamux run on it), with identify telling peers each other's
//! registry port. Keys become DHT record keys as Spegel makes them
//! ([`cid`]); provider records live 19 minutes and are republished every 15,
//! in bounded batches. It also owns the [`Advertiser`], which keeps the
//! router's provided keys equal to what a [`kagami_core::store::Store`]
//! holds, and [`MemoryRouter`], an in-memory router for other crates'
//! tests. Fetching from peers is the registry's business; where the PSK
//! comes from is cluster trust's.

mod advertiser;
mod behaviour;
mod bootstrap;
mod cid;
mod config;
mod error;
mod handle;
mod holdings;
mod isolation;
mod lookups;
mod membership;
mod memory;
mod node;
mod peers;
mod psk;
mod publish;
mod transport;

pub mod identity;

pub use advertiser::{AdvertisePolicy, Advertiser};
pub use behaviour::KAD_PROTOCOL;
pub use bootstrap::parse_bootstrap;
pub use cid::{CID_LEN, cid};
pub use config::{
    Config, DEFAULT_BOOTSTRAP_INTERVAL, DEFAULT_CACHE_CAPACITY, DEFAULT_CACHE_TTL,
    DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_LOOKUP_SETTLE, DEFAULT_LOOKUP_TIMEOUT,
    DEFAULT_MAX_BOOTSTRAP_BACKOFF, DEFAULT_MAX_ESTABLISHED, DEFAULT_MAX_PENDING,
    DEFAULT_MAX_PER_PEER, DEFAULT_MAX_RECORDS, DEFAULT_PORT, DEFAULT_PUBLISH_CONCURRENCY,
    DEFAULT_RECORD_TTL, DEFAULT_REGISTRY_PORT, DEFAULT_REPUBLISH_INTERVAL, Limits,
};
pub use error::Error;
pub use handle::Router;
pub use libp2p::identity::Keypair;
pub use libp2p::{Multiaddr, PeerId};
pub use memory::{MemoryNetwork, MemoryRouter};
pub use psk::{PSK_LEN, Psk};
