//! The pull-through cache: filled once however many ask, read while it
//! arrives (ranges too), never a last byte of a wrong entry, bounded by
//! evicting what nobody reads, and checked again after a restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use kagami_core::store::{BlobStream, Cache, ContentKind, Event, Filling, Source, Store};
use kagami_core::{Algorithm, Digest, Hasher};
use kagami_store::Spool;
use tokio::sync::mpsc;

fn digest(bytes: &[u8]) -> Digest {
    Hasher::digest(Algorithm::Sha256, bytes)
}

/// A source whose chunks the test sends when it wants; counts its opens.
fn source(opened: &Arc<AtomicUsize>) -> (Source, mpsc::UnboundedSender<std::io::Result<Bytes>>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let opened = opened.clone();
    let source: Source = Box::pin(async move {
        opened.fetch_add(1, Ordering::SeqCst);
        let body: BlobStream = Box::pin(tokio_stream::wrappers::UnboundedReceiverStream::new(rx));
        Ok(body)
    });
    (source, tx)
}

/// A source of `bytes` at once.
fn ready(bytes: Vec<u8>) -> Source {
    Box::pin(async move {
        let body: BlobStream = Box::pin(futures::stream::iter(vec![Ok(Bytes::from(bytes))]));
        Ok(body)
    })
}

async fn collect(mut stream: BlobStream) -> (Vec<u8>, Option<std::io::Error>) {
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(error) => return (bytes, Some(error)),
        }
    }
    (bytes, None)
}

/// The next chunk of `stream`, within a generous deadline.
async fn next(stream: &mut BlobStream) -> Bytes {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("a chunk in time")
        .expect("a chunk")
        .expect("not an error")
}

/// Whether `stream` gives nothing for a while (it waits for bytes).
async fn waits(stream: &mut BlobStream) -> bool {
    tokio::time::timeout(Duration::from_millis(200), stream.next())
        .await
        .is_err()
}

#[tokio::test]
async fn readers_get_the_bytes_while_they_arrive_and_one_fetch_serves_all() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), 1 << 30).await.unwrap();
    let data: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
    let d = digest(&data);
    let opened = Arc::new(AtomicUsize::new(0));
    let (first, tx) = source(&opened);
    let mut events = spool.events();
    let filled = spool
        .fill(&d, ContentKind::Blob, data.len() as u64, first)
        .await
        .unwrap();
    assert_eq!(filled, Filling::Started);
    // Advertised from the start, before any byte.
    assert_eq!(events.next().await, Some(Event::ContentAdded(d.clone())));
    let (second, _unused) = source(&opened);
    assert_eq!(
        spool
            .fill(&d, ContentKind::Blob, data.len() as u64, second)
            .await
            .unwrap(),
        Filling::Arriving
    );
    assert!(spool.arriving(&d));

    let mut whole = spool.read(&d, None).await.unwrap();
    let mut tail = spool.read(&d, Some(400_000..600_000)).await.unwrap();
    assert!(waits(&mut whole).await, "nothing arrived yet");
    tx.send(Ok(Bytes::copy_from_slice(&data[..300_000])))
        .unwrap();
    let got = next(&mut whole).await;
    assert_eq!(&got[..], &data[..got.len()]);
    assert!(waits(&mut tail).await, "a range past the written end waits");
    tx.send(Ok(Bytes::copy_from_slice(&data[300_000..])))
        .unwrap();
    drop(tx);
    let (rest, error) = collect(whole).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!([got.to_vec(), rest].concat(), data);
    let (ranged, error) = collect(tail).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(ranged, data[400_000..]);
    assert_eq!(opened.load(Ordering::SeqCst), 1, "one fetch");

    // Kept: read again from the file, and a fill finds it.
    assert!(!spool.arriving(&d));
    let (again, _) = collect(spool.read(&d, None).await.unwrap()).await;
    assert_eq!(again, data);
    let (third, _unused) = source(&opened);
    assert_eq!(
        spool
            .fill(&d, ContentKind::Blob, data.len() as u64, third)
            .await
            .unwrap(),
        Filling::Kept
    );
    assert_eq!(opened.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_wrong_digest_aborts_every_reader_before_its_last_byte_and_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), 1 << 30).await.unwrap();
    let data = vec![7u8; 300_000];
    let claimed = digest(b"something else");
    let opened = Arc::new(AtomicUsize::new(0));
    let (wrong, tx) = source(&opened);
    spool
        .fill(&claimed, ContentKind::Blob, data.len() as u64, wrong)
        .await
        .unwrap();
    let reader = spool.read(&claimed, None).await.unwrap();
    tx.send(Ok(Bytes::from(data.clone()))).unwrap();
    drop(tx);
    let (got, error) = collect(reader).await;
    assert!(error.is_some(), "the reader got no error");
    assert!(
        got.len() < data.len(),
        "the reader got every byte of a wrong blob"
    );
    assert!(error.unwrap().to_string().contains("hash to"));
    assert!(spool.stat(&claimed).await.is_err(), "a wrong blob is kept");
    assert!(
        std::fs::read_dir(dir.path().join("partial"))
            .unwrap()
            .next()
            .is_none()
    );
}

