//! Air-gap images: archives (`docker save` or OCI, plain, gzip or zstd)
//! placed in `<data-dir>/agent/images/` are copied into containerd and
//! pinned, at start and whenever a file appears or changes. Each archive
//! is read into a scratch OCI layout first (kagami-store parses and
//! verifies it), then copied with [`Containerd::ingest`]. At start the
//! pins kagami set before are taken back, so that an archive removed from
//! the directory leaves its images to kubelet's garbage collection.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kagami_containerd::{Containerd, ImageLabels};
use kagami_store::Layout;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::errors::chain;

/// How often the directory is looked at.
const POLL: Duration = Duration::from_secs(2);
/// How long a copy into containerd that failed waits before it is tried
/// again (an archive that cannot be read waits for the file to change).
const RETRY_AFTER: Duration = Duration::from_secs(30);
/// Scratch layouts are `<data-dir>/agent/.airgap-*`.
const SCRATCH_PREFIX: &str = ".airgap-";

/// Where air-gap archives are placed.
pub(crate) fn images_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("agent").join("images")
}

/// The air-gap importer, running in its own task; stops when dropped.
#[derive(Debug)]
pub(crate) struct AirGap {
    task: JoinHandle<()>,
}

impl AirGap {
    /// Starts importing the archives of `<data_dir>/agent/images/` into
    /// `containerd`; returns at once.
    pub(crate) fn spawn(containerd: Arc<Containerd>, data_dir: &Path) -> AirGap {
        let importer = Importer {
            containerd,
            dir: images_dir(data_dir),
            scratch: data_dir.join("agent"),
            files: HashMap::new(),
        };
        AirGap {
            task: tokio::spawn(importer.run()),
        }
    }
}

impl Drop for AirGap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A file's size and modification time: when both hold still between two
/// looks, the file is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Stamp {
    size: u64,
    modified: SystemTime,
}

/// What is known of one file of the directory.
#[derive(Debug, Clone, Copy)]
enum State {
    /// Seen once like this; imported if it looks the same next time.
    Seen(Stamp),
    /// Imported as it is.
    Imported(Stamp),
    /// Not a readable archive as it is; tried again when it changes.
    Bad(Stamp),
    /// Could not be copied into containerd; tried again after a while.
    Failed(Stamp, Instant),
}

struct Importer {
    containerd: Arc<Containerd>,
    dir: PathBuf,
    /// Where scratch layouts are made.
    scratch: PathBuf,
    files: HashMap<PathBuf, State>,
}

