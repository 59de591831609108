//! Archives written by skopeo, an independent writer, import; and skopeo
//! reads the layout the store wrote. skopeo is required (CI installs it).

use std::path::Path;
use std::time::Duration;

use kagami_core::store::{Image, Store};
use kagami_core::{Digest, MediaType};
use kagami_store::Layout;
use kagami_store::testing::{ArchiveFormat, Compression, ImageSpec, write_archive, write_layout};

use crate::support::{open, read, sha256};

async fn skopeo(args: &[&str]) -> Vec<u8> {
    let output = tokio::process::Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), output)
        .await
        .expect("skopeo took over two minutes")
        .expect("skopeo must be installed (CI installs it): cannot run it");
    assert!(
        output.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn location(transport: &str, path: &Path, name: &str) -> String {
    format!("{transport}:{}:{name}", path.display())
}

/// Every digest the image's manifest names reads back and hashes to
/// itself; returns the config and layer digests.
async fn assert_whole(layout: &Layout, image: &Image) -> Vec<Digest> {
    let (media_type, manifest) = layout.read_manifest(&image.digest).await.unwrap();
    assert_eq!(media_type, MediaType::OciManifest);
    assert_eq!(sha256(&manifest), image.digest);
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let mut digests = vec![
        manifest["config"]["digest"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap(),
    ];
    for layer in manifest["layers"].as_array().unwrap() {
        digests.push(layer["digest"].as_str().unwrap().parse().unwrap());
    }
    for digest in &digests {
        assert_eq!(&sha256(&read(layout, digest).await), digest);
    }
    digests
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archives_written_by_skopeo_import() {
    let scratch = tempfile::tempdir().unwrap();
    let source = scratch.path().join("source");
    let spec = ImageSpec::new("docker.io/library/skopeo-demo:1", &[30_000, 2_000]).seed(4);
    let built = write_layout(&source, &[spec]).unwrap().remove(0);
    let from = location("oci", &source, "1");
    let docker = scratch.path().join("docker.tar");
    skopeo(&[
        "copy",
        &from,
        &location("docker-archive", &docker, "skopeo-demo:1"),
    ])
    .await;
    let oci = scratch.path().join("oci.tar");
    skopeo(&[
        "copy",
        &from,
        &location("oci-archive", &oci, "quay.io/kagami/skopeo-oci:2"),
    ])
    .await;

    let root = tempfile::tempdir().unwrap();
    let layout = open(root.path()).await;

    // docker-archive keeps the config and the uncompressed layers, so the
    // manifest the importer writes is the one the source had.
    let images = layout.import(&docker).await.unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(
        images[0].reference.to_string(),
        "docker.io/library/skopeo-demo:1"
    );
    assert_eq!(images[0].digest, built.digest);
    let blobs = assert_whole(&layout, &images[0]).await;
    assert!(blobs.iter().all(|d| built.blobs.contains_key(d)));

    // oci-archive names the image in org.opencontainers.image.ref.name and
    // gzips the layers; the config is unchanged.
    let images = layout.import(&oci).await.unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(
        images[0].reference.to_string(),
        "quay.io/kagami/skopeo-oci:2"
    );
    let blobs = assert_whole(&layout, &images[0]).await;
    assert!(built.blobs.contains_key(&blobs[0]), "the config changed");
    assert_eq!(layout.list_images().await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_reads_the_layout() {
    let scratch = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let layout = open(root.path()).await;
    let specs = [
        ImageSpec::new("read/back:7", &[4_000]),
        ImageSpec::new("read/multi:8", &[4_000])
            .platforms(&[("linux", "amd64"), ("linux", "arm64")]),
    ];
    let (archive, built) = write_archive(
        scratch.path(),
        &specs,
        ArchiveFormat::Oci,
        Compression::Gzip,
    )
    .unwrap();
    layout.import(&archive).await.unwrap();
    for (image, tag) in built.iter().zip(["7", "8"]) {
        let raw = skopeo(&["inspect", "--raw", &location("oci", root.path(), tag)]).await;
        assert_eq!(sha256(&raw), image.digest);
    }
    let copy = scratch.path().join("copy");
    let into = format!("dir:{}", copy.display());
    skopeo(&["copy", "--all", &location("oci", root.path(), "8"), &into]).await;
    // `dir:` names blobs by hex and platform manifests `<hex>.manifest.json`.
    for digest in built[1].blobs.keys() {
        assert!(
            copy.join(digest.hex()).exists(),
            "skopeo did not copy {digest}"
        );
    }
    for digest in &built[1].manifests[1..] {
        let manifest = copy.join(format!("{}.manifest.json", digest.hex()));
        assert_eq!(&sha256(&std::fs::read(manifest).unwrap()), digest);
    }
}
