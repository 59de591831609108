//! Nodes that mirror from each other: each a real `serve`d app on
//! 127.0.0.1:0 over its own `MemoryStore`, all finding providers through
//! one `TestRouter` (a map from key to peers that counts its lookups).
//! Requests go over real HTTP with reqwest, so a body cut short shows as
//! the error a real client sees. With [`Cluster::start_tls`], nodes serve
//! and fetch over mutual TLS with the identities of a test CA.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kagami_cluster::tls::Identity;
use kagami_core::Key;
use kagami_core::router::{Error as RouterError, Peer, Router};
use kagami_core::store::Store;
use kagami_registry::{Config, Mirror, MirrorConfig};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::{Answer, MemoryStore, NodeTls, client_config, install_crypto, ready};

/// Longest any wait in these tests may take; far above what they need.
pub const LIMIT: Duration = Duration::from_secs(10);

/// A `Router` that answers from a map the test fills, and can hold its
/// answers back.
pub struct TestRouter {
    providers: Mutex<HashMap<Key, Vec<Peer>>>,
    calls: watch::Sender<Vec<Key>>,
    /// Closed, lookups wait until it opens.
    gate: watch::Sender<bool>,
}

impl TestRouter {
    fn new() -> Arc<TestRouter> {
        Arc::new(TestRouter {
            providers: Mutex::default(),
            calls: watch::channel(Vec::new()).0,
            gate: watch::channel(true).0,
        })
    }

    /// Makes lookups of `key` answer `peers`, in this order.
    pub fn set(&self, key: Key, peers: Vec<Peer>) {
        self.providers.lock().unwrap().insert(key, peers);
    }

    /// The keys looked up so far, one entry per lookup.
    pub fn calls(&self) -> Vec<Key> {
        self.calls.borrow().clone()
    }

    pub fn set_gate(&self, open: bool) {
        self.gate.send_replace(open);
    }

    /// Waits (up to [`LIMIT`]) until `count` lookups have started.
    pub async fn wait_for_calls(&self, count: usize) {
        let mut calls = self.calls.subscribe();
        let waited = tokio::time::timeout(LIMIT, calls.wait_for(|c| c.len() >= count)).await;
        assert!(waited.is_ok(), "only {:?} lookups", self.calls());
    }
}

#[async_trait]
impl Router for TestRouter {
    async fn provide(&self, _keys: &[Key]) -> Result<(), RouterError> {
        Ok(())
    }

    async fn withdraw(&self, _keys: &[Key]) -> Result<(), RouterError> {
        Ok(())
    }

    async fn find_providers(&self, key: &Key, limit: usize) -> Result<Vec<Peer>, RouterError> {
        self.calls.send_modify(|calls| calls.push(key.clone()));
        let mut gate = self.gate.subscribe();
        let _ = gate.wait_for(|open| *open).await;
        let providers = self.providers.lock().unwrap();
        let mut peers = providers.get(key).cloned().unwrap_or_default();
        peers.truncate(limit);
        Ok(peers)
    }

    /// This router knows no other node: it is every key's origin.
    async fn closest(
        &self,
        _key: &Key,
        _limit: usize,
    ) -> Result<Vec<kagami_core::router::Near>, RouterError> {
        Ok(vec![kagami_core::router::Near::ThisNode])
    }

    fn is_ready(&self) -> bool {
        true
    }
}

