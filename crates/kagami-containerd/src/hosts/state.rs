//! `.kagami-state.json`: what kagami wrote into a config directory and what
//! it moved aside to do so, with hashes, so that cleanup removes only
//! kagami's own files and notices when someone else changed them.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::Error;

/// The state file's name in the config directory.
pub(super) const STATE_FILE: &str = ".kagami-state.json";

/// Every registry kagami wrote a file for.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct State {
    #[serde(default)]
    pub(super) files: BTreeMap<String, Written>,
}

/// One `<host>/hosts.toml` kagami wrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Written {
    /// The SHA-256 of the bytes kagami wrote.
    pub(super) written: String,
    /// The SHA-256 of the operator's file kagami moved aside, if there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) displaced: Option<String>,
    /// Whether kagami created the host directory (and so may remove it).
    #[serde(default)]
    pub(super) created_dir: bool,
}

/// The hex SHA-256 of some bytes.
pub(super) fn hash(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn path(dir: &Path) -> PathBuf {
    dir.join(STATE_FILE)
}

/// The recorded state; empty when there is no state file.
pub(super) fn load(dir: &Path) -> Result<State, Error> {
    let path = path(dir);
    let Some(bytes) = read_optional(&path)? else {
        return Ok(State::default());
    };
    serde_json::from_slice(&bytes).map_err(|source| Error::State { path, source })
}

/// Records the state, or removes the file when nothing is recorded.
pub(super) fn save(dir: &Path, state: &State) -> Result<(), Error> {
    let path = path(dir);
    if state.files.is_empty() {
        return remove_optional(&path);
    }
    let mut json = serde_json::to_vec_pretty(state).map_err(|source| Error::State {
        path: path.clone(),
        source,
    })?;
    json.push(b'\n');
    write_atomic(&path, &json)
}

/// A file's bytes, or `None` when it does not exist.
pub(super) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, Error> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::ReadHosts {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Removes a file that may already be gone.
pub(super) fn remove_optional(path: &Path) -> Result<(), Error> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(write_error(path, source)),
    }
}

/// Replaces `path` with `bytes` so that containerd, which may read the file
/// at any moment, sees the old file or the new one, never half of one.
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temporary = path.with_file_name(format!(".{name}.kagami-tmp"));
    let written = std::fs::File::create(&temporary).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    written.map_err(|e| write_error(&temporary, e))?;
    std::fs::rename(&temporary, path).map_err(|e| write_error(path, e))
}

pub(super) fn write_error(path: &Path, source: std::io::Error) -> Error {
    Error::WriteHosts {
        path: path.to_path_buf(),
        source,
    }
}
