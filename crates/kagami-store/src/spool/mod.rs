//! The pull-through cache: blobs and manifests fetched from elsewhere (an
//! upstream registry, for this node or for the peers that ask it as their
//! origin), kept under `DIR/blobs/<alg>/<hex>`, bounded in size.
//!
//! An entry is filled once however many ask (single flight): the first
//! [`Cache::fill`] starts the source and writes its bytes to
//! `DIR/partial/<hex>` as they come, hashing them; every
//! [`Store::read`] of it, `Range` included, gets the bytes written so far
//! at once and waits for the rest (tail-follow). The last byte is held
//! back until the whole entry matches its digest: a wrong one, a source
//! that sends more or fewer bytes than announced, or a write that fails
//! (disk full) discards the entry, and every reader gets an error instead
//! of its last byte. A complete entry is renamed into `blobs/`, where
//! readers that opened it while it arrived go on reading the same file.
//!
//! Entries are advertised from their first byte ([`Event::ContentAdded`])
//! and withdrawn when evicted: least recently read first, never one being
//! read or arriving, whenever a new entry needs room within the capacity.
//! After a restart, the kept files are hashed again in the background and
//! each is served (and advertised) once it matches its name; one that does
//! not is deleted, and so is everything under `partial/`.

mod entries;
mod reader;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use futures::StreamExt;
use kagami_core::store::{
    self, BlobStream, Cache, ContentInfo, ContentKind, Event, EventStream, Filling, Image, Source,
    Store,
};
use kagami_core::{Digest, MediaType, Reference};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

use entries::{Entries, Entry, State};

/// Events kept for slow subscribers before they get `Resync`.
const EVENT_BUFFER: usize = 1024;

/// The pull-through cache of one node. Cheap to clone.
#[derive(Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    capacity: u64,
    entries: Mutex<Entries>,
    events: broadcast::Sender<Event>,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.inner.dir)
            .field("capacity", &self.inner.capacity)
            .finish_non_exhaustive()
    }
}

/// What the cache holds, for metrics and the status page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolUsage {
    /// Bytes of kept and arriving entries.
    pub bytes: u64,
    /// Entries kept.
    pub kept: usize,
    /// Entries arriving.
    pub arriving: usize,
}

