//! Putting a bed together: network, upstreams, nodes, and images to pull.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kagami_store::testing::BuiltImage;

use crate::host::{Node, NodeConfig, Role};
use crate::netns::{Link, Network};
use crate::shape::Shape;
use crate::upstream::{CREDENTIALS, Kind, Upstream};
use crate::{Error, images};

/// The address index of the plain upstream; the TLS one is next.
const UPSTREAM_INDEX: u8 = 2;
/// The address index of the first node.
const FIRST_NODE_INDEX: u8 = 10;
/// How long the nodes may take to find each other.
const MESH_DEADLINE: Duration = Duration::from_secs(60);

/// What a bed is made of.
#[derive(Debug, Clone)]
pub struct BedConfig {
    /// Hosts with containerd and kagami (at least 1).
    pub hosts: usize,
    /// Each host's link.
    pub host_shape: Shape,
    /// The upstream hosts' links.
    pub upstream_shape: Shape,
    /// The `kagami` binary to run.
    pub kagami: PathBuf,
    /// kagami's `--log-level`.
    pub log_level: String,
    /// kagami's `--pull-through`.
    pub pull_through: bool,
}

/// An image published to the upstreams.
#[derive(Debug, Clone)]
pub struct Published {
    /// What it holds.
    pub image: BuiltImage,
    /// `10.99.0.2:5000/bed/app-N:1` (plain upstream).
    pub reference: String,
    /// The same image on the TLS upstream.
    pub tls_reference: String,
}

/// A running bed; everything removed when dropped.
pub struct Bed {
    /// The hosts, the first one the server.
    pub nodes: Vec<Node>,
    /// The plain-HTTP upstream.
    pub upstream: Upstream,
    /// The TLS and basic-auth upstream.
    pub tls_upstream: Upstream,
    network: Network,
    config: BedConfig,
    published: u64,
    // Last: the files of everything above.
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for Bed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bed")
            .field("nodes", &self.nodes)
            .field("upstream", &self.upstream.host())
            .finish_non_exhaustive()
    }
}

/// Fails with a clear message when something the bed needs is missing.
pub fn preflight() -> Result<(), Error> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(str::to_owned))
        });
    if uid.as_deref() != Some("0") {
        return Err(Error::NotRoot);
    }
    for program in [
        "ip",
        "tc",
        "containerd",
        "ctr",
        "docker-registry",
        "skopeo",
        "curl",
    ] {
        let found = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {program}")])
            .output()
            .is_ok_and(|output| output.status.success());
        if !found {
            return Err(Error::Missing { program });
        }
    }
    Ok(())
}

