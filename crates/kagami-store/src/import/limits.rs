//! What reading an archive may cost: the limits an import holds every
//! archive to, each with the reason for its value, and the reader that
//! enforces the bound on decompression. Archives are imported unattended
//! (air-gap tarballs dropped into a directory), so a small file must not be
//! able to ask for unbounded disk, memory or work.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

/// How many bytes the entries that no named image references may hold
/// together; an archive with more is refused, naming the largest. Such
/// entries are read through and never written either way, but real
/// `docker save` and skopeo archives carry only small extras beside their
/// images (`repositories`, each layer's `json` and `VERSION`, a README),
/// so a large one means the archive is not what it claims to be: a
/// 9 MB `.tar.gz` holding 2 GiB that nothing uses is a decompression bomb.
pub const MAX_UNREFERENCED_BYTES: u64 = 16 * 1024 * 1024;

/// How many bytes of JSON the first pass may hold in memory: the blobs
/// that may be manifests, indexes or configs (each at most
/// [`Options::max_json_size`](crate::Options::max_json_size)). An image
/// needs a few kilobytes of them, the largest multi-platform images well
/// under a megabyte; the cap keeps an archive of thousands of
/// manifest-sized blobs from filling memory.
pub const MAX_JSON_BYTES: u64 = 64 * 1024 * 1024;

/// The decompressed tar stream may always grow to this many bytes, however
/// small the archive file (a pipe has no size at all).
pub const EXPANSION_FLOOR: u64 = 1024 * 1024 * 1024;

/// Above [`EXPANSION_FLOOR`], the decompressed tar stream may grow to this
/// many times the size of the archive file. gzip cannot expand beyond
/// about 1032:1, and image layers inside an archive are compressed
/// already, so real archives stay far below it; zstd can expand a run of
/// zeros by tens of thousands to one, which without this bound would let
/// a few kilobytes keep an import busy for as long as they like.
pub const EXPANSION_RATIO: u64 = 1000;

/// How far the tar stream inside an archive file of `compressed` bytes may
/// decompress.
pub(crate) fn expansion_limit(compressed: u64) -> u64 {
    EXPANSION_FLOOR.max(compressed.saturating_mul(EXPANSION_RATIO))
}

/// Set when a [`Bounded`] reader stopped a stream, so that whoever maps
/// the read error (wrapped by the tar reader or not) can say why.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tripwire(Rc<Cell<bool>>);

impl Tripwire {
    pub(crate) fn tripped(&self) -> bool {
        self.0.get()
    }
}

/// Counts the bytes read through it and fails every read once they pass
/// `limit`, so no work is done past the bound.
pub(crate) struct Bounded<R> {
    inner: R,
    read: u64,
    limit: u64,
    tripwire: Tripwire,
}

impl<R: Read> Bounded<R> {
    pub(crate) fn new(inner: R, limit: u64, tripwire: Tripwire) -> Bounded<R> {
        Bounded {
            inner,
            read: 0,
            limit,
            tripwire,
        }
    }

    fn exceeded() -> io::Error {
        io::Error::other("the decompressed archive grew past its bound")
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.tripwire.tripped() {
            return Err(Self::exceeded());
        }
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            self.tripwire.0.set(true);
            return Err(Self::exceeded());
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_is_the_floor_or_the_ratio() {
        assert_eq!(expansion_limit(0), EXPANSION_FLOOR);
        assert_eq!(expansion_limit(1024), EXPANSION_FLOOR);
        assert_eq!(expansion_limit(10 << 30), (10 << 30) * EXPANSION_RATIO);
        assert_eq!(expansion_limit(u64::MAX), u64::MAX);
    }

    #[test]
    fn a_bounded_reader_reads_up_to_its_limit_and_no_further() {
        let tripwire = Tripwire::default();
        let mut exact = Bounded::new(&[1u8; 100][..], 100, tripwire.clone());
        let mut out = Vec::new();
        exact.read_to_end(&mut out).unwrap();
        assert_eq!(out.len(), 100);
        assert!(!tripwire.tripped());

        let mut over = Bounded::new(&[1u8; 101][..], 100, tripwire.clone());
        assert!(over.read_to_end(&mut Vec::new()).is_err());
        assert!(tripwire.tripped());
        assert!(over.read(&mut [0; 1]).is_err(), "stays stopped");
    }
}
