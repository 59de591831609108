//! What a manifest or index points at: the digests of an index's
//! manifests, or of a manifest's config and layers. Only the links are
//! read; a document that is not JSON or names no valid digest has none.

use serde::Deserialize;

use crate::{Digest, MediaType};

#[derive(Deserialize)]
struct Links {
    #[serde(default)]
    manifests: Vec<Link>,
    config: Option<Link>,
    #[serde(default)]
    layers: Vec<Link>,
}

#[derive(Deserialize)]
struct Link {
    digest: String,
}

/// The digests `bytes` (a manifest or index of type `media_type`) links
/// to: for an index its manifests, for a manifest its config then layers.
pub fn children(media_type: MediaType, bytes: &[u8]) -> Vec<Digest> {
    let Ok(links) = serde_json::from_slice::<Links>(bytes) else {
        return Vec::new();
    };
    let links: Vec<Link> = if media_type.is_index() {
        links.manifests
    } else {
        links.config.into_iter().chain(links.layers).collect()
    };
    links
        .into_iter()
        .filter_map(|link| link.digest.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_links_its_manifests_and_a_manifest_its_config_and_layers() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let index = format!(r#"{{"manifests":[{{"digest":"{a}"}},{{"digest":"bad"}}]}}"#);
        assert_eq!(
            children(MediaType::OciIndex, index.as_bytes()),
            vec![a.parse::<Digest>().unwrap()]
        );
        let manifest = format!(r#"{{"config":{{"digest":"{a}"}},"layers":[{{"digest":"{b}"}}]}}"#);
        let got = children(MediaType::OciManifest, manifest.as_bytes());
        assert_eq!(got.len(), 2);
        assert!(children(MediaType::OciManifest, b"not json").is_empty());
    }
}
