//! The individual checks of the conformance kit, each against what a
//! fixture image is known to hold.

use std::ops::Range;

use futures::StreamExt;
use kagami_core::store::{ContentKind, Error, Store};
use kagami_core::{Digest, MediaType, Reference};

use super::within;
use crate::hash::sha256;
use crate::testing::BuiltImage;

macro_rules! fail {
    ($($arg:tt)*) => { panic!("store conformance: {}", format!($($arg)*)) };
}

pub(super) async fn starts_empty(store: &dyn Store) {
    let images = within("list_images", store.list_images()).await;
    let images = images.unwrap_or_else(|e| fail!("list_images on an empty store: {e}"));
    if !images.is_empty() {
        fail!("the store must start empty, but lists {images:?}");
    }
}

/// Reads content whole or in part, in memory (fixtures are small).
pub(super) async fn read(
    store: &dyn Store,
    digest: &Digest,
    range: Option<Range<u64>>,
) -> Result<Vec<u8>, Error> {
    let what = format!("read {digest} {range:?}");
    within(&what, async {
        let mut stream = store.read(digest, range.clone()).await?;
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.unwrap_or_else(|e| fail!("{what}: the stream failed: {e}"));
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    })
    .await
}

/// Everything about one image: resolve, stat, manifests, blobs.
pub(super) async fn image(store: &dyn Store, image: &BuiltImage) {
    let name = &image.reference;
    let resolved = within("resolve", store.resolve(name)).await;
    let resolved = resolved.unwrap_or_else(|e| fail!("resolve {name}: {e}"));
    if (&resolved.digest, resolved.media_type) != (&image.digest, image.media_type) {
        fail!(
            "resolve {name} gave {resolved:?}, want digest {} type {}",
            image.digest,
            image.media_type
        );
    }
    // A digest in the reference is not checked by resolve.
    let with_digest = format!("{name}@{}", sha256(b"another")).parse::<Reference>();
    if let Ok(with_digest) = with_digest {
        let again = within("resolve", store.resolve(&with_digest)).await;
        if again.map(|i| i.digest).ok().as_ref() != Some(&image.digest) {
            fail!(
                "resolve {with_digest} must resolve by its tag to {}",
                image.digest
            );
        }
    }
    for (i, digest) in image.manifests.iter().enumerate() {
        let want = if i == 0 {
            image.media_type
        } else {
            MediaType::OciManifest
        };
        manifest(store, digest, want).await;
        if i == 0 && resolved.size != stat_size(store, digest).await {
            fail!(
                "resolve {name} gave size {}, stat says otherwise",
                resolved.size
            );
        }
    }
    for (digest, size) in &image.blobs {
        blob(store, digest, *size).await;
    }
}

async fn stat_size(store: &dyn Store, digest: &Digest) -> u64 {
    let info = within("stat", store.stat(digest)).await;
    info.unwrap_or_else(|e| fail!("stat {digest}: {e}")).size
}

async fn manifest(store: &dyn Store, digest: &Digest, want: MediaType) {
    let info = within("stat", store.stat(digest)).await;
    let info = info.unwrap_or_else(|e| fail!("stat of manifest {digest}: {e}"));
    if info.kind != ContentKind::Manifest(want) {
        fail!("stat {digest} says {:?}, want Manifest({want})", info.kind);
    }
    let read_back = within("read_manifest", store.read_manifest(digest)).await;
    let (media_type, bytes) = read_back.unwrap_or_else(|e| fail!("read_manifest {digest}: {e}"));
    if media_type != want {
        fail!("read_manifest {digest} says {media_type}, want {want}");
    }
    if sha256(&bytes) != *digest || bytes.len() as u64 != info.size {
        fail!(
            "read_manifest {digest} returned {} bytes hashing to {}",
            bytes.len(),
            sha256(&bytes)
        );
    }
    let streamed = read(store, digest, None).await;
    let streamed = streamed.unwrap_or_else(|e| fail!("read of manifest {digest}: {e}"));
    if streamed != bytes.as_ref() {
        fail!("read {digest} and read_manifest {digest} disagree");
    }
}

