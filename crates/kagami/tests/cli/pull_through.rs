//! Pull-through with real upstreams: nodes that hold nothing fetch each
//! blob from the upstream once for all of them; tags follow the upstream
//! within their TTL; a poisoned tag record on a peer counts only when the
//! upstream cannot be asked; a bad upstream never gets a wrong blob served
//! whole; and with pull-through off, the upstream never hears from kagami.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kagami::p2p::{Options, PullThroughOptions};
use kagami_core::{Digest, Reference};
use kagami_store::testing::{BuiltImage, ImageSpec};
use kagami_upstream::testing::{Protection, Upstream};
use kagami_upstream::{Config, MirrorConfig};

use crate::cluster::{Cluster, archive, hold, keys};
use crate::harness::{Server, eventually, p2p_flags};
use crate::pull::{blob, install_tls_provider, manifest};

/// The registry name the tests pull: not local to any node, reached at
/// the upstream's loopback address through its `mirrors:` endpoint.
const REGISTRY: &str = "upstream.test";

/// Pull-through to `endpoint` for `REGISTRY`, with a short tag TTL.
fn through(endpoint: &str, options: &mut Options) {
    let mut upstream = Config::default();
    upstream.mirrors.insert(
        REGISTRY.to_owned(),
        MirrorConfig {
            endpoints: vec![endpoint.parse().unwrap()],
            rewrites: Vec::new(),
        },
    );
    options.pull_through = Some(PullThroughOptions {
        upstream,
        cache_size: 1 << 30,
    });
    options.mirror.tag_ttl = Duration::from_millis(500);
}

/// `upstream.test/team/app:1` as the nodes name it.
fn reference(tag: &str) -> Reference {
    format!("{REGISTRY}/team/app:{tag}").parse().unwrap()
}

fn layer(image: &BuiltImage) -> (Digest, u64) {
    image
        .blobs
        .iter()
        .max_by_key(|(_, size)| **size)
        .map(|(d, s)| (d.clone(), *s))
        .unwrap()
}

