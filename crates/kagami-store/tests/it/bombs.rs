//! What an archive may cost is bounded: an entry no image references is
//! never written, a large one gets the archive refused before anything is
//! written, and so does a stream that decompresses too far; a referenced
//! entry whose size is not what its descriptor says is refused before it
//! is written.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use kagami_store::testing::{ArchiveFormat, Compression, ImageSpec};
use kagami_store::{EXPANSION_FLOOR, Error, MAX_UNREFERENCED_BYTES};

use crate::support::{Fixture, assert_serves, assert_untouched, blob_files, entries, rewrite};

/// Writes `archive` (a plain tar) again, compressed as asked, with one
/// more entry first: `len` zero bytes (a whole number of MiB) at `path`.
/// As bombs are made: one compressed MiB of zeros repeated, which gzip
/// and zstd readers take as one stream (members, frames), so making a
/// gigabyte costs no more than making a megabyte.
fn with_zeros(archive: &Path, path: &str, len: u64, compression: Compression) -> PathBuf {
    const MIB: u64 = 1 << 20;
    assert_eq!(len % MIB, 0);
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_size(len);
    header.set_path(path).unwrap();
    header.set_cksum();
    // The entries that follow, and the end-of-archive marker.
    let mut rest = tar::Builder::new(Vec::new());
    for e in entries(archive) {
        let mut header = e.header.clone();
        rest.append_data(&mut header, &e.path, &e.data[..]).unwrap();
    }
    let rest = rest.into_inner().unwrap();

    let suffix = match compression {
        Compression::None => "tar",
        Compression::Gzip => "tar.gz",
        Compression::Zstd => "tar.zst",
    };
    let out = archive.with_extension(format!("zeros.{suffix}"));
    let mut file = BufWriter::new(File::create(&out).unwrap());
    let zeros = compress(&vec![0; MIB as usize], compression);
    file.write_all(&compress(header.as_bytes(), compression))
        .unwrap();
    for _ in 0..len / MIB {
        file.write_all(&zeros).unwrap();
    }
    file.write_all(&compress(&rest, compression)).unwrap();
    file.flush().unwrap();
    out
}

/// One gzip member or zstd frame holding `bytes`.
fn compress(bytes: &[u8], compression: Compression) -> Vec<u8> {
    match compression {
        Compression::None => bytes.to_vec(),
        Compression::Gzip => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            gz.write_all(bytes).unwrap();
            gz.finish().unwrap()
        }
        Compression::Zstd => zstd::encode_all(bytes, 19).unwrap(),
    }
}

