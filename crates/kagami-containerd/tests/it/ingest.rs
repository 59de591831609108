//! `Containerd::ingest` and `Containerd::unpin` against a real containerd:
//! images copied from an OCI layout are served, labelled as containerd's
//! own pulls label them, survive containerd's garbage collection, are
//! copied once, and are refused when the source's bytes are wrong; only
//! kagami's pins are taken back.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use kagami_containerd::{Containerd, Error as IngestError, ImageLabels};
use kagami_containerd_api::containerd::services::content::v1::content_client::ContentClient;
use kagami_containerd_api::containerd::services::content::v1::{Info, ListContentRequest};
use kagami_containerd_api::containerd::services::images::v1::ListImagesRequest;
use kagami_containerd_api::containerd::services::images::v1::images_client::ImagesClient;
use kagami_containerd_api::tonic::Request;
use kagami_core::store::{BlobStream, ContentInfo, Error, EventStream, Image, Store};
use kagami_core::{Digest, MediaType, Reference};
use kagami_store::Layout;
use kagami_store::testing::{ArchiveFormat, BuiltImage, Compression, ImageSpec, write_archive};

use crate::harness::{CtrHarness, connect};
use kagami_containerd::testing::{Daemon, NAMESPACE};

const SOURCE: &str = "containerd.io/distribution.source.";
const GC_REF: &str = "containerd.io/gc.ref.content";

/// An OCI layout holding `specs`, imported from one archive.
struct Source {
    layout: Layout,
    images: Vec<Image>,
    built: Vec<BuiltImage>,
    _dir: tempfile::TempDir,
}

async fn source(specs: &[ImageSpec], format: ArchiveFormat, compression: Compression) -> Source {
    let dir = tempfile::tempdir().unwrap();
    let (archive, built) = write_archive(dir.path(), specs, format, compression).unwrap();
    let layout = Layout::open(dir.path().join("layout")).await.unwrap();
    let images = layout.import(&archive).await.unwrap();
    std::fs::remove_file(archive).unwrap();
    Source {
        layout,
        images,
        built,
        _dir: dir,
    }
}

fn request<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("containerd-namespace", NAMESPACE.parse().unwrap());
    request
}

/// Every piece of content containerd holds in the test namespace.
async fn content(daemon: &Daemon) -> HashMap<String, Info> {
    let channel = connect(daemon.socket());
    let mut stream = ContentClient::new(channel)
        .list(request(ListContentRequest { filters: vec![] }))
        .await
        .unwrap()
        .into_inner();
    let mut all = HashMap::new();
    while let Some(page) = stream.next().await {
        for info in page.unwrap().info {
            all.insert(info.digest.clone(), info);
        }
    }
    all
}

/// The labels of every image record, by name.
async fn image_labels(daemon: &Daemon) -> HashMap<String, HashMap<String, String>> {
    let channel = connect(daemon.socket());
    let images = ImagesClient::new(channel)
        .list(request(ListImagesRequest { filters: vec![] }))
        .await
        .unwrap()
        .into_inner()
        .images;
    images.into_iter().map(|i| (i.name, i.labels)).collect()
}

async fn read_all(store: &dyn Store, digest: &Digest) -> Vec<u8> {
    let mut stream = store.read(digest, None).await.unwrap();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    bytes
}

