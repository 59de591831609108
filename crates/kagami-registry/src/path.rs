//! The `/v2/…` path, parsed once into a [`Route`].
//!
//! Repository names contain `/` and may themselves have components named
//! `manifests`, `blobs` or `tags`, so the kind of request is read from the
//! last two segments only: `<name>/manifests/<reference>`,
//! `<name>/blobs/<digest>` and `<name>/tags/list`; everything before them is
//! the name. The path is taken as sent (no percent-decoding): none of the
//! grammars admits `%`, so an encoded path fails validation instead of
//! being read two ways.
//!
//! A manifest reference containing `:` is judged by the digest grammar
//! (`DIGEST_INVALID` when it fails), anything else by the tag grammar
//! (`MANIFEST_INVALID`). The name is checked before the reference.

use kagami_core::{Digest, ParseError, Repository, Tag};

/// What a `/v2/…` request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// `/v2/`: the API version check.
    Ping,
    /// `/v2/<name>/manifests/<reference>`.
    Manifest {
        repository: Repository,
        reference: TagOrDigest,
    },
    /// `/v2/<name>/blobs/<digest>`.
    Blob {
        repository: Repository,
        digest: Digest,
    },
    /// `/v2/<name>/tags/list`.
    TagsList { repository: Repository },
}

/// A manifest reference: a tag, or the digest of the manifest itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TagOrDigest {
    Tag(Tag),
    Digest(Digest),
}

/// Why a path is not a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathError {
    /// Not one of the shapes this registry serves.
    Unknown,
    /// The name before `/manifests/`, `/blobs/` or `/tags/` is not valid.
    Name(ParseError),
    /// A blob digest, or a manifest reference with a `:`, is not a digest.
    Digest(ParseError),
    /// A manifest reference without `:` is not a tag.
    Tag(ParseError),
}

