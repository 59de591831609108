//! One image for the containerd pull benchmark (`bench/containerd.sh`): N
//! layers splitting a total size evenly, each an uncompressed tar of one
//! pseudo-random file (so containerd unpacks real files), written by
//! `kagami_store::testing` as a plain `docker save` archive, which both
//! `ctr images import` (1.6 cannot read gzip) and skopeo's
//! `docker-archive:` read.

use std::path::Path;

use anyhow::{Context, bail};
use kagami_store::testing::{self, ArchiveFormat, Compression, ImageSpec};

/// What `image` writes by default: 4 layers, 256 MiB in all.
pub const LAYERS: usize = 4;
pub const SIZE_MIB: u64 = 256;
pub const REFERENCE: &str = "docker.io/library/bench:1";

/// The image to write.
#[derive(Debug, Clone)]
pub struct Options {
    pub reference: String,
    pub layers: usize,
    /// Payload of all layers together, in MiB (tar headers come on top).
    pub size_mib: u64,
}

/// Writes the archive at `out` and returns the one `key=value` line the
/// script reads: the image's name, manifest digest, layer count and the
/// bytes of its config and layers (what a pull downloads, bar the manifest).
pub fn write(out: &Path, options: &Options) -> anyhow::Result<String> {
    if options.layers == 0 || options.size_mib == 0 {
        bail!("an image needs at least one layer and one MiB");
    }
    let total = options.size_mib << 20;
    let layers = u64::try_from(options.layers).context("too many layers")?;
    // The remainder goes to the first layer so that the total is exact.
    let mut sizes = vec![total / layers; options.layers];
    sizes[0] += total % layers;
    let spec = ImageSpec::new(&options.reference, &sizes).seed(7);

    // The writer picks a fresh name in a directory; the caller names a file.
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let (archive, built) = testing::write_archive(
        dir,
        std::slice::from_ref(&spec),
        ArchiveFormat::Docker,
        Compression::None,
    )
    .context("cannot write the docker archive")?;
    std::fs::rename(&archive, out)
        .with_context(|| format!("cannot rename {} to {}", archive.display(), out.display()))?;
    let [built] = built.as_slice() else {
        bail!("the archive holds {} images, not 1", built.len());
    };
    let bytes: u64 = built.blobs.values().sum();
    Ok(format!(
        "reference={} digest={} layers={} bytes={bytes}",
        built.reference,
        built.digest,
        built.blobs.len() - 1
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_one_archive_with_the_layers_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("sub/bench.tar");
        let options = Options {
            reference: REFERENCE.to_owned(),
            layers: 3,
            size_mib: 1,
        };

        let line = write(&out, &options).unwrap();

        assert!(out.is_file());
        assert!(line.contains("layers=3"), "{line}");
        let bytes: u64 = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("bytes="))
            .unwrap()
            .parse()
            .unwrap();
        // Three tars of a third of a MiB each, plus headers and a config.
        assert!(bytes > 1 << 20 && bytes < (1 << 20) + 16_384, "{bytes}");
        // Only the archive is left in the directory.
        assert_eq!(std::fs::read_dir(out.parent().unwrap()).unwrap().count(), 1);
    }
}
