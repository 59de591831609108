//! Hashing content into digests as it streams past.

pub(crate) use kagami_core::Hasher;

/// The sha256 digest of some bytes held in memory (manifests, configs).
#[cfg(any(test, feature = "testing"))]
pub(crate) fn sha256(bytes: &[u8]) -> kagami_core::Digest {
    Hasher::digest(kagami_core::Algorithm::Sha256, bytes)
}
