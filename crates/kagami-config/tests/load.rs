//! The public API against real files: missing, present, oversized, not
//! UTF-8, and the error text a user sees.

use std::fs;
use std::path::{Path, PathBuf};

use kagami_config::config_file::{self, KnownKey, Value};
use kagami_config::{Error, registries};

const KNOWN: &[KnownKey<'static>] = &[
    KnownKey::bool("embedded-registry"),
    KnownKey::scalar("https-listen-port"),
    KnownKey::scalar("private-registry"),
];

fn write(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, content).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    path
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"))
}

#[test]
fn config_file_loads_from_disk() {
    let dir = temp_dir();
    let path = write(
        dir.path(),
        "config.yaml",
        b"embedded-registry: true\nhttps-listen-port: 6443\nwrite-kubeconfig-mode: \"0644\"\n",
    );
    let config = config_file::load(&path, KNOWN).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(config.path, path);
    assert_eq!(config.entries[1].value, Value::Scalar("6443".into()));
    assert_eq!(config.ignored[0].key, "write-kubeconfig-mode");
    let again = config_file::load_optional(&path, KNOWN).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(again, Some(config));
}

#[test]
fn a_missing_config_file_is_an_error_only_when_it_must_exist() {
    let dir = temp_dir();
    let path = dir.path().join("config.yaml");
    match config_file::load_optional(&path, KNOWN) {
        Ok(None) => {}
        other => panic!("{other:?}"),
    }
    let err = match config_file::load(&path, KNOWN) {
        Err(err) => err,
        Ok(config) => panic!("{config:?}"),
    };
    assert!(err.is_not_found());
    assert!(matches!(err, Error::Read { .. }));
    assert_eq!(err.path(), path);
    assert_eq!(err.line(), None);
    assert!(
        err.to_string()
            .starts_with(&format!("{}: ", path.display())),
        "{err}"
    );
}

#[test]
fn a_directory_is_not_a_config_file() {
    let dir = temp_dir();
    let err = match config_file::load_optional(dir.path(), KNOWN) {
        Err(err) => err,
        Ok(config) => panic!("{config:?}"),
    };
    assert!(matches!(err, Error::Read { .. }), "{err:?}");
    assert!(!err.is_not_found());
}

#[test]
fn an_oversized_file_is_refused_without_reading_it_all() {
    let dir = temp_dir();
    let mut big = b"# padding\n".repeat(120 * 1024);
    big.extend_from_slice(b"embedded-registry: true\n");
    let path = write(dir.path(), "config.yaml", &big);
    let err = match config_file::load(&path, KNOWN) {
        Err(err) => err,
        Ok(config) => panic!("{config:?}"),
    };
    assert!(
        err.to_string().contains("larger than 1048576 bytes"),
        "{err}"
    );
}

#[test]
fn a_file_that_is_not_utf8_is_refused() {
    let dir = temp_dir();
    let path = write(dir.path(), "registries.yaml", b"mirrors:\n  \xff\xfe:\n");
    let err = match registries::load(&path) {
        Err(err) => err,
        Ok(registries) => panic!("{registries:?}"),
    };
    assert!(matches!(err, Error::Read { .. }), "{err:?}");
}

#[test]
fn registries_load_from_disk_and_errors_name_the_file() {
    let dir = temp_dir();
    let good = write(
        dir.path(),
        "registries.yaml",
        b"mirrors:\n  docker.io:\n  \"*\":\nconfigs:\n  \"docker.io\":\n",
    );
    let loaded = registries::load(&good).unwrap_or_else(|err| panic!("{err}"));
    assert!(loaded.shares_all());
    assert_eq!(
        registries::load_optional(&good).ok().flatten().as_ref(),
        Some(&loaded)
    );

    let bad = write(
        dir.path(),
        "bad.yaml",
        b"mirrors:\n  docker.io:\n    endpoint:\n      - mirror.example.com\n",
    );
    let err = match registries::load(&bad) {
        Err(err) => err,
        Ok(registries) => panic!("{registries:?}"),
    };
    assert_eq!(
        err.to_string(),
        format!(
            "{}:4: key \"mirrors.docker.io.endpoint[0]\": endpoint \"mirror.example.com\" has no scheme; \
             write \"https://mirror.example.com\" (or http:// for a registry without TLS)",
            bad.display()
        )
    );
}
