//! Peers that fail: streams that break, bytes that lie, peers that are
//! slow or not there, and many requests at once for one key.

use std::time::Duration;

use kagami_core::{Key, MediaType, Reference};
use kagami_registry::MirrorConfig;

use super::unhurried;
use crate::support::*;

const SIZE: usize = 3 * 1024 * 1024;
/// Where broken streams break: past what a server buffers before it
/// writes, so that the response head and bytes went out before the break.
const BREAK_AT: u64 = 1_500_000;

/// A blob on nodes 1 and 2, which the router names in that order; its
/// path, and its bytes.
async fn on_nodes_1_and_2(config: MirrorConfig) -> (Cluster, String, Vec<u8>) {
    let cluster = Cluster::start(3, config).await;
    let bytes = pattern(SIZE);
    let digest = cluster.nodes[1].store.add_blob(bytes.clone());
    cluster.nodes[2].store.add_blob(bytes.clone());
    cluster.provide(digest.clone(), &[1, 2]);
    (cluster, format!("/v2/a/blobs/{digest}"), bytes)
}

#[tokio::test]
async fn a_stream_broken_mid_transfer_resumes_on_another_peer() {
    let (cluster, path, bytes) = on_nodes_1_and_2(unhurried()).await;
    cluster.nodes[1].store.break_streams_after(BREAK_AT);

    let answer = cluster.get(0, &path).await.unwrap();
    answer.assert_content("application/octet-stream", &bytes);
    let stats = cluster.nodes[0].mirror.stats();
    assert_eq!(stats.resumes(), 1);
    let (first, second) = (
        stats.bytes_relayed_from("node-1"),
        stats.bytes_relayed_from("node-2"),
    );
    assert!(
        first > 0 && first <= BREAK_AT && second > 0,
        "{first} + {second}"
    );
    assert_eq!(first + second, SIZE as u64);
}

#[tokio::test]
async fn a_stalled_stream_resumes_on_another_peer() {
    let config = MirrorConfig {
        stall_timeout: Duration::from_millis(300),
        ..unhurried()
    };
    let (cluster, path, bytes) = on_nodes_1_and_2(config).await;
    // Node 1 sends its first chunk, then nothing.
    cluster.nodes[1].store.set_gate(false);

    let answer = cluster.get(0, &path).await.unwrap();
    answer.assert_content("application/octet-stream", &bytes);
    let stats = cluster.nodes[0].mirror.stats();
    assert_eq!(stats.resumes(), 1);
    assert!(stats.bytes_relayed_from("node-1") > 0);
}

#[tokio::test]
async fn a_broken_range_resumes_too() {
    let (cluster, path, bytes) = on_nodes_1_and_2(unhurried()).await;
    cluster.nodes[1].store.break_streams_after(BREAK_AT);

    let range = [("range", "bytes=200000-")];
    let answer = cluster
        .send(0, http::Method::GET, &path, &range)
        .await
        .unwrap();
    assert_eq!(answer.status, 206);
    assert!(answer.body == bytes[200_000..], "wrong bytes");
    assert_eq!(cluster.nodes[0].mirror.stats().resumes(), 1);
}

#[tokio::test]
async fn a_corrupt_peer_never_delivers_a_whole_wrong_blob_and_is_then_skipped() {
    // One chunk and many: the last (or only) chunk is the one held back.
    for size in [1000, SIZE] {
        let cluster = Cluster::start(3, unhurried()).await;
        let right = pattern(size);
        let digest = cluster.nodes[2].store.add_blob(right.clone());
        let mut wrong = right.clone();
        wrong[size - 1] ^= 0xff;
        cluster.nodes[1]
            .store
            .insert_as(&digest, None, wrong.clone());
        cluster.provide(digest.clone(), &[1, 2]);
        let path = format!("/v2/a/blobs/{digest}");

        match cluster.get(0, &path).await {
            Err(_) => {}
            Ok(answer) => assert!(
                answer.status == 200 && answer.body == right,
                "{size}: the client got {} bytes that are not the blob",
                answer.body.len()
            ),
        }
        let stats = cluster.nodes[0].mirror.stats();
        assert_eq!(stats.verify_failures(), 1);
        let from_bad = stats.bytes_relayed_from("node-1");

        let answer = cluster.get(0, &path).await.unwrap();
        answer.assert_content("application/octet-stream", &right);
        assert_eq!(
            stats.bytes_relayed_from("node-1"),
            from_bad,
            "asked the bad peer again"
        );
    }
}