impl Bed {
    /// Makes the network, starts both upstreams and every node, and waits
    /// until the nodes know each other.
    pub fn start(config: BedConfig) -> Result<Bed, Error> {
        preflight()?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("kgtb{}x-", std::process::id()))
            .tempdir()
            .map_err(Error::io(std::env::temp_dir()))?;
        let mut network = Network::create()?;
        let plain = network.add_host("upstream", UPSTREAM_INDEX)?;
        let tls = network.add_host("upstream-tls", UPSTREAM_INDEX + 1)?;
        for link in [&plain, &tls] {
            network.shape(link, &config.upstream_shape)?;
        }
        let upstream = Upstream::start(plain, Kind::Plain, &dir.path().join("upstream"))?;
        let tls_upstream =
            Upstream::start(tls, Kind::TlsBasicAuth, &dir.path().join("upstream-tls"))?;
        let registries_yaml = dir.path().join("registries.yaml");
        write_registries_yaml(&registries_yaml, &upstream, &tls_upstream)?;
        let node_config = NodeConfig {
            kagami: config.kagami.clone(),
            mirrors: vec![upstream.host(), tls_upstream.host()],
            registries_yaml,
            log_level: config.log_level.clone(),
            pull_through: config.pull_through,
        };
        let mut nodes: Vec<Node> = Vec::with_capacity(config.hosts);
        for i in 0..config.hosts.max(1) {
            let name = format!("host-{i}");
            let index = FIRST_NODE_INDEX + u8::try_from(i).unwrap_or(u8::MAX - FIRST_NODE_INDEX);
            let link = network.add_host(&name, index)?;
            network.shape(&link, &config.host_shape)?;
            let role = match nodes.first() {
                None => Role::Server,
                Some(server) => Role::Agent {
                    server: server.url(),
                    token: server.agent_token()?,
                },
            };
            let node = Node::start(&name, link, &dir.path().join(&name), &role, &node_config)?;
            nodes.push(node);
        }
        let bed = Bed {
            nodes,
            upstream,
            tls_upstream,
            network,
            config,
            published: 0,
            dir,
        };
        bed.wait_for_mesh()?;
        Ok(bed)
    }

    /// Waits until every node has every other one in its routing table.
    pub fn wait_for_mesh(&self) -> Result<(), Error> {
        let others = (self.nodes.len() as u64).saturating_sub(1);
        let deadline = Instant::now() + MESH_DEADLINE;
        loop {
            let known: Vec<u64> = self
                .nodes
                .iter()
                .map(|node| node.routing_peers().unwrap_or(0))
                .collect();
            if known.iter().all(|n| *n >= others) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout {
                    what: "every node to know every other".to_owned(),
                    detail: format!("routing peers per node: {known:?}"),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The bed's configuration.
    pub fn config(&self) -> &BedConfig {
        &self.config
    }

    /// The bed's network, to shape, cut and count.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// The links of every node but `index`.
    pub fn other_links(&self, index: usize) -> Vec<&Link> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != index)
            .map(|(_, node)| &node.link)
            .collect()
    }

    /// The hosts that pull `image` through from the plain upstream: for
    /// each of its keys (tag, manifests, blobs), the closest node, as host
    /// 0 sees the DHT; by index, each once, in host order.
    pub fn origin_hosts(&self, image: &Published) -> Result<Vec<usize>, Error> {
        let mut keys = vec![image.reference.clone()];
        keys.extend(image.image.manifests.iter().map(ToString::to_string));
        keys.extend(image.image.blobs.keys().map(ToString::to_string));
        let mut hosts = Vec::new();
        for key in &keys {
            hosts.push(self.origin_of(key)?);
        }
        hosts.sort_unstable();
        hosts.dedup();
        Ok(hosts)
    }

    /// The host closest to `key`, as host 0 sees the DHT.
    pub fn origin_of(&self, key: &str) -> Result<usize, Error> {
        let origins = self.nodes[0].origins(key)?;
        let closest = origins
            .first()
            .ok_or_else(|| Error::Check(format!("no origin named for {key}")))?;
        for (index, node) in self.nodes.iter().enumerate() {
            if node.peer_id()? == *closest {
                return Ok(index);
            }
        }
        Err(Error::Check(format!(
            "the origin of {key}, {closest}, is no host of the bed"
        )))
    }

    /// Cuts host `index` off from both upstreams (it still reaches the
    /// other hosts).
    pub fn cut_from_upstreams(&self, index: usize) -> Result<(), Error> {
        let upstreams = [&self.upstream.link, &self.tls_upstream.link];
        self.network.cut(&self.nodes[index].link, &upstreams)
    }

    /// Undoes [`Bed::cut_from_upstreams`].
    pub fn heal_upstreams(&self, index: usize) -> Result<(), Error> {
        let upstreams = [&self.upstream.link, &self.tls_upstream.link];
        self.network.heal(&self.nodes[index].link, &upstreams)
    }

    /// Makes an image of `total` bytes in `layers` layers and pushes it to
    /// both upstreams.
    pub fn publish(&mut self, total: u64, layers: u32) -> Result<Published, Error> {
        self.published += 1;
        let n = self.published;
        let repository = format!("bed/app-{n}");
        let reference = format!("{}/{repository}:1", self.upstream.host());
        let spec = images::spec(&reference, total, layers, 1000 + n);
        let layout = self.dir.path().join(format!("image-{n}"));
        let image = images::write(&layout, &spec)?;
        self.upstream.push(&layout, "1", &repository)?;
        self.tls_upstream.push(&layout, "1", &repository)?;
        Ok(Published {
            tls_reference: format!("{}/{repository}:1", self.tls_upstream.host()),
            reference,
            image,
        })
    }

    /// `user:password` of the TLS upstream, as `ctr --user` takes it.
    pub fn tls_user(&self) -> String {
        format!("{}:{}", CREDENTIALS.0, CREDENTIALS.1)
    }

    /// Bytes the plain upstream has sent on its link so far.
    pub fn upstream_tx(&self) -> Result<u64, Error> {
        self.network.tx_bytes(&self.upstream.link)
    }

    /// Where the bed keeps its files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// K3s's `registries.yaml` every node reads: both upstreams mirrored, the
/// plain one over `http://`, the TLS one with its CA and credentials.
fn write_registries_yaml(path: &Path, plain: &Upstream, tls: &Upstream) -> Result<(), Error> {
    let ca = tls
        .ca_file
        .as_ref()
        .map(|ca| ca.display().to_string())
        .unwrap_or_default();
    let text = format!(
        "mirrors:\n  \"{plain}\":\n    endpoint:\n      - \"{plain_url}\"\n  \"{tls}\":\n    endpoint:\n      - \"{tls_url}\"\nconfigs:\n  \"{tls}\":\n    tls:\n      ca_file: {ca}\n    auth:\n      username: {user}\n      password: {password}\n",
        plain = plain.host(),
        plain_url = plain.url(),
        tls = tls.host(),
        tls_url = tls.url(),
        user = CREDENTIALS.0,
        password = CREDENTIALS.1,
    );
    std::fs::write(path, text).map_err(Error::io(path))
}
