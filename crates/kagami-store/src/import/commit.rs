//! Making a verified import visible: blobs are moved into the blob tree
//! first, then `index.json` is replaced in one rename, then blobs that the
//! moved names no longer need are deleted.

use std::collections::{BTreeSet, HashSet};
use std::fs::{self, File};

use kagami_core::Digest;

use crate::Error;
use crate::gc;
use crate::import::Named;
use crate::import::stage::Staged;
use crate::index_file::{IndexFile, sync_dir};
use crate::names::name_of;
use crate::paths::Paths;

/// Commits `named` (already verified) and the staged blobs in `reached`.
pub(crate) fn commit(
    paths: &Paths,
    limit: u64,
    staged: &Staged,
    reached: &BTreeSet<Digest>,
    named: &[Named],
) -> Result<(), Error> {
    let mut dirs = BTreeSet::new();
    for digest in reached {
        let Some(blob) = staged.blob(digest) else {
            continue; // already in the store
        };
        let dir = paths.blob_dir(digest);
        let target = paths.blob(digest);
        let write_err = |source| Error::WriteLayout {
            path: target.clone(),
            source,
        };
        if dirs.insert(dir.clone()) {
            fs::create_dir_all(&dir).map_err(write_err)?;
        }
        // Durable before index.json can name it. Replacing an existing blob
        // swaps identical bytes; readers holding the old file keep it.
        File::open(&blob.path)
            .and_then(|file| file.sync_all())
            .and_then(|()| fs::rename(&blob.path, &target))
            .map_err(write_err)?;
    }
    for dir in &dirs {
        sync_dir(dir).map_err(|source| Error::WriteLayout {
            path: dir.clone(),
            source,
        })?;
    }

    let mut index = IndexFile::read(paths, limit)?;
    let names: HashSet<_> = named.iter().map(|n| &n.reference).collect();
    let (replaced, kept): (Vec<_>, Vec<_>) = index
        .manifests
        .into_iter()
        .partition(|entry| matches!(name_of(entry), Ok(Some(r)) if names.contains(&r)));
    index.manifests = kept;
    index
        .manifests
        .extend(named.iter().map(|n| n.descriptor.clone()));
    index.write(paths)?;

    gc::release(paths, limit, &replaced, &index.manifests);
    Ok(())
}