async fn blob(store: &dyn Store, digest: &Digest, size: u64) {
    let info = within("stat", store.stat(digest)).await;
    let info = info.unwrap_or_else(|e| fail!("stat of blob {digest}: {e}"));
    if (info.kind, info.size) != (ContentKind::Blob, size) {
        fail!(
            "stat {digest} says {:?} of {} bytes, want a Blob of {size}",
            info.kind,
            info.size
        );
    }
    match within("read_manifest", store.read_manifest(digest)).await {
        Err(Error::NotAManifest { .. }) => {}
        other => fail!(
            "read_manifest of blob {digest} must be NotAManifest, got {:?}",
            other.map(|(t, _)| t)
        ),
    }
    let bytes = read(store, digest, None).await;
    let bytes = bytes.unwrap_or_else(|e| fail!("read {digest}: {e}"));
    if bytes.len() as u64 != size || sha256(&bytes) != *digest {
        fail!(
            "read {digest} returned {} bytes hashing to {}",
            bytes.len(),
            sha256(&bytes)
        );
    }
}

/// `list_images` and `list_content` hold every image and digest.
pub(super) async fn listings(store: &dyn Store, built: &[BuiltImage]) {
    let images = within("list_images", store.list_images()).await;
    let images = images.unwrap_or_else(|e| fail!("list_images: {e}"));
    let content = within("list_content", store.list_content()).await;
    let content = content.unwrap_or_else(|e| fail!("list_content: {e}"));
    for image in built {
        if !images
            .iter()
            .any(|i| i.reference == image.reference && i.digest == image.digest)
        {
            fail!(
                "list_images lacks {} at {} (lists {images:?})",
                image.reference,
                image.digest
            );
        }
        let digests = image.manifests.iter().chain(image.blobs.keys());
        for digest in digests {
            let Some(info) = content.iter().find(|c| &c.digest == digest) else {
                fail!("list_content lacks {digest} of {}", image.reference);
            };
            let is_manifest = image.manifests.contains(digest);
            if matches!(info.kind, ContentKind::Manifest(_)) != is_manifest {
                fail!("list_content gives {digest} the kind {:?}", info.kind);
            }
            if let Some(size) = image.blobs.get(digest)
                && info.size != *size
            {
                fail!(
                    "list_content gives {digest} {} bytes, want {size}",
                    info.size
                );
            }
        }
    }
}

/// Unknown digests and names are the not-found errors, never failures.
pub(super) async fn not_found(store: &dyn Store, known: &BuiltImage) {
    let absent = sha256(b"kagami conformance: content nobody has");
    match within("stat", store.stat(&absent)).await {
        Err(Error::ContentNotFound { .. }) => {}
        other => fail!("stat of an unknown digest must be ContentNotFound, got {other:?}"),
    }
    match within("read_manifest", store.read_manifest(&absent)).await {
        Err(Error::ContentNotFound { .. }) => {}
        other => fail!(
            "read_manifest of an unknown digest must be ContentNotFound, got {:?}",
            other.map(|(t, _)| t)
        ),
    }
    match within("read", store.read(&absent, None)).await {
        Err(Error::ContentNotFound { .. }) => {}
        Err(e) => fail!("read of an unknown digest must be ContentNotFound, got {e}"),
        Ok(_) => fail!("read of an unknown digest must be ContentNotFound, got a stream"),
    }
    let unknown_tag = Reference::tagged(
        known.reference.registry().clone(),
        known.reference.repository().clone(),
        "no-such-tag"
            .parse::<kagami_core::Tag>()
            .unwrap_or_else(|e| fail!("{e}")),
    );
    for name in [
        unknown_tag,
        "conformance/nobody-has-this:1"
            .parse()
            .unwrap_or_else(|e| fail!("{e}")),
    ] {
        match within("resolve", store.resolve(&name)).await {
            Err(Error::ImageNotFound { .. }) => {}
            other => fail!("resolve {name} must be ImageNotFound, got {other:?}"),
        }
    }
}

/// The largest blob of an image (a layer) and its size.
pub(super) fn largest_blob(image: &BuiltImage) -> (Digest, u64) {
    image
        .blobs
        .iter()
        .max_by_key(|(_, size)| **size)
        .map(|(d, s)| (d.clone(), *s))
        .unwrap_or_else(|| fail!("fixture {} has no blobs", image.reference))
}

