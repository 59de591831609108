//! The rollout scenarios of the multi-host test bed (`kagami-testbed`), at
//! CI sizes: 4 hosts, images of at most 16 MiB, shaped links. Each test
//! makes its own bed (network namespaces, containerd and kagami per host,
//! upstream registries) and removes it, also when it fails. They need root,
//! as CI runs them; without it they fail with the reason.
//!
//! Each prints its report (table and JSON) to stdout; `scripts/testbed`
//! runs the same scenarios by hand at any size.

use std::time::Duration;

use kagami_testbed::bed::Published;
use kagami_testbed::{Bed, BedConfig, Report, Shape, scenario};

/// The CI bed: 4 hosts on 200 Mbit/s links, the upstream on 100 Mbit/s.
fn config() -> BedConfig {
    BedConfig {
        hosts: 4,
        host_shape: Shape::rate(200),
        upstream_shape: Shape::rate(100),
        kagami: env!("CARGO_BIN_EXE_kagami").into(),
        log_level: "info".to_owned(),
        pull_through: true,
    }
}

/// A bed with one image published (`total` bytes in `layers` layers).
async fn bed(total: u64, layers: u32) -> (Bed, Published) {
    tokio::task::spawn_blocking(move || {
        let mut bed = Bed::start(config()).unwrap_or_else(|e| panic!("the bed did not start: {e}"));
        let image = bed
            .publish(total, layers)
            .unwrap_or_else(|e| panic!("publishing the image failed: {e}"));
        (bed, image)
    })
    .await
    .unwrap()
}

/// Prints the report, for the record.
fn show(report: &Report) {
    println!("{}", report.table());
    println!("{}", report.json());
}

/// Removes the bed off the async workers (it waits for processes).
async fn remove(bed: Bed) {
    tokio::task::spawn_blocking(move || drop(bed))
        .await
        .unwrap();
}

const MIB: u64 = 1 << 20;

/// The pull-through target: the upstream sent at most 1.2 × the image.
fn assert_about_one_copy_from_the_upstream(report: &Report) {
    assert!(
        report.upstream_multiple() <= 1.2,
        "the upstream sent {:.2} × the image\n{}",
        report.upstream_multiple(),
        report.table()
    );
}

/// *Rolling*: one host pulls, then the others at once; they get it from
/// peers (or their own pull-through cache), so the upstream sends about
/// one copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_followers_pull_from_peers() {
    let (bed, image) = bed(10_000_000, 4).await;
    let report = scenario::rolling(&bed, &image).await.unwrap();
    show(&report);
    assert_about_one_copy_from_the_upstream(&report);
    // Pulled through, the first host's blobs came through their origins,
    // whose caches then hold one copy between them: each follower reads
    // from its own cache what it was the origin of, the rest from peers.
    let followers = &report.results[1..];
    let from_peers: u64 = followers.iter().map(|r| r.bytes_from_peers).sum();
    let floor = (followers.len() as u64 - 1) * report.image_bytes;
    assert!(
        from_peers >= floor,
        "the followers got {from_peers} bytes from peers, under {floor}\n{}",
        report.table()
    );
    remove(bed).await;
}

/// *Cold*: every host pulls at once. Pulled through, the upstream sends
/// about one copy (without it, one per host: the test bed issue's
/// baseline); every host ends with the image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_every_host_completes_with_one_copy_from_the_upstream() {
    let (bed, image) = bed(16 * MIB, 1).await;
    let report = scenario::cold(&bed, &image).await.unwrap();
    show(&report);
    assert!(report.results.iter().all(|r| r.pull_seconds.is_some()));
    assert_about_one_copy_from_the_upstream(&report);
    remove(bed).await;
}

/// Every host pulls at once with containerd, and only the image's origins
/// can reach the upstream (the others' routes to it are cut): every host
/// still gets the image, through the origins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_cut_off_from_the_upstream_pull_through_the_origins() {
    let (mut bed, mut image) = bed(12 * MIB, 2).await;
    // An image whose keys have an origin on every host cuts nobody off
    // (its digests decide): take another until one leaves a host out.
    for _ in 0..8 {
        if bed.origin_hosts(&image).unwrap().len() < bed.nodes.len() {
            break;
        }
        image = bed.publish(12 * MIB, 2).unwrap();
    }
    let report = scenario::origins_only(&bed, &image).await.unwrap();
    show(&report);
    assert!(
        report.results.iter().all(|r| r.pull_seconds.is_some()),
        "{}",
        report.table()
    );
    // At the first attempt: a retry could find the image on a host that
    // has finished meanwhile, which is no pull-through.
    let retries: Vec<&String> = report
        .notes
        .iter()
        .filter(|n| n.contains("attempt"))
        .collect();
    assert!(retries.is_empty(), "{retries:?}");
    let origins = bed.origin_hosts(&image).unwrap();
    assert!(
        origins.len() < bed.nodes.len(),
        "every host is an origin: nothing was cut off ({origins:?})"
    );
    for (index, result) in report.results.iter().enumerate() {
        if !origins.contains(&index) {
            assert!(
                result.bytes_from_peers >= report.image_bytes,
                "{} was cut off from the upstream yet got only {} bytes from peers",
                result.host,
                result.bytes_from_peers
            );
        }
    }
    assert_about_one_copy_from_the_upstream(&report);
    remove(bed).await;
}

