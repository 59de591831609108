//! The in-memory picture of the layout: named images, and every digest they
//! reach with its size and kind. Rebuilt from `index.json` and the
//! manifests when the file changes, so lookups never read JSON.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use kagami_core::store::{ContentInfo, ContentKind, Event, Image};
use kagami_core::{Digest, MediaType, Reference};

use crate::Error;
use crate::index_file::{Descriptor, IndexFile};
use crate::names::{key_of, name_of};
use crate::paths::Paths;
use crate::walk::{LayoutSource, Visitor, Walker};

/// What identifies one version of `index.json`. Writers replace the file by
/// rename, so the inode changes on every write even within one mtime tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    pub(crate) fn of(path: &Path) -> io::Result<Stamp> {
        let m = fs::metadata(path)?;
        Ok(Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }
}

/// Named images and the content they reach.
#[derive(Debug, Default)]
pub(crate) struct Catalogue {
    /// The `index.json` this was built from.
    pub stamp: Option<Stamp>,
    /// Keyed by the tagged reference without digest.
    pub images: BTreeMap<Reference, Image>,
    /// Only content whose file exists.
    pub content: HashMap<Digest, ContentInfo>,
}

impl Catalogue {
    /// Builds the catalogue from the files. Images whose manifests cannot be
    /// read are left out with a warning rather than failing the whole load;
    /// a bad `index.json` fails it.
    pub(crate) fn load(paths: &Paths, limit: u64) -> Result<Catalogue, Error> {
        // Taken before reading: a write in between makes the next poll read
        // again, never miss a change.
        let stamp = Stamp::of(&paths.index()).ok();
        let index = IndexFile::read(paths, limit)?;
        let source = LayoutSource { paths, limit };
        let mut walker = Walker::new(&source);
        let mut found = Found {
            paths,
            content: HashMap::new(),
        };
        let mut images = BTreeMap::new();
        for entry in &index.manifests {
            let reference = match name_of(entry) {
                Ok(Some(reference)) => reference,
                Ok(None) => continue,
                Err(reason) => {
                    tracing::debug!(digest = %entry.digest, ?reason, "index.json entry without a usable name");
                    continue;
                }
            };
            match walker.walk(entry, &mut found) {
                Ok(Some(media_type)) => {
                    let size = found
                        .content
                        .get(&entry.digest)
                        .map_or(entry.size, |info| info.size);
                    let image = Image {
                        reference: reference.clone(),
                        digest: entry.digest.clone(),
                        media_type,
                        size,
                    };
                    images.insert(reference, image);
                }
                Ok(None) => {
                    tracing::warn!(%reference, digest = %entry.digest, "image's manifest is missing or invalid; not serving it");
                }
                Err(error) => {
                    tracing::warn!(%reference, error = %error, "cannot read image; not serving it");
                }
            }
        }
        Ok(Catalogue {
            stamp,
            images,
            content: found.content,
        })
    }

    /// The image a reference names, by registry, repository and tag.
    pub(crate) fn resolve(&self, reference: &Reference) -> Option<&Image> {
        self.images.get(&key_of(reference)?)
    }

    /// The events that turn `self` into `new`: removals before additions,
    /// content added before the image that needs it is announced.
    pub(crate) fn diff(&self, new: &Catalogue) -> Vec<Event> {
        let mut events = Vec::new();
        for (key, old) in &self.images {
            if new.images.get(key) != Some(old) {
                events.push(Event::ImageRemoved(old.clone()));
            }
        }
        let gone: BTreeSet<&Digest> = self
            .content
            .keys()
            .filter(|d| !new.content.contains_key(*d))
            .collect();
        events.extend(gone.into_iter().cloned().map(Event::ContentRemoved));
        let came: BTreeSet<&Digest> = new
            .content
            .keys()
            .filter(|d| !self.content.contains_key(*d))
            .collect();
        events.extend(came.into_iter().cloned().map(Event::ContentAdded));
        for (key, image) in &new.images {
            if self.images.get(key) != Some(image) {
                events.push(Event::ImageAdded(image.clone()));
            }
        }
        events
    }
}

