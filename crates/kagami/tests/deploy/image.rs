//! `deploy/image/build`: the OCI archive it writes is well-formed (every
//! blob matches its digest, the layer holds exactly what kagami needs), the
//! same on every build, and imports and runs in containerd and kagami.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use kagami_containerd::testing::{Daemon, NAMESPACE};
use serde_json::Value;
use sha2::Digest as _;

use crate::{run_ok, workspace};

const BINARY: &str = env!("CARGO_BIN_EXE_kagami");
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The reference the script tags with when given none.
fn reference() -> String {
    format!("docker.io/kagami/kagami:{VERSION}")
}

/// The OCI name of this machine's architecture, as the script finds it.
fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Runs the script on the binary under test; the image is dated at the
/// epoch (SOURCE_DATE_EPOCH unset).
fn build(output: &Path) {
    run_ok(
        Command::new(workspace().join("deploy/image/build"))
            .arg("--binary")
            .arg(BINARY)
            .arg("--output")
            .arg(output)
            .env_remove("SOURCE_DATE_EPOCH"),
        "bash, tar, coreutils, libc-bin and ca-certificates",
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The sha256 of everything `reader` yields, streamed: the layer is as
/// large as the (debug) binary.
fn sha256(mut reader: impl Read) -> String {
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0; 1 << 20];
    loop {
        let n = reader.read(&mut buffer).unwrap();
        if n == 0 {
            return hex(&hasher.finalize());
        }
        hasher.update(&buffer[..n]);
    }
}

/// The archive's files: sizes of all, bytes of the small ones.
struct Archive {
    sizes: BTreeMap<String, u64>,
    small: BTreeMap<String, Vec<u8>>,
}

impl Archive {
    /// Reads `path`, checking each blob against the digest it is named by.
    fn read(path: &Path) -> Archive {
        let mut sizes = BTreeMap::new();
        let mut small = BTreeMap::new();
        let mut tar = tar::Archive::new(std::fs::File::open(path).unwrap());
        for entry in tar.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().to_str().unwrap().to_owned();
            let header = entry.header();
            assert_eq!(
                (
                    header.uid().unwrap(),
                    header.gid().unwrap(),
                    header.mtime().unwrap()
                ),
                (0, 0, 0),
                "{name}: owner and date are fixed"
            );
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let size = entry.size();
            if let Some(digest) = name.strip_prefix("blobs/sha256/") {
                if size < 1 << 20 {
                    let mut bytes = Vec::new();
                    entry.read_to_end(&mut bytes).unwrap();
                    assert_eq!(sha256(&bytes[..]), digest, "{name} matches its digest");
                    small.insert(name.clone(), bytes);
                } else {
                    assert_eq!(sha256(&mut entry), digest, "{name} matches its digest");
                }
            } else {
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).unwrap();
                small.insert(name.clone(), bytes);
            }
            sizes.insert(name, size);
        }
        Archive { sizes, small }
    }

    fn json(&self, name: &str) -> Value {
        serde_json::from_slice(
            self.small
                .get(name)
                .unwrap_or_else(|| panic!("no {name} in the archive")),
        )
        .unwrap()
    }

    /// The blob a descriptor points at, checking the size it declares.
    fn blob_name(&self, descriptor: &Value) -> String {
        let digest = descriptor["digest"].as_str().unwrap();
        let name = format!(
            "blobs/sha256/{}",
            digest.strip_prefix("sha256:").expect("sha256 digest")
        );
        assert_eq!(
            self.sizes.get(&name).copied(),
            descriptor["size"].as_u64(),
            "{name}: size as declared"
        );
        name
    }
}

/// Files of the host `ldd` says the binary loads, dynamic loader included,
/// as paths inside the image.
fn ldd_files() -> BTreeSet<String> {
    let out = run_ok(Command::new("ldd").arg(BINARY), "libc-bin");
    out.lines()
        .filter_map(|line| {
            let line = line.trim();
            match line.split_once("=>") {
                Some((_, target)) => target.split_whitespace().next(),
                None => line
                    .split_whitespace()
                    .next()
                    .filter(|p| p.starts_with('/')),
            }
        })
        .map(|path| path.trim_start_matches('/').to_owned())
        .collect()
}

