//! What the node knows of other peers that the DHT does not keep: the IPs
//! they were seen at and the registry port each one announced, so that a
//! provider's peer ID becomes an address our registry can fetch from.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

/// How many peers the book remembers; the least recently seen goes first.
const CAPACITY: usize = 4096;
/// How many addresses it keeps per peer.
const MAX_ADDRS: usize = 8;

#[derive(Debug, Default)]
struct Entry {
    /// The remote IP of the last connection: the address that is known to
    /// reach the peer from here, whatever the peer says about itself.
    connected: Option<IpAddr>,
    /// IPs learned from identify and the DHT, newest first.
    addrs: Vec<IpAddr>,
    registry_port: Option<u16>,
    /// Whether identify has run, so `registry_port` is all we will learn.
    identified: bool,
    last_seen: u64,
}

/// A peer's registry address, and whether it is final: before the peer
/// has identified itself, the port is only our guess (our own port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RegistryAddr {
    pub(crate) addr: SocketAddr,
    pub(crate) identified: bool,
}

#[derive(Debug, Default)]
pub(crate) struct PeerBook {
    peers: HashMap<PeerId, Entry>,
    clock: u64,
}

impl PeerBook {
    /// A connection to `peer` is up, reaching it at `remote`.
    pub(crate) fn connected(&mut self, peer: PeerId, remote: &Multiaddr) {
        if let Some(ip) = ip_of(remote) {
            self.entry(peer).connected = Some(ip);
        }
    }

    /// Something (identify, the DHT) says `peer` can be reached at `addr`.
    pub(crate) fn learned(&mut self, peer: PeerId, addr: &Multiaddr) {
        let Some(ip) = ip_of(addr).filter(|ip| !ip.is_unspecified()) else {
            return;
        };
        let entry = self.entry(peer);
        entry.addrs.retain(|known| *known != ip);
        entry.addrs.insert(0, ip);
        entry.addrs.truncate(MAX_ADDRS);
    }

    /// `peer` identified itself; keep the registry port it announced.
    pub(crate) fn identified(&mut self, peer: PeerId, registry_port: Option<u16>) {
        let entry = self.entry(peer);
        entry.identified = true;
        if registry_port.is_some() {
            entry.registry_port = registry_port;
        }
    }

    /// The remote IP of the last connection to `peer`.
    pub(crate) fn connected_ip(&self, peer: &PeerId) -> Option<IpAddr> {
        self.peers.get(peer).and_then(|entry| entry.connected)
    }

    /// Where `peer`'s registry listens: the IP we are (or were last)
    /// connected on, else one it announced (a loopback one only when there
    /// is nothing else, as on a single test host), with the port it
    /// announced or `fallback_port`. `None` when no IP is known.
    pub(crate) fn registry_addr(&self, peer: &PeerId, fallback_port: u16) -> Option<RegistryAddr> {
        let entry = self.peers.get(peer)?;
        let ip = entry
            .connected
            .or_else(|| entry.addrs.iter().copied().find(|ip| !ip.is_loopback()))
            .or_else(|| entry.addrs.first().copied())?;
        Some(RegistryAddr {
            addr: SocketAddr::new(ip, entry.registry_port.unwrap_or(fallback_port)),
            identified: entry.identified,
        })
    }

    fn entry(&mut self, peer: PeerId) -> &mut Entry {
        self.clock += 1;
        if !self.peers.contains_key(&peer) && self.peers.len() >= CAPACITY {
            let oldest = self
                .peers
                .iter()
                .min_by_key(|(_, entry)| entry.last_seen)
                .map(|(id, _)| *id);
            if let Some(oldest) = oldest {
                self.peers.remove(&oldest);
            }
        }
        let entry = self.peers.entry(peer).or_default();
        entry.last_seen = self.clock;
        entry
    }
}

/// Whether an address a peer announced is worth handing to the DHT: not
/// unspecified, and not loopback unless we reach the peer over loopback
/// too (else we would be dialing ourselves).
pub(crate) fn worth_dialing(addr: &Multiaddr, connected_over: Option<IpAddr>) -> bool {
    match ip_of(addr) {
        Some(ip) if ip.is_unspecified() => false,
        Some(ip) if ip.is_loopback() => connected_over.is_some_and(|c| c.is_loopback()),
        Some(_) => true,
        None => false,
    }
}

pub(crate) fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn prefers_the_connected_ip_then_announced_non_loopback_ones() {
        let mut book = PeerBook::default();
        let peer = PeerId::random();
        let at = |book: &PeerBook| {
            book.registry_addr(&peer, 6443)
                .map(|r| (r.addr.to_string(), r.identified))
        };
        assert_eq!(at(&book), None);
        book.learned(peer, &addr("/ip4/127.0.0.1/tcp/5001"));
        assert_eq!(at(&book), Some(("127.0.0.1:6443".into(), false)));
        book.learned(peer, &addr("/ip4/10.0.0.7/tcp/5001"));
        book.learned(peer, &addr("/ip4/0.0.0.0/tcp/5001"));
        assert_eq!(at(&book), Some(("10.0.0.7:6443".into(), false)));
        book.identified(peer, Some(7000));
        book.connected(peer, &addr("/ip4/10.1.0.9/tcp/40312"));
        assert_eq!(at(&book), Some(("10.1.0.9:7000".into(), true)));
    }

    #[test]
    fn the_book_is_bounded() {
        let mut book = PeerBook::default();
        let first = PeerId::random();
        book.learned(first, &addr("/ip4/10.0.0.1/tcp/1"));
        for _ in 0..CAPACITY {
            book.learned(PeerId::random(), &addr("/ip4/10.0.0.2/tcp/1"));
        }
        assert_eq!(book.peers.len(), CAPACITY);
        assert_eq!(
            book.registry_addr(&first, 1),
            None,
            "the oldest entry is evicted"
        );
    }

    #[test]
    fn loopback_addresses_are_dialed_only_between_local_nodes() {
        let lo = addr("/ip4/127.0.0.1/tcp/5001");
        assert!(!worth_dialing(&lo, Some("10.0.0.1".parse().unwrap())));
        assert!(!worth_dialing(&lo, None));
        assert!(worth_dialing(&lo, Some("127.0.0.1".parse().unwrap())));
        assert!(worth_dialing(&addr("/ip4/10.0.0.2/tcp/5001"), None));
        assert!(!worth_dialing(&addr("/ip6/::/tcp/5001"), None));
    }
}
