//! [`Containerd`]: the [`Store`] backend over a node's containerd. Image
//! records are read fresh on every call (one cheap `List`); which digests
//! the images reach, and their kinds, come from a cached [`Catalogue`]
//! rebuilt after [`CATALOGUE_TTL`], on a miss once it is older than
//! [`REBUILD_ON_MISS`], or when [`Containerd::refresh`] asks.

use std::collections::HashSet;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kagami_containerd_api::containerd::services::images::v1::ListImagesRequest;
use kagami_core::store::{BlobStream, ContentInfo, ContentKind, Error, EventStream, Image, Store};
use kagami_core::{Digest, MediaType, Reference};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::catalogue::Catalogue;
use crate::client::Client;
use crate::content::Content;
use crate::error::backend;
use crate::watch::Watcher;

/// How long a catalogue is trusted for listings and lookups that hit.
const CATALOGUE_TTL: Duration = Duration::from_secs(5);
/// A lookup that misses rebuilds a catalogue at least this old, so that
/// content imported a moment ago is found while a flood of unknown digests
/// does not make containerd walk every image each time.
const REBUILD_ON_MISS: Duration = Duration::from_secs(1);

/// A catalogue and when its building started.
type Built = (Instant, Arc<Catalogue>);

/// Where containerd is and what to serve from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// containerd's gRPC socket (`--containerd-address`), conventionally
    /// `/run/containerd/containerd.sock`.
    pub address: PathBuf,
    /// The namespace whose images are served (`--containerd-namespace`);
    /// Kubernetes uses `k8s.io`.
    pub namespace: String,
    /// containerd's content directory; `None` asks containerd's
    /// introspection API. Reads fall back to gRPC whenever a file in it
    /// cannot be opened.
    pub content_dir: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            address: PathBuf::from("/run/containerd/containerd.sock"),
            namespace: "k8s.io".to_owned(),
            content_dir: None,
        }
    }
}

/// The images and content one namespace of a containerd holds, as a
/// [`Store`]. Only content reachable from named images is served; CRI's
/// `sha256:<id>` records, digest-only records and names that are not
/// references are not images.
///
/// Clones share one connection and one catalogue.
#[derive(Debug, Clone)]
pub struct Containerd {
    pub(crate) client: Client,
    pub(crate) content: Content,
    catalogue: Arc<Mutex<Option<Built>>>,
    /// Digests already reported missing, so each is logged once.
    reported_missing: Arc<std::sync::Mutex<HashSet<Digest>>>,
}

impl Containerd {
    /// Connects to containerd, checks that it answers, and finds its
    /// content directory unless `config` gives it.
    pub async fn connect(config: Config) -> Result<Containerd, crate::Error> {
        let client = Client::new(&config.address, &config.namespace)?;
        client.ping(&config.address).await?;
        let dir = match config.content_dir {
            Some(dir) => dir,
            None => client.content_dir(&config.address).await?,
        };
        if std::fs::metadata(&dir).is_err() {
            tracing::info!(dir = %dir.display(), "containerd's content directory is not readable here; reading content through gRPC");
        }
        Ok(Containerd {
            content: Content::new(client.clone(), dir),
            client,
            catalogue: Arc::default(),
            reported_missing: Arc::default(),
        })
    }

    /// Rebuilds the catalogue of reachable content now, so that changes
    /// made a moment ago are seen by the next call.
    pub async fn refresh(&self) -> Result<(), Error> {
        self.catalogue(Duration::ZERO).await.map(drop)
    }

    /// The catalogue, rebuilt first if it is older than `max_age`. Callers
    /// queue behind one rebuild rather than each walking containerd.
    pub(crate) async fn catalogue(&self, max_age: Duration) -> Result<Arc<Catalogue>, Error> {
        let mut cached = self.catalogue.lock().await;
        if let Some((built, catalogue)) = cached.as_ref()
            && built.elapsed() < max_age
        {
            return Ok(catalogue.clone());
        }
        Ok(self.rebuild(&mut cached).await?.1)
    }

    /// The named images and a catalogue built from that same listing now
    /// (which also replaces the cached one): a consistent view in one
    /// `List` call.
    pub(crate) async fn snapshot(&self) -> Result<(Vec<Image>, Arc<Catalogue>), Error> {
        let mut cached = self.catalogue.lock().await;
        self.rebuild(&mut cached).await
    }

    async fn rebuild(
        &self,
        cached: &mut Option<Built>,
    ) -> Result<(Vec<Image>, Arc<Catalogue>), Error> {
        let started = Instant::now();
        let images = self.images().await?;
        let catalogue = Arc::new(Catalogue::build(&images, &self.content).await?);
        self.report_missing(&catalogue);
        *cached = Some((started, catalogue.clone()));
        Ok((images, catalogue))
    }

