//! The conformance kit's [`Harness`] over a real containerd: images go in
//! with `ctr images import` and out with `ctr images rm --sync`, which runs
//! containerd's garbage collection before it returns. containerd 1.6's
//! `ctr` imports only plain tars, so compressed archives are unpacked first.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kagami_containerd::Containerd;
use kagami_core::Reference;
use kagami_core::store::{Error, Image, Store};
use kagami_store::conformance::Harness;
use kagami_store::testing::{ArchiveFormat, BuiltImage, Compression, ImageSpec, write_archive};

use kagami_containerd::testing::Daemon;

/// How long removed content may take to disappear from containerd.
const GC_DEADLINE: Duration = Duration::from_secs(20);

pub struct CtrHarness {
    pub daemon: Daemon,
    pub store: Arc<Containerd>,
    /// Where fixture archives are written.
    scratch: tempfile::TempDir,
}

impl CtrHarness {
    pub async fn start() -> CtrHarness {
        let daemon = Daemon::start();
        let store = Containerd::connect(daemon.config()).await.unwrap();
        CtrHarness {
            daemon,
            store: Arc::new(store),
            scratch: tempfile::tempdir().unwrap(),
        }
    }

    /// Writes one image as an uncompressed archive and imports it; returns
    /// what the import reported and what the image holds.
    pub async fn import_spec(
        &self,
        spec: ImageSpec,
        format: ArchiveFormat,
    ) -> (Vec<Image>, BuiltImage) {
        let (archive, mut built) =
            write_archive(self.scratch.path(), &[spec], format, Compression::None).unwrap();
        (self.import(&archive).await, built.remove(0))
    }
}

#[async_trait::async_trait]
impl Harness for CtrHarness {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    async fn import(&self, archive: &Path) -> Vec<Image> {
        let plain = tokio::task::spawn_blocking({
            let archive = archive.to_path_buf();
            move || decompressed(&archive)
        })
        .await
        .unwrap();
        let archive = plain.to_str().unwrap();
        // Every platform's content is kept, and nothing is unpacked (no
        // snapshotter is needed to serve content).
        self.daemon
            .ctr(&[
                "images",
                "import",
                "--all-platforms",
                "--no-unpack",
                archive,
            ])
            .await;
        std::fs::remove_file(&plain).unwrap();
        self.store.refresh().await.unwrap();
        self.store.list_images().await.unwrap()
    }

    async fn remove(&self, reference: &Reference) {
        let target = self.store.resolve(reference).await.unwrap().digest;
        let name = reference.to_string();
        self.daemon.ctr(&["images", "rm", "--sync", &name]).await;
        // `--sync` collects before returning; the wait only guards against a
        // containerd that collects later. Content another image still
        // reaches stays, of course.
        let deadline = tokio::time::Instant::now() + GC_DEADLINE;
        loop {
            self.store.refresh().await.unwrap();
            let images = self.store.list_images().await.unwrap();
            let still_shared = images.iter().any(|i| i.digest == target);
            let stat = self.store.stat(&target).await;
            if still_shared || matches!(stat, Err(Error::ContentNotFound { .. })) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "containerd kept {target} of the removed {name} for {GC_DEADLINE:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A plain tar of `archive` beside it (gzip and zstd are undone), streamed.
fn decompressed(archive: &Path) -> PathBuf {
    let mut magic = [0u8; 4];
    let mut file = std::fs::File::open(archive).unwrap();
    let read = file.read(&mut magic).unwrap();
    file.seek(SeekFrom::Start(0)).unwrap();
    let mut reader: Box<dyn Read> = match &magic[..read] {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::GzDecoder::new(file)),
        [0x28, 0xb5, 0x2f, 0xfd] => Box::new(zstd::Decoder::new(file).unwrap()),
        _ => Box::new(file),
    };
    let plain = archive.with_extension("plain.tar");
    let mut out = std::fs::File::create(&plain).unwrap();
    std::io::copy(&mut reader, &mut out).unwrap();
    plain
}

/// A gRPC channel of the tests' own to containerd's socket, for looking at
/// what containerd holds without going through kagami.
pub fn connect(socket: &Path) -> kagami_containerd_api::tonic::transport::Channel {
    kagami_containerd_api::connect(socket, Duration::from_secs(5), Duration::from_secs(30))
}
