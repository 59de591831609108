//! The first pass over an archive, which writes nothing: it reads the
//! files that describe the images (`index.json`, `manifest.json`…) and the
//! blobs that may be manifests into memory, checking their digests, and
//! notes every other file's path and size and every link, so that the
//! second pass writes only what the images reference.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::Path;

use kagami_core::{Digest, Hasher};

use crate::Error;
use crate::import::entries::{self, Item, declared_digest};
use crate::import::limits::MAX_JSON_BYTES;
use crate::import::sniff::{self, Reading};

/// Archive-root files describing the images, read into memory.
const METADATA: [&str; 4] = ["index.json", "manifest.json", "oci-layout", "repositories"];

/// One regular file of the archive (metadata files aside).
#[derive(Debug, Clone)]
pub(crate) struct File {
    /// Its number in archive order (see [`entries::each`]).
    pub ordinal: usize,
    pub path: String,
    /// Its size, as its tar header says.
    pub size: u64,
}

/// What the first pass learnt of an archive.
pub(crate) struct Survey {
    pub reading: Reading,
    /// Every regular file but the metadata files, in archive order.
    pub files: Vec<File>,
    /// Path → index in `files` of the last file at that path (the one a
    /// tar extraction would leave).
    by_path: HashMap<String, usize>,
    /// Link path → the archive path it points at.
    links: HashMap<String, String>,
    metadata: HashMap<&'static str, Vec<u8>>,
    /// The blobs that may be manifests, indexes or configs, checked
    /// against the digest their path declares.
    json: HashMap<Digest, Vec<u8>>,
}

impl Survey {
    /// Reads the archive once; `json_limit` is the largest JSON document
    /// kept.
    pub(crate) fn read(archive: &Path, json_limit: u64) -> Result<Survey, Error> {
        let (tar, reading) = sniff::open(archive)?;
        let mut survey = Survey {
            reading: reading.clone(),
            files: Vec::new(),
            by_path: HashMap::new(),
            links: HashMap::new(),
            metadata: HashMap::new(),
            json: HashMap::new(),
        };
        let mut kept = 0u64;
        let rest = entries::each(tar, &reading, |ordinal, path, item| match item {
            Item::File { size, data } => {
                if let Some(name) = METADATA.iter().find(|name| **name == path) {
                    let bytes = read_small(&reading, data, &path, size, json_limit)?;
                    survey.metadata.insert(name, bytes);
                    return Ok(());
                }
                if let Some(declared) = declared_digest(&path)
                    && size <= json_limit
                {
                    let bytes = read_small(&reading, data, &path, size, json_limit)?;
                    if looks_like_json_object(&bytes) {
                        kept += size;
                        if kept > MAX_JSON_BYTES {
                            return Err(Error::ManifestsTooLarge {
                                archive: reading.archive().to_owned(),
                                limit: MAX_JSON_BYTES,
                            });
                        }
                        let actual = Hasher::digest(declared.algorithm(), &bytes);
                        if actual != declared {
                            return Err(Error::DigestMismatch {
                                archive: reading.archive().to_owned(),
                                expected: declared,
                                actual,
                            });
                        }
                        survey.json.insert(declared, bytes);
                    }
                }
                survey.by_path.insert(path.clone(), survey.files.len());
                survey.files.push(File {
                    ordinal,
                    path,
                    size,
                });
                Ok(())
            }
            Item::Link(target) => {
                survey.links.insert(path, target);
                Ok(())
            }
        })?;
        drain(rest, &reading);
        Ok(survey)
    }

    /// A metadata file's bytes (`index.json`, `manifest.json`…).
    pub(crate) fn metadata(&self, name: &str) -> Option<&[u8]> {
        self.metadata.get(name).map(Vec::as_slice)
    }

    /// The bytes of a blob that may be a manifest.
    pub(crate) fn json(&self, digest: &Digest) -> Option<&[u8]> {
        self.json.get(digest).map(Vec::as_slice)
    }

    /// The regular file at `path`, links not followed.
    pub(crate) fn file(&self, path: &str) -> Option<&File> {
        self.by_path.get(path).and_then(|i| self.files.get(*i))
    }

    /// The regular file `path` names, following links; `referrer` names
    /// who asked, for the error.
    pub(crate) fn resolve(&self, referrer: &str, path: &str) -> Result<&File, Error> {
        entries::follow(path, |p| self.by_path.contains_key(p), &self.links)
            .and_then(|found| self.file(&found))
            .ok_or_else(|| Error::MissingEntry {
                archive: self.reading.archive().to_owned(),
                entry: referrer.to_owned(),
                target: path.to_owned(),
            })
    }
}

/// Whether the first byte that is not JSON whitespace opens an object, as
/// every manifest, index and config does (a layer never starts so).
fn looks_like_json_object(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .is_some_and(|b| *b == b'{')
}

/// Reads an entry of at most `limit` bytes whole.
fn read_small(
    reading: &Reading,
    data: &mut dyn Read,
    path: &str,
    size: u64,
    limit: u64,
) -> Result<Vec<u8>, Error> {
    if size > limit {
        return Err(Error::EntryTooLarge {
            archive: reading.archive().to_owned(),
            entry: path.to_owned(),
            limit,
        });
    }
    // `size` is at most `limit`, a few MiB.
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    data.take(limit)
        .read_to_end(&mut bytes)
        .map_err(|e| reading.error(e))?;
    if bytes.len() as u64 != size {
        return Err(reading.truncated(path, size, bytes.len() as u64));
    }
    Ok(bytes)
}

/// Reads what follows the end-of-archive marker (padding, a compressed
/// stream's trailer) to the end, so that a writer feeding the archive
/// through a pipe sees all of it taken before the second pass opens it
/// again. What is there is not used, so a failure only ends the reading.
fn drain(mut rest: impl Read, reading: &Reading) {
    if let Err(error) = io::copy(&mut rest, &mut io::sink()) {
        tracing::debug!(archive = %reading.archive().display(), %error, "ignoring what follows the end of the tar archive");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_json_objects_may_be_manifests() {
        assert!(looks_like_json_object(b" \n\t{\"schemaVersion\":2}"));
        assert!(!looks_like_json_object(b"[1]"));
        assert!(!looks_like_json_object(b"  "));
        assert!(!looks_like_json_object(&[0x1f, 0x8b, b'{']));
    }
}