impl Route {
    /// Parses what follows `/v2/` (`""` for `/v2` and `/v2/` themselves).
    pub(crate) fn parse(rest: &str) -> Result<Route, PathError> {
        if rest.is_empty() {
            return Ok(Route::Ping);
        }
        let mut segments = rest.rsplitn(3, '/');
        let (Some(last), Some(kind), Some(name)) =
            (segments.next(), segments.next(), segments.next())
        else {
            return Err(PathError::Unknown);
        };
        if last.is_empty()
            || !matches!(
                (kind, last),
                ("manifests", _) | ("blobs", _) | ("tags", "list")
            )
        {
            return Err(PathError::Unknown);
        }
        let repository = name.parse::<Repository>().map_err(PathError::Name)?;
        match kind {
            "manifests" => {
                let reference = if last.contains(':') {
                    TagOrDigest::Digest(last.parse().map_err(PathError::Digest)?)
                } else {
                    TagOrDigest::Tag(last.parse().map_err(PathError::Tag)?)
                };
                Ok(Route::Manifest {
                    repository,
                    reference,
                })
            }
            "blobs" => Ok(Route::Blob {
                repository,
                digest: last.parse().map_err(PathError::Digest)?,
            }),
            _ => Ok(Route::TagsList { repository }),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn repo(name: &str) -> Repository {
        name.parse().unwrap()
    }

    /// What a path parses to, in a form a table can spell.
    #[derive(Debug, PartialEq)]
    enum Want<'a> {
        Ping,
        Tag(&'a str, &'a str),
        ManifestDigest(&'a str),
        Blob(&'a str),
        Tags(&'a str),
        Unknown,
        BadName,
        BadDigest,
        BadTag,
    }

    fn check(rest: &str, want: Want<'_>) {
        let got = Route::parse(rest);
        let ok = match (&got, &want) {
            (Ok(Route::Ping), Want::Ping) => true,
            (
                Ok(Route::Manifest {
                    repository,
                    reference: TagOrDigest::Tag(tag),
                }),
                Want::Tag(name, t),
            ) => repository.as_str() == *name && tag.as_str() == *t,
            (
                Ok(Route::Manifest {
                    repository,
                    reference: TagOrDigest::Digest(digest),
                }),
                Want::ManifestDigest(name),
            ) => repository.as_str() == *name && digest.as_str() == D,
            (Ok(Route::Blob { repository, digest }), Want::Blob(name)) => {
                repository.as_str() == *name && digest.as_str() == D
            }
            (Ok(Route::TagsList { repository }), Want::Tags(name)) => repository.as_str() == *name,
            (Err(PathError::Unknown), Want::Unknown)
            | (Err(PathError::Name(_)), Want::BadName)
            | (Err(PathError::Digest(_)), Want::BadDigest)
            | (Err(PathError::Tag(_)), Want::BadTag) => true,
            _ => false,
        };
        assert!(ok, "{rest:?}: got {got:?}, want {want:?}");
    }

    #[test]
    fn table() {
        let cases: Vec<(String, Want<'_>)> = vec![
            ("".into(), Want::Ping),
            ("nginx/manifests/1.25".into(), Want::Tag("nginx", "1.25")),
            (
                "library/nginx/manifests/latest".into(),
                Want::Tag("library/nginx", "latest"),
            ),
            (
                "a/b/c/d/e/f/g/h/manifests/v1".into(),
                Want::Tag("a/b/c/d/e/f/g/h", "v1"),
            ),
            (
                format!("nginx/manifests/{D}"),
                Want::ManifestDigest("nginx"),
            ),
            (format!("a/b/blobs/{D}"), Want::Blob("a/b")),
            // Names may have components that look like route keywords.
            (
                "manifests/manifests/latest".into(),
                Want::Tag("manifests", "latest"),
            ),
            (
                "a/manifests/b/manifests/x".into(),
                Want::Tag("a/manifests/b", "x"),
            ),
            (format!("blobs/blobs/{D}"), Want::Blob("blobs")),
            (
                format!("a/blobs/manifests/{D}"),
                Want::ManifestDigest("a/blobs"),
            ),
            ("tags/tags/list".into(), Want::Tags("tags")),
            ("a/b/tags/list".into(), Want::Tags("a/b")),
            // Shapes this registry does not serve.
            ("nginx".into(), Want::Unknown),
            ("manifests/latest".into(), Want::Unknown),
            ("nginx/manifests/".into(), Want::Unknown),
            ("nginx/blobs/".into(), Want::Unknown),
            ("nginx/blobs/uploads/".into(), Want::Unknown),
            ("nginx/blobs/uploads/1234-abcd".into(), Want::Unknown),
            ("nginx/tags/other".into(), Want::Unknown),
            (format!("nginx/referrers/{D}"), Want::Unknown),
            ("_catalog".into(), Want::Unknown),
            ("/".into(), Want::Unknown),
            // Invalid names, checked before the reference.
            ("Nginx/manifests/latest".into(), Want::BadName),
            ("a//b/manifests/latest".into(), Want::BadName),
            ("/manifests/latest".into(), Want::BadName),
            ("a%2Fb/manifests/latest".into(), Want::BadName),
            ("UPPER/manifests/sha256:bad".into(), Want::BadName),
            ("x/tags/list/".into(), Want::Unknown),
            // Invalid references.
            (
                "nginx/manifests/sha256:totallywrong".into(),
                Want::BadDigest,
            ),
            ("nginx/manifests/foo:bar".into(), Want::BadDigest),
            ("nginx/blobs/sha256:totallywrong".into(), Want::BadDigest),
            ("nginx/blobs/latest".into(), Want::BadDigest),
            (format!("nginx/blobs/{}", D.to_uppercase()), Want::BadDigest),
            ("nginx/manifests/.hidden".into(), Want::BadTag),
            ("nginx/manifests/-x".into(), Want::BadTag),
            (format!("nginx/manifests/{}", "a".repeat(129)), Want::BadTag),
            ("nginx/manifests/sha256%3Aabc".into(), Want::BadTag),
        ];
        for (rest, want) in cases {
            check(&rest, want);
        }
    }

    #[test]
    fn keeps_the_name_whole() {
        let route = Route::parse("a/b.c/d_e/manifests/v1").unwrap();
        assert_eq!(
            route,
            Route::Manifest {
                repository: repo("a/b.c/d_e"),
                reference: TagOrDigest::Tag("v1".parse().unwrap()),
            }
        );
    }

    proptest! {
        #[test]
        fn never_panics(rest in "[a-zA-Z0-9._:/%@-]{0,120}") {
            let _ = Route::parse(&rest);
        }

        #[test]
        fn never_panics_on_any_text(rest in any::<String>()) {
            let _ = Route::parse(&rest);
        }

        #[test]
        fn valid_names_route_by_their_last_segments(
            name in "[a-z0-9]{1,5}(/(manifests|blobs|tags|[a-z0-9]{1,5})){0,4}",
            tag in "[a-zA-Z0-9_][a-zA-Z0-9._-]{0,20}",
        ) {
            let route = Route::parse(&format!("{name}/manifests/{tag}")).unwrap();
            prop_assert_eq!(route, Route::Manifest {
                repository: repo(&name),
                reference: TagOrDigest::Tag(tag.parse().unwrap()),
            });
            let route = Route::parse(&format!("{name}/tags/list")).unwrap();
            prop_assert_eq!(route, Route::TagsList { repository: repo(&name) });
        }
    }
}
