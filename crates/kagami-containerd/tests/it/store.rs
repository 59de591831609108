//! `Containerd` against a real containerd: the conformance kit, docker
//! archives, the gRPC read path, CRI's records, and containerd going away.

use std::collections::HashMap;

use futures::StreamExt;
use kagami_containerd::{Config, Containerd};
use kagami_containerd_api::containerd::services::images::v1::images_client::ImagesClient;
use kagami_containerd_api::containerd::services::images::v1::{
    CreateImageRequest, Image as ImageRecord,
};
use kagami_containerd_api::containerd::types::Descriptor;
use kagami_containerd_api::tonic::Request;
use kagami_core::Digest;
use kagami_core::store::{ContentKind, Error, Store};
use kagami_store::conformance;
use kagami_store::testing::{ArchiveFormat, ImageSpec};
use sha2::{Digest as _, Sha256};

use crate::harness::{CtrHarness, connect};
use kagami_containerd::testing::{Daemon, NAMESPACE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_store_conformance_kit() {
    let harness = CtrHarness::start().await;
    let scratch = tempfile::tempdir().unwrap();
    conformance::run(&harness, scratch.path()).await;
}

async fn read_all(
    store: &dyn Store,
    digest: &Digest,
    range: Option<std::ops::Range<u64>>,
) -> Vec<u8> {
    let mut stream = store.read(digest, range).await.unwrap();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    bytes
}

fn sha256(bytes: &[u8]) -> String {
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_every_blob_of_a_docker_archive_import() {
    let harness = CtrHarness::start().await;
    let spec = ImageSpec::new("docker.io/library/saved:1", &[20_000, 3_000]).seed(7);
    let (imported, built) = harness.import_spec(spec, ArchiveFormat::Docker).await;
    let image = imported
        .iter()
        .find(|i| i.reference == built.reference)
        .unwrap();
    let (_, manifest) = harness.store.read_manifest(&image.digest).await.unwrap();
    assert_eq!(sha256(&manifest), image.digest.to_string());
    let content = harness.store.list_content().await.unwrap();
    let blobs: Vec<_> = content
        .iter()
        .filter(|c| c.kind == ContentKind::Blob)
        .collect();
    // A config and two layers, each read back to its digest.
    assert_eq!(blobs.len(), 3, "{content:?}");
    for blob in blobs {
        let bytes = read_all(&*harness.store, &blob.digest, None).await;
        assert_eq!(sha256(&bytes), blob.digest.to_string());
        assert_eq!(bytes.len() as u64, blob.size);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_through_grpc_when_the_content_dir_is_not_readable() {
    let harness = CtrHarness::start().await;
    let spec = ImageSpec::new("conformance/grpc:1", &[3_000_000]).seed(9);
    let (_, built) = harness.import_spec(spec, ArchiveFormat::Oci).await;
    let absent = tempfile::tempdir().unwrap();
    let grpc_only = Containerd::connect(Config {
        content_dir: Some(absent.path().join("content")),
        ..harness.daemon.config()
    })
    .await
    .unwrap();
    let (layer, size) = built.blobs.iter().max_by_key(|(_, s)| **s).unwrap();
    let whole = read_all(&grpc_only, layer, None).await;
    assert_eq!(sha256(&whole), layer.to_string());
    assert_eq!(whole, read_all(&*harness.store, layer, None).await);
    let part = read_all(&grpc_only, layer, Some(size / 3..size - 7)).await;
    assert_eq!(part, whole[(size / 3) as usize..(size - 7) as usize]);
    let (_, manifest) = grpc_only.read_manifest(&built.digest).await.unwrap();
    assert_eq!(sha256(&manifest), built.digest.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finds_the_content_dir_through_introspection() {
    let harness = CtrHarness::start().await;
    let spec = ImageSpec::new("conformance/direct:1", &[10_000]).seed(4);
    let (_, built) = harness.import_spec(spec, ArchiveFormat::Oci).await;
    let (layer, _) = built.blobs.iter().max_by_key(|(_, s)| **s).unwrap();
    // A direct read serves the file's bytes: change them in place and the
    // store (but not containerd's gRPC read, which would fail) shows it.
    let file = harness
        .daemon
        .content_dir()
        .join("blobs/sha256")
        .join(layer.hex());
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();
    assert_eq!(read_all(&*harness.store, layer, None).await, bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cri_id_and_digest_records_are_not_images() {
    let harness = CtrHarness::start().await;
    let spec = ImageSpec::new("docker.io/library/named:1", &[1_000]).seed(5);
    let (imported, built) = harness.import_spec(spec, ArchiveFormat::Oci).await;
    let image = &imported[0];
    let channel = connect(harness.daemon.socket());
    let mut images = ImagesClient::new(channel);
    let config = built.blobs.keys().next().unwrap();
    for name in [
        format!("sha256:{}", config.hex()),
        format!("docker.io/library/named@{}", image.digest),
    ] {
        let mut request = Request::new(CreateImageRequest {
            image: Some(ImageRecord {
                name,
                labels: HashMap::new(),
                target: Some(Descriptor {
                    media_type: image.media_type.to_string(),
                    digest: image.digest.to_string(),
                    size: image.size as i64,
                    annotations: HashMap::new(),
                }),
                created_at: None,
                updated_at: None,
            }),
            source_date_epoch: None,
        });
        request
            .metadata_mut()
            .insert("containerd-namespace", NAMESPACE.parse().unwrap());
        images.create(request).await.unwrap();
    }
    let listed = harness.store.list_images().await.unwrap();
    assert_eq!(listed, vec![image.clone()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_gone_is_unavailable() {
    let mut daemon = Daemon::start();
    let store = Containerd::connect(daemon.config()).await.unwrap();
    store.list_images().await.unwrap();
    daemon.kill();
    let absent: Digest = sha256(b"x").parse().unwrap();
    for result in [
        store.list_images().await.map(drop),
        store.stat(&absent).await.map(drop),
    ] {
        match result {
            Err(Error::Unavailable { .. }) => {}
            other => panic!("with containerd gone: want Unavailable, got {other:?}"),
        }
    }
    assert!(Containerd::connect(daemon.config()).await.is_err());
}

#[tokio::test]
async fn a_namespace_that_cannot_be_sent_is_refused() {
    let config = Config {
        namespace: "k8s\nio".to_owned(),
        ..Config::default()
    };
    let err = Containerd::connect(config).await.unwrap_err();
    assert!(
        matches!(err, kagami_containerd::Error::Namespace { .. }),
        "{err}"
    );
}
