//! The mirror path between in-process nodes: a node serves what only a
//! peer holds, by tag and by digest; `latest` only when enabled; and
//! content nobody holds is a prompt 404.

use std::time::Duration;

use kagami_core::store::Store as _;
use kagami_core::{Key, Reference};
use kagami_registry::MirrorConfig;
use kagami_store::testing::{BuiltImage, ImageSpec};

use crate::cluster::{Cluster, archive, hold, keys, peer_id, providers};
use crate::pull::{blob, client, eventually_manifest, manifest, pull_image, sha256, timed, url};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_the_image_serves_it_by_tag_and_digest_from_its_holder() {
    let cluster = Cluster::start(3).await;
    let [_, holder, puller] = &cluster.nodes[..] else {
        unreachable!()
    };
    let spec = ImageSpec::new("registry.example.com/team/app:v1", &[700_000, 2_000_000])
        .platforms(&[("linux", "amd64"), ("linux", "arm64")])
        .seed(21);
    let (archive, image) = archive(cluster.dir(), spec).await;
    cluster.joined().await;
    hold(holder, &archive, keys(&image)).await;

    let addr = puller.registry_addr();
    eventually_manifest(addr, &image.reference, "v1", &image.digest).await;
    let bytes = pull_image(addr, &image).await;
    let layers: u64 = image.blobs.values().sum();
    assert_eq!(bytes, layers);

    // Every byte came from the holder, and the puller kept none of it.
    let relayed = puller.mirror_stats().unwrap().bytes_relayed();
    let holder_id = peer_id(holder);
    assert_eq!(
        relayed.keys().collect::<Vec<_>>(),
        [&holder_id],
        "{relayed:?}"
    );
    assert!(relayed[&holder_id] >= layers, "{relayed:?}");
    assert!(
        puller
            .layout()
            .unwrap()
            .list_images()
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        puller
            .layout()
            .unwrap()
            .list_content()
            .await
            .unwrap()
            .is_empty()
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_nobody_holds_is_404_within_the_manifest_budget() {
    let cluster = Cluster::start(3).await;
    cluster.joined().await;
    let node = &cluster.nodes[1];
    let addr = node.registry_addr();
    let reference: Reference = "docker.io/library/nowhere:1".parse().unwrap();
    let (manifest_digest, blob_digest) = (sha256(b"no manifest"), sha256(b"no blob"));
    let budget = MirrorConfig::DEFAULT_MANIFEST_TIMEOUT + Duration::from_secs(2);
    let client = client();
    let requests = [
        (
            "manifest by tag",
            client.get(url(addr, &reference, "manifests", "1")),
            Some("MANIFEST_UNKNOWN"),
        ),
        (
            "manifest by digest",
            client.get(url(addr, &reference, "manifests", manifest_digest.as_str())),
            Some("MANIFEST_UNKNOWN"),
        ),
        (
            "blob",
            client.get(url(addr, &reference, "blobs", blob_digest.as_str())),
            Some("BLOB_UNKNOWN"),
        ),
        (
            "blob HEAD",
            client.head(url(addr, &reference, "blobs", blob_digest.as_str())),
            None,
        ),
    ];
    for (what, request, code) in requests {
        let (response, elapsed) = timed(request).await;
        assert_eq!(response.status(), 404, "{what}");
        assert!(elapsed < budget, "{what}: 404 after {elapsed:?}");
        if let Some(code) = code {
            let body = response.text().await.unwrap();
            assert!(body.contains(code), "{what}: {body}");
        }
    }
    // The network was asked, and named nobody.
    let stats = node.mirror_stats().unwrap();
    assert!(stats.lookups() >= 3, "{}", stats.lookups());
    assert_eq!(stats.lookup_failures(), stats.lookups());
    cluster.shutdown().await;
}

/// Two nodes, the first holding `docker.io/kagami/app:latest`, its
/// records in place; the image.
async fn latest_cluster(enabled: bool) -> (Cluster, BuiltImage) {
    let cluster = Cluster::start_with(2, |options| {
        options.mirror.resolve_latest = enabled;
        options.mirror.advertise_latest = enabled;
    })
    .await;
    let spec = ImageSpec::new("docker.io/kagami/app:latest", &[300_000]).seed(22);
    let (archive, image) = archive(cluster.dir(), spec).await;
    cluster.joined().await;
    let holder = &cluster.nodes[0];
    let tag_keys = usize::from(enabled);
    hold(holder, &archive, keys(&image) - 1 + tag_keys).await;
    // By digest it is served either way.
    let puller = cluster.nodes[1].registry_addr();
    eventually_manifest(
        puller,
        &image.reference,
        image.digest.as_str(),
        &image.digest,
    )
    .await;
    let (layer, size) = image.blobs.iter().next_back().unwrap();
    assert!(blob(puller, &image.reference, layer).await.is(layer, *size));
    (cluster, image)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_is_never_resolved_through_peers_by_default() {
    let (cluster, image) = latest_cluster(false).await;
    let [holder, puller] = &cluster.nodes[..] else {
        unreachable!()
    };
    let stats = puller.mirror_stats().unwrap();
    let lookups = stats.lookups();
    let started = std::time::Instant::now();
    let response = manifest(puller.registry_addr(), &image.reference, "latest").await;
    let elapsed = started.elapsed();
    assert_eq!(response.status(), 404);
    assert!(elapsed < Duration::from_secs(1), "404 after {elapsed:?}");
    assert_eq!(stats.lookups(), lookups, "`latest` was looked up");

    // Nor is the tag advertised: only the digests are.
    assert_eq!(holder.p2p().unwrap().advertised_keys(), keys(&image) - 1);
    let tag = Key::for_tag(&image.reference).unwrap();
    assert!(providers(puller, &tag).await.is_empty());
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_is_resolved_through_peers_when_enabled() {
    let (cluster, image) = latest_cluster(true).await;
    let puller = cluster.nodes[1].registry_addr();
    eventually_manifest(puller, &image.reference, "latest", &image.digest).await;
    cluster.shutdown().await;
}
