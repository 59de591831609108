//! Routing keys: what a node advertises and what a lookup asks for.

use std::fmt;
use std::str::FromStr;

use crate::{Digest, ParseError, Reference, Registry, Repository, Tag, excerpt};

/// A key in the routing table: a content digest, or a tag in its full
/// `registry/repository:tag` form (so `docker.io/library/nginx:1.25`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// Content by digest: an index, a manifest, a config or a layer.
    Digest(Digest),
    /// A tag, resolved by a provider to the manifest digest it holds.
    Tag {
        /// The registry the tag belongs to.
        registry: Registry,
        /// The repository within it.
        repository: Repository,
        /// The tag.
        tag: Tag,
    },
}

impl Key {
    /// The tag key of a reference, if it has a tag.
    pub fn for_tag(reference: &Reference) -> Option<Key> {
        Some(Key::Tag {
            registry: reference.registry().clone(),
            repository: reference.repository().clone(),
            tag: reference.tag()?.clone(),
        })
    }
}

impl From<Digest> for Key {
    fn from(digest: Digest) -> Key {
        Key::Digest(digest)
    }
}

impl FromStr for Key {
    type Err = ParseError;

    /// Accepts only the canonical text that [`Display`](fmt::Display)
    /// prints, so that every node turns a key into the same bytes.
    fn from_str(input: &str) -> Result<Key, ParseError> {
        let err = |reason: &str| ParseError::Key {
            input: excerpt(input),
            reason: reason.to_owned(),
        };
        // `sha512:3/a/b` is a reference on a registry named `sha512:3`, so
        // a failed digest parse falls through to the tag form.
        if let Ok(digest) = input.parse::<Digest>() {
            return Ok(Key::Digest(digest));
        }
        let reference = input
            .parse::<Reference>()
            .map_err(|e| err(&e.to_string()))?;
        if reference.digest().is_some() {
            return Err(err("a tag key carries no digest"));
        }
        let key = Key::for_tag(&reference).ok_or_else(|| err("missing tag"))?;
        if key.to_string() != input {
            return Err(err("not in canonical registry/repository:tag form"));
        }
        Ok(key)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Digest(digest) => write!(f, "{digest}"),
            Key::Tag {
                registry,
                repository,
                tag,
            } => write!(f, "{registry}/{repository}:{tag}"),
        }
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_keys_are_full_references() {
        let r: Reference = "nginx:1.25".parse().unwrap();
        let key = Key::for_tag(&r).unwrap();
        assert_eq!(key.to_string(), "docker.io/library/nginx:1.25");
        assert_eq!(key.to_string().parse::<Key>().unwrap(), key);
    }

    #[test]
    fn digest_keys() {
        let text = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(matches!(text.parse::<Key>().unwrap(), Key::Digest(_)));
        assert!("sha256:short".parse::<Key>().is_err());
    }

    #[test]
    fn tag_key_on_a_registry_named_like_an_algorithm() {
        let reference: Reference = "sha512:3/4/4".parse().unwrap();
        let key = Key::for_tag(&reference).unwrap();
        assert_eq!(key.to_string(), "sha512:3/4/4:latest");
        assert_eq!(key.to_string().parse::<Key>().unwrap(), key);
    }

    #[test]
    fn only_canonical_text_is_a_key() {
        for bad in [
            "nginx:1",
            "docker.io/nginx:1",
            "docker.io/library/nginx",
            "",
        ] {
            assert!(bad.parse::<Key>().is_err(), "{bad:?} accepted");
        }
    }
}
