//! Reading an OCI archive's `index.json`: which images it holds and what
//! they are called.

use std::path::Path;

use kagami_core::Reference;

use crate::Error;
use crate::import::Named;
use crate::index_file::IndexFile;
use crate::names::{CONTAINERD_NAME, NameError, OCI_REF_NAME, annotations_for, name_of};

/// The named images of an OCI archive. An entry with no name annotation is
/// skipped; one with a bare tag only is refused (see [`name_of`]).
pub(crate) fn named_images(archive: &Path, index_json: &[u8]) -> Result<Vec<Named>, Error> {
    let index: IndexFile =
        serde_json::from_slice(index_json).map_err(|source| Error::ParseEntry {
            archive: archive.to_owned(),
            entry: "index.json".into(),
            source,
        })?;
    let mut named = Vec::new();
    for entry in index.manifests {
        let reference: Reference = match name_of(&entry) {
            Ok(Some(reference)) => reference,
            Ok(None) => {
                tracing::debug!(digest = %entry.digest, "skipping unnamed index.json entry");
                continue;
            }
            Err(NameError::BareTag(tag)) => {
                return Err(Error::ImageNeedsName {
                    archive: archive.to_owned(),
                    digest: entry.digest,
                    tag,
                });
            }
            Err(NameError::Invalid { name, reason }) => {
                return Err(Error::InvalidName {
                    archive: archive.to_owned(),
                    name,
                    reason,
                });
            }
        };
        // Our own name annotations replace the archive's; others are kept.
        let mut descriptor = entry;
        let mut annotations = descriptor.annotations.take().unwrap_or_default();
        annotations.remove(CONTAINERD_NAME);
        annotations.remove(OCI_REF_NAME);
        annotations.extend(annotations_for(&reference));
        descriptor.annotations = Some(annotations);
        named.push(Named {
            reference,
            descriptor,
        });
    }
    Ok(named)
}
