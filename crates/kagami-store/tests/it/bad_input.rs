//! Input that is not a usable archive gives a clear error, never a panic,
//! and leaves the layout as it was.

use std::fs;
use std::path::Path;

use kagami_store::testing::{ArchiveFormat, Compression, ImageSpec, write_archive};
use kagami_store::{Error, Layout, Options};

use crate::support::{assert_untouched, file_entry, open, rewrite};

/// Imports into a fresh layout, checks nothing was left, returns the error.
async fn refused(archive: &Path) -> Error {
    let root = tempfile::tempdir().unwrap();
    let layout = open(root.path()).await;
    let err = layout.import(archive).await.unwrap_err();
    assert_untouched(&layout, &Default::default(), 0).await;
    err
}

fn plain(format: ArchiveFormat, dir: &Path) -> std::path::PathBuf {
    let spec = [ImageSpec::new("input:1", &[2_000])];
    write_archive(dir, &spec, format, Compression::None)
        .unwrap()
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_a_tar() {
    let scratch = tempfile::tempdir().unwrap();
    for bytes in [&b""[..], b"hello, this is text", &[0x1f, 0x8b, 0, 1, 2, 3]] {
        let path = scratch.path().join("junk.tar");
        fs::write(&path, bytes).unwrap();
        let err = refused(&path).await;
        assert!(
            matches!(err, Error::NotAnArchive { .. } | Error::ReadArchive { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("junk.tar"), "{err}");
    }
    let missing = refused(&scratch.path().join("absent.tar")).await;
    assert!(matches!(missing, Error::ReadArchive { .. }), "{missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_compressed_archives() {
    let scratch = tempfile::tempdir().unwrap();
    for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let spec = [ImageSpec::new("cut:1", &[200_000])];
        let (path, _) =
            write_archive(scratch.path(), &spec, ArchiveFormat::Oci, compression).unwrap();
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = refused(&path).await;
        assert!(
            matches!(
                err,
                Error::ReadArchive { .. } | Error::TruncatedEntry { .. }
            ),
            "{compression:?}: {err:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_json_naming_a_missing_layer() {
    let scratch = tempfile::tempdir().unwrap();
    let archive = rewrite(&plain(ArchiveFormat::Docker, scratch.path()), |entries| {
        entries.retain(|e| !e.path.ends_with("layer.tar"));
    });
    match refused(&archive).await {
        Error::MissingEntry { target, .. } => assert!(target.ends_with("/layer.tar")),
        other => panic!("want MissingEntry, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_leaving_the_archive() {
    let scratch = tempfile::tempdir().unwrap();
    for name in ["../evil", "/etc/evil", "blobs/../../evil"] {
        let archive = rewrite(&plain(ArchiveFormat::Oci, scratch.path()), |entries| {
            entries.insert(0, file_entry(name, b"x"));
        });
        match refused(&archive).await {
            Error::UnsafeEntry { entry, .. } => assert_eq!(entry, name),
            other => panic!("{name}: want UnsafeEntry, got {other:?}"),
        }
    }
    let archive = rewrite(&plain(ArchiveFormat::Docker, scratch.path()), |entries| {
        let mut link = file_entry("a/layer.tar", b"");
        link.header.set_entry_type(tar::EntryType::Symlink);
        link.header.set_link_name("../../outside").unwrap();
        entries.insert(0, link);
    });
    assert!(matches!(refused(&archive).await, Error::UnsafeEntry { .. }));
    assert!(!scratch.path().join("evil").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_without_names() {
    let scratch = tempfile::tempdir().unwrap();
    let strip = |annotations: serde_json::Value| {
        let oci = plain(ArchiveFormat::Oci, scratch.path());
        rewrite(&oci, move |entries| {
            let index = entries.iter_mut().find(|e| e.path == "index.json").unwrap();
            let mut json: serde_json::Value = serde_json::from_slice(&index.data).unwrap();
            json["manifests"][0]["annotations"] = annotations;
            index.data = serde_json::to_vec(&json).unwrap();
        })
    };
    let unnamed = refused(&strip(serde_json::json!({}))).await;
    assert!(matches!(unnamed, Error::NoNamedImage { .. }), "{unnamed:?}");

    let bare = refused(&strip(
        serde_json::json!({"org.opencontainers.image.ref.name": "1"}),
    ))
    .await;
    assert!(
        matches!(&bare, Error::ImageNeedsName { tag, .. } if tag == "1"),
        "{bare:?}"
    );
    assert!(bare.to_string().contains("needs a full name"), "{bare}");

    let docker = rewrite(&plain(ArchiveFormat::Docker, scratch.path()), |entries| {
        let manifest = entries
            .iter_mut()
            .find(|e| e.path == "manifest.json")
            .unwrap();
        let mut json: serde_json::Value = serde_json::from_slice(&manifest.data).unwrap();
        json[0]["RepoTags"] = serde_json::Value::Null;
        manifest.data = serde_json::to_vec(&json).unwrap();
    });
    assert!(matches!(refused(&docker).await, Error::NoNamedImage { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tar_that_describes_no_image() {
    let scratch = tempfile::tempdir().unwrap();
    let archive = rewrite(&plain(ArchiveFormat::Oci, scratch.path()), |entries| {
        entries.retain(|e| e.path != "index.json");
    });
    assert!(matches!(
        refused(&archive).await,
        Error::NoImageIndex { .. }
    ));
    let broken = rewrite(&plain(ArchiveFormat::Docker, scratch.path()), |entries| {
        let manifest = entries
            .iter_mut()
            .find(|e| e.path == "manifest.json")
            .unwrap();
        manifest.data = b"{not json".to_vec();
    });
    assert!(matches!(refused(&broken).await, Error::ParseEntry { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_json_is_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let options = Options {
        max_json_size: 150,
        ..Options::default()
    };
    let layout = Layout::open_with(root.path(), options).await.unwrap();
    let err = layout
        .import(&plain(ArchiveFormat::Docker, scratch.path()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::EntryTooLarge { .. }), "{err:?}");
    assert_untouched(&layout, &Default::default(), 0).await;
}
