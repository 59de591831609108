//! A running node: the store, the registry API on its socket, the P2P
//! router and advertiser when enabled, and their orderly shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kagami_containerd::Containerd;
use kagami_core::store::Store;
use kagami_registry::{ConnectionStats, MirrorStats, Readiness, ServeOptions};
use kagami_store::Layout;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::airgap::AirGap;
use crate::hosts::{self, HostsConfig};
use crate::p2p::{self, P2p};
use crate::tls_accept::ClusterTls;
use crate::trust::NodeTrust;
use crate::{DEFAULT_DATA_DIR, DEFAULT_REGISTRY_PORT, layout_dir, status};

/// How long requests in flight may run on after shutdown is asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why a node could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// containerd's store was asked for and could not be reached.
    #[error("cannot use containerd at {address}")]
    Containerd {
        /// containerd's socket.
        address: PathBuf,
        /// What went wrong.
        #[source]
        source: Box<kagami_containerd::Error>,
    },
    /// The built-in store could not be opened.
    #[error("cannot open the image store in {path}")]
    OpenStore {
        /// The store's directory.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: Box<kagami_store::Error>,
    },
    /// The registry port could not be bound.
    #[error("cannot listen on {addr} for the registry API")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// containerd's mirror configuration could not be written.
    #[error("cannot write containerd's mirror configuration")]
    Hosts(#[source] kagami_containerd::Error),
    /// Neither cluster trust nor insecure HTTP was chosen.
    #[error(
        "no cluster trust configured: give the node its material (Builder::trust) or choose insecure HTTP explicitly (Builder::insecure_http)"
    )]
    NoSecurity,
    /// The P2P side could not start.
    #[error(transparent)]
    P2p(#[from] p2p::Error),
    /// The registry server failed while running.
    #[error("registry server failed")]
    Serve(#[source] std::io::Error),
    /// The registry server task panicked or was cancelled.
    #[error("registry server task ended abnormally")]
    Join(#[source] tokio::task::JoinError),
}

/// Which image store a node serves.
#[derive(Debug, Clone)]
pub enum StoreChoice {
    /// containerd when its socket exists, else the built-in store.
    Auto(kagami_containerd::Config),
    /// containerd's content store, over its gRPC API.
    Containerd(kagami_containerd::Config),
    /// The built-in OCI image-layout store in the data directory.
    Layout,
}

/// Settings for a node; see [`Node::builder`].
#[derive(Debug, Clone)]
pub struct Builder {
    data_dir: PathBuf,
    listen: SocketAddr,
    registry: kagami_registry::Config,
    p2p: Option<p2p::Options>,
    store: StoreChoice,
    hosts: Option<HostsConfig>,
    security: Option<Security>,
    probes: Option<SocketAddr>,
    metrics: Option<SocketAddr>,
    limits: kagami_registry::Limits,
}

/// How the registry API and peer fetches are protected.
#[derive(Debug, Clone)]
pub enum Security {
    /// HTTPS with the cluster's certificates: clients must present a
    /// certificate signed by the cluster CA, and peers are checked against
    /// the CA and their peer IDs.
    Cluster(NodeTrust),
    /// Plain HTTP, for lab use only: anyone who can reach the port can
    /// read every image, and peers are not authenticated.
    InsecureHttp,
}

impl Default for Builder {
    fn default() -> Builder {
        Builder {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            listen: SocketAddr::from(([0, 0, 0, 0], DEFAULT_REGISTRY_PORT)),
            registry: kagami_registry::Config::default(),
            p2p: None,
            store: StoreChoice::Layout,
            hosts: None,
            security: None,
            probes: None,
            metrics: None,
            limits: kagami_registry::Limits::default(),
        }
    }
}

impl Builder {
    /// The node's data directory (default `/var/lib/kagami`).
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Builder {
        self.data_dir = dir.into();
        self
    }

    /// Where the registry API listens (default `0.0.0.0:6443`; port 0 picks
    /// a free port, see [`Node::registry_addr`]).
    pub fn listen(mut self, addr: SocketAddr) -> Builder {
        self.listen = addr;
        self
    }

    /// Settings of the registry API.
    pub fn registry(mut self, config: kagami_registry::Config) -> Builder {
        self.registry = config;
        self
    }

    /// Which store to serve (default: the built-in one).
    pub fn store(mut self, choice: StoreChoice) -> Builder {
        self.store = choice;
        self
    }

    /// Joins the P2P network: advertise what the store holds, and serve
    /// misses from peers. Without it the node serves only its own store.
    pub fn p2p(mut self, options: p2p::Options) -> Builder {
        self.p2p = Some(options);
        self
    }

    /// Writes containerd's `hosts.toml` files for these registries at
    /// start, pointing containerd at this node's registry API.
    pub fn containerd_hosts(mut self, config: HostsConfig) -> Builder {
        self.hosts = Some(config);
        self
    }

    /// Also answers `/healthz` and `/readyz` in plain HTTP on `addr` (a
    /// loopback address, for probes that hold no cluster certificate).
    pub fn probes(mut self, addr: SocketAddr) -> Builder {
        self.probes = Some(addr);
        self
    }

    /// Also serves `/metrics` and the status page (`/`) in plain HTTP on
    /// `addr` (a loopback address, for Prometheus and people on the node);
    /// nothing else is served there. Port 0 picks a free port, see
    /// [`Node::metrics_addr`].
    pub fn metrics(mut self, addr: SocketAddr) -> Builder {
        self.metrics = Some(addr);
        self
    }

    /// Budgets of the registry port's connections (defaults in
    /// [`kagami_registry::Limits`]).
    pub fn limits(mut self, limits: kagami_registry::Limits) -> Builder {
        self.limits = limits;
        self
    }

    /// Serves over HTTPS with the cluster's trust material (the default of
    /// the `kagami` binary). A node must be given this or
    /// [`Builder::insecure_http`].
    pub fn trust(mut self, trust: NodeTrust) -> Builder {
        self.security = Some(Security::Cluster(trust));
        self
    }

    /// Serves plain HTTP and fetches from peers without authentication.
    /// For lab use only; the node warns about it when it starts.
    pub fn insecure_http(mut self) -> Builder {
        self.security = Some(Security::InsecureHttp);
        self
    }

    /// Opens the store, binds the registry port, joins the P2P network if
    /// asked to, and starts serving.
    pub async fn start(self) -> Result<Node, Error> {
        let security = self.security.clone().ok_or(Error::NoSecurity)?;
        // Every TLS configuration here names its provider; the default is
        // for HTTP clients built without one (peers in insecure mode). It
        // may already be installed by the embedding program.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let trust = match &security {
            Security::Cluster(trust) => Some(trust.clone()),
            Security::InsecureHttp => {
                tracing::warn!(
                    "INSECURE: the registry API serves plain HTTP to anyone who can reach it, and peers are not authenticated; use this only in a lab"
                );
                None
            }
        };
        // What is shared is the library's policy: never a registry on this
        // node's own names, whatever the embedder asked for.
        let node_ips = trust
            .as_ref()
            .map(|trust| trust.cert().names().ips.clone())
            .unwrap_or_default();
        let local = crate::local_hosts(self.listen.ip(), &node_ips);
        let mut registry_config = self.registry.clone();
        registry_config.served = registry_config.served.without_hosts(&local);
        let p2p_options = self.p2p.clone().map(|mut options| {
            options.mirror.mirrored = options.mirror.mirrored.without_hosts(&local);
            options
        });
        let opened = self.open_store().await?;
        let store = opened.store.clone();
        let bind_error = |source| Error::Bind {
            addr: self.listen,
            source,
        };
        let listener = TcpListener::bind(self.listen).await.map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        let readiness = Readiness::new();
        let connections = ConnectionStats::default();
        match (&self.hosts, &opened.containerd) {
            (Some(hosts), Some(_)) => {
                hosts::write(hosts, addr, trust.as_ref()).map_err(Error::Hosts)?;
            }
            (Some(hosts), None) => tracing::info!(
                dir = %hosts.dir.display(),
                "not writing containerd's mirror configuration: this node does not serve containerd's store"
            ),
            (None, _) => {}
        }

        let p2p = match &p2p_options {
            Some(options) => Some(
                P2p::start(&self.data_dir, options, addr, store.clone(), trust.as_ref()).await?,
            ),
            None => {
                tracing::info!("P2P disabled: serving this node's own images only");
                None
            }
        };
        // What the pull-through cache holds is served as this node's own.
        let store: Arc<dyn Store> = match p2p.as_ref().and_then(P2p::cache) {
            Some(cache) => Arc::new(kagami_store::Layered::new(store, Arc::new(cache.clone()))),
            None => store,
        };
        if let Some(p2p) = &p2p {
            let router = p2p.router().clone();
            readiness.set_detail(move || format!("p2p peers: {}", router.routing_peers()));
        }
        let app = match &p2p {
            Some(p2p) => kagami_registry::app_with_mirror(
                store.clone(),
                registry_config.clone(),
                readiness.clone(),
                p2p.mirror().clone(),
            )
            .merge(status::routes(p2p.clone())),
            None => kagami_registry::app(store.clone(), registry_config.clone(), readiness.clone()),
        }
        .merge(crate::metrics::routes(
            p2p.clone(),
            connections.clone(),
            registry_config.stats.clone(),
        ));
        let app = match &trust {
            Some(trust) => {
                let addrs = p2p.clone().map(|p2p| -> crate::join::P2pAddrs {
                    Arc::new(move || p2p.listen_addrs().iter().map(ToString::to_string).collect())
                });
                app.merge(crate::join::member_routes(trust.clone(), addrs))
                    .merge(crate::join::join_routes(trust.clone()))
                    .layer(axum::middleware::from_fn(crate::tls_accept::guard))
            }
            None => app,
        };
        let probes = match self.probes {
            Some(addr) => {
                let app = kagami_registry::probes(readiness.clone());
                Some(Plain::spawn(addr, app, "health probes").await?)
            }
            None => None,
        };
        let metrics = match self.metrics {
            Some(metrics_addr) => {
                let stats = registry_config.stats.clone();
                let page = crate::status_page::Page {
                    store: store.clone(),
                    p2p: p2p.clone(),
                    requests: stats.clone(),
                    registry_addr: addr,
                    names: trust.as_ref().map(|trust| trust.cert().names().dns.clone()),
                    secure: trust.is_some(),
                    started: std::time::SystemTime::now(),
                };
                let app = crate::metrics::routes(p2p.clone(), connections.clone(), stats)
                    .merge(crate::status_page::routes(page));
                Some(Plain::spawn(metrics_addr, app, "metrics and status page").await?)
            }
            None => None,
        };
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let shutdown = async move {
            // A dropped sender means the Node went away: stop as well.
            let _ = stop_rx.await;
        };
        let options = ServeOptions {
            grace: SHUTDOWN_GRACE,
            limits: self.limits.clone(),
            stats: connections.clone(),
            ..ServeOptions::default()
        };
        let server = match &trust {
            Some(trust) => tokio::spawn(kagami_registry::serve_with(
                listener,
                ClusterTls {
                    trust: trust.clone(),
                },
                app,
                shutdown,
                options,
            )),
            None => tokio::spawn(kagami_registry::serve(listener, app, shutdown, options)),
        };
        readiness.set_ready(true);
        tracing::info!(
            %addr,
            default_registry = %registry_config.default_registry,
            scheme = if trust.is_some() { "https (client certificates required)" } else { "http (insecure)" },
            "node serving"
        );
        let renewal = trust.as_ref().map(|trust| {
            let mirror = p2p.as_ref().map(|p2p| p2p.mirror().clone());
            trust.spawn_renewal(move || {
                if let Some(mirror) = &mirror {
                    mirror.reset_peer_clients();
                }
            })
        });
        // After the server is up: an import must not delay serving.
        let airgap = opened
            .containerd
            .clone()
            .map(|c| AirGap::spawn(c, &self.data_dir));
        Ok(Node {
            addr,
            connections,
            layout: opened.layout,
            containerd: opened.containerd,
            airgap,
            renewal,
            probes,
            metrics,
            p2p,
            stop: Some(stop_tx),
            server,
        })
    }
}

impl Builder {
    /// Opens the chosen store, saying in the log which one it is.
    async fn open_store(&self) -> Result<Opened, Error> {
        let containerd = match &self.store {
            StoreChoice::Layout => None,
            StoreChoice::Containerd(config) => Some(config),
            StoreChoice::Auto(config) if config.address.exists() => Some(config),
            StoreChoice::Auto(config) => {
                tracing::info!(
                    socket = %config.address.display(),
                    "no containerd socket: using the built-in store"
                );
                None
            }
        };
        if let Some(config) = containerd {
            let store = Containerd::connect(config.clone())
                .await
                .map_err(|source| Error::Containerd {
                    address: config.address.clone(),
                    source: Box::new(source),
                })?;
            tracing::info!(
                socket = %config.address.display(),
                namespace = %config.namespace,
                "store: containerd"
            );
            let store = Arc::new(store);
            return Ok(Opened {
                store: store.clone(),
                layout: None,
                containerd: Some(store),
            });
        }
        let dir = layout_dir(&self.data_dir);
        let layout = Layout::open(&dir)
            .await
            .map_err(|source| Error::OpenStore {
                path: dir.clone(),
                source: Box::new(source),
            })?;
        tracing::info!(path = %dir.display(), "store: built-in OCI image layout");
        spawn_collection(layout.clone());
        Ok(Opened {
            store: Arc::new(layout.clone()),
            layout: Some(layout),
            containerd: None,
        })
    }
}

/// Collects what imports killed part-way left in the built-in store, in
/// the background: it waits for the writers' lock, which an import in
/// another process may hold for minutes, and serving must not wait for
/// that. One task per start; it ends with the collection.
fn spawn_collection(layout: Layout) {
    tokio::spawn(async move {
        match layout.collect_garbage().await {
            Ok(collected) if collected.removed_anything() => tracing::info!(
                blobs = collected.blobs_removed,
                temp_entries = collected.temp_entries_removed,
                bytes = collected.bytes_freed,
                "removed what interrupted imports left in the store"
            ),
            Ok(_) => tracing::debug!("nothing for the store's garbage collection"),
            Err(error) => tracing::warn!(
                error = %error,
                "cannot collect what interrupted imports left in the store"
            ),
        }
    });
}

/// A plain-HTTP listener beside the registry (probes, metrics): its
/// address, stop signal and task. It keeps the registry's connection
/// budgets, since anyone who reaches it may connect.
#[derive(Debug)]
struct Plain {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<()>>,
}

impl Plain {
    async fn spawn(
        addr: SocketAddr,
        app: axum::Router,
        name: &'static str,
    ) -> Result<Plain, Error> {
        let bind_error = |source| Error::Bind { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(kagami_registry::serve(
            listener,
            app,
            async move {
                let _ = stopped.await;
            },
            ServeOptions {
                grace: SHUTDOWN_GRACE,
                name,
                ..ServeOptions::default()
            },
        ));
        Ok(Plain { addr, stop, server })
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.server.await;
    }
}

/// The store a node serves, and the concrete backend behind it.
struct Opened {
    store: Arc<dyn Store>,
    layout: Option<Layout>,
    containerd: Option<Arc<Containerd>>,
}

/// A running node. Dropping it stops the registry as [`Node::shutdown`]
/// does, without waiting.
#[derive(Debug)]
pub struct Node {
    addr: SocketAddr,
    /// The registry port's connection counters.
    connections: ConnectionStats,
    layout: Option<Layout>,
    containerd: Option<Arc<Containerd>>,
    /// Imports `<data-dir>/agent/images/` into containerd while it lives.
    airgap: Option<AirGap>,
    /// Renews the node certificate when due.
    renewal: Option<JoinHandle<()>>,
    /// The plain probe listener.
    probes: Option<Plain>,
    /// The plain metrics and status page listener.
    metrics: Option<Plain>,
    p2p: Option<P2p>,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<std::io::Result<()>>,
}

impl Node {
    /// A builder with the defaults of the `kagami server` command.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The address the registry API listens on.
    pub fn registry_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address of `/metrics` and the status page, when served.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|plain| plain.addr)
    }

    /// The registry port's connection counters (refusals, timeouts, open).
    pub fn connection_stats(&self) -> &ConnectionStats {
        &self.connections
    }

    /// The node's built-in store (to import into, list, remove from),
    /// when it serves that one.
    pub fn layout(&self) -> Option<&Layout> {
        self.layout.as_ref()
    }

    /// The node's containerd store, when it serves that one.
    pub fn containerd(&self) -> Option<&Arc<Containerd>> {
        self.containerd.as_ref()
    }

    /// The P2P side, when the node joined the network.
    pub fn p2p(&self) -> Option<&P2p> {
        self.p2p.as_ref()
    }

    /// What the mirror path has done so far, when P2P is on.
    pub fn mirror_stats(&self) -> Option<&MirrorStats> {
        self.p2p.as_ref().map(|p2p| p2p.mirror().stats())
    }

    /// Stops accepting requests, lets those in flight finish (for a few
    /// seconds at most), leaves the P2P network and returns when all has
    /// stopped.
    pub async fn shutdown(mut self) -> Result<(), Error> {
        // No imports into containerd while shutting down.
        drop(self.airgap.take());
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
        for plain in [self.probes.take(), self.metrics.take()]
            .into_iter()
            .flatten()
        {
            plain.stop().await;
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = finished((&mut self.server).await);
        if let Some(p2p) = self.p2p.take() {
            p2p.shutdown().await;
        }
        result
    }

    /// Serves until `signal` resolves, then shuts down as
    /// [`Node::shutdown`] does. Returns early if the server fails.
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) -> Result<(), Error> {
        tokio::select! {
            result = &mut self.server => return finished(result),
            () = signal => {}
        }
        tracing::info!("shutting down");
        self.shutdown().await
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
    }
}

fn finished(result: Result<std::io::Result<()>, tokio::task::JoinError>) -> Result<(), Error> {
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Error::Serve(e)),
        Err(e) => Err(Error::Join(e)),
    }
}
