//! The second pass over an archive: each file the plan wants is streamed
//! to a temporary file in the layout while it is hashed, then kept under
//! its digest in a staging directory until the import commits. Files the
//! plan does not want are read through and never written.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::PathBuf;

use kagami_core::{Algorithm, Digest};
use tempfile::TempDir;

use crate::Error;
use crate::hash::Hasher;
use crate::import::entries::{self, Item, declared_digest};
use crate::import::plan::Plan;
use crate::import::sniff::Reading;
use crate::paths::Paths;

/// Bytes kept from the start of each file, to tell a layer's compression.
const HEAD: usize = 8;
const COPY_BUFFER: usize = 256 * 1024;

/// One file of the archive, hashed and waiting under its digest.
#[derive(Debug)]
pub(crate) struct StagedBlob {
    pub path: PathBuf,
    pub size: u64,
    pub head: Vec<u8>,
}

/// Everything the second pass wrote. The staging directory and what is
/// left in it (a half-written file after an error, files no image used)
/// are deleted when this is dropped, success or not.
pub(crate) struct Staged {
    reading: Reading,
    dir: TempDir,
    /// Archive path → digest of its bytes.
    files: HashMap<String, Digest>,
    /// Archive path → the path it links to (resolved, archive-relative).
    links: HashMap<String, String>,
    blobs: HashMap<Digest, StagedBlob>,
    next_temp: u64,
}

impl Staged {
    /// A fresh staging directory under the layout's `.tmp`, for the
    /// archive `reading` reads.
    pub(crate) fn create(paths: &Paths, reading: Reading) -> Result<Staged, Error> {
        let tmp = paths.tmp();
        let dir = fs::create_dir_all(&tmp)
            .and_then(|()| tempfile::Builder::new().prefix("import-").tempdir_in(&tmp))
            .map_err(|source| Error::WriteLayout { path: tmp, source })?;
        Ok(Staged {
            reading,
            dir,
            files: HashMap::new(),
            links: HashMap::new(),
            blobs: HashMap::new(),
            next_temp: 0,
        })
    }

    /// Reads the tar stream once more, writing the files `plan` wants.
    pub(crate) fn ingest(&mut self, tar: impl Read, plan: &Plan) -> Result<(), Error> {
        let reading = self.reading.clone();
        let mut buffer = vec![0; COPY_BUFFER];
        entries::each(tar, &reading, |ordinal, path, item| match item {
            Item::File { size, data } => {
                let Some(wanted) = plan.wanted.get(&ordinal) else {
                    return Ok(()); // read through, never written
                };
                // The first pass chose this entry by its number, path and
                // size; another file here means the archive changed since.
                if wanted.path != path || wanted.size != size {
                    return Err(Error::ArchiveChanged {
                        archive: reading.archive().to_owned(),
                        entry: path,
                    });
                }
                let digest = self.stage(data, &path, size, &mut buffer)?;
                self.files.insert(path, digest);
                Ok(())
            }
            Item::Link(target) => {
                self.links.insert(path, target);
                Ok(())
            }
        })?;
        Ok(())
    }

    pub(crate) fn blob(&self, digest: &Digest) -> Option<&StagedBlob> {
        self.blobs.get(digest)
    }

    /// The digest of the file at an archive path, following links;
    /// `referrer` names who asked, for the error.
    pub(crate) fn digest_at(&self, referrer: &str, path: &str) -> Result<Digest, Error> {
        entries::follow(path, |p| self.files.contains_key(p), &self.links)
            .and_then(|found| self.files.get(&found).cloned())
            .ok_or_else(|| Error::MissingEntry {
                archive: self.reading.archive().to_owned(),
                entry: referrer.to_owned(),
                target: path.to_owned(),
            })
    }

    /// A staged file's bytes, when it is small enough to be a manifest.
    pub(crate) fn read_small_blob(
        &self,
        digest: &Digest,
        limit: u64,
    ) -> Result<Option<Vec<u8>>, Error> {
        let Some(blob) = self.blobs.get(digest) else {
            return Ok(None);
        };
        if blob.size > limit {
            return Err(Error::EntryTooLarge {
                archive: self.reading.archive().to_owned(),
                entry: digest.to_string(),
                limit,
            });
        }
        fs::read(&blob.path)
            .map(Some)
            .map_err(|source| Error::ReadLayout {
                path: blob.path.clone(),
                source,
            })
    }

    /// Stages bytes made here (a manifest written for a docker image).
    pub(crate) fn stage_bytes(&mut self, bytes: &[u8]) -> Result<Digest, Error> {
        let mut buffer = vec![0; COPY_BUFFER.min(bytes.len().max(1))];
        self.stage(
            &mut &bytes[..],
            "(generated manifest)",
            bytes.len() as u64,
            &mut buffer,
        )
    }

    /// Streams one file to disk while hashing it, checks it against the
    /// digest its path declares (`blobs/<alg>/<hex>`), and files it under
    /// its digest.
    fn stage(
        &mut self,
        reader: &mut dyn Read,
        path: &str,
        size: u64,
        buffer: &mut [u8],
    ) -> Result<Digest, Error> {
        let declared = declared_digest(path);
        let algorithm = declared
            .as_ref()
            .map_or(Algorithm::Sha256, Digest::algorithm);
        self.next_temp += 1;
        let temp = self.dir.path().join(format!("incoming-{}", self.next_temp));
        let write_err = |source| Error::WriteLayout {
            path: temp.clone(),
            source,
        };
        let mut file = File::create(&temp).map_err(write_err)?;
        let mut hasher = Hasher::new(algorithm);
        let mut head = Vec::with_capacity(HEAD);
        let mut copied = 0u64;
        loop {
            let n = match reader.read(buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.reading.error(e)),
            };
            let chunk = &buffer[..n];
            if head.len() < HEAD {
                let take = (HEAD - head.len()).min(n);
                head.extend_from_slice(&chunk[..take]);
            }
            hasher.update(chunk);
            file.write_all(chunk).map_err(write_err)?;
            copied += n as u64;
        }
        if copied != size {
            return Err(self.reading.truncated(path, size, copied));
        }
        let digest = hasher.finish();
        if let Some(expected) = declared
            && expected != digest
        {
            return Err(Error::DigestMismatch {
                archive: self.reading.archive().to_owned(),
                expected,
                actual: digest,
            });
        }
        let kept = self
            .dir
            .path()
            .join(format!("{}-{}", digest.algorithm(), digest.hex()));
        fs::rename(&temp, &kept).map_err(write_err)?;
        self.blobs.insert(
            digest.clone(),
            StagedBlob {
                path: kept,
                size,
                head,
            },
        );
        Ok(digest)
    }
}
