//! One host of the bed: its own containerd and the kagami node serving
//! it, both in the host's network namespace; pulls with `ctr` as kubelet's
//! go (through the `hosts.toml` kagami writes), and what the host holds
//! and has received, read from containerd's content and kagami's status.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kagami_containerd::testing::{Daemon, NAMESPACE};
use kagami_store::testing::BuiltImage;
use std::io::Read as _;

use kagami_core::Hasher;

use crate::Error;
use crate::netns::Link;
use crate::process::{Proc, in_ns, run};

/// How long a node may take to start serving (a join included).
const START: Duration = Duration::from_secs(60);
/// How long one pull may take before it counts as hung.
pub const PULL_DEADLINE: Duration = Duration::from_secs(600);

/// What a node is in the cluster.
#[derive(Debug, Clone)]
pub enum Role {
    /// The first node: makes the CA, PSK and tokens.
    Server,
    /// Joins through `server` with `token`.
    Agent {
        /// `https://ADDR:6443` of the server.
        server: String,
        /// The agent token.
        token: String,
    },
}

/// How every node of a bed runs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The `kagami` binary.
    pub kagami: PathBuf,
    /// The registries it mirrors (`10.99.0.2:5000`, …).
    pub mirrors: Vec<String>,
    /// The `registries.yaml` every node reads.
    pub registries_yaml: PathBuf,
    /// `--log-level`.
    pub log_level: String,
    /// `--pull-through`.
    pub pull_through: bool,
}

