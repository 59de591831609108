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

/// Regression: a node with a wrong PSK logged that it joined the P2P
/// network, logged its failing dials only at debug, and stayed alone.
#[tokio::test]
async fn a_node_with_a_wrong_psk_says_so_and_shows_no_peers() {
    use crate::harness::{Server, eventually, p2p_flags};
    let tmp = tempfile::tempdir().unwrap();
    let (psk_a, psk_b) = (tmp.path().join("psk-a"), tmp.path().join("psk-b"));
    Psk::generate().write(&psk_a).unwrap();
    Psk::generate().write(&psk_b).unwrap();
    let flags = p2p_flags(&psk_a, &[]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let a = Server::start(&tmp.path().join("a"), &flags);
    let a_p2p = a.status().await["listen"][0].as_str().unwrap().to_owned();
    let flags = p2p_flags(&psk_b, &[&a_p2p]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let b = Server::start(&tmp.path().join("b"), &flags);

    let warning = eventually("a warning naming the pre-shared key", || async {
        b.log()
            .lines()
            .find(|line| line.contains("WARN") && line.contains("pre-shared key"))
            .map(str::to_owned)
    })
    .await;
    let a_port = a_p2p.split('/').nth(4).unwrap();
    assert!(warning.contains(a_port), "names the peer tried: {warning}");
    assert!(!b.log().contains("joined the network"), "{}", b.log());

    let readyz = b.text("/readyz").await;
    assert_eq!(readyz, "ready; p2p peers: 0");
    let metrics = b.text("/metrics").await;
    assert!(metrics.contains("kagami_p2p_routing_peers 0"), "{metrics}");
    // One warning, not one per dial: the next may come minutes later.
    assert_eq!(
        b.log().matches("pre-shared key differs").count(),
        1,
        "{}",
        b.log()
    );
}