/// The digest a node answers for `reference`'s tag.
async fn tag_digest(
    addr: std::net::SocketAddr,
    reference: &Reference,
    tag: &str,
) -> Option<String> {
    let response = manifest(addr, reference, tag).await;
    if response.status() != 200 {
        return None;
    }
    response.headers()["docker-content-digest"]
        .to_str()
        .ok()
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_that_all_miss_fetch_each_blob_from_the_upstream_once() {
    install_tls_provider();
    let upstream = Upstream::start(Protection::Plain);
    let image = upstream.push(
        ImageSpec::new("x/app:1", &[3_000_000]).seed(71),
        "team/app",
        None,
    );
    let endpoint = format!("http://{}", upstream.addr);
    let cluster = Cluster::start_with(4, |options| through(&endpoint, options)).await;
    cluster.joined().await;
    let (layer, size) = layer(&image);
    let asked = reference("1");
    let pulls = cluster
        .nodes
        .iter()
        .map(|node| blob(node.registry_addr(), &asked, &layer));
    for received in futures::future::join_all(pulls).await {
        assert!(received.is(&layer, size), "{received:?}");
    }
    let gets = upstream.requests("GET", &format!("/blobs/{layer}"));
    assert_eq!(gets, 1, "the upstream served the blob {gets} times");
    // Tags resolve at the upstream too, and the manifest comes by digest.
    for node in &cluster.nodes {
        let digest = tag_digest(node.registry_addr(), &asked, "1").await;
        assert_eq!(digest, Some(image.digest.to_string()));
    }
    let stats = cluster.nodes[0].mirror_stats().unwrap();
    assert!(stats.upstream_bytes() + stats.bytes_relayed().values().sum::<u64>() >= size);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_tag_is_followed_within_its_ttl() {
    install_tls_provider();
    let upstream = Upstream::start(Protection::Plain);
    let first = upstream.push(
        ImageSpec::new("x/app:1", &[1_000]).seed(72),
        "team/app",
        None,
    );
    let endpoint = format!("http://{}", upstream.addr);
    let cluster = Cluster::start_with(2, |options| through(&endpoint, options)).await;
    cluster.joined().await;
    let addr = cluster.nodes[1].registry_addr();
    let asked = reference("1");
    assert_eq!(
        tag_digest(addr, &asked, "1").await,
        Some(first.digest.to_string())
    );
    let moved = upstream.push(
        ImageSpec::new("x/app:1", &[2_000]).seed(73),
        "team/app",
        None,
    );
    assert_ne!(moved.digest, first.digest);
    let want = moved.digest.to_string();
    eventually("the node to follow the moved tag", || async {
        (tag_digest(addr, &asked, "1").await.as_deref() == Some(want.as_str())).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoned_tag_record_counts_only_when_the_upstream_cannot_be_asked() {
    install_tls_provider();
    let upstream = Upstream::start(Protection::Plain);
    let real = upstream.push(
        ImageSpec::new("x/app:1", &[1_000]).seed(74),
        "team/app",
        None,
    );
    let endpoint = format!("http://{}", upstream.addr);
    let cluster = Cluster::start_with(2, |options| through(&endpoint, options)).await;
    let [holder, asker] = &cluster.nodes[..] else {
        unreachable!()
    };
    // The holder has another image under the same tag, and advertises it.
    let poison = ImageSpec::new(&reference("1").to_string(), &[1_500]).seed(75);
    let (poison_archive, poison) = archive(cluster.dir(), poison).await;
    cluster.joined().await;
    hold(holder, &poison_archive, keys(&poison)).await;

    let asked = reference("1");
    assert_eq!(
        tag_digest(asker.registry_addr(), &asked, "1").await,
        Some(real.digest.to_string()),
        "the upstream's answer wins"
    );
    assert_eq!(
        tag_digest(holder.registry_addr(), &asked, "1").await,
        Some(real.digest.to_string()),
        "even over the holder's own record"
    );
    // The holder's record was seen to disagree (by the holder, or by the
    // tag's origin), and said so.
    eventually("the disagreeing record to be reported", || async {
        let seen: u64 = cluster
            .nodes
            .iter()
            .map(|node| node.mirror_stats().unwrap().tag_disagreements())
            .sum();
        (seen >= 1).then_some(())
    })
    .await;
    // The upstream goes away: the peers' record stands in.
    drop(upstream);
    let want = poison.digest.to_string();
    eventually("the peer's record to be used offline", || async {
        (tag_digest(asker.registry_addr(), &asked, "1")
            .await
            .as_deref()
            == Some(want.as_str()))
        .then_some(())
    })
    .await;
}

/// A fake upstream whose every blob is the wrong bytes; counts its GETs.
async fn lying_upstream(gets: Arc<AtomicUsize>) -> String {
    let app = axum::Router::new().route(
        "/v2/team/app/blobs/{digest}",
        axum::routing::get(move || {
            let gets = gets.clone();
            async move {
                gets.fetch_add(1, Ordering::SeqCst);
                vec![7u8; 100_000]
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_blob_from_the_upstream_is_never_served_whole_nor_kept() {
    install_tls_provider();
    let gets = Arc::new(AtomicUsize::new(0));
    let endpoint = lying_upstream(gets.clone()).await;
    let cluster = Cluster::start_with(1, |options| through(&endpoint, options)).await;
    let node = &cluster.nodes[0];
    let claimed = kagami_core::Hasher::digest(kagami_core::Algorithm::Sha256, b"the real blob");
    let asked = reference("1");
    for attempt in 1..=2 {
        let received = blob(node.registry_addr(), &asked, &claimed).await;
        assert!(
            !received.is(&claimed, 100_000) && received.bytes < 100_000,
            "attempt {attempt}: {received:?}"
        );
        assert_eq!(
            gets.load(Ordering::SeqCst),
            attempt,
            "each request tries again"
        );
    }
    let cache = node.p2p().unwrap().cache().unwrap();
    eventually("nothing to be kept", || async {
        (cache.usage().bytes == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_pull_through_off_the_upstream_never_hears_from_kagami() {
    let upstream = Upstream::start(Protection::Plain);
    let image = upstream.push(
        ImageSpec::new("x/app:1", &[1_000]).seed(76),
        "team/app",
        None,
    );
    let tmp = tempfile::tempdir().unwrap();
    let registries = tmp.path().join("registries.yaml");
    std::fs::write(
        &registries,
        format!(
            "mirrors:\n  \"{REGISTRY}\":\n    endpoint:\n      - \"http://{}\"\n",
            upstream.addr
        ),
    )
    .unwrap();
    let psk = tmp.path().join("psk");
    kagami_p2p::Psk::generate().write(&psk).unwrap();
    let mut flags = p2p_flags(&psk, &[]);
    flags.extend(
        [
            "--private-registry",
            registries.to_str().unwrap(),
            "--pull-through",
            "false",
        ]
        .map(String::from),
    );
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = Server::start(&tmp.path().join("node"), &flags);
    assert!(
        server.log().contains("pull-through off"),
        "{}",
        server.log()
    );
    let asked = reference("1");
    let (layer, _) = layer(&image);
    assert_eq!(blob(server.addr, &asked, &layer).await.status, 404);
    assert_eq!(manifest(server.addr, &asked, "1").await.status(), 404);
    let log = upstream.log();
    assert_eq!(
        upstream.requests("GET", "/v2/team") + upstream.requests("HEAD", "/v2/team"),
        0,
        "the upstream heard from kagami:\n{log}"
    );
}

#[tokio::test]
async fn a_lone_node_names_itself_the_origin_and_refuses_a_bad_key() {
    let tmp = tempfile::tempdir().unwrap();
    let psk = tmp.path().join("psk");
    kagami_p2p::Psk::generate().write(&psk).unwrap();
    let flags = p2p_flags(&psk, &[]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = Server::start(&tmp.path().join("node"), &flags);
    let own = server.status().await["peer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = "docker.io/library/app:1";
    let origins: serde_json::Value =
        serde_json::from_str(&server.text(&format!("/debug/p2p/origins?key={key}")).await).unwrap();
    assert_eq!(origins["origins"], serde_json::json!([own]), "{origins}");
    let refused = server
        .client()
        .get(format!(
            "{}/debug/p2p/origins?key=sha256:nothex",
            server.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let text = refused.text().await.unwrap();
    assert!(text.starts_with("key: "), "{text}");
}