/// A providing host killed (kagami and containerd, SIGKILL) mid-rollout:
/// every other host still completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_provider_does_not_stop_the_rollout() {
    let (mut bed, image) = bed(16 * MIB, 1).await;
    let report = scenario::provider_killed(&mut bed, &image).await.unwrap();
    show(&report);
    assert!(report.results[1..].iter().all(|r| r.pull_seconds.is_some()));
    remove(bed).await;
}

/// A host cut off from the other hosts (not the upstream) completes its
/// pull through containerd's fallback within a bounded time, and serves
/// peers again once the cut heals (the scenario checks that).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_host_falls_back_and_serves_again_after_healing() {
    let (mut bed, image) = bed(10_000_000, 1).await;
    let second = tokio::task::block_in_place(|| bed.publish(10_000_000, 1)).unwrap();
    let report = scenario::cut_off(&mut bed, &image, &second).await.unwrap();
    show(&report);
    let cut = report.results.last().unwrap();
    // Each miss costs kagami its resolve and manifest budgets (2 s + 3 s)
    // before containerd moves on; far above that, far below a hang.
    let budget = Duration::from_secs(60);
    let took = cut.pull_seconds.expect("the cut-off host pulled");
    assert!(
        took < budget.as_secs_f64(),
        "the cut-off host took {took:.1} s"
    );
    remove(bed).await;
}

/// A slow providing host (2 Mbit/s), the origin of the layer: the others
/// go past it instead of reading the image from it at its pace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_go_past_a_slow_provider() {
    let (mut bed, image) = bed(16 * MIB, 1).await;
    let layer = image
        .image
        .blobs
        .iter()
        .max_by_key(|(_, size)| **size)
        .unwrap()
        .0;
    let slow = bed.origin_of(&layer.to_string()).unwrap();
    let slow_id = bed.nodes[slow].peer_id().unwrap();
    let report = scenario::slow_provider(&mut bed, &image, &Shape::rate(2))
        .await
        .unwrap();
    show(&report);
    for (_, node) in bed.nodes.iter().enumerate().filter(|(i, _)| *i != slow) {
        let from_slow = node.bytes_from(&slow_id).unwrap();
        assert!(
            from_slow < report.image_bytes / 2,
            "{} read {from_slow} of {} bytes from the slow host",
            node.name,
            report.image_bytes
        );
    }
    remove(bed).await;
}

/// containerd restarted on the providing host during a rollout: every
/// pull completes, and the host advertises the image again afterwards
/// (the scenario waits for that).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_containerd_restart_on_a_provider_does_not_stop_the_rollout() {
    let (mut bed, image) = bed(16 * MIB, 1).await;
    let report = scenario::containerd_restarted(&mut bed, &image)
        .await
        .unwrap();
    show(&report);
    assert!(report.results.iter().all(|r| r.pull_seconds.is_some()));
    remove(bed).await;
}

/// The TLS and basic-auth upstream: it refuses anonymous clients, and a
/// host pulls from it without any credentials of its own, through its
/// kagami, which uses the CA and credentials of registries.yaml.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_upstream_is_pulled_through_with_the_credentials_of_registries_yaml() {
    let (bed, image) = bed(MIB, 1).await;
    assert_eq!(bed.tls_upstream.anonymous_status().unwrap(), 401);
    bed.nodes[2].pull(&image.tls_reference, None).await.unwrap();
    bed.nodes[2].check_image(&image.image).unwrap();
    // The credentials work for containerd's own fallback too.
    let user = bed.tls_user();
    bed.nodes[1]
        .pull(&image.tls_reference, Some(&user))
        .await
        .unwrap();
    bed.nodes[1].check_image(&image.image).unwrap();
    remove(bed).await;
}