/// Records what a walk finds and is held.
struct Found<'a> {
    paths: &'a Paths,
    content: HashMap<Digest, ContentInfo>,
}

impl Visitor for Found<'_> {
    fn manifest(&mut self, d: &Descriptor, media_type: MediaType, len: u64) -> Result<(), Error> {
        if len != d.size {
            tracing::warn!(digest = %d.digest, declared = d.size, actual = len, "manifest size differs from its descriptor");
        }
        self.content.insert(
            d.digest.clone(),
            ContentInfo {
                digest: d.digest.clone(),
                size: len,
                kind: ContentKind::Manifest(media_type),
            },
        );
        Ok(())
    }

    fn blob(&mut self, d: &Descriptor) -> Result<(), Error> {
        if self.content.contains_key(&d.digest) {
            return Ok(());
        }
        match fs::metadata(self.paths.blob(&d.digest)) {
            Ok(meta) if meta.is_file() => {
                if meta.len() != d.size {
                    tracing::warn!(digest = %d.digest, declared = d.size, actual = meta.len(), "blob size differs from its descriptor");
                }
                self.content.insert(
                    d.digest.clone(),
                    ContentInfo {
                        digest: d.digest.clone(),
                        size: meta.len(),
                        kind: ContentKind::Blob,
                    },
                );
            }
            // Not held (a platform that was never pulled, say): not served.
            _ => {}
        }
        Ok(())
    }

    fn missing_manifest(&mut self, d: &Descriptor, _child: bool) -> Result<(), Error> {
        tracing::debug!(digest = %d.digest, "manifest not held");
        Ok(())
    }

    fn invalid_manifest(&mut self, d: &Descriptor, reason: String) -> Result<(), Error> {
        tracing::warn!(digest = %d.digest, %reason, "cannot walk manifest");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> Digest {
        Digest::from_hash(kagami_core::Algorithm::Sha256, &[n; 32])
    }

    fn image(name: &str, n: u8) -> Image {
        Image {
            reference: name.parse().unwrap(),
            digest: digest(n),
            media_type: MediaType::OciManifest,
            size: 10,
        }
    }

    fn catalogue(images: &[Image], content: &[u8]) -> Catalogue {
        Catalogue {
            stamp: None,
            images: images
                .iter()
                .map(|i| (i.reference.clone(), i.clone()))
                .collect(),
            content: content
                .iter()
                .map(|n| {
                    let info = ContentInfo {
                        digest: digest(*n),
                        size: 1,
                        kind: ContentKind::Blob,
                    };
                    (digest(*n), info)
                })
                .collect(),
        }
    }

    #[test]
    fn a_moved_tag_is_a_removal_and_an_addition() {
        let old = catalogue(&[image("a:1", 1), image("b:1", 2)], &[1, 2, 3]);
        let new = catalogue(&[image("a:1", 4), image("b:1", 2)], &[2, 3, 4]);
        assert_eq!(
            old.diff(&new),
            vec![
                Event::ImageRemoved(image("a:1", 1)),
                Event::ContentRemoved(digest(1)),
                Event::ContentAdded(digest(4)),
                Event::ImageAdded(image("a:1", 4)),
            ]
        );
        assert!(new.diff(&new).is_empty());
    }

    #[test]
    fn resolves_by_tag_ignoring_any_digest() {
        let c = catalogue(&[image("a:1", 1)], &[]);
        let with_digest: Reference = format!("a:1@{}", digest(9)).parse().unwrap();
        assert_eq!(c.resolve(&with_digest).unwrap().digest, digest(1));
        let by_digest: Reference = format!("a@{}", digest(1)).parse().unwrap();
        assert!(c.resolve(&by_digest).is_none());
    }
}
