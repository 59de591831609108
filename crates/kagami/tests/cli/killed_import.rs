//! `kagami image import` killed with SIGKILL part-way leaves nothing for
//! good: `kagami image gc`, the next import and a node's start each leave
//! the store holding exactly what `index.json` references, and the images
//! imported before still list and pull.
//!
//! The archive reaches the importer through a FIFO, so the test decides
//! how far the import gets: the whole archive for its first pass (which
//! writes nothing), then up to a chosen byte for its second, where the
//! import then waits for more until it is killed.

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kagami_core::manifest::Links;
use kagami_core::{Digest, MediaType};
use kagami_store::testing::{ArchiveFormat, BuiltImage, Compression, ImageSpec, write_archive};

use crate::harness::{DEADLINE, Server, eventually, kagami, run_ok};
use crate::pull::pull_image;

/// What the importer logs once its first pass is over and the archive
/// file closed; only then may the FIFO be opened for the second pass.
const SURVEYED: &str = "archive surveyed";

/// A data directory holding one image imported whole.
struct Store {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    data: PathBuf,
    earlier: BuiltImage,
}

impl Store {
    fn new() -> Store {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let data = dir.join("data");
        let (archive, mut built) = write_archive(
            &dir,
            &[ImageSpec::new("earlier:1", &[200_000, 3_000]).seed(71)],
            ArchiveFormat::Oci,
            Compression::Gzip,
        )
        .unwrap();
        run_ok(&data, &["image", "import", archive.to_str().unwrap()]);
        Store {
            _tmp: tmp,
            dir,
            data,
            earlier: built.remove(0),
        }
    }

    fn layout(&self) -> PathBuf {
        kagami::layout_dir(&self.data)
    }

    /// An archive of one image, as a file in the store's scratch space.
    fn archive(&self, spec: ImageSpec, format: ArchiveFormat, compression: Compression) -> Archive {
        let (path, mut built) = write_archive(&self.dir, &[spec], format, compression).unwrap();
        Archive {
            bytes: fs::read(&path).unwrap(),
            path,
            built: built.remove(0),
        }
    }

    /// Imports `archive` through a FIFO, feeds its second pass `stop`
    /// bytes, waits until `reached` holds for the staging directory, and
    /// kills the import.
    async fn kill_import(&self, archive: &Archive, stop: usize, reached: &dyn Fn(&Path) -> bool) {
        let fifo = self.dir.join("archive.fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(made.success(), "mkfifo {}", fifo.display());
        let mut import = Import::start(&self.data, &fifo);
        let feed = Feed::start(&fifo, archive.bytes.clone(), stop);
        eventually("the import's first pass to end", || {
            import.exited_early();
            std::future::ready(import.log().contains(SURVEYED).then_some(()))
        })
        .await;
        feed.second_pass();
        let staging = self.layout().join(".tmp");
        eventually("the import to get to the kill point", || {
            import.exited_early();
            std::future::ready(reached(&staging).then_some(()))
        })
        .await;
        import.kill();
        drop(feed);
        fs::remove_file(&fifo).unwrap();
        assert!(
            !staging_files(&staging).is_empty(),
            "the killed import left nothing to clean up"
        );
    }

    /// The image imported first still lists and its blobs are whole.
    fn assert_earlier_image_kept(&self) {
        let listed = run_ok(&self.data, &["image", "ls", "-q"]);
        assert!(listed.contains("docker.io/library/earlier:1"), "{listed}");
        for digest in self
            .earlier
            .manifests
            .iter()
            .chain(self.earlier.blobs.keys())
        {
            let file = self.layout().join("blobs/sha256").join(digest.hex());
            assert_eq!(&crate::harness::sha256_file(&file), digest.as_str());
        }
    }
}

/// An archive and what it holds.
struct Archive {
    path: PathBuf,
    bytes: Vec<u8>,
    built: BuiltImage,
}

impl Archive {
    /// Where the data of the entry at `path` starts and ends in the
    /// (plain) archive.
    fn entry_span(&self, path: &str) -> (usize, usize) {
        let mut tar = tar::Archive::new(&self.bytes[..]);
        for entry in tar.entries().unwrap() {
            let entry = entry.unwrap();
            if entry.path_bytes().as_ref() == path.as_bytes() {
                let start = entry.raw_file_position() as usize;
                return (start, start + entry.size() as usize);
            }
        }
        panic!("{} has no entry {path}", self.path.display());
    }

