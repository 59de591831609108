//! Following containerd: [`Containerd::events`](crate::Containerd) turns
//! containerd's event stream (image create/update/delete, content
//! create/delete in the namespace) into [`Event`]s about what the store
//! serves.
//!
//! containerd's events say only that something changed, not what the change
//! does to the content images reach (a deleted image may leave its layers
//! reachable from another), so each burst of events is answered by taking a
//! fresh snapshot — image records plus the catalogue of reachable content —
//! and yielding the difference with the previous one. When the stream
//! breaks (containerd restarted or stopped), the watcher reconnects with
//! backoff, says so once in the log each way, and yields
//! [`Event::Resync`], since anything may have changed meanwhile.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use kagami_containerd_api::containerd::services::events::v1::SubscribeRequest;
use kagami_containerd_api::containerd::services::events::v1::events_client::EventsClient;
use kagami_core::store::{Event, Image};
use kagami_core::{Digest, Reference};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::Containerd;
use crate::client::Client;

/// Events arriving within this long of each other are answered by one
/// snapshot (an import or a pull emits several in a row).
const SETTLE: Duration = Duration::from_millis(200);
/// A snapshot is also taken this often without any event, for changes
/// containerd does not announce (its garbage collector deletes content
/// silently).
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// First wait before reconnecting; doubled on each failure in a row.
const RECONNECT_MIN: Duration = Duration::from_millis(250);
/// Longest wait between reconnection attempts.
const RECONNECT_MAX: Duration = Duration::from_secs(5);
/// Events not yet taken by a slow subscriber; past this it gets a
/// [`Event::Resync`] instead.
const BUFFER: usize = 1024;

/// What the store serves at one moment.
#[derive(Debug, Default, PartialEq, Eq)]
struct Snapshot {
    images: BTreeMap<Reference, Image>,
    content: BTreeSet<Digest>,
}

impl Snapshot {
    async fn take(store: &Containerd) -> Result<Snapshot, kagami_core::store::Error> {
        let (images, catalogue) = store.snapshot().await?;
        Ok(Snapshot {
            images: images
                .into_iter()
                .map(|image| (image.reference.clone(), image))
                .collect(),
            content: catalogue.content.keys().cloned().collect(),
        })
    }

    /// The events that turn `self` into `next`, removals first so that a
    /// name moved to another digest is withdrawn before it is re-added.
    fn changes(&self, next: &Snapshot) -> Vec<Event> {
        let mut events = Vec::new();
        for (reference, image) in &self.images {
            if next.images.get(reference) != Some(image) {
                events.push(Event::ImageRemoved(image.clone()));
            }
        }
        for digest in self.content.difference(&next.content) {
            events.push(Event::ContentRemoved(digest.clone()));
        }
        for digest in next.content.difference(&self.content) {
            events.push(Event::ContentAdded(digest.clone()));
        }
        for (reference, image) in &next.images {
            if self.images.get(reference) != Some(image) {
                events.push(Event::ImageAdded(image.clone()));
            }
        }
        events
    }
}

/// One subscriber's watcher; it ends when the subscriber drops its stream.
pub(crate) struct Watcher {
    store: Containerd,
    tx: mpsc::Sender<Event>,
    /// What the subscriber was last told the store holds; `None` until a
    /// snapshot could be taken, or after one failed.
    last: Option<Snapshot>,
}

impl Watcher {
    pub(crate) fn spawn(store: Containerd) -> mpsc::Receiver<Event> {
        let (tx, rx) = mpsc::channel(BUFFER);
        let watcher = Watcher {
            store,
            tx,
            last: None,
        };
        tokio::spawn(watcher.run());
        rx
    }

    async fn run(mut self) {
        // The subscriber lists the store itself right after subscribing;
        // this snapshot is the baseline later changes are measured from.
        self.last = Snapshot::take(&self.store).await.ok();
        let mut retry = RECONNECT_MIN;
        let mut lost_at: Option<Instant> = None;
        loop {
            // containerd answers a subscription only with its first event,
            // so whether it is up is asked separately, after subscribing
            // (a change in between is then caught by the next snapshot).
            let mut subscription = Subscription::start(&self.store.client);
            if let Err(status) = self.store.client.version().await {
                if lost_at.is_none() {
                    tracing::warn!(error = %status.message(), "cannot reach containerd to follow its events; retrying until it answers");
                    lost_at = Some(Instant::now());
                }
                if !self.pause(retry).await {
                    return;
                }
                retry = (retry * 2).min(RECONNECT_MAX);
                continue;
            }
            retry = RECONNECT_MIN;
            if let Some(since) = lost_at.take() {
                tracing::info!(down_for = ?since.elapsed(), "containerd is back; resynchronising");
                self.last = None;
            }
            // Whatever happened before the subscription, or while the
            // stream was down, is caught by comparing with a fresh view.
            if !self.update().await {
                return;
            }
            let broken = loop {
                // A view that could not be taken is retried soon, not at
                // the next sweep.
                let wait = if self.last.is_some() {
                    SWEEP_EVERY
                } else {
                    RECONNECT_MAX
                };
                let next = tokio::time::timeout(wait, subscription.rx.recv());
                tokio::select! {
                    () = self.tx.closed() => return,
                    item = next => match item {
                        Err(_) => {}
                        Ok(Some(Ok(()))) => subscription.settle().await,
                        Ok(Some(Err(reason))) => break reason,
                        Ok(None) => break "stream closed".to_owned(),
                    },
                }
                if !self.update().await {
                    return;
                }
            };
            tracing::warn!(error = %broken, "lost containerd's event stream; reconnecting");
            lost_at = Some(Instant::now());
            if !self.pause(RECONNECT_MIN).await {
                return;
            }
        }
    }

