//! Walking an image from its top descriptor through indexes and manifests
//! down to configs and layers. The catalogue, the garbage collector and the
//! importer's checks are all walks with different visitors.

use std::collections::HashMap;
use std::io;

use kagami_core::{Digest, MediaType};
use serde::Deserialize;

use crate::Error;
use crate::index_file::{Descriptor, read_limited};
use crate::paths::Paths;

/// Indexes of indexes are legal; deeper than this is a loop or an attack.
const MAX_DEPTH: usize = 4;

/// Where manifests are read from.
pub(crate) trait Source {
    /// A manifest's bytes, `None` when it is not held.
    fn manifest(&self, digest: &Digest) -> Result<Option<Vec<u8>>, Error>;
}

/// What a walk reports.
pub(crate) trait Visitor {
    /// A manifest or index was read (`len` bytes).
    fn manifest(
        &mut self,
        descriptor: &Descriptor,
        media_type: MediaType,
        len: u64,
    ) -> Result<(), Error>;
    /// A config or layer is referenced (it may or may not be held).
    fn blob(&mut self, descriptor: &Descriptor) -> Result<(), Error>;
    /// A manifest is referenced but not held; `child` when an index names it.
    fn missing_manifest(&mut self, descriptor: &Descriptor, child: bool) -> Result<(), Error>;
    /// A manifest is held but cannot be walked.
    fn invalid_manifest(&mut self, descriptor: &Descriptor, reason: String) -> Result<(), Error>;
}

/// The fields of a manifest or index a walk follows.
#[derive(Deserialize)]
struct Shape {
    #[serde(default)]
    manifests: Vec<Descriptor>,
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

/// Walks images, reading each manifest once however many images share it.
pub(crate) struct Walker<'s, S: Source> {
    source: &'s S,
    seen: HashMap<Digest, Option<MediaType>>,
}

impl<'s, S: Source> Walker<'s, S> {
    pub(crate) fn new(source: &'s S) -> Self {
        Walker {
            source,
            seen: HashMap::new(),
        }
    }

    /// Walks one image; returns its top manifest's type, or `None` when the
    /// top manifest is missing or invalid.
    pub(crate) fn walk(
        &mut self,
        top: &Descriptor,
        visitor: &mut impl Visitor,
    ) -> Result<Option<MediaType>, Error> {
        self.visit(top, 0, visitor)
    }

    fn visit(
        &mut self,
        descriptor: &Descriptor,
        depth: usize,
        visitor: &mut impl Visitor,
    ) -> Result<Option<MediaType>, Error> {
        if let Some(known) = self.seen.get(&descriptor.digest) {
            return Ok(*known);
        }
        // Marked before descending so that a cycle ends here.
        self.seen.insert(descriptor.digest.clone(), None);
        let Some(bytes) = self.source.manifest(&descriptor.digest)? else {
            visitor.missing_manifest(descriptor, depth > 0)?;
            return Ok(None);
        };
        let Some(media_type) = descriptor
            .manifest_type()
            .or_else(|| MediaType::detect(&bytes))
        else {
            visitor.invalid_manifest(descriptor, "it is not a manifest or an index".into())?;
            return Ok(None);
        };
        let shape: Shape = match serde_json::from_slice(&bytes) {
            Ok(shape) => shape,
            Err(e) => {
                visitor.invalid_manifest(descriptor, e.to_string())?;
                return Ok(None);
            }
        };
        visitor.manifest(descriptor, media_type, bytes.len() as u64)?;
        self.seen
            .insert(descriptor.digest.clone(), Some(media_type));
        if media_type.is_index() {
            if depth >= MAX_DEPTH {
                visitor.invalid_manifest(descriptor, "indexes nest too deep".into())?;
                return Ok(Some(media_type));
            }
            for child in &shape.manifests {
                self.visit(child, depth + 1, visitor)?;
            }
        } else {
            let Some(config) = &shape.config else {
                visitor.invalid_manifest(descriptor, "an image manifest without config".into())?;
                return Ok(Some(media_type));
            };
            visitor.blob(config)?;
            for layer in &shape.layers {
                visitor.blob(layer)?;
            }
        }
        Ok(Some(media_type))
    }
}

/// Manifests as stored in the layout's blob tree.
pub(crate) struct LayoutSource<'a> {
    pub paths: &'a Paths,
    pub limit: u64,
}

impl Source for LayoutSource<'_> {
    fn manifest(&self, digest: &Digest) -> Result<Option<Vec<u8>>, Error> {
        match read_limited(&self.paths.blob(digest), self.limit) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(Error::ReadLayout { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}
