//! The protocols a node speaks, composed into one libp2p behaviour:
//! connection caps, Kademlia (our own protocol name, server mode, our own
//! republishing) and identify (which carries the registry port).

use libp2p::identity::Keypair;
use libp2p::kad::store::{MemoryStore, MemoryStoreConfig};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{StreamProtocol, connection_limits, identify, kad};

use crate::Config;

/// The Kademlia protocol of kagami's DHT. Not Spegel's `/spegel/kad/1.0.0`:
/// the two are not wire-compatible beyond the key format, and a distinct
/// name keeps a stray node of the other kind out of our routing tables.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/kagami/kad/1.0.0");

/// The identify protocol version peers announce.
const PROTOCOL_VERSION: &str = "/kagami/1.0.0";

/// What precedes the port in the identify agent version.
const REGISTRY_PORT_TOKEN: &str = "registry-port=";

/// The composed behaviour; the derive also generates `BehaviourEvent`.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) limits: connection_limits::Behaviour,
    pub(crate) kad: kad::Behaviour<MemoryStore>,
    pub(crate) identify: identify::Behaviour,
}

impl Behaviour {
    pub(crate) fn new(keypair: &Keypair, config: &Config) -> Behaviour {
        let peer_id = keypair.public().to_peer_id();
        let limits = connection_limits::ConnectionLimits::default()
            .with_max_pending_incoming(Some(config.limits.max_pending))
            .with_max_pending_outgoing(Some(config.limits.max_pending))
            .with_max_established(Some(config.limits.max_established))
            .with_max_established_per_peer(Some(config.limits.max_per_peer));

        let mut kad_config = kad::Config::new(KAD_PROTOCOL);
        kad_config
            .set_provider_record_ttl(Some(config.record_ttl))
            // We republish ourselves, in bounded batches (see `publish`):
            // kad's own job re-announces every key at once.
            .set_provider_publication_interval(None)
            // Bootstrapping is ours too (see `node`): kad's periodic one
            // warns every few minutes on a single-node cluster.
            .set_periodic_bootstrap_interval(None);
        let store_config = MemoryStoreConfig {
            max_records: config.max_records,
            max_provided_keys: config.max_records,
            ..MemoryStoreConfig::default()
        };
        let store = MemoryStore::with_config(peer_id, store_config);
        let mut kad = kad::Behaviour::with_config(peer_id, store, kad_config);
        // Every node must answer queries: without an external address kad
        // would stay a client and the DHT would have no servers at all.
        kad.set_mode(Some(kad::Mode::Server));

        let identify = identify::Behaviour::new(
            identify::Config::new(PROTOCOL_VERSION.to_owned(), keypair.public())
                .with_agent_version(agent_version(config.registry_port)),
        );
        Behaviour {
            limits: connection_limits::Behaviour::new(limits),
            kad,
            identify,
        }
    }
}

/// `kagami/<version> registry-port=<port>`: how a peer learns where our
/// registry listens without another round trip.
pub(crate) fn agent_version(registry_port: u16) -> String {
    format!(
        "kagami/{} {REGISTRY_PORT_TOKEN}{registry_port}",
        env!("CARGO_PKG_VERSION")
    )
}

/// The registry port a peer announced, if it is a kagami node that did.
pub(crate) fn registry_port(agent_version: &str) -> Option<u16> {
    agent_version
        .split_whitespace()
        .find_map(|token| token.strip_prefix(REGISTRY_PORT_TOKEN))
        .and_then(|port| port.parse().ok())
        .filter(|port| *port != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_port_round_trips_through_the_agent_version() {
        assert_eq!(registry_port(&agent_version(6443)), Some(6443));
        assert!(agent_version(6443).starts_with("kagami/"));
        for other in [
            "go-libp2p/0.33",
            "kagami/0.1.0",
            "kagami/0.1.0 registry-port=x",
            "kagami/0.1.0 registry-port=0",
        ] {
            assert_eq!(registry_port(other), None, "{other}");
        }
    }
}
