//! What is never looked up on peers, and what a miss costs: the loop
//! guard, `latest`, registries not mirrored, non-manifests, and content
//! nobody holds.

use std::collections::BTreeSet;
use std::time::Duration;

use http::Method;
use kagami_core::{Key, MediaType, Reference};
use kagami_registry::{MIRRORED_HEADER, MirrorConfig, Mirrored};
use tokio::time::Instant;

use super::unhurried;
use crate::support::*;

/// A blob on node 1 that the router knows about.
async fn blob_on_node_1(config: MirrorConfig) -> (Cluster, String, Vec<u8>) {
    let cluster = Cluster::start(2, config).await;
    let bytes = pattern(10_000);
    let digest = cluster.nodes[1].store.add_blob(bytes.clone());
    cluster.provide(digest.clone(), &[1]);
    (cluster, format!("/v2/library/nginx/blobs/{digest}"), bytes)
}

#[tokio::test]
async fn a_request_from_a_peer_that_misses_is_404_without_a_lookup() {
    let (cluster, path, bytes) = blob_on_node_1(unhurried()).await;
    let guarded = [(MIRRORED_HEADER, "true")];
    let answer = cluster.send(0, Method::GET, &path, &guarded).await.unwrap();
    assert_eq!(answer.status, 404);
    assert_eq!(answer.error_code(), "BLOB_UNKNOWN");
    assert!(
        cluster.router.calls().is_empty(),
        "a peer request looked up"
    );
    // The same request from a client is served: the header made the difference.
    let answer = cluster.get(0, &path).await.unwrap();
    assert!(answer.body == bytes);
    assert_eq!(cluster.router.calls().len(), 1);
}

#[tokio::test]
async fn a_stale_record_is_404_and_the_peer_does_not_look_up_in_turn() {
    let cluster = Cluster::start(3, unhurried()).await;
    // The router says node 1 holds it; node 1 does not, node 2 does.
    let digest = cluster.nodes[2].store.add_blob(pattern(100));
    cluster.provide(digest.clone(), &[1]);
    let answer = cluster
        .get(0, &format!("/v2/a/blobs/{digest}"))
        .await
        .unwrap();
    assert_eq!(answer.status, 404);
    assert_eq!(answer.error_code(), "BLOB_UNKNOWN");
    assert_eq!(cluster.router.calls().len(), 1, "node 1 looked up in turn");
}

#[tokio::test]
async fn latest_is_not_resolved_from_peers_unless_enabled() {
    for resolve_latest in [false, true] {
        let config = MirrorConfig {
            resolve_latest,
            ..unhurried()
        };
        let cluster = Cluster::start(2, config).await;
        let json = manifest_json("latest");
        let store = &cluster.nodes[1].store;
        let digest = store.add_manifest(MediaType::OciManifest, json.clone());
        store.tag("docker.io/library/nginx:latest", &digest);
        // An untagged reference is `latest` by the time it is a request.
        let reference: Reference = "nginx".parse().unwrap();
        cluster.provide(Key::for_tag(&reference).unwrap(), &[1]);

        let answer = cluster
            .get(0, "/v2/library/nginx/manifests/latest")
            .await
            .unwrap();
        if resolve_latest {
            answer.assert_content(MediaType::OciManifest.as_str(), &json);
            assert_eq!(cluster.router.calls().len(), 1);
        } else {
            assert_eq!(answer.status, 404);
            assert_eq!(answer.error_code(), "MANIFEST_UNKNOWN");
            assert!(cluster.router.calls().is_empty());
            // By digest, the same manifest is always allowed.
            cluster.provide(digest.clone(), &[1]);
            let path = format!("/v2/library/nginx/manifests/{digest}");
            assert_eq!(cluster.get(0, &path).await.unwrap().status, 200);
        }
    }
}

#[tokio::test]
async fn only_mirrored_registries_are_looked_up() {
    let quay: BTreeSet<_> = ["quay.io".parse().unwrap()].into();
    let config = MirrorConfig {
        mirrored: Mirrored::Only(quay),
        ..unhurried()
    };
    let (cluster, path, bytes) = blob_on_node_1(config).await;
    let answer = cluster
        .get(0, &format!("{path}?ns=docker.io"))
        .await
        .unwrap();
    assert_eq!(answer.status, 404);
    assert!(cluster.router.calls().is_empty());
    let answer = cluster.get(0, &format!("{path}?ns=quay.io")).await.unwrap();
    assert!(answer.body == bytes);
}

#[tokio::test]
async fn a_blob_asked_for_as_a_manifest_is_404_without_a_lookup() {
    let cluster = Cluster::start(2, unhurried()).await;
    let digest = cluster.nodes[0].store.add_blob(pattern(100));
    cluster.provide(digest.clone(), &[1]);
    let answer = cluster
        .get(0, &format!("/v2/a/manifests/{digest}"))
        .await
        .unwrap();
    assert_eq!(answer.status, 404);
    assert_eq!(answer.error_code(), "MANIFEST_UNKNOWN");
    assert!(cluster.router.calls().is_empty());
}

#[tokio::test]
async fn content_nobody_holds_is_404_within_the_budget() {
    let config = MirrorConfig {
        resolve_timeout: Duration::from_millis(300),
        ..unhurried()
    };
    let cluster = Cluster::start(2, config).await;
    // The router knows no provider; then it never answers at all (new
    // keys, so that the first round's cached answers do not help).
    for hung in [false, true] {
        cluster.router.set_gate(!hung);
        let absent = sha256(format!("absent {hung}").as_bytes());
        let paths = [
            format!("/v2/a/blobs/{absent}"),
            format!("/v2/a/manifests/{absent}"),
            format!("/v2/a/manifests/hung-{hung}"),
        ];
        for path in &paths {
            for method in [Method::GET, Method::HEAD] {
                let started = Instant::now();
                let answer = cluster.send(1, method.clone(), path, &[]).await.unwrap();
                assert_eq!(answer.status, 404, "{method} {path}");
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "{method} {path} took {:?}",
                    started.elapsed()
                );
            }
        }
    }
    let stats = cluster.nodes[1].mirror.stats();
    assert!(stats.lookup_failures() >= 1);
    assert_eq!(stats.lookups(), stats.lookup_failures());
}
