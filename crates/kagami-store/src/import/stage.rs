//! The single pass over an archive's tar entries: each file is streamed to
//! a temporary file in the layout while it is hashed, then kept under its
//! digest in a staging directory until the import commits. The few small
//! JSON files that describe the archive are kept in memory instead.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use kagami_core::{Algorithm, Digest};
use tar::EntryType;
use tempfile::TempDir;

use crate::Error;
use crate::hash::Hasher;
use crate::paths::Paths;

/// Archive-root files describing the images, read into memory.
const METADATA: [&str; 4] = ["index.json", "manifest.json", "oci-layout", "repositories"];
/// How many link hops a path may take (docker's layer symlinks take one).
const MAX_LINK_HOPS: usize = 16;
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

/// Everything one pass over an archive found. The staging directory and
/// what is left in it (a half-written file after an error, files no image
/// used) are deleted when this is dropped, success or not.
pub(crate) struct Staged {
    archive: PathBuf,
    dir: TempDir,
    /// Archive path → digest of its bytes.
    files: HashMap<String, Digest>,
    /// Archive path → the path it links to (resolved, archive-relative).
    links: HashMap<String, String>,
    blobs: HashMap<Digest, StagedBlob>,
    metadata: HashMap<&'static str, Vec<u8>>,
    next_temp: u64,
}

impl Staged {
    /// A fresh staging directory under the layout's `.tmp`.
    pub(crate) fn create(paths: &Paths, archive: &Path) -> Result<Staged, Error> {
        let tmp = paths.tmp();
        let dir = fs::create_dir_all(&tmp)
            .and_then(|()| tempfile::Builder::new().prefix("import-").tempdir_in(&tmp))
            .map_err(|source| Error::WriteLayout { path: tmp, source })?;
        Ok(Staged {
            archive: archive.to_owned(),
            dir,
            files: HashMap::new(),
            links: HashMap::new(),
            blobs: HashMap::new(),
            metadata: HashMap::new(),
            next_temp: 0,
        })
    }

    /// Reads every entry of the tar stream once.
    pub(crate) fn ingest(&mut self, tar: impl Read, json_limit: u64) -> Result<(), Error> {
        let mut archive = tar::Archive::new(tar);
        let entries = archive.entries().map_err(|e| self.read_err(e))?;
        let mut buffer = vec![0; COPY_BUFFER];
        for entry in entries {
            let mut entry = entry.map_err(|e| self.read_err(e))?;
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let path = normalise(&raw).map_err(|reason| self.unsafe_entry(&raw, reason))?;
            let kind = entry.header().entry_type();
            match kind {
                EntryType::Regular | EntryType::Continuous => {
                    let size = entry.size();
                    match METADATA.iter().find(|name| **name == path) {
                        Some(name) => {
                            let bytes = self.read_small(&mut entry, &path, size, json_limit)?;
                            self.metadata.insert(name, bytes);
                        }
                        None => {
                            let digest = self.stage(&mut entry, &path, size, &mut buffer)?;
                            self.files.insert(path, digest);
                        }
                    }
                }
                EntryType::Symlink | EntryType::Link => {
                    let target = entry
                        .link_name_bytes()
                        .map(|t| String::from_utf8_lossy(&t).into_owned())
                        .ok_or_else(|| self.unsafe_entry(&raw, "a link without a target"))?;
                    // A symlink is relative to its directory, a hard link to
                    // the archive root.
                    let base = match kind {
                        EntryType::Symlink => parent(&path),
                        _ => "",
                    };
                    let resolved =
                        resolve(base, &target).map_err(|reason| self.unsafe_entry(&raw, reason))?;
                    self.links.insert(path, resolved);
                }
                // Directories, PAX globals, devices: nothing we keep.
                _ => tracing::trace!(entry = %path, ?kind, "skipping tar entry"),
            }
        }
        Ok(())
    }

    /// A metadata file's bytes (`index.json`, `manifest.json`…).
    pub(crate) fn metadata(&self, name: &str) -> Option<&[u8]> {
        self.metadata.get(name).map(Vec::as_slice)
    }

    pub(crate) fn blob(&self, digest: &Digest) -> Option<&StagedBlob> {
        self.blobs.get(digest)
    }

