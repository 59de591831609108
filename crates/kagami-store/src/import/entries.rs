//! Reading a tar stream's entries the same way in both passes of an
//! import: each numbered in archive order (so the second pass can tell
//! the very entry the first chose, even when a path occurs twice), its
//! path normalised and kept inside the archive, links resolved to the
//! archive-relative path they point at.

use std::collections::HashMap;
use std::io::Read;

use kagami_core::Digest;
use tar::EntryType;

use crate::Error;
use crate::import::sniff::Reading;

/// How many link hops a path may take (docker's layer symlinks take one).
const MAX_LINK_HOPS: usize = 16;

/// A file or link of the archive, as [`each`] hands it over.
pub(crate) enum Item<'a> {
    /// A regular file of `size` bytes (its header says); `data` reads them.
    File { size: u64, data: &'a mut dyn Read },
    /// A symbolic or hard link to this archive-relative path.
    Link(String),
}

/// Calls `visit` with the number, path and contents of each file and link
/// of the tar stream, in order; the number counts every entry, skipped
/// ones (directories, PAX globals, devices) too. Returns the stream, read
/// up to the end-of-archive marker.
pub(crate) fn each<R: Read>(
    tar: R,
    reading: &Reading,
    mut visit: impl FnMut(usize, String, Item<'_>) -> Result<(), Error>,
) -> Result<R, Error> {
    let mut archive = tar::Archive::new(tar);
    let entries = archive.entries().map_err(|e| reading.error(e))?;
    for (ordinal, entry) in entries.enumerate() {
        let mut entry = entry.map_err(|e| reading.error(e))?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = normalise(&raw).map_err(|reason| reading.unsafe_entry(&raw, reason))?;
        let kind = entry.header().entry_type();
        match kind {
            EntryType::Regular | EntryType::Continuous => {
                let size = entry.size();
                visit(
                    ordinal,
                    path,
                    Item::File {
                        size,
                        data: &mut entry,
                    },
                )?;
            }
            EntryType::Symlink | EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| String::from_utf8_lossy(&t).into_owned())
                    .ok_or_else(|| reading.unsafe_entry(&raw, "a link without a target"))?;
                // A symlink is relative to its directory, a hard link to
                // the archive root.
                let base = match kind {
                    EntryType::Symlink => parent(&path),
                    _ => "",
                };
                let resolved =
                    resolve(base, &target).map_err(|reason| reading.unsafe_entry(&raw, reason))?;
                visit(ordinal, path, Item::Link(resolved))?;
            }
            _ => tracing::trace!(entry = %path, ?kind, "skipping tar entry"),
        }
    }
    Ok(archive.into_inner())
}

/// The regular file `path` names, following links; `None` when neither a
/// file (`is_file`) nor a chain of links to one is there.
pub(crate) fn follow(
    path: &str,
    is_file: impl Fn(&str) -> bool,
    links: &HashMap<String, String>,
) -> Option<String> {
    let mut current = normalise(path).ok()?;
    for _ in 0..MAX_LINK_HOPS {
        if is_file(&current) {
            return Some(current);
        }
        current = links.get(&current)?.clone();
    }
    None
}

/// The digest a path like `blobs/sha256/<hex>` declares for its bytes.
pub(crate) fn declared_digest(path: &str) -> Option<Digest> {
    let rest = path.strip_prefix("blobs/")?;
    let (algorithm, hex) = rest.split_once('/')?;
    format!("{algorithm}:{hex}").parse().ok()
}

/// The entry path of a blob in an OCI layout.
pub(crate) fn blob_path(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm(), digest.hex())
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
    fn links_are_followed_to_a_file_a_bounded_number_of_times() {
        let links: HashMap<String, String> = [("b", "a"), ("c", "b"), ("x", "y"), ("y", "x")]
            .into_iter()
            .map(|(from, to)| (from.to_owned(), to.to_owned()))
            .collect();
        let is_file = |p: &str| p == "a";
        assert_eq!(follow("./c", is_file, &links).as_deref(), Some("a"));
        assert_eq!(follow("x", is_file, &links), None, "a loop ends");
        assert_eq!(follow("z", is_file, &links), None);
    }

    #[test]
    fn only_blob_paths_declare_digests() {
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let declared = declared_digest(&format!("blobs/sha256/{hex}")).unwrap();
        assert_eq!(blob_path(&declared), format!("blobs/sha256/{hex}"));
        assert!(declared_digest(&format!("{hex}.json")).is_none());
        assert!(declared_digest("blobs/sha256/zz").is_none());
    }
}