/// Checks that `store` serves every manifest and blob of `built`, each
/// read back to its digest.
async fn serves(store: &Containerd, built: &BuiltImage) {
    let image = store.resolve(&built.reference).await.unwrap();
    assert_eq!(image.digest, built.digest);
    for digest in &built.manifests {
        let (_, bytes) = store.read_manifest(digest).await.unwrap();
        assert_eq!(
            kagami_core::Hasher::digest(digest.algorithm(), &bytes),
            *digest
        );
    }
    for (digest, size) in &built.blobs {
        let bytes = read_all(store, digest).await;
        assert_eq!(bytes.len() as u64, *size, "{digest}");
        assert_eq!(
            kagami_core::Hasher::digest(digest.algorithm(), &bytes),
            *digest
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingested_image_is_served_labelled_and_pinned() {
    let harness = CtrHarness::start().await;
    // A layer of several MiB takes several write messages.
    let spec = ImageSpec::new("docker.io/library/airgap:1", &[30_000, 3_500_000]).seed(31);
    let source = source(&[spec], ArchiveFormat::Docker, Compression::Gzip).await;
    let built = &source.built[0];

    let ingested = harness
        .store
        .ingest(&source.layout, &source.images, &ImageLabels::pinned())
        .await
        .unwrap();
    assert_eq!(ingested, source.images);
    serves(&harness.store, built).await;

    let listed = harness.daemon.ctr(&["images", "ls"]).await;
    let line = listed
        .lines()
        .find(|l| l.starts_with("docker.io/library/airgap:1 "))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(line.contains(&built.digest.to_string()), "{line}");
    assert!(line.contains("io.cri-containerd.pinned=pinned"), "{line}");
    assert!(line.contains("io.kagami.pinned=airgap"), "{line}");

    let label = format!("{SOURCE}docker.io=library/airgap");
    let content_ls = harness.daemon.ctr(&["content", "ls"]).await;
    for digest in built.manifests.iter().chain(built.blobs.keys()) {
        let line = content_ls
            .lines()
            .find(|l| l.starts_with(digest.as_str()))
            .unwrap_or_else(|| panic!("{digest} not in {content_ls}"));
        assert!(line.contains(&label), "{line}");
    }
    // The manifest names its config and layers for containerd's collector.
    let all = content(&harness.daemon).await;
    let manifest = &all[built.digest.as_str()].labels;
    let refs: Vec<&String> = manifest
        .iter()
        .filter(|(k, _)| k.starts_with(GC_REF))
        .map(|(_, v)| v)
        .collect();
    assert_eq!(refs.len(), built.blobs.len(), "{manifest:?}");
    assert!(
        built.blobs.keys().all(|d| refs.contains(&&d.to_string())),
        "{manifest:?}"
    );
    assert!(
        manifest.contains_key(&format!("{GC_REF}.config")),
        "{manifest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_keeps_its_children_through_garbage_collection() {
    let harness = CtrHarness::start().await;
    let spec = ImageSpec::new("registry.example.com/team/multi:2", &[40_000, 9_000])
        .platforms(&[("linux", "amd64"), ("linux", "arm64")])
        .seed(32);
    let source = source(&[spec], ArchiveFormat::Oci, Compression::Zstd).await;
    let built = &source.built[0];
    harness
        .store
        .ingest(&source.layout, &source.images, &ImageLabels::none())
        .await
        .unwrap();
    let all = content(&harness.daemon).await;
    let index = &all[built.digest.as_str()].labels;
    for (i, child) in built.manifests[1..].iter().enumerate() {
        assert_eq!(
            index.get(&format!("{GC_REF}.m.{i}")),
            Some(&child.to_string()),
            "{index:?}"
        );
    }

    // Removing an unrelated image with --sync runs the collector: its
    // content goes, the ingested image's stays.
    let (_, other) = harness
        .import_spec(
            ImageSpec::new("docker.io/library/unrelated:1", &[7_000]).seed(33),
            ArchiveFormat::Oci,
        )
        .await;
    harness
        .daemon
        .ctr(&["images", "rm", "--sync", "docker.io/library/unrelated:1"])
        .await;
    let after = content(&harness.daemon).await;
    for digest in other.blobs.keys() {
        assert!(!after.contains_key(digest.as_str()), "{digest} survived");
    }
    for digest in built.manifests.iter().chain(built.blobs.keys()) {
        assert!(after.contains_key(digest.as_str()), "{digest} collected");
    }
    harness.store.refresh().await.unwrap();
    serves(&harness.store, built).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingesting_again_changes_nothing() {
    let harness = CtrHarness::start().await;
    let spec = ImageSpec::new("docker.io/library/twice:1", &[12_000, 8_000]).seed(34);
    let source = source(&[spec], ArchiveFormat::Oci, Compression::None).await;
    let labels = ImageLabels::pinned();
    harness
        .store
        .ingest(&source.layout, &source.images, &labels)
        .await
        .unwrap();
    let before = content(&harness.daemon).await;
    let images_before = image_labels(&harness.daemon).await;
    // containerd's timestamps have a resolution far below this.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    harness
        .store
        .ingest(&source.layout, &source.images, &labels)
        .await
        .unwrap();
    assert_eq!(content(&harness.daemon).await, before);
    assert_eq!(image_labels(&harness.daemon).await, images_before);
    serves(&harness.store, &source.built[0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_content_names_every_repository_it_came_from() {
    let harness = CtrHarness::start().await;
    // Same seed and layer sizes: the same layers under three names.
    let specs = [
        ImageSpec::new("docker.io/library/one:1", &[5_000]).seed(35),
        ImageSpec::new("docker.io/team/two:1", &[5_000]).seed(35),
        ImageSpec::new("registry.example.com/three:1", &[5_000]).seed(35),
    ];
    let source = source(&specs, ArchiveFormat::Oci, Compression::None).await;
    harness
        .store
        .ingest(&source.layout, &source.images, &ImageLabels::none())
        .await
        .unwrap();
    let all = content(&harness.daemon).await;
    // Each image has a config of its own; the layer is the same.
    let shared: Vec<&Digest> = source.built[0]
        .blobs
        .keys()
        .filter(|d| source.built.iter().all(|b| b.blobs.contains_key(d)))
        .collect();
    assert_eq!(shared.len(), 1, "{:?}", source.built);
    for layer in shared {
        let labels = &all[layer.as_str()].labels;
        assert_eq!(
            labels
                .get(&format!("{SOURCE}docker.io"))
                .map(String::as_str),
            Some("library/one,team/two"),
            "{labels:?}"
        );
        assert_eq!(
            labels
                .get(&format!("{SOURCE}registry.example.com"))
                .map(String::as_str),
            Some("three"),
            "{labels:?}"
        );
    }
    for built in &source.built {
        serves(&harness.store, built).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpin_takes_back_only_kagamis_pins() {
    let harness = CtrHarness::start().await;
    let spec = ImageSpec::new("docker.io/library/kagamis:1", &[3_000]).seed(36);
    let source = source(&[spec], ArchiveFormat::Oci, Compression::None).await;
    harness
        .store
        .ingest(&source.layout, &source.images, &ImageLabels::pinned())
        .await
        .unwrap();
    harness
        .import_spec(
            ImageSpec::new("docker.io/library/theirs:1", &[4_000]).seed(37),
            ArchiveFormat::Oci,
        )
        .await;
    harness
        .daemon
        .ctr(&[
            "images",
            "label",
            "docker.io/library/theirs:1",
            "io.cri-containerd.pinned=pinned",
        ])
        .await;

    let unpinned = harness.store.unpin().await.unwrap();
    assert_eq!(unpinned, vec!["docker.io/library/kagamis:1".to_owned()]);
    let labels = image_labels(&harness.daemon).await;
    assert!(
        labels["docker.io/library/kagamis:1"].is_empty(),
        "{labels:?}"
    );
    assert_eq!(
        labels["docker.io/library/theirs:1"].get("io.cri-containerd.pinned"),
        Some(&"pinned".to_owned()),
        "{labels:?}"
    );
    // Unpinned is not removed.
    serves(&harness.store, &source.built[0]).await;
    assert!(harness.store.unpin().await.unwrap().is_empty());
}

/// A store that serves one blob with a byte changed.
struct Lying {
    honest: Layout,
    corrupt: Digest,
}

#[async_trait::async_trait]
impl Store for Lying {
    async fn list_images(&self) -> Result<Vec<Image>, Error> {
        self.honest.list_images().await
    }
    async fn list_content(&self) -> Result<Vec<ContentInfo>, Error> {
        self.honest.list_content().await
    }
    async fn resolve(&self, reference: &Reference) -> Result<Image, Error> {
        self.honest.resolve(reference).await
    }
    async fn stat(&self, digest: &Digest) -> Result<ContentInfo, Error> {
        self.honest.stat(digest).await
    }
    async fn read_manifest(&self, digest: &Digest) -> Result<(MediaType, Bytes), Error> {
        self.honest.read_manifest(digest).await
    }
    async fn read(&self, digest: &Digest, range: Option<Range<u64>>) -> Result<BlobStream, Error> {
        let stream = self.honest.read(digest, range).await?;
        if *digest != self.corrupt {
            return Ok(stream);
        }
        let mut first = true;
        Ok(Box::pin(stream.map(move |chunk| {
            chunk.map(|chunk| {
                let mut bytes = chunk.to_vec();
                if std::mem::take(&mut first) {
                    bytes[0] ^= 0xff;
                }
                Bytes::from(bytes)
            })
        })))
    }
    fn events(&self) -> EventStream {
        self.honest.events()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_that_do_not_match_their_digest_are_refused() {
    let harness = CtrHarness::start().await;
    let spec = ImageSpec::new("docker.io/library/lied:1", &[2_000, 60_000]).seed(38);
    let source = source(&[spec], ArchiveFormat::Oci, Compression::None).await;
    let built = &source.built[0];
    let (layer, _) = built.blobs.iter().max_by_key(|(_, s)| **s).unwrap();
    let lying = Lying {
        honest: source.layout.clone(),
        corrupt: layer.clone(),
    };
    let err = harness
        .store
        .ingest(&lying, &source.images, &ImageLabels::pinned())
        .await
        .unwrap_err();
    match &err {
        IngestError::WriteContent { digest, .. } => assert_eq!(digest, layer),
        other => panic!("want WriteContent for {layer}, got {other:?}"),
    }
    assert!(image_labels(&harness.daemon).await.is_empty());
    assert!(!content(&harness.daemon).await.contains_key(layer.as_str()));
    // The failed write was aborted, and an honest copy goes through.
    let active = harness.daemon.ctr(&["content", "active"]).await;
    assert!(!active.contains("kagami-ingest"), "{active}");
    harness
        .store
        .ingest(&source.layout, &source.images, &ImageLabels::pinned())
        .await
        .unwrap();
    serves(&harness.store, built).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_gone_fails_the_ingest_cleanly() {
    let mut harness = CtrHarness::start().await;
    let spec = ImageSpec::new("docker.io/library/gone:1", &[1_000]).seed(39);
    let source = source(&[spec], ArchiveFormat::Oci, Compression::None).await;
    harness.daemon.kill();
    let store: Arc<Containerd> = harness.store.clone();
    let err = store
        .ingest(&source.layout, &source.images, &ImageLabels::pinned())
        .await
        .unwrap_err();
    assert!(matches!(err, IngestError::Lease { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_another_namespace_holds_is_shared_not_rewritten() {
    let harness = CtrHarness::start().await;
    let spec = ImageSpec::new("docker.io/library/elsewhere:1", &[25_000, 3_000]).seed(40);
    let dir = tempfile::tempdir().unwrap();
    let (archive, _) = write_archive(
        dir.path(),
        std::slice::from_ref(&spec),
        ArchiveFormat::Oci,
        Compression::None,
    )
    .unwrap();
    // The same image in another namespace: containerd shares its blobs,
    // and a write of them finds them complete.
    let output = std::process::Command::new("ctr")
        .arg("--address")
        .arg(harness.daemon.socket())
        .args(["--namespace", "default", "images", "import", "--no-unpack"])
        .arg(&archive)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(content(&harness.daemon).await.is_empty());

    let source = source(&[spec], ArchiveFormat::Oci, Compression::None).await;
    harness
        .store
        .ingest(&source.layout, &source.images, &ImageLabels::pinned())
        .await
        .unwrap();
    serves(&harness.store, &source.built[0]).await;
    let label = format!("{SOURCE}docker.io");
    for (digest, info) in content(&harness.daemon).await {
        assert_eq!(
            info.labels.get(&label).map(String::as_str),
            Some("library/elsewhere"),
            "{digest}"
        );
    }
}
