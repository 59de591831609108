//! Manifest media types, and reading the type of a stored manifest from its
//! JSON when nothing recorded it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The manifest media types a registry serves from `/manifests/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum MediaType {
    /// `application/vnd.oci.image.manifest.v1+json`
    OciManifest,
    /// `application/vnd.oci.image.index.v1+json`
    OciIndex,
    /// `application/vnd.docker.distribution.manifest.v2+json`
    DockerManifest,
    /// `application/vnd.docker.distribution.manifest.list.v2+json`
    DockerManifestList,
}

/// A media type string that is not one of the manifest types.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a manifest media type: {0:?}")]
pub struct UnknownMediaType(String);

impl MediaType {
    /// Every manifest media type, in the order a client's `Accept` lists them.
    pub const ALL: [MediaType; 4] = [
        MediaType::OciIndex,
        MediaType::OciManifest,
        MediaType::DockerManifestList,
        MediaType::DockerManifest,
    ];

    /// The media type string.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaType::OciManifest => "application/vnd.oci.image.manifest.v1+json",
            MediaType::OciIndex => "application/vnd.oci.image.index.v1+json",
            MediaType::DockerManifest => "application/vnd.docker.distribution.manifest.v2+json",
            MediaType::DockerManifestList => {
                "application/vnd.docker.distribution.manifest.list.v2+json"
            }
        }
    }

    /// Whether the manifest lists other manifests (one per platform).
    pub fn is_index(self) -> bool {
        matches!(self, MediaType::OciIndex | MediaType::DockerManifestList)
    }

    /// Reads a manifest's type from its JSON: the `mediaType` field when it
    /// names a manifest type, otherwise the shape (`manifests` → index,
    /// `config` and `layers` → image manifest). `None` when the bytes are not
    /// a JSON object that looks like either, or when `mediaType` names
    /// something else (a config, a layer, docker schema 1).
    pub fn detect(json: &[u8]) -> Option<MediaType> {
        #[derive(Deserialize)]
        struct Shape {
            #[serde(rename = "mediaType")]
            media_type: Option<serde_json::Value>,
            manifests: Option<Vec<serde_json::Value>>,
            config: Option<serde_json::Map<String, serde_json::Value>>,
            layers: Option<Vec<serde_json::Value>>,
        }
        let shape: Shape = serde_json::from_slice(json).ok()?;
        match shape.media_type {
            Some(serde_json::Value::String(declared)) => return declared.parse().ok(),
            Some(_) => return None,
            None => {}
        }
        match (shape.manifests, shape.config, shape.layers) {
            (Some(_), None, None) => Some(MediaType::OciIndex),
            (None, Some(_), Some(_)) => Some(MediaType::OciManifest),
            _ => None,
        }
    }
}

impl FromStr for MediaType {
    type Err = UnknownMediaType;

    fn from_str(input: &str) -> Result<MediaType, UnknownMediaType> {
        // Parameters such as `; charset=utf-8` do not change the type.
        let bare = input.split(';').next().unwrap_or_default().trim();
        MediaType::ALL
            .into_iter()
            .find(|t| t.as_str() == bare)
            .ok_or_else(|| UnknownMediaType(crate::excerpt(input)))
    }
}

impl TryFrom<String> for MediaType {
    type Error = UnknownMediaType;
    fn try_from(value: String) -> Result<MediaType, UnknownMediaType> {
        value.parse()
    }
}

impl From<MediaType> for &'static str {
    fn from(value: MediaType) -> &'static str {
        value.as_str()
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_known_type() {
        for t in MediaType::ALL {
            assert_eq!(t.as_str().parse::<MediaType>().unwrap(), t);
        }
        assert_eq!(
            "application/vnd.oci.image.index.v1+json; charset=utf-8"
                .parse::<MediaType>()
                .unwrap(),
            MediaType::OciIndex
        );
        assert!("application/octet-stream".parse::<MediaType>().is_err());
    }

    #[test]
    fn detects_declared_type() {
        let json = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}"#;
        assert_eq!(MediaType::detect(json), Some(MediaType::DockerManifestList));
    }

    #[test]
    fn detects_type_from_shape() {
        let index = br#"{"schemaVersion":2,"manifests":[{"digest":"x"}]}"#;
        assert_eq!(MediaType::detect(index), Some(MediaType::OciIndex));
        let manifest = br#"{"schemaVersion":2,"config":{"size":1},"layers":[]}"#;
        assert_eq!(MediaType::detect(manifest), Some(MediaType::OciManifest));
    }

    #[test]
    fn refuses_non_manifests() {
        for json in [
            &br#"{"architecture":"amd64","rootfs":{}}"#[..],
            br#"{"mediaType":"application/vnd.oci.image.config.v1+json"}"#,
            br#"{"schemaVersion":1,"fsLayers":[]}"#,
            br#"{"mediaType":7,"manifests":[]}"#,
            b"[1,2]",
            b"\x00\xff",
            b"",
        ] {
            assert_eq!(
                MediaType::detect(json),
                None,
                "{:?}",
                String::from_utf8_lossy(json)
            );
        }
    }
}
