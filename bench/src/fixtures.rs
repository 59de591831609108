//! The benchmark's content: `docker.io/bench/big:1` (one large layer) and
//! `docker.io/bench/small:1` (many small layers), written by
//! `kagami_store::testing` as one OCI archive and as one OCI layout per
//! image, with a `digest size` list of each image's layers.
//!
//! Out directory:
//! - `images.tar`: OCI archive with both images, for `kagami image import`;
//! - `layout-big/`, `layout-small/`: OCI layouts with one image each, for
//!   `skopeo copy oci:<dir> docker://…`;
//! - `big.digests`, `small.digests`: the layers, as `load --digests` reads.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, bail};
use kagami_core::Digest;
use kagami_store::testing::{self, ArchiveFormat, BuiltImage, Compression, ImageSpec};
use serde::Deserialize;

/// 256 MiB: the one layer of `bench/big`.
pub const BIG_LAYER: u64 = 256 << 20;
/// The number of layers of `bench/small`.
pub const SMALL_COUNT: usize = 1000;
/// 16 KiB: a typical small layer (a config, a tiny `COPY`).
pub const SMALL_LAYER: u64 = 16 << 10;

/// Layer sizes of the two images.
#[derive(Debug, Clone)]
pub struct Sizes {
    pub big_layer: u64,
    pub small_count: usize,
    pub small_layer: u64,
}

/// One benchmark image: its short name (file names) and what it holds.
fn specs(sizes: &Sizes) -> [(&'static str, ImageSpec); 2] {
    [
        (
            "big",
            ImageSpec::new("docker.io/bench/big:1", &[sizes.big_layer]).seed(1),
        ),
        (
            "small",
            ImageSpec::new(
                "docker.io/bench/small:1",
                &vec![sizes.small_layer; sizes.small_count],
            )
            .seed(2),
        ),
    ]
}

/// Writes the archive, the layouts and the digest lists into `out`.
pub fn write(out: &Path, sizes: &Sizes) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let all: Vec<ImageSpec> = specs(sizes).into_iter().map(|(_, spec)| spec).collect();
    let (archive, archived) =
        testing::write_archive(out, &all, ArchiveFormat::Oci, Compression::None)
            .context("cannot write the OCI archive")?;
    // The writer picks a fresh name; run.sh wants a fixed one.
    let archive_path = out.join("images.tar");
    std::fs::rename(&archive, &archive_path)
        .with_context(|| format!("cannot rename {}", archive.display()))?;

    for (name, spec) in &specs(sizes) {
        let layout = out.join(format!("layout-{name}"));
        let built = testing::write_layout(&layout, std::slice::from_ref(spec))
            .with_context(|| format!("cannot write the OCI layout {}", layout.display()))?;
        let [built] = built.as_slice() else {
            bail!("the layout of {name} holds {} images, not 1", built.len());
        };
        // Both writers build from the same seed; the lists must name the
        // archive's blobs too, or kagami would be asked for content it lacks.
        let in_archive = archived.iter().find(|i| i.reference == built.reference);
        if in_archive.map(|i| &i.digest) != Some(&built.digest) {
            bail!(
                "{name}: the layout's image {} is not in the archive",
                built.digest
            );
        }
        let layers = layers(&layout, built)?;
        let list = out.join(format!("{name}.digests"));
        std::fs::write(&list, digest_list(&layers))
            .with_context(|| format!("cannot write {}", list.display()))?;
        let total: u64 = layers.values().sum();
        eprintln!(
            "{}: {} layers, {} bytes, image {}",
            spec.reference,
            layers.len(),
            total,
            built.digest
        );
    }
    eprintln!("archive: {}", archive_path.display());
    Ok(())
}

/// The layers of every manifest of `image`, read from its layout, so that
/// the lists name only the blobs the scenarios are about (no configs).
fn layers(layout: &Path, image: &BuiltImage) -> anyhow::Result<BTreeMap<Digest, u64>> {
    #[derive(Deserialize)]
    struct Manifest {
        /// An index has none; its children are listed in `manifests` too.
        #[serde(default)]
        layers: Vec<Descriptor>,
    }
    #[derive(Deserialize)]
    struct Descriptor {
        digest: Digest,
        size: u64,
    }
    let mut layers = BTreeMap::new();
    for manifest in &image.manifests {
        let path = layout
            .join("blobs")
            .join(manifest.algorithm().as_str())
            .join(manifest.hex());
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let parsed: Manifest = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not an image manifest", path.display()))?;
        for layer in parsed.layers {
            if image.blobs.get(&layer.digest) != Some(&layer.size) {
                bail!("layer {} is not among the image's blobs", layer.digest);
            }
            layers.insert(layer.digest, layer.size);
        }
    }
    Ok(layers)
}

fn digest_list(blobs: &BTreeMap<Digest, u64>) -> String {
    let mut text = String::new();
    for (digest, size) in blobs {
        let _ = writeln!(text, "{digest} {size}");
    }
    text
}

#[cfg(test)]
mod tests {
    use sha2::{Digest as _, Sha256};

    use super::*;
    use crate::load::read_digest_list;

    #[test]
    fn digest_lists_name_the_layers_the_layouts_hold() {
        let out = tempfile::tempdir().unwrap();
        let sizes = Sizes {
            big_layer: 5000,
            small_count: 3,
            small_layer: 100,
        };

        write(out.path(), &sizes).unwrap();

        assert!(out.path().join("images.tar").is_file());
        for (name, count) in [("big", 1), ("small", 3)] {
            let layers = read_digest_list(&out.path().join(format!("{name}.digests"))).unwrap();
            assert_eq!(layers.len(), count, "{name}");
            for layer in layers {
                let path = out
                    .path()
                    .join(format!("layout-{name}/blobs/sha256"))
                    .join(layer.digest.hex());
                let bytes = std::fs::read(&path).unwrap();
                assert_eq!(bytes.len() as u64, layer.size);
                let actual = Digest::from_hash(layer.digest.algorithm(), &Sha256::digest(&bytes));
                assert_eq!(actual, layer.digest);
            }
        }
    }
}
