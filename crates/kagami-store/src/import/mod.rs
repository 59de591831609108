//! Importing `docker save` and OCI archives (plain, gzip or zstd) into the
//! layout, all or nothing, in two passes over the archive file. The first
//! writes nothing: it reads what describes the images and notes every
//! file, so that the files the named images reference, at the sizes they
//! declare, are all the second pass writes (see [`limits`] for what an
//! archive may cost). The second stages and hashes those files; the images
//! are then checked whole, and only then do blobs and names appear.

mod commit;
mod docker;
mod entries;
pub(crate) mod limits;
mod oci;
mod plan;
mod sniff;
mod stage;
mod survey;
mod verify;

use std::collections::BTreeSet;
use std::path::Path;

use kagami_core::store::Image;
use kagami_core::{MediaType, Reference};

use crate::index_file::Descriptor;
use crate::lock::with_write_lock;
use crate::paths::Paths;
use crate::walk::{LayoutSource, Walker};
use crate::{Error, Options, collect};

#[cfg(feature = "testing")]
pub(crate) use docker::layer_type;

/// An image an archive names, with the `index.json` entry it will get.
#[derive(Debug, Clone)]
pub(crate) struct Named {
    pub reference: Reference,
    pub descriptor: Descriptor,
}

/// Imports an archive; blocking, holding the writers' lock throughout.
pub(crate) fn import(
    paths: &Paths,
    options: &Options,
    archive: &Path,
) -> Result<Vec<Image>, Error> {
    with_write_lock(paths, options.lock_timeout, || {
        let limit = options.max_json_size;
        // What an import killed before it committed left behind goes
        // first, so that a crash costs space only until the next import.
        collect::collect_logged(paths, limit, "before an import");

        let survey = survey::Survey::read(archive, limit)?;
        let plan = plan::plan(&survey, paths, limit)?;
        // Only once the first pass has closed the archive: whoever feeds
        // it through a FIFO may then open it again for the second.
        tracing::info!(
            archive = %archive.display(),
            files = plan.wanted.len(),
            bytes = plan.bytes(),
            "archive surveyed; staging the files its images reference"
        );
        let (tar, reading) = sniff::open(archive)?;
        let mut staged = stage::Staged::create(paths, reading)?;
        staged.ingest(tar, &plan)?;

        let named = match plan.images {
            plan::Images::Oci(named) => named,
            plan::Images::Docker(entries) => {
                last_of_each_name(docker::named_images(archive, &mut staged, entries)?)
            }
        };
        if named.is_empty() {
            return Err(Error::NoNamedImage {
                archive: archive.to_owned(),
            });
        }

        let source = verify::ImportSource {
            staged: &staged,
            layout: LayoutSource { paths, limit },
        };
        let mut walker = Walker::new(&source);
        let mut check = verify::Verify {
            archive,
            paths,
            staged: &staged,
            reached: BTreeSet::new(),
        };
        let mut images = Vec::with_capacity(named.len());
        let mut named = named;
        for n in &mut named {
            let media_type =
                walker
                    .walk(&n.descriptor, &mut check)?
                    .ok_or_else(|| Error::MissingBlob {
                        archive: archive.to_owned(),
                        digest: n.descriptor.digest.clone(),
                    })?;
            n.descriptor.media_type = Some(media_type.as_str().to_owned());
            images.push(image(n, media_type));
        }
        let reached = check.reached;
        commit::commit(paths, limit, &staged, &reached, &named)?;
        tracing::info!(archive = %archive.display(), images = images.len(), blobs = reached.len(), "imported");
        Ok(images)
    })
}

fn image(named: &Named, media_type: MediaType) -> Image {
    Image {
        reference: named.reference.clone(),
        digest: named.descriptor.digest.clone(),
        media_type,
        size: named.descriptor.size,
    }
}

/// One archive naming an image twice: the later entry wins, as it would
/// had the two been imported one after the other.
pub(crate) fn last_of_each_name(named: Vec<Named>) -> Vec<Named> {
    let mut out: Vec<Named> = Vec::with_capacity(named.len());
    for n in named {
        out.retain(|o| o.reference != n.reference);
        out.push(n);
    }
    out
}