/// First byte, middle, last byte, tail, whole; and ranges outside.
pub(super) async fn ranges(store: &dyn Store, digest: &Digest) {
    let whole = read(store, digest, None).await;
    let whole = whole.unwrap_or_else(|e| fail!("read {digest}: {e}"));
    let size = whole.len() as u64;
    let mid = size / 2;
    for range in [0..1, mid..mid + 4097, size - 1..size, mid..size, 0..size] {
        let part = read(store, digest, Some(range.clone())).await;
        let part = part.unwrap_or_else(|e| fail!("read {digest} bytes {range:?}: {e}"));
        let want = &whole[range.start as usize..range.end as usize];
        if part != want {
            fail!(
                "read {digest} bytes {range:?} returned {} bytes that are not those bytes",
                part.len()
            );
        }
    }
    for range in [size..size + 1, 0..size + 1, size + 10..size + 20] {
        match within("read", store.read(digest, Some(range.clone()))).await {
            Err(Error::RangeOutOfBounds { size: told, .. }) if told == size => {}
            Err(e) => fail!(
                "read {digest} bytes {range:?} of {size} must be RangeOutOfBounds with the size, got {e}"
            ),
            Ok(_) => fail!(
                "read {digest} bytes {range:?} of {size} must be RangeOutOfBounds, got a stream"
            ),
        }
    }
}

/// Streams dropped unread or midway leave the store working.
pub(super) async fn dropped_streams(store: &dyn Store, digest: &Digest) {
    for chunks in [0, 1] {
        let stream = within("read", store.read(digest, None)).await;
        let mut stream = stream.unwrap_or_else(|e| fail!("read {digest}: {e}"));
        for _ in 0..chunks {
            let first = within("the first chunk", stream.next()).await;
            if !matches!(first, Some(Ok(_))) {
                fail!("read {digest} gave no first chunk");
            }
        }
        drop(stream);
    }
    let again = read(store, digest, None).await;
    let again = again.unwrap_or_else(|e| fail!("read {digest} after dropping streams: {e}"));
    if sha256(&again) != *digest {
        fail!("read {digest} after dropping streams returned other bytes");
    }
}

/// After `removed` is removed: its name is gone.
pub(super) async fn name_gone(store: &dyn Store, removed: &BuiltImage) {
    match within("resolve", store.resolve(&removed.reference)).await {
        Err(Error::ImageNotFound { .. }) => {}
        other => fail!(
            "resolve {} after its removal must be ImageNotFound, got {other:?}",
            removed.reference
        ),
    }
    let images = within("list_images", store.list_images()).await;
    let images = images.unwrap_or_else(|e| fail!("list_images: {e}"));
    if images.iter().any(|i| i.reference == removed.reference) {
        fail!(
            "list_images still lists {} after its removal",
            removed.reference
        );
    }
}

/// After `removed` lost its name: content it shared with `others` is still
/// served, the rest is gone.
pub(super) async fn content_released(
    store: &dyn Store,
    removed: &BuiltImage,
    others: &[&BuiltImage],
) {
    for digest in removed.manifests.iter().chain(removed.blobs.keys()) {
        if others
            .iter()
            .any(|o| o.blobs.contains_key(digest) || o.manifests.contains(digest))
        {
            let bytes = read(store, digest, None).await;
            let bytes = bytes.unwrap_or_else(|e| {
                fail!("{digest} is still used by another image but reading it fails: {e}")
            });
            if sha256(&bytes) != *digest {
                fail!("{digest}, shared with another image, no longer reads back");
            }
            continue;
        }
        match within("stat", store.stat(digest)).await {
            Err(Error::ContentNotFound { .. }) => {}
            other => fail!(
                "stat of {digest}, used only by the removed {}, must be ContentNotFound, got {other:?}",
                removed.reference
            ),
        }
        match within("read", store.read(digest, None)).await {
            Err(Error::ContentNotFound { .. }) => {}
            Err(e) => fail!("read of removed {digest} must be ContentNotFound, got {e}"),
            Ok(_) => fail!("read of removed {digest} must be ContentNotFound, got a stream"),
        }
    }
}
