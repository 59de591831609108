//! Waiting, with a deadline, for the events a change must produce. A
//! [`Event::Resync`] is allowed: the expectations are then checked against
//! the store's state instead, as a real subscriber would re-read it.

use std::time::Duration;

use futures::StreamExt;
use kagami_core::store::{Error, Event, EventStream, Store};
use kagami_core::{Digest, Reference};
use tokio::time::Instant;

use super::within;
use crate::testing::BuiltImage;

/// How long the events of one change may take to arrive.
const DEADLINE: Duration = Duration::from_secs(15);
/// How often the state is re-read after a resync.
const RESYNC_POLL: Duration = Duration::from_millis(200);

/// An event the kit waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Expect {
    ImageAdded(Reference, Digest),
    ImageRemoved(Reference, Digest),
    ContentAdded(Digest),
    ContentRemoved(Digest),
}

impl Expect {
    fn matches(&self, event: &Event) -> bool {
        match (self, event) {
            (Expect::ImageAdded(r, d), Event::ImageAdded(i))
            | (Expect::ImageRemoved(r, d), Event::ImageRemoved(i)) => {
                &i.reference == r && &i.digest == d
            }
            (Expect::ContentAdded(d), Event::ContentAdded(e))
            | (Expect::ContentRemoved(d), Event::ContentRemoved(e)) => d == e,
            _ => false,
        }
    }

    /// Whether the store's state shows the change (after a resync).
    async fn holds(&self, store: &dyn Store) -> bool {
        match self {
            Expect::ImageAdded(r, d) => within("resolve", store.resolve(r))
                .await
                .is_ok_and(|i| &i.digest == d),
            Expect::ImageRemoved(r, d) => within("resolve", store.resolve(r))
                .await
                .map_or(true, |i| &i.digest != d),
            Expect::ContentAdded(d) => within("stat", store.stat(d)).await.is_ok(),
            Expect::ContentRemoved(d) => matches!(
                within("stat", store.stat(d)).await,
                Err(Error::ContentNotFound { .. })
            ),
        }
    }
}

/// The events importing these images must produce.
pub(super) fn added(images: &[BuiltImage]) -> Vec<Expect> {
    let mut expected = Vec::new();
    for image in images {
        expected.push(Expect::ImageAdded(
            image.reference.clone(),
            image.digest.clone(),
        ));
        let digests = image.manifests.iter().chain(image.blobs.keys());
        expected.extend(digests.cloned().map(Expect::ContentAdded));
    }
    expected
}

/// The events removing `image` must produce, given the images that stay.
pub(super) fn removed(image: &BuiltImage, staying: &[&BuiltImage]) -> Vec<Expect> {
    let mut expected = vec![Expect::ImageRemoved(
        image.reference.clone(),
        image.digest.clone(),
    )];
    let digests = image.manifests.iter().chain(image.blobs.keys());
    let unshared = digests.filter(|d| {
        !staying
            .iter()
            .any(|o| o.blobs.contains_key(*d) || o.manifests.contains(d))
    });
    expected.extend(unshared.cloned().map(Expect::ContentRemoved));
    expected
}

/// A subscription taken before the changes it checks.
pub(super) struct Watch {
    events: EventStream,
}

impl Watch {
    pub(super) fn new(store: &dyn Store) -> Watch {
        Watch {
            events: store.events(),
        }
    }

    /// Waits until every expectation was met by an event (or, after a
    /// resync, by the store's state); panics at the deadline naming what
    /// never came.
    pub(super) async fn expect(
        &mut self,
        store: &dyn Store,
        mut pending: Vec<Expect>,
        after: &str,
    ) {
        let deadline = Instant::now() + DEADLINE;
        // After a resync the state is polled too, since the events that
        // were missed will never come.
        let mut resynced = false;
        while !pending.is_empty() {
            if resynced {
                let mut still = Vec::new();
                for expect in pending {
                    if !expect.holds(store).await {
                        still.push(expect);
                    }
                }
                pending = still;
                if pending.is_empty() {
                    break;
                }
            }
            let wait_until = if resynced {
                deadline.min(Instant::now() + RESYNC_POLL)
            } else {
                deadline
            };
            match tokio::time::timeout_at(wait_until, self.events.next()).await {
                Err(_) if Instant::now() < deadline => {}
                Err(_) => panic!(
                    "store conformance: after {after}, these events never came within {DEADLINE:?}: {pending:?}"
                ),
                Ok(None) => panic!("store conformance: the event stream ended after {after}"),
                Ok(Some(Event::Resync)) => resynced = true,
                Ok(Some(event)) => pending.retain(|e| !e.matches(&event)),
            }
        }
    }
}
