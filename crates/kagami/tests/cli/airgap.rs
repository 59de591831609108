//! Air-gap images: archives in `<data-dir>/agent/images/` of a
//! `kagami server` on a real containerd are imported, pinned and served,
//! at start and when dropped in later; garbage is reported once and does
//! not stop the node; a restart re-applies kagami's pins and takes back
//! those whose archive is gone.

use std::path::Path;
use std::time::{Duration, Instant};

use kagami_containerd::testing::Daemon;
use kagami_store::testing::{ArchiveFormat, BuiltImage, Compression, ImageSpec, write_archive};

use crate::harness::{Server, eventually, stays};

/// The directory a node imports air-gap archives from.
fn images_dir(data_dir: &Path) -> std::path::PathBuf {
    let dir = data_dir.join("agent").join("images");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes one image as an archive into `dir`.
fn archive(
    dir: &Path,
    spec: ImageSpec,
    format: ArchiveFormat,
    compression: Compression,
) -> (std::path::PathBuf, BuiltImage) {
    let (path, mut built) = write_archive(dir, &[spec], format, compression).unwrap();
    (path, built.remove(0))
}

fn server(data_dir: &Path, daemon: &Daemon) -> Server {
    let socket = daemon.socket().to_str().unwrap().to_owned();
    Server::start(
        data_dir,
        &["--store", "containerd", "--containerd-address", &socket],
    )
}

/// The status and digest header of `GET /v2/<repo>/manifests/<tag>?ns=<registry>`.
async fn manifest(server: &Server, built: &BuiltImage) -> (u16, String) {
    let reference = &built.reference;
    let url = format!(
        "{}/v2/{}/manifests/{}?ns={}",
        server.url(),
        reference.repository(),
        reference.tag().unwrap(),
        reference.registry()
    );
    let response = crate::pull::client().get(&url).send().await.unwrap();
    let digest = response
        .headers()
        .get("docker-content-digest")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (response.status().as_u16(), digest)
}

/// Waits until the image is served with its digest.
async fn served(server: &Server, built: &BuiltImage) {
    eventually(&format!("{} to be served", built.reference), || async {
        let (status, digest) = manifest(server, built).await;
        (status == 200 && digest == built.digest.to_string()).then_some(())
    })
    .await;
}

/// The `ctr images ls` lines naming `built`'s image.
async fn records(daemon: &Daemon, built: &BuiltImage) -> Vec<String> {
    let name = format!("{} ", built.reference);
    daemon
        .ctr(&["images", "ls"])
        .await
        .lines()
        .filter(|l| l.starts_with(&name))
        .map(str::to_owned)
        .collect()
}

/// Whether the one record of `built` carries CRI's pin and kagami's mark
/// (`Some(true)`), neither (`Some(false)`), or just one (`None`).
async fn pinned(daemon: &Daemon, built: &BuiltImage) -> Option<bool> {
    let records = records(daemon, built).await;
    assert_eq!(records.len(), 1, "{records:?}");
    let pin = records[0].contains("io.cri-containerd.pinned=pinned");
    let mark = records[0].contains("io.kagami.pinned=airgap");
    (pin == mark).then_some(pin)
}

#[tokio::test]
async fn airgap_archives_are_imported_pinned_and_served() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let images = images_dir(&data);
    let daemon = Daemon::start();
    let (_, saved) = archive(
        &images,
        ImageSpec::new("docker.io/library/saved:1", &[20_000, 300_000]).seed(51),
        ArchiveFormat::Docker,
        Compression::None,
    );
    let (_, zstd) = archive(
        &images,
        ImageSpec::new("registry.example.com/team/zstd:2", &[40_000])
            .platforms(&[("linux", "amd64"), ("linux", "arm64")])
            .seed(52),
        ArchiveFormat::Oci,
        Compression::Zstd,
    );
    // Imported by hand, with no labels (ctr 1.6 reads plain tars only).
    let (by_hand_archive, by_hand) = archive(
        tmp.path(),
        ImageSpec::new("docker.io/library/byhand:3", &[10_000]).seed(53),
        ArchiveFormat::Oci,
        Compression::None,
    );
    daemon
        .ctr(&[
            "images",
            "import",
            "--no-unpack",
            by_hand_archive.to_str().unwrap(),
        ])
        .await;

    let server = server(&data, &daemon);
    for built in [&saved, &zstd, &by_hand] {
        served(&server, built).await;
    }
    assert_eq!(pinned(&daemon, &saved).await, Some(true));
    assert_eq!(pinned(&daemon, &zstd).await, Some(true));
    assert_eq!(pinned(&daemon, &by_hand).await, Some(false));

    // Dropped in while running, written in place: imported once complete.
    let dropped_at = Instant::now();
    let (_, dropped) = archive(
        &images,
        ImageSpec::new("docker.io/library/dropped:4", &[2_000_000]).seed(54),
        ArchiveFormat::Oci,
        Compression::Gzip,
    );
    served(&server, &dropped).await;
    assert!(
        dropped_at.elapsed() < Duration::from_secs(15),
        "took {:?}",
        dropped_at.elapsed()
    );
    assert_eq!(pinned(&daemon, &dropped).await, Some(true));

    // Garbage: one warning naming the file, and the node serves on.
    std::fs::write(images.join("garbage.tar"), b"this is not an image archive").unwrap();
    eventually("a warning about garbage.tar", || async {
        server
            .log()
            .lines()
            .any(|l| l.contains("WARN") && l.contains("garbage.tar"))
            .then_some(())
    })
    .await;
    stays("the node serving", Duration::from_secs(5), || async {
        manifest(&server, &saved).await.0 == 200
    })
    .await;
    let log = server.log();
    let warnings = log.lines().filter(|l| l.contains("garbage.tar")).count();
    assert_eq!(warnings, 1, "{log}");
    for built in [&saved, &zstd, &dropped] {
        let line = format!("image={} ", built.reference);
        let imported = log
            .lines()
            .filter(|l| l.contains("air-gap image imported and pinned") && l.contains(&line))
            .count();
        assert_eq!(imported, 1, "{}: {log}", built.reference);
    }
    assert!(!log.contains("image=docker.io/library/byhand:3"), "{log}");
}

