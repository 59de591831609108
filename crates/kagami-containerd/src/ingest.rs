//! Copying images from another [`Store`] into containerd, as containerd's
//! own pulls leave them: every piece of content labelled with where it
//! came from (`containerd.io/distribution.source.<host>`), manifests and
//! indexes with the garbage-collection references that keep their
//! children, and an image record naming the top manifest, optionally
//! pinned against kubelet's image garbage collection. Pins kagami set
//! carry a mark of kagami's own, so that [`Containerd::unpin`] removes
//! those and no others.

use std::collections::{BTreeMap, HashMap};

use futures::future::BoxFuture;
use kagami_containerd_api::containerd::services::images::v1::{
    CreateImageRequest, Image as ImageRecord, ListImagesRequest, UpdateImageRequest,
};
use kagami_containerd_api::containerd::types::Descriptor;
use kagami_containerd_api::tonic::Code;
use kagami_core::manifest::{Descriptor as Link, Links};
use kagami_core::store::{Image, Store};
use kagami_core::{Digest, MediaType};

use crate::write::{ContentLabels, DISTRIBUTION_SOURCE, Lease};
use crate::{Containerd, Error};

/// CRI's label that keeps an image from kubelet's garbage collection.
pub const CRI_PIN_LABEL: &str = "io.cri-containerd.pinned";
/// kagami's mark on the pins it set (value `airgap`).
pub const KAGAMI_PIN_LABEL: &str = "io.kagami.pinned";
/// Nested indexes deeper than this are refused.
const MAX_DEPTH: usize = 4;
/// containerd's garbage-collection reference labels on a manifest or index.
const GC_REF: &str = "containerd.io/gc.ref.content";

/// The labels the image records that [`Containerd::ingest`] makes carry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageLabels {
    labels: BTreeMap<String, String>,
}

impl ImageLabels {
    /// No labels: the image is kept or collected like any other.
    pub fn none() -> ImageLabels {
        ImageLabels::default()
    }

    /// CRI's pin (`io.cri-containerd.pinned=pinned`), marked as set by
    /// kagami (`io.kagami.pinned=airgap`) so that [`Containerd::unpin`]
    /// can take it back.
    pub fn pinned() -> ImageLabels {
        ImageLabels {
            labels: BTreeMap::from([
                (CRI_PIN_LABEL.to_owned(), "pinned".to_owned()),
                (KAGAMI_PIN_LABEL.to_owned(), "airgap".to_owned()),
            ]),
        }
    }

    /// The labels, by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl Containerd {
    /// Copies `images`, each with what `source` holds of it (an index with
    /// the platforms it holds, manifests with their config and layers),
    /// into containerd, and names each in an image record labelled
    /// `labels`. Content containerd already has is not copied again, only
    /// labelled; bytes are streamed from `source` and checked by
    /// containerd against their digest and size. An image whose copy fails
    /// gets no record (what was copied of it is garbage collected later);
    /// the images before it stay. Returns the images recorded.
    pub async fn ingest(
        &self,
        source: &dyn Store,
        images: &[Image],
        labels: &ImageLabels,
    ) -> Result<Vec<Image>, Error> {
        for image in images {
            let name = image.reference.to_string();
            let lease = Lease::create(&self.client, &name).await?;
            let copied = Transfer {
                lease: &lease,
                source,
                origin: (
                    format!("{DISTRIBUTION_SOURCE}{}", image.reference.registry()),
                    image.reference.repository().to_string(),
                ),
            }
            .manifest(&image.digest, image.size, 0)
            .await;
            let saved = match copied {
                Ok(()) => self.save_image(&name, image, labels).await,
                Err(e) => Err(e),
            };
            lease.delete().await;
            saved?;
            tracing::debug!(image = name, digest = %image.digest, "image copied into containerd");
        }
        // So that the store serves them now, not when its catalogue ages.
        if let Err(e) = self.refresh().await {
            tracing::debug!(error = %e, "cannot refresh the catalogue after an ingest");
        }
        Ok(images.to_vec())
    }

