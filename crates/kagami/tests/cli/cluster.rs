//! In-process clusters of real nodes (`kagami::Node` with libp2p) on
//! loopback, sharing one pre-shared key, each joining through the first.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use kagami::Node;
use kagami::p2p::Options;
use kagami_core::router::{Peer, Router as _};
use kagami_core::{Digest, Key};
use kagami_p2p::Psk;
use kagami_store::testing::{ArchiveFormat, BuiltImage, Compression, ImageSpec, write_archive};
use tempfile::TempDir;

use crate::harness::eventually;

/// An ephemeral port on loopback.
pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// The running nodes and the directory holding their data.
pub struct Cluster {
    pub nodes: Vec<Node>,
    psk_file: PathBuf,
    dir: TempDir,
}

impl Cluster {
    /// `n` nodes with the default P2P options.
    pub async fn start(n: usize) -> Cluster {
        Cluster::start_with(n, |_| {}).await
    }

    /// `n` nodes whose P2P options `tweak` adjusts.
    pub async fn start_with(n: usize, tweak: impl Fn(&mut Options)) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let psk_file = dir.path().join("psk");
        Psk::generate().write(&psk_file).unwrap();
        let mut cluster = Cluster {
            nodes: Vec::new(),
            psk_file,
            dir,
        };
        for _ in 0..n {
            let node = cluster.spawn(&cluster.psk_file.clone(), &tweak).await;
            cluster.nodes.push(node);
        }
        cluster
    }

    /// A node that joins through the first one with the key in
    /// `psk_file`, kept out of [`Cluster::nodes`].
    pub async fn spawn(&self, psk_file: &Path, tweak: &impl Fn(&mut Options)) -> Node {
        let bootstrap = self
            .nodes
            .first()
            .map(|first| first.p2p().unwrap().listen_addrs())
            .unwrap_or_default();
        let mut options = Options {
            listen: loopback(),
            bootstrap,
            psk_file: Some(psk_file.to_owned()),
            // These clusters test the P2P mirror; no test reaches outside
            // loopback.
            pull_through: None,
            ..Options::default()
        };
        tweak(&mut options);
        let data = tempfile::tempdir_in(self.dir.path()).unwrap().keep();
        // These tests are about the P2P mirror; trust has its own (tls.rs).
        Node::builder()
            .data_dir(data)
            .listen(loopback())
            .insecure_http()
            .p2p(options)
            .start()
            .await
            .expect("node starts")
    }

    /// The directory the cluster's files live in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Waits until every node has every other one in its routing table.
    pub async fn joined(&self) {
        let others = self.nodes.len() - 1;
        eventually("every node to know every other", || async {
            self.nodes
                .iter()
                .all(|node| routing_peers(node) >= others)
                .then_some(())
        })
        .await;
    }

    /// Stops every node.
    pub async fn shutdown(self) {
        for node in self.nodes {
            node.shutdown().await.expect("clean shutdown");
        }
    }
}

/// How many peers the node's routing table holds.
pub fn routing_peers(node: &Node) -> usize {
    node.p2p().unwrap().router().routing_peers()
}

/// The node's peer ID, as the status and the stats name it.
pub fn peer_id(node: &Node) -> String {
    node.p2p().unwrap().peer_id().to_string()
}

/// Providers of `key` that `node` finds.
pub async fn providers(node: &Node, key: &Key) -> Vec<Peer> {
    node.p2p()
        .unwrap()
        .router()
        .find_providers(key, 3)
        .await
        .unwrap()
}

/// The keys an image is advertised under: its tag, every manifest and
/// every blob.
pub fn keys(image: &BuiltImage) -> usize {
    1 + image.manifests.len() + image.blobs.len()
}

/// The digest and size of the image's largest blob.
pub fn largest_blob(image: &BuiltImage) -> (Digest, u64) {
    image
        .blobs
        .iter()
        .max_by_key(|(_, size)| **size)
        .map(|(digest, size)| (digest.clone(), *size))
        .expect("an image with blobs")
}

/// Waits until `node` has had at least `n` keys accepted by its router.
pub async fn advertised(node: &Node, n: usize) {
    let p2p = node.p2p().unwrap();
    eventually(&format!("{} keys to be advertised", n), || async {
        (p2p.advertised_keys() >= n).then_some(())
    })
    .await;
}

/// Writes `spec` as an OCI archive in `dir`; the archive and the image.
pub async fn archive(dir: &Path, spec: ImageSpec) -> (PathBuf, BuiltImage) {
    let dir = tempfile::tempdir_in(dir).unwrap().keep();
    let (path, mut built) = tokio::task::spawn_blocking(move || {
        write_archive(&dir, &[spec], ArchiveFormat::Oci, Compression::None)
    })
    .await
    .unwrap()
    .unwrap();
    (path, built.remove(0))
}

/// Imports `archive` into `node` and waits until `keys` keys (all the
/// node then holds) are advertised.
pub async fn hold(node: &Node, archive: &Path, keys: usize) {
    node.layout().unwrap().import(archive).await.unwrap();
    advertised(node, keys).await;
}
