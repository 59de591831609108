//! Image fixtures for tests and benchmarks: deterministic images of any
//! size, written as `docker save` or OCI archives (plain, gzip or zstd) or
//! as an OCI layout directory, streaming (a 256 MiB layer is never held in
//! memory), together with the digests a store must then serve.

mod plan;
mod sink;
mod write;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kagami_core::{Digest, MediaType, Reference};

/// The archive layout [`write_archive`] produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// A tar of an OCI image layout, as `skopeo copy … oci-archive:` writes.
    Oci,
    /// What `docker save` (before Docker 25) writes: `manifest.json`,
    /// `<hex>.json` configs, `<id>/layer.tar`, `repositories`.
    Docker,
}

/// How [`write_archive`] compresses the whole archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (fast level).
    Gzip,
    /// zstd (level 1).
    Zstd,
}

/// One image to generate.
///
/// Layer `i` of two specs with the same seed and the same size is the same
/// blob, which is how tests build images that share layers.
#[derive(Clone, Debug)]
pub struct ImageSpec {
    /// Its name, e.g. `docker.io/library/demo:1` or `demo:1`.
    pub reference: String,
    /// Each layer: an uncompressed tar holding one file of that many
    /// pseudo-random bytes.
    pub layer_sizes: Vec<u64>,
    /// `(os, arch)` pairs; empty gives a single image manifest, otherwise an
    /// OCI index with one manifest per platform (each with its own config,
    /// the layers shared).
    pub platforms: Vec<(String, String)>,
    /// Same spec and seed, same bytes, same digests.
    pub seed: u64,
}

impl ImageSpec {
    /// A single-platform image with these layer sizes and seed 0.
    pub fn new(reference: &str, layer_sizes: &[u64]) -> ImageSpec {
        ImageSpec {
            reference: reference.to_owned(),
            layer_sizes: layer_sizes.to_vec(),
            platforms: Vec::new(),
            seed: 0,
        }
    }

    /// Makes it a multi-platform image, one manifest per `(os, arch)`.
    pub fn platforms(mut self, platforms: &[(&str, &str)]) -> ImageSpec {
        self.platforms = platforms
            .iter()
            .map(|(os, arch)| ((*os).to_owned(), (*arch).to_owned()))
            .collect();
        self
    }

    /// Sets the seed of the pseudo-random content.
    pub fn seed(mut self, seed: u64) -> ImageSpec {
        self.seed = seed;
        self
    }
}

/// What a written image holds, as a store must serve it once imported.
#[derive(Clone, Debug)]
pub struct BuiltImage {
    /// The normalised name.
    pub reference: Reference,
    /// The top manifest or index as it will be stored; for docker archives,
    /// the manifest the importer writes (computed by the same code).
    pub digest: Digest,
    /// The top manifest's type.
    pub media_type: MediaType,
    /// The top manifest first, then any children.
    pub manifests: Vec<Digest>,
    /// Configs and layers, with their sizes.
    pub blobs: BTreeMap<Digest, u64>,
}

/// Writes one archive holding all `images` into `dir` (under a fresh file
/// name), streaming, and returns its path and what it holds. Docker
/// archives take only single-platform specs ([`std::io::ErrorKind::InvalidInput`]
/// otherwise).
pub fn write_archive(
    dir: &Path,
    images: &[ImageSpec],
    format: ArchiveFormat,
    compression: Compression,
) -> std::io::Result<(PathBuf, Vec<BuiltImage>)> {
    let plans = plan::plan_all(images)?;
    let path = write::archive(dir, &plans, format, compression)?;
    Ok((path, plans.into_iter().map(|p| p.built).collect()))
}

/// Writes the images as an OCI image-layout directory (not a tar) at `dir`,
/// for skopeo `oci:` sources and for benchmarks. Each image's `index.json`
/// entry carries its full name and, as `org.opencontainers.image.ref.name`,
/// its tag.
pub fn write_layout(dir: &Path, images: &[ImageSpec]) -> std::io::Result<Vec<BuiltImage>> {
    let plans = plan::plan_all(images)?;
    write::layout(dir, &plans)?;
    Ok(plans.into_iter().map(|p| p.built).collect())
}
