//! Reading containerd's content: its sizes through the content service, its
//! bytes straight from `<content dir>/blobs/<algorithm>/<hex>` when that file
//! can be opened, and through the gRPC `Read` stream otherwise. Both paths
//! stream; nothing but manifests is ever held whole.

use std::collections::HashMap;
use std::io::SeekFrom;
use std::ops::Range;
use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use kagami_containerd_api::containerd::services::content::v1::{
    InfoRequest, ListContentRequest, ReadContentRequest,
};
use kagami_core::Digest;
use kagami_core::store::{BlobStream, Error};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use crate::client::Client;
use crate::error::{backend, from_status};

/// The chunk size of direct file reads.
const CHUNK: usize = 64 * 1024;

/// Reads content of one namespace of one containerd.
#[derive(Clone, Debug)]
pub(crate) struct Content {
    client: Client,
    /// containerd's content directory; its files are read when this process
    /// may open them.
    dir: PathBuf,
}

impl Content {
    pub(crate) fn new(client: Client, dir: PathBuf) -> Content {
        Content { client, dir }
    }

    /// The size of content this namespace holds.
    pub(crate) async fn size(&self, digest: &Digest) -> Result<u64, Error> {
        let request = self.client.request(InfoRequest {
            digest: digest.to_string(),
        });
        let info = self.client.content().info(request).await;
        let info = info.map_err(|s| {
            from_status(s, "stat content", || Error::ContentNotFound {
                digest: digest.clone(),
            })
        })?;
        let size = info.into_inner().info.map(|i| i.size).unwrap_or_default();
        Ok(u64::try_from(size).unwrap_or_default())
    }

    /// Every digest this namespace holds, with its size; unparsable digests
    /// are left out.
    pub(crate) async fn list(&self) -> Result<HashMap<Digest, u64>, Error> {
        let request = self.client.request(ListContentRequest { filters: vec![] });
        let response = self.client.content().list(request).await;
        let mut stream = response
            .map_err(|s| backend(s, "list content"))?
            .into_inner();
        let mut sizes = HashMap::new();
        while let Some(page) = stream.next().await {
            let page = page.map_err(|s| backend(s, "list content"))?;
            for info in page.info {
                if let Ok(digest) = info.digest.parse::<Digest>() {
                    sizes.insert(digest, u64::try_from(info.size).unwrap_or_default());
                }
            }
        }
        Ok(sizes)
    }

    /// Streams the bytes in `range` (which the caller checked against the
    /// size).
    pub(crate) async fn open(
        &self,
        digest: &Digest,
        range: Range<u64>,
    ) -> Result<BlobStream, Error> {
        if range.is_empty() {
            return Ok(Box::pin(futures::stream::empty()));
        }
        if let Some(stream) = self.open_file(digest, range.clone()).await {
            return Ok(stream);
        }
        self.open_grpc(digest, range).await
    }

    /// Reads content of a known (small) size whole.
    pub(crate) async fn read_whole(&self, digest: &Digest, size: u64) -> Result<Bytes, Error> {
        let mut stream = self.open(digest, 0..size).await?;
        let mut bytes = BytesMut::with_capacity(usize::try_from(size).unwrap_or_default());
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| Error::Backend {
                operation: format!("read {digest}"),
                source: Box::new(e),
            })?;
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes.freeze())
    }

    /// The file in the content directory, if it can be opened; `None` sends
    /// the read through gRPC, which also gives the right error when the
    /// content is gone.
    async fn open_file(&self, digest: &Digest, range: Range<u64>) -> Option<BlobStream> {
        let path = self
            .dir
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(digest.hex());
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "content file not readable; reading through gRPC");
                return None;
            }
        };
        if range.start > 0 {
            file.seek(SeekFrom::Start(range.start)).await.ok()?;
        }
        let body = file.take(range.end - range.start);
        Some(Box::pin(ReaderStream::with_capacity(body, CHUNK)))
    }

    async fn open_grpc(&self, digest: &Digest, range: Range<u64>) -> Result<BlobStream, Error> {
        let request = self.client.request(ReadContentRequest {
            digest: digest.to_string(),
            offset: i64::try_from(range.start).unwrap_or(i64::MAX),
            size: i64::try_from(range.end - range.start).unwrap_or(i64::MAX),
        });
        let response = self.client.content().read(request).await;
        let stream = response
            .map_err(|s| {
                from_status(s, "read content", || Error::ContentNotFound {
                    digest: digest.clone(),
                })
            })?
            .into_inner();
        Ok(Box::pin(
            stream
                .map_ok(|chunk| Bytes::from(chunk.data))
                .map_err(std::io::Error::other),
        ))
    }
}
