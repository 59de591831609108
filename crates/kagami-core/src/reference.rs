//! Image references, parsed and normalised the way docker and containerd
//! do: `nginx` is `docker.io/library/nginx:latest`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::name::{MAX_REPOSITORY_LEN, Registry, Repository, Tag};
use crate::{Digest, ParseError, excerpt};

/// A fully qualified image reference: registry, repository, and a tag, a
/// digest, or both (`registry/repo:tag@sha256:…`).
///
/// Parsing fills in what docker fills in: Docker Hub for a name with no
/// registry, `library/` for a one-part Docker Hub name, and `latest` when
/// neither tag nor digest is given. [`Display`](fmt::Display) prints the
/// full form, which parses back to the same value.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Reference {
    registry: Registry,
    repository: Repository,
    tag: Option<Tag>,
    digest: Option<Digest>,
}

impl Reference {
    /// A reference by tag.
    pub fn tagged(registry: Registry, repository: Repository, tag: Tag) -> Reference {
        Reference::normalised(registry, repository, Some(tag), None)
    }

    /// A reference by digest.
    pub fn digested(registry: Registry, repository: Repository, digest: Digest) -> Reference {
        Reference::normalised(registry, repository, None, Some(digest))
    }

    fn normalised(
        registry: Registry,
        repository: Repository,
        tag: Option<Tag>,
        digest: Option<Digest>,
    ) -> Reference {
        let repository = if registry.is_docker_hub() {
            repository.for_docker_hub()
        } else {
            repository
        };
        Reference {
            registry,
            repository,
            tag,
            digest,
        }
    }

    /// The registry host.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The repository within the registry.
    pub fn repository(&self) -> &Repository {
        &self.repository
    }

    /// The tag, if the reference has one.
    pub fn tag(&self) -> Option<&Tag> {
        self.tag.as_ref()
    }

    /// The digest, if the reference has one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same image name with another digest and no tag.
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: Some(digest),
        }
    }
}

impl FromStr for Reference {
    type Err = ParseError;

    fn from_str(input: &str) -> Result<Reference, ParseError> {
        let err = |reason: String| ParseError::Reference {
            input: excerpt(input),
            reason,
        };
        if input.is_empty() {
            return Err(err("empty".into()));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((rest, digest)) => (
                rest,
                Some(digest.parse::<Digest>().map_err(|e| err(e.to_string()))?),
            ),
            None => (input, None),
        };
        // A tag's ':' is the last one after the last '/'; an earlier ':' is a port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let tag = &rest[last_slash + i + 1..];
                (
                    &rest[..last_slash + i],
                    Some(tag.parse::<Tag>().map_err(|e| err(e.to_string()))?),
                )
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(err("missing repository name".into()));
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, path)) if names_registry(first) => (
                first.parse::<Registry>().map_err(|e| err(e.to_string()))?,
                path,
            ),
            _ => (Registry::docker_hub(), name),
        };
        if digest.is_none()
            && tag.is_none()
            && path.len() == 64
            && path.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(err(
                "a 64-digit hex string is an image ID, not a reference".into()
            ));
        }
        let repository = path.parse::<Repository>().map_err(|e| err(e.to_string()))?;
        let tag = match (tag, &digest) {
            (None, None) => Some(Tag::latest()),
            (tag, _) => tag,
        };
        let reference = Reference::normalised(registry, repository, tag, digest);
        if reference.name().len() > MAX_REPOSITORY_LEN {
            return Err(err(
                "registry and repository longer than 255 characters".into()
            ));
        }
        Ok(reference)
    }
}

/// Docker's rule: the first part names a registry if it has a '.' or a ':',
/// is `localhost`, or has an uppercase letter (repository names cannot).
fn names_registry(first: &str) -> bool {
    first.contains(['.', ':'])
        || first == "localhost"
        || first.bytes().any(|b| b.is_ascii_uppercase())
}

impl TryFrom<String> for Reference {
    type Error = ParseError;
    fn try_from(value: String) -> Result<Reference, ParseError> {
        value.parse()
    }
}

impl From<Reference> for String {
    fn from(reference: Reference) -> String {
        reference.to_string()
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn norm(s: &str) -> String {
        s.parse::<Reference>().unwrap().to_string()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(norm("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(norm("nginx:1.25"), "docker.io/library/nginx:1.25");
        assert_eq!(norm("library/nginx"), "docker.io/library/nginx:latest");
        assert_eq!(norm("bitnami/redis:7"), "docker.io/bitnami/redis:7");
        assert_eq!(norm("docker.io/nginx"), "docker.io/library/nginx:latest");
        assert_eq!(
            norm("index.docker.io/nginx"),
            "docker.io/library/nginx:latest"
        );
        assert_eq!(norm("quay.io/coreos/etcd:v3"), "quay.io/coreos/etcd:v3");
        assert_eq!(norm("localhost/app"), "localhost/app:latest");
        assert_eq!(norm("localhost:5000/a/b:1"), "localhost:5000/a/b:1");
        assert_eq!(
            norm("registry.k8s.io/pause:3.9"),
            "registry.k8s.io/pause:3.9"
        );
        assert_eq!(norm("[::1]:5000/app:x"), "[::1]:5000/app:x");
    }

    #[test]
    fn digests_and_tags_together() {
        let r: Reference = format!("localhost:5000/a/b@{D}").parse().unwrap();
        assert_eq!(r.registry().as_str(), "localhost:5000");
        assert_eq!(r.repository().as_str(), "a/b");
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().unwrap().as_str(), D);

        let both: Reference = format!("nginx:1.2@{D}").parse().unwrap();
        assert_eq!(both.tag().unwrap().as_str(), "1.2");
        assert_eq!(both.to_string(), format!("docker.io/library/nginx:1.2@{D}"));
    }

    #[test]
    fn refuses_bad_references() {
        for bad in [
            "",
            ":tag",
            "UPPER",
            "nginx:",
            "nginx@sha256:abc",
            "a//b",
            "nginx:bad/tag",
            "host:port/",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ] {
            assert!(bad.parse::<Reference>().is_err(), "{bad:?} accepted");
        }
    }
}
