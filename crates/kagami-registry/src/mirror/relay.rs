//! A blob body relayed from peers to the client as it arrives.
//!
//! The client sees one unbroken body. When a peer's stream breaks (an
//! error, an early end, no bytes within the stall timeout, or fewer than
//! the floor's bytes per second over the rate window), the transfer
//! resumes on another provider with `Range: bytes=<offset>-…` and the same
//! body goes on. A peer too slow is also skipped for a while, so that when
//! no other provider can take over, the client's retry goes past it. The
//! one sender held to no floor is an origin passing on what still arrives
//! from the upstream (it says so, [`ARRIVING_HEADER`]): its pace is the
//! upstream's.
//!
//! [`ARRIVING_HEADER`]: super::ARRIVING_HEADER
//!
//! A whole blob is hashed as it passes, and its last chunk is held back
//! until the hash is known: when it does not match the digest, the body
//! ends with an error instead (hyper then cuts the connection short of
//! its `Content-Length`), so a client never receives a complete wrong
//! blob, and every peer that sent bytes of it is marked bad. Partial
//! content cannot be checked against a digest: for a client's `Range`,
//! the peers are trusted, and only the length is enforced.

use std::io;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http::Method;
use kagami_core::router::Peer;
use kagami_core::store::BlobStream;
use kagami_core::{Digest, Key};

use super::Inner;
use super::fetch::{AttemptError, Opened, Part, Target};
use super::hedge::race;
use super::verify::Hasher;
use crate::range::ByteRange;

type PeerBody = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// The state of one relayed body.
pub(super) struct Relay {
    mirror: Arc<Inner>,
    target: Target,
    digest: Digest,
    part: Part,
    /// Absolute offset of the next byte to relay.
    offset: u64,
    /// Set when `part` is the whole blob.
    hasher: Option<Hasher>,
    peer: Peer,
    body: PeerBody,
    /// Peers that sent bytes of this body.
    contributors: Vec<Peer>,
    /// Providers not tried yet, best first, for resuming.
    spare: Vec<Peer>,
    /// Since when the current peer's rate is measured, and what it sent
    /// since.
    window: (tokio::time::Instant, u64),
    /// The current peer is an origin sending what still arrives from the
    /// upstream: it goes at the upstream's pace, and no floor holds.
    unfloored: bool,
}

impl Relay {
    /// The body of `response` from `peer`, carrying `part`, with the
    /// other providers in `spare` to resume from.
    pub(super) fn new(
        mirror: Arc<Inner>,
        target: Target,
        digest: Digest,
        (peer, response, part): (Peer, reqwest::Response, Part),
        spare: Vec<Peer>,
    ) -> Relay {
        let hasher = (part.range == (0..part.size)).then(|| Hasher::new(digest.algorithm()));
        let unfloored = target.origin && response.headers().contains_key(super::ARRIVING_HEADER);
        Relay {
            mirror,
            target,
            digest,
            offset: part.range.start,
            part,
            hasher,
            peer,
            body: Box::pin(response.bytes_stream()),
            contributors: Vec::new(),
            spare,
            window: (tokio::time::Instant::now(), 0),
            unfloored,
        }
    }

    /// Whether the current peer has sent too little over a whole window;
    /// each full window starts the count again.
    fn too_slow(&mut self, received: usize) -> bool {
        let floor = self.mirror.fetch.min_rate();
        if floor == 0 || self.unfloored {
            return false;
        }
        let (since, bytes) = &mut self.window;
        *bytes += received as u64;
        let elapsed = since.elapsed();
        let window = self.mirror.fetch.rate_window();
        if elapsed < window {
            return false;
        }
        let rate = *bytes as f64 / elapsed.as_secs_f64();
        self.window = (tokio::time::Instant::now(), 0);
        rate < floor as f64
    }

    /// The relay as a body stream.
    pub(super) fn into_stream(self) -> BlobStream {
        Box::pin(futures::stream::unfold(Some(self), |relay| async move {
            relay?.step().await
        }))
    }

