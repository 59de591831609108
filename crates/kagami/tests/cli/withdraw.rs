//! An image removed from its only holder stops being served at once, and
//! stops being found once the provider records it left behind expire.

use std::time::{Duration, Instant};

use kagami_core::Key;
use kagami_store::testing::ImageSpec;

use crate::cluster::{Cluster, archive, hold, keys, providers};
use crate::harness::eventually;
use crate::pull::{blob, eventually_manifest, manifest};

const RECORD_TTL: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_image_is_404_at_once_and_unfindable_after_the_record_ttl() {
    let cluster = Cluster::start_with(3, |options| {
        options.record_ttl = RECORD_TTL;
        options.republish_interval = Duration::from_secs(1);
    })
    .await;
    let [observer, holder, puller] = &cluster.nodes[..] else {
        unreachable!()
    };
    let spec = ImageSpec::new("docker.io/kagami/gone:1", &[250_000]).seed(51);
    let (archive, image) = archive(cluster.dir(), spec).await;
    cluster.joined().await;
    hold(holder, &archive, keys(&image)).await;
    let addr = puller.registry_addr();
    eventually_manifest(addr, &image.reference, "1", &image.digest).await;
    let (layer, size) = image.blobs.iter().next_back().unwrap();
    assert!(blob(addr, &image.reference, layer).await.is(layer, *size));
    // A third node finds the holder too (its answer stays cached a while).
    let layer_key = Key::Digest(layer.clone());
    assert_eq!(providers(observer, &layer_key).await.len(), 1);

    holder
        .layout()
        .unwrap()
        .remove(&image.reference)
        .await
        .unwrap();
    // The holder answers peers from its own store only: from now on the
    // puller's cached providers lead nowhere.
    assert_eq!(manifest(addr, &image.reference, "1").await.status(), 404);
    let by_digest = manifest(addr, &image.reference, image.digest.as_str()).await;
    assert_eq!(by_digest.status(), 404);
    assert_eq!(blob(addr, &image.reference, layer).await.status, 404);
    let p2p = holder.p2p().unwrap();
    eventually("the holder to withdraw every key", || async {
        (p2p.advertised_keys() == 0).then_some(())
    })
    .await;
    let withdrawn = Instant::now();

    // Once the records have had their TTL, the network names nobody
    // (announcements sent just before the withdrawal may land a little
    // later, and an answer the observer got stays cached a few seconds).
    tokio::time::sleep_until((withdrawn + RECORD_TTL).into()).await;
    let tag = Key::for_tag(&image.reference).unwrap();
    for key in [tag, Key::Digest(image.digest.clone()), layer_key] {
        eventually(&format!("{key} to be forgotten"), || async {
            providers(observer, &key).await.is_empty().then_some(())
        })
        .await;
    }
    assert_eq!(manifest(addr, &image.reference, "1").await.status(), 404);
    cluster.shutdown().await;
}