#[tokio::test]
async fn a_manifest_that_does_not_match_its_digest_is_taken_from_another_peer() {
    let cluster = Cluster::start(3, unhurried()).await;
    let json = manifest_json("right");
    let digest = cluster.nodes[2]
        .store
        .add_manifest(MediaType::OciManifest, json.clone());
    cluster.nodes[2]
        .store
        .tag("docker.io/library/app:1", &digest);
    let liar = &cluster.nodes[1].store;
    liar.insert_as(
        &digest,
        Some(MediaType::OciManifest),
        manifest_json("wrong"),
    );
    liar.tag("docker.io/library/app:1", &digest);
    let reference: Reference = "app:1".parse().unwrap();
    cluster.provide(Key::for_tag(&reference).unwrap(), &[1, 2]);
    cluster.provide(digest.clone(), &[1, 2]);

    for path in [
        "/v2/library/app/manifests/1".to_owned(),
        format!("/v2/library/app/manifests/{digest}"),
    ] {
        let answer = cluster.get(0, &path).await.unwrap();
        answer.assert_content(MediaType::OciManifest.as_str(), &json);
    }
    // The liar was caught once, then skipped.
    assert_eq!(cluster.nodes[0].mirror.stats().verify_failures(), 1);
}

#[tokio::test]
async fn a_slow_peer_is_raced_by_the_next() {
    let config = MirrorConfig {
        first_byte_timeout: Duration::from_millis(100),
        ..MirrorConfig::default()
    };
    let (cluster, path, bytes) = on_nodes_1_and_2(config).await;
    // Slower than the hedge delay, far faster than the stall timeout:
    // without a race, node 1 would serve.
    cluster.nodes[1]
        .store
        .fail(Some(Fault::Delay(Duration::from_secs(3))));

    let answer = cluster.get(0, &path).await.unwrap();
    answer.assert_content("application/octet-stream", &bytes);
    let stats = cluster.nodes[0].mirror.stats();
    assert_eq!(stats.hedges(), 1);
    assert_eq!(stats.bytes_relayed_from("node-2"), SIZE as u64);
    assert_eq!(stats.bytes_relayed_from("node-1"), 0);
}

#[tokio::test]
async fn a_peer_that_refuses_connections_is_skipped() {
    let cluster = Cluster::start(2, unhurried()).await;
    let bytes = pattern(10_000);
    let digest = cluster.nodes[1].store.add_blob(bytes.clone());
    let dead = refusing_peer().await;
    cluster.router.set(
        Key::Digest(digest.clone()),
        vec![dead, cluster.nodes[1].peer()],
    );

    let answer = cluster
        .get(0, &format!("/v2/a/blobs/{digest}"))
        .await
        .unwrap();
    answer.assert_content("application/octet-stream", &bytes);
    assert_eq!(cluster.nodes[0].mirror.stats().hedges(), 0);
}

#[tokio::test]
async fn a_node_never_asks_itself() {
    let cluster = Cluster::start(2, unhurried()).await;
    let bytes = pattern(10_000);
    let digest = cluster.nodes[1].store.add_blob(bytes.clone());
    // A router that wrongly names the asking node first.
    cluster.provide(digest.clone(), &[0, 1]);
    let answer = cluster
        .get(0, &format!("/v2/a/blobs/{digest}"))
        .await
        .unwrap();
    assert!(answer.body == bytes);
    // The client's request reached node 0's store; no request of its own did.
    assert_eq!(cluster.nodes[0].store.stat_calls(), 1);
}

#[tokio::test]
async fn concurrent_requests_for_one_key_share_one_lookup() {
    const REQUESTS: usize = 8;
    let cluster = Cluster::start(2, unhurried()).await;
    let bytes = pattern(10_000);
    let digest = cluster.nodes[1].store.add_blob(bytes.clone());
    cluster.provide(digest.clone(), &[1]);
    let path = format!("/v2/a/blobs/{digest}");

    cluster.router.set_gate(false);
    let requests = futures::future::join_all((0..REQUESTS).map(|_| cluster.get(0, &path)));
    let release = async {
        cluster.router.wait_for_calls(1).await;
        // Time for the others to arrive; each would show as a lookup.
        tokio::time::sleep(Duration::from_millis(200)).await;
        cluster.router.set_gate(true);
    };
    let (answers, ()) = tokio::join!(requests, release);
    for answer in answers {
        assert!(answer.unwrap().body == bytes);
    }
    assert_eq!(cluster.router.calls().len(), 1);
    // Within the cache's lifetime, a later request needs no lookup either.
    assert!(cluster.get(0, &path).await.unwrap().body == bytes);
    assert_eq!(cluster.router.calls().len(), 1);
    assert_eq!(cluster.nodes[0].mirror.stats().lookups(), 1);
}
