//! The advertiser: keeps the router's provided keys equal to what the store
//! holds, following the store's events.
//!
//! It keeps a model of the store (tags → manifest digest, readable
//! digests), computes the keys that should be advertised from it, and
//! provides or withdraws the difference with what the router last accepted.
//! Working from the difference makes a [`Event::Resync`], a reconnect of the
//! event stream and a retry after a router error all the same operation.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use kagami_core::router::Router;
use kagami_core::store::Image;
use kagami_core::store::{Event, Store};
use kagami_core::{Digest, Key, Registry, RegistrySet};
use tokio::task::JoinHandle;

use crate::holdings::Holdings;

/// Keys handed to the router per call, so one call stays small.
const CHUNK: usize = 512;
/// Events applied before the router is told, when they arrive in a burst.
const EVENT_BATCH: usize = 256;
/// First wait after a failed listing, a failed router call or a closed
/// event stream; doubled on each failure in a row.
const RETRY_MIN: Duration = Duration::from_millis(500);
/// Longest wait between retries.
const RETRY_MAX: Duration = Duration::from_secs(30);

/// What to advertise of what the store holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdvertisePolicy {
    /// Advertise tags named `latest` too. Off by default (as in K3s): a
    /// `latest` resolved from a peer is whatever that peer pulled last.
    pub advertise_latest: bool,
    /// Only images of these registries, and the content they reach, are
    /// advertised (default: all, everything held). A node shares only
    /// the registries it mirrors, so an image pulled from a private
    /// registry stays private unless that registry is mirrored too.
    pub registries: RegistrySet,
}

impl AdvertisePolicy {
    fn shares(&self, registry: &Registry) -> bool {
        self.registries.contains(registry)
    }
}

/// A running advertiser; it stops when dropped (the router's records then
/// expire on their own).
#[derive(Debug)]
pub struct Advertiser {
    task: JoinHandle<()>,
    advertised: Arc<Mutex<BTreeSet<Key>>>,
}

impl Advertiser {
    /// Starts advertising what `store` holds through `router`: everything
    /// listed now, then each change. Needs a tokio runtime.
    pub fn spawn(
        store: Arc<dyn Store>,
        router: Arc<dyn Router>,
        policy: AdvertisePolicy,
    ) -> Advertiser {
        Advertiser::spawn_with_cache(store, None, router, policy)
    }

    /// Like [`Advertiser::spawn`], also advertising every digest `cache`
    /// (the pull-through cache) holds or receives, from the moment it
    /// starts arriving until it is evicted: it was fetched for a shared
    /// registry, and no image reaches it.
    pub fn spawn_with_cache(
        store: Arc<dyn Store>,
        cache: Option<Arc<dyn Store>>,
        router: Arc<dyn Router>,
        policy: AdvertisePolicy,
    ) -> Advertiser {
        let advertised = Arc::new(Mutex::new(BTreeSet::new()));
        let task = Task {
            store,
            cache,
            router,
            holdings: Holdings::new(policy.clone()),
            policy,
            advertised: Arc::clone(&advertised),
        };
        Advertiser {
            task: tokio::spawn(task.run()),
            advertised,
        }
    }

    /// The keys the router has accepted as provided, for metrics and tests.
    pub fn snapshot(&self) -> BTreeSet<Key> {
        lock(&self.advertised).clone()
    }
}

impl Drop for Advertiser {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Task {
    policy: AdvertisePolicy,
    store: Arc<dyn Store>,
    cache: Option<Arc<dyn Store>>,
    router: Arc<dyn Router>,
    holdings: Holdings,
    advertised: Arc<Mutex<BTreeSet<Key>>>,
}

impl Task {
    async fn run(mut self) {
        let mut retry = RETRY_MIN;
        loop {
            // Subscribe before listing, so nothing changes unseen between.
            let store_events = self.store.events().map(Source::Store);
            let mut events: futures::stream::BoxStream<'static, Source> = match &self.cache {
                Some(cache) => Box::pin(futures::stream::select(
                    store_events,
                    cache.events().map(Source::Cache),
                )),
                None => Box::pin(store_events),
            };
            if let Err(e) = self.relist().await {
                tracing::warn!(error = %e, "cannot list the store to advertise it; retrying");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(RETRY_MAX);
                continue;
            }
            retry = RETRY_MIN;
            if self.follow(&mut events).await {
                tracing::warn!("store event stream ended; subscribing again");
                tokio::time::sleep(RETRY_MIN).await;
            }
        }
    }

