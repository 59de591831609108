//! [`Layout`]: an OCI image-layout directory as a [`Store`], with import
//! and remove, and the catalogue and events kept in step with the files.
//!
//! [`Store`]: kagami_core::store::Store

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use kagami_core::Reference;
use kagami_core::store::{Event, Image};
use tokio::sync::{Mutex, broadcast, oneshot};

use crate::catalogue::{Catalogue, Stamp};
use crate::collect::{self, Collected};
use crate::error::blocking;
use crate::index_file::{IndexFile, check_oci_layout, initialise};
use crate::lock::with_write_lock;
use crate::paths::{LOCK, Paths, TMP};
use crate::{Error, import, remove, watch};

/// How a [`Layout`] behaves; [`Options::default`] suits a node.
#[derive(Debug, Clone)]
pub struct Options {
    /// How often `index.json` is checked for changes made by another
    /// process (default 1 s).
    pub poll_interval: Duration,
    /// How long an import or remove waits for another writer to finish
    /// (default 10 min: a writer holds the lock for a whole import).
    pub lock_timeout: Duration,
    /// How many events a subscriber may fall behind before it gets
    /// [`Event::Resync`] (default 1024).
    pub event_capacity: usize,
    /// Largest JSON file read into memory: `index.json`, `manifest.json`, a
    /// manifest (default 4 MiB).
    pub max_json_size: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            poll_interval: Duration::from_secs(1),
            lock_timeout: Duration::from_secs(600),
            event_capacity: 1024,
            max_json_size: 4 * 1024 * 1024,
        }
    }
}

/// An OCI image-layout directory (`oci-layout`, `index.json`,
/// `blobs/<alg>/<hex>`) serving as a [`Store`](kagami_core::store::Store).
///
/// Cheap to clone; clones share one catalogue and one event channel. A
/// background task watches `index.json` for changes made by other
/// processes and stops when the last clone is dropped.
#[derive(Clone)]
pub struct Layout {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) paths: Paths,
    pub(crate) options: Options,
    catalogue: RwLock<Arc<Catalogue>>,
    /// One refresh at a time, so that each change is announced once.
    refreshing: Mutex<()>,
    pub(crate) events: broadcast::Sender<Event>,
    /// Dropped with the last clone, which ends the watcher.
    _stop_watching: oneshot::Sender<()>,
}

impl Layout {
    /// Opens the layout at `root` with default [`Options`], creating the
    /// directory (mode 0700) and an empty layout if there is none.
    pub async fn open(root: impl Into<PathBuf>) -> Result<Layout, Error> {
        Layout::open_with(root, Options::default()).await
    }

    /// Opens the layout at `root`. A directory that holds other things, or
    /// a bad `oci-layout` or `index.json`, is refused with an error naming
    /// the file and what is wrong. Must be called within a tokio runtime.
    pub async fn open_with(root: impl Into<PathBuf>, options: Options) -> Result<Layout, Error> {
        let paths = Paths::new(root.into());
        let catalogue = {
            let (paths, options) = (paths.clone(), options.clone());
            blocking("open the layout", move || {
                prepare(&paths, &options)?;
                Catalogue::load(&paths, options.max_json_size)
            })
            .await?
        };
        let (events, _) = broadcast::channel(options.event_capacity.max(1));
        let (stop, stopped) = oneshot::channel();
        let interval = options.poll_interval;
        let inner = Arc::new(Inner {
            paths,
            options,
            catalogue: RwLock::new(Arc::new(catalogue)),
            refreshing: Mutex::new(()),
            events,
            _stop_watching: stop,
        });
        watch::spawn(Arc::downgrade(&inner), interval, stopped);
        Ok(Layout { inner })
    }

    /// The layout directory.
    pub fn root(&self) -> &Path {
        self.inner.paths.root()
    }

    /// Imports a `docker save` or OCI archive (plain, gzip or zstd; told
    /// apart by content, not name) and returns the images it named, once
    /// they are served. All or nothing: a bad archive leaves no name, blob
    /// or temporary file behind. A name that already exists moves to the
    /// new image. Safe to cancel: the import then finishes (or cleans up)
    /// on its own, and the watcher announces it.
    ///
    /// The archive is opened twice (a FIFO must be fed twice; standard
    /// input will not do): the first pass writes nothing, the second only
    /// the files the named images reference. An archive is refused before
    /// anything is written when its unreferenced files hold more than
    /// [`MAX_UNREFERENCED_BYTES`](crate::MAX_UNREFERENCED_BYTES), when a
    /// referenced file is not the size its descriptor says, or when it
    /// decompresses past [`EXPANSION_RATIO`](crate::EXPANSION_RATIO) times
    /// its size (and [`EXPANSION_FLOOR`](crate::EXPANSION_FLOOR)). What
    /// imports killed part-way left is collected first, as
    /// [`Layout::collect_garbage`] does.
    pub async fn import(&self, archive: &Path) -> Result<Vec<Image>, Error> {
        let (paths, options, archive) = (
            self.inner.paths.clone(),
            self.inner.options.clone(),
            archive.to_owned(),
        );
        let images = blocking("import an archive", move || {
            import::import(&paths, &options, &archive)
        })
        .await?;
        self.inner.refresh(true).await?;
        Ok(images)
    }

