//! Putting content into containerd: a [`Lease`] that keeps what is written
//! from garbage collection until an image record reaches it, the content
//! service's `Write` stream (resumed where containerd says, committed
//! against the expected digest and size, streamed from the source), and
//! label updates on content containerd already holds.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use kagami_containerd_api::containerd::services::content::v1::{
    AbortRequest, Info, InfoRequest, UpdateRequest, WriteAction, WriteContentRequest,
    WriteContentResponse,
};
use kagami_containerd_api::containerd::services::leases::v1::leases_client::LeasesClient;
use kagami_containerd_api::containerd::services::leases::v1::{
    AddResourceRequest, CreateRequest, DeleteRequest, Resource,
};
use kagami_containerd_api::tonic::codec::Streaming;
use kagami_containerd_api::tonic::metadata::AsciiMetadataValue;
use kagami_containerd_api::tonic::{Code, Request, Status};
use kagami_core::Digest;
use kagami_core::store::Store;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::Error;
use crate::client::Client;

/// How long a lease outlives a crash of ours; an image copy that takes
/// longer would lose unreferenced content to garbage collection.
const LEASE_TTL: Duration = Duration::from_secs(4 * 3600);
/// containerd's lease label naming when the lease expires.
const GC_EXPIRE: &str = "containerd.io/gc.expire";
/// The largest `data` of one write message (containerd takes up to 16 MiB).
const MAX_WRITE: usize = 1 << 20;
/// The label naming where content came from, one per registry host, its
/// value a comma-separated list of repositories.
pub(crate) const DISTRIBUTION_SOURCE: &str = "containerd.io/distribution.source.";

/// Labels one piece of content should carry.
#[derive(Debug, Clone)]
pub(crate) struct ContentLabels {
    /// `containerd.io/distribution.source.<host>`, and the repository to
    /// add to its list.
    pub(crate) source: (String, String),
    /// Labels set as they are (containerd's garbage-collection references).
    pub(crate) fixed: BTreeMap<String, String>,
}

impl ContentLabels {
    /// The labels whose values must change on content labelled `existing`.
    fn changes(&self, existing: &HashMap<String, String>) -> HashMap<String, String> {
        let (key, repository) = &self.source;
        let sources = with_repository(existing.get(key).map(String::as_str), repository);
        std::iter::once((key.clone(), sources))
            .chain(self.fixed.clone())
            .filter(|(key, value)| existing.get(key) != Some(value))
            .collect()
    }
}

/// A comma-separated, sorted list of repositories with `repository` in it,
/// as containerd's own pulls keep the distribution source label.
fn with_repository(list: Option<&str>, repository: &str) -> String {
    let mut repositories: Vec<&str> = list
        .unwrap_or_default()
        .split(',')
        .filter(|r| !r.is_empty())
        .chain([repository])
        .collect();
    repositories.sort_unstable();
    repositories.dedup();
    repositories.join(",")
}

/// A containerd lease: content written or touched under it is not
/// collected until it is deleted (or expires, should we die first).
pub(crate) struct Lease {
    client: Client,
    id: String,
    header: AsciiMetadataValue,
}

impl Lease {
    /// Takes a new lease; `image` names what it is for, in errors.
    pub(crate) async fn create(client: &Client, image: &str) -> Result<Lease, Error> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let id = format!(
            "kagami-ingest-{}-{nanos}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let expire = humantime::format_rfc3339_seconds(SystemTime::now() + LEASE_TTL);
        let request = client.request(CreateRequest {
            id: id.clone(),
            labels: HashMap::from([(GC_EXPIRE.to_owned(), expire.to_string())]),
        });
        let lease_error = |source| Error::Lease {
            image: image.to_owned(),
            source: Box::new(source),
        };
        LeasesClient::new(client.channel())
            .create(request)
            .await
            .map_err(lease_error)?;
        // Made of ASCII digits, letters and dashes above.
        let header = id
            .parse()
            .map_err(|_| lease_error(Status::internal("lease id is not ASCII")))?;
        Ok(Lease {
            client: client.clone(),
            id,
            header,
        })
    }

    /// Ends the lease; what it held is then kept only by references.
    /// A failure is logged: the lease expires by itself.
    pub(crate) async fn delete(self) {
        let request = self.client.request(DeleteRequest {
            id: self.id.clone(),
            sync: false,
        });
        if let Err(status) = LeasesClient::new(self.client.channel())
            .delete(request)
            .await
        {
            tracing::debug!(lease = self.id, error = %status, "cannot delete a containerd lease; it expires by itself");
        }
    }

