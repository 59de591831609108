//! A provider whose copy of a blob is corrupt: the client never receives a
//! complete wrong blob, and once an honest holder appears the bad one is
//! skipped.

use kagami_store::testing::ImageSpec;

use crate::cluster::{Cluster, archive, hold, keys, largest_blob, peer_id};
use crate::harness::eventually;
use crate::pull::blob;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_bytes_from_a_provider_are_never_passed_on_whole_and_it_is_skipped() {
    let cluster = Cluster::start(3).await;
    let [honest, corrupt, puller] = &cluster.nodes[..] else {
        unreachable!()
    };
    let spec = ImageSpec::new("docker.io/kagami/rot:1", &[3_000_000, 40_000]).seed(61);
    let (archive, image) = archive(cluster.dir(), spec).await;
    let (layer, size) = largest_blob(&image);
    cluster.joined().await;
    hold(corrupt, &archive, keys(&image)).await;
    // Same size, a few bytes flipped: the layout serves the file as it is.
    let file = corrupt
        .layout()
        .unwrap()
        .root()
        .join("blobs/sha256")
        .join(layer.hex());
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    for byte in &mut bytes[middle..middle + 16] {
        *byte ^= 0xff;
    }
    std::fs::write(&file, &bytes).unwrap();

    // Only the corrupt copy exists: the body is cut short, never whole.
    let addr = puller.registry_addr();
    let reference = &image.reference;
    let first = eventually("the corrupt holder to be found", || async {
        let received = blob(addr, reference, &layer).await;
        (received.status != 404).then_some(received)
    })
    .await;
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(first.length, Some(size));
    assert!(first.bytes < size, "a complete wrong blob: {first:?}");
    let stats = puller.mirror_stats().unwrap();
    let failures = stats.verify_failures();
    assert!(failures >= 1);
    let corrupt_id = peer_id(corrupt);
    let from_corrupt = stats.bytes_relayed_from(&corrupt_id);
    assert!(from_corrupt > 0);

    // An honest holder appears: the blob is served whole from it, and the
    // corrupt one is not asked again.
    hold(honest, &archive, keys(&image)).await;
    let second = eventually("the honest holder to serve the blob", || async {
        let received = blob(addr, reference, &layer).await;
        (received.status != 404).then_some(received)
    })
    .await;
    assert!(second.is(&layer, size), "{second:?}");
    assert_eq!(stats.verify_failures(), failures);
    assert_eq!(stats.bytes_relayed_from(&corrupt_id), from_corrupt);
    assert!(stats.bytes_relayed_from(&peer_id(honest)) >= size);
    cluster.shutdown().await;
}