    /// The next chunk for the client; after an error, the stream ends.
    async fn step(mut self) -> Option<(io::Result<Bytes>, Option<Relay>)> {
        let end = self.part.range.end;
        while self.offset < end {
            let why = match tokio::time::timeout(self.mirror.fetch.stall(), self.body.next()).await
            {
                Ok(Some(Ok(chunk))) if chunk.is_empty() => continue,
                Ok(Some(Ok(chunk))) if self.offset + chunk.len() as u64 <= end => {
                    if self.too_slow(chunk.len()) {
                        tracing::info!(
                            digest = %self.digest,
                            peer = %self.peer.id,
                            floor = self.mirror.fetch.min_rate(),
                            "a peer sends too slowly; going past it"
                        );
                        self.mirror.peers.mark_slow(&self.peer);
                        let (out, next) = self.pass(chunk);
                        let Some(mut relay) = next else {
                            return Some((out, None));
                        };
                        if relay.offset >= end {
                            return Some((out, Some(relay)));
                        }
                        return Some(match relay.resume().await {
                            Ok(()) => (out, Some(relay)),
                            Err(error) => (Err(error), None),
                        });
                    }
                    return Some(self.pass(chunk));
                }
                Ok(Some(Ok(_))) => "sent more bytes than announced".to_owned(),
                Ok(Some(Err(error))) => format!("stream broke: {error}"),
                Ok(None) => "stream ended early".to_owned(),
                Err(_) => format!("no bytes within {:?}", self.mirror.fetch.stall()),
            };
            tracing::debug!(digest = %self.digest, peer = %self.peer.id, offset = self.offset, %why, "resuming");
            self.mirror.peers.failed(&self.peer);
            if let Err(error) = self.resume().await {
                return Some((Err(error), None));
            }
        }
        None
    }

    /// Counts and hashes `chunk`; the last one only if the hash matches.
    fn pass(mut self, chunk: Bytes) -> (io::Result<Bytes>, Option<Relay>) {
        self.offset += chunk.len() as u64;
        self.mirror.stats.relayed(&self.peer.id, chunk.len() as u64);
        if !self.contributors.contains(&self.peer) {
            self.contributors.push(self.peer.clone());
        }
        if let Some(hasher) = self.hasher.as_mut() {
            hasher.update(&chunk);
        }
        if self.offset == self.part.range.end
            && let Some(hasher) = self.hasher.take()
        {
            let actual = hasher.finish();
            if actual != self.digest {
                return (Err(self.corrupt(actual)), None);
            }
        }
        (Ok(chunk), Some(self))
    }

    /// Marks every peer that sent bytes bad; the error that ends the body.
    fn corrupt(&self, actual: Digest) -> io::Error {
        self.mirror.stats.verify_failed();
        for peer in &self.contributors {
            self.mirror.peers.mark_bad(peer);
        }
        let peers: Vec<&str> = self.contributors.iter().map(|p| p.id.as_str()).collect();
        tracing::warn!(digest = %self.digest, %actual, ?peers, "peers sent a corrupt blob; aborting the response");
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("blob from peers hashes to {actual}, not {}", self.digest),
        )
    }

    /// Continues from `offset` on the next spare provider that answers.
    async fn resume(&mut self) -> io::Result<()> {
        self.spare.retain(|peer| !self.mirror.peers.is_bad(peer));
        let range = ByteRange::FromTo(self.offset, self.part.range.end - 1);
        let key = Key::Digest(self.digest.clone());
        let (fetch, target, digest) = (&self.mirror.fetch, &self.target, &self.digest);
        let size = self.part.size;
        let won = race(&self.mirror, &key, &self.spare, |peer| async move {
            match fetch
                .blob(Method::GET, &peer, target, digest, Some(range))
                .await?
            {
                Opened::Body { response, part } if part.size == size => Ok(response),
                // Not the blob this body began with.
                _ => Err(AttemptError::Header {
                    what: "a size other than the blob's",
                }),
            }
        })
        .await;
        let Ok(won) = won else {
            return Err(self.gave_up());
        };
        self.mirror.stats.resumed();
        self.spare
            .retain(|peer| *peer != won.peer && !won.failed.contains(peer));
        self.peer = won.peer;
        self.unfloored =
            self.target.origin && won.value.headers().contains_key(super::ARRIVING_HEADER);
        self.body = Box::pin(won.value.bytes_stream());
        self.window = (tokio::time::Instant::now(), 0);
        Ok(())
    }

    fn gave_up(&self) -> io::Error {
        self.mirror.report.gave_up(
            &Key::Digest(self.digest.clone()),
            "no peer could resume the blob",
        );
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "blob {} broke off at byte {} and no peer could resume it",
                self.digest, self.offset
            ),
        )
    }
}