    /// Applies events until the stream ends (returns true) or asks for a
    /// relisting (returns false).
    async fn follow(&mut self, events: &mut futures::stream::BoxStream<'static, Source>) -> bool {
        let mut retry = RETRY_MIN;
        loop {
            let in_sync = self.sync().await;
            retry = if in_sync {
                RETRY_MIN
            } else {
                (retry * 2).min(RETRY_MAX)
            };
            let event = if in_sync {
                events.next().await
            } else {
                match tokio::time::timeout(retry, events.next()).await {
                    Ok(event) => event,
                    Err(_) => continue,
                }
            };
            let Some(mut next) = event else {
                return true;
            };
            let mut applied = 0;
            let mut relist = false;
            loop {
                match next {
                    Source::Store(Event::Resync) | Source::Cache(Event::Resync) => return false,
                    Source::Cache(event) => self.apply_cached(event),
                    // With a registry filter, which content an image
                    // reaches decides what is shared: relist rather than
                    // patch.
                    Source::Store(_) if self.policy.registries != RegistrySet::All => {
                        relist = true;
                    }
                    Source::Store(event) => self.apply(event).await,
                }
                applied += 1;
                if applied == EVENT_BATCH {
                    break;
                }
                match events.next().now_or_never() {
                    Some(Some(more)) => next = more,
                    Some(None) => return true,
                    None => break,
                }
            }
            if relist && self.relist().await.is_err() {
                return false;
            }
        }
    }

    async fn relist(&mut self) -> Result<(), kagami_core::store::Error> {
        if let Some(cache) = &self.cache {
            let cached = cache.list_content().await?;
            self.holdings
                .replace_cached(cached.into_iter().map(|info| info.digest));
        }
        let images = self.store.list_images().await?;
        let content = self.store.list_content().await?;
        let held = content.into_iter().map(|info| info.digest);
        if self.policy.registries == RegistrySet::All {
            self.holdings.replace(images, held);
            return Ok(());
        }
        let (shared, private): (Vec<Image>, Vec<Image>) = images
            .into_iter()
            .partition(|image| self.policy.shares(image.reference.registry()));
        if !private.is_empty() {
            tracing::debug!(
                images = private.len(),
                "not advertising images of registries this node does not mirror"
            );
        }
        let reachable = self.reachable(&shared).await;
        let held: Vec<Digest> = held.filter(|d| reachable.contains(d)).collect();
        self.holdings.replace(shared, held.into_iter());
        Ok(())
    }

    /// Every digest `images` reach: their manifests, and what those link.
    async fn reachable(&self, images: &[Image]) -> HashSet<Digest> {
        let mut seen = HashSet::new();
        let mut queue: Vec<Digest> = images.iter().map(|i| i.digest.clone()).collect();
        while let Some(digest) = queue.pop() {
            if !seen.insert(digest.clone()) {
                continue;
            }
            // Configs and layers are not manifests: reading them as such
            // fails cheaply, and they link nothing.
            if let Ok((media_type, bytes)) = self.store.read_manifest(&digest).await {
                queue.extend(kagami_core::manifest::children(media_type, &bytes));
            }
        }
        seen
    }

    async fn apply(&mut self, event: Event) {
        match event {
            Event::ImageAdded(image) => {
                if self.readable(&image.digest).await {
                    self.holdings.content_added(image.digest.clone());
                }
                self.holdings.image_added(&image);
            }
            Event::ImageRemoved(image) => self.holdings.image_removed(&image),
            Event::ContentAdded(digest) => {
                if self.readable(&digest).await {
                    self.holdings.content_added(digest);
                }
            }
            Event::ContentRemoved(digest) => self.holdings.content_removed(&digest),
            Event::Resync => {}
        }
    }

    fn apply_cached(&mut self, event: Event) {
        match event {
            Event::ContentAdded(digest) => self.holdings.cached_added(digest),
            Event::ContentRemoved(digest) => self.holdings.cached_removed(&digest),
            Event::ImageAdded(_) | Event::ImageRemoved(_) | Event::Resync => {}
        }
    }

    async fn readable(&self, digest: &kagami_core::Digest) -> bool {
        match self.store.stat(digest).await {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!(%digest, error = %e, "not advertising unreadable content");
                false
            }
        }
    }

    /// Tells the router the difference between what should be advertised
    /// and what is; true when it accepted all of it.
    async fn sync(&mut self) -> bool {
        let desired = self.holdings.desired();
        let (withdraw, provide): (Vec<Key>, Vec<Key>) = {
            let advertised = lock(&self.advertised);
            (
                advertised.difference(&desired).cloned().collect(),
                desired.difference(&advertised).cloned().collect(),
            )
        };
        for chunk in withdraw.chunks(CHUNK) {
            if let Err(e) = self.router.withdraw(chunk).await {
                tracing::warn!(error = %e, "cannot withdraw keys; will retry");
                return false;
            }
            let mut advertised = lock(&self.advertised);
            for key in chunk {
                advertised.remove(key);
            }
        }
        for chunk in provide.chunks(CHUNK) {
            if let Err(e) = self.router.provide(chunk).await {
                tracing::warn!(error = %e, "cannot provide keys; will retry");
                return false;
            }
            lock(&self.advertised).extend(chunk.iter().cloned());
        }
        true
    }
}

/// Which store an event came from.
enum Source {
    Store(Event),
    Cache(Event),
}

fn lock(set: &Mutex<BTreeSet<Key>>) -> MutexGuard<'_, BTreeSet<Key>> {
    set.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