#[tokio::test]
async fn airgap_pins_are_set_again_at_each_start() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let images = images_dir(&data);
    let daemon = Daemon::start();
    let (_, kept) = archive(
        &images,
        ImageSpec::new("docker.io/library/kept:1", &[15_000]).seed(55),
        ArchiveFormat::Docker,
        Compression::None,
    );
    let (gone_archive, gone) = archive(
        &images,
        ImageSpec::new("docker.io/library/gone:1", &[16_000]).seed(56),
        ArchiveFormat::Oci,
        Compression::Zstd,
    );
    let mut first = server(&data, &daemon);
    served(&first, &kept).await;
    served(&first, &gone).await;
    eventually("both images pinned", || async {
        (pinned(&daemon, &kept).await == Some(true) && pinned(&daemon, &gone).await == Some(true))
            .then_some(())
    })
    .await;
    assert!(first.terminate(Duration::from_secs(15)));

    // The pin taken off by hand, and the other archive taken away.
    daemon
        .ctr(&[
            "images",
            "label",
            "docker.io/library/kept:1",
            "io.cri-containerd.pinned=",
        ])
        .await;
    assert!(!records(&daemon, &kept).await[0].contains("io.cri-containerd.pinned"));
    std::fs::remove_file(gone_archive).unwrap();

    let second = server(&data, &daemon);
    eventually("the pin set again", || async {
        (pinned(&daemon, &kept).await == Some(true)).then_some(())
    })
    .await;
    // Its archive gone, the image is no longer pinned, but still held.
    assert_eq!(pinned(&daemon, &gone).await, Some(false));
    served(&second, &gone).await;
    served(&second, &kept).await;
    assert!(
        second.log().contains("took back the pins"),
        "{}",
        second.log()
    );
}
