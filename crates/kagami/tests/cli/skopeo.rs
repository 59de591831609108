//! skopeo, an independent OCI client, pulls from a running node, and
//! through a node that only finds the image on a peer; every digest it
//! receives must be the source archive's.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use kagami_store::testing::{ArchiveFormat, BuiltImage, Compression, ImageSpec, write_archive};

use crate::cluster::{Cluster, archive, hold, keys};
use crate::harness::{Server, require, run_ok, sha256_file};
use crate::pull::eventually_manifest;

fn skopeo(args: &[&str]) -> String {
    let output = Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo runs");
    assert!(
        output.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

/// Every blob file in an OCI layout directory hashes to its name, and the
/// set of names is returned.
fn layout_digests(dir: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir(dir.join("blobs/sha256")).expect("blobs dir") {
        let path = entry.expect("dir entry").path();
        let name = format!(
            "sha256:{}",
            path.file_name().and_then(|n| n.to_str()).expect("name")
        );
        assert_eq!(sha256_file(&path), name, "{} is corrupt", path.display());
        found.insert(name);
    }
    found
}

fn expected_digests(image: &BuiltImage) -> BTreeSet<String> {
    image
        .manifests
        .iter()
        .chain(image.blobs.keys())
        .map(|d| d.to_string())
        .collect()
}

#[test]
fn skopeo_pulls_multi_layer_image_with_matching_digests() {
    require("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let spec = ImageSpec::new("docker.io/library/demo:1", &[300_000, 70_000, 1_500_000]).seed(7);
    let (archive, built) =
        write_archive(tmp.path(), &[spec], ArchiveFormat::Oci, Compression::Gzip).unwrap();
    let data = tmp.path().join("data");
    run_ok(&data, &["image", "import", archive.to_str().unwrap()]);
    let server = Server::start(&data, &[]);

    let out = tmp.path().join("pulled");
    let source = format!("docker://{}/library/demo:1", server.host());
    let dest = format!("oci:{}:demo", out.display());
    skopeo(&[
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        &source,
        &dest,
    ]);
    assert_eq!(layout_digests(&out), expected_digests(&built[0]));

    let inspected: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", "--tls-verify=false", &source])).unwrap();
    assert_eq!(inspected["Digest"], built[0].digest.to_string());
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), 3);
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &source]);
    let raw_digest = {
        use sha2::Digest as _;
        let hash = sha2::Sha256::digest(raw.as_bytes());
        format!(
            "sha256:{}",
            hash.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )
    };
    assert_eq!(
        raw_digest,
        built[0].digest.to_string(),
        "raw manifest bytes differ"
    );
}

#[test]
fn skopeo_pulls_every_platform_of_an_index_by_digest_from_a_non_default_registry() {
    require("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let spec = ImageSpec::new("registry.example.com/team/app:v2", &[40_000, 90_000])
        .platforms(&[("linux", "amd64"), ("linux", "arm64")])
        .seed(11);
    let (archive, built) =
        write_archive(tmp.path(), &[spec], ArchiveFormat::Oci, Compression::Zstd).unwrap();
    let data = tmp.path().join("data");
    run_ok(&data, &["image", "import", archive.to_str().unwrap()]);
    let server = Server::start(&data, &["--default-registry", "registry.example.com"]);

    // By digest, through the node's default registry.
    let out = tmp.path().join("pulled");
    let source = format!("docker://{}/team/app@{}", server.host(), built[0].digest);
    skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        &source,
        &format!("oci:{}:app", out.display()),
    ]);
    assert_eq!(layout_digests(&out), expected_digests(&built[0]));
    assert_eq!(built[0].manifests.len(), 3, "an index and two manifests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_pulls_through_a_node_that_finds_the_image_on_a_peer() {
    require("skopeo");
    let cluster = Cluster::start(3).await;
    let [_, holder, puller] = &cluster.nodes[..] else {
        unreachable!()
    };
    // No `?ns=` from skopeo: the node takes the name as Docker Hub's.
    let spec = ImageSpec::new("docker.io/library/relayed:1", &[300_000, 70_000, 1_500_000]).seed(8);
    let (archive, image) = archive(cluster.dir(), spec).await;
    cluster.joined().await;
    hold(holder, &archive, keys(&image)).await;
    let host = puller.registry_addr();
    eventually_manifest(host, &image.reference, "1", &image.digest).await;

    let out = cluster.dir().join("pulled");
    let source = format!("docker://{host}/library/relayed:1");
    let args = [
        "copy".to_owned(),
        "--preserve-digests".to_owned(),
        "--src-tls-verify=false".to_owned(),
        source.clone(),
        format!("oci:{}:relayed", out.display()),
    ];
    let inspected = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        skopeo(&args);
        // Tag lists are not mirrored (containerd never asks for them).
        skopeo(&["inspect", "--no-tags", "--tls-verify=false", &source])
    })
    .await
    .unwrap();
    assert_eq!(layout_digests(&out), expected_digests(&image));
    let inspected: serde_json::Value = serde_json::from_str(&inspected).unwrap();
    assert_eq!(inspected["Digest"], image.digest.to_string());
    assert_eq!(puller.mirror_stats().unwrap().bytes_relayed().len(), 1);
    cluster.shutdown().await;
}
