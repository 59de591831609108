//! Pulls through a node that holds nothing: manifests by tag and digest,
//! blobs whole, by `HEAD`, and by range.

use http::Method;
use kagami_core::{Key, MediaType, Reference};

use super::unhurried;
use crate::support::*;

const NGINX: &str = "docker.io/library/nginx:1.25";
const SIZE: usize = 300_000;

/// Node 1 holds an image (a manifest tagged `nginx:1.25` and a layer)
/// and the router says so; node 0 holds nothing.
async fn image_on_node_1() -> (Cluster, Vec<u8>, Vec<u8>) {
    let cluster = Cluster::start(2, unhurried()).await;
    let json = manifest_json("nginx");
    let layer = pattern(SIZE);
    let store = &cluster.nodes[1].store;
    let manifest = store.add_manifest(MediaType::OciManifest, json.clone());
    store.tag(NGINX, &manifest);
    let blob = store.add_blob(layer.clone());
    let reference: Reference = NGINX.parse().unwrap();
    cluster.provide(Key::for_tag(&reference).unwrap(), &[1]);
    cluster.provide(manifest, &[1]);
    cluster.provide(blob, &[1]);
    (cluster, json, layer)
}

#[tokio::test]
async fn a_manifest_is_pulled_by_tag_and_by_digest_from_a_peer() {
    let (cluster, json, _) = image_on_node_1().await;
    let digest = sha256(&json);
    for path in [
        "/v2/library/nginx/manifests/1.25?ns=docker.io".to_owned(),
        "/v2/nginx/manifests/1.25".to_owned(),
        format!("/v2/library/nginx/manifests/{digest}?ns=docker.io"),
    ] {
        let answer = cluster.get(0, &path).await.unwrap();
        answer.assert_content(MediaType::OciManifest.as_str(), &json);
        let head = cluster.send(0, Method::HEAD, &path, &[]).await.unwrap();
        assert_eq!(head.status, 200, "HEAD {path}");
        assert!(head.body.is_empty());
        assert_eq!(head.header("docker-content-digest"), Some(digest.as_str()));
        assert_eq!(
            head.header("content-length"),
            Some(json.len().to_string().as_str())
        );
    }
    let stats = cluster.nodes[0].mirror.stats();
    assert!(stats.bytes_relayed_from("node-1") >= json.len() as u64);
}

#[tokio::test]
async fn a_blob_is_streamed_from_a_peer_with_its_headers() {
    let (cluster, _, layer) = image_on_node_1().await;
    let digest = sha256(&layer);
    let path = format!("/v2/library/nginx/blobs/{digest}");
    let answer = cluster.get(0, &path).await.unwrap();
    answer.assert_content("application/octet-stream", &layer);
    assert_eq!(answer.header("accept-ranges"), Some("bytes"));
    assert_eq!(
        cluster.nodes[0].mirror.stats().bytes_relayed_from("node-1"),
        SIZE as u64
    );

    let head = cluster.send(0, Method::HEAD, &path, &[]).await.unwrap();
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    for name in ["content-length", "docker-content-digest", "content-type"] {
        assert_eq!(head.header(name), answer.header(name), "{name}");
    }
}

#[tokio::test]
async fn a_range_of_a_mirrored_blob_is_relayed_as_206() {
    let (cluster, _, layer) = image_on_node_1().await;
    let path = format!("/v2/library/nginx/blobs/{}", sha256(&layer));
    let last = SIZE - 1;
    let cases: Vec<(&str, usize, usize)> = vec![
        ("bytes=0-0", 0, 0),
        ("bytes=100000-199999", 100_000, 199_999),
        ("bytes=250000-", 250_000, last),
        ("bytes=-10", SIZE - 10, last),
        ("bytes=0-", 0, last),
    ];
    for (range, start, end) in cases {
        let answer = cluster
            .send(0, Method::GET, &path, &[("range", range)])
            .await
            .unwrap();
        assert_eq!(answer.status, 206, "{range}");
        assert_eq!(
            answer.header("content-range"),
            Some(format!("bytes {start}-{end}/{SIZE}").as_str()),
            "{range}"
        );
        assert!(answer.body == layer[start..=end], "{range}: wrong bytes");
        let head = cluster
            .send(0, Method::HEAD, &path, &[("range", range)])
            .await
            .unwrap();
        assert_eq!(head.status, 206, "HEAD {range}");
        assert_eq!(head.header("content-range"), answer.header("content-range"));
    }
    let answer = cluster
        .send(
            0,
            Method::GET,
            &path,
            &[("range", &format!("bytes={SIZE}-"))],
        )
        .await
        .unwrap();
    assert_eq!(answer.status, 416);
    assert_eq!(
        answer.header("content-range"),
        Some(format!("bytes */{SIZE}").as_str())
    );
    // A malformed range is ignored, as for a local blob: the whole blob.
    let answer = cluster
        .send(0, Method::GET, &path, &[("range", "bytes=9-1")])
        .await
        .unwrap();
    answer.assert_content("application/octet-stream", &layer);
}
