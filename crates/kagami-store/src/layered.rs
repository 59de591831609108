//! Two stores seen as one: what the node holds (its own store) over what it
//! keeps for the cluster (the pull-through cache). Every read asks the
//! first, then the second; listings and events are both stores'. Images
//! come from the first only: the cache holds content, not names.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::StreamExt;
use kagami_core::store::{BlobStream, ContentInfo, Error, EventStream, Image, Store};
use kagami_core::{Digest, MediaType, Reference};

/// A store over a cache. Cheap to clone.
#[derive(Clone)]
pub struct Layered {
    store: Arc<dyn Store>,
    cache: Arc<dyn Store>,
    hits: Arc<AtomicU64>,
}

impl std::fmt::Debug for Layered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layered")
            .field("cache_hits", &self.cache_hits())
            .finish_non_exhaustive()
    }
}

impl Layered {
    /// `store` first, then `cache`.
    pub fn new(store: Arc<dyn Store>, cache: Arc<dyn Store>) -> Layered {
        Layered {
            store,
            cache,
            hits: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Reads answered by the cache so far.
    pub fn cache_hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    fn hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }
}

#[async_trait::async_trait]
impl Store for Layered {
    async fn list_images(&self) -> Result<Vec<Image>, Error> {
        self.store.list_images().await
    }

    async fn list_content(&self) -> Result<Vec<ContentInfo>, Error> {
        let mut content = self.store.list_content().await?;
        let held: std::collections::HashSet<Digest> =
            content.iter().map(|info| info.digest.clone()).collect();
        content.extend(
            self.cache
                .list_content()
                .await?
                .into_iter()
                .filter(|info| !held.contains(&info.digest)),
        );
        Ok(content)
    }

    async fn resolve(&self, reference: &Reference) -> Result<Image, Error> {
        self.store.resolve(reference).await
    }

    async fn stat(&self, digest: &Digest) -> Result<ContentInfo, Error> {
        match self.store.stat(digest).await {
            Err(e) if e.is_not_found() => self.cache.stat(digest).await,
            other => other,
        }
    }

    async fn read_manifest(&self, digest: &Digest) -> Result<(MediaType, Bytes), Error> {
        match self.store.read_manifest(digest).await {
            Err(Error::ContentNotFound { .. }) => {
                let found = self.cache.read_manifest(digest).await;
                if found.is_ok() {
                    self.hit();
                }
                found
            }
            other => other,
        }
    }

    async fn read(&self, digest: &Digest, range: Option<Range<u64>>) -> Result<BlobStream, Error> {
        match self.store.read(digest, range.clone()).await {
            Err(Error::ContentNotFound { .. }) => {
                let found = self.cache.read(digest, range).await;
                if found.is_ok() {
                    self.hit();
                }
                found
            }
            other => other,
        }
    }

    fn events(&self) -> EventStream {
        Box::pin(futures::stream::select(self.store.events(), self.cache.events()).boxed())
    }
}
