//! `kagami image import | ls | rm` on the built-in store.

use kagami_store::testing::{ArchiveFormat, Compression, ImageSpec, write_archive};

use crate::harness::{run, run_ok};

#[test]
fn import_list_and_remove_record_full_references() {
    let tmp = tempfile::tempdir().unwrap();
    let (docker_archive, docker_built) = write_archive(
        tmp.path(),
        &[ImageSpec::new("x:1", &[10_000, 20_000]).seed(1)],
        ArchiveFormat::Docker,
        Compression::None,
    )
    .unwrap();
    let oci_dir = tmp.path().join("oci");
    std::fs::create_dir(&oci_dir).unwrap();
    let (oci_archive, _) = write_archive(
        &oci_dir,
        &[ImageSpec::new("quay.io/team/y:2", &[5_000]).seed(2)],
        ArchiveFormat::Oci,
        Compression::Zstd,
    )
    .unwrap();
    let data = tmp.path().join("data");

    let imported = run_ok(
        &data,
        &[
            "image",
            "import",
            docker_archive.to_str().unwrap(),
            oci_archive.to_str().unwrap(),
        ],
    );
    assert!(imported.contains("docker.io/library/x:1"), "{imported}");
    assert!(
        imported.contains(&docker_built[0].digest.to_string()),
        "{imported}"
    );

    let listed = run_ok(&data, &["image", "ls", "--quiet"]);
    assert_eq!(listed, "docker.io/library/x:1\nquay.io/team/y:2\n");
    let table = run_ok(&data, &["image", "ls"]);
    assert!(table.starts_with("REF"), "{table}");
    assert!(
        table.contains(&docker_built[0].digest.to_string()),
        "{table}"
    );

    run_ok(&data, &["image", "rm", "x:1"]);
    assert_eq!(run_ok(&data, &["image", "ls", "-q"]), "quay.io/team/y:2\n");
    // The removed image's content is gone from disk.
    for digest in docker_built[0].blobs.keys() {
        let path = data.join("layout/blobs/sha256").join(digest.hex());
        assert!(!path.exists(), "{digest} left behind");
    }
}

#[test]
fn bad_input_fails_with_a_message_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");

    let missing = tmp.path().join("no-such.tar");
    let out = run(&data, &["image", "import", missing.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no-such.tar"), "{stderr}");

    let junk = tmp.path().join("junk.tar");
    std::fs::write(&junk, b"this is not an archive").unwrap();
    let out = run(&data, &["image", "import", junk.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("junk.tar"));

    let out = run(&data, &["image", "rm", "Not A Reference"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Not A Reference"));

    let out = run(&data, &["image", "rm", "ghost:1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("docker.io/library/ghost:1"));
}
