//! Checking what peers send against the digest it must have: a running
//! hash for streamed blobs, and the whole-bytes check of a manifest.

use kagami_core::Digest;

use super::fetch::AttemptError;
use crate::path::TagOrDigest;

pub(super) use kagami_core::Hasher;

/// The digest of `bytes` by the algorithm of `like`.
pub(super) fn digest_of(like: &Digest, bytes: &[u8]) -> Digest {
    Hasher::digest(like.algorithm(), bytes)
}

/// Whether `bytes` have the digest `expected`.
pub(super) fn check(expected: &Digest, bytes: &[u8]) -> Result<(), AttemptError> {
    let actual = digest_of(expected, bytes);
    if actual == *expected {
        Ok(())
    } else {
        Err(AttemptError::Corrupt {
            expected: expected.clone(),
            actual,
        })
    }
}

/// The digest of a manifest a peer sent for `requested`. By digest, the
/// bytes must hash to it. By tag, the peer names the digest in
/// `Docker-Content-Digest` (`announced`), and the bytes must hash to that:
/// what the tag points at is the peer's word, but the digest served with
/// the bytes is always theirs.
pub(super) fn manifest(
    requested: &TagOrDigest,
    announced: Option<&str>,
    bytes: &[u8],
) -> Result<Digest, AttemptError> {
    let expected = match requested {
        TagOrDigest::Digest(digest) => digest.clone(),
        TagOrDigest::Tag(_) => announced
            .ok_or(AttemptError::Header {
                what: "Docker-Content-Digest missing",
            })?
            .parse::<Digest>()
            .map_err(|_| AttemptError::Header {
                what: "Docker-Content-Digest invalid",
            })?,
    };
    check(&expected, bytes)?;
    Ok(expected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kagami_core::Algorithm;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn hashes_match_the_known_empty_digests() {
        let empty: Digest = EMPTY.parse().unwrap();
        assert_eq!(digest_of(&empty, b""), empty);
        let sha512 = Hasher::new(Algorithm::Sha512).finish();
        assert!(sha512.as_str().starts_with("sha512:cf83e135"));
    }

    #[test]
    fn a_tag_needs_an_announced_digest_that_the_bytes_match() {
        let tag = TagOrDigest::Tag("1".parse().unwrap());
        assert_eq!(manifest(&tag, Some(EMPTY), b"").unwrap().as_str(), EMPTY);
        assert!(matches!(
            manifest(&tag, Some(EMPTY), b"x"),
            Err(AttemptError::Corrupt { .. })
        ));
        assert!(matches!(
            manifest(&tag, None, b""),
            Err(AttemptError::Header { .. })
        ));
        assert!(matches!(
            manifest(&tag, Some("sha256:nope"), b""),
            Err(AttemptError::Header { .. })
        ));
    }

    #[test]
    fn a_digest_is_checked_whatever_the_peer_announces() {
        let digest = TagOrDigest::Digest(EMPTY.parse().unwrap());
        assert!(manifest(&digest, None, b"").is_ok());
        assert!(matches!(
            manifest(&digest, Some(EMPTY), b"{}"),
            Err(AttemptError::Corrupt { .. })
        ));
    }
}
