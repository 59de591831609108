//! Opening a directory: creating a layout, reading one another tool wrote,
//! and refusing what is not a layout.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use kagami_core::store::Store;
use kagami_store::testing::{ImageSpec, write_layout};
use kagami_store::{Error, Layout};

use crate::support::assert_serves;

#[tokio::test]
async fn creates_an_empty_private_layout() {
    let parent = tempfile::tempdir().unwrap();
    let root = parent.path().join("a/b/store");
    let layout = Layout::open(&root).await.unwrap();
    assert_eq!(layout.root(), root);
    assert_eq!(
        fs::metadata(&root).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let version: serde_json::Value =
        serde_json::from_slice(&fs::read(root.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(version["imageLayoutVersion"], "1.0.0");
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(root.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["schemaVersion"], 2);
    assert!(layout.list_images().await.unwrap().is_empty());
    assert!(layout.list_content().await.unwrap().is_empty());
    drop(layout);
    // Opening again finds the same, empty layout.
    let again = Layout::open(&root).await.unwrap();
    assert!(again.list_images().await.unwrap().is_empty());
}

#[tokio::test]
async fn serves_a_layout_another_tool_wrote() {
    let root = tempfile::tempdir().unwrap();
    let built = write_layout(
        root.path(),
        &[
            ImageSpec::new("written/one:1", &[1_000, 2_000]),
            ImageSpec::new("written/two:2", &[500])
                .platforms(&[("linux", "amd64"), ("linux", "s390x")]),
        ],
    )
    .unwrap();
    let layout = Layout::open(root.path()).await.unwrap();
    assert_eq!(layout.list_images().await.unwrap().len(), 2);
    for image in &built {
        assert_serves(&layout, image).await;
    }
}

#[tokio::test]
async fn entries_named_only_by_a_tag_are_not_served() {
    let root = tempfile::tempdir().unwrap();
    write_layout(root.path(), &[ImageSpec::new("tagged:1", &[100])]).unwrap();
    let index_path = root.path().join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&fs::read(&index_path).unwrap()).unwrap();
    index["manifests"][0]["annotations"] =
        serde_json::json!({"org.opencontainers.image.ref.name": "1"});
    fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    let layout = Layout::open(root.path()).await.unwrap();
    assert!(layout.list_images().await.unwrap().is_empty());
    assert!(layout.list_content().await.unwrap().is_empty());
}

/// Opens a directory holding these files (`None`: absent); it must fail.
async fn refusal(oci_layout: Option<&str>, index: Option<&str>) -> Error {
    let root = tempfile::tempdir().unwrap();
    for (name, text) in [("oci-layout", oci_layout), ("index.json", index)] {
        if let Some(text) = text {
            fs::write(root.path().join(name), text).unwrap();
        }
    }
    match Layout::open(root.path()).await {
        Ok(_) => panic!("opened a directory that is not a layout"),
        Err(e) => e,
    }
}

fn names(err: &Error, file: &str) -> bool {
    matches!(err, Error::InvalidLayout { path, .. } if path.ends_with(file))
}

#[tokio::test]
async fn refuses_a_directory_holding_other_things() {
    let root = tempfile::tempdir().unwrap();
    fs::write(root.path().join("notes.txt"), "hello").unwrap();
    let err = Layout::open(root.path()).await.err().unwrap();
    assert!(
        matches!(&err, Error::InvalidLayout { reason, .. } if reason.contains("not empty")),
        "{err:?}"
    );
}

#[tokio::test]
async fn refuses_bad_layout_files() {
    const V1: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;
    const EMPTY: &str = r#"{"schemaVersion":2,"manifests":[]}"#;
    let err = refusal(Some("garbage"), Some(EMPTY)).await;
    assert!(names(&err, "oci-layout"), "{err:?}");
    let err = refusal(Some(r#"{"imageLayoutVersion":"2.0.0"}"#), Some(EMPTY)).await;
    assert!(
        names(&err, "oci-layout") && err.to_string().contains("2.0.0"),
        "{err}"
    );
    let bad_digest = r#"{"schemaVersion":2,"manifests":[{"digest":"sha256:nope","size":1}]}"#;
    let err = refusal(Some(V1), Some(bad_digest)).await;
    assert!(
        names(&err, "index.json") && err.to_string().contains("sha256:nope"),
        "{err}"
    );
    let err = refusal(Some(V1), Some(r#"{"schemaVersion":1}"#)).await;
    assert!(names(&err, "index.json"), "{err:?}");
    let err = refusal(Some(V1), None).await;
    assert!(names(&err, "index.json"), "{err:?}");
    let err = refusal(None, Some(EMPTY)).await;
    assert!(names(&err, "oci-layout"), "{err:?}");
}
