//! The node's side of the P2P network: its identity and pre-shared key on
//! disk, the libp2p router, the advertiser that keeps the router in step
//! with the store, and the mirror that serves misses from peers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kagami_core::store::Store;
use kagami_p2p::{AdvertisePolicy, Advertiser, Multiaddr, PeerId, Psk};
use kagami_registry::{Mirror, MirrorConfig, PullThrough};
use kagami_store::{Layered, Spool};

use crate::trust::NodeTrust;

/// Default P2P port, the one K3s uses; the same on every node.
pub const DEFAULT_P2P_PORT: u16 = kagami_p2p::DEFAULT_PORT;

/// Why the P2P side could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The node's key or the pre-shared key could not be read or written.
    #[error("cannot load {what} from {path}")]
    Material {
        /// Which file.
        what: &'static str,
        /// Where it is.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: Box<kagami_p2p::Error>,
    },
    /// The libp2p node did not start (port in use, say).
    #[error("cannot start the P2P node on {listen}")]
    Start {
        /// The address asked for.
        listen: SocketAddr,
        /// What went wrong.
        #[source]
        source: Box<kagami_p2p::Error>,
    },
    /// The listen address cannot be a multiaddr (never happens for IP).
    #[error("cannot listen for P2P on {listen}")]
    ListenAddress {
        /// The address asked for.
        listen: SocketAddr,
    },
    /// The pull-through cache could not be opened.
    #[error("cannot open the pull-through cache in {path}")]
    Cache {
        /// Its directory.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: Box<kagami_store::Error>,
    },
    /// The mirror's HTTP client could not be built.
    #[error("cannot set up the mirror")]
    Mirror(#[source] Box<kagami_registry::Error>),
}

/// How a node takes part in the P2P network.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the libp2p node listens (default `0.0.0.0:5001`).
    pub listen: SocketAddr,
    /// Peers to join through.
    pub bootstrap: Vec<Multiaddr>,
    /// The cluster's pre-shared key file (default `<data-dir>/p2p/psk`).
    pub psk_file: Option<PathBuf>,
    /// Budgets and policy of the mirror path; `advertise_latest` also
    /// governs the advertiser.
    pub mirror: MirrorConfig,
    /// How long other nodes keep this node's provider records (default
    /// 19 minutes, as Spegel): a withdrawn key may be found until then.
    pub record_ttl: Duration,
    /// How often each provided key is announced again (default 15
    /// minutes); must be shorter than `record_ttl`.
    pub republish_interval: Duration,
    /// Pull-through: what no peer serves is fetched from the upstream
    /// once for the cluster, by the key's origin, and kept in the cache
    /// under `DATA_DIR/cache`. On by default (every registry reached at
    /// itself); `None` turns it off: the node then never contacts an
    /// upstream.
    pub pull_through: Option<PullThroughOptions>,
}

/// How a node pulls through.
#[derive(Debug, Clone)]
pub struct PullThroughOptions {
    /// Where each registry's content is fetched from.
    pub upstream: kagami_upstream::Config,
    /// Most bytes the cache keeps (default [`DEFAULT_CACHE_SIZE`]).
    pub cache_size: u64,
}

/// Default size of the pull-through cache: 10 GiB.
pub const DEFAULT_CACHE_SIZE: u64 = 10 << 30;

impl Default for PullThroughOptions {
    fn default() -> PullThroughOptions {
        PullThroughOptions {
            upstream: kagami_upstream::Config {
                default_endpoint: true,
                ..kagami_upstream::Config::default()
            },
            cache_size: DEFAULT_CACHE_SIZE,
        }
    }
}

impl Default for Options {
    fn default() -> Options {
        Options {
            listen: SocketAddr::from(([0, 0, 0, 0], DEFAULT_P2P_PORT)),
            bootstrap: Vec::new(),
            psk_file: None,
            mirror: MirrorConfig::default(),
            record_ttl: kagami_p2p::DEFAULT_RECORD_TTL,
            republish_interval: kagami_p2p::DEFAULT_REPUBLISH_INTERVAL,
            pull_through: Some(PullThroughOptions::default()),
        }
    }
}

/// The running P2P side of a node. Cheap to clone.
#[derive(Debug, Clone)]
pub struct P2p {
    router: kagami_p2p::Router,
    advertiser: Arc<Advertiser>,
    mirror: Mirror,
    /// The pull-through cache, when pulling through.
    cache: Option<Spool>,
    /// The node's store with the cache under it, when pulling through.
    layered: Option<Layered>,
}

/// Where the pre-shared key lives when no file is named.
pub fn default_psk_file(data_dir: &Path) -> PathBuf {
    data_dir.join("p2p").join("psk")
}