#[test]
fn archive_is_reproducible_and_holds_exactly_what_kagami_needs() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("kagami.tar");
    let second = dir.path().join("again.tar");
    build(&first);
    build(&second);
    let digest = |path: &PathBuf| sha256(std::fs::File::open(path).unwrap());
    assert_eq!(
        digest(&first),
        digest(&second),
        "two builds of one binary give the same bytes"
    );

    let archive = Archive::read(&first);
    assert_eq!(
        archive.json("oci-layout"),
        serde_json::json!({"imageLayoutVersion": "1.0.0"})
    );
    let index = archive.json("index.json");
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{index}");
    let entry = &entries[0];
    assert_eq!(
        entry["annotations"]["io.containerd.image.name"],
        reference()
    );
    assert_eq!(entry["platform"]["os"], "linux");
    assert_eq!(entry["platform"]["architecture"], oci_arch());

    let manifest = archive.json(&archive.blob_name(entry));
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let config = archive.json(&archive.blob_name(&manifest["config"]));
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar"
    );
    let layer = archive.blob_name(&layers[0]);
    // Uncompressed, the layer's digest is its diff ID.
    assert_eq!(config["rootfs"]["diff_ids"][0], layers[0]["digest"]);
    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], oci_arch());
    let process = &config["config"];
    assert_eq!(
        process["Entrypoint"],
        serde_json::json!(["/usr/local/bin/kagami"])
    );
    assert_eq!(process["Cmd"], serde_json::json!(["agent"]));
    assert_eq!(process["User"], "65532:65532");
    assert_eq!(
        process["Labels"]["org.opencontainers.image.version"],
        VERSION
    );

    // The layer: exactly the binary, what ldd names, the user database,
    // the CA bundle and /tmp.
    let mut files = BTreeMap::new();
    let mut modes = BTreeMap::new();
    let mut outer = tar::Archive::new(std::fs::File::open(&first).unwrap());
    let mut outer_entries = outer.entries().unwrap();
    let mut layer_entry = outer_entries
        .find(|e| e.as_ref().unwrap().path().unwrap().to_str() == Some(layer.as_str()))
        .unwrap()
        .unwrap();
    let mut inner = tar::Archive::new(&mut layer_entry);
    for entry in inner.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_str().unwrap().to_owned();
        assert!(
            !name.starts_with('/') && !name.starts_with("./"),
            "{name}: relative, as registries' layers are"
        );
        let header = entry.header();
        assert_eq!(
            (
                header.uid().unwrap(),
                header.gid().unwrap(),
                header.mtime().unwrap()
            ),
            (0, 0, 0),
            "{name}: owner and date are fixed"
        );
        modes.insert(
            name.trim_end_matches('/').to_owned(),
            header.mode().unwrap(),
        );
        if header.entry_type().is_file() {
            files.insert(name, sha256(&mut entry));
        }
    }
    let mut expected: BTreeSet<String> = ldd_files();
    assert!(
        expected.iter().any(|f| f.contains("ld-linux")),
        "ldd names the loader: {expected:?}"
    );
    expected.extend(
        [
            "usr/local/bin/kagami",
            "etc/passwd",
            "etc/group",
            "etc/nsswitch.conf",
            "etc/ssl/certs/ca-certificates.crt",
        ]
        .map(str::to_owned),
    );
    assert_eq!(
        files.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "the layer's files"
    );
    assert_eq!(
        files["usr/local/bin/kagami"],
        sha256(std::fs::File::open(BINARY).unwrap()),
        "the binary under test is the image's"
    );
    assert_eq!(modes["usr/local/bin/kagami"] & 0o7777, 0o755);
    assert_eq!(modes["tmp"] & 0o7777, 0o1777, "/tmp is sticky and open");
    let passwd = archive_file(&first, &layer, "etc/passwd");
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with("kagami:x:65532:65532:")),
        "{passwd}"
    );
    let group = archive_file(&first, &layer, "etc/group");
    assert!(group.lines().any(|l| l == "kagami:x:65532:"), "{group}");

    // kagami's own store imports it, with its name.
    let data = dir.path().join("data");
    let import = |args: &[&str]| {
        run_ok(
            Command::new(BINARY)
                .args(["image"])
                .args(args)
                .arg("--data-dir")
                .arg(&data)
                .env_remove("RUST_LOG"),
            "(the kagami binary under test)",
        )
    };
    import(&["import", first.to_str().unwrap()]);
    let listed = import(&["ls", "-q"]);
    assert!(
        listed.lines().any(|l| l.trim() == reference()),
        "kagami image ls: {listed}"
    );
}

