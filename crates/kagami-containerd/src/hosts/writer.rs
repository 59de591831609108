//! Writing rendered `hosts.toml` files into containerd's config directory
//! and putting the directory back. Registry hosts map to directories as
//! containerd looks them up on Linux: the host exactly as in image names,
//! port included (`registry.example:5000`, `[::1]:5000`).

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::merge::merge;
use super::state::{
    self, State, Written, hash, read_optional, remove_optional, write_atomic, write_error,
};
use crate::Error;

const HOSTS: &str = "hosts.toml";
/// Where an operator's `hosts.toml` waits while kagami's is in place.
const ASIDE: &str = "hosts.toml.kagami-orig";

/// Makes `dir` hold exactly these files (registry host → rendered
/// `hosts.toml`, e.g. from [`render`](super::render)). An operator's file is
/// moved aside and its entries merged after kagami's; files kagami wrote
/// earlier for registries no longer listed are removed (the operator's
/// restored); a file kagami wrote that someone changed since is left as it
/// is, with a warning.
pub fn apply(dir: &Path, files: &BTreeMap<String, String>) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|e| write_error(dir, e))?;
    let mut state = state::load(dir)?;
    for (registry, ours) in files {
        apply_one(dir, registry, ours, &mut state)?;
        state::save(dir, &state)?;
    }
    let stale: Vec<String> = state
        .files
        .keys()
        .filter(|registry| !files.contains_key(*registry))
        .cloned()
        .collect();
    for registry in stale {
        if let Some(written) = state.files.remove(&registry) {
            restore_one(dir, &registry, &written)?;
            state::save(dir, &state)?;
        }
    }
    Ok(())
}

/// Puts `dir` back as it was before kagami wrote into it: removes kagami's
/// files and returns the operator's. Returns the files left in place
/// because someone changed them after kagami wrote them.
pub fn restore(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut state = state::load(dir)?;
    let mut kept = Vec::new();
    while let Some((registry, written)) = state.files.pop_first() {
        kept.extend(restore_one(dir, &registry, &written)?);
        state::save(dir, &state)?;
    }
    Ok(kept)
}

fn host_dir(dir: &Path, registry: &str) -> Result<PathBuf, Error> {
    let valid =
        !registry.is_empty() && !registry.starts_with('.') && !registry.contains(['/', '\\', '\0']);
    if !valid {
        let source = std::io::Error::new(ErrorKind::InvalidInput, "not a registry host");
        return Err(write_error(&dir.join(registry), source));
    }
    Ok(dir.join(registry))
}

fn apply_one(dir: &Path, registry: &str, ours: &str, state: &mut State) -> Result<(), Error> {
    let host = host_dir(dir, registry)?;
    let (path, aside) = (host.join(HOSTS), host.join(ASIDE));
    let current = read_optional(&path)?;
    let (displaced, created_dir) = match (state.files.get(registry), &current) {
        (Some(written), Some(current)) if hash(current) != written.written => {
            tracing::warn!(path = %path.display(), "hosts.toml was changed since kagami wrote it; leaving it as it is");
            return Ok(());
        }
        (Some(written), _) => (written.displaced.clone(), written.created_dir),
        (None, Some(theirs)) => {
            if aside.exists() {
                let source = std::io::Error::new(
                    ErrorKind::AlreadyExists,
                    "would overwrite a file kept aside",
                );
                return Err(write_error(&aside, source));
            }
            // Merged before anything moves, so an unparsable file stays put.
            let text = String::from_utf8_lossy(theirs);
            let merged = merge(ours, &text, &path)?;
            std::fs::rename(&path, &aside).map_err(|e| write_error(&aside, e))?;
            return finish(state, registry, &path, &merged, Some(hash(theirs)), false);
        }
        (None, None) => match read_optional(&aside)? {
            // Left aside by a run that stopped before recording it.
            Some(theirs) => (Some(hash(&theirs)), false),
            None => {
                let created = !host.exists();
                std::fs::create_dir_all(&host).map_err(|e| write_error(&host, e))?;
                (None, created)
            }
        },
    };
    let content = match &displaced {
        Some(_) => {
            let theirs = read_optional(&aside)?.unwrap_or_default();
            merge(ours, &String::from_utf8_lossy(&theirs), &aside)?
        }
        None => ours.to_owned(),
    };
    finish(state, registry, &path, &content, displaced, created_dir)
}

fn finish(
    state: &mut State,
    registry: &str,
    path: &Path,
    content: &str,
    displaced: Option<String>,
    created_dir: bool,
) -> Result<(), Error> {
    write_atomic(path, content.as_bytes())?;
    let written = Written {
        written: hash(content.as_bytes()),
        displaced,
        created_dir,
    };
    state.files.insert(registry.to_owned(), written);
    Ok(())
}

/// Undoes one file; returns its path if it was kept because it changed.
fn restore_one(dir: &Path, registry: &str, written: &Written) -> Result<Option<PathBuf>, Error> {
    let host = host_dir(dir, registry)?;
    let (path, aside) = (host.join(HOSTS), host.join(ASIDE));
    if let Some(current) = read_optional(&path)? {
        if hash(&current) != written.written {
            tracing::warn!(
                path = %path.display(),
                aside = ?written.displaced.as_ref().map(|_| &aside),
                "hosts.toml was changed since kagami wrote it; keeping it (and any file kept aside)"
            );
            return Ok(Some(path));
        }
        remove_optional(&path)?;
    }
    if written.displaced.is_some() && aside.exists() {
        std::fs::rename(&aside, &path).map_err(|e| write_error(&path, e))?;
    } else if written.created_dir {
        // Only if empty: anything else in it is someone else's.
        if let Err(e) = std::fs::remove_dir(&host)
            && e.kind() != ErrorKind::DirectoryNotEmpty
            && e.kind() != ErrorKind::NotFound
        {
            return Err(write_error(&host, e));
        }
    }
    Ok(None)
}
