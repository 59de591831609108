//! The layout's `index.json` and `oci-layout` files: their shape, reading
//! them with a size limit, and replacing `index.json` atomically.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

use kagami_core::{Digest, MediaType};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::paths::Paths;

/// The layout version we write and the major version we read.
const LAYOUT_VERSION: &str = "1.0.0";

/// An OCI content descriptor. Fields we do not use (platform, urls,
/// artifactType…) are kept as they were, so rewriting `index.json` does not
/// lose what another tool wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Descriptor {
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Descriptor {
    /// The declared type, when it is a manifest type.
    pub(crate) fn manifest_type(&self) -> Option<MediaType> {
        self.media_type.as_deref().and_then(|t| t.parse().ok())
    }

    pub(crate) fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }
}

/// `index.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct IndexFile {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl IndexFile {
    pub(crate) fn empty() -> IndexFile {
        IndexFile {
            schema_version: 2,
            media_type: Some(MediaType::OciIndex.as_str().to_owned()),
            manifests: Vec::new(),
            extra: serde_json::Map::new(),
        }
    }

    /// Reads and checks `index.json`; a file that is not an image index is
    /// [`Error::InvalidLayout`] naming what is wrong.
    pub(crate) fn read(paths: &Paths, limit: u64) -> Result<IndexFile, Error> {
        let path = paths.index();
        let bytes = read_limited(&path, limit)?;
        let index: IndexFile =
            serde_json::from_slice(&bytes).map_err(|e| Error::InvalidLayout {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if index.schema_version != 2 {
            return Err(Error::InvalidLayout {
                path,
                reason: format!("schemaVersion is {}, not 2", index.schema_version),
            });
        }
        Ok(index)
    }

    /// Replaces `index.json` so that a reader sees the old file or the new
    /// one, never a mix, and the new one survives a crash once this returns.
    pub(crate) fn write(&self, paths: &Paths) -> Result<(), Error> {
        let path = paths.index();
        let bytes = serde_json::to_vec(self).map_err(|e| Error::WriteLayout {
            path: path.clone(),
            source: io::Error::other(e),
        })?;
        write_atomic(paths.root(), &path, &bytes)
    }
}

/// Writes a file through a temporary sibling, fsyncs it, renames it over
/// `path` and fsyncs the directory.
pub(crate) fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let fail = |source| Error::WriteLayout {
        path: path.to_owned(),
        source,
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".index-")
        .tempfile_in(dir)
        .map_err(fail)?;
    tmp.write_all(bytes).map_err(fail)?;
    tmp.as_file().sync_all().map_err(fail)?;
    tmp.persist(path).map_err(|e| fail(e.error))?;
    sync_dir(dir).map_err(fail)
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Reads a small file whole, refusing one larger than `limit`.
pub(crate) fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, Error> {
    let fail = |source| Error::ReadLayout {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(fail)?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).map_err(fail)?;
    if bytes.len() as u64 > limit {
        return Err(Error::InvalidLayout {
            path: path.to_owned(),
            reason: format!("larger than the {limit}-byte limit"),
        });
    }
    Ok(bytes)
}

/// Checks the `oci-layout` file.
pub(crate) fn check_oci_layout(paths: &Paths) -> Result<(), Error> {
    #[derive(Deserialize)]
    struct OciLayout {
        #[serde(rename = "imageLayoutVersion")]
        version: String,
    }
    let path = paths.oci_layout();
    let bytes = read_limited(&path, 64 * 1024)?;
    let layout: OciLayout = serde_json::from_slice(&bytes).map_err(|e| Error::InvalidLayout {
        path: path.clone(),
        reason: format!("expected {{\"imageLayoutVersion\": \"{LAYOUT_VERSION}\"}}: {e}"),
    })?;
    if !layout.version.starts_with("1.") {
        return Err(Error::InvalidLayout {
            path,
            reason: format!(
                "imageLayoutVersion {:?} is not a 1.x version",
                layout.version
            ),
        });
    }
    Ok(())
}

/// Writes `oci-layout` and an empty `index.json` into an empty directory.
pub(crate) fn initialise(paths: &Paths) -> Result<(), Error> {
    let blobs = paths.root().join(crate::paths::BLOBS).join("sha256");
    fs::create_dir_all(&blobs).map_err(|source| Error::CreateLayout {
        root: paths.root().to_owned(),
        source,
    })?;
    let layout = format!("{{\"imageLayoutVersion\":\"{LAYOUT_VERSION}\"}}");
    write_atomic(paths.root(), &paths.oci_layout(), layout.as_bytes())?;
    IndexFile::empty().write(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_fields_it_does_not_know() {
        let json = r#"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":3,"platform":{"os":"linux","architecture":"amd64"},"annotations":{"a":"b"}}],"annotations":{"x":"y"}}"#;
        let index: IndexFile = serde_json::from_str(json).unwrap();
        let back = serde_json::to_value(&index).unwrap();
        assert_eq!(back["manifests"][0]["platform"]["os"], "linux");
        assert_eq!(back["annotations"]["x"], "y");
        assert_eq!(index.manifests[0].annotation("a"), Some("b"));
    }
}
