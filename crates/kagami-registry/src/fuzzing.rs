//! The registry's parsers for the fuzz targets (`fuzz/`, feature
//! `fuzzing`), each with the checks its property tests make: never a
//! panic, and what is accepted is consistent.

use crate::path::{Route, TagOrDigest};
use crate::range::{ByteRange, ContentRange, content_range};

/// Parses a `/v2/…` path (what follows `/v2/`); an accepted route names a
/// repository that the path ends with its kind and reference after.
pub fn route(rest: &str) {
    let Ok(route) = Route::parse(rest) else {
        return;
    };
    let (repository, tail) = match &route {
        Route::Ping => return assert!(rest.is_empty(), "{rest:?} → {route:?}"),
        Route::Manifest {
            repository,
            reference,
        } => {
            let reference = match reference {
                TagOrDigest::Tag(tag) => tag.to_string(),
                TagOrDigest::Digest(digest) => digest.to_string(),
            };
            (repository, format!("/manifests/{reference}"))
        }
        Route::Blob { repository, digest } => (repository, format!("/blobs/{digest}")),
        Route::TagsList { repository } => (repository, "/tags/list".to_owned()),
    };
    assert_eq!(format!("{repository}{tail}"), rest, "{route:?}");
}

/// Parses a `Range` header and resolves it against several sizes: a
/// resolved range lies inside the blob, and its `Content-Range` reads back
/// as the same range.
pub fn range(header: &str) {
    let Some(range) = ByteRange::parse(header) else {
        return;
    };
    for size in [0, 1, 2, 100, 1 << 20, u64::MAX] {
        if let Ok(resolved) = range.resolve(size) {
            assert!(resolved.start < resolved.end && resolved.end <= size);
            let printed = content_range(&resolved, size);
            assert_eq!(
                ContentRange::parse(&printed),
                Some(ContentRange::Part {
                    range: resolved,
                    size
                }),
                "{printed:?}"
            );
        }
    }
    let _ = ContentRange::parse(header);
}
