//! `Containerd::events` against a real containerd: changes arrive as
//! precise events soon after containerd announces them, and a containerd
//! restart ends in one `Resync` and a stream that keeps following.

use std::time::Duration;

use futures::StreamExt;
use kagami_core::store::{Event, EventStream, Store};
use kagami_store::testing::{ArchiveFormat, ImageSpec};

use crate::harness::CtrHarness;

/// How long an announced change may take to reach a subscriber. Far more
/// than it takes; far less than a polling store's 60 s sweep.
const DEADLINE: Duration = Duration::from_secs(15);

/// Events until `done` says the wanted ones have all been seen.
async fn until(events: &mut EventStream, mut done: impl FnMut(&[Event]) -> bool) -> Vec<Event> {
    let mut seen = Vec::new();
    let wait = async {
        while !done(&seen) {
            match events.next().await {
                Some(event) => seen.push(event),
                None => panic!("event stream ended: {seen:?}"),
            }
        }
    };
    if tokio::time::timeout(DEADLINE, wait).await.is_err() {
        panic!("wanted events did not arrive within {DEADLINE:?}: {seen:?}");
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_and_a_removal_arrive_as_precise_events() {
    let harness = CtrHarness::start().await;
    let mut events = harness.store.events();
    // Let the watcher subscribe and take its baseline first.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let spec = ImageSpec::new("docker.io/library/watched:1", &[4_000, 5_000]).seed(3);
    let (_, built) = harness.import_spec(spec, ArchiveFormat::Oci).await;
    let layers: Vec<_> = built.blobs.keys().cloned().collect();
    let seen = until(&mut events, |seen| {
        seen.iter()
            .any(|e| matches!(e, Event::ImageAdded(i) if i.digest == built.digest))
            && layers
                .iter()
                .all(|d| seen.contains(&Event::ContentAdded(d.clone())))
    })
    .await;
    assert!(!seen.contains(&Event::Resync), "{seen:?}");

    harness
        .daemon
        .ctr(&["images", "rm", "--sync", "docker.io/library/watched:1"])
        .await;
    let seen = until(&mut events, |seen| {
        seen.iter()
            .any(|e| matches!(e, Event::ImageRemoved(i) if i.digest == built.digest))
            && layers
                .iter()
                .all(|d| seen.contains(&Event::ContentRemoved(d.clone())))
    })
    .await;
    assert!(!seen.contains(&Event::Resync), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_containerd_restart_ends_in_one_resync_and_following_goes_on() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("kagami_containerd=debug")
        .with_test_writer()
        .try_init();
    let mut harness = CtrHarness::start().await;
    let mut events = harness.store.events();
    tokio::time::sleep(Duration::from_millis(500)).await;

    harness.daemon.kill();
    // While containerd is down the store answers, with an error.
    let down = harness.store.list_images().await.unwrap_err();
    assert!(
        matches!(down, kagami_core::store::Error::Unavailable { .. }),
        "{down:?}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    harness.daemon.restart();
    let seen = until(&mut events, |seen| seen.contains(&Event::Resync)).await;
    assert_eq!(seen, vec![Event::Resync]);

    let spec = ImageSpec::new("docker.io/library/after:1", &[1_000]).seed(4);
    let (_, built) = harness.import_spec(spec, ArchiveFormat::Oci).await;
    let seen = until(&mut events, |seen| {
        seen.iter()
            .any(|e| matches!(e, Event::ImageAdded(i) if i.digest == built.digest))
    })
    .await;
    assert!(!seen.contains(&Event::Resync), "{seen:?}");
}
