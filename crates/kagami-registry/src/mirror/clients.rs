//! The HTTP clients the mirror asks peers with. Without TLS, one plain
//! client for every peer. With [`PeerTls`], one client per peer ID, made
//! with that peer's configuration (which decides what certificate the
//! peer must show) and kept, so that connections to a peer are pooled; at
//! most [`MAX_CLIENTS`] are kept, and [`Clients::reset`] drops them all.
//!
//! Every client has the same settings: no proxy whatever the environment
//! says, no redirects (peers never redirect), the connect timeout, no
//! Nagle, idle connections kept for [`POOL_IDLE_TIMEOUT`], kagami's user
//! agent. Each is handed its rustls configuration ready-made, so building
//! one never needs a process-wide rustls crypto provider.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Client, ClientBuilder};
use rustls::{ClientConfig, RootCertStore};

use super::config::MirrorConfig;
use super::lock;
use super::tls::PeerTls;
use crate::error::Error;

/// Most per-peer clients kept; past that, one is dropped for each new
/// peer (its requests in flight keep their connections).
const MAX_CLIENTS: usize = 256;
/// How long an idle connection to a peer is kept for the next request.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The clients for peers.
pub(super) enum Clients {
    /// Plain HTTP, one client for all.
    Plain(Client),
    /// HTTPS, a client per peer ID.
    PerPeer(PerPeer),
}

/// HTTPS clients by peer ID.
pub(super) struct PerPeer {
    tls: PeerTls,
    connect_timeout: Duration,
    cache: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    /// Bumped by every reset, so that a client whose building started
    /// before a reset is not kept after it.
    generation: u64,
    clients: HashMap<String, Client>,
}

impl Clients {
    pub(super) fn new(config: &MirrorConfig) -> Result<Clients, Error> {
        match &config.peer_tls {
            None => {
                let client = builder(config.connect_timeout)
                    .tls_backend_preconfigured(unused_tls()?)
                    .build()
                    .map_err(|source| Error::MirrorClient { source })?;
                Ok(Clients::Plain(client))
            }
            Some(tls) => Ok(Clients::PerPeer(PerPeer {
                tls: tls.clone(),
                connect_timeout: config.connect_timeout,
                cache: Mutex::default(),
            })),
        }
    }

    /// The URL scheme peers are asked with.
    pub(super) fn scheme(&self) -> &'static str {
        match self {
            Clients::Plain(_) => "http",
            Clients::PerPeer(_) => "https",
        }
    }

    /// The client for the peer `peer_id`, made now if there is none; an
    /// error says why it could not be made.
    pub(super) fn for_peer(&self, peer_id: &str) -> Result<Client, String> {
        match self {
            Clients::Plain(client) => Ok(client.clone()),
            Clients::PerPeer(per_peer) => per_peer.client(peer_id),
        }
    }

    /// Drops every per-peer client: the next request to each peer makes a
    /// new one with a fresh configuration. Requests in flight finish on
    /// the clients they have.
    pub(super) fn reset(&self) {
        if let Clients::PerPeer(per_peer) = self {
            let mut cache = lock(&per_peer.cache);
            cache.generation += 1;
            cache.clients.clear();
        }
    }
}

impl PerPeer {
    fn client(&self, peer_id: &str) -> Result<Client, String> {
        let generation = {
            let cache = lock(&self.cache);
            if let Some(client) = cache.clients.get(peer_id) {
                return Ok(client.clone());
            }
            cache.generation
        };
        // Built unlocked: the configuration may read files, and a client
        // takes a moment to build. Two requests may then both build one
        // for a new peer; the first kept wins.
        let config = self.tls.client_config(peer_id)?;
        let client = builder(self.connect_timeout)
            .tls_backend_preconfigured(config)
            .https_only(true)
            .build()
            .map_err(|e| e.to_string())?;
        let mut cache = lock(&self.cache);
        if cache.generation != generation {
            return Ok(client);
        }
        if !cache.clients.contains_key(peer_id)
            && cache.clients.len() >= MAX_CLIENTS
            && let Some(evicted) = cache.clients.keys().next().cloned()
        {
            cache.clients.remove(&evicted);
        }
        Ok(cache
            .clients
            .entry(peer_id.to_owned())
            .or_insert(client)
            .clone())
    }

    #[cfg(test)]
    fn cached(&self) -> usize {
        lock(&self.cache).clients.len()
    }
}

/// The settings every client shares.
fn builder(connect_timeout: Duration) -> ClientBuilder {
    Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .user_agent(concat!("kagami/", env!("CARGO_PKG_VERSION")))
}

/// The TLS configuration of the plain client, which never speaks TLS
/// (peers are asked over `http://`): reqwest wants one all the same, and
/// its default would need a process-wide crypto provider. It trusts no
/// one, so an `https://` URL could not succeed either.
fn unused_tls() -> Result<ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|source| Error::MirrorTls { source })?
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Clients whose configurations are counted as they are made.
    fn counted() -> (PerPeer, Arc<AtomicUsize>) {
        let made = Arc::new(AtomicUsize::new(0));
        let counter = made.clone();
        let tls = PeerTls::new(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
            unused_tls().map_err(|e| e.to_string())
        });
        let config = MirrorConfig {
            peer_tls: Some(tls),
            ..MirrorConfig::default()
        };
        let Ok(Clients::PerPeer(per_peer)) = Clients::new(&config) else {
            panic!("per-peer clients");
        };
        (per_peer, made)
    }

    #[test]
    fn a_client_is_made_once_per_peer_until_a_reset() {
        let (per_peer, made) = counted();
        per_peer.client("a").unwrap();
        per_peer.client("a").unwrap();
        per_peer.client("b").unwrap();
        assert_eq!(made.load(Ordering::Relaxed), 2);
        let clients = Clients::PerPeer(per_peer);
        clients.reset();
        clients.for_peer("a").unwrap();
        assert_eq!(made.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn at_most_max_clients_are_kept() {
        let (per_peer, made) = counted();
        for peer in 0..MAX_CLIENTS + 10 {
            per_peer.client(&format!("peer-{peer}")).unwrap();
        }
        assert_eq!(per_peer.cached(), MAX_CLIENTS);
        assert_eq!(made.load(Ordering::Relaxed), MAX_CLIENTS + 10);
    }

    #[test]
    fn a_configuration_that_cannot_be_made_is_an_error_and_not_kept() {
        let config = MirrorConfig {
            peer_tls: Some(PeerTls::new(|peer| Err(format!("no key for {peer}")))),
            ..MirrorConfig::default()
        };
        let clients = Clients::new(&config).unwrap();
        assert_eq!(clients.scheme(), "https");
        assert_eq!(clients.for_peer("a").unwrap_err(), "no key for a");
    }
}