/// One served node.
pub struct Node {
    pub store: Arc<MemoryStore>,
    pub mirror: Mirror,
    /// Set for a node served over TLS.
    pub tls: Option<NodeTls>,
    peer: Peer,
    /// Requests that reached the node's HTTP layer.
    requests: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Node {
    /// The node as a provider, named `node-<index>`.
    pub fn peer(&self) -> Peer {
        self.peer.clone()
    }

    /// Requests that reached the node's HTTP layer (past any handshake).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }

    /// The node's TLS side; panics for a plain node.
    pub fn tls(&self) -> &NodeTls {
        self.tls.as_ref().expect("a node served over TLS")
    }

    /// Serves node `index` on a port of its own: over TLS when `tls` (with
    /// the identity it serves with) is given.
    async fn start(
        index: usize,
        router: &Arc<TestRouter>,
        config: &MirrorConfig,
        tls: Option<(NodeTls, Identity)>,
    ) -> Node {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = MirrorConfig {
            own_addrs: vec![addr],
            peer_tls: tls.as_ref().map(|(tls, _)| tls.peer_tls()),
            ..config.clone()
        };
        let mirror = Mirror::new(router.clone(), config).unwrap();
        let store = MemoryStore::new();
        let dyn_store: Arc<dyn Store> = store.clone();
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let app =
            kagami_registry::app_with_mirror(dyn_store, Config::default(), ready(), mirror.clone())
                .layer(tower::util::MapRequestLayer::new(
                    move |request: http::Request<axum::body::Body>| {
                        counter.fetch_add(1, Ordering::Relaxed);
                        request
                    },
                ));
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let options = kagami_registry::ServeOptions {
            grace: Duration::from_millis(100),
            ..Default::default()
        };
        let task = match &tls {
            None => tokio::spawn(kagami_registry::serve(listener, app, shutdown, options)),
            Some((node_tls, identity)) => {
                let handshake = node_tls.handshake(identity);
                tokio::spawn(kagami_registry::serve_with(
                    listener, handshake, app, shutdown, options,
                ))
            }
        };
        let peer = Peer {
            id: format!("node-{index}"),
            addr,
        };
        Node {
            store,
            mirror,
            tls: tls.map(|(tls, _)| tls),
            peer,
            requests,
            stop: Some(stop),
            task,
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

/// Nodes sharing one router, and a client to ask them.
pub struct Cluster {
    pub router: Arc<TestRouter>,
    pub nodes: Vec<Node>,
    client: reqwest::Client,
    scheme: &'static str,
}

impl Cluster {
    /// `count` empty nodes, each mirroring with `config` (plus its own
    /// address, which it must never ask).
    pub async fn start(count: usize, config: MirrorConfig) -> Cluster {
        install_crypto();
        let router = TestRouter::new();
        let mut nodes = Vec::with_capacity(count);
        for index in 0..count {
            nodes.push(Node::start(index, &router, &config, None).await);
        }
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        Cluster {
            router,
            nodes,
            client,
            scheme: "http",
        }
    }

    /// Empty nodes served over mutual TLS, node `i` (named `node-<i>`)
    /// serving and fetching with `identities[i]`, each mirroring with
    /// `config` over TLS; the test's client presents `client`.
    pub async fn start_tls(
        config: MirrorConfig,
        identities: Vec<Identity>,
        client: &Identity,
    ) -> Cluster {
        install_crypto();
        let router = TestRouter::new();
        let mut nodes = Vec::with_capacity(identities.len());
        for (index, identity) in identities.into_iter().enumerate() {
            let tls = NodeTls::new(identity.clone());
            nodes.push(Node::start(index, &router, &config, Some((tls, identity))).await);
        }
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(client_config(client))
            .no_proxy()
            .build()
            .unwrap();
        Cluster {
            router,
            nodes,
            client,
            scheme: "https",
        }
    }

    /// Lookups of `key` answer these nodes, in this order.
    pub fn provide(&self, key: impl Into<Key>, nodes: &[usize]) {
        let peers = nodes.iter().map(|&i| self.nodes[i].peer()).collect();
        self.router.set(key.into(), peers);
    }

    /// `GET` of `path` on node `node`; an error when the body breaks off.
    pub async fn get(&self, node: usize, path: &str) -> Result<Answer, reqwest::Error> {
        self.send(node, reqwest::Method::GET, path, &[]).await
    }

    /// A request with `headers`, its answer read whole.
    pub async fn send(
        &self,
        node: usize,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Answer, reqwest::Error> {
        let url = format!("{}://{}{path}", self.scheme, self.nodes[node].peer.addr);
        let mut request = self.client.request(method, url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let send = async {
            let response = request.send().await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            Ok(Answer {
                status,
                headers,
                body,
            })
        };
        tokio::time::timeout(LIMIT, send)
            .await
            .expect("answered in time")
    }
}

/// A provider at an address where nothing listens.
pub async fn refusing_peer() -> Peer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    drop(listener);
    Peer {
        id: "refusing".to_owned(),
        addr,
    }
}
