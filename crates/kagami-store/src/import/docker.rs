//! Reading a `docker save` archive's `manifest.json`, and writing each of
//! its images an OCI image manifest (docker archives carry none).

use std::path::Path;

use kagami_core::{Digest, MediaType};
use serde::Deserialize;

use crate::Error;
use crate::import::Named;
use crate::import::sniff::Magic;
use crate::import::stage::Staged;
use crate::index_file::Descriptor;
use crate::names::{annotations_for, parse_tagged};
use crate::oci_json::{self, Blob};

/// The file listing a docker archive's images.
pub(crate) const MANIFEST_JSON: &str = "manifest.json";

/// One entry of `manifest.json`.
#[derive(Deserialize)]
pub(crate) struct Entry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

impl Entry {
    /// The archive paths of its config and layers, as `manifest.json`
    /// writes them (links not followed).
    pub(crate) fn files(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.config.as_str()).chain(self.layers.iter().map(String::as_str))
    }
}

/// The entries of `manifest.json` that carry a tag; untagged images are
/// not imported.
pub(crate) fn tagged_entries(archive: &Path, manifest_json: &[u8]) -> Result<Vec<Entry>, Error> {
    let entries: Vec<Entry> =
        serde_json::from_slice(manifest_json).map_err(|source| Error::ParseEntry {
            archive: archive.to_owned(),
            entry: MANIFEST_JSON.into(),
            source,
        })?;
    Ok(entries
        .into_iter()
        .filter(|entry| {
            let tagged = entry.repo_tags.as_ref().is_some_and(|t| !t.is_empty());
            if !tagged {
                tracing::debug!(config = %entry.config, "skipping untagged docker image");
            }
            tagged
        })
        .collect())
}

/// The named images of a docker archive's tagged entries, each given a
/// manifest staged next to its blobs.
pub(crate) fn named_images(
    archive: &Path,
    staged: &mut Staged,
    entries: Vec<Entry>,
) -> Result<Vec<Named>, Error> {
    let mut named = Vec::new();
    for entry in entries {
        let tags = entry.repo_tags.unwrap_or_default();
        let config = blob_at(archive, staged, &entry.config, |_| oci_json::CONFIG_TYPE)?;
        check_config_name(archive, &entry.config, &config.digest)?;
        let layers = entry
            .layers
            .iter()
            .map(|path| blob_at(archive, staged, path, layer_type))
            .collect::<Result<Vec<_>, Error>>()?;
        let manifest = oci_json::image_manifest(&config, &layers);
        let digest = staged.stage_bytes(&manifest)?;
        for tag in tags {
            let reference = parse_tagged(&tag).map_err(|reason| Error::InvalidName {
                archive: archive.to_owned(),
                name: tag.clone(),
                reason,
            })?;
            let descriptor = Descriptor {
                media_type: Some(MediaType::OciManifest.as_str().to_owned()),
                digest: digest.clone(),
                size: manifest.len() as u64,
                annotations: Some(annotations_for(&reference)),
                extra: Default::default(),
            };
            named.push(Named {
                reference,
                descriptor,
            });
        }
    }
    Ok(named)
}

/// The media type docker's layer files get, by their first bytes.
pub(crate) fn layer_type(head: &[u8]) -> &'static str {
    match Magic::of(head) {
        Magic::Gzip => oci_json::LAYER_TAR_GZIP,
        Magic::Zstd => oci_json::LAYER_TAR_ZSTD,
        Magic::Plain => oci_json::LAYER_TAR,
    }
}

fn blob_at(
    archive: &Path,
    staged: &Staged,
    path: &str,
    media_type: impl FnOnce(&[u8]) -> &'static str,
) -> Result<Blob, Error> {
    let digest = staged.digest_at(MANIFEST_JSON, path)?;
    let blob = staged.blob(&digest).ok_or_else(|| Error::MissingBlob {
        archive: archive.to_owned(),
        digest: digest.clone(),
    })?;
    Ok(Blob {
        media_type: media_type(&blob.head),
        size: blob.size,
        digest,
    })
}

/// docker names a config `<hex>.json` after its digest: check it says true.
fn check_config_name(archive: &Path, path: &str, actual: &Digest) -> Result<(), Error> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let Some(hex) = name.strip_suffix(".json") else {
        return Ok(());
    };
    match format!("sha256:{hex}").parse::<Digest>() {
        Ok(expected) if &expected != actual => Err(Error::DigestMismatch {
            archive: archive.to_owned(),
            expected,
            actual: actual.clone(),
        }),
        _ => Ok(()),
    }
}
