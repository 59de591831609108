//! What an import killed part-way leaves (blobs moved in but never named
//! by `index.json`, staging files in `.tmp`) is removed by the garbage
//! collection and by the next import; what the index references stays.

use std::fs;
use std::path::Path;

use kagami_core::Digest;
use kagami_store::Collected;
use kagami_store::testing::{ArchiveFormat, BuiltImage, Compression, ImageSpec};

use crate::support::{Fixture, assert_serves, blob_files, leftovers, open};

/// Leaves in `fx`'s layout what a kill between moving an import's blobs
/// and rewriting `index.json` leaves: the blobs of an image no entry
/// names, plus a staging directory and a half-written index copy. Returns
/// the orphan blobs and their bytes.
async fn crash_mid_commit(fx: &Fixture, seed: u64) -> (Vec<Digest>, u64) {
    let (archive, built) = fx.archive(
        ImageSpec::new("orphan:1", &[300_000, 5_000]).seed(seed),
        ArchiveFormat::Oci,
        Compression::Gzip,
    );
    // The same import done elsewhere gives exactly the files it moves in.
    let elsewhere = tempfile::tempdir().unwrap();
    open(elsewhere.path()).await.import(&archive).await.unwrap();
    let mut orphans = Vec::new();
    let mut bytes = 0;
    for digest in all_digests(&built) {
        let from = elsewhere.path().join("blobs/sha256").join(digest.hex());
        let to = fx.root.path().join("blobs/sha256").join(digest.hex());
        bytes += fs::copy(&from, &to).unwrap();
        orphans.push(digest);
    }
    let staging = fx.root.path().join(".tmp/import-killed");
    fs::create_dir_all(&staging).unwrap();
    fs::write(staging.join("incoming-7"), vec![7; 4096]).unwrap();
    fs::write(fx.root.path().join(".index-killed"), b"{\"schemaVer").unwrap();
    (orphans, bytes + 4096 + 11)
}

fn all_digests(built: &BuiltImage) -> Vec<Digest> {
    built
        .manifests
        .iter()
        .chain(built.blobs.keys())
        .cloned()
        .collect()
}

/// Files under `blobs/` must be exactly what `images` hold.
fn assert_only(root: &Path, images: &[&BuiltImage]) {
    let expected = images
        .iter()
        .flat_map(|i| all_digests(i))
        .map(|d| format!("sha256/{}", d.hex()))
        .collect();
    assert_eq!(blob_files(root), expected);
    assert!(leftovers(root).is_empty(), "{:?}", leftovers(root));
    let stray: Vec<_> = fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".index-"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_import_leaves_no_orphans_after_collection() {
    let fx = Fixture::new().await;
    let (archive, kept) = fx.archive(
        ImageSpec::new("kept:1", &[20_000, 3_000]).seed(1),
        ArchiveFormat::Docker,
        Compression::None,
    );
    fx.layout.import(&archive).await.unwrap();
    let (orphans, bytes) = crash_mid_commit(&fx, 2).await;
    assert!(blob_files(fx.root.path()).len() > 5);

    let collected = fx.layout.collect_garbage().await.unwrap();
    assert_eq!(
        collected,
        Collected {
            blobs_removed: orphans.len() as u64,
            bytes_freed: bytes,
            temp_entries_removed: 2,
        }
    );
    assert_only(fx.root.path(), &[&kept]);
    assert_serves(&fx.layout, &kept).await;
    // Nothing left to collect.
    assert!(
        !fx.layout
            .collect_garbage()
            .await
            .unwrap()
            .removed_anything()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_import_leaves_no_orphans_after_the_next_import() {
    let fx = Fixture::new().await;
    let (first, kept) = fx.archive(
        ImageSpec::new("kept:1", &[20_000]).seed(3),
        ArchiveFormat::Oci,
        Compression::None,
    );
    fx.layout.import(&first).await.unwrap();
    crash_mid_commit(&fx, 4).await;
    let (next, added) = fx.archive(
        ImageSpec::new("next:1", &[9_000]).seed(5),
        ArchiveFormat::Docker,
        Compression::Zstd,
    );
    fx.layout.import(&next).await.unwrap();
    assert_only(fx.root.path(), &[&kept, &added]);
    assert_serves(&fx.layout, &kept).await;
    assert_serves(&fx.layout, &added).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_that_cannot_be_read_stops_the_collection_deleting_blobs() {
    let fx = Fixture::new().await;
    let (archive, kept) = fx.archive(
        ImageSpec::new("kept:1", &[20_000]).seed(6),
        ArchiveFormat::Oci,
        Compression::None,
    );
    fx.layout.import(&archive).await.unwrap();
    crash_mid_commit(&fx, 7).await;
    let before = blob_files(fx.root.path());
    // What the broken manifest used is unknown: nothing may be deleted.
    let manifest = fx.root.path().join("blobs/sha256").join(kept.digest.hex());
    fs::write(&manifest, b"[not a manifest").unwrap();
    let collected = fx.layout.collect_garbage().await.unwrap();
    assert_eq!(collected.blobs_removed, 0);
    assert_eq!(blob_files(fx.root.path()), before);
    // Temporary files belong to no image: they go all the same.
    assert_eq!(collected.temp_entries_removed, 2);
    assert!(leftovers(fx.root.path()).is_empty());

    // Nor when the manifest cannot be read at all.
    fs::remove_file(&manifest).unwrap();
    fs::create_dir(&manifest).unwrap();
    let collected = fx.layout.collect_garbage().await.unwrap();
    assert_eq!(collected.blobs_removed, 0);
    assert_eq!(blob_files(fx.root.path()), before);
}
