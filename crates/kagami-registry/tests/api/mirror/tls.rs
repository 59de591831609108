//! Pulls between nodes served over mutual TLS: a peer is fetched from
//! only when its certificate comes from the cluster CA and binds the peer
//! ID the router named; any other is refused at the handshake, before a
//! request reaches it, and then skipped.

use kagami_core::{Key, MediaType, Reference};

use super::unhurried;
use crate::support::*;

const APP: &str = "docker.io/library/app:1";
const SIZE: usize = 300_000;

/// What node 1 holds and the router names it for: a manifest tagged
/// `app:1` and a layer. Returns the manifest's and the layer's bytes.
fn image_on(cluster: &Cluster, holders: &[usize]) -> (Vec<u8>, Vec<u8>) {
    let json = manifest_json("app");
    let layer = pattern(SIZE);
    let mut keys = Vec::new();
    for &holder in holders {
        let store = &cluster.nodes[holder].store;
        let manifest = store.add_manifest(MediaType::OciManifest, json.clone());
        store.tag(APP, &manifest);
        let blob = store.add_blob(layer.clone());
        keys = vec![Key::Digest(manifest), Key::Digest(blob)];
    }
    let reference: Reference = APP.parse().unwrap();
    keys.push(Key::for_tag(&reference).unwrap());
    for key in keys {
        cluster.provide(key, holders);
    }
    (json, layer)
}

/// Pulls `app:1` through node 0: the manifest, and the layer.
async fn pull(cluster: &Cluster, layer: &[u8]) -> (Answer, Answer) {
    let manifest = cluster.get(0, "/v2/library/app/manifests/1").await.unwrap();
    let blob = cluster
        .get(0, &format!("/v2/library/app/blobs/{}", sha256(layer)))
        .await
        .unwrap();
    (manifest, blob)
}

#[tokio::test]
async fn a_pull_through_a_peer_over_mutual_tls_gets_the_peers_bytes() {
    let pki = Pki::new();
    let identities = vec![pki.identity("node-0"), pki.identity("node-1")];
    let cluster = Cluster::start_tls(unhurried(), identities, &pki.identity("client")).await;
    let (json, layer) = image_on(&cluster, &[1]);

    let (manifest, blob) = pull(&cluster, &layer).await;
    manifest.assert_content(MediaType::OciManifest.as_str(), &json);
    blob.assert_content("application/octet-stream", &layer);
    let stats = cluster.nodes[0].mirror.stats();
    assert_eq!(stats.tls_failures(), 0);
    assert_eq!(
        stats.bytes_relayed_from("node-1"),
        (json.len() + SIZE) as u64
    );
    // One client for the peer, whose connection carried both requests.
    assert_eq!(cluster.nodes[0].tls().configs(), 1);
    assert_eq!(cluster.nodes[1].tls().handshakes(), 1);
    assert_eq!(cluster.nodes[1].requests(), 2);
}

#[tokio::test]
async fn a_provider_whose_certificate_binds_another_peer_id_is_never_asked() {
    let pki = Pki::new();
    // The router names node 1 `node-1`; its certificate says `node-9`.
    let identities = vec![pki.identity("node-0"), pki.identity("node-9")];
    let cluster = Cluster::start_tls(unhurried(), identities, &pki.identity("client")).await;
    let (_, layer) = image_on(&cluster, &[1]);

    let (manifest, blob) = pull(&cluster, &layer).await;
    assert_eq!(manifest.status, 404);
    assert_eq!(blob.status, 404);
    let impostor = &cluster.nodes[1];
    assert_eq!(impostor.requests(), 0, "a request reached the impostor");
    // Refused once at the handshake, then skipped: the blob's lookup did
    // not even connect.
    assert_eq!(impostor.tls().handshakes(), 1);
    assert_eq!(cluster.nodes[0].mirror.stats().tls_failures(), 1);
    assert_eq!(cluster.nodes[0].mirror.stats().bytes_relayed().len(), 0);
}

#[tokio::test]
async fn an_impostor_is_passed_over_for_the_next_provider() {
    let pki = Pki::new();
    let identities = vec![
        pki.identity("node-0"),
        pki.identity("node-9"),
        pki.identity("node-2"),
    ];
    let cluster = Cluster::start_tls(unhurried(), identities, &pki.identity("client")).await;
    // Both hold the image; the router names the impostor first.
    let (json, layer) = image_on(&cluster, &[1, 2]);

    let (manifest, blob) = pull(&cluster, &layer).await;
    manifest.assert_content(MediaType::OciManifest.as_str(), &json);
    blob.assert_content("application/octet-stream", &layer);
    assert_eq!(cluster.nodes[1].requests(), 0);
    let stats = cluster.nodes[0].mirror.stats();
    assert_eq!(stats.tls_failures(), 1);
    assert_eq!(stats.bytes_relayed_from("node-1"), 0);
    assert_eq!(
        stats.bytes_relayed_from("node-2"),
        (json.len() + SIZE) as u64
    );
}

