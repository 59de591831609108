//! Deleting blobs no image needs any more: reference counting over every
//! entry of `index.json`, named or not, so content another tool put there
//! is never taken away.

use std::collections::HashSet;
use std::fs;
use std::io;

use kagami_core::{Digest, MediaType};

use crate::Error;
use crate::index_file::Descriptor;
use crate::paths::Paths;
use crate::walk::{LayoutSource, Visitor, Walker};

/// Every digest reachable from `entries`, held or not. With `strict`, a
/// manifest that cannot be walked is an error: its blobs are unknown, so
/// nothing it might use may be deleted.
pub(crate) fn reachable(
    paths: &Paths,
    limit: u64,
    entries: &[Descriptor],
    strict: bool,
) -> Result<HashSet<Digest>, Error> {
    let source = LayoutSource { paths, limit };
    let mut walker = Walker::new(&source);
    let mut reached = Reached {
        paths,
        strict,
        digests: HashSet::new(),
    };
    for entry in entries {
        reached.digests.insert(entry.digest.clone());
        walker.walk(entry, &mut reached)?;
    }
    Ok(reached.digests)
}

/// Deletes the blobs that `released` entries (just dropped from
/// `index.json`) reach and no entry of `remaining` does; returns what was
/// deleted. Failures are logged, not returned: the index is already
/// written, and a blob left behind wastes space but breaks nothing.
pub(crate) fn release(
    paths: &Paths,
    limit: u64,
    released: &[Descriptor],
    remaining: &[Descriptor],
) -> Vec<Digest> {
    if released.is_empty() {
        return Vec::new();
    }
    let candidates = match reachable(paths, limit, released, false) {
        Ok(candidates) => candidates,
        Err(error) => {
            tracing::warn!(error = %error, "not collecting garbage: cannot tell what released images used");
            return Vec::new();
        }
    };
    let keep = match reachable(paths, limit, remaining, true) {
        Ok(keep) => keep,
        Err(error) => {
            tracing::warn!(error = %error, "not collecting garbage: cannot tell what remaining images use");
            return Vec::new();
        }
    };
    let mut deleted = Vec::new();
    for digest in candidates.into_iter().filter(|d| !keep.contains(d)) {
        let path = paths.blob(&digest);
        match fs::remove_file(&path) {
            Ok(()) => deleted.push(digest),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot delete unused blob")
            }
        }
    }
    tracing::debug!(count = deleted.len(), "deleted unused blobs");
    deleted
}

struct Reached<'a> {
    paths: &'a Paths,
    strict: bool,
    digests: HashSet<Digest>,
}

impl Visitor for Reached<'_> {
    fn manifest(&mut self, d: &Descriptor, _: MediaType, _: u64) -> Result<(), Error> {
        self.digests.insert(d.digest.clone());
        Ok(())
    }

    fn blob(&mut self, d: &Descriptor) -> Result<(), Error> {
        self.digests.insert(d.digest.clone());
        Ok(())
    }

    fn missing_manifest(&mut self, d: &Descriptor, _: bool) -> Result<(), Error> {
        self.digests.insert(d.digest.clone());
        Ok(())
    }

    fn invalid_manifest(&mut self, d: &Descriptor, reason: String) -> Result<(), Error> {
        self.digests.insert(d.digest.clone());
        if self.strict {
            return Err(Error::InvalidLayout {
                path: self.paths.blob(&d.digest),
                reason,
            });
        }
        Ok(())
    }
}