/// The bytes of every file under `root`.
fn disk_use(root: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(root) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => disk_use(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

/// Samples the disk use of `root` until the returned guard is dropped,
/// keeping the largest seen: what a failed import wrote and then deleted
/// shows there, where a look afterwards would miss it.
struct Peak {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    sampler: Option<std::thread::JoinHandle<()>>,
}

impl Peak {
    fn watch(root: &Path) -> Peak {
        let (stop, peak) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let (root, done, max) = (root.to_owned(), stop.clone(), peak.clone());
        let sampler = std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                max.fetch_max(disk_use(&root), Ordering::SeqCst);
                // A sampling period, not a wait for a condition.
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Peak {
            stop,
            peak,
            sampler: Some(sampler),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(sampler) = self.sampler.take() {
            sampler.join().unwrap();
        }
        self.peak.load(Ordering::SeqCst)
    }
}

impl Drop for Peak {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A layout holding one image, and a plain OCI archive of another.
async fn setup() -> (Fixture, kagami_store::testing::BuiltImage, PathBuf) {
    let fx = Fixture::new().await;
    let (held, built) = fx.archive(
        ImageSpec::new("held:1", &[4_000]).seed(11),
        ArchiveFormat::Oci,
        Compression::None,
    );
    fx.layout.import(&held).await.unwrap();
    let (next, _) = fx.archive(
        ImageSpec::new("next:1", &[6_000]).seed(12),
        ArchiveFormat::Oci,
        Compression::None,
    );
    (fx, built, next)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreferenced_entry_is_never_written() {
    let (fx, held, plain) = setup().await;
    let archive = with_zeros(&plain, "filler.bin", 256 << 20, Compression::Gzip);
    assert!(fs::metadata(&archive).unwrap().len() < 2 << 20);
    let blobs_before = blob_files(fx.root.path());
    let used_before = disk_use(fx.root.path());

    let peak = Peak::watch(fx.root.path());
    let err = fx.layout.import(&archive).await.unwrap_err();
    let peak = peak.finish();
    match &err {
        Error::UnreferencedEntries {
            archive: named,
            largest,
            largest_size,
            ..
        } => {
            assert_eq!(named, &archive);
            assert_eq!(largest, "filler.bin");
            assert_eq!(*largest_size, 256 << 20);
        }
        other => panic!("want UnreferencedEntries, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(&archive.display().to_string()),
        "{message}"
    );
    assert!(message.contains("filler.bin"), "{message}");
    assert!(
        peak <= used_before,
        "the import wrote {} bytes before it was refused",
        peak - used_before
    );
    assert_eq!(disk_use(fx.root.path()), used_before);
    assert_untouched(&fx.layout, &blobs_before, 1).await;
    assert_serves(&fx.layout, &held).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_unreferenced_file_is_accepted_and_not_written() {
    for format in [ArchiveFormat::Oci, ArchiveFormat::Docker] {
        let fx = Fixture::new().await;
        let (archive, built) = fx.archive(
            ImageSpec::new("readme:1", &[5_000]).seed(13),
            format,
            Compression::None,
        );
        // Several small extras, well under the allowance together.
        let extra = (MAX_UNREFERENCED_BYTES / 4) as usize;
        let edited = rewrite(&archive, |entries| {
            entries.push(crate::support::file_entry("README.md", b"# An image\n"));
            entries.push(crate::support::file_entry("notes/big.bin", &vec![1; extra]));
        });
        let images = fx.layout.import(&edited).await.unwrap();
        assert_eq!(images.len(), 1, "{format:?}");
        assert_serves(&fx.layout, &built).await;
        let expected: std::collections::BTreeSet<String> = built
            .manifests
            .iter()
            .chain(built.blobs.keys())
            .map(|d| format!("sha256/{}", d.hex()))
            .collect();
        // docker archives get a manifest written by the importer; it is
        // the built image's own (same rule), so the sets match either way.
        assert_eq!(blob_files(fx.root.path()), expected, "{format:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zstd_archive_that_decompresses_too_far_is_refused() {
    let (fx, held, plain) = setup().await;
    let archive = with_zeros(
        &plain,
        "filler.bin",
        EXPANSION_FLOOR + (16 << 20),
        Compression::Zstd,
    );
    let compressed = fs::metadata(&archive).unwrap().len();
    assert!(compressed * kagami_store::EXPANSION_RATIO < EXPANSION_FLOOR);
    let blobs_before = blob_files(fx.root.path());
    let used_before = disk_use(fx.root.path());

    let err = fx.layout.import(&archive).await.unwrap_err();
    match &err {
        Error::DecompressedTooLarge {
            archive: named,
            limit,
            ..
        } => {
            assert_eq!(named, &archive);
            assert_eq!(*limit, EXPANSION_FLOOR);
        }
        other => panic!("want DecompressedTooLarge, got {other:?}"),
    }
    assert!(err.to_string().contains(&archive.display().to_string()));
    assert_eq!(disk_use(fx.root.path()), used_before);
    assert_untouched(&fx.layout, &blobs_before, 1).await;
    assert_serves(&fx.layout, &held).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_referenced_entry_of_the_wrong_size_is_refused_before_it_is_written() {
    let fx = Fixture::new().await;
    let (archive, built) = fx.archive(
        ImageSpec::new("resized:1", &[3_000, 40_000]).seed(14),
        ArchiveFormat::Oci,
        Compression::None,
    );
    let (layer, size) = built.blobs.iter().max_by_key(|(_, s)| **s).unwrap();
    let target = format!("blobs/sha256/{}", layer.hex());
    // The layer entry grows; its descriptor still says the old size. The
    // bytes no longer match the digest either, but the size is known
    // first, from the tar header, before a byte of it is written.
    let edited = rewrite(&archive, |entries| {
        let entry = entries.iter_mut().find(|e| e.path == target).unwrap();
        entry.data.extend_from_slice(&[0; 512]);
    });
    let err = fx.layout.import(&edited).await.unwrap_err();
    match &err {
        Error::EntrySizeMismatch {
            entry,
            digest,
            declared,
            actual,
            ..
        } => {
            assert_eq!(entry, &target);
            assert_eq!(digest, layer);
            assert_eq!(declared, size);
            assert_eq!(*actual, size + 512);
        }
        other => panic!("want EntrySizeMismatch, got {other:?}"),
    }
    assert!(err.to_string().contains(&target), "{err}");
    assert_untouched(&fx.layout, &Default::default(), 0).await;
}
