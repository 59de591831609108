//! Real libp2p nodes on loopback in one process: discovery through a
//! bootstrap node, provider records and their expiry, the private network,
//! identity persistence, and the advertiser end to end.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kagami_core::Key;
use kagami_core::router::{Near, Peer, Router as _};
use kagami_core::store::{Event, Store};
use kagami_p2p::{AdvertisePolicy, Advertiser, Psk, Router, identity, parse_bootstrap};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{TestStore, config, eventually, image, start, stays, tag_key};

fn key(text: &str) -> Key {
    text.parse().unwrap()
}

/// The loopback port a node listens on.
fn port(router: &Router) -> u16 {
    let addr = router.listen_addrs()[0].to_string();
    addr.rsplit('/').next().unwrap().parse().unwrap()
}

/// `router` as a provider whose registry listens on `port`.
fn served_by(router: &Router, port: u16) -> Vec<Peer> {
    vec![Peer {
        id: router.peer_id().to_string(),
        addr: registry(port),
    }]
}

/// Waits until nothing accepts connections on `port` any more.
async fn listener_closes(port: u16) {
    eventually("the listener to close", || async {
        tokio::net::TcpStream::connect(registry(port))
            .await
            .is_err()
    })
    .await;
}

fn registry(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

async fn finds(router: &Router, key: &Key, want: &[Peer]) -> bool {
    router.find_providers(key, 3).await.unwrap() == want
}

#[tokio::test]
async fn a_provider_is_found_through_a_bootstrap_node_with_its_registry_port() {
    let psk = Psk::generate();
    let b = start(&psk, 7002, &[]).await;
    let a = start(&psk, 7001, &[&b]).await;
    let c = start(&psk, 7003, &[&b]).await;
    eventually("every node to have peers", || async {
        a.is_ready() && b.is_ready() && c.is_ready()
    })
    .await;

    let nginx = key("docker.io/library/nginx:1.25");
    a.provide(std::slice::from_ref(&nginx)).await.unwrap();
    let want = served_by(&a, 7001);
    eventually("C to find A", || finds(&c, &nginx, &want)).await;
    eventually("B to find A", || finds(&b, &nginx, &want)).await;
    assert!(
        a.find_providers(&nginx, 3).await.unwrap().is_empty(),
        "never itself"
    );
    assert!(c.find_providers(&nginx, 0).await.unwrap().is_empty());
    assert_eq!(a.provided_keys(), 1);

    // Two providers, deduplicated and limited.
    c.provide(std::slice::from_ref(&nginx)).await.unwrap();
    eventually("B to find A and C", || async {
        b.find_providers(&nginx, 3).await.unwrap().len() == 2
    })
    .await;
    assert_eq!(b.find_providers(&nginx, 1).await.unwrap().len(), 1);

    // A miss is an empty answer within the lookup timeout, not an error.
    let missing = key("docker.io/library/missing:1");
    let started = Instant::now();
    assert!(c.find_providers(&missing, 3).await.unwrap().is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn withdrawn_keys_vanish_when_their_records_expire_and_provided_ones_stay() {
    let psk = Psk::generate();
    let short = |mut config: kagami_p2p::Config| {
        config.record_ttl = Duration::from_secs(3);
        config.republish_interval = Duration::from_secs(1);
        config
    };
    let b = Router::start(short(config(&psk, 7002, &[]))).await.unwrap();
    let a = Router::start(short(config(&psk, 7001, &[&b])))
        .await
        .unwrap();
    let c = Router::start(short(config(&psk, 7003, &[&b])))
        .await
        .unwrap();
    eventually("A and C to have peers", || async {
        a.is_ready() && c.is_ready()
    })
    .await;

    let gone = key("docker.io/library/gone:1");
    let kept = key("docker.io/library/kept:1");
    a.provide(&[gone.clone(), kept.clone()]).await.unwrap();
    let want = served_by(&a, 7001);
    eventually("C to find A for both keys", || async {
        finds(&c, &gone, &want).await && finds(&c, &kept, &want).await
    })
    .await;

    a.withdraw(std::slice::from_ref(&gone)).await.unwrap();
    // A node that never saw A's record: it can only learn it from the
    // records B and C hold, which expire 3 s after A's last announcement.
    let d = Router::start(short(config(&psk, 7004, &[&b])))
        .await
        .unwrap();
    eventually("D to have peers", || async { d.is_ready() }).await;
    let withdrawn = Instant::now();
    eventually("the withdrawn key to vanish", || finds(&d, &gone, &[])).await;
    assert!(
        withdrawn.elapsed() < Duration::from_secs(10),
        "{:?}",
        withdrawn.elapsed()
    );

    // The key still provided outlives the TTL. (In a network this small A
    // is always asked and answers for itself; that records expire without
    // republishing is what the withdrawn key shows, and the republish
    // schedule is tested in `publish`.)
    stays(
        "the provided key to be found",
        Duration::from_secs(4),
        || async { eventually_found(&d, &kept, &want).await },
    )
    .await;
}

/// Whether `want` is found within one second (a lookup can race a
/// republish on a busy machine).
async fn eventually_found(router: &Router, key: &Key, want: &[Peer]) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        if finds(router, key, want).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn a_node_started_before_its_bootstrap_peer_joins_once_that_peer_is_up() {
    // A free port for the late node, written as an operator would.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let late_port = free.local_addr().unwrap().port();
    drop(free);
    let psk = Psk::generate();
    let mut early = config(&psk, 7001, &[]);
    early.bootstrap = vec![parse_bootstrap(&format!("127.0.0.1:{late_port}")).unwrap()];
    let early = Router::start(early).await.unwrap();
    stays(
        "the early node to be alone",
        Duration::from_secs(1),
        || async { !early.is_ready() },
    )
    .await;

    let mut late = config(&psk, 7002, &[]);
    late.listen = format!("/ip4/127.0.0.1/tcp/{late_port}").parse().unwrap();
    let late = Router::start(late).await.unwrap();
    eventually("the early node to retry and join", || async {
        early.is_ready() && late.is_ready()
    })
    .await;
}

#[tokio::test]
async fn a_node_with_another_psk_can_neither_connect_nor_be_connected() {
    let psk = Psk::generate();
    let x = start(&psk, 7001, &[]).await;
    let z = start(&psk, 7003, &[&x]).await;
    let intruder = start(&Psk::generate(), 7002, &[&x]).await;
    eventually("the right key to connect", || async { z.is_ready() }).await;

    let secret = key("docker.io/library/secret:1");
    x.provide(std::slice::from_ref(&secret)).await.unwrap();
    let want = served_by(&x, 7001);
    eventually("Z to find X", || finds(&z, &secret, &want)).await;

    // Long enough for several of the intruder's dials (every 0.5-2 s) to
    // fail on the 2 s handshake timeout.
    stays(
        "the intruder to stay alone",
        Duration::from_secs(5),
        || async { !intruder.is_ready() && x.routing_peers() == 1 },
    )
    .await;
    let started = Instant::now();
    assert!(
        intruder
            .find_providers(&secret, 3)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(started.elapsed() < Duration::from_secs(3));

    // A connection that sends its PSK nonce and then stalls is cut off by
    // the handshake timeout (2 s here) instead of being held open.
    let mut socket = tokio::net::TcpStream::connect(registry(port(&x)))
        .await
        .unwrap();
    socket.write_all(&[7; 24]).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0; 256];
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the node held a bad handshake open");
}

#[tokio::test]
async fn the_peer_id_survives_a_restart_and_stopping_closes_the_listener() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identity.key");
    let psk = Psk::generate();
    let mut first = config(&psk, 7001, &[]);
    first.keypair = identity::load_or_create(&path).unwrap();
    let node = Router::start(first).await.unwrap();
    let id = node.peer_id();
    let listening = port(&node);
    node.shutdown().await;
    assert!(!node.is_ready());
    assert!(node.provide(&[key("docker.io/library/a:1")]).await.is_err());
    listener_closes(listening).await;

    let mut second = config(&psk, 7001, &[]);
    second.keypair = identity::load_or_create(&path).unwrap();
    let again = Router::start(second).await.unwrap();
    assert_eq!(again.peer_id(), id);

    // Dropping the last handle stops the node as well.
    let listening = port(&again);
    let clone = again.clone();
    drop(again);
    assert!(
        clone
            .find_providers(&key("docker.io/library/a:1"), 1)
            .await
            .is_ok()
    );
    drop(clone);
    listener_closes(listening).await;
}

#[tokio::test]
async fn a_store_event_on_one_node_is_found_by_another() {
    let psk = Psk::generate();
    let a = start(&psk, 7001, &[]).await;
    let c = start(&psk, 7003, &[&a]).await;
    eventually("the nodes to meet", || async {
        a.is_ready() && c.is_ready()
    })
    .await;

    let store = TestStore::new();
    let router: Arc<dyn kagami_core::router::Router> = Arc::new(a.clone());
    let advertiser = Advertiser::spawn(
        store.clone() as Arc<dyn Store>,
        router,
        AdvertisePolicy::default(),
    );
    eventually("the advertiser to subscribe", || async {
        store.subscribers() == 1
    })
    .await;
    store.tag(image("redis:7", 5));
    store.emit(Event::ImageAdded(image("redis:7", 5)));

    let want = served_by(&a, 7001);
    let redis = tag_key("redis:7");
    eventually("C to find A for the new tag", || finds(&c, &redis, &want)).await;
    let manifest = Key::Digest(image("redis:7", 5).digest);
    eventually("C to find A for its manifest", || {
        finds(&c, &manifest, &want)
    })
    .await;
    assert_eq!(advertiser.snapshot().len(), 2);
}

/// The peer IDs of `near`, this node's own for `ThisNode`.
fn ids(router: &Router, near: &[Near]) -> Vec<String> {
    near.iter()
        .map(|n| match n {
            Near::ThisNode => router.peer_id().to_string(),
            Near::Peer(peer) => peer.id.clone(),
        })
        .collect()
}

#[tokio::test]
async fn every_node_names_the_same_closest_nodes_for_a_key_itself_included() {
    let psk = Psk::generate();
    let first = start(&psk, 7001, &[]).await;
    let mut routers = vec![first];
    for port in 7002..7005 {
        let router = start(&psk, port, &[&routers[0]]).await;
        routers.push(router);
    }
    eventually("every node to know every other", || async {
        routers.iter().all(|r| r.routing_peers() >= 3)
    })
    .await;
    for text in ["docker.io/library/nginx:1.25", "docker.io/library/redis:7"] {
        let key = key(text);
        let answers: Vec<Vec<String>> = futures::future::join_all(
            routers
                .iter()
                .map(|router| async { ids(router, &router.closest(&key, 4).await.unwrap()) }),
        )
        .await;
        for answer in &answers {
            assert_eq!(answer.len(), 4, "{answers:?}");
            assert_eq!(
                answer, &answers[0],
                "nodes disagree on the order for {text}"
            );
        }
        // The origin knows it is the origin.
        let origin = routers
            .iter()
            .find(|r| r.peer_id().to_string() == answers[0][0])
            .unwrap();
        assert_eq!(origin.closest(&key, 1).await.unwrap(), vec![Near::ThisNode]);
    }
}
