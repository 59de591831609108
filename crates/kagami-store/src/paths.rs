//! Where things live inside an image-layout directory.

use std::path::{Path, PathBuf};

use kagami_core::Digest;

/// The file holding `{"imageLayoutVersion": "1.0.0"}`.
pub(crate) const OCI_LAYOUT: &str = "oci-layout";
/// The file listing the layout's top-level manifests and their names.
pub(crate) const INDEX_JSON: &str = "index.json";
/// The blob tree, `blobs/<algorithm>/<hex>`.
pub(crate) const BLOBS: &str = "blobs";
/// The writers' lock file; readers never take it.
pub(crate) const LOCK: &str = ".lock";
/// Scratch space for imports in progress, on the same file system as the
/// blobs so that finished files can be renamed into place.
pub(crate) const TMP: &str = ".tmp";

/// The paths of one layout directory.
#[derive(Debug, Clone)]
pub(crate) struct Paths {
    root: PathBuf,
}

impl Paths {
    pub(crate) fn new(root: PathBuf) -> Paths {
        Paths { root }
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn oci_layout(&self) -> PathBuf {
        self.root.join(OCI_LAYOUT)
    }

    pub(crate) fn index(&self) -> PathBuf {
        self.root.join(INDEX_JSON)
    }

    pub(crate) fn lock(&self) -> PathBuf {
        self.root.join(LOCK)
    }

    pub(crate) fn tmp(&self) -> PathBuf {
        self.root.join(TMP)
    }

    /// The directory of one algorithm's blobs, `blobs/sha256`.
    pub(crate) fn blob_dir(&self, digest: &Digest) -> PathBuf {
        self.root.join(BLOBS).join(digest.algorithm().as_str())
    }

    /// The file of one blob. Digests are validated lowercase hex, so the
    /// path cannot leave the layout.
    pub(crate) fn blob(&self, digest: &Digest) -> PathBuf {
        self.blob_dir(digest).join(digest.hex())
    }
}
