//! Opening an archive: recognising it by its first bytes (never its
//! name) as gzip, zstd or a plain tar, with a tar inside, and bounding how
//! far that tar stream may decompress.

use std::fs::File;
use std::io::{self, BufReader, Cursor, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use crate::Error;
use crate::import::limits::{Bounded, Tripwire, expansion_limit};

/// What a stream's first bytes say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Magic {
    Gzip,
    Zstd,
    /// Anything else; for layers, a plain tar.
    Plain,
}

impl Magic {
    pub(crate) fn of(head: &[u8]) -> Magic {
        if head.starts_with(&[0x1f, 0x8b]) {
            Magic::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Magic::Zstd
        } else {
            Magic::Plain
        }
    }
}

/// How many bytes a tar header block has; its magic sits at 257.
const BLOCK: usize = 512;

/// Names the archive in the errors of reading it, and tells a read that
/// failed because the stream passed its bound from any other failure.
#[derive(Debug, Clone)]
pub(crate) struct Reading {
    archive: PathBuf,
    compressed: u64,
    limit: u64,
    tripwire: Tripwire,
}

impl Reading {
    pub(crate) fn archive(&self) -> &Path {
        &self.archive
    }

    /// The error for a failed read of the tar stream.
    pub(crate) fn error(&self, source: io::Error) -> Error {
        if self.tripwire.tripped() {
            return Error::DecompressedTooLarge {
                archive: self.archive.clone(),
                compressed: self.compressed,
                limit: self.limit,
            };
        }
        Error::ReadArchive {
            archive: self.archive.clone(),
            source,
        }
    }

    pub(crate) fn unsafe_entry(&self, entry: &str, reason: &'static str) -> Error {
        Error::UnsafeEntry {
            archive: self.archive.clone(),
            entry: entry.to_owned(),
            reason,
        }
    }

    pub(crate) fn truncated(&self, entry: &str, expected: u64, actual: u64) -> Error {
        Error::TruncatedEntry {
            archive: self.archive.clone(),
            entry: entry.to_owned(),
            expected,
            actual,
        }
    }
}

/// Opens an archive and returns the tar stream inside it, which fails once
/// it has decompressed past [`expansion_limit`] of the file's size. A file
/// that is neither a tar nor a compressed tar is refused here, before any
/// work.
pub(crate) fn open(archive: &Path) -> Result<(Box<dyn Read>, Reading), Error> {
    let read_err = |source| Error::ReadArchive {
        archive: archive.to_owned(),
        source,
    };
    let file = File::open(archive).map_err(read_err)?;
    // A pipe has no size: it gets the floor of the bound.
    let compressed = file.metadata().map(|m| m.len()).unwrap_or(0);
    let (head, reader) = peek(BufReader::with_capacity(256 * 1024, file)).map_err(read_err)?;
    if head.is_empty() {
        return Err(Error::NotAnArchive {
            archive: archive.to_owned(),
            reason: "the file is empty",
        });
    }
    let magic = Magic::of(&head);
    let decoded: Box<dyn Read> = match magic {
        Magic::Gzip => Box::new(MultiGzDecoder::new(reader)),
        Magic::Zstd => Box::new(zstd::Decoder::new(reader).map_err(read_err)?),
        Magic::Plain => Box::new(reader),
    };
    let reading = Reading {
        archive: archive.to_owned(),
        compressed,
        limit: expansion_limit(compressed),
        tripwire: Tripwire::default(),
    };
    let decoded = Bounded::new(decoded, reading.limit, reading.tripwire.clone());
    let (head, tar) = peek(decoded).map_err(|e| reading.error(e))?;
    if !is_tar(&head) {
        return Err(Error::NotAnArchive {
            archive: archive.to_owned(),
            reason: match magic {
                Magic::Plain => "no tar header at the start, and no gzip or zstd magic",
                Magic::Gzip => "the gzip stream does not hold a tar archive",
                Magic::Zstd => "the zstd stream does not hold a tar archive",
            },
        });
    }
    Ok((Box::new(tar), reading))
}

/// Whether a block starts a POSIX or GNU tar (what docker, skopeo and
/// every Go or Rust writer produce); pre-POSIX v7 tars are not accepted.
fn is_tar(head: &[u8]) -> bool {
    head.len() >= BLOCK && &head[257..262] == b"ustar"
}

/// The first bytes of a stream, and the whole stream again.
type Peeked<R> = (Vec<u8>, io::Chain<Cursor<Vec<u8>>, R>);

/// Reads up to one block without losing it.
fn peek<R: Read>(mut reader: R) -> io::Result<Peeked<R>> {
    let mut head = vec![0; BLOCK];
    let mut filled = 0;
    while filled < BLOCK {
        match reader.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    head.truncate(filled);
    Ok((head.clone(), Cursor::new(head).chain(reader)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tar_bytes() -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(3);
        header.set_cksum();
        builder.append_data(&mut header, "a", &b"abc"[..]).unwrap();
        builder.into_inner().unwrap()
    }

    fn opens(bytes: &[u8]) -> Result<Vec<u8>, Error> {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(bytes).unwrap();
        let mut out = Vec::new();
        open(file.path())?.0.read_to_end(&mut out).unwrap();
        Ok(out)
    }

    #[test]
    fn finds_the_tar_under_any_compression() {
        let tar = tar_bytes();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&tar[..], 1).unwrap();
        for bytes in [&tar, &gz, &zst] {
            assert_eq!(opens(bytes).unwrap(), tar);
        }
    }

    #[test]
    fn refuses_what_is_not_a_tar() {
        let gz_text = {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(b"hello").unwrap();
            gz.finish().unwrap()
        };
        for bytes in [&b""[..], b"{\"not\": \"a tar\"}", &[0u8; 2048], &gz_text] {
            assert!(matches!(opens(bytes), Err(Error::NotAnArchive { .. })));
        }
        assert_eq!(Magic::of(&[0x28, 0xb5, 0x2f, 0xfd, 0]), Magic::Zstd);
    }
}
