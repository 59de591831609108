//! The settings of a libp2p router, each with a named, documented default.

use std::time::Duration;

use libp2p::Multiaddr;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;

use crate::{Error, Psk};

/// The P2P port, the same on every node (K3s's `K3S_P2P_PORT` default).
pub const DEFAULT_PORT: u16 = 5001;
/// The registry port peers serve on (K3s's supervisor port).
pub const DEFAULT_REGISTRY_PORT: u16 = 6443;
/// How long other nodes keep a provider record: Spegel's 19 minutes.
pub const DEFAULT_RECORD_TTL: Duration = Duration::from_secs(19 * 60);
/// How often each provided key is published again: Spegel's 15 minutes,
/// leaving 4 minutes for a slow republish to land before records expire.
pub const DEFAULT_REPUBLISH_INTERVAL: Duration = Duration::from_secs(15 * 60);
/// The longest a `find_providers` call waits (when nobody has the key, or
/// the network is slow); it returns what it found by then.
pub const DEFAULT_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// Once a lookup has found one provider, how much longer it waits for more
/// (up to the caller's limit) before answering with what it has.
pub const DEFAULT_LOOKUP_SETTLE: Duration = Duration::from_millis(50);
/// How long a lookup's answer is reused for the same key (Spegel: 5 s).
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(5);
/// How many keys' answers the lookup cache holds at most.
pub const DEFAULT_CACHE_CAPACITY: usize = 4096;
/// How long connecting to a peer may take, TCP connect and the PSK, noise
/// and yamux handshakes included. A wrong PSK can stall the handshake
/// instead of failing it, so this is what ends such an attempt.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the node checks whether it is isolated (no peer in its routing
/// table, or no connection to any) and, if so, dials its bootstrap peers
/// again; doubled after each fruitless attempt up to
/// [`DEFAULT_MAX_BOOTSTRAP_BACKOFF`].
pub const DEFAULT_BOOTSTRAP_INTERVAL: Duration = Duration::from_secs(10);
/// The longest wait between two bootstrap attempts of an isolated node.
pub const DEFAULT_MAX_BOOTSTRAP_BACKOFF: Duration = Duration::from_secs(120);
/// How many provider announcements may be in flight at once; the rest
/// wait in a queue, so a node holding thousands of keys does not flood
/// the network at start or at each republish.
pub const DEFAULT_PUBLISH_CONCURRENCY: usize = 16;
/// How many provider records (for keys of other nodes) this node stores
/// for the DHT, and how many keys it may provide itself.
pub const DEFAULT_MAX_RECORDS: usize = 65_536;
/// Connections in the middle of their handshake, in each direction.
pub const DEFAULT_MAX_PENDING: u32 = 64;
/// Established connections in total.
pub const DEFAULT_MAX_ESTABLISHED: u32 = 512;
/// Established connections to one peer (two allows a simultaneous dial).
pub const DEFAULT_MAX_PER_PEER: u32 = 2;
/// How long a connection without open streams stays up, so a lookup soon
/// after the last does not pay for a new handshake.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// How to run a libp2p router. [`Config::new`] fills in every default.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen: a TCP multiaddr, default `/ip4/0.0.0.0/tcp/5001`.
    /// Port 0 picks a free port ([`Router::listen_addrs`](crate::Router::listen_addrs)
    /// tells which).
    pub listen: Multiaddr,
    /// The cluster's pre-shared key.
    pub psk: Psk,
    /// This node's identity (see [`identity::load_or_create`](crate::identity::load_or_create)).
    pub keypair: Keypair,
    /// Peers to join the network through (see [`parse_bootstrap`](crate::parse_bootstrap)).
    pub bootstrap: Vec<Multiaddr>,
    /// The port this node's registry serves peers on, told to others.
    pub registry_port: u16,
    /// See [`DEFAULT_RECORD_TTL`].
    pub record_ttl: Duration,
    /// See [`DEFAULT_REPUBLISH_INTERVAL`]; must be shorter than `record_ttl`.
    pub republish_interval: Duration,
    /// See [`DEFAULT_LOOKUP_TIMEOUT`].
    pub lookup_timeout: Duration,
    /// See [`DEFAULT_LOOKUP_SETTLE`].
    pub lookup_settle: Duration,
    /// See [`DEFAULT_CACHE_TTL`]; zero disables the cache.
    pub cache_ttl: Duration,
    /// See [`DEFAULT_CACHE_CAPACITY`].
    pub cache_capacity: usize,
    /// See [`DEFAULT_HANDSHAKE_TIMEOUT`].
    pub handshake_timeout: Duration,
    /// See [`DEFAULT_BOOTSTRAP_INTERVAL`].
    pub bootstrap_interval: Duration,
    /// See [`DEFAULT_MAX_BOOTSTRAP_BACKOFF`].
    pub max_bootstrap_backoff: Duration,
    /// See [`DEFAULT_PUBLISH_CONCURRENCY`].
    pub publish_concurrency: usize,
    /// See [`DEFAULT_MAX_RECORDS`].
    pub max_records: usize,
    /// Connection caps.
    pub limits: Limits,
    /// See [`DEFAULT_IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
}