    /// Logs, once per digest, the configs and layers that images name but
    /// containerd does not hold (`discard_unpacked_layers` deletes layers
    /// after unpacking): they are neither served nor advertised.
    fn report_missing(&self, catalogue: &Catalogue) {
        let mut reported = self
            .reported_missing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let new: Vec<&Digest> = catalogue
            .missing
            .iter()
            .filter(|digest| reported.insert((*digest).clone()))
            .collect();
        if let Some(first) = new.first() {
            tracing::warn!(
                count = new.len(),
                first = %first,
                "images name layers that containerd's content store does not hold (discard_unpacked_layers?); they are not served or advertised"
            );
        }
    }

    /// The kind of a reachable digest, rebuilding a catalogue that misses.
    async fn kind(&self, digest: &Digest) -> Result<ContentKind, Error> {
        for max_age in [CATALOGUE_TTL, REBUILD_ON_MISS] {
            let catalogue = self.catalogue(max_age).await?;
            if let Some(info) = catalogue.content.get(digest) {
                return Ok(info.kind);
            }
        }
        Err(Error::ContentNotFound {
            digest: digest.clone(),
        })
    }

    /// Every image record that is a named, tagged image.
    pub(crate) async fn images(&self) -> Result<Vec<Image>, Error> {
        let request = self.client.request(ListImagesRequest { filters: vec![] });
        let response = self.client.images().list(request).await;
        let records = response
            .map_err(|s| backend(s, "list images"))?
            .into_inner()
            .images;
        let mut images = Vec::with_capacity(records.len());
        for record in records {
            let Some(reference) = image_name(&record.name) else {
                continue;
            };
            let Some(target) = record.target else {
                continue;
            };
            let Ok(digest) = target.digest.parse::<Digest>() else {
                tracing::debug!(
                    name = record.name,
                    digest = target.digest,
                    "image target is not a digest; skipped"
                );
                continue;
            };
            let size = u64::try_from(target.size).unwrap_or_default();
            let media_type = match target.media_type.parse::<MediaType>() {
                Ok(media_type) => media_type,
                Err(_) => match self.detect(&digest, size).await? {
                    Some(media_type) => media_type,
                    None => continue,
                },
            };
            images.push(Image {
                reference,
                digest,
                media_type,
                size,
            });
        }
        Ok(images)
    }

    /// The type of a manifest whose descriptor did not say it.
    async fn detect(&self, digest: &Digest, size: u64) -> Result<Option<MediaType>, Error> {
        match self.content.read_whole(digest, size).await {
            Ok(bytes) => Ok(MediaType::detect(&bytes)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The reference an image record names, if it is a tagged image name:
/// CRI's `sha256:<id>` records and `name@digest` records are not.
fn image_name(name: &str) -> Option<Reference> {
    if name.starts_with("sha256:") {
        return None;
    }
    let reference = name.parse::<Reference>().ok()?;
    let tag = reference.tag()?.clone();
    Some(Reference::tagged(
        reference.registry().clone(),
        reference.repository().clone(),
        tag,
    ))
}

#[async_trait::async_trait]
impl Store for Containerd {
    async fn list_images(&self) -> Result<Vec<Image>, Error> {
        self.images().await
    }

    async fn list_content(&self) -> Result<Vec<ContentInfo>, Error> {
        let catalogue = self.catalogue(CATALOGUE_TTL).await?;
        Ok(catalogue.content.values().cloned().collect())
    }

    async fn resolve(&self, reference: &Reference) -> Result<Image, Error> {
        let not_found = || Error::ImageNotFound {
            reference: reference.clone(),
        };
        let wanted = image_name(&reference.to_string()).ok_or_else(not_found)?;
        let images = self.images().await?;
        let image = images.into_iter().find(|i| i.reference == wanted);
        image.ok_or_else(not_found)
    }

    async fn stat(&self, digest: &Digest) -> Result<ContentInfo, Error> {
        let kind = self.kind(digest).await?;
        // The size comes from containerd itself, which also tells whether
        // the content is still there since the catalogue was built.
        let size = self.content.size(digest).await?;
        Ok(ContentInfo {
            digest: digest.clone(),
            size,
            kind,
        })
    }

    async fn read_manifest(&self, digest: &Digest) -> Result<(MediaType, Bytes), Error> {
        let info = self.stat(digest).await?;
        let ContentKind::Manifest(media_type) = info.kind else {
            return Err(Error::NotAManifest {
                digest: digest.clone(),
            });
        };
        let bytes = self.content.read_whole(digest, info.size).await?;
        Ok((media_type, bytes))
    }

    async fn read(&self, digest: &Digest, range: Option<Range<u64>>) -> Result<BlobStream, Error> {
        let info = self.stat(digest).await?;
        let range = kagami_core::store::span(digest, info.size, range)?;
        self.content.open(digest, range).await
    }

    /// Follows containerd's own event stream; see [`crate::watch`].
    fn events(&self) -> EventStream {
        let rx = Watcher::spawn(self.clone());
        Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
    }
}
