//! A large layer streams through import and read in bounded chunks.

use futures::StreamExt;
use kagami_core::store::Store;
use kagami_store::testing::{ArchiveFormat, Compression, ImageSpec, write_archive};
use sha2::Digest as _;

use crate::support::open;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_layer_streams_in_and_out() {
    let scratch = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let layout = open(root.path()).await;
    let spec = [ImageSpec::new("big:1", &[64 * 1024 * 1024])];
    let (archive, built) =
        write_archive(scratch.path(), &spec, ArchiveFormat::Oci, Compression::None).unwrap();
    layout.import(&archive).await.unwrap();

    let (layer, size) = built[0].blobs.iter().max_by_key(|(_, s)| **s).unwrap();
    let mut stream = layout.read(layer, None).await.unwrap();
    let mut hasher = sha2::Sha256::new();
    let (mut total, mut largest) = (0u64, 0usize);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        largest = largest.max(chunk.len());
        total += chunk.len() as u64;
        hasher.update(&chunk);
    }
    assert_eq!(total, *size);
    let digest = kagami_core::Digest::from_hash(kagami_core::Algorithm::Sha256, &hasher.finalize());
    assert_eq!(&digest, layer);
    assert!(largest <= 256 * 1024, "a chunk of {largest} bytes");
}