    /// The digest of the file at an archive path, following links;
    /// `referrer` names who asked, for the error.
    pub(crate) fn digest_at(&self, referrer: &str, path: &str) -> Result<Digest, Error> {
        let missing = || Error::MissingEntry {
            archive: self.archive.clone(),
            entry: referrer.to_owned(),
            target: path.to_owned(),
        };
        let mut current = normalise(path).map_err(|_| missing())?;
        for _ in 0..MAX_LINK_HOPS {
            if let Some(digest) = self.files.get(&current) {
                return Ok(digest.clone());
            }
            current = self.links.get(&current).ok_or_else(missing)?.clone();
        }
        Err(missing())
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
                archive: self.archive.clone(),
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
                Err(e) => return Err(self.read_err(e)),
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
            return Err(Error::TruncatedEntry {
                archive: self.archive.clone(),
                entry: path.to_owned(),
                expected: size,
                actual: copied,
            });
        }
        let digest = hasher.finish();
        if let Some(expected) = declared
            && expected != digest
        {
            return Err(Error::DigestMismatch {
                archive: self.archive.clone(),
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

    fn read_small(
        &self,
        reader: &mut dyn Read,
        path: &str,
        size: u64,
        limit: u64,
    ) -> Result<Vec<u8>, Error> {
        if size > limit {
            return Err(Error::EntryTooLarge {
                archive: self.archive.clone(),
                entry: path.to_owned(),
                limit,
            });
        }
        let mut bytes = Vec::with_capacity(size as usize);
        reader
            .take(limit)
            .read_to_end(&mut bytes)
            .map_err(|e| self.read_err(e))?;
        if bytes.len() as u64 != size {
            return Err(Error::TruncatedEntry {
                archive: self.archive.clone(),
                entry: path.to_owned(),
                expected: size,
                actual: bytes.len() as u64,
            });
        }
        Ok(bytes)
    }

    fn read_err(&self, source: io::Error) -> Error {
        Error::ReadArchive {
            archive: self.archive.clone(),
            source,
        }
    }

    fn unsafe_entry(&self, entry: &str, reason: &'static str) -> Error {
        Error::UnsafeEntry {
            archive: self.archive.clone(),
            entry: entry.to_owned(),
            reason,
        }
    }
}

/// The digest a path like `blobs/sha256/<hex>` declares for its bytes.
fn declared_digest(path: &str) -> Option<Digest> {
    let rest = path.strip_prefix("blobs/")?;
    let (algorithm, hex) = rest.split_once('/')?;
    format!("{algorithm}:{hex}").parse().ok()
}

/// An entry's path with `.` and empty parts dropped; absolute paths and
/// `..` are refused outright.
fn normalise(path: &str) -> Result<String, &'static str> {
    if path.starts_with('/') {
        return Err("absolute path");
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("path goes up with '..'"),
            _ => parts.push(part),
        }
    }
    Ok(parts.join("/"))
}

/// A link target resolved against `base`; it may use `..` but not leave
/// the archive.
fn resolve(base: &str, target: &str) -> Result<String, &'static str> {
    if target.starts_with('/') {
        return Err("link to an absolute path");
    }
    let mut parts: Vec<&str> = base.split('/').filter(|p| !p.is_empty()).collect();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop().ok_or("link leaves the archive")?;
            }
            _ => parts.push(part),
        }
    }
    Ok(parts.join("/"))
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths_stay_inside() {
        assert_eq!(normalise("./blobs//sha256/x").unwrap(), "blobs/sha256/x");
        assert!(normalise("/etc/passwd").is_err());
        assert!(normalise("a/../../b").is_err());
        assert!(normalise("a/../b").is_err());
    }

    #[test]
    fn links_resolve_within_the_archive() {
        assert_eq!(resolve("id2", "../id1/layer.tar").unwrap(), "id1/layer.tar");
        assert_eq!(resolve("", "./x").unwrap(), "x");
        assert!(resolve("a", "../../x").is_err());
        assert!(resolve("a", "/x").is_err());
    }

    #[test]
    fn only_blob_paths_declare_digests() {
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(declared_digest(&format!("blobs/sha256/{hex}")).is_some());
        assert!(declared_digest(&format!("{hex}.json")).is_none());
        assert!(declared_digest("blobs/sha256/zz").is_none());
    }
}
