//! What the cache holds: each entry's kind, size, state (kept, or arriving
//! with its progress) and readers, and which to evict first; the writing
//! of an arriving entry; and the checks of kept files after a restart.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::BytesMut;
use futures::StreamExt;
use kagami_core::store::{ContentInfo, ContentKind, Source};
use kagami_core::{Digest, Hasher, MediaType};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use super::SpoolUsage;

/// Bytes gathered before they are written and shown to readers.
const WRITE_BATCH: usize = 256 * 1024;
/// Largest file read whole to tell a manifest (the registries' limit).
const MAX_MANIFEST: u64 = 4 * 1024 * 1024;

/// How far an arriving entry has come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Written {
    /// This many bytes are in the partial file.
    Bytes(u64),
    /// Every byte is there and matched the digest.
    Done,
    /// The fetch failed; nothing will be kept.
    Failed(String),
}

/// The writer's side of an arriving entry's progress; cloning shares it.
#[derive(Debug, Clone)]
pub(crate) struct Progress {
    sender: Arc<watch::Sender<Written>>,
}

impl Progress {
    fn new() -> Progress {
        let (sender, _) = watch::channel(Written::Bytes(0));
        Progress {
            sender: Arc::new(sender),
        }
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Written> {
        self.sender.subscribe()
    }

    fn advance(&self, written: u64) {
        self.sender.send_replace(Written::Bytes(written));
    }

    pub(crate) fn done(&self) {
        self.sender.send_replace(Written::Done);
    }

    pub(crate) fn failed(&self, reason: String) {
        self.sender.send_replace(Written::Failed(reason));
    }
}

/// An entry's state.
#[derive(Debug, Clone)]
pub(crate) enum State {
    Kept,
    Arriving(Progress),
}

/// What a caller learns of an entry.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) kind: ContentKind,
    pub(crate) size: u64,
    pub(crate) state: State,
}

struct Slot {
    entry: Entry,
    readers: usize,
    /// When it was last read, on the cache's own clock.
    used: u64,
}

/// Every entry.
#[derive(Default)]
pub(crate) struct Entries {
    slots: HashMap<Digest, Slot>,
    clock: u64,
}

impl Entries {
    pub(crate) fn get(&self, digest: &Digest) -> Option<Entry> {
        self.slots.get(digest).map(|slot| slot.entry.clone())
    }

    /// A new arriving entry; the progress its writer reports to.
    pub(crate) fn start(&mut self, digest: Digest, kind: ContentKind, size: u64) -> Progress {
        let progress = Progress::new();
        self.clock += 1;
        self.slots.insert(
            digest,
            Slot {
                entry: Entry {
                    kind,
                    size,
                    state: State::Arriving(progress.clone()),
                },
                readers: 0,
                used: self.clock,
            },
        );
        progress
    }

    pub(crate) fn finished(&mut self, digest: &Digest) {
        if let Some(slot) = self.slots.get_mut(digest) {
            slot.entry.state = State::Kept;
        }
    }

    /// A kept entry found at start; `modified` orders it among the others.
    pub(crate) fn insert_kept(
        &mut self,
        digest: Digest,
        kind: ContentKind,
        size: u64,
        modified: SystemTime,
    ) {
        let age = modified
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.slots.insert(
            digest,
            Slot {
                entry: Entry {
                    kind,
                    size,
                    state: State::Kept,
                },
                readers: 0,
                // Older files first; any read after the start is newer.
                used: age.saturating_sub(u64::MAX / 2).min(self.clock),
            },
        );
    }

    pub(crate) fn remove(&mut self, digest: &Digest) {
        self.slots.remove(digest);
    }

    pub(crate) fn reading(&mut self, digest: &Digest) {
        self.clock += 1;
        let clock = self.clock;
        if let Some(slot) = self.slots.get_mut(digest) {
            slot.readers += 1;
            slot.used = clock;
        }
    }

    pub(crate) fn done_reading(&mut self, digest: &Digest) {
        if let Some(slot) = self.slots.get_mut(digest) {
            slot.readers = slot.readers.saturating_sub(1);
        }
    }

    /// The kept entry nobody reads that was read longest ago.
    pub(crate) fn least_recent_idle(&self) -> Option<Digest> {
        self.slots
            .iter()
            .filter(|(_, slot)| slot.readers == 0 && matches!(slot.entry.state, State::Kept))
            .min_by_key(|(_, slot)| slot.used)
            .map(|(digest, _)| digest.clone())
    }

