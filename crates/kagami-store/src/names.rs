//! How an `index.json` entry names its image: the annotations containerd
//! and skopeo read and write, and the rule that turns them into a
//! [`Reference`].

use std::collections::BTreeMap;

use kagami_core::Reference;

use crate::index_file::Descriptor;

/// containerd's annotation: the full reference, `docker.io/library/x:1`.
pub(crate) const CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The OCI annotation: by convention a tag, though tools also put a full
/// reference here.
pub(crate) const OCI_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Why an entry's name cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NameError {
    /// The entry carries a bare tag and no full name.
    BareTag(String),
    /// The name does not parse, or has no tag.
    Invalid { name: String, reason: String },
}

/// The image an entry names: `io.containerd.image.name` if present, else
/// `org.opencontainers.image.ref.name` when it is a full reference (it holds
/// a `/` or a `:`). A bare tag there says nothing about registry or
/// repository, so it is refused rather than guessed. `None` when the entry
/// carries neither annotation.
pub(crate) fn name_of(descriptor: &Descriptor) -> Result<Option<Reference>, NameError> {
    let name = match (
        descriptor.annotation(CONTAINERD_NAME),
        descriptor.annotation(OCI_REF_NAME),
    ) {
        (Some(full), _) => full,
        (None, Some(reference)) if reference.contains(['/', ':']) => reference,
        (None, Some(tag)) => return Err(NameError::BareTag(tag.to_owned())),
        (None, None) => return Ok(None),
    };
    parse_tagged(name)
        .map(Some)
        .map_err(|reason| NameError::Invalid {
            name: name.to_owned(),
            reason,
        })
}

/// Parses and normalises a name that must carry a tag (an image's name in
/// the store is always a tag; a digest alone names nothing new). The error
/// says why not.
pub(crate) fn parse_tagged(name: &str) -> Result<Reference, String> {
    let reference: Reference = name.parse().map_err(|e| format!("{e}"))?;
    key_of(&reference).ok_or_else(|| "it has a digest but no tag".into())
}

/// The annotations this store records for a name, so that containerd
/// (`ctr import`) and skopeo (`oci:DIR:TAG`) both understand the layout.
pub(crate) fn annotations_for(reference: &Reference) -> BTreeMap<String, String> {
    let mut annotations = BTreeMap::new();
    annotations.insert(CONTAINERD_NAME.to_owned(), reference.to_string());
    if let Some(tag) = reference.tag() {
        annotations.insert(OCI_REF_NAME.to_owned(), tag.to_string());
    }
    annotations
}

/// The key an image is held under: its reference without any digest.
pub(crate) fn key_of(reference: &Reference) -> Option<Reference> {
    reference.tag().map(|tag| {
        Reference::tagged(
            reference.registry().clone(),
            reference.repository().clone(),
            tag.clone(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(annotations: &[(&str, &str)]) -> Descriptor {
        Descriptor {
            media_type: None,
            digest: "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
                .parse()
                .unwrap(),
            size: 0,
            annotations: Some(
                annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            extra: Default::default(),
        }
    }

    #[test]
    fn containerd_name_wins_and_is_normalised() {
        let e = entry(&[(CONTAINERD_NAME, "nginx:1"), (OCI_REF_NAME, "1")]);
        assert_eq!(
            name_of(&e).unwrap().unwrap().to_string(),
            "docker.io/library/nginx:1"
        );
    }

    #[test]
    fn ref_name_counts_only_when_it_is_a_full_reference() {
        let full = entry(&[(OCI_REF_NAME, "quay.io/a/b:2")]);
        assert_eq!(
            name_of(&full).unwrap().unwrap().to_string(),
            "quay.io/a/b:2"
        );
        let short = entry(&[(OCI_REF_NAME, "demo:3")]);
        assert_eq!(
            name_of(&short).unwrap().unwrap().to_string(),
            "docker.io/library/demo:3"
        );
        let bare = entry(&[(OCI_REF_NAME, "latest")]);
        assert_eq!(name_of(&bare), Err(NameError::BareTag("latest".into())));
        assert_eq!(name_of(&entry(&[])), Ok(None));
    }

    #[test]
    fn names_without_a_tag_are_refused() {
        let e = entry(&[(
            CONTAINERD_NAME,
            "nginx@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        )]);
        assert!(matches!(name_of(&e), Err(NameError::Invalid { .. })));
        let e = entry(&[(CONTAINERD_NAME, "Not A Name")]);
        assert!(matches!(name_of(&e), Err(NameError::Invalid { .. })));
    }
}
