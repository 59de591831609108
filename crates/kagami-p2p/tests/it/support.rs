//! Test helpers: a small in-memory `Store`, libp2p node configs on
//! ephemeral loopback ports, and polling with a deadline.

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kagami_core::store::{BlobStream, ContentInfo, ContentKind, Event, EventStream, Image, Store};
use kagami_core::{Algorithm, Digest, Key, MediaType, Reference, store};
use kagami_p2p::{Config, Keypair, Multiaddr, Psk, Router};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

/// How long any condition may take to come true, generous for a loaded
/// 2-core machine; polling returns as soon as it holds.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `check` every 50 ms until it is true; panics after [`DEADLINE`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts `check` stays true for `period`.
pub async fn stays<F, Fut>(what: &str, period: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < period {
        assert!(check().await, "{what} stopped holding");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn digest(n: u8) -> Digest {
    Digest::from_hash(Algorithm::Sha256, &[n; 32])
}

pub fn image(reference: &str, n: u8) -> Image {
    Image {
        reference: reference.parse().unwrap(),
        digest: digest(n),
        media_type: MediaType::OciManifest,
        size: 100,
    }
}

pub fn tag_key(reference: &str) -> Key {
    Key::for_tag(&reference.parse::<Reference>().unwrap()).unwrap()
}

/// A config for a node on an ephemeral loopback port, with timings short
/// enough for tests.
pub fn config(psk: &Psk, registry_port: u16, bootstrap: &[&Router]) -> Config {
    let mut config = Config::new(Keypair::generate_ed25519(), psk.clone());
    config.listen = "/ip4/127.0.0.1/tcp/0".parse().unwrap();
    config.bootstrap = bootstrap.iter().map(|r| dial_addr(r)).collect();
    config.registry_port = registry_port;
    config.cache_ttl = Duration::from_millis(200);
    config.handshake_timeout = Duration::from_secs(2);
    config.bootstrap_interval = Duration::from_millis(500);
    config.max_bootstrap_backoff = Duration::from_secs(2);
    config
}

/// Starts a node with [`config`].
pub async fn start(psk: &Psk, registry_port: u16, bootstrap: &[&Router]) -> Router {
    Router::start(config(psk, registry_port, bootstrap))
        .await
        .unwrap()
}

/// A node's address with its peer ID, as an operator would write it.
pub fn dial_addr(router: &Router) -> Multiaddr {
    router.listen_addrs()[0]
        .clone()
        .with_p2p(router.peer_id())
        .unwrap()
}

/// An in-memory store: tests change what it holds, with or without
/// telling subscribers.
pub struct TestStore {
    state: Mutex<State>,
    events: broadcast::Sender<Event>,
}

#[derive(Default)]
struct State {
    images: Vec<Image>,
    content: BTreeMap<Digest, ContentInfo>,
    /// Manifest bodies, for stores whose images link content.
    manifests: BTreeMap<Digest, bytes::Bytes>,
}

impl TestStore {
    pub fn new() -> Arc<TestStore> {
        Arc::new(TestStore {
            state: Mutex::new(State::default()),
            events: broadcast::channel(64).0,
        })
    }

    /// Holds `digest` from now on, silently.
    pub fn hold(&self, digest: Digest) {
        let info = ContentInfo {
            digest: digest.clone(),
            size: 1,
            kind: ContentKind::Blob,
        };
        self.state.lock().unwrap().content.insert(digest, info);
    }

    pub fn drop_content(&self, digest: &Digest) {
        self.state.lock().unwrap().content.remove(digest);
    }

    /// Names `image` (and holds its manifest), silently.
    /// Makes `digest(manifest)` a manifest whose config and layers are
    /// `digest(n)` for each of `children`, all held.
    pub fn link(&self, manifest: u8, children: &[u8]) {
        let link = |n: u8| format!(r#"{{"digest":"{}"}}"#, digest(n));
        let (config, layers) = children.split_first().expect("a config");
        let layers: Vec<String> = layers.iter().map(|n| link(*n)).collect();
        let body = format!(
            r#"{{"config":{},"layers":[{}]}}"#,
            link(*config),
            layers.join(",")
        );
        for n in children {
            self.hold(digest(*n));
        }
        self.state
            .lock()
            .unwrap()
            .manifests
            .insert(digest(manifest), body.into());
    }

    pub fn tag(&self, image: Image) {
        self.hold(image.digest.clone());
        let mut state = self.state.lock().unwrap();
        state.images.retain(|i| i.reference != image.reference);
        state.images.push(image);
    }

    pub fn untag(&self, reference: &str) {
        let reference: Reference = reference.parse().unwrap();
        self.state
            .lock()
            .unwrap()
            .images
            .retain(|i| i.reference != reference);
    }

    pub fn emit(&self, event: Event) {
        self.events.send(event).unwrap();
    }

    pub fn subscribers(&self) -> usize {
        self.events.receiver_count()
    }
}

fn unsupported() -> store::Error {
    store::Error::Unavailable {
        reason: "not needed by the advertiser".to_owned(),
    }
}

#[async_trait::async_trait]
impl Store for TestStore {
    async fn list_images(&self) -> Result<Vec<Image>, store::Error> {
        Ok(self.state.lock().unwrap().images.clone())
    }

    async fn list_content(&self) -> Result<Vec<ContentInfo>, store::Error> {
        Ok(self
            .state
            .lock()
            .unwrap()
            .content
            .values()
            .cloned()
            .collect())
    }

    async fn resolve(&self, _: &Reference) -> Result<Image, store::Error> {
        Err(unsupported())
    }

    async fn stat(&self, digest: &Digest) -> Result<ContentInfo, store::Error> {
        let state = self.state.lock().unwrap();
        state
            .content
            .get(digest)
            .cloned()
            .ok_or_else(|| store::Error::ContentNotFound {
                digest: digest.clone(),
            })
    }

    async fn read_manifest(
        &self,
        digest: &Digest,
    ) -> Result<(MediaType, bytes::Bytes), store::Error> {
        let body = self.state.lock().unwrap().manifests.get(digest).cloned();
        body.map(|body| (MediaType::OciManifest, body))
            .ok_or_else(unsupported)
    }

    async fn read(&self, _: &Digest, _: Option<Range<u64>>) -> Result<BlobStream, store::Error> {
        Err(unsupported())
    }

    fn events(&self) -> EventStream {
        let stream = BroadcastStream::new(self.events.subscribe());
        Box::pin(stream.map(|event| event.unwrap_or(Event::Resync)))
    }
}
