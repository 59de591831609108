//! The advertiser against the in-memory router: what a store holds is what
//! other nodes find, through start-up, events, resyncs and the policy.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use kagami_core::Key;
use kagami_core::router::{Peer, Router as _};
use kagami_core::store::{Event, Store};
use kagami_p2p::{AdvertisePolicy, Advertiser, MemoryNetwork, MemoryRouter};

use crate::support::{TestStore, digest, eventually, image, stays, tag_key};

fn peer(n: u8) -> Peer {
    Peer {
        id: format!("node-{n}"),
        addr: ([10, 0, 0, n], 6443).into(),
    }
}

struct Cluster {
    store: Arc<TestStore>,
    advertiser: Advertiser,
    other: MemoryRouter,
}

/// Node 1 advertises `store`; node 2 looks things up.
fn cluster(store: Arc<TestStore>, policy: AdvertisePolicy) -> Cluster {
    let net = MemoryNetwork::new();
    let router = Arc::new(net.join(peer(1)));
    let other = net.join(peer(2));
    let advertiser = Advertiser::spawn(store.clone() as Arc<dyn Store>, router, policy);
    Cluster {
        store,
        advertiser,
        other,
    }
}

impl Cluster {
    async fn found(&self, key: &Key) -> bool {
        self.other.find_providers(key, 3).await.unwrap() == vec![peer(1)]
    }

    async fn advertises(&self, want: &BTreeSet<Key>) {
        eventually(&format!("advertising exactly {want:?}"), || async {
            self.advertiser.snapshot() == *want
        })
        .await;
        for key in want {
            assert!(self.found(key).await, "{key} not found by another node");
        }
    }
}

fn keys(keys: &[Key]) -> BTreeSet<Key> {
    keys.iter().cloned().collect()
}

#[tokio::test]
async fn advertises_what_the_store_holds_at_start_but_not_latest() {
    let store = TestStore::new();
    store.tag(image("nginx:1.25", 1));
    store.tag(image("app:latest", 2));
    store.hold(digest(3));
    let c = cluster(store, AdvertisePolicy::default());
    let d = |n| Key::Digest(digest(n));
    c.advertises(&keys(&[d(1), d(2), d(3), tag_key("nginx:1.25")]))
        .await;
    assert!(!c.found(&tag_key("app:latest")).await);
}

#[tokio::test]
async fn latest_is_advertised_when_the_policy_allows_it() {
    let store = TestStore::new();
    store.tag(image("app:latest", 2));
    let policy = AdvertisePolicy {
        advertise_latest: true,
        ..AdvertisePolicy::default()
    };
    let c = cluster(store, policy);
    c.advertises(&keys(&[Key::Digest(digest(2)), tag_key("app:latest")]))
        .await;
}

#[tokio::test]
async fn only_mirrored_registries_and_the_content_they_reach_are_advertised() {
    let store = TestStore::new();
    // docker.io/app:1 reaches 10 and 11; quay.io/private:1 reaches 11 and 12.
    store.link(1, &[10, 11]);
    store.tag(image("docker.io/library/app:1", 1));
    store.link(2, &[11, 12]);
    store.tag(image("quay.io/team/private:1", 2));
    let policy = AdvertisePolicy {
        registries: kagami_core::RegistrySet::Only(["docker.io".parse().unwrap()].into()),
        ..AdvertisePolicy::default()
    };
    let c = cluster(store, policy);
    let d = |n| Key::Digest(digest(n));
    c.advertises(&keys(&[
        d(1),
        d(10),
        d(11),
        tag_key("docker.io/library/app:1"),
    ]))
    .await;

    // A change is followed: once quay.io's image is the only holder of 11…
    c.store.untag("docker.io/library/app:1");
    c.store
        .emit(Event::ImageRemoved(image("docker.io/library/app:1", 1)));
    c.advertises(&keys(&[])).await;
    assert!(!c.found(&d(12)).await);
}

