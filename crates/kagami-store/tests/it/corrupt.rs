//! Archives whose bytes do not match what they declare are refused whole,
//! and leave nothing behind.

use kagami_store::Error;
use kagami_store::testing::{ArchiveFormat, Compression, ImageSpec};

use crate::support::{Fixture, assert_serves, assert_untouched, blob_files, rewrite};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_that_does_not_match_its_digest_is_refused() {
    let fx = Fixture::new().await;
    let layout = fx.layout.clone();
    // An image already held must survive the failed import untouched.
    let (good, good_built) = fx.archive(
        ImageSpec::new("kept:1", &[3_000]).seed(1),
        ArchiveFormat::Oci,
        Compression::None,
    );
    layout.import(&good).await.unwrap();
    let blobs_before = blob_files(fx.root.path());

    let (archive, built) = fx.archive(
        ImageSpec::new("bad:1", &[3_000, 50_000]).seed(2),
        ArchiveFormat::Oci,
        Compression::None,
    );
    let (layer, _) = built.blobs.iter().max_by_key(|(_, s)| **s).unwrap();
    let target = format!("blobs/sha256/{}", layer.hex());
    let corrupted = rewrite(&archive, |entries| {
        let entry = entries.iter_mut().find(|e| e.path == target).unwrap();
        entry.data[20_000] ^= 0x01;
    });
    let err = layout.import(&corrupted).await.unwrap_err();
    match &err {
        Error::DigestMismatch { expected, .. } => assert_eq!(expected, layer),
        other => panic!("want DigestMismatch, got {other:?}"),
    }
    assert!(err.to_string().contains(layer.as_str()), "{err}");
    assert_untouched(&layout, &blobs_before, 1).await;
    assert_serves(&layout, &good_built).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_descriptor_with_the_wrong_size_is_refused() {
    let fx = Fixture::new().await;
    let layout = fx.layout.clone();
    let (archive, built) = fx.archive(
        ImageSpec::new("sized:1", &[1_000]),
        ArchiveFormat::Oci,
        Compression::None,
    );
    let edited = rewrite(&archive, |entries| {
        let index = entries.iter_mut().find(|e| e.path == "index.json").unwrap();
        let mut json: serde_json::Value = serde_json::from_slice(&index.data).unwrap();
        json["manifests"][0]["size"] = serde_json::json!(1);
        index.data = serde_json::to_vec(&json).unwrap();
    });
    let err = layout.import(&edited).await.unwrap_err();
    // Found from the tar header, before the manifest is written.
    match err {
        Error::EntrySizeMismatch {
            digest, declared, ..
        } => {
            assert_eq!(digest, built.digest);
            assert_eq!(declared, 1);
        }
        other => panic!("want EntrySizeMismatch, got {other:?}"),
    }
    assert_untouched(&layout, &Default::default(), 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_docker_config_that_does_not_match_its_name_is_refused() {
    let fx = Fixture::new().await;
    let layout = fx.layout.clone();
    let (archive, built) = fx.archive(
        ImageSpec::new("cfg:1", &[1_000]),
        ArchiveFormat::Docker,
        Compression::None,
    );
    let config = built
        .blobs
        .iter()
        .min_by_key(|(_, s)| **s)
        .unwrap()
        .0
        .clone();
    let name = format!("{}.json", config.hex());
    let edited = rewrite(&archive, |entries| {
        let entry = entries.iter_mut().find(|e| e.path == name).unwrap();
        entry.data.extend_from_slice(b" ");
    });
    match layout.import(&edited).await.unwrap_err() {
        Error::DigestMismatch { expected, .. } => assert_eq!(expected, config),
        other => panic!("want DigestMismatch, got {other:?}"),
    }
    assert_untouched(&layout, &Default::default(), 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_blob_is_refused() {
    let fx = Fixture::new().await;
    let layout = fx.layout.clone();
    let (archive, built) = fx.archive(
        ImageSpec::new("holes:1", &[1_000, 2_000]),
        ArchiveFormat::Oci,
        Compression::None,
    );
    let (layer, _) = built.blobs.iter().max_by_key(|(_, s)| **s).unwrap();
    let target = format!("blobs/sha256/{}", layer.hex());
    let edited = rewrite(&archive, |entries| entries.retain(|e| e.path != target));
    match layout.import(&edited).await.unwrap_err() {
        Error::MissingBlob { digest, .. } => assert_eq!(&digest, layer),
        other => panic!("want MissingBlob, got {other:?}"),
    }
    assert_untouched(&layout, &Default::default(), 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftovers_of_an_interrupted_import_are_swept() {
    let fx = Fixture::new().await;
    let layout = fx.layout.clone();
    let crashed = fx.root.path().join(".tmp/import-crashed");
    std::fs::create_dir_all(&crashed).unwrap();
    std::fs::write(crashed.join("incoming-1"), b"half a layer").unwrap();
    let (archive, _) = fx.archive(
        ImageSpec::new("after:1", &[100]),
        ArchiveFormat::Oci,
        Compression::None,
    );
    layout.import(&archive).await.unwrap();
    assert!(crate::support::leftovers(fx.root.path()).is_empty());
}
