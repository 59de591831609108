//! Every archive format and compression imports to the same images.

use std::io::Write;

use kagami_core::MediaType;
use kagami_core::store::{Event, Store};
use kagami_store::testing::{ArchiveFormat, Compression, ImageSpec, write_archive};

use crate::support::{
    Fixture, assert_serves, blob_files, entries, open, read, rewrite, sha256, wait_for,
};

const FORMATS: [ArchiveFormat; 2] = [ArchiveFormat::Oci, ArchiveFormat::Docker];
const COMPRESSIONS: [Compression; 3] = [Compression::None, Compression::Gzip, Compression::Zstd];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_and_compression_imports() {
    let scratch = tempfile::tempdir().unwrap();
    for format in FORMATS {
        for compression in COMPRESSIONS {
            let root = tempfile::tempdir().unwrap();
            let layout = open(root.path()).await;
            let specs = [
                ImageSpec::new("demo:1", &[20_000, 3_000]).seed(5),
                ImageSpec::new("quay.io/team/other:2", &[20_000, 700]).seed(5),
            ];
            let (archive, built) =
                write_archive(scratch.path(), &specs, format, compression).unwrap();
            let images = layout.import(&archive).await.unwrap();
            let case = format!("{format:?}/{compression:?}");
            assert_eq!(images.len(), 2, "{case}");
            for (image, built) in images.iter().zip(&built) {
                assert_eq!(image.reference, built.reference, "{case}");
                assert_eq!(image.digest, built.digest, "{case}");
                assert_eq!(image.media_type, MediaType::OciManifest, "{case}");
                assert_serves(&layout, built).await;
            }
            assert_eq!(built[0].reference.to_string(), "docker.io/library/demo:1");
            // One copy of the shared layer; nothing but the images' content.
            let expected: usize = 1 + 2 * 3;
            assert_eq!(blob_files(root.path()).len(), expected, "{case}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_platform_indexes_keep_every_child() {
    let scratch = tempfile::tempdir().unwrap();
    for compression in COMPRESSIONS {
        let root = tempfile::tempdir().unwrap();
        let layout = open(root.path()).await;
        let spec = ImageSpec::new("registry.example/multi:1", &[9_000, 100]).platforms(&[
            ("linux", "amd64"),
            ("linux", "arm64"),
            ("windows", "amd64"),
        ]);
        let (archive, built) =
            write_archive(scratch.path(), &[spec], ArchiveFormat::Oci, compression).unwrap();
        let images = layout.import(&archive).await.unwrap();
        assert_eq!(images[0].media_type, MediaType::OciIndex);
        assert_eq!(built[0].manifests.len(), 4);
        assert_serves(&layout, &built[0]).await;
        for child in &built[0].manifests[1..] {
            let (media_type, _) = layout.read_manifest(child).await.unwrap();
            assert_eq!(media_type, MediaType::OciManifest);
        }
    }
}

#[test]
fn docker_archives_refuse_multi_platform_specs() {
    let scratch = tempfile::tempdir().unwrap();
    let spec = ImageSpec::new("x:1", &[10]).platforms(&[("linux", "amd64"), ("linux", "arm64")]);
    let err = write_archive(
        scratch.path(),
        &[spec],
        ArchiveFormat::Docker,
        Compression::None,
    )
    .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_and_oci_archives_of_one_image_give_one_digest() {
    let scratch = tempfile::tempdir().unwrap();
    let spec = [ImageSpec::new("same:1", &[5_000]).seed(9)];
    let mut digests = Vec::new();
    for format in FORMATS {
        let root = tempfile::tempdir().unwrap();
        let layout = open(root.path()).await;
        let (archive, _) = write_archive(scratch.path(), &spec, format, Compression::None).unwrap();
        digests.push(layout.import(&archive).await.unwrap()[0].digest.clone());
        // Importing the same archive again changes nothing.
        digests.push(layout.import(&archive).await.unwrap()[0].digest.clone());
    }
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "{digests:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_layers_get_the_media_type_of_their_compression() {
    let scratch = tempfile::tempdir().unwrap();
    let spec = [ImageSpec::new("layers:1", &[4_000, 4_000, 4_000])];
    let (archive, _) = write_archive(
        scratch.path(),
        &spec,
        ArchiveFormat::Docker,
        Compression::None,
    )
    .unwrap();
    let layer_paths: Vec<String> = entries(&archive)
        .into_iter()
        .filter(|e| e.path.ends_with("/layer.tar"))
        .map(|e| e.path)
        .collect();
    assert_eq!(layer_paths.len(), 3);
    let edited = rewrite(&archive, |all| {
        for e in all.iter_mut() {
            if e.path == layer_paths[1] {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(&e.data).unwrap();
                e.data = gz.finish().unwrap();
            } else if e.path == layer_paths[2] {
                e.data = zstd::encode_all(&e.data[..], 1).unwrap();
            }
        }
    });
    let root = tempfile::tempdir().unwrap();
    let layout = open(root.path()).await;
    let image = layout.import(&edited).await.unwrap().remove(0);
    let (media_type, manifest) = layout.read_manifest(&image.digest).await.unwrap();
    assert_eq!(media_type, MediaType::OciManifest);
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let types: Vec<&str> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "application/vnd.oci.image.layer.v1.tar",
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.oci.image.layer.v1.tar+zstd"
        ]
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    for layer in manifest["layers"].as_array().unwrap() {
        let digest = layer["digest"].as_str().unwrap().parse().unwrap();
        assert_eq!(sha256(&read(&layout, &digest).await), digest);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reimporting_a_name_moves_it_and_frees_the_old_content() {
    let fx = Fixture::new().await;
    let layout = fx.layout.clone();
    let (first, _) = fx.archive(
        ImageSpec::new("app:1", &[1_000]).seed(1),
        ArchiveFormat::Docker,
        Compression::Gzip,
    );
    let (second, built) = fx.archive(
        ImageSpec::new("app:1", &[2_000]).seed(2),
        ArchiveFormat::Oci,
        Compression::Zstd,
    );
    let old = layout.import(&first).await.unwrap().remove(0);
    let mut events = layout.events();
    let new = layout.import(&second).await.unwrap().remove(0);
    assert_ne!(old.digest, new.digest);
    wait_for(
        &mut events,
        vec![
            Event::ImageRemoved(old.clone()),
            Event::ContentRemoved(old.digest.clone()),
            Event::ContentAdded(new.digest.clone()),
            Event::ImageAdded(new.clone()),
        ],
    )
    .await;
    assert_eq!(layout.resolve(&new.reference).await.unwrap(), new);
    // Only the new image's manifest, config and layer are left on disk.
    assert_eq!(blob_files(fx.root.path()).len(), 3);
    assert_serves(&layout, &built).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_json_names_images_for_containerd_and_skopeo() {
    let fx = Fixture::new().await;
    let layout = fx.layout.clone();
    let (archive, _) = fx.archive(
        ImageSpec::new("nginx:1", &[100]),
        ArchiveFormat::Docker,
        Compression::None,
    );
    layout.import(&archive).await.unwrap();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fx.root.path().join("index.json")).unwrap()).unwrap();
    let annotations = &index["manifests"][0]["annotations"];
    assert_eq!(
        annotations["io.containerd.image.name"],
        "docker.io/library/nginx:1"
    );
    assert_eq!(annotations["org.opencontainers.image.ref.name"], "1");
    assert_eq!(
        index["manifests"][0]["mediaType"],
        MediaType::OciManifest.as_str()
    );
    let layout_file = std::fs::read_to_string(fx.root.path().join("oci-layout")).unwrap();
    assert!(layout_file.contains("\"imageLayoutVersion\":\"1.0.0\""));
}

/// Docker 25 and later write an OCI layout plus `manifest.json`; with the
/// containerd image store, an index whose other platforms were never
/// pulled. What is there is imported; the absent platforms are not served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_25_archives_with_a_partial_index() {
    let scratch = tempfile::tempdir().unwrap();
    let spec =
        ImageSpec::new("partial:1", &[6_000]).platforms(&[("linux", "amd64"), ("linux", "arm64")]);
    let (archive, built) = write_archive(
        scratch.path(),
        &[spec],
        ArchiveFormat::Oci,
        Compression::None,
    )
    .unwrap();
    let built = &built[0];
    let absent = built.manifests[2].clone();
    let edited = rewrite(&archive, |entries| {
        entries.retain(|e| !e.path.ends_with(absent.hex()));
        // Docker's manifest.json is ignored when index.json is there (its
        // entries name the same blobs), so a bogus one changes nothing.
        let manifest = serde_json::json!([{
            "Config": "blobs/sha256/0000000000000000000000000000000000000000000000000000000000000000",
            "RepoTags": ["partial:1"],
            "Layers": [],
        }]);
        entries.push(crate::support::file_entry(
            "manifest.json",
            &serde_json::to_vec(&manifest).unwrap(),
        ));
    });
    let root = tempfile::tempdir().unwrap();
    let layout = open(root.path()).await;
    let images = layout.import(&edited).await.unwrap();
    assert_eq!(images[0].digest, built.digest);
    assert_eq!(images[0].media_type, MediaType::OciIndex);
    assert_eq!(
        images[0].reference.to_string(),
        "docker.io/library/partial:1"
    );
    let present = &built.manifests[1];
    assert_eq!(
        layout.read_manifest(present).await.unwrap().0,
        MediaType::OciManifest
    );
    assert!(layout.stat(&absent).await.unwrap_err().is_not_found());
    let listed: Vec<_> = layout
        .list_content()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.digest)
        .collect();
    assert!(listed.contains(present) && !listed.contains(&absent));
}
