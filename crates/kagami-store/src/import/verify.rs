//! Checking, before anything becomes visible, that every image of an
//! archive is whole: each manifest, config and layer it names is held (in
//! the archive or already in the store) at the size its descriptor says.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use kagami_core::{Digest, MediaType};

use crate::Error;
use crate::import::stage::Staged;
use crate::index_file::Descriptor;
use crate::paths::Paths;
use crate::walk::{LayoutSource, Source, Visitor};

/// Manifests from the archive first, then from the store.
pub(crate) struct ImportSource<'a> {
    pub staged: &'a Staged,
    pub layout: LayoutSource<'a>,
}

impl Source for ImportSource<'_> {
    fn manifest(&self, digest: &Digest) -> Result<Option<Vec<u8>>, Error> {
        match self.staged.read_small_blob(digest, self.layout.limit)? {
            Some(bytes) => Ok(Some(bytes)),
            None => self.layout.manifest(digest),
        }
    }
}

/// Collects what the images reach, failing on anything missing or wrong.
pub(crate) struct Verify<'a> {
    pub archive: &'a Path,
    pub paths: &'a Paths,
    pub staged: &'a Staged,
    /// Every digest the images reach that is held.
    pub reached: BTreeSet<Digest>,
}

impl Verify<'_> {
    fn check_size(&self, d: &Descriptor, actual: u64) -> Result<(), Error> {
        if d.size != actual {
            return Err(Error::SizeMismatch {
                archive: self.archive.to_owned(),
                digest: d.digest.clone(),
                declared: d.size,
                actual,
            });
        }
        Ok(())
    }
}

impl Visitor for Verify<'_> {
    fn manifest(&mut self, d: &Descriptor, _: MediaType, len: u64) -> Result<(), Error> {
        self.check_size(d, len)?;
        self.reached.insert(d.digest.clone());
        Ok(())
    }

    fn blob(&mut self, d: &Descriptor) -> Result<(), Error> {
        let size = match self.staged.blob(&d.digest) {
            Some(blob) => Some(blob.size),
            None => fs::metadata(self.paths.blob(&d.digest))
                .ok()
                .filter(|m| m.is_file())
                .map(|m| m.len()),
        };
        let size = size.ok_or_else(|| Error::MissingBlob {
            archive: self.archive.to_owned(),
            digest: d.digest.clone(),
        })?;
        self.check_size(d, size)?;
        self.reached.insert(d.digest.clone());
        Ok(())
    }

    fn missing_manifest(&mut self, d: &Descriptor, child: bool) -> Result<(), Error> {
        if child {
            // `docker save` of a multi-platform image that was pulled for one
            // platform writes the whole index but only that platform's
            // manifest; the others are simply not served.
            tracing::info!(digest = %d.digest, "archive lacks one platform of an index; importing the rest");
            return Ok(());
        }
        Err(Error::MissingBlob {
            archive: self.archive.to_owned(),
            digest: d.digest.clone(),
        })
    }

    fn invalid_manifest(&mut self, d: &Descriptor, reason: String) -> Result<(), Error> {
        Err(Error::InvalidManifest {
            archive: self.archive.to_owned(),
            digest: d.digest.clone(),
            reason,
        })
    }
}