    /// Waits `delay`, or returns false at once if the subscriber is gone.
    async fn pause(&self, delay: Duration) -> bool {
        tokio::select! {
            () = self.tx.closed() => false,
            () = tokio::time::sleep(delay) => true,
        }
    }

    /// Takes a snapshot and tells the subscriber how it differs from the
    /// last; returns false once the subscriber is gone.
    async fn update(&mut self) -> bool {
        let next = match Snapshot::take(&self.store).await {
            Ok(next) => next,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read containerd's images; will resynchronise");
                self.last = None;
                return true;
            }
        };
        let events = match &self.last {
            Some(last) => last.changes(&next),
            None => vec![Event::Resync],
        };
        self.last = Some(next);
        for event in events {
            match self.tx.try_send(event) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    // The subscriber fell behind: one Resync (sent when
                    // there is room) replaces everything it missed.
                    return self.tx.send(Event::Resync).await.is_ok();
                }
            }
        }
        true
    }
}

/// One subscription to containerd's events, run by its own task so that it
/// is sent at once: `rx` yields `Ok` per event and `Err` when the stream
/// breaks. The task ends when this is dropped.
struct Subscription {
    rx: mpsc::Receiver<Result<(), String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscription {
    fn start(client: &Client) -> Subscription {
        let namespace = client.namespace();
        let filters = ["images", "content"]
            .iter()
            .map(|topic| format!(r#"namespace=="{namespace}",topic~="^/{topic}/""#))
            .collect();
        let mut events = EventsClient::new(client.channel());
        let request = client.request(SubscribeRequest { filters });
        let (tx, rx) = mpsc::channel(64);
        let task = tokio::spawn(async move {
            let mut stream = match events.subscribe(request).await {
                Ok(response) => response.into_inner(),
                Err(status) => {
                    let _ = tx.send(Err(status.message().to_owned())).await;
                    return;
                }
            };
            while let Some(item) = stream.next().await {
                let item = item.map(drop).map_err(|s| s.message().to_owned());
                let broken = item.is_err();
                if tx.send(item).await.is_err() || broken {
                    return;
                }
            }
        });
        Subscription { rx, task }
    }

    /// Lets a burst of events finish before a snapshot answers it.
    async fn settle(&mut self) {
        let deadline = Instant::now() + SETTLE;
        while let Ok(Some(Ok(()))) = tokio::time::timeout_at(deadline, self.rx.recv()).await {}
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use kagami_core::MediaType;

    use super::*;

    fn digest(byte: char) -> Digest {
        format!("sha256:{}", byte.to_string().repeat(64))
            .parse()
            .unwrap()
    }

    fn image(name: &str, target: char) -> Image {
        Image {
            reference: name.parse().unwrap(),
            digest: digest(target),
            media_type: MediaType::OciManifest,
            size: 10,
        }
    }

    fn snapshot(images: &[Image], content: &[char]) -> Snapshot {
        Snapshot {
            images: images
                .iter()
                .map(|i| (i.reference.clone(), i.clone()))
                .collect(),
            content: content.iter().map(|c| digest(*c)).collect(),
        }
    }

    #[test]
    fn a_retagged_image_is_removed_then_added() {
        let before = snapshot(&[image("docker.io/library/a:1", 'a')], &['a', 'c']);
        let after = snapshot(&[image("docker.io/library/a:1", 'b')], &['b', 'c']);
        assert_eq!(
            before.changes(&after),
            vec![
                Event::ImageRemoved(image("docker.io/library/a:1", 'a')),
                Event::ContentRemoved(digest('a')),
                Event::ContentAdded(digest('b')),
                Event::ImageAdded(image("docker.io/library/a:1", 'b')),
            ]
        );
    }

    #[test]
    fn an_unchanged_store_yields_nothing() {
        let same = snapshot(&[image("docker.io/library/a:1", 'a')], &['a']);
        let again = snapshot(&[image("docker.io/library/a:1", 'a')], &['a']);
        assert!(same.changes(&again).is_empty());
    }
}