impl P2p {
    pub(crate) async fn start(
        data_dir: &Path,
        options: &Options,
        registry_addr: SocketAddr,
        store: Arc<dyn Store>,
        trust: Option<&NodeTrust>,
    ) -> Result<P2p, Error> {
        let keypair = node_identity(data_dir)?;
        let psk = load_psk(data_dir, options.psk_file.as_deref())?;

        let mut config = kagami_p2p::Config::new(keypair, psk.clone());
        config.listen = to_multiaddr(options.listen)?;
        config.bootstrap = options.bootstrap.clone();
        if let Some(trust) = trust {
            let own = keypair_peer_id(&config);
            config.bootstrap.extend(discover(trust, &own).await);
        }
        config.registry_port = registry_addr.port();
        config.lookup_timeout = options.mirror.resolve_timeout;
        config.record_ttl = options.record_ttl;
        config.republish_interval = options.republish_interval;
        let router = kagami_p2p::Router::start(config)
            .await
            .map_err(|source| Error::Start {
                listen: options.listen,
                source: Box::new(source),
            })?;
        let shared: Arc<dyn kagami_core::router::Router> = Arc::new(router.clone());
        let cache = match &options.pull_through {
            Some(pull) => {
                let path = data_dir.join("cache");
                let spool = Spool::open(&path, pull.cache_size)
                    .await
                    .map_err(|source| Error::Cache {
                        path: path.clone(),
                        source: Box::new(source),
                    })?;
                tracing::info!(cache = %path.display(), size = pull.cache_size, "pull-through on: what no peer serves is fetched from the upstream once for the cluster, by its origin");
                Some(spool)
            }
            None => {
                tracing::info!("pull-through off: this node never contacts an upstream registry");
                None
            }
        };
        let layered = cache
            .as_ref()
            .map(|spool| Layered::new(store.clone(), Arc::new(spool.clone())));
        let advertiser = Advertiser::spawn_with_cache(
            store,
            cache.clone().map(|spool| Arc::new(spool) as Arc<dyn Store>),
            shared.clone(),
            AdvertisePolicy {
                advertise_latest: options.mirror.advertise_latest,
                registries: options.mirror.mirrored.clone(),
            },
        );
        if options.mirror.advertise_latest || options.mirror.resolve_latest {
            tracing::warn!(
                "`latest` tags are shared between peers: a peer's `latest` may be older than the \
                 registry's; this is unsupported, pin tags or digests instead"
            );
        }
        let mut mirror_config = options.mirror.clone();
        if let Some(trust) = trust {
            mirror_config.peer_tls = Some(peer_tls(trust.clone()));
        }
        mirror_config.own_addrs.push(registry_addr);
        let pull = match (&options.pull_through, &cache) {
            (Some(pull), Some(spool)) => Some(PullThrough {
                upstream: Arc::new(kagami_upstream::Client::new(pull.upstream.clone())),
                cache: Arc::new(spool.clone()),
            }),
            _ => None,
        };
        let mirror = Mirror::with_pull_through(shared, mirror_config, pull)
            .map_err(|e| Error::Mirror(Box::new(e)))?;
        tracing::info!(
            peer_id = %router.peer_id(),
            listen = ?router.listen_addrs(),
            bootstrap = options.bootstrap.len(),
            psk = %psk.fingerprint(),
            "P2P node started; joining the network"
        );
        Ok(P2p {
            router,
            advertiser: Arc::new(advertiser),
            mirror,
            cache,
            layered,
        })
    }

    /// This node's peer ID.
    pub fn peer_id(&self) -> PeerId {
        self.router.peer_id()
    }

    /// Where the libp2p node listens, as multiaddrs with `/p2p/<id>`, ready
    /// to give other nodes as `--bootstrap-peer`.
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        let id = self.router.peer_id();
        self.router
            .listen_addrs()
            .into_iter()
            .filter_map(|addr| format!("{addr}/p2p/{id}").parse().ok())
            .collect()
    }

    /// The libp2p router.
    pub fn router(&self) -> &kagami_p2p::Router {
        &self.router
    }

    /// The mirror path (its counters in particular).
    pub fn mirror(&self) -> &Mirror {
        &self.mirror
    }

    /// The pull-through cache, when pulling through.
    pub fn cache(&self) -> Option<&Spool> {
        self.cache.as_ref()
    }

    /// The node's store with the pull-through cache under it (what the
    /// registry API serves), when pulling through.
    pub fn layered(&self) -> Option<&Layered> {
        self.layered.as_ref()
    }

    /// How many keys the advertiser has had the router accept.
    pub fn advertised_keys(&self) -> usize {
        self.advertiser.snapshot().len()
    }

    /// The keys this node advertises: digests, then tags.
    pub fn advertised_keys_by_kind(&self) -> (u64, u64) {
        let keys = self.advertiser.snapshot();
        let digests = keys
            .iter()
            .filter(|key| matches!(key, kagami_core::Key::Digest(_)))
            .count() as u64;
        (digests, keys.len() as u64 - digests)
    }

    pub(crate) async fn shutdown(self) {
        drop(self.advertiser);
        self.router.shutdown().await;
    }
}