/// A running host.
pub struct Node {
    /// Its name (`host-0`, …).
    pub name: String,
    /// Its place in the network.
    pub link: Link,
    dir: PathBuf,
    args: Vec<String>,
    kagami_bin: PathBuf,
    // Dropped before containerd, so kagami never sees it vanish first.
    kagami: Option<Proc>,
    containerd: Daemon,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.name)
            .field("addr", &self.link.addr)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Starts containerd and kagami on `link`, their files under `dir`,
    /// and waits until kagami serves.
    pub fn start(
        name: &str,
        link: Link,
        dir: &Path,
        role: &Role,
        config: &NodeConfig,
    ) -> Result<Node, Error> {
        std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
        let wrapper: Vec<String> = ["ip", "netns", "exec", &link.ns].map(String::from).to_vec();
        let containerd = Daemon::start_wrapped(&wrapper);
        let command = match role {
            Role::Server => "server",
            Role::Agent { .. } => "agent",
        };
        let mut args: Vec<String> = vec![command.to_owned()];
        let data = dir.join("data");
        let certs = dir.join("certs.d");
        for (flag, value) in [
            ("--data-dir", data.display().to_string()),
            ("--store", "containerd".to_owned()),
            (
                "--containerd-address",
                containerd.socket().display().to_string(),
            ),
            ("--containerd-config-path", certs.display().to_string()),
            (
                "--private-registry",
                config.registries_yaml.display().to_string(),
            ),
            ("--node-ip", link.addr.to_string()),
            ("--log-level", config.log_level.clone()),
            ("--pull-through", config.pull_through.to_string()),
        ] {
            args.extend([flag.to_owned(), value]);
        }
        args.extend(
            ["--embedded-registry", "--disable-default-registry-endpoint"].map(String::from),
        );
        for mirror in &config.mirrors {
            args.extend(["--mirror".to_owned(), mirror.clone()]);
        }
        if let Role::Agent { server, token } = role {
            args.extend(["--server".to_owned(), server.clone()]);
            args.extend(["--token".to_owned(), token.clone()]);
        }
        let mut node = Node {
            name: name.to_owned(),
            link,
            dir: dir.to_owned(),
            args,
            kagami_bin: config.kagami.clone(),
            kagami: None,
            containerd,
        };
        node.start_kagami()?;
        Ok(node)
    }

    fn start_kagami(&mut self) -> Result<(), Error> {
        let mut command = in_ns(&self.link.ns, &self.kagami_bin);
        command
            .args(&self.args)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG");
        let mut kagami = Proc::spawn(
            &format!("kagami on {}", self.name),
            command,
            &self.dir.join("kagami.log"),
        )?;
        kagami.wait_for_log("node serving", START)?;
        self.kagami = Some(kagami);
        Ok(())
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The agent token (on the server).
    pub fn agent_token(&self) -> Result<String, Error> {
        let path = self.data().join("cluster/token");
        std::fs::read_to_string(&path)
            .map(|token| token.trim().to_owned())
            .map_err(Error::io(path))
    }

    /// `https://ADDR:6443`.
    pub fn url(&self) -> String {
        format!("https://{}:6443", self.link.addr)
    }

    /// kagami's log so far.
    pub fn log(&self) -> String {
        self.kagami.as_ref().map(Proc::log).unwrap_or_default()
    }

    /// `GET path` on this node's registry port with its own certificate,
    /// from inside its namespace.
    fn get(&self, path: &str) -> Result<String, Error> {
        let cluster = self.data().join("cluster");
        let mut command = in_ns(&self.link.ns, "curl");
        command
            .args(["--silent", "--show-error", "--fail", "--max-time", "10"])
            .arg("--cacert")
            .arg(cluster.join("ca.crt"))
            .arg("--cert")
            .arg(cluster.join("node.crt"))
            .arg("--key")
            .arg(cluster.join("node.key"))
            .arg(format!("https://127.0.0.1:6443{path}"));
        run(&mut command)
    }

    /// The node's P2P status document (`/debug/p2p`).
    pub fn status(&self) -> Result<serde_json::Value, Error> {
        let text = self.get("/debug/p2p")?;
        serde_json::from_str(&text)
            .map_err(|e| Error::Check(format!("{}: unreadable status: {e}: {text}", self.name)))
    }

    /// Bytes the node has received from peers and passed on, by kagami's
    /// own count.
    pub fn bytes_from_peers(&self) -> Result<u64, Error> {
        let status = self.status()?;
        let relayed = status["bytes_relayed"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        Ok(relayed.values().filter_map(serde_json::Value::as_u64).sum())
    }

    /// The node's peer ID.
    pub fn peer_id(&self) -> Result<String, Error> {
        self.status()?["peer_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Error::Check(format!("{}: no peer ID in its status", self.name)))
    }

    /// The peer IDs of the nodes that pull `key` (a digest, or
    /// `registry/repository:tag`) through from the upstream, closest first,
    /// as this node sees the DHT (`/debug/p2p/origins`).
    pub fn origins(&self, key: &str) -> Result<Vec<String>, Error> {
        let text = self.get(&format!("/debug/p2p/origins?key={key}"))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::Check(format!("{}: unreadable origins: {e}: {text}", self.name)))?;
        Ok(value["origins"]
            .as_array()
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| id.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Bytes the node has received from the peer `peer_id`.
    pub fn bytes_from(&self, peer_id: &str) -> Result<u64, Error> {
        Ok(self.status()?["bytes_relayed"][peer_id]
            .as_u64()
            .unwrap_or(0))
    }

    /// Peers in the node's routing table.
    pub fn routing_peers(&self) -> Result<u64, Error> {
        Ok(self.status()?["routing_peers"].as_u64().unwrap_or(0))
    }

    /// Keys the node advertises.
    pub fn advertised_keys(&self) -> Result<u64, Error> {
        Ok(self.status()?["advertised_keys"].as_u64().unwrap_or(0))
    }

    /// The `ctr images pull` kubelet's pull amounts to: through this
    /// host's `hosts.toml`, unpacked with the native snapshotter.
    pub fn pull_command(&self, reference: &str, user: Option<&str>) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("ip");
        command
            .args(["netns", "exec", &self.link.ns, "ctr", "--address"])
            .arg(self.containerd.socket())
            .args(["--namespace", NAMESPACE, "images", "pull", "--hosts-dir"])
            .arg(self.dir.join("certs.d"))
            .args(["--snapshotter", "native"]);
        if let Some(user) = user {
            command.args(["--user", user]);
        }
        command.arg(reference).kill_on_drop(true);
        command
    }

    /// Pulls `reference` and returns how long it took.
    pub async fn pull(&self, reference: &str, user: Option<&str>) -> Result<Duration, Error> {
        let started = Instant::now();
        let output =
            tokio::time::timeout(PULL_DEADLINE, self.pull_command(reference, user).output())
                .await
                .map_err(|_| Error::Timeout {
                    what: format!("{} to pull {reference}", self.name),
                    detail: self.log(),
                })?
                .map_err(Error::io("ctr"))?;
        let took = started.elapsed();
        if !output.status.success() {
            return Err(Error::Check(format!(
                "{}: ctr pull {reference} failed: {}{}",
                self.name,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )));
        }
        Ok(took)
    }

    /// Checks that containerd holds every manifest and blob of `image`,
    /// each matching its digest.
    pub fn check_image(&self, image: &BuiltImage) -> Result<(), Error> {
        let content = self.containerd.content_dir();
        let digests = image.manifests.iter().chain(image.blobs.keys());
        for digest in digests {
            let path = content
                .join("blobs")
                .join(digest.algorithm().as_str())
                .join(digest.hex());
            let mut file = std::fs::File::open(&path)
                .map_err(|e| Error::Check(format!("{}: {digest} is not held: {e}", self.name)))?;
            let mut hasher = Hasher::new(digest.algorithm());
            let mut buffer = vec![0; 1 << 20];
            loop {
                let n = file.read(&mut buffer).map_err(Error::io(&path))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buffer[..n]);
            }
            let actual = hasher.finish();
            if actual != *digest {
                return Err(Error::Check(format!(
                    "{}: the bytes held for {digest} hash to {actual}",
                    self.name
                )));
            }
        }
        Ok(())
    }

    /// SIGKILL to kagami and containerd both.
    pub fn kill(&mut self) {
        if let Some(mut kagami) = self.kagami.take() {
            kagami.kill();
        }
        self.containerd.kill();
    }

    /// Kills containerd and starts it again on the same root; kagami stays.
    pub fn restart_containerd(&mut self) {
        self.containerd.restart();
    }
}