    /// A namespaced request made under this lease.
    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = self.client.request(message);
        request
            .metadata_mut()
            .insert("containerd-lease", self.header.clone());
        request
    }

    /// Puts `size` bytes of `digest`, read from `source`, into containerd
    /// with `labels` (content already there only gets its labels updated),
    /// and holds it under this lease.
    pub(crate) async fn put(
        &self,
        source: &dyn Store,
        digest: &Digest,
        size: u64,
        labels: &ContentLabels,
    ) -> Result<(), Error> {
        if let Some(info) = self.info(digest).await? {
            return self.relabel(digest, &info, labels).await;
        }
        let written = self
            .write(source, digest, size, labels.changes(&HashMap::new()))
            .await?;
        if written == Written::AlreadyThere {
            // Someone else wrote it since we looked: label theirs.
            let info = self.info(digest).await?.unwrap_or_default();
            return self.relabel(digest, &info, labels).await;
        }
        Ok(())
    }

    /// What containerd holds of `digest` in this namespace, if anything.
    async fn info(&self, digest: &Digest) -> Result<Option<Info>, Error> {
        let request = self.client.request(InfoRequest {
            digest: digest.to_string(),
        });
        match self.client.content().info(request).await {
            Ok(response) => Ok(response.into_inner().info),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(Error::WriteContent {
                digest: digest.clone(),
                source: Box::new(status),
            }),
        }
    }

    /// Updates the labels of content containerd holds (only the keys that
    /// change), and adds it to the lease until the image record is made.
    async fn relabel(
        &self,
        digest: &Digest,
        info: &Info,
        labels: &ContentLabels,
    ) -> Result<(), Error> {
        let label_error = |status| Error::LabelContent {
            digest: digest.clone(),
            source: Box::new(status),
        };
        let request = self.request(AddResourceRequest {
            id: self.id.clone(),
            resource: Some(Resource {
                id: digest.to_string(),
                r#type: "content".to_owned(),
            }),
        });
        LeasesClient::new(self.client.channel())
            .add_resource(request)
            .await
            .map_err(label_error)?;
        let changes = labels.changes(&info.labels);
        if changes.is_empty() {
            return Ok(());
        }
        let paths = changes.keys().map(|key| format!("labels.{key}")).collect();
        let request = self.client.request(UpdateRequest {
            info: Some(Info {
                digest: digest.to_string(),
                labels: changes,
                ..Info::default()
            }),
            update_mask: Some(prost_types::FieldMask { paths }),
        });
        self.client
            .content()
            .update(request)
            .await
            .map_err(label_error)?;
        Ok(())
    }

    /// Streams the content into containerd and commits it with `labels`;
    /// containerd checks the digest and size. A failed write is aborted so
    /// that the next attempt starts afresh.
    async fn write(
        &self,
        source: &dyn Store,
        digest: &Digest,
        size: u64,
        labels: HashMap<String, String>,
    ) -> Result<Written, Error> {
        let reference = format!("kagami-ingest-{digest}");
        let result = self
            .write_ref(&reference, source, digest, size, labels)
            .await;
        if matches!(
            result,
            Err(Error::WriteContent { .. }
                | Error::SourceSize { .. }
                | Error::ReadSource { .. }
                | Error::CommittedDigest { .. })
        ) {
            let request = self.client.request(AbortRequest { r#ref: reference });
            if let Err(status) = self.client.content().abort(request).await {
                tracing::debug!(%digest, error = %status, "cannot abort a failed content write");
            }
        }
        result
    }

    async fn write_ref(
        &self,
        reference: &str,
        source: &dyn Store,
        digest: &Digest,
        size: u64,
        labels: HashMap<String, String>,
    ) -> Result<Written, Error> {
        let write_error = |status: Status| Error::WriteContent {
            digest: digest.clone(),
            source: Box::new(status),
        };
        let total = i64::try_from(size).map_err(|_| {
            write_error(Status::invalid_argument(format!(
                "size {size} is too large"
            )))
        })?;
        // The first message opens the write (containerd answers each
        // message in turn, so the stream moves in lock step).
        let (tx, rx) = mpsc::channel(1);
        let mut session = Session {
            tx,
            responses: None,
        };
        session
            .send(WriteContentRequest {
                action: WriteAction::Stat.into(),
                r#ref: reference.to_owned(),
                total,
                expected: digest.to_string(),
                ..WriteContentRequest::default()
            })
            .await;
        let opened = self
            .client
            .content()
            .write(self.request(ReceiverStream::new(rx)))
            .await;
        match opened {
            Ok(response) => session.responses = Some(response.into_inner()),
            Err(status) if status.code() == Code::AlreadyExists => {
                return Ok(Written::AlreadyThere);
            }
            Err(status) => return Err(write_error(status)),
        }
        let status = match session.receive().await {
            Ok(status) => status,
            Err(status) if status.code() == Code::AlreadyExists => {
                return Ok(Written::AlreadyThere);
            }
            Err(status) => return Err(write_error(status)),
        };
        // A write left over from an earlier attempt (or content another
        // namespace holds) is resumed where it stands; containerd hashes
        // what it has again at commit. A longer one is started afresh.
        let mut offset = u64::try_from(status.offset).unwrap_or_default();
        if offset > size {
            offset = 0;
        }
        if offset < size {
            let mut body =
                source
                    .read(digest, Some(offset..size))
                    .await
                    .map_err(|e| Error::ReadSource {
                        digest: digest.clone(),
                        source: Box::new(e),
                    })?;
            while let Some(chunk) = body.next().await {
                let mut chunk = chunk.map_err(|e| Error::ReadSource {
                    digest: digest.clone(),
                    source: Box::new(e),
                })?;
                while !chunk.is_empty() {
                    let piece = chunk.split_to(chunk.len().min(MAX_WRITE));
                    let end = offset + piece.len() as u64;
                    if end > size {
                        return Err(Error::SourceSize {
                            digest: digest.clone(),
                            expected: size,
                            got: end,
                        });
                    }
                    session
                        .send(WriteContentRequest {
                            action: WriteAction::Write.into(),
                            offset: i64::try_from(offset).unwrap_or(i64::MAX),
                            data: piece.to_vec(),
                            ..WriteContentRequest::default()
                        })
                        .await;
                    let written = session.receive().await.map_err(write_error)?;
                    if u64::try_from(written.offset).ok() != Some(end) {
                        return Err(write_error(Status::data_loss(format!(
                            "containerd is at offset {} after writing up to {end}",
                            written.offset
                        ))));
                    }
                    offset = end;
                }
            }
            if offset != size {
                return Err(Error::SourceSize {
                    digest: digest.clone(),
                    expected: size,
                    got: offset,
                });
            }
        }
        session
            .send(WriteContentRequest {
                action: WriteAction::Commit.into(),
                offset: i64::try_from(offset).unwrap_or(i64::MAX),
                total,
                expected: digest.to_string(),
                labels,
                ..WriteContentRequest::default()
            })
            .await;
        let committed = match session.receive().await {
            Ok(committed) => committed,
            Err(status) if status.code() == Code::AlreadyExists => {
                return Ok(Written::AlreadyThere);
            }
            Err(status) => return Err(write_error(status)),
        };
        if committed.digest != digest.as_str() {
            return Err(Error::CommittedDigest {
                digest: digest.clone(),
                committed: committed.digest,
            });
        }
        Ok(Written::Committed)
    }
}

/// How a write ended.
#[derive(Debug, PartialEq, Eq)]
enum Written {
    /// The content is committed.
    Committed,
    /// containerd had it already (it arrived since we looked).
    AlreadyThere,
}

/// One `Write` stream: requests go out through `tx`, answers come back
/// on `responses`, one for each.
struct Session {
    tx: mpsc::Sender<WriteContentRequest>,
    responses: Option<Streaming<WriteContentResponse>>,
}

impl Session {
    /// Queues a request. A closed stream shows in the next [`receive`],
    /// which carries containerd's reason.
    ///
    /// [`receive`]: Session::receive
    async fn send(&mut self, request: WriteContentRequest) {
        let _ = self.tx.send(request).await;
    }

    /// containerd's answer to the last request.
    async fn receive(&mut self) -> Result<WriteContentResponse, Status> {
        let Some(responses) = self.responses.as_mut() else {
            return Err(Status::internal("the write stream is not open"));
        };
        match responses.message().await {
            Ok(Some(response)) => Ok(response),
            Ok(None) => Err(Status::aborted("containerd ended the write stream")),
            Err(status) => Err(status),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_are_added_once_and_kept_sorted() {
        assert_eq!(with_repository(None, "library/a"), "library/a");
        assert_eq!(with_repository(Some(""), "library/a"), "library/a");
        assert_eq!(with_repository(Some("x/b,x/d"), "x/c"), "x/b,x/c,x/d");
        assert_eq!(with_repository(Some("x/b,x/c"), "x/c"), "x/b,x/c");
    }

    #[test]
    fn only_labels_that_differ_change() {
        let labels = ContentLabels {
            source: (
                format!("{DISTRIBUTION_SOURCE}docker.io"),
                "library/a".into(),
            ),
            fixed: BTreeMap::from([("gc.ref".to_owned(), "sha256:1".to_owned())]),
        };
        let existing = HashMap::from([
            (
                format!("{DISTRIBUTION_SOURCE}docker.io"),
                "library/a".to_owned(),
            ),
            ("gc.ref".to_owned(), "sha256:0".to_owned()),
        ]);
        assert_eq!(
            labels.changes(&existing),
            HashMap::from([("gc.ref".to_owned(), "sha256:1".to_owned())])
        );
        assert_eq!(labels.changes(&HashMap::new()).len(), 2);
    }
}