    /// The largest blob: the layer the tests stop in or after.
    fn largest_layer(&self) -> Digest {
        let (digest, _) = self.built.blobs.iter().max_by_key(|(_, s)| **s).unwrap();
        digest.clone()
    }
}

/// `kagami image import FIFO` running, its stderr collected.
struct Import {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Import {
    fn start(data: &Path, fifo: &Path) -> Import {
        let mut child = kagami()
            .args(["image", "import", "--data-dir"])
            .arg(data)
            .arg(fifo)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kagami image import starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut log = sink.lock().expect("log lock");
                log.push_str(&line);
                log.push('\n');
            }
        });
        Import { child, log }
    }

    fn log(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }

    /// Fails the test if the import ended on its own: it must be waiting
    /// for the rest of the archive.
    fn exited_early(&mut self) {
        if let Some(status) = self.child.try_wait().expect("wait on the import") {
            panic!("the import ended by itself ({status}): {}", self.log());
        }
    }

    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the import");
        self.child.wait().expect("reap the import");
    }
}

impl Drop for Import {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes the archive into the FIFO: all of it for the first pass, then,
/// when told, the first `stop` bytes for the second, holding the FIFO open
/// after them so the import waits for more instead of seeing the end.
struct Feed {
    fifo: PathBuf,
    go: Option<Sender<()>>,
    release: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Feed {
    fn start(fifo: &Path, bytes: Vec<u8>, stop: usize) -> Feed {
        let (go, go_rx) = mpsc::channel::<()>();
        let (release, release_rx) = mpsc::channel::<()>();
        let path = fifo.to_owned();
        // Write errors mean the import died; the test then fails on that.
        let thread = std::thread::spawn(move || {
            let feed = |len: usize, hold: Option<&Receiver<()>>| {
                // Blocks until the import opens the FIFO to read.
                let Ok(mut pipe) = OpenOptions::new().write(true).open(&path) else {
                    return false;
                };
                if pipe.write_all(&bytes[..len]).is_err() {
                    return false;
                }
                if let Some(hold) = hold {
                    let _ = hold.recv();
                }
                true
            };
            if feed(bytes.len(), None) && go_rx.recv().is_ok() {
                feed(stop, Some(&release_rx));
            }
        });
        Feed {
            fifo: fifo.to_owned(),
            go: Some(go),
            release: Some(release),
            thread: Some(thread),
        }
    }

    fn second_pass(&self) {
        if let Some(go) = &self.go {
            go.send(()).expect("the feeder runs");
        }
    }
}

impl Drop for Feed {
    /// Ends the feeder wherever it is: told to stop, or, if it waits to
    /// open the FIFO for a reader that is gone, given one for a moment (a
    /// read-write open never blocks on Linux).
    fn drop(&mut self) {
        drop(self.go.take());
        drop(self.release.take());
        let Some(thread) = self.thread.take() else {
            return;
        };
        let deadline = Instant::now() + DEADLINE;
        while !thread.is_finished() && Instant::now() < deadline {
            drop(OpenOptions::new().read(true).write(true).open(&self.fifo));
            std::thread::sleep(Duration::from_millis(10));
        }
        if thread.is_finished() {
            let _ = thread.join();
        }
    }
}

/// Every file under `.tmp`, with its size.
fn staging_files(staging: &Path) -> Vec<(PathBuf, u64)> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(staging) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(staging_files(&path));
        } else if let Ok(meta) = fs::metadata(&path) {
            found.push((path, meta.len()));
        }
    }
    found
}

/// Whether a file is being written in `.tmp` and holds `at_least` bytes.
fn writing(staging: &Path, at_least: u64) -> bool {
    staging_files(staging).iter().any(|(path, size)| {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        name.starts_with("incoming-") && *size >= at_least
    })
}

/// Whether the blob `digest` has been staged whole in `.tmp`.
fn staged(staging: &Path, digest: &Digest) -> bool {
    let name = format!("sha256-{}", digest.hex());
    staging_files(staging).iter().any(|(path, _)| {
        path.file_name()
            .is_some_and(|n| n.to_string_lossy() == name)
    })
}

