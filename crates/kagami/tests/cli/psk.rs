//! The pre-shared key is the cluster's boundary: a node with another key
//! finds nothing, is never served, and never serves.

use std::time::Duration;

use kagami_core::Key;
use kagami_p2p::Psk;
use kagami_store::testing::ImageSpec;

use crate::cluster::{Cluster, archive, hold, keys, peer_id, providers, routing_peers};
use crate::harness::stays;
use crate::pull::{blob, client, eventually_manifest, manifest, timed, url};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_psk_finds_nothing_and_is_never_served() {
    let cluster = Cluster::start(2).await;
    let [holder, member] = &cluster.nodes[..] else {
        unreachable!()
    };
    let other_psk = cluster.dir().join("other-psk");
    Psk::generate().write(&other_psk).unwrap();
    // It knows where the cluster is: it joins through the holder.
    let outsider = cluster.spawn(&other_psk, &|_| {}).await;

    let inside = ImageSpec::new("docker.io/kagami/inside:1", &[200_000]).seed(31);
    let outside = ImageSpec::new("docker.io/kagami/outside:1", &[200_000]).seed(32);
    let (inside_archive, inside) = archive(cluster.dir(), inside).await;
    let (outside_archive, outside) = archive(cluster.dir(), outside).await;
    cluster.joined().await;
    hold(holder, &inside_archive, keys(&inside)).await;
    hold(&outsider, &outside_archive, keys(&outside)).await;

    // Within the cluster the image is served, so the network works.
    eventually_manifest(
        member.registry_addr(),
        &inside.reference,
        "1",
        &inside.digest,
    )
    .await;

    // The outsider cannot pull it, and learns so quickly.
    let (layer, _) = inside.blobs.iter().next_back().unwrap();
    let addr = outsider.registry_addr();
    let (response, elapsed) =
        timed(client().get(url(addr, &inside.reference, "manifests", "1"))).await;
    assert_eq!(response.status(), 404);
    assert!(elapsed < Duration::from_secs(5), "404 after {elapsed:?}");
    assert_eq!(blob(addr, &inside.reference, layer).await.status, 404);
    let outsider_stats = outsider.mirror_stats().unwrap();
    assert!(outsider_stats.lookups() >= 1);
    assert_eq!(outsider_stats.lookup_failures(), outsider_stats.lookups());
    assert!(outsider_stats.bytes_relayed().is_empty());

    // Nobody in the cluster gets the outsider's image, or finds it.
    let (outside_layer, _) = outside.blobs.iter().next_back().unwrap();
    for node in [holder, member] {
        let addr = node.registry_addr();
        assert_eq!(manifest(addr, &outside.reference, "1").await.status(), 404);
        assert_eq!(
            blob(addr, &outside.reference, outside_layer).await.status,
            404
        );
        let key = Key::Digest(outside.digest.clone());
        assert!(providers(node, &key).await.is_empty());
        let relayed = node.mirror_stats().unwrap().bytes_relayed();
        assert!(!relayed.contains_key(&peer_id(&outsider)), "{relayed:?}");
    }

    // It never gets into anyone's routing table, nor they into its.
    stays(
        "the outsider to stay alone",
        Duration::from_secs(2),
        || async {
            routing_peers(&outsider) == 0
                && routing_peers(holder) == 1
                && routing_peers(member) == 1
        },
    )
    .await;
    outsider.shutdown().await.unwrap();
    cluster.shutdown().await;
}