#[tokio::test]
async fn a_provider_certified_by_another_ca_is_refused() {
    let pki = Pki::new();
    let stranger = Pki::new();
    let identities = vec![pki.identity("node-0"), stranger.identity("node-1")];
    let cluster = Cluster::start_tls(unhurried(), identities, &pki.identity("client")).await;
    let (_, layer) = image_on(&cluster, &[1]);

    let (manifest, blob) = pull(&cluster, &layer).await;
    assert_eq!(manifest.status, 404);
    assert_eq!(blob.status, 404);
    assert_eq!(cluster.nodes[1].requests(), 0);
    assert_eq!(cluster.nodes[1].tls().handshakes(), 1);
    assert_eq!(cluster.nodes[0].mirror.stats().tls_failures(), 1);
}

#[tokio::test]
async fn a_renewed_identity_is_used_once_the_peer_clients_are_reset() {
    let pki = Pki::new();
    let identities = vec![pki.identity("node-0"), pki.identity("node-1")];
    let cluster = Cluster::start_tls(unhurried(), identities, &pki.identity("client")).await;
    let (json, layer) = image_on(&cluster, &[1]);
    let puller = &cluster.nodes[0];
    // Node 0 fetches with material of another cluster: node 1 fails its
    // checks, and is marked.
    let stranger = Pki::new();
    *puller.tls().identity.lock().unwrap() = stranger.identity("node-0");
    puller.mirror.reset_peer_clients();
    let manifest = cluster.get(0, "/v2/library/app/manifests/1").await.unwrap();
    assert_eq!(manifest.status, 404);
    assert_eq!(puller.mirror.stats().tls_failures(), 1);

    // Renewed, but the clients and the mark stay until the reset.
    *puller.tls().identity.lock().unwrap() = pki.identity("node-0");
    let manifest = cluster.get(0, "/v2/library/app/manifests/1").await.unwrap();
    assert_eq!(manifest.status, 404);
    assert_eq!(cluster.nodes[1].tls().handshakes(), 1);

    puller.mirror.reset_peer_clients();
    let (manifest, blob) = pull(&cluster, &layer).await;
    manifest.assert_content(MediaType::OciManifest.as_str(), &json);
    blob.assert_content("application/octet-stream", &layer);
    assert_eq!(puller.tls().configs(), 2);
}

#[tokio::test]
async fn a_peer_that_refuses_this_nodes_certificate_is_skipped_too() {
    let pki = Pki::new();
    let identities = vec![pki.identity("node-0"), pki.identity("node-1")];
    let cluster = Cluster::start_tls(unhurried(), identities, &pki.identity("client")).await;
    let (_, layer) = image_on(&cluster, &[1]);
    let puller = &cluster.nodes[0];
    // Node 0 trusts the cluster CA, but its certificate is another's: its
    // own checks of node 1 pass, and node 1 refuses it.
    let mut foreign = Pki::new().identity("node-0");
    foreign.ca_pem = puller.tls().identity.lock().unwrap().ca_pem.clone();
    *puller.tls().identity.lock().unwrap() = foreign;

    let (manifest, blob) = pull(&cluster, &layer).await;
    assert_eq!(manifest.status, 404);
    assert_eq!(blob.status, 404);
    assert_eq!(cluster.nodes[1].requests(), 0);
    assert_eq!(cluster.nodes[1].tls().handshakes(), 1);
    assert_eq!(puller.mirror.stats().tls_failures(), 1);
}

#[tokio::test]
async fn material_of_this_node_that_cannot_be_read_is_not_held_against_the_peer() {
    let pki = Pki::new();
    let identities = vec![pki.identity("node-0"), pki.identity("node-1")];
    let cluster = Cluster::start_tls(unhurried(), identities, &pki.identity("client")).await;
    let (json, _) = image_on(&cluster, &[1]);
    let puller = &cluster.nodes[0];
    let good = puller.tls().identity.lock().unwrap().clone();
    puller.tls().identity.lock().unwrap().key_pem = "not a key".to_owned();

    let path = "/v2/library/app/manifests/1";
    assert_eq!(cluster.get(0, path).await.unwrap().status, 404);
    assert_eq!(cluster.nodes[1].tls().handshakes(), 0);
    assert_eq!(puller.mirror.stats().tls_failures(), 0);

    // No client was kept and the peer was not marked: once the material
    // reads again, the next pull works, with no reset.
    *puller.tls().identity.lock().unwrap() = good;
    let answer = cluster.get(0, path).await.unwrap();
    answer.assert_content(MediaType::OciManifest.as_str(), &json);
}
