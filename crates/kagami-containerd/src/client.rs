//! The gRPC channel to containerd's socket and the namespaced requests made
//! on it. The channel connects lazily and reconnects by itself, so a
//! containerd restart shows as [`store::Error::Unavailable`](kagami_core::store::Error::Unavailable)
//! for a while, not as a dead store.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kagami_containerd_api::containerd::services::content::v1::content_client::ContentClient;
use kagami_containerd_api::containerd::services::images::v1::images_client::ImagesClient;
use kagami_containerd_api::containerd::services::introspection::v1::PluginsRequest;
use kagami_containerd_api::containerd::services::introspection::v1::introspection_client::IntrospectionClient;
use kagami_containerd_api::containerd::services::version::v1::version_client::VersionClient;
use kagami_containerd_api::tonic::metadata::AsciiMetadataValue;
use kagami_containerd_api::tonic::transport::Channel;
use kagami_containerd_api::tonic::{Request, Status};

use crate::Error;

/// How long connecting to the socket may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long containerd may take to start answering a call; streamed bodies
/// are not limited by it.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The plugin whose `root` export is the content directory.
const CONTENT_PLUGIN: (&str, &str) = ("io.containerd.content.v1", "content");

/// A channel to one containerd and the namespace every call is made in.
#[derive(Clone, Debug)]
pub(crate) struct Client {
    channel: Channel,
    namespace: AsciiMetadataValue,
}

impl Client {
    /// A lazily connecting channel to the socket at `address`.
    pub(crate) fn new(address: &Path, namespace: &str) -> Result<Client, Error> {
        let namespace = namespace
            .parse::<AsciiMetadataValue>()
            .ok()
            .filter(|_| !namespace.is_empty())
            .ok_or_else(|| Error::Namespace {
                namespace: namespace.to_owned(),
            })?;
        let channel = kagami_containerd_api::connect(address, CONNECT_TIMEOUT, CALL_TIMEOUT);
        Ok(Client { channel, namespace })
    }

    /// Wraps a message with the namespace header containerd scopes calls by.
    pub(crate) fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert("containerd-namespace", self.namespace.clone());
        request
    }

    /// The namespace calls are made in.
    pub(crate) fn namespace(&self) -> &str {
        // Built from a `&str` in `new`, so it is always visible ASCII.
        self.namespace.to_str().unwrap_or_default()
    }

    pub(crate) fn channel(&self) -> Channel {
        self.channel.clone()
    }

    pub(crate) fn content(&self) -> ContentClient<Channel> {
        // Manifests are small but a gRPC read chunk may be up to 1 MiB.
        ContentClient::new(self.channel.clone()).max_decoding_message_size(16 << 20)
    }

    pub(crate) fn images(&self) -> ImagesClient<Channel> {
        ImagesClient::new(self.channel.clone()).max_decoding_message_size(64 << 20)
    }

    /// Checks that containerd answers at all.
    pub(crate) async fn ping(&self, address: &Path) -> Result<(), Error> {
        self.version()
            .await
            .map_err(|status| connect_error(address, status))
    }

    /// Asks containerd its version, to see that it answers.
    pub(crate) async fn version(&self) -> Result<(), Status> {
        let mut version = VersionClient::new(self.channel.clone());
        version.version(Request::new(())).await.map(drop)
    }

    /// The content directory, as containerd's introspection API reports it.
    pub(crate) async fn content_dir(&self, address: &Path) -> Result<PathBuf, Error> {
        let mut introspection = IntrospectionClient::new(self.channel.clone());
        let filter = format!("type=={},id=={}", CONTENT_PLUGIN.0, CONTENT_PLUGIN.1);
        let plugins = introspection
            .plugins(Request::new(PluginsRequest {
                filters: vec![filter],
            }))
            .await
            .map_err(|status| connect_error(address, status))?
            .into_inner()
            .plugins;
        plugins
            .into_iter()
            .filter(|p| (p.r#type.as_str(), p.id.as_str()) == CONTENT_PLUGIN)
            .find_map(|p| p.exports.get("root").map(PathBuf::from))
            .ok_or_else(|| Error::ContentDir {
                address: address.to_path_buf(),
            })
    }
}

fn connect_error(address: &Path, status: Status) -> Error {
    Error::Connect {
        address: address.to_path_buf(),
        source: Box::new(status),
    }
}