    pub(crate) fn usage(&self) -> SpoolUsage {
        let mut usage = SpoolUsage::default();
        for slot in self.slots.values() {
            usage.bytes += slot.entry.size;
            match slot.entry.state {
                State::Kept => usage.kept += 1,
                State::Arriving(_) => usage.arriving += 1,
            }
        }
        usage
    }

    pub(crate) fn infos(&self) -> Vec<ContentInfo> {
        self.slots
            .iter()
            .map(|(digest, slot)| ContentInfo {
                digest: digest.clone(),
                size: slot.entry.size,
                kind: slot.entry.kind,
            })
            .collect()
    }
}

/// Writes what `source` sends to `partial`, hashing it, reporting each
/// batch to `progress`; an error names why nothing may be kept.
pub(crate) async fn write(
    file: std::fs::File,
    partial: &Path,
    digest: &Digest,
    size: u64,
    source: Source,
    progress: &Progress,
) -> Result<(), String> {
    let mut body = source
        .await
        .map_err(|e| format!("the source failed: {e}"))?;
    let mut file = tokio::fs::File::from_std(file);
    let mut hasher = Hasher::new(digest.algorithm());
    let mut written = 0u64;
    let mut batch = BytesMut::with_capacity(WRITE_BATCH);
    loop {
        let next = body.next().await;
        let end = next.is_none();
        if let Some(chunk) = next {
            let chunk =
                chunk.map_err(|e| format!("the source broke off at byte {written}: {e}"))?;
            if written + (batch.len() + chunk.len()) as u64 > size {
                return Err(format!(
                    "the source sent more than the {size} bytes announced"
                ));
            }
            hasher.update(&chunk);
            batch.extend_from_slice(&chunk);
        }
        if !batch.is_empty() && (end || batch.len() >= WRITE_BATCH) {
            file.write_all(&batch)
                .await
                .map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
            // Readers use their own file handles: the bytes must be in the
            // file, not in this one's buffer, before they are told.
            file.flush()
                .await
                .map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
            written += batch.len() as u64;
            batch.clear();
            progress.advance(written);
        }
        if end {
            break;
        }
    }
    if written != size {
        return Err(format!(
            "the source sent {written} of the {size} bytes announced"
        ));
    }
    let actual = hasher.finish();
    if actual != *digest {
        return Err(format!("its bytes hash to {actual}"));
    }
    Ok(())
}

/// Every file under `blobs/<alg>/` whose name is a digest: its path, size
/// and modification time.
pub(crate) fn scan(root: &Path) -> Vec<(Digest, PathBuf, u64, SystemTime)> {
    let mut found = Vec::new();
    let Ok(algorithms) = std::fs::read_dir(root) else {
        return found;
    };
    for algorithm in algorithms.flatten() {
        let Ok(files) = std::fs::read_dir(algorithm.path()) else {
            continue;
        };
        let alg = algorithm.file_name().to_string_lossy().into_owned();
        for file in files.flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            let path = file.path();
            let (Ok(digest), Ok(meta)) =
                (format!("{alg}:{name}").parse::<Digest>(), file.metadata())
            else {
                let _ = std::fs::remove_file(&path);
                continue;
            };
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            found.push((digest, path, meta.len(), modified));
        }
    }
    found
}

/// Whether the file at `path` hashes to `digest`.
pub(crate) fn matches(path: &Path, digest: &Digest) -> bool {
    use std::io::Read;
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let mut hasher = Hasher::new(digest.algorithm());
    let mut buffer = vec![0; 256 * 1024];
    loop {
        match file.read(&mut buffer) {
            Ok(0) => return hasher.finish() == *digest,
            Ok(n) => hasher.update(&buffer[..n]),
            Err(_) => return false,
        }
    }
}

/// A manifest, if the file is small enough and reads as one; else a blob.
pub(crate) fn kind_of(path: &Path, size: u64) -> ContentKind {
    if size > MAX_MANIFEST {
        return ContentKind::Blob;
    }
    std::fs::read(path)
        .ok()
        .and_then(|bytes| MediaType::detect(&bytes))
        .map_or(ContentKind::Blob, ContentKind::Manifest)
}
