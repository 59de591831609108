//! The node-wide budget of response body bytes in flight: read from the
//! store or a peer, handed to HTTP, and not yet written to a socket. A
//! client that opens many streams and reads none of them stalls its own
//! streams once the budget is spent, instead of growing the node's memory
//! without bound; the idle timeout then closes its connections.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use kagami_core::store::BlobStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Default of [`Config::max_body_bytes_in_flight`](crate::Config::max_body_bytes_in_flight): 256 MiB.
pub const DEFAULT_BODY_BYTES_IN_FLIGHT: usize = 256 << 20;

/// Shares the budget between every body of one application.
#[derive(Debug, Clone)]
pub(crate) struct BodyBudget {
    permits: Arc<Semaphore>,
    /// The budget; a chunk bigger than it takes all of it.
    total: u32,
}

/// A chunk and the part of the budget it holds until it is dropped.
struct Metered {
    bytes: Bytes,
    _permit: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Metered {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

/// What a body reserves before it asks its source for the next chunk: a
/// store reads at most this much at a time (256 KiB), so the budget covers
/// the read itself, not only the chunks already handed on.
const READ_AHEAD: u32 = 256 * 1024;

impl BodyBudget {
    pub(crate) fn new(bytes: usize) -> BodyBudget {
        let total = u32::try_from(bytes.clamp(1, Semaphore::MAX_PERMITS))
            .unwrap_or(u32::MAX)
            .max(1);
        BodyBudget {
            permits: Arc::new(Semaphore::new(total as usize)),
            total,
        }
    }

    /// `stream`, asked for each chunk only once a chunk's worth of the
    /// budget is reserved; the chunk keeps its size of it until HTTP drops
    /// it (written out, or discarded with the response), and the rest goes
    /// back at once. A stream nobody polls reserves nothing.
    pub(crate) fn meter(&self, stream: BlobStream) -> BlobStream {
        let budget = self.clone();
        Box::pin(futures::stream::unfold(
            (stream, budget),
            |(mut stream, budget)| async move {
                let mut permit = match budget.reserve(READ_AHEAD).await {
                    Ok(permit) => permit,
                    Err(error) => return Some((Err(error), (stream, budget))),
                };
                let bytes = match stream.next().await? {
                    Ok(bytes) => bytes,
                    Err(error) => return Some((Err(error), (stream, budget))),
                };
                let wanted = budget.share(bytes.len());
                let held = u32::try_from(permit.num_permits()).unwrap_or(u32::MAX);
                if wanted < held {
                    drop(permit.split((held - wanted) as usize));
                } else if wanted > held {
                    // A source with bigger chunks than it should have: the
                    // bytes are here already; count them all the same.
                    match budget.reserve(wanted - held).await {
                        Ok(more) => permit.merge(more),
                        Err(error) => return Some((Err(error), (stream, budget))),
                    }
                }
                let chunk = Bytes::from_owner(Metered {
                    bytes,
                    _permit: permit,
                });
                Some((Ok(chunk), (stream, budget)))
            },
        ))
    }

    /// What `len` bytes take of the budget: at least one permit, at most
    /// all of them.
    fn share(&self, len: usize) -> u32 {
        u32::try_from(len).unwrap_or(u32::MAX).clamp(1, self.total)
    }

    async fn reserve(&self, permits: u32) -> std::io::Result<OwnedSemaphorePermit> {
        // The semaphore is never closed.
        self.permits
            .clone()
            .acquire_many_owned(permits.clamp(1, self.total))
            .await
            .map_err(std::io::Error::other)
    }

    #[cfg(test)]
    fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn chunks_hold_their_share_until_dropped() {
        let budget = BodyBudget::new(10);
        let chunks: Vec<std::io::Result<Bytes>> = vec![
            Ok(Bytes::from_static(b"abcdef")),
            Ok(Bytes::from_static(b"ghijkl")),
        ];
        let mut stream = budget.meter(Box::pin(futures::stream::iter(chunks)));
        let first = stream.next().await.unwrap().unwrap();
        assert_eq!(&first[..], b"abcdef");
        assert_eq!(budget.available(), 4);
        // The second chunk does not fit until the first is dropped.
        let second =
            tokio::time::timeout(std::time::Duration::from_millis(50), stream.next()).await;
        assert!(second.is_err(), "went past a spent budget");
        let slice = first.slice(1..3);
        drop(first);
        let still = tokio::time::timeout(std::time::Duration::from_millis(50), stream.next()).await;
        assert!(still.is_err(), "a slice keeps the chunk's share");
        drop(slice);
        let second = stream.next().await.unwrap().unwrap();
        assert_eq!(&second[..], b"ghijkl");
        assert_eq!(budget.available(), 4);
        drop(second);
        assert_eq!(budget.available(), 10);
    }

    #[tokio::test]
    async fn a_chunk_bigger_than_the_budget_takes_all_of_it() {
        let budget = BodyBudget::new(4);
        let chunks: Vec<std::io::Result<Bytes>> = vec![Ok(Bytes::from_static(b"abcdefgh"))];
        let mut stream = budget.meter(Box::pin(futures::stream::iter(chunks)));
        let chunk = stream.next().await.unwrap().unwrap();
        assert_eq!(chunk.len(), 8);
        assert_eq!(budget.available(), 0);
    }
}
