//! The committed bindings are exactly what the generator writes from the
//! committed protos. Run with `KAGAMI_UPDATE_BINDINGS=1` (what
//! `scripts/gen-containerd-api` does) to write them instead of comparing.
//! Needs `protoc` (Debian `protobuf-compiler`, which `scripts/install-deps`
//! installs); the build of kagami itself never does.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// The services kagami calls; their imports come along.
const PROTOS: &[&str] = &[
    "github.com/containerd/containerd/api/services/content/v1/content.proto",
    "github.com/containerd/containerd/api/services/events/v1/events.proto",
    "github.com/containerd/containerd/api/services/images/v1/images.proto",
    "github.com/containerd/containerd/api/services/introspection/v1/introspection.proto",
    "github.com/containerd/containerd/api/services/leases/v1/leases.proto",
    "github.com/containerd/containerd/api/services/version/v1/version.proto",
];

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn generate(out: &Path) {
    let proto_dir = crate_dir().join("proto");
    let protos: Vec<PathBuf> = PROTOS.iter().map(|p| proto_dir.join(p)).collect();
    tonic_prost_build::configure()
        .build_server(false)
        .out_dir(out)
        .compile_protos(&protos, &[proto_dir])
        .unwrap_or_else(|e| {
            panic!("generating containerd's bindings failed (is protoc installed? scripts/install-deps installs it): {e}")
        });
}

/// File name → contents of every `.rs` file in `dir`.
fn rust_files(dir: &Path) -> BTreeMap<String, String> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, fs::read_to_string(&path).unwrap())
        })
        .collect()
}

#[test]
fn committed_bindings_match_the_generator() {
    let fresh = tempfile::tempdir().unwrap();
    generate(fresh.path());
    let generated = rust_files(fresh.path());
    assert!(!generated.is_empty(), "the generator wrote nothing");
    let committed_dir = crate_dir().join("src/generated");

    if std::env::var_os("KAGAMI_UPDATE_BINDINGS").is_some() {
        for name in rust_files(&committed_dir).keys() {
            fs::remove_file(committed_dir.join(name)).unwrap();
        }
        for (name, text) in &generated {
            fs::write(committed_dir.join(name), text).unwrap();
        }
        return;
    }

    let committed = rust_files(&committed_dir);
    let names = |files: &BTreeMap<String, String>| files.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(&committed),
        names(&generated),
        "src/generated holds other files than the generator writes: run scripts/gen-containerd-api"
    );
    for (name, text) in &generated {
        assert!(
            committed[name] == *text,
            "src/generated/{name} differs from what the generator writes: run scripts/gen-containerd-api"
        );
    }
}
