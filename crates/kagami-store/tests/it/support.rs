//! Helpers shared by the tests: opening layouts, reading content back,
//! looking for leftovers, and rewriting fixture archives.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use kagami_core::Digest;
use kagami_core::store::{Event, EventStream, Store};
use kagami_store::testing::{ArchiveFormat, BuiltImage, Compression, ImageSpec, write_archive};
use kagami_store::{Layout, Options};
use sha2::Digest as _;

/// Opens a layout that polls quickly, so that tests of the watcher are fast.
pub async fn open(root: &Path) -> Layout {
    let options = Options {
        poll_interval: Duration::from_millis(50),
        ..Options::default()
    };
    Layout::open_with(root, options).await.unwrap()
}

pub fn sha256(bytes: &[u8]) -> Digest {
    Digest::from_hash(kagami_core::Algorithm::Sha256, &sha2::Sha256::digest(bytes))
}

/// Reads content whole.
pub async fn read(store: &dyn Store, digest: &Digest) -> Vec<u8> {
    let mut stream = store.read(digest, None).await.unwrap();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    bytes
}

/// Asserts the store serves the image: resolvable, every digest reads back
/// and hashes to itself.
pub async fn assert_serves(store: &dyn Store, image: &BuiltImage) {
    let resolved = store.resolve(&image.reference).await.unwrap();
    assert_eq!(resolved.digest, image.digest, "{}", image.reference);
    assert_eq!(resolved.media_type, image.media_type);
    for digest in image.manifests.iter().chain(image.blobs.keys()) {
        let bytes = read(store, digest).await;
        assert_eq!(&sha256(&bytes), digest);
    }
}

/// Files under `blobs/`, as `alg/hex`.
pub fn blob_files(root: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let Ok(algorithms) = fs::read_dir(root.join("blobs")) else {
        return found;
    };
    for algorithm in algorithms {
        let algorithm = algorithm.unwrap();
        for blob in fs::read_dir(algorithm.path()).unwrap() {
            let blob = blob.unwrap();
            found.insert(format!(
                "{}/{}",
                algorithm.file_name().to_string_lossy(),
                blob.file_name().to_string_lossy()
            ));
        }
    }
    found
}

/// Everything left in the import scratch directory.
pub fn leftovers(root: &Path) -> Vec<PathBuf> {
    fs::read_dir(root.join(".tmp"))
        .map(|entries| entries.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

/// Asserts a failed import left the layout as it was: no names, blobs or
/// temporary files beyond `blobs_before`.
pub async fn assert_untouched(
    layout: &Layout,
    blobs_before: &BTreeSet<String>,
    images_before: usize,
) {
    assert_eq!(&blob_files(layout.root()), blobs_before, "blobs changed");
    assert!(
        leftovers(layout.root()).is_empty(),
        "temp files left: {:?}",
        leftovers(layout.root())
    );
    assert_eq!(layout.list_images().await.unwrap().len(), images_before);
}

/// One entry of a plain tar, in memory.
pub struct Entry {
    pub header: tar::Header,
    pub path: String,
    pub data: Vec<u8>,
}

/// The entries of a plain (uncompressed) fixture archive.
pub fn entries(archive: &Path) -> Vec<Entry> {
    let file = fs::File::open(archive).unwrap();
    let mut tar = tar::Archive::new(file);
    tar.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let path = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            let header = e.header().clone();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            Entry { header, path, data }
        })
        .collect()
}

/// Writes entries as a plain tar, each name copied verbatim into the raw
/// header (the tar crate's own setters would refuse hostile names).
pub fn write_entries(path: &Path, entries: &[Entry]) {
    let mut builder = tar::Builder::new(fs::File::create(path).unwrap());
    for e in entries {
        let mut header = e.header.clone();
        header.set_size(e.data.len() as u64);
        let name = e.path.as_bytes();
        let old = header.as_old_mut();
        old.name = [0; 100];
        old.name[..name.len()].copy_from_slice(name);
        if let Some(ustar) = header.as_ustar_mut() {
            ustar.prefix = [0; 155];
        }
        header.set_cksum();
        builder.append(&header, &e.data[..]).unwrap();
    }
    builder.finish().unwrap();
}

/// Rewrites a plain archive through `edit`, into a new file next to it.
pub fn rewrite(archive: &Path, edit: impl FnOnce(&mut Vec<Entry>)) -> PathBuf {
    let mut all = entries(archive);
    edit(&mut all);
    let out = archive.with_extension("edited.tar");
    write_entries(&out, &all);
    out
}

/// A regular-file entry.
pub fn file_entry(path: &str, data: &[u8]) -> Entry {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    Entry {
        header,
        path: path.to_owned(),
        data: data.to_vec(),
    }
}

/// Collects events until `wanted` of them match, or panics after 10 s.
pub async fn wait_for(events: &mut EventStream, mut wanted: Vec<Event>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !wanted.is_empty() {
        let event = tokio::time::timeout_at(deadline, events.next())
            .await
            .unwrap_or_else(|_| panic!("events never came: {wanted:?}"))
            .expect("event stream ended");
        wanted.retain(|w| *w != event);
    }
}

/// Writes an archive of one image into `dir`.
pub fn write_one(
    dir: &Path,
    spec: ImageSpec,
    format: ArchiveFormat,
    compression: Compression,
) -> (PathBuf, BuiltImage) {
    let (path, mut built) = write_archive(dir, &[spec], format, compression).unwrap();
    (path, built.remove(0))
}

/// A scratch directory for archives and an empty layout.
pub struct Fixture {
    pub scratch: tempfile::TempDir,
    pub root: tempfile::TempDir,
    pub layout: Layout,
}

impl Fixture {
    pub async fn new() -> Fixture {
        let root = tempfile::tempdir().unwrap();
        Fixture {
            scratch: tempfile::tempdir().unwrap(),
            layout: open(root.path()).await,
            root,
        }
    }

    /// Writes an archive of one image into the scratch directory.
    pub fn archive(
        &self,
        spec: ImageSpec,
        format: ArchiveFormat,
        compression: Compression,
    ) -> (PathBuf, BuiltImage) {
        write_one(self.scratch.path(), spec, format, compression)
    }
}
