//! The OCI manifest this store writes for a docker-archive image, built
//! the same way every time so that one archive always gives one digest.

use kagami_core::{Digest, MediaType};
use serde::Serialize;

/// The config media type of the manifests we write.
pub(crate) const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// Layer media types, by the compression found in the layer's first bytes.
pub(crate) const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub(crate) const LAYER_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub(crate) const LAYER_TAR_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// One descriptor of a manifest we write. Field order is the JSON order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Blob {
    #[serde(rename = "mediaType")]
    pub media_type: &'static str,
    pub digest: Digest,
    pub size: u64,
}

#[derive(Serialize)]
struct ImageManifest<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    config: &'a Blob,
    layers: &'a [Blob],
}

/// An OCI image manifest as compact JSON with fixed field order.
pub(crate) fn image_manifest(config: &Blob, layers: &[Blob]) -> Vec<u8> {
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: MediaType::OciManifest.as_str(),
        config,
        layers,
    };
    // A struct of strings and numbers always serialises.
    serde_json::to_vec(&manifest).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_json_is_stable() {
        let d: Digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            .parse()
            .unwrap();
        let blob = |media_type| Blob {
            media_type,
            digest: d.clone(),
            size: 0,
        };
        let json = image_manifest(&blob(CONFIG_TYPE), &[blob(LAYER_TAR)]);
        let text = String::from_utf8(json).unwrap();
        assert_eq!(
            text,
            format!(
                "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\
                 \"config\":{{\"mediaType\":\"{CONFIG_TYPE}\",\"digest\":\"{d}\",\"size\":0}},\
                 \"layers\":[{{\"mediaType\":\"{LAYER_TAR}\",\"digest\":\"{d}\",\"size\":0}}]}}"
            )
        );
        assert_eq!(
            MediaType::detect(text.as_bytes()),
            Some(MediaType::OciManifest)
        );
    }
}