/// A small file of the image's layer, as text.
fn archive_file(archive: &Path, layer: &str, name: &str) -> String {
    let mut outer = tar::Archive::new(std::fs::File::open(archive).unwrap());
    let mut entries = outer.entries().unwrap();
    let mut layer = entries
        .find(|e| e.as_ref().unwrap().path().unwrap().to_str() == Some(layer))
        .unwrap()
        .unwrap();
    let mut inner = tar::Archive::new(&mut layer);
    for entry in inner.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some(name) {
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            return text;
        }
    }
    panic!("no {name} in the layer")
}

/// Containers a failed test may leave in the test's containerd: removed
/// before the daemon is stopped, so no shim or mount outlives the test.
struct Containers {
    socket: PathBuf,
    ids: &'static [&'static str],
}

impl Drop for Containers {
    fn drop(&mut self) {
        for id in self.ids {
            for args in [
                &["tasks", "kill", "--signal", "SIGKILL", id][..],
                &["tasks", "delete", "--force", id],
                &["containers", "delete", id],
            ] {
                let _ = Command::new("ctr")
                    .arg("--address")
                    .arg(&self.socket)
                    .args(["--namespace", NAMESPACE])
                    .args(args)
                    .output();
            }
        }
    }
}

#[tokio::test]
async fn image_runs_in_containerd() {
    // ctr run starts the container with runc, through containerd's shim.
    run_ok(Command::new("runc").arg("--version"), "runc");
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("kagami.tar");
    build(&archive);

    let containerd = Daemon::start();
    let _containers = Containers {
        socket: containerd.socket().to_owned(),
        ids: &["deploy-version", "deploy-spec"],
    };
    let reference = reference();
    // The native snapshotter works on any file system, overlayfs not.
    containerd
        .ctr(&[
            "images",
            "import",
            "--snapshotter",
            "native",
            archive.to_str().unwrap(),
        ])
        .await;
    let images = containerd.ctr(&["images", "ls", "-q"]).await;
    assert!(
        images.lines().any(|l| l == reference),
        "ctr images ls: {images}"
    );

    // The binary starts in the image: its loader and libraries are there.
    // With no cgroup path, runc leaves no cgroup behind; under the default
    // /k8s.io/ID it removes ID but leaves k8s.io in every hierarchy.
    let version = containerd
        .ctr(&[
            "run",
            "--rm",
            "--cgroup",
            "",
            "--snapshotter",
            "native",
            &reference,
            "deploy-version",
            "/usr/local/bin/kagami",
            "--version",
        ])
        .await;
    assert_eq!(version.trim(), format!("kagami {VERSION}"));

    // What containerd makes of the image's config when nothing overrides
    // it: `kagami agent` as 65532.
    containerd
        .ctr(&[
            "containers",
            "create",
            "--snapshotter",
            "native",
            &reference,
            "deploy-spec",
        ])
        .await;
    let info: Value =
        serde_json::from_str(&containerd.ctr(&["containers", "info", "deploy-spec"]).await)
            .unwrap();
    let process = &info["Spec"]["process"];
    assert_eq!(
        process["args"],
        serde_json::json!(["/usr/local/bin/kagami", "agent"]),
        "{info}"
    );
    assert_eq!(process["user"]["uid"], 65532, "{info}");
    assert_eq!(process["user"]["gid"], 65532, "{info}");
    containerd
        .ctr(&["containers", "delete", "deploy-spec"])
        .await;

    containerd
        .ctr(&["images", "rm", "--sync", &reference])
        .await;
    let containers = containerd.ctr(&["containers", "ls", "-q"]).await;
    assert_eq!(containers.trim(), "", "no container is left");
    let snapshots = containerd
        .ctr(&["snapshots", "--snapshotter", "native", "ls"])
        .await;
    assert_eq!(
        snapshots.lines().skip(1).count(),
        0,
        "no snapshot is left: {snapshots}"
    );
}