impl Importer {
    async fn run(mut self) {
        if let Err(e) = tokio::fs::create_dir_all(&self.dir).await {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot create the air-gap images directory");
        }
        self.remove_old_scratch().await;
        match self.containerd.unpin().await {
            Ok(unpinned) if !unpinned.is_empty() => tracing::info!(
                count = unpinned.len(),
                "took back the pins kagami set before; the archives present pin their images again"
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %chain(&e), "cannot take back the pins kagami set before")
            }
        }
        tracing::info!(dir = %self.dir.display(), "importing air-gap images from this directory");
        let mut first = true;
        loop {
            self.poll(first).await;
            first = false;
            tokio::time::sleep(POLL).await;
        }
    }

    /// Looks at the directory once, importing what is ready.
    async fn poll(&mut self, first: bool) {
        let listing = match list(&self.dir).await {
            Ok(listing) => listing,
            Err(e) => {
                tracing::debug!(dir = %self.dir.display(), error = %e, "cannot list the air-gap images directory");
                return;
            }
        };
        self.files.retain(|path, _| listing.contains_key(path));
        let mut listing: Vec<_> = listing.into_iter().collect();
        listing.sort();
        for (path, stamp) in listing {
            // Files there before we started are complete; others must
            // hold still between two looks.
            let ready = match self.files.get(&path) {
                None => first,
                Some(State::Seen(seen)) => *seen == stamp,
                Some(State::Imported(seen) | State::Bad(seen)) if *seen == stamp => continue,
                Some(State::Failed(seen, retry)) if *seen == stamp => {
                    if Instant::now() < *retry {
                        continue;
                    }
                    true
                }
                Some(_) => false,
            };
            let state = if ready {
                self.import(&path, stamp).await
            } else {
                State::Seen(stamp)
            };
            self.files.insert(path, state);
        }
    }

    /// Reads one archive into a scratch layout and copies its images into
    /// containerd, pinned.
    async fn import(&self, path: &Path, stamp: Stamp) -> State {
        let file = path.display();
        let scratch = match tempfile::Builder::new()
            .prefix(SCRATCH_PREFIX)
            .tempdir_in(&self.scratch)
        {
            Ok(scratch) => scratch,
            Err(e) => {
                tracing::warn!(%file, error = %e, "cannot make a scratch directory to import an air-gap archive; retrying later");
                return State::Failed(stamp, Instant::now() + RETRY_AFTER);
            }
        };
        let state = self
            .import_into(path, stamp, &scratch.path().join("layout"))
            .await;
        // A scratch layout may hold gigabytes: remove it off the workers.
        let _ = tokio::task::spawn_blocking(move || drop(scratch)).await;
        state
    }

    async fn import_into(&self, path: &Path, stamp: Stamp, root: &Path) -> State {
        let file = path.display();
        let read = async {
            let layout = Layout::open(root).await?;
            let images = layout.import(path).await?;
            Ok::<_, kagami_store::Error>((layout, images))
        };
        let (layout, images) = match read.await {
            Ok(read) => read,
            Err(e) if is_about_the_archive(&e) => {
                tracing::warn!(%file, error = %chain(&e), "not an importable image archive; skipped until the file changes");
                return State::Bad(stamp);
            }
            Err(e) => {
                tracing::warn!(%file, error = %chain(&e), "cannot read an air-gap archive; retrying in {RETRY_AFTER:?}");
                return State::Failed(stamp, Instant::now() + RETRY_AFTER);
            }
        };
        match self
            .containerd
            .ingest(&layout, &images, &ImageLabels::pinned())
            .await
        {
            Ok(images) => {
                for image in images {
                    tracing::info!(image = %image.reference, digest = %image.digest, %file, "air-gap image imported and pinned");
                }
                State::Imported(stamp)
            }
            Err(e) => {
                tracing::warn!(%file, error = %chain(&e), "cannot copy air-gap images into containerd; retrying in {RETRY_AFTER:?}");
                State::Failed(stamp, Instant::now() + RETRY_AFTER)
            }
        }
    }

    /// Removes scratch layouts a crash left behind.
    async fn remove_old_scratch(&self) {
        let scratch = self.scratch.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let Ok(entries) = std::fs::read_dir(&scratch) else {
                return;
            };
            for entry in entries.flatten() {
                if entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with(SCRATCH_PREFIX)
                {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        })
        .await;
    }
}

/// The regular files of `dir` (dot files, such as partial copies, left
/// out) with their stamps.
async fn list(dir: &Path) -> std::io::Result<HashMap<PathBuf, Stamp>> {
    let mut listing = HashMap::new();
    let mut entries = tokio::fs::read_dir(dir).await?;
    while let Some(entry) = entries.next_entry().await? {
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        // Follows symlinks: an operator may link archives in.
        let Ok(metadata) = tokio::fs::metadata(entry.path()).await else {
            continue;
        };
        if !metadata.is_file() {
            continue;
        }
        let stamp = Stamp {
            size: metadata.len(),
            modified: metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        };
        listing.insert(entry.path(), stamp);
    }
    Ok(listing)
}

/// Whether an import failed because of what the archive holds (rather
/// than the scratch layout's disk), so that trying again is pointless
/// until the file changes.
fn is_about_the_archive(error: &kagami_store::Error) -> bool {
    use kagami_store::Error as E;
    !matches!(
        error,
        E::CreateLayout { .. }
            | E::InvalidLayout { .. }
            | E::ReadLayout { .. }
            | E::WriteLayout { .. }
            | E::Lock { .. }
            | E::LockTimeout { .. }
            | E::ReadContent { .. }
            | E::Task { .. }
    )
}