    /// Collects the layout's garbage: deletes the blob files that no entry
    /// of `index.json` reaches and empties `.tmp`, which is what imports
    /// killed part-way leave. Takes the writers' lock, so it never races an
    /// import or a remove (it waits for them, up to
    /// [`Options::lock_timeout`]). When a manifest cannot be read, the blobs
    /// of that image are unknown: no blob is deleted, and a warning is
    /// logged. Imports run the same collection first. Safe to cancel: the
    /// collection then finishes on its own.
    pub async fn collect_garbage(&self) -> Result<Collected, Error> {
        let (paths, options) = (self.inner.paths.clone(), self.inner.options.clone());
        blocking("collect garbage", move || {
            with_write_lock(&paths, options.lock_timeout, || {
                collect::collect(&paths, options.max_json_size)
            })
        })
        .await
    }

    /// Removes a name, and deletes the blobs no remaining image uses.
    pub async fn remove(&self, reference: &Reference) -> Result<Image, Error> {
        let (paths, options, reference) = (
            self.inner.paths.clone(),
            self.inner.options.clone(),
            reference.clone(),
        );
        let image = blocking("remove an image", move || {
            remove::remove(&paths, &options, &reference)
        })
        .await?;
        self.inner.refresh(true).await?;
        Ok(image)
    }
}

impl std::fmt::Debug for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layout")
            .field("root", &self.inner.paths.root())
            .field("images", &self.inner.catalogue().images.len())
            .finish()
    }
}

impl Inner {
    /// The current catalogue; cheap, and never blocks on a refresh.
    pub(crate) fn catalogue(&self) -> Arc<Catalogue> {
        let guard = self.catalogue.read().unwrap_or_else(|e| e.into_inner());
        Arc::clone(&guard)
    }

    /// Re-reads `index.json` if it changed (or always, with `force`),
    /// swaps the catalogue, and announces the difference.
    pub(crate) async fn refresh(&self, force: bool) -> Result<(), Error> {
        let _one_at_a_time = self.refreshing.lock().await;
        let current = self.catalogue();
        let known = current.stamp;
        let (paths, limit) = (self.paths.clone(), self.options.max_json_size);
        let loaded = blocking("re-read index.json", move || {
            if !force && Stamp::of(&paths.index()).ok() == known && known.is_some() {
                return Ok(None);
            }
            Catalogue::load(&paths, limit).map(Some)
        })
        .await?;
        let Some(new) = loaded else {
            return Ok(());
        };
        let events = current.diff(&new);
        *self.catalogue.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(new);
        for event in events {
            // No subscriber is fine: nobody is listening yet.
            let _ = self.events.send(event);
        }
        Ok(())
    }
}

/// Creates the directory and an empty layout if needed, then checks the
/// layout files. Blocking.
fn prepare(paths: &Paths, options: &Options) -> Result<(), Error> {
    let root = paths.root();
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
        .map_err(|source| Error::CreateLayout {
            root: root.to_owned(),
            source,
        })?;
    if !paths.oci_layout().exists() && !paths.index().exists() {
        with_write_lock(paths, options.lock_timeout, || {
            // Checked again under the lock: another process may have won.
            if paths.oci_layout().exists() || paths.index().exists() {
                return Ok(());
            }
            if holds_foreign_files(root).map_err(|source| Error::ReadLayout {
                path: root.to_owned(),
                source,
            })? {
                return Err(Error::InvalidLayout {
                    path: root.to_owned(),
                    reason: "the directory is not empty and has no oci-layout file".into(),
                });
            }
            initialise(paths)
        })?;
    }
    if !paths.oci_layout().exists() {
        return Err(Error::InvalidLayout {
            path: paths.oci_layout(),
            reason: "missing (index.json exists)".into(),
        });
    }
    if !paths.index().exists() {
        return Err(Error::InvalidLayout {
            path: paths.index(),
            reason: "missing (oci-layout exists)".into(),
        });
    }
    check_oci_layout(paths)?;
    IndexFile::read(paths, options.max_json_size).map(drop)
}

/// Whether the directory holds anything but our own lock and scratch space.
fn holds_foreign_files(root: &Path) -> io::Result<bool> {
    for entry in fs::read_dir(root)? {
        let name = entry?.file_name();
        if name != LOCK && name != TMP {
            return Ok(true);
        }
    }
    Ok(false)
}
