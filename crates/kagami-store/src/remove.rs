//! Removing a name, and the blobs that no remaining image needs.

use kagami_core::store::Image;
use kagami_core::{MediaType, Reference};

use crate::index_file::{IndexFile, read_limited};
use crate::lock::with_write_lock;
use crate::names::{key_of, name_of};
use crate::paths::Paths;
use crate::{Error, Options, gc};

/// Removes every `index.json` entry with this name; blocking, under the
/// writers' lock. The index is rewritten before any blob is deleted, so a
/// reader never sees a name whose content is gone.
pub(crate) fn remove(
    paths: &Paths,
    options: &Options,
    reference: &Reference,
) -> Result<Image, Error> {
    let not_found = || Error::ImageNotFound {
        reference: reference.clone(),
    };
    let key = key_of(reference).ok_or_else(not_found)?;
    let limit = options.max_json_size;
    with_write_lock(paths, options.lock_timeout, || {
        let mut index = IndexFile::read(paths, limit)?;
        let (removed, kept): (Vec<_>, Vec<_>) = index
            .manifests
            .into_iter()
            .partition(|entry| matches!(name_of(entry), Ok(Some(r)) if r == key));
        let Some(last) = removed.last() else {
            return Err(not_found());
        };
        let media_type = last
            .manifest_type()
            .or_else(|| {
                read_limited(&paths.blob(&last.digest), limit)
                    .ok()
                    .and_then(|bytes| MediaType::detect(&bytes))
            })
            // Only reached for an entry that was never servable anyway.
            .unwrap_or(MediaType::OciManifest);
        let image = Image {
            reference: key.clone(),
            digest: last.digest.clone(),
            media_type,
            size: last.size,
        };
        index.manifests = kept;
        index.write(paths)?;
        gc::release(paths, limit, &removed, &index.manifests);
        tracing::info!(reference = %key, "removed image");
        Ok(image)
    })
}
