//! What a manifest or index points at: an index's manifests, a manifest's
//! config and layers, as the descriptors the document gives. Only these
//! links are read; everything else in the document is left alone.

use serde::Deserialize;

use crate::{Digest, MediaType};

/// The links of a manifest or index.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Links {
    /// An index's manifests.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    /// A manifest's config.
    pub config: Option<Descriptor>,
    /// A manifest's layers, in order.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// One link: what it points at, as the document describes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Descriptor {
    /// The declared media type (empty when the document gives none).
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    /// The content's digest.
    pub digest: Digest,
    /// The content's size in bytes (0 when the document gives none).
    #[serde(default)]
    pub size: u64,
}

impl Links {
    /// The links of a manifest or index (JSON); an error when the document
    /// is not JSON or a link's digest is not a digest.
    pub fn parse(bytes: &[u8]) -> Result<Links, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// What a document of type `media_type` points at: for an index its
    /// manifests, for a manifest its config then layers.
    pub fn children(&self, media_type: MediaType) -> Vec<&Descriptor> {
        if media_type.is_index() {
            self.manifests.iter().collect()
        } else {
            self.config.iter().chain(&self.layers).collect()
        }
    }
}

/// The digests `bytes` (a manifest or index of type `media_type`) links
/// to; none when it cannot be read.
pub fn children(media_type: MediaType, bytes: &[u8]) -> Vec<Digest> {
    Links::parse(bytes)
        .map(|links| {
            links
                .children(media_type)
                .into_iter()
                .map(|d| d.digest.clone())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_links_its_manifests_and_a_manifest_its_config_and_layers() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let index = format!(
            r#"{{"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{a}","size":7}}]}}"#
        );
        let links = Links::parse(index.as_bytes()).unwrap();
        assert_eq!(links.manifests[0].size, 7);
        assert_eq!(
            children(MediaType::OciIndex, index.as_bytes()),
            vec![a.parse::<Digest>().unwrap()]
        );
        let manifest = format!(r#"{{"config":{{"digest":"{a}"}},"layers":[{{"digest":"{b}"}}]}}"#);
        let got = children(MediaType::OciManifest, manifest.as_bytes());
        assert_eq!(got, vec![a.parse().unwrap(), b.parse().unwrap()]);
        assert!(children(MediaType::OciManifest, b"not json").is_empty());
        assert!(Links::parse(br#"{"layers":[{"digest":"bad"}]}"#).is_err());
    }
}
