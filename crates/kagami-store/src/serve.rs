//! The [`Store`] trait over a [`Layout`]: every answer comes from the
//! in-memory catalogue; only content bytes are read from files.

use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures::StreamExt;
use kagami_core::store::{
    self, BlobStream, ContentInfo, ContentKind, Event, EventStream, Image, Store,
};
use kagami_core::{Digest, MediaType, Reference};
use tokio::io::AsyncReadExt;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::BroadcastStream;

use crate::{Error, Layout};

/// Bytes per chunk of a read stream: 256 KiB measured ~30% less server CPU
/// than 64 KiB (fewer hops to the blocking pool; see BENCHMARKS.md) at a
/// few MiB more peak memory under 16 clients.
const CHUNK: usize = 256 * 1024;

impl Layout {
    fn content(&self, digest: &Digest) -> Result<ContentInfo, Error> {
        self.inner
            .catalogue()
            .content
            .get(digest)
            .cloned()
            .ok_or_else(|| Error::ContentNotFound {
                digest: digest.clone(),
            })
    }

    async fn open_content(&self, digest: &Digest) -> Result<tokio::fs::File, Error> {
        let path = self.inner.paths.blob(digest);
        tokio::fs::File::open(&path).await.map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                Error::ContentNotFound {
                    digest: digest.clone(),
                }
            } else {
                Error::ReadContent {
                    digest: digest.clone(),
                    path,
                    source,
                }
            }
        })
    }
}

#[async_trait::async_trait]
impl Store for Layout {
    async fn list_images(&self) -> Result<Vec<Image>, store::Error> {
        Ok(self.inner.catalogue().images.values().cloned().collect())
    }

    async fn list_content(&self) -> Result<Vec<ContentInfo>, store::Error> {
        Ok(self.inner.catalogue().content.values().cloned().collect())
    }

    async fn resolve(&self, reference: &Reference) -> Result<Image, store::Error> {
        self.inner
            .catalogue()
            .resolve(reference)
            .cloned()
            .ok_or_else(|| store::Error::ImageNotFound {
                reference: reference.clone(),
            })
    }

    async fn stat(&self, digest: &Digest) -> Result<ContentInfo, store::Error> {
        Ok(self.content(digest)?)
    }

    async fn read_manifest(&self, digest: &Digest) -> Result<(MediaType, Bytes), store::Error> {
        let info = self.content(digest)?;
        let ContentKind::Manifest(media_type) = info.kind else {
            return Err(Error::NotAManifest {
                digest: digest.clone(),
            }
            .into());
        };
        let mut file = self.open_content(digest).await?;
        // The catalogue only holds manifests it read under the size limit.
        let mut bytes = Vec::with_capacity(info.size as usize);
        file.read_to_end(&mut bytes)
            .await
            .map_err(|source| Error::ReadContent {
                digest: digest.clone(),
                path: self.inner.paths.blob(digest),
                source,
            })?;
        Ok((media_type, Bytes::from(bytes)))
    }

    async fn read(
        &self,
        digest: &Digest,
        range: Option<Range<u64>>,
    ) -> Result<BlobStream, store::Error> {
        let info = self.content(digest)?;
        let Range { start, end } = store::span(digest, info.size, range)?;
        let file = self.open_content(digest).await?;
        let read_err = |source| Error::ReadContent {
            digest: digest.clone(),
            path: self.inner.paths.blob(digest),
            source,
        };
        // Blob files are replaced only by rename, never rewritten, so a
        // file long enough now stays long enough while it is read.
        let len = file.metadata().await.map_err(read_err)?.len();
        if len < end {
            return Err(read_err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "the file holds {len} bytes, the catalogue says {}",
                    info.size
                ),
            ))
            .into());
        }
        let file = file.into_std().await;
        Ok(Box::pin(FileChunks::new(file, start..end)))
    }

    fn events(&self) -> EventStream {
        let receiver = self.inner.events.subscribe();
        Box::pin(BroadcastStream::new(receiver).map(|event| event.unwrap_or(Event::Resync)))
    }
}

/// A byte range of a file as a stream of chunks of up to [`CHUNK`] bytes,
/// each read on the blocking pool straight into the buffer that is handed
/// on: no second buffer per stream (tokio's `File` keeps one), no copy
/// between them, and nothing read until the stream is polled.
struct FileChunks {
    /// The file, while no read is in flight.
    file: Option<std::fs::File>,
    /// Where the next read starts, and where the range ends.
    at: u64,
    end: u64,
    reading: Option<JoinHandle<(std::fs::File, std::io::Result<Vec<u8>>)>>,
}

impl FileChunks {
    fn new(file: std::fs::File, range: Range<u64>) -> FileChunks {
        FileChunks {
            file: Some(file),
            at: range.start,
            end: range.end,
            reading: None,
        }
    }
}

impl futures::Stream for FileChunks {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(reading) = &mut self.reading {
            let finished = ready!(Pin::new(reading).poll(cx));
            self.reading = None;
            let (file, read) = match finished {
                Ok(finished) => finished,
                Err(joined) => return Poll::Ready(Some(Err(std::io::Error::other(joined)))),
            };
            self.file = Some(file);
            return Poll::Ready(Some(match read {
                Ok(bytes) if bytes.is_empty() => Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the blob file ended early",
                )),
                Ok(bytes) => {
                    self.at += bytes.len() as u64;
                    Ok(Bytes::from(bytes))
                }
                Err(error) => Err(error),
            }));
        }
        if self.at >= self.end {
            return Poll::Ready(None);
        }
        let Some(mut file) = self.file.take() else {
            return Poll::Ready(None);
        };
        let at = self.at;
        let len = (self.end - at).min(CHUNK as u64);
        self.reading = Some(tokio::task::spawn_blocking(move || {
            let read = file.seek(SeekFrom::Start(at)).and_then(|_| {
                // `read_to_end` fills the spare capacity without zeroing
                // it first.
                let mut bytes = Vec::with_capacity(len as usize);
                (&mut file).take(len).read_to_end(&mut bytes)?;
                Ok(bytes)
            });
            (file, read)
        }));
        self.poll_next(cx)
    }
}