/// The node's libp2p peer ID, from its identity key in the data directory
/// (made on first use): node certificates bind it.
pub fn node_peer_id(data_dir: &Path) -> Result<String, Error> {
    Ok(node_identity(data_dir)?.public().to_peer_id().to_string())
}

/// The node's libp2p identity key (`DATA_DIR/p2p/identity.key`), made on
/// first use; a joining node proves it holds it.
pub fn node_identity(data_dir: &Path) -> Result<kagami_p2p::Keypair, Error> {
    let key_path = data_dir.join("p2p").join("identity.key");
    kagami_p2p::identity::load_or_create(&key_path).map_err(|source| Error::Material {
        what: "the node's P2P identity",
        path: key_path.clone(),
        source: Box::new(source),
    })
}

/// The peer ID of the keypair `config` starts the router with.
fn keypair_peer_id(config: &kagami_p2p::Config) -> String {
    config.keypair.public().to_peer_id().to_string()
}

/// The P2P addresses the server this node joined through lists (none for
/// a node that joined no server), without this node's own: behind a load
/// balancer, a server may be handed its own address, and must not dial
/// itself.
async fn discover(trust: &NodeTrust, own: &str) -> Vec<Multiaddr> {
    let Some(server) = trust.server_url() else {
        return Vec::new();
    };
    let listed = match crate::join::server_peers(server, &trust.identity()).await {
        Ok(listed) => listed,
        Err(e) => {
            tracing::warn!(%server, error = %e, "cannot ask the server for P2P peers; using --bootstrap-peer only");
            return Vec::new();
        }
    };
    let peers = besides_self(listed, own);
    tracing::info!(%server, peers = peers.len(), "P2P peers from the server");
    peers
}

/// The listed addresses that parse, without this node's own.
fn besides_self(listed: Vec<String>, own: &str) -> Vec<Multiaddr> {
    let suffix = format!("/p2p/{own}");
    let mut peers = Vec::new();
    for text in listed {
        if text.ends_with(&suffix) {
            tracing::info!(addr = %text, "the server listed this node itself (a load balancer in front of the servers?); not dialling it");
            continue;
        }
        match text.parse::<Multiaddr>() {
            Ok(addr) => peers.push(addr),
            Err(_) => {
                tracing::warn!(addr = %text, "the server listed an address that is not a multiaddr")
            }
        }
    }
    peers
}

/// Peer fetches over HTTPS: this node's certificate, and the peer's
/// checked against the cluster CA and the peer ID the DHT named.
fn peer_tls(trust: NodeTrust) -> kagami_registry::PeerTls {
    kagami_registry::PeerTls::new(move |peer_id: &str| {
        kagami_cluster::tls::peer_client_config(&trust.identity(), Some(peer_id))
            .map_err(|e| e.to_string())
    })
}

/// Reads the cluster's key. With no file named, a first start makes one in
/// the data dir, since a lone node needs none shared yet; a named file
/// must exist, so a typo never silently splits a cluster.
fn load_psk(data_dir: &Path, named: Option<&Path>) -> Result<Psk, Error> {
    fn material(path: &Path) -> impl FnOnce(kagami_p2p::Error) -> Error + '_ {
        move |source| Error::Material {
            what: "the P2P pre-shared key",
            path: path.to_owned(),
            source: Box::new(source),
        }
    }
    if let Some(path) = named {
        return Psk::from_file(path).map_err(material(path));
    }
    let path = default_psk_file(data_dir);
    if path.exists() {
        return Psk::from_file(&path).map_err(material(&path));
    }
    let psk = Psk::generate();
    psk.write(&path).map_err(material(&path))?;
    tracing::warn!(
        path = %path.display(),
        fingerprint = %psk.fingerprint(),
        "generated a new P2P pre-shared key: every node of the cluster needs this same file \
         (copy it, or pass --psk-file)"
    );
    Ok(psk)
}

fn to_multiaddr(addr: SocketAddr) -> Result<Multiaddr, Error> {
    let text = match addr.ip() {
        std::net::IpAddr::V4(ip) => format!("/ip4/{ip}/tcp/{}", addr.port()),
        std::net::IpAddr::V6(ip) => format!("/ip6/{ip}/tcp/{}", addr.port()),
    };
    text.parse()
        .map_err(|_| Error::ListenAddress { listen: addr })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_listing_this_node_itself_is_not_dialled() {
        let own = kagami_p2p::Keypair::generate_ed25519()
            .public()
            .to_peer_id();
        let other = kagami_p2p::Keypair::generate_ed25519()
            .public()
            .to_peer_id();
        let listed = vec![
            format!("/ip4/10.0.0.1/tcp/5001/p2p/{own}"),
            format!("/ip4/10.0.0.2/tcp/5001/p2p/{other}"),
            "not a multiaddr".to_owned(),
        ];
        let peers = besides_self(listed, &own.to_string());
        assert_eq!(peers.len(), 1);
        assert!(peers[0].to_string().ends_with(&other.to_string()));
    }
}