#[tokio::test]
async fn follows_store_events() {
    let store = TestStore::new();
    store.tag(image("nginx:1.25", 1));
    let c = cluster(store, AdvertisePolicy::default());
    let d = |n| Key::Digest(digest(n));
    c.advertises(&keys(&[d(1), tag_key("nginx:1.25")])).await;

    // New content and a new image appear.
    c.store.hold(digest(4));
    c.store.emit(Event::ContentAdded(digest(4)));
    c.store.tag(image("redis:7", 5));
    c.store.emit(Event::ImageAdded(image("redis:7", 5)));
    // Content announced but unreadable (stat fails) is not advertised.
    c.store.emit(Event::ContentAdded(digest(6)));
    let all = [d(1), d(4), d(5), tag_key("nginx:1.25"), tag_key("redis:7")];
    c.advertises(&keys(&all)).await;

    // A tag goes away but its manifest stays; a layer goes away.
    c.store.untag("nginx:1.25");
    c.store.emit(Event::ImageRemoved(image("nginx:1.25", 1)));
    c.store.drop_content(&digest(4));
    c.store.emit(Event::ContentRemoved(digest(4)));
    c.advertises(&keys(&[d(1), d(5), tag_key("redis:7")])).await;
    assert!(!c.found(&tag_key("nginx:1.25")).await);
    assert!(!c.found(&d(4)).await);
}

#[tokio::test]
async fn a_resync_relists_and_applies_the_difference() {
    let store = TestStore::new();
    store.tag(image("nginx:1.25", 1));
    let c = cluster(store, AdvertisePolicy::default());
    let d = |n| Key::Digest(digest(n));
    c.advertises(&keys(&[d(1), tag_key("nginx:1.25")])).await;

    // Changes the advertiser was never told about...
    c.store.untag("nginx:1.25");
    c.store.drop_content(&digest(1));
    c.store.tag(image("nginx:1.26", 2));
    c.store.hold(digest(3));
    stays("the old keys", Duration::from_millis(200), || async {
        c.advertiser.snapshot().contains(&d(1))
    })
    .await;
    // ...are picked up on a resync.
    c.store.emit(Event::Resync);
    c.advertises(&keys(&[d(2), d(3), tag_key("nginx:1.26")]))
        .await;
}

#[tokio::test]
async fn dropping_the_advertiser_stops_it() {
    let store = TestStore::new();
    store.hold(digest(1));
    let c = cluster(store, AdvertisePolicy::default());
    c.advertises(&keys(&[Key::Digest(digest(1))])).await;
    assert_eq!(c.store.subscribers(), 1);
    drop(c.advertiser);
    eventually("the advertiser to let go of the store", || async {
        c.store.subscribers() == 0 && Arc::strong_count(&c.store) == 1
    })
    .await;
}

/// What the pull-through cache holds or receives is advertised, whatever
/// the registry filter (no image reaches it), and withdrawn when it goes;
/// content both hold stays advertised while either does.
#[tokio::test]
async fn the_cache_is_advertised_from_its_first_byte_until_it_is_evicted() {
    let net = MemoryNetwork::new();
    let router = Arc::new(net.join(peer(1)));
    let other = net.join(peer(2));
    let store = TestStore::new();
    let cache = TestStore::new();
    store.hold(digest(1));
    cache.hold(digest(2));
    let policy = AdvertisePolicy {
        registries: kagami_core::RegistrySet::Only(["quay.io".parse().unwrap()].into()),
        ..AdvertisePolicy::default()
    };
    let advertiser = Advertiser::spawn_with_cache(
        store.clone() as Arc<dyn Store>,
        Some(cache.clone() as Arc<dyn Store>),
        router,
        policy,
    );
    let wait = |want: BTreeSet<Key>| {
        let advertiser = &advertiser;
        async move {
            eventually(&format!("advertising exactly {want:?}"), || async {
                advertiser.snapshot() == want
            })
            .await;
        }
    };
    // The store's loose content is not shared (no quay.io image reaches
    // it); the cache's is.
    wait(keys(&[Key::Digest(digest(2))])).await;
    cache.hold(digest(3));
    cache.emit(Event::ContentAdded(digest(3)));
    wait(keys(&[Key::Digest(digest(2)), Key::Digest(digest(3))])).await;
    assert_eq!(
        other
            .find_providers(&Key::Digest(digest(3)), 3)
            .await
            .unwrap(),
        vec![peer(1)]
    );
    cache.drop_content(&digest(2));
    cache.emit(Event::ContentRemoved(digest(2)));
    wait(keys(&[Key::Digest(digest(3))])).await;
}
