//! The conformance kit against `Layout`, and proof that the kit catches a
//! store that gets ranges wrong.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use kagami_core::store::{self, BlobStream, ContentInfo, EventStream, Image, Store};
use kagami_core::{Digest, MediaType, Reference};
use kagami_store::Layout;
use kagami_store::conformance::{Harness, run};

/// Runs the kit over any `Store` wrapping a layout.
struct LayoutHarness<S> {
    layout: Layout,
    store: Arc<S>,
}

#[async_trait::async_trait]
impl<S: Store> Harness for LayoutHarness<S> {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    async fn import(&self, archive: &Path) -> Vec<Image> {
        self.layout.import(archive).await.unwrap()
    }

    async fn remove(&self, reference: &Reference) {
        self.layout.remove(reference).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layout_passes_the_conformance_kit() {
    let root = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let layout = Layout::open(root.path().join("store")).await.unwrap();
    let harness = LayoutHarness {
        store: Arc::new(layout.clone()),
        layout,
    };
    run(&harness, scratch.path()).await;
}

/// A store that serves every range from the start of the content.
struct IgnoresRangeStart(Layout);

#[async_trait::async_trait]
impl Store for IgnoresRangeStart {
    async fn list_images(&self) -> Result<Vec<Image>, store::Error> {
        self.0.list_images().await
    }
    async fn list_content(&self) -> Result<Vec<ContentInfo>, store::Error> {
        self.0.list_content().await
    }
    async fn resolve(&self, reference: &Reference) -> Result<Image, store::Error> {
        self.0.resolve(reference).await
    }
    async fn stat(&self, digest: &Digest) -> Result<ContentInfo, store::Error> {
        self.0.stat(digest).await
    }
    async fn read_manifest(&self, digest: &Digest) -> Result<(MediaType, Bytes), store::Error> {
        self.0.read_manifest(digest).await
    }
    async fn read(
        &self,
        digest: &Digest,
        range: Option<Range<u64>>,
    ) -> Result<BlobStream, store::Error> {
        self.0.read(digest, range.map(|r| 0..r.end - r.start)).await
    }
    fn events(&self) -> EventStream {
        self.0.events()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "store conformance: read")]
async fn the_kit_catches_a_store_that_ignores_range_starts() {
    let root = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let layout = Layout::open(root.path()).await.unwrap();
    let harness = LayoutHarness {
        store: Arc::new(IgnoresRangeStart(layout.clone())),
        layout,
    };
    run(&harness, scratch.path()).await;
}