/// Caps on connections, enforced by libp2p's `connection_limits` behaviour:
/// a connection over a cap is refused before any protocol runs on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// See [`DEFAULT_MAX_PENDING`].
    pub max_pending: u32,
    /// See [`DEFAULT_MAX_ESTABLISHED`].
    pub max_established: u32,
    /// See [`DEFAULT_MAX_PER_PEER`].
    pub max_per_peer: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_pending: DEFAULT_MAX_PENDING,
            max_established: DEFAULT_MAX_ESTABLISHED,
            max_per_peer: DEFAULT_MAX_PER_PEER,
        }
    }
}

impl Config {
    /// The defaults, for a node with this identity in the network of this key.
    pub fn new(keypair: Keypair, psk: Psk) -> Config {
        Config {
            listen: Multiaddr::empty()
                .with(Protocol::Ip4([0, 0, 0, 0].into()))
                .with(Protocol::Tcp(DEFAULT_PORT)),
            psk,
            keypair,
            bootstrap: Vec::new(),
            registry_port: DEFAULT_REGISTRY_PORT,
            record_ttl: DEFAULT_RECORD_TTL,
            republish_interval: DEFAULT_REPUBLISH_INTERVAL,
            lookup_timeout: DEFAULT_LOOKUP_TIMEOUT,
            lookup_settle: DEFAULT_LOOKUP_SETTLE,
            cache_ttl: DEFAULT_CACHE_TTL,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            bootstrap_interval: DEFAULT_BOOTSTRAP_INTERVAL,
            max_bootstrap_backoff: DEFAULT_MAX_BOOTSTRAP_BACKOFF,
            publish_concurrency: DEFAULT_PUBLISH_CONCURRENCY,
            max_records: DEFAULT_MAX_RECORDS,
            limits: Limits::default(),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }

    /// Refuses settings the node cannot work with.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let bad = |field, reason: &str| {
            Err(Error::InvalidConfig {
                field,
                reason: reason.to_owned(),
            })
        };
        let nonzero: [(&'static str, Duration); 5] = [
            ("record_ttl", self.record_ttl),
            ("republish_interval", self.republish_interval),
            ("lookup_timeout", self.lookup_timeout),
            ("handshake_timeout", self.handshake_timeout),
            ("bootstrap_interval", self.bootstrap_interval),
        ];
        for (field, value) in nonzero {
            if value.is_zero() {
                return bad(field, "must be more than zero");
            }
        }
        if self.republish_interval >= self.record_ttl {
            return bad(
                "republish_interval",
                "must be shorter than record_ttl, or records expire between republishes",
            );
        }
        if self.registry_port == 0 {
            return bad("registry_port", "must not be 0");
        }
        let counts = [
            ("publish_concurrency", self.publish_concurrency),
            ("max_records", self.max_records),
            ("cache_capacity", self.cache_capacity),
            ("limits.max_pending", self.limits.max_pending as usize),
            (
                "limits.max_established",
                self.limits.max_established as usize,
            ),
            ("limits.max_per_peer", self.limits.max_per_peer as usize),
        ];
        for (field, value) in counts {
            if value == 0 {
                return bad(field, "must be at least 1");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_spegel() {
        let config = Config::new(Keypair::generate_ed25519(), Psk::generate());
        config.validate().unwrap();
        assert_eq!(config.listen.to_string(), "/ip4/0.0.0.0/tcp/5001");
        assert_eq!(config.record_ttl, Duration::from_secs(1140));
        assert_eq!(config.republish_interval, Duration::from_secs(900));
    }

    #[test]
    fn republishing_slower_than_expiry_is_refused() {
        let mut config = Config::new(Keypair::generate_ed25519(), Psk::generate());
        config.republish_interval = config.record_ttl;
        let err = config.validate().unwrap_err();
        assert!(err.to_string().contains("republish_interval"), "{err}");
        config.republish_interval = DEFAULT_REPUBLISH_INTERVAL;
        config.limits.max_per_peer = 0;
        assert!(config.validate().is_err());
    }
}