impl Spool {
    /// Opens the cache in `dir` (made if missing), holding at most
    /// `capacity` bytes: removes what a crash left half-written, and
    /// checks the kept files again in the background.
    pub async fn open(dir: &Path, capacity: u64) -> Result<Spool, crate::Error> {
        let dir = dir.to_owned();
        let blobs = dir.join("blobs");
        let partial = dir.join("partial");
        let setup = {
            let (blobs, partial) = (blobs.clone(), partial.clone());
            tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                if partial.exists() {
                    std::fs::remove_dir_all(&partial)?;
                }
                std::fs::create_dir_all(&partial)?;
                std::fs::create_dir_all(&blobs)
            })
        };
        setup
            .await
            .map_err(|e| crate::Error::WriteLayout {
                path: dir.clone(),
                source: std::io::Error::other(e),
            })?
            .map_err(|source| crate::Error::WriteLayout {
                path: dir.clone(),
                source,
            })?;
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let spool = Spool {
            inner: Arc::new(Inner {
                dir,
                capacity,
                entries: Mutex::new(Entries::default()),
                events,
            }),
        };
        let again = spool.clone();
        tokio::spawn(async move { again.recheck().await });
        Ok(spool)
    }

    /// Bytes and entries held now.
    pub fn usage(&self) -> SpoolUsage {
        let entries = self.inner.lock();
        entries.usage()
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.inner
            .dir
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    fn partial_path(&self, digest: &Digest) -> PathBuf {
        self.inner
            .dir
            .join("partial")
            .join(format!("{}-{}", digest.algorithm(), digest.hex()))
    }

    /// Hashes every kept file again; keeps those that match their name.
    async fn recheck(self) {
        let root = self.inner.dir.join("blobs");
        let found = tokio::task::spawn_blocking(move || entries::scan(&root))
            .await
            .unwrap_or_default();
        let (mut kept, mut dropped) = (0usize, 0usize);
        for (digest, path, size, modified) in found {
            let check = {
                let (digest, path) = (digest.clone(), path.clone());
                tokio::task::spawn_blocking(move || entries::matches(&path, &digest))
            };
            if check.await.unwrap_or(false) {
                let kind = tokio::task::spawn_blocking({
                    let path = path.clone();
                    move || entries::kind_of(&path, size)
                })
                .await
                .unwrap_or(ContentKind::Blob);
                self.inner
                    .lock()
                    .insert_kept(digest.clone(), kind, size, modified);
                let _ = self.inner.events.send(Event::ContentAdded(digest));
                kept += 1;
            } else {
                let _ = std::fs::remove_file(&path);
                dropped += 1;
            }
        }
        if kept + dropped > 0 {
            tracing::info!(kept, dropped, "pull-through cache checked after the start");
        }
    }

    /// Makes room for `size` more bytes by evicting least recently read
    /// entries nobody reads; the digests evicted, or `None` if the room
    /// cannot be made.
    fn make_room(&self, entries: &mut Entries, size: u64) -> Option<Vec<Digest>> {
        if size > self.inner.capacity {
            return None;
        }
        let mut evicted = Vec::new();
        while entries.usage().bytes + size > self.inner.capacity {
            let victim = entries.least_recent_idle()?;
            entries.remove(&victim);
            evicted.push(victim);
        }
        Some(evicted)
    }

    fn forget(&self, digests: Vec<Digest>) {
        for digest in digests {
            let path = self.blob_path(&digest);
            let _ = std::fs::remove_file(&path);
            tracing::debug!(%digest, "evicted from the pull-through cache");
            let _ = self.inner.events.send(Event::ContentRemoved(digest));
        }
    }

    /// Writes `source` into the entry's partial file, then moves it into
    /// place, or discards it; every reader learns which.
    async fn write(
        self,
        digest: Digest,
        size: u64,
        (file, source): (std::fs::File, Source),
        progress: entries::Progress,
    ) {
        let partial = self.partial_path(&digest);
        let outcome = entries::write(file, &partial, &digest, size, source, &progress).await;
        let finished = match outcome {
            Ok(()) => {
                let target = self.blob_path(&digest);
                let moved = target
                    .parent()
                    .map_or(Ok(()), std::fs::create_dir_all)
                    .and_then(|()| std::fs::rename(&partial, &target));
                moved.map_err(|e| format!("cannot keep it: {e}"))
            }
            Err(reason) => Err(reason),
        };
        let mut entries = self.inner.lock();
        match finished {
            Ok(()) => {
                entries.finished(&digest);
                progress.done();
            }
            Err(reason) => {
                let _ = std::fs::remove_file(&partial);
                entries.remove(&digest);
                drop(entries);
                tracing::warn!(%digest, %reason, "a pull-through fetch failed; nothing of it is kept");
                progress.failed(reason);
                let _ = self.inner.events.send(Event::ContentRemoved(digest));
            }
        }
    }

    fn entry(&self, digest: &Digest) -> Result<Entry, store::Error> {
        self.inner
            .lock()
            .get(digest)
            .ok_or_else(|| store::Error::ContentNotFound {
                digest: digest.clone(),
            })
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait::async_trait]
impl Cache for Spool {
    async fn fill(
        &self,
        digest: &Digest,
        kind: ContentKind,
        size: u64,
        source: Source,
    ) -> Result<Filling, store::Error> {
        let (progress, evicted, file) = {
            let mut entries = self.inner.lock();
            if let Some(entry) = entries.get(digest) {
                return Ok(match entry.state {
                    State::Kept => Filling::Kept,
                    State::Arriving(_) => Filling::Arriving,
                });
            }
            let evicted = self
                .make_room(&mut entries, size)
                .ok_or_else(|| store::Error::Unavailable {
                    reason: format!(
                        "the pull-through cache cannot make room for {size} bytes (capacity {}, all of it being read)",
                        self.inner.capacity
                    ),
                })?;
            // The file exists before anyone can ask to read it.
            let partial = self.partial_path(digest);
            let file = std::fs::File::create(&partial).map_err(|e| store::Error::Unavailable {
                reason: format!("cannot write {}: {e}", partial.display()),
            })?;
            let progress = entries.start(digest.clone(), kind, size);
            (progress, evicted, file)
        };
        self.forget(evicted);
        let _ = self.inner.events.send(Event::ContentAdded(digest.clone()));
        tokio::spawn(
            self.clone()
                .write(digest.clone(), size, (file, source), progress),
        );
        Ok(Filling::Started)
    }

    fn arriving(&self, digest: &Digest) -> bool {
        self.inner
            .lock()
            .get(digest)
            .is_some_and(|entry| matches!(entry.state, State::Arriving(_)))
    }
}

#[async_trait::async_trait]
impl Store for Spool {
    async fn list_images(&self) -> Result<Vec<Image>, store::Error> {
        Ok(Vec::new())
    }

    async fn list_content(&self) -> Result<Vec<ContentInfo>, store::Error> {
        Ok(self.inner.lock().infos())
    }

    async fn resolve(&self, reference: &Reference) -> Result<Image, store::Error> {
        Err(store::Error::ImageNotFound {
            reference: reference.clone(),
        })
    }

    async fn stat(&self, digest: &Digest) -> Result<ContentInfo, store::Error> {
        let entry = self.entry(digest)?;
        Ok(ContentInfo {
            digest: digest.clone(),
            size: entry.size,
            kind: entry.kind,
        })
    }

    async fn read_manifest(&self, digest: &Digest) -> Result<(MediaType, Bytes), store::Error> {
        let entry = self.entry(digest)?;
        let ContentKind::Manifest(media_type) = entry.kind else {
            return Err(store::Error::NotAManifest {
                digest: digest.clone(),
            });
        };
        let mut stream = self.read(digest, None).await?;
        let mut bytes = Vec::with_capacity(usize::try_from(entry.size).unwrap_or(0));
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| store::Error::Unavailable {
                reason: format!("manifest {digest} could not be read: {e}"),
            })?;
            bytes.extend_from_slice(&chunk);
        }
        Ok((media_type, Bytes::from(bytes)))
    }

    async fn read(
        &self,
        digest: &Digest,
        range: Option<Range<u64>>,
    ) -> Result<BlobStream, store::Error> {
        let (entry, guard) = {
            let mut entries = self.inner.lock();
            let entry = entries
                .get(digest)
                .ok_or_else(|| store::Error::ContentNotFound {
                    digest: digest.clone(),
                })?;
            entries.reading(digest);
            let guard = ReadGuard {
                digest: digest.clone(),
                inner: Arc::downgrade(&self.inner),
            };
            (entry, guard)
        };
        let range = store::span(digest, entry.size, range)?;
        let path = match &entry.state {
            State::Kept => self.blob_path(digest),
            State::Arriving(_) => self.partial_path(digest),
        };
        let file =
            std::fs::File::open(&path).or_else(|_| std::fs::File::open(self.blob_path(digest)));
        let file = file.map_err(|_| store::Error::ContentNotFound {
            digest: digest.clone(),
        })?;
        let progress = match entry.state {
            State::Kept => None,
            State::Arriving(progress) => Some(progress),
        };
        Ok(reader::stream(file, range, entry.size, progress, guard))
    }

    fn events(&self) -> EventStream {
        let receiver = self.inner.events.subscribe();
        Box::pin(BroadcastStream::new(receiver).map(|event| event.unwrap_or(Event::Resync)))
    }
}

/// Counts one reader of an entry while it lives (an entry being read is
/// never evicted).
pub(crate) struct ReadGuard {
    digest: Digest,
    inner: std::sync::Weak<Inner>,
}

impl Drop for ReadGuard {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.upgrade() {
            inner.lock().done_reading(&self.digest);
        }
    }
}
