//! Deciding, between the two passes, what the second may write: the files
//! the archive's named images reference, each at the size its descriptor
//! declares. Every other file is read through and never written, and an
//! archive whose unreferenced files hold more than a few small extras is
//! refused before anything is written.

use std::collections::HashMap;

use kagami_core::{Digest, MediaType};

use crate::Error;
use crate::import::entries::blob_path;
use crate::import::limits::MAX_UNREFERENCED_BYTES;
use crate::import::survey::{File, Survey};
use crate::import::{Named, docker, last_of_each_name, oci};
use crate::index_file::Descriptor;
use crate::paths::Paths;
use crate::walk::{LayoutSource, Source, Visitor, Walker};

/// A file the second pass writes.
#[derive(Debug, Clone)]
pub(crate) struct Wanted {
    pub path: String,
    pub size: u64,
}

/// The images an archive names, as its kind describes them.
pub(crate) enum Images {
    /// From an OCI `index.json`: named, with their descriptors.
    Oci(Vec<Named>),
    /// From a docker `manifest.json`: the tagged entries, whose manifests
    /// are written once their files are staged.
    Docker(Vec<docker::Entry>),
}

/// What the second pass writes, and the images it is for.
pub(crate) struct Plan {
    /// Entry number (see [`crate::import::entries::each`]) → the file.
    pub wanted: HashMap<usize, Wanted>,
    pub images: Images,
}

impl Plan {
    /// The bytes the second pass writes.
    pub(crate) fn bytes(&self) -> u64 {
        self.wanted.values().map(|w| w.size).sum()
    }
}

/// Plans the second pass from the first: which files the named images
/// reference (manifests already in the store are read from there), or
/// why the archive is refused.
pub(crate) fn plan(survey: &Survey, paths: &Paths, limit: u64) -> Result<Plan, Error> {
    let archive = survey.reading.archive();
    let mut wanted = HashMap::new();
    let images = if let Some(index) = survey.metadata("index.json") {
        let named = last_of_each_name(oci::named_images(archive, index)?);
        if named.is_empty() {
            return Err(Error::NoNamedImage {
                archive: archive.to_owned(),
            });
        }
        let source = PlanSource {
            survey,
            layout: LayoutSource { paths, limit },
        };
        let mut walker = Walker::new(&source);
        let mut wants = Wants {
            survey,
            wanted: &mut wanted,
        };
        for n in &named {
            walker.walk(&n.descriptor, &mut wants)?;
        }
        Images::Oci(named)
    } else if let Some(manifest) = survey.metadata("manifest.json") {
        let tagged = docker::tagged_entries(archive, manifest)?;
        if tagged.is_empty() {
            return Err(Error::NoNamedImage {
                archive: archive.to_owned(),
            });
        }
        for entry in &tagged {
            for path in entry.files() {
                let file = survey.resolve(docker::MANIFEST_JSON, path)?;
                want(&mut wanted, file);
            }
        }
        Images::Docker(tagged)
    } else {
        return Err(Error::NoImageIndex {
            archive: archive.to_owned(),
        });
    };
    check_unreferenced(survey, &wanted)?;
    Ok(Plan { wanted, images })
}

fn want(wanted: &mut HashMap<usize, Wanted>, file: &File) {
    wanted.insert(
        file.ordinal,
        Wanted {
            path: file.path.clone(),
            size: file.size,
        },
    );
}

/// Refuses an archive whose files that nothing references hold more than
/// [`MAX_UNREFERENCED_BYTES`], naming the largest of them.
fn check_unreferenced(survey: &Survey, wanted: &HashMap<usize, Wanted>) -> Result<(), Error> {
    let unreferenced = survey
        .files
        .iter()
        .filter(|f| !wanted.contains_key(&f.ordinal));
    let (mut total, mut largest) = (0u64, None::<&File>);
    for file in unreferenced {
        total = total.saturating_add(file.size);
        if largest.is_none_or(|l| file.size > l.size) {
            largest = Some(file);
        }
    }
    match largest {
        Some(largest) if total > MAX_UNREFERENCED_BYTES => Err(Error::UnreferencedEntries {
            archive: survey.reading.archive().to_owned(),
            total,
            limit: MAX_UNREFERENCED_BYTES,
            largest: largest.path.clone(),
            largest_size: largest.size,
        }),
        _ => Ok(()),
    }
}

/// Manifests from the first pass, then from the store. A blob of the
/// archive that was not kept as one is refused as a manifest here, since
/// the second pass will not write it.
struct PlanSource<'a> {
    survey: &'a Survey,
    layout: LayoutSource<'a>,
}

impl Source for PlanSource<'_> {
    fn manifest(&self, digest: &Digest) -> Result<Option<Vec<u8>>, Error> {
        if let Some(bytes) = self.survey.json(digest) {
            return Ok(Some(bytes.to_vec()));
        }
        let archive = self.survey.reading.archive();
        match self.survey.file(&blob_path(digest)) {
            Some(file) if file.size > self.layout.limit => Err(Error::EntryTooLarge {
                archive: archive.to_owned(),
                entry: file.path.clone(),
                limit: self.layout.limit,
            }),
            Some(_) => Err(Error::InvalidManifest {
                archive: archive.to_owned(),
                digest: digest.clone(),
                reason: "it is not a JSON object".into(),
            }),
            None => self.layout.manifest(digest),
        }
    }
}

/// Collects the archive's files that the images reach, refusing one whose
/// size is not what its descriptor declares before anything is written.
struct Wants<'a> {
    survey: &'a Survey,
    wanted: &'a mut HashMap<usize, Wanted>,
}

impl Wants<'_> {
    /// Wants the archive's copy of `d`, if it has one; content the archive
    /// lacks may be in the store, which the import's checks look at.
    fn want(&mut self, d: &Descriptor) -> Result<(), Error> {
        let Some(file) = self.survey.file(&blob_path(&d.digest)) else {
            return Ok(());
        };
        if file.size != d.size {
            return Err(Error::EntrySizeMismatch {
                archive: self.survey.reading.archive().to_owned(),
                entry: file.path.clone(),
                digest: d.digest.clone(),
                declared: d.size,
                actual: file.size,
            });
        }
        want(self.wanted, file);
        Ok(())
    }
}

impl Visitor for Wants<'_> {
    fn manifest(&mut self, d: &Descriptor, _: MediaType, _: u64) -> Result<(), Error> {
        self.want(d)
    }

    fn blob(&mut self, d: &Descriptor) -> Result<(), Error> {
        self.want(d)
    }

    fn missing_manifest(&mut self, d: &Descriptor, child: bool) -> Result<(), Error> {
        // An index's absent child is skipped by the import's checks too.
        if child {
            return Ok(());
        }
        Err(Error::MissingBlob {
            archive: self.survey.reading.archive().to_owned(),
            digest: d.digest.clone(),
        })
    }

    fn invalid_manifest(&mut self, d: &Descriptor, reason: String) -> Result<(), Error> {
        Err(Error::InvalidManifest {
            archive: self.survey.reading.archive().to_owned(),
            digest: d.digest.clone(),
            reason,
        })
    }
}
