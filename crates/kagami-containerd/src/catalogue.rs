//! The catalogue: which digests the named images of a namespace reach, and
//! whether each is a manifest (of which type) or a blob. It is built by
//! walking from every image's target — indexes to their manifests,
//! manifests to their config and layers — and only digests containerd
//! holds are kept, so a node that pulled one platform of an index serves
//! just that platform.

use std::collections::{BTreeSet, HashMap, VecDeque};

use kagami_core::manifest::Links;
use kagami_core::store::{ContentInfo, ContentKind, Error, Image};
use kagami_core::{Digest, MediaType};

use crate::content::Content;

/// Anything larger is not read as a manifest (registries cap them at 4 MiB).
const MANIFEST_LIMIT: u64 = 4 << 20;

/// What the named images reach, with sizes and kinds.
#[derive(Debug, Default)]
pub(crate) struct Catalogue {
    pub(crate) content: HashMap<Digest, ContentInfo>,
    /// Configs and layers of held manifests that containerd does not hold.
    /// (Manifests an index names but that are absent are not listed: a node
    /// pulls only its own platform.)
    pub(crate) missing: BTreeSet<Digest>,
}

/// A digest to visit, and what the descriptor pointing at it says.
struct Visit {
    digest: Digest,
    /// The descriptor's media type, when it names a manifest type.
    declared: Option<MediaType>,
    /// Whether it may be a manifest at all (configs and layers may not).
    may_be_manifest: bool,
}

impl Catalogue {
    /// Walks every image's target, reading manifests through `content`.
    pub(crate) async fn build(images: &[Image], content: &Content) -> Result<Catalogue, Error> {
        let held = content.list().await?;
        let mut catalogue = Catalogue::default();
        let mut queue: VecDeque<Visit> = images
            .iter()
            .map(|image| Visit {
                digest: image.digest.clone(),
                declared: Some(image.media_type),
                may_be_manifest: true,
            })
            .collect();
        while let Some(visit) = queue.pop_front() {
            if catalogue.content.contains_key(&visit.digest) {
                continue;
            }
            let Some(&size) = held.get(&visit.digest) else {
                if !visit.may_be_manifest {
                    catalogue.missing.insert(visit.digest);
                }
                continue;
            };
            let kind = if visit.may_be_manifest && size <= MANIFEST_LIMIT {
                manifest_kind(content, &visit, size, &mut queue).await?
            } else {
                ContentKind::Blob
            };
            let digest = visit.digest;
            let info = ContentInfo {
                digest: digest.clone(),
                size,
                kind,
            };
            catalogue.content.insert(digest, info);
        }
        Ok(catalogue)
    }
}

/// Reads a manifest candidate, queues what it points at and says its kind.
async fn manifest_kind(
    content: &Content,
    visit: &Visit,
    size: u64,
    queue: &mut VecDeque<Visit>,
) -> Result<ContentKind, Error> {
    let bytes = match content.read_whole(&visit.digest, size).await {
        Ok(bytes) => bytes,
        // Deleted while walking: leave it out rather than fail the walk.
        Err(e) if e.is_not_found() => return Ok(ContentKind::Blob),
        Err(e) => return Err(e),
    };
    let Some(media_type) = visit.declared.or_else(|| MediaType::detect(&bytes)) else {
        return Ok(ContentKind::Blob);
    };
    let Ok(links) = Links::parse(&bytes) else {
        tracing::warn!(digest = %visit.digest, "a manifest that is not valid JSON; serving it as a blob");
        return Ok(ContentKind::Blob);
    };
    let index = media_type.is_index();
    for link in links.children(media_type) {
        queue.push_back(Visit {
            digest: link.digest.clone(),
            declared: if index {
                link.media_type.parse().ok()
            } else {
                None
            },
            may_be_manifest: index,
        });
    }
    Ok(ContentKind::Manifest(media_type))
}
