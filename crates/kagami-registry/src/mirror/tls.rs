//! How the mirror speaks TLS to peers, when it does: [`PeerTls`] hands
//! out a rustls client configuration for each peer ID the router names.
//!
//! The registry does not know what makes a peer trustworthy (a cluster
//! CA, a peer ID bound in a certificate): whoever builds the
//! configurations does, and this crate only uses them. A configuration is
//! asked for once per peer ID and cached with its connections (see
//! `clients`) until [`Mirror::reset_peer_clients`](crate::Mirror::reset_peer_clients).

use std::fmt;
use std::sync::Arc;

use rustls::ClientConfig;

type Build = dyn Fn(&str) -> Result<ClientConfig, String> + Send + Sync;

/// Fetches from peers over HTTPS: a function from a peer ID (as the
/// router names it) to the client configuration for that peer.
///
/// The configuration should present this node's certificate and accept
/// only a server certificate that proves to be `peer_id`: a handshake that
/// fails counts as a failed attempt on that peer, which is then skipped for
/// [`MirrorConfig::bad_peer_ttl`](crate::MirrorConfig::bad_peer_ttl). An
/// `Err` (this node's own material unreadable, say) fails the attempt too,
/// without holding it against the peer.
///
/// The function is called again only for peers without a cached client:
/// when this node's certificate is renewed, make the function return
/// configurations with the new one, then call
/// [`Mirror::reset_peer_clients`](crate::Mirror::reset_peer_clients).
///
/// The configurations are used as they are, ALPN included (offer `h2` and
/// `http/1.1`). They must be built on rustls 0.23, the version reqwest
/// uses, or building the HTTP client fails.
#[derive(Clone)]
pub struct PeerTls {
    build: Arc<Build>,
}

impl PeerTls {
    /// TLS to peers with the configurations `build` makes for each peer ID.
    pub fn new(
        build: impl Fn(&str) -> Result<ClientConfig, String> + Send + Sync + 'static,
    ) -> PeerTls {
        PeerTls {
            build: Arc::new(build),
        }
    }

    /// The client configuration for the peer `peer_id`.
    pub fn client_config(&self, peer_id: &str) -> Result<ClientConfig, String> {
        (self.build)(peer_id)
    }
}

impl fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PeerTls(..)")
    }
}
