//! The advertiser's model of the store, and the keys it should advertise:
//! every readable digest, every tag whose manifest is readable (a tag
//! whose manifest cannot be served would only send peers to a 404), and
//! every digest the pull-through cache holds or is receiving.

use std::collections::{BTreeSet, HashMap, HashSet};

use kagami_core::store::Image;
use kagami_core::{Digest, Key};

use crate::AdvertisePolicy;

pub(crate) struct Holdings {
    policy: AdvertisePolicy,
    /// Tag key → the manifest digest it names.
    tags: HashMap<Key, Digest>,
    content: HashSet<Digest>,
    /// What the pull-through cache holds or receives: content fetched for
    /// a shared registry, advertised as it is, with no image to reach it.
    cached: HashSet<Digest>,
}

impl Holdings {
    pub(crate) fn new(policy: AdvertisePolicy) -> Holdings {
        Holdings {
            policy,
            tags: HashMap::new(),
            content: HashSet::new(),
            cached: HashSet::new(),
        }
    }

    /// Replaces the model with a fresh listing.
    pub(crate) fn replace(&mut self, images: Vec<Image>, content: impl Iterator<Item = Digest>) {
        self.tags.clear();
        self.content = content.collect();
        for image in &images {
            self.image_added(image);
        }
    }

    pub(crate) fn image_added(&mut self, image: &Image) {
        if let Some(key) = self.tag_key(image) {
            self.tags.insert(key, image.digest.clone());
        }
    }

    /// A tag was removed, or moved away from `image.digest`. When it has
    /// already been seen pointing elsewhere, that newer state stands.
    pub(crate) fn image_removed(&mut self, image: &Image) {
        if let Some(key) = self.tag_key(image)
            && self.tags.get(&key) == Some(&image.digest)
        {
            self.tags.remove(&key);
        }
    }

    pub(crate) fn content_added(&mut self, digest: Digest) {
        self.content.insert(digest);
    }

    pub(crate) fn content_removed(&mut self, digest: &Digest) {
        self.content.remove(digest);
    }

    /// Replaces what the cache holds with a fresh listing.
    pub(crate) fn replace_cached(&mut self, cached: impl Iterator<Item = Digest>) {
        self.cached = cached.collect();
    }

    pub(crate) fn cached_added(&mut self, digest: Digest) {
        self.cached.insert(digest);
    }

    pub(crate) fn cached_removed(&mut self, digest: &Digest) {
        self.cached.remove(digest);
    }

    pub(crate) fn desired(&self) -> BTreeSet<Key> {
        let digests = self.content.union(&self.cached).cloned().map(Key::Digest);
        let tags = self
            .tags
            .iter()
            .filter(|(_, digest)| self.content.contains(*digest) || self.cached.contains(*digest))
            .map(|(key, _)| key.clone());
        digests.chain(tags).collect()
    }

    fn tag_key(&self, image: &Image) -> Option<Key> {
        let tag = image.reference.tag()?;
        if tag.is_latest() && !self.policy.advertise_latest {
            return None;
        }
        Key::for_tag(&image.reference)
    }
}

#[cfg(test)]
mod tests {
    use kagami_core::{Algorithm, MediaType};

    use super::*;

    fn digest(n: u8) -> Digest {
        Digest::from_hash(Algorithm::Sha256, &[n; 32])
    }

    fn image(reference: &str, n: u8) -> Image {
        Image {
            reference: reference.parse().unwrap(),
            digest: digest(n),
            media_type: MediaType::OciManifest,
            size: 1,
        }
    }

    fn tag(reference: &str) -> Key {
        Key::for_tag(&reference.parse().unwrap()).unwrap()
    }

    #[test]
    fn tags_are_advertised_only_with_their_manifest_and_latest_only_by_policy() {
        let mut h = Holdings::new(AdvertisePolicy::default());
        h.replace(
            vec![
                image("nginx:1.25", 1),
                image("app:latest", 2),
                image("gone:1", 9),
            ],
            [digest(1), digest(2), digest(3)].into_iter(),
        );
        let want: BTreeSet<Key> = [
            Key::Digest(digest(1)),
            Key::Digest(digest(2)),
            Key::Digest(digest(3)),
            tag("nginx:1.25"),
        ]
        .into();
        assert_eq!(h.desired(), want);

        let mut latest = Holdings::new(AdvertisePolicy {
            advertise_latest: true,
            ..AdvertisePolicy::default()
        });
        latest.replace(vec![image("app:latest", 2)], [digest(2)].into_iter());
        assert!(latest.desired().contains(&tag("app:latest")));
    }

    #[test]
    fn a_moved_tag_survives_the_removal_of_its_old_target() {
        let mut h = Holdings::new(AdvertisePolicy::default());
        h.replace(
            vec![image("nginx:1", 1)],
            [digest(1), digest(2)].into_iter(),
        );
        h.image_added(&image("nginx:1", 2));
        h.image_removed(&image("nginx:1", 1));
        assert!(h.desired().contains(&tag("nginx:1")));
        h.content_removed(&digest(2));
        assert!(
            !h.desired().contains(&tag("nginx:1")),
            "its manifest is gone"
        );
        h.content_added(digest(2));
        h.image_removed(&image("nginx:1", 2));
        assert!(!h.desired().contains(&tag("nginx:1")));
    }
}
