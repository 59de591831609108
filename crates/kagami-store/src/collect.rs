//! Collecting the whole layout's garbage: the blob files that no entry of
//! `index.json` reaches (what an import killed between moving its blobs
//! and rewriting `index.json` leaves), and the scratch files of imports
//! killed before they committed. Only ever run under the writers' lock,
//! so no import or remove is half-way through; readers never see the
//! difference, since nothing reachable is touched.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::Path;

use kagami_core::Digest;

use crate::index_file::IndexFile;
use crate::paths::{BLOBS, Paths};
use crate::{Error, gc};

/// The files `write_atomic` writes before renaming them into place.
const INDEX_TEMP_PREFIX: &str = ".index-";

/// What a garbage collection removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Collected {
    /// Blob files that no `index.json` entry reaches.
    pub blobs_removed: u64,
    /// The bytes those blobs and the temporary entries held together.
    pub bytes_freed: u64,
    /// Leftovers of interrupted writers: entries of `.tmp` (an import's
    /// staging directory) and half-written replacements of `index.json`.
    pub temp_entries_removed: u64,
}

impl Collected {
    /// Whether anything was removed.
    pub fn removed_anything(&self) -> bool {
        self.blobs_removed > 0 || self.temp_entries_removed > 0
    }
}

/// Collects the layout's garbage; the caller holds the writers' lock.
/// Temporary files always go (no live writer owns them); blobs go only
/// when every manifest reachable from `index.json` could be read, since
/// the blobs of one that cannot are unknown. Blocking.
pub(crate) fn collect(paths: &Paths, limit: u64) -> Result<Collected, Error> {
    let mut collected = Collected::default();
    sweep_temp(paths, &mut collected);
    let index = IndexFile::read(paths, limit)?;
    match gc::reachable(paths, limit, &index.manifests, true) {
        Ok(keep) => sweep_blobs(paths, &keep, &mut collected)?,
        Err(error) => {
            tracing::warn!(%error, "not deleting unreferenced blobs: cannot tell what every image uses")
        }
    }
    Ok(collected)
}

/// [`collect`] for housekeeping that must not fail its caller: what was
/// removed is logged, and so is a failure.
pub(crate) fn collect_logged(paths: &Paths, limit: u64, when: &str) {
    match collect(paths, limit) {
        Ok(collected) => log(&collected, when),
        Err(error) => tracing::warn!(%error, when, "cannot collect the layout's garbage"),
    }
}

/// Logs what a collection removed, at info when it removed anything.
fn log(collected: &Collected, when: &str) {
    if collected.removed_anything() {
        tracing::info!(
            when,
            blobs = collected.blobs_removed,
            bytes = collected.bytes_freed,
            temp_entries = collected.temp_entries_removed,
            "removed what interrupted imports left behind"
        );
    } else {
        tracing::debug!(when, "no garbage in the layout");
    }
}

/// Empties `.tmp`, and removes stray temporary copies of `index.json`.
fn sweep_temp(paths: &Paths, collected: &mut Collected) {
    if let Ok(entries) = fs::read_dir(paths.tmp()) {
        for entry in entries.flatten() {
            remove_temp(&entry.path(), collected);
        }
    }
    if let Ok(entries) = fs::read_dir(paths.root()) {
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(INDEX_TEMP_PREFIX)
            {
                remove_temp(&entry.path(), collected);
            }
        }
    }
}

fn remove_temp(path: &Path, collected: &mut Collected) {
    let size = disk_size(path);
    let removed = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        _ => fs::remove_file(path),
    };
    match removed {
        Ok(()) => {
            collected.temp_entries_removed += 1;
            collected.bytes_freed += size;
            tracing::debug!(path = %path.display(), size, "removed what an interrupted writer left");
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot remove what an interrupted writer left")
        }
    }
}

/// The bytes of the files under `path` (links not followed).
fn disk_size(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    fs::read_dir(path)
        .map(|entries| entries.flatten().map(|e| disk_size(&e.path())).sum())
        .unwrap_or(0)
}

/// Removes every file under `blobs/<alg>/` whose digest is not in `keep`
/// (a name that is not a digest cannot be reached, so it goes too).
fn sweep_blobs(
    paths: &Paths,
    keep: &HashSet<Digest>,
    collected: &mut Collected,
) -> Result<(), Error> {
    let blobs = paths.root().join(BLOBS);
    let algorithms = match fs::read_dir(&blobs) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(Error::ReadLayout {
                path: blobs,
                source,
            });
        }
    };
    for algorithm in algorithms.flatten() {
        if !algorithm.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let dir = algorithm.path();
        let files = fs::read_dir(&dir).map_err(|source| Error::ReadLayout {
            path: dir.clone(),
            source,
        })?;
        let algorithm = algorithm.file_name().to_string_lossy().into_owned();
        for file in files.flatten() {
            let Ok(meta) = fs::symlink_metadata(file.path()) else {
                continue;
            };
            if meta.is_dir() {
                tracing::debug!(path = %file.path().display(), "leaving a directory in the blob tree alone");
                continue;
            }
            let name = file.file_name().to_string_lossy().into_owned();
            let digest = format!("{algorithm}:{name}").parse::<Digest>().ok();
            if digest.is_some_and(|d| keep.contains(&d)) {
                continue;
            }
            let path = file.path();
            match fs::remove_file(&path) {
                Ok(()) => {
                    collected.blobs_removed += 1;
                    collected.bytes_freed += meta.len();
                    tracing::debug!(path = %path.display(), size = meta.len(), "removed unreferenced blob");
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "cannot remove unreferenced blob")
                }
            }
        }
    }
    Ok(())
}
