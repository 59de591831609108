//! Hashing content into [`Digest`]s as it streams past.

use kagami_core::{Algorithm, Digest};

pub(crate) use kagami_core::Hasher;

/// The sha256 digest of some bytes held in memory (manifests, configs).
#[cfg(any(test, feature = "testing"))]
pub(crate) fn sha256(bytes: &[u8]) -> Digest {
    Hasher::digest(Algorithm::Sha256, bytes)
}
