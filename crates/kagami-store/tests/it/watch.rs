//! A second `Layout` on the same directory (as `kagami server` is while
//! `kagami image import` runs) notices changes and announces them.

use std::time::Duration;

use kagami_core::store::{Event, Store};
use kagami_store::Layout;
use kagami_store::testing::{ArchiveFormat, Compression, ImageSpec, write_archive};

use crate::support::{assert_serves, open, wait_for, write_one};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_writer_is_noticed() {
    let scratch = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let server = open(root.path()).await;
    let cli = open(root.path()).await;
    let mut events = server.events();
    let (archive, built) = write_one(
        scratch.path(),
        ImageSpec::new("watched:1", &[10_000]),
        ArchiveFormat::Docker,
        Compression::Zstd,
    );

    let image = cli.import(&archive).await.unwrap().remove(0);
    let mut added: Vec<Event> = built
        .manifests
        .iter()
        .chain(built.blobs.keys())
        .cloned()
        .map(Event::ContentAdded)
        .collect();
    added.push(Event::ImageAdded(image.clone()));
    wait_for(&mut events, added).await;
    assert_serves(&server, &built).await;

    cli.remove(&image.reference).await.unwrap();
    wait_for(
        &mut events,
        vec![
            Event::ImageRemoved(image.clone()),
            Event::ContentRemoved(image.digest.clone()),
        ],
    )
    .await;
    assert!(server.resolve(&image.reference).await.is_err());
    assert!(server.list_content().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_falls_behind_gets_resync() {
    let scratch = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let options = kagami_store::Options {
        event_capacity: 2,
        ..Default::default()
    };
    let layout = Layout::open_with(root.path(), options).await.unwrap();
    let mut events = layout.events();
    let (archive, _) = write_one(
        scratch.path(),
        ImageSpec::new("many:1", &[10, 20, 30, 40]),
        ArchiveFormat::Oci,
        Compression::None,
    );
    layout.import(&archive).await.unwrap();
    let first = tokio::time::timeout(
        Duration::from_secs(5),
        futures::StreamExt::next(&mut events),
    )
    .await
    .unwrap();
    assert_eq!(first, Some(Event::Resync));
}

#[test]
fn the_watcher_stops_with_the_last_clone() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let root = tempfile::tempdir().unwrap();
        let metrics = tokio::runtime::Handle::current().metrics();
        let settle = |want: usize, what: &'static str| async move {
            let metrics = tokio::runtime::Handle::current().metrics();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while metrics.num_alive_tasks() != want {
                assert!(tokio::time::Instant::now() < deadline, "{what}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        let before = metrics.num_alive_tasks();
        // No polls during the test, so the only task is the watcher itself.
        let options = kagami_store::Options {
            poll_interval: Duration::from_secs(3600),
            ..Default::default()
        };
        let layout = Layout::open_with(root.path(), options).await.unwrap();
        settle(before + 1, "no watcher task started").await;
        let clone = layout.clone();
        drop(layout);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            metrics.num_alive_tasks(),
            before + 1,
            "stopped while a clone lives"
        );
        drop(clone);
        settle(before, "the watcher outlived the layout").await;
    });
}

/// Two writers at once (two processes, as far as the lock can tell): both
/// imports land; neither overwrites the other's index.json.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_are_serialised() {
    let scratch = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let (a, b) = (open(root.path()).await, open(root.path()).await);
    let mut archives = Vec::new();
    for i in 0..6 {
        let spec = [ImageSpec::new(&format!("parallel/{i}:1"), &[50_000]).seed(i)];
        archives.push(
            write_archive(scratch.path(), &spec, ArchiveFormat::Oci, Compression::None)
                .unwrap()
                .0,
        );
    }
    let mut tasks = Vec::new();
    for (i, archive) in archives.into_iter().enumerate() {
        let layout = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            layout.import(&archive).await.unwrap()
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let reopened = Layout::open(root.path()).await.unwrap();
    assert_eq!(reopened.list_images().await.unwrap().len(), 6);
}
