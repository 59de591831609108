//! The conformance kit every [`Store`] backend runs: it imports fixture
//! archives through a [`Harness`] and checks everything the registry and
//! the advertiser rely on — listing, resolving, stat, manifests, whole and
//! ranged reads that hash to their digests, not-found errors, multi-platform
//! indexes, removal with shared blobs kept, moved tags, and events. Every
//! wait is bounded; the first failure panics with a message saying what the
//! store did wrong.

mod checks;
mod events;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kagami_core::Reference;
use kagami_core::store::{Image, Store};

use crate::testing::{ArchiveFormat, BuiltImage, Compression, ImageSpec, write_archive};
use events::Watch;

/// What the kit needs from a backend under test.
#[async_trait::async_trait]
pub trait Harness: Send + Sync {
    /// The store under test.
    fn store(&self) -> Arc<dyn Store>;
    /// Puts the images of an archive (as written by
    /// [`testing::write_archive`](crate::testing::write_archive)) into the
    /// backend and returns once the store serves them. Every platform of a
    /// multi-platform image must be kept (the kit reads them all).
    async fn import(&self, archive: &Path) -> Vec<Image>;
    /// Removes the named image from the backend (and lets the backend
    /// garbage-collect).
    async fn remove(&self, reference: &Reference);
}

/// How long any one store call or harness step may take.
const STEP: Duration = Duration::from_secs(60);

/// Runs every conformance check against a fresh, empty backend; panics
/// with a clear message on the first failure. `scratch` is a directory for
/// the fixture archives.
pub async fn run<H: Harness>(harness: &H, scratch: &Path) {
    let store = harness.store();
    let store = &*store;
    let mut watch = Watch::new(store);
    checks::starts_empty(store).await;

    // alpha and shared have the same first layer; multi is an index.
    let alpha = ImageSpec::new("conformance/alpha:1", &[300_001, 2_000]).seed(1);
    let shared = ImageSpec::new(
        "registry.example:5000/conformance/shared:2",
        &[300_001, 4_000],
    )
    .seed(1);
    let multi = ImageSpec::new("conformance/multi:3", &[50_000, 1_000])
        .platforms(&[("linux", "amd64"), ("linux", "arm64")])
        .seed(2);
    let built = import(harness, scratch, &[alpha, shared, multi]).await;
    let [alpha, shared, multi] = &built[..] else {
        panic!(
            "store conformance: fixture writer returned {} images, wanted 3",
            built.len()
        );
    };
    watch
        .expect(
            store,
            events::added(&built),
            "importing alpha, shared and multi",
        )
        .await;

    for image in &built {
        checks::image(store, image).await;
    }
    checks::listings(store, &built).await;
    checks::not_found(store, alpha).await;
    let (layer, _) = checks::largest_blob(alpha);
    checks::ranges(store, &layer).await;
    checks::dropped_streams(store, &layer).await;

    within("removing alpha", harness.remove(&alpha.reference)).await;
    checks::name_gone(store, alpha).await;
    checks::content_released(store, alpha, &[shared, multi]).await;
    watch
        .expect(
            store,
            events::removed(alpha, &[shared, multi]),
            "removing alpha",
        )
        .await;

    // The tag of multi moves to a different, single-platform image.
    let moved = ImageSpec::new("conformance/multi:3", &[3_000]).seed(3);
    let moved = import(harness, scratch, &[moved]).await;
    let moved = &moved[0];
    let resolved = within("resolve after a tag moved", store.resolve(&moved.reference)).await;
    let resolved = resolved.unwrap_or_else(|e| {
        panic!(
            "store conformance: resolve {} after re-import: {e}",
            moved.reference
        )
    });
    assert_eq!(
        resolved.digest, moved.digest,
        "store conformance: re-importing {} did not move the name to the new image",
        moved.reference
    );
    checks::image(store, moved).await;
    checks::content_released(store, multi, &[shared, moved]).await;
    let mut expected = events::removed(multi, &[shared, moved]);
    expected.extend(events::added(std::slice::from_ref(moved)));
    watch.expect(store, expected, "moving a tag").await;
}

/// Writes an OCI archive of `specs` and imports it through the harness,
/// checking what the harness reports.
async fn import<H: Harness>(harness: &H, scratch: &Path, specs: &[ImageSpec]) -> Vec<BuiltImage> {
    let (archive, built) = write_archive(scratch, specs, ArchiveFormat::Oci, Compression::Gzip)
        .unwrap_or_else(|e| panic!("store conformance: cannot write the fixture archive: {e}"));
    let imported = within("importing an archive", harness.import(&archive)).await;
    for image in &built {
        let found = imported.iter().find(|i| i.reference == image.reference);
        let found = found.unwrap_or_else(|| {
            panic!(
                "store conformance: import did not report {} (reported {imported:?})",
                image.reference
            )
        });
        assert_eq!(
            (&found.digest, found.media_type),
            (&image.digest, image.media_type),
            "store conformance: import reported the wrong digest or type for {}",
            image.reference
        );
    }
    built
}

/// Awaits a step of the kit, panicking if it takes longer than [`STEP`].
pub(crate) async fn within<T>(what: &str, step: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(STEP, step).await {
        Ok(value) => value,
        Err(_) => panic!("store conformance: {what} did not finish within {STEP:?}"),
    }
}
