//! Which peers come and go, for the log: one INFO line per change (a peer
//! seen for the first time, gone, back), never one per connection. libp2p
//! closes connections that carry nothing for a while, so a connection
//! closing by itself says nothing; a connection broken by an error, or a
//! dial that fails, says the peer is gone.

use std::collections::HashMap;

use libp2p::PeerId;
use libp2p::swarm::ConnectionError;

/// Peers remembered at most; past it, those gone are forgotten first.
const MAX_PEERS: usize = 4096;

/// What the node last said of each peer.
#[derive(Debug, Default)]
pub(crate) struct Membership {
    /// Whether each peer seen is up.
    peers: HashMap<PeerId, bool>,
}

impl Membership {
    /// A connection to `peer` is up.
    pub(crate) fn connected(&mut self, peer: PeerId, addr: &libp2p::Multiaddr) {
        match self.peers.insert(peer, true) {
            None => tracing::info!(%peer, %addr, "peer joined"),
            Some(false) => tracing::info!(%peer, %addr, "peer is back"),
            Some(true) => {}
        }
        self.bound();
    }

    /// The last connection to `peer` closed, for `cause`.
    pub(crate) fn closed(&mut self, peer: PeerId, cause: Option<&ConnectionError>) {
        match cause {
            // Closed by one side, or for carrying nothing: no news.
            None | Some(ConnectionError::KeepAliveTimeout) => {}
            Some(error @ ConnectionError::IO(_)) => {
                if self.peers.get(&peer) == Some(&true) {
                    self.peers.insert(peer, false);
                    tracing::info!(%peer, %error, "peer left");
                }
            }
        }
    }

    /// A dial to `peer` failed.
    pub(crate) fn unreachable(&mut self, peer: PeerId, error: &dyn std::fmt::Display) {
        if self.peers.get(&peer) == Some(&true) {
            self.peers.insert(peer, false);
            tracing::info!(%peer, %error, "peer unreachable");
        }
    }

    fn bound(&mut self) {
        if self.peers.len() > MAX_PEERS {
            self.peers.retain(|_, up| *up);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_change_is_noted_once() {
        let mut members = Membership::default();
        let peer = PeerId::random();
        let addr: libp2p::Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
        members.connected(peer, &addr);
        members.connected(peer, &addr);
        assert_eq!(members.peers.get(&peer), Some(&true));
        members.closed(peer, Some(&ConnectionError::KeepAliveTimeout));
        assert_eq!(members.peers.get(&peer), Some(&true), "idle is not gone");
        members.unreachable(peer, &"refused");
        assert_eq!(members.peers.get(&peer), Some(&false));
        members.closed(
            peer,
            Some(&ConnectionError::IO(std::io::Error::other("reset"))),
        );
        assert_eq!(members.peers.get(&peer), Some(&false));
        members.connected(peer, &addr);
        assert_eq!(members.peers.get(&peer), Some(&true));
    }
}