#[tokio::test]
async fn more_or_fewer_bytes_than_announced_keep_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), 1 << 30).await.unwrap();
    for (announced, sent) in [(1000u64, 999usize), (1000, 1001)] {
        let data = vec![1u8; sent];
        let d = digest(&data[..sent.min(announced as usize)]);
        let opened = Arc::new(AtomicUsize::new(0));
        let (body, tx) = source(&opened);
        spool
            .fill(&d, ContentKind::Blob, announced, body)
            .await
            .unwrap();
        let reader = spool.read(&d, None).await.unwrap();
        tx.send(Ok(Bytes::from(data))).unwrap();
        drop(tx);
        let (_, error) = collect(reader).await;
        let error = error.expect("an error");
        assert!(error.to_string().contains("announced"), "{error}");
        assert!(spool.stat(&d).await.is_err());
    }
}

#[tokio::test]
async fn the_least_recently_read_is_evicted_never_one_being_read() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), 3000).await.unwrap();
    let blobs: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 1000]).collect();
    let digests: Vec<Digest> = blobs.iter().map(|b| digest(b)).collect();
    for (blob, d) in blobs.iter().zip(&digests).take(3) {
        spool
            .fill(d, ContentKind::Blob, 1000, ready(blob.clone()))
            .await
            .unwrap();
        let _ = collect(spool.read(d, None).await.unwrap()).await;
    }
    // 0 was read longest ago, but is being read now; 1 is next.
    let held = spool.read(&digests[0], None).await.unwrap();
    let mut events = spool.events();
    spool
        .fill(
            &digests[3],
            ContentKind::Blob,
            1000,
            ready(blobs[3].clone()),
        )
        .await
        .unwrap();
    assert_eq!(
        events.next().await,
        Some(Event::ContentRemoved(digests[1].clone()))
    );
    assert!(spool.stat(&digests[0]).await.is_ok());
    assert!(spool.stat(&digests[1]).await.is_err());
    let (bytes, _) = collect(held).await;
    assert_eq!(bytes, blobs[0]);
    assert!(spool.usage().bytes <= 3000);
    // Nothing can make room for more than the whole capacity.
    let big = vec![9u8; 4000];
    assert!(
        spool
            .fill(&digest(&big), ContentKind::Blob, 4000, ready(big))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn kept_entries_survive_a_restart_once_checked_again() {
    let dir = tempfile::tempdir().unwrap();
    let (good, bad) = (vec![1u8; 5000], vec![2u8; 5000]);
    let (good_d, bad_d) = (digest(&good), digest(&bad));
    {
        let spool = Spool::open(dir.path(), 1 << 20).await.unwrap();
        for (bytes, d) in [(&good, &good_d), (&bad, &bad_d)] {
            spool
                .fill(d, ContentKind::Blob, 5000, ready(bytes.clone()))
                .await
                .unwrap();
            let _ = collect(spool.read(d, None).await.unwrap()).await;
        }
    }
    // The disk changed one kept file while the node was down.
    let bad_path = dir.path().join("blobs/sha256").join(bad_d.hex());
    std::fs::write(&bad_path, vec![3u8; 5000]).unwrap();
    std::fs::create_dir_all(dir.path().join("partial")).unwrap();
    std::fs::write(dir.path().join("partial/sha256-leftover"), b"half").unwrap();

    let spool = Spool::open(dir.path(), 1 << 20).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while spool.stat(&good_d).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the good entry never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (bytes, _) = collect(spool.read(&good_d, None).await.unwrap()).await;
    assert_eq!(bytes, good);
    assert!(spool.stat(&bad_d).await.is_err());
    assert!(!bad_path.exists(), "a changed file is deleted");
    assert!(!dir.path().join("partial/sha256-leftover").exists());
}

/// A directory on a tmpfs of `size`, unmounted when dropped.
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn new(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "mounting a tmpfs needs root (CI runs as root)"
        );
        SmallDisk(dir)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_abandons_the_fetch_and_keeps_nothing() {
    let disk = SmallDisk::new("1m");
    let spool = Spool::open(disk.0.path(), 1 << 30).await.unwrap();
    let data = vec![5u8; 3 << 20];
    let d = digest(&data);
    let opened = Arc::new(AtomicUsize::new(0));
    let (body, tx) = source(&opened);
    spool
        .fill(&d, ContentKind::Blob, data.len() as u64, body)
        .await
        .unwrap();
    let reader = spool.read(&d, None).await.unwrap();
    tx.send(Ok(Bytes::from(data))).unwrap();
    drop(tx);
    let (_, error) = collect(reader).await;
    let error = error.expect("the reader learns the fetch failed");
    assert!(error.to_string().contains("cannot write"), "{error}");
    assert!(spool.stat(&d).await.is_err());
    let partial = std::fs::read_dir(disk.0.path().join("partial"))
        .unwrap()
        .count();
    assert_eq!(partial, 0, "a partial file is left");
}