/// Asserts the layout holds exactly what `index.json` references: every
/// file under `blobs/` reachable from an entry, each reachable one there,
/// `.tmp` empty or absent.
fn assert_only_referenced(layout: &Path) {
    let index: Links = Links::parse(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let mut reachable = BTreeSet::new();
    // Manifests to read; what an image manifest links to is not one.
    let mut manifests: Vec<Digest> = index.manifests.iter().map(|d| d.digest.clone()).collect();
    while let Some(digest) = manifests.pop() {
        if !reachable.insert(digest.clone()) {
            continue;
        }
        let bytes = fs::read(layout.join("blobs/sha256").join(digest.hex())).unwrap();
        let media_type = MediaType::detect(&bytes).expect("a manifest or an index");
        let links = Links::parse(&bytes).unwrap();
        let children = links
            .children(media_type)
            .into_iter()
            .map(|d| d.digest.clone());
        if media_type.is_index() {
            manifests.extend(children);
        } else {
            reachable.extend(children);
        }
    }
    let on_disk: BTreeSet<Digest> = fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            format!("sha256:{name}").parse().unwrap()
        })
        .collect();
    assert_eq!(on_disk, reachable, "blobs/ is not what index.json reaches");
    let left = staging_files(&layout.join(".tmp"));
    assert!(left.is_empty(), "left in .tmp: {left:?}");
    let entries = fs::read_dir(layout.join(".tmp")).map_or(0, |e| e.count());
    assert_eq!(entries, 0, ".tmp is not empty");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_import_leaves_no_orphans_after_image_gc() {
    let store = Store::new();
    // Killed mid-way through writing a 24 MiB layer.
    let archive = store.archive(
        ImageSpec::new("killed:1", &[24 << 20, 5_000]).seed(72),
        ArchiveFormat::Oci,
        Compression::None,
    );
    let layer = archive.largest_layer();
    let (start, end) = archive.entry_span(&format!("blobs/sha256/{}", layer.hex()));
    let middle = start + (end - start) / 2;
    store
        .kill_import(&archive, middle, &|staging| writing(staging, 8 << 20))
        .await;

    let report = run_ok(&store.data, &["image", "gc"]);
    assert!(report.contains("and 1 temporary entry"), "{report}");
    assert_only_referenced(&store.layout());
    store.assert_earlier_image_kept();
    // Nothing is left for a second collection.
    let again = run_ok(&store.data, &["image", "gc"]);
    assert!(
        again.contains("removed 0 unreferenced blobs and 0 temporary entries"),
        "{again}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_import_leaves_no_orphans_after_the_next_import() {
    let store = Store::new();
    // Killed right after a whole layer of a docker archive was staged.
    let archive = store.archive(
        ImageSpec::new("killed:2", &[3 << 20, 2 << 20]).seed(73),
        ArchiveFormat::Docker,
        Compression::None,
    );
    let layer = archive.largest_layer();
    let layer_path = {
        let mut tar = tar::Archive::new(&archive.bytes[..]);
        let mut found = None;
        for entry in tar.entries().unwrap() {
            let entry = entry.unwrap();
            let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            if path.ends_with("/layer.tar") && entry.size() == archive.built.blobs[&layer] {
                found = Some(path);
            }
        }
        found.expect("the layer's entry")
    };
    let (_, end) = archive.entry_span(&layer_path);
    store
        .kill_import(&archive, end, &|staging| staged(staging, &layer))
        .await;

    let next = store.archive(
        ImageSpec::new("next:1", &[40_000]).seed(74),
        ArchiveFormat::Oci,
        Compression::Zstd,
    );
    run_ok(
        &store.data,
        &["image", "import", next.path.to_str().unwrap()],
    );
    assert_only_referenced(&store.layout());
    store.assert_earlier_image_kept();
    let listed = run_ok(&store.data, &["image", "ls", "-q"]);
    assert!(listed.contains("docker.io/library/next:1"), "{listed}");
    assert!(!listed.contains("killed"), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_import_leaves_no_orphans_after_a_restart() {
    let store = Store::new();
    // Killed mid-way through the decompressed stream of a gzip archive.
    let archive = store.archive(
        ImageSpec::new("killed:3", &[12 << 20, 4 << 20]).seed(75),
        ArchiveFormat::Oci,
        Compression::Gzip,
    );
    let stop = archive.bytes.len() * 3 / 5;
    store
        .kill_import(&archive, stop, &|staging| writing(staging, 1 << 20))
        .await;

    // The node collects in the background once it serves.
    let server = Server::start(&store.data, &[]);
    let layout = store.layout();
    eventually(
        "the node to collect the killed import's leftovers",
        || async { staging_files(&layout.join(".tmp")).is_empty().then_some(()) },
    )
    .await;
    eventually("the node to log the collection", || async {
        server
            .log()
            .contains("removed what interrupted imports left in the store")
            .then_some(())
    })
    .await;
    assert_only_referenced(&layout);
    store.assert_earlier_image_kept();
    pull_image(server.addr, &store.earlier).await;
}
