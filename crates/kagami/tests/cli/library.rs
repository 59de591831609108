//! The library's own safe defaults: what an embedder gets from
//! `kagami::Node::builder()` without the binary's flags.

use std::time::Duration;

use kagami_store::testing::ImageSpec;

use crate::cluster::{Cluster, archive, hold, keys};
use crate::harness::stays;
use crate::pull::manifest;

/// Regression: `Node::builder()` with default P2P options shared
/// `localhost` registries; the rule that never shares them lived only in
/// the binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_library_node_never_shares_local_registries() {
    let cluster = Cluster::start(1).await;
    let node = &cluster.nodes[0];
    let public = ImageSpec::new("docker.io/team/app:1", &[1_000]).seed(61);
    let local = ImageSpec::new("localhost:5000/team/app:1", &[1_000]).seed(62);
    let loopback = ImageSpec::new("127.0.0.1:5000/team/app:2", &[1_000]).seed(63);
    let (public_archive, public) = archive(cluster.dir(), public).await;
    let (local_archive, local) = archive(cluster.dir(), local).await;
    let (loopback_archive, loopback) = archive(cluster.dir(), loopback).await;
    let layout = node.layout().unwrap();
    layout.import(&local_archive).await.unwrap();
    layout.import(&loopback_archive).await.unwrap();
    hold(node, &public_archive, keys(&public)).await;

    let addr = node.registry_addr();
    assert_eq!(manifest(addr, &public.reference, "1").await.status(), 200);
    for (image, tag) in [(&local, "1"), (&loopback, "2")] {
        let response = manifest(addr, &image.reference, tag).await;
        assert_eq!(response.status(), 404, "{} is served", image.reference);
        let body = response.text().await.unwrap();
        assert!(body.contains("NAME_UNKNOWN"), "{body}");
    }
    // Only the public image's keys are advertised, then and later.
    let p2p = node.p2p().unwrap();
    stays(
        "only the public image to be advertised",
        Duration::from_secs(2),
        || async { p2p.advertised_keys() == keys(&public) },
    )
    .await;
}