    /// Points the record `name` at the image's top manifest, with `labels`
    /// added to any it has.
    async fn save_image(
        &self,
        name: &str,
        image: &Image,
        labels: &ImageLabels,
    ) -> Result<(), Error> {
        let record = ImageRecord {
            name: name.to_owned(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            target: Some(Descriptor {
                media_type: image.media_type.to_string(),
                digest: image.digest.to_string(),
                size: i64::try_from(image.size).unwrap_or(i64::MAX),
                annotations: HashMap::new(),
            }),
            created_at: None,
            updated_at: None,
        };
        let save_error = |status| Error::SaveImage {
            name: name.to_owned(),
            source: Box::new(status),
        };
        let request = self.client.request(CreateImageRequest {
            image: Some(record.clone()),
            source_date_epoch: None,
        });
        match self.client.images().create(request).await {
            Ok(_) => return Ok(()),
            Err(status) if status.code() == Code::AlreadyExists => {}
            Err(status) => return Err(save_error(status)),
        }
        let paths = std::iter::once("target".to_owned())
            .chain(labels.iter().map(|(key, _)| format!("labels.{key}")))
            .collect();
        let request = self.client.request(UpdateImageRequest {
            image: Some(record),
            update_mask: Some(prost_types::FieldMask { paths }),
            source_date_epoch: None,
        });
        self.client
            .images()
            .update(request)
            .await
            .map_err(save_error)?;
        Ok(())
    }

    /// Removes the pins kagami set (records carrying `io.kagami.pinned`),
    /// leaving pins set by anyone else alone, and returns the names
    /// unpinned.
    pub async fn unpin(&self) -> Result<Vec<String>, Error> {
        let request = self.client.request(ListImagesRequest { filters: vec![] });
        let records = self
            .client
            .images()
            .list(request)
            .await
            .map_err(|status| Error::ListImages {
                source: Box::new(status),
            })?
            .into_inner()
            .images;
        let mut unpinned = Vec::new();
        for record in records {
            if !record.labels.contains_key(KAGAMI_PIN_LABEL) {
                continue;
            }
            // Masked keys absent from the record are removed.
            let paths = [CRI_PIN_LABEL, KAGAMI_PIN_LABEL]
                .map(|key| format!("labels.{key}"))
                .into();
            let request = self.client.request(UpdateImageRequest {
                image: Some(ImageRecord {
                    name: record.name.clone(),
                    labels: HashMap::new(),
                    ..ImageRecord::default()
                }),
                update_mask: Some(prost_types::FieldMask { paths }),
                source_date_epoch: None,
            });
            match self.client.images().update(request).await {
                Ok(_) => unpinned.push(record.name),
                // Removed meanwhile: nothing left to unpin.
                Err(status) if status.code() == Code::NotFound => {}
                Err(status) => {
                    return Err(Error::Unpin {
                        name: record.name,
                        source: Box::new(status),
                    });
                }
            }
        }
        Ok(unpinned)
    }
}

/// One image being copied under one lease.
struct Transfer<'a> {
    lease: &'a Lease,
    source: &'a dyn Store,
    /// The distribution source label and repository of the image.
    origin: (String, String),
}

impl Transfer<'_> {
    /// Copies a manifest or index after everything it reaches, so that a
    /// copy cut short never leaves a manifest without its children.
    fn manifest<'a>(
        &'a self,
        digest: &'a Digest,
        size: u64,
        depth: usize,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            if depth > MAX_DEPTH {
                return Err(Error::NestedTooDeep {
                    digest: digest.clone(),
                    limit: MAX_DEPTH,
                });
            }
            let (media_type, bytes) =
                self.source
                    .read_manifest(digest)
                    .await
                    .map_err(|e| Error::ReadSource {
                        digest: digest.clone(),
                        source: Box::new(e),
                    })?;
            let links = Links::parse(&bytes).map_err(|source| Error::ParseManifest {
                digest: digest.clone(),
                source,
            })?;
            let refs = if media_type.is_index() {
                self.children(links.manifests, depth).await?
            } else {
                self.blobs(links.config, links.layers).await?
            };
            self.put(digest, size, refs).await
        })
    }

    /// Copies the manifests of an index that the source holds (a node
    /// keeps only its own platforms), and returns their references.
    async fn children(
        &self,
        manifests: Vec<Link>,
        depth: usize,
    ) -> Result<BTreeMap<String, String>, Error> {
        let mut refs = BTreeMap::new();
        for (i, child) in manifests.into_iter().enumerate() {
            match self.source.stat(&child.digest).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {
                    tracing::debug!(digest = %child.digest, "index child not in the source; skipped");
                    continue;
                }
                Err(e) => {
                    return Err(Error::ReadSource {
                        digest: child.digest,
                        source: Box::new(e),
                    });
                }
            }
            if child.media_type.parse::<MediaType>().is_ok() {
                self.manifest(&child.digest, child.size, depth + 1).await?;
            } else {
                self.put(&child.digest, child.size, BTreeMap::new()).await?;
            }
            refs.insert(format!("{GC_REF}.m.{i}"), child.digest.to_string());
        }
        Ok(refs)
    }

    /// Copies a manifest's config and layers, and returns their references
    /// (numbered as containerd numbers a manifest's children).
    async fn blobs(
        &self,
        config: Option<Link>,
        layers: Vec<Link>,
    ) -> Result<BTreeMap<String, String>, Error> {
        let mut refs = BTreeMap::new();
        let children = config.into_iter().map(|c| (true, c));
        let children = children.chain(layers.into_iter().map(|l| (false, l)));
        for (i, (is_config, blob)) in children.enumerate() {
            self.put(&blob.digest, blob.size, BTreeMap::new()).await?;
            let key = if is_config {
                format!("{GC_REF}.config")
            } else {
                format!("{GC_REF}.l.{i}")
            };
            refs.insert(key, blob.digest.to_string());
        }
        Ok(refs)
    }

    async fn put(
        &self,
        digest: &Digest,
        size: u64,
        refs: BTreeMap<String, String>,
    ) -> Result<(), Error> {
        let labels = ContentLabels {
            source: self.origin.clone(),
            fixed: refs,
        };
        self.lease.put(self.source, digest, size, &labels).await
    }
}
