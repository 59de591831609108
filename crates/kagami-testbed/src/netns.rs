//! The bed's network: a bridge in a namespace of its own, and one
//! namespace per host joined to it by a veth pair. Nothing is made in the
//! machine's own namespace, so the bed never touches its network; and since
//! every run has its own bridge, two runs use the same addresses without
//! meeting. Namespaces are named `kgtb<pid>x<run>-<name>`, which lets a
//! later run remove what a killed one left ([`sweep_leftovers`]).

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::Error;
use crate::process::run;
use crate::shape::Shape;

/// The first three octets of every bed address; private (RFC 1918), and
/// only ever inside a run's own namespaces.
pub const SUBNET: [u8; 3] = [10, 99, 0];
/// What every bed namespace's name starts with.
const PREFIX: &str = "kgtb";
/// The namespace that holds the bridge.
const SWITCH: &str = "switch";

static RUNS: AtomicU32 = AtomicU32::new(0);

/// One host's place in the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The host's namespace.
    pub ns: String,
    /// Its address.
    pub addr: Ipv4Addr,
    /// Its end of the veth pair on the bridge (in the switch namespace).
    port: String,
}

/// The namespaces and links of one run; all removed when dropped.
#[derive(Debug)]
pub struct Network {
    prefix: String,
    switch: String,
    links: Vec<Link>,
}

/// `ip ARGS…`.
fn ip(args: &[&str]) -> Result<String, Error> {
    run(Command::new("ip").args(args))
}

impl Network {
    /// Makes the switch namespace and its bridge, after removing what
    /// killed runs left.
    pub fn create() -> Result<Network, Error> {
        sweep_leftovers();
        let prefix = format!(
            "{PREFIX}{}x{}-",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::Relaxed)
        );
        let switch = format!("{prefix}{SWITCH}");
        let network = Network {
            prefix,
            switch: switch.clone(),
            links: Vec::new(),
        };
        ip(&["netns", "add", &switch])?;
        ip(&["-n", &switch, "link", "set", "lo", "up"])?;
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &switch, "link", "set", "br0", "up"])?;
        Ok(network)
    }

    /// Adds a host: its namespace, with loopback up and `eth0` at
    /// `10.99.0.<index>/24` on the bridge.
    pub fn add_host(&mut self, name: &str, index: u8) -> Result<Link, Error> {
        let ns = format!("{}{name}", self.prefix);
        let [a, b, c] = SUBNET;
        let addr = Ipv4Addr::new(a, b, c, index);
        let port = format!("p{index}");
        ip(&["netns", "add", &ns])?;
        let link = Link {
            ns: ns.clone(),
            addr,
            port: port.clone(),
        };
        self.links.push(link.clone());
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        ip(&[
            "-n",
            &self.switch,
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &ns,
        ])?;
        ip(&["-n", &self.switch, "link", "set", &port, "master", "br0"])?;
        ip(&["-n", &self.switch, "link", "set", &port, "up"])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        Ok(link)
    }

    /// Shapes a host's link: `shape` on what it sends (its `eth0`) and on
    /// what it receives (its port on the bridge).
    pub fn shape(&self, link: &Link, shape: &Shape) -> Result<(), Error> {
        shape.apply(&link.ns, "eth0")?;
        shape.apply(&self.switch, &link.port)
    }

    /// Bytes a host has sent on its link so far, as the kernel counts them.
    pub fn tx_bytes(&self, link: &Link) -> Result<u64, Error> {
        let json = ip(&["-n", &link.ns, "-s", "-j", "link", "show", "eth0"])?;
        let value: serde_json::Value = serde_json::from_str(&json)
            .map_err(|e| Error::Check(format!("unreadable `ip -s -j link` output: {e}")))?;
        value[0]["stats64"]["tx"]["bytes"]
            .as_u64()
            .ok_or_else(|| Error::Check(format!("no tx byte count in {json}")))
    }

    /// Cuts `link` off from `others` (and they from it), both ways, by
    /// routing their addresses nowhere inside its namespace; everything
    /// else still reaches it.
    pub fn cut(&self, link: &Link, others: &[&Link]) -> Result<(), Error> {
        for other in others {
            ip(&[
                "-n",
                &link.ns,
                "route",
                "add",
                "blackhole",
                &format!("{}/32", other.addr),
            ])?;
        }
        Ok(())
    }

    /// Undoes [`Network::cut`].
    pub fn heal(&self, link: &Link, others: &[&Link]) -> Result<(), Error> {
        for other in others {
            ip(&[
                "-n",
                &link.ns,
                "route",
                "del",
                "blackhole",
                &format!("{}/32", other.addr),
            ])?;
        }
        Ok(())
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let mut names: Vec<String> = self.links.iter().map(|l| l.ns.clone()).collect();
        names.push(self.switch.clone());
        for name in names {
            remove(&name);
        }
    }
}

/// Kills every process in namespace `name` and deletes it.
fn remove(name: &str) {
    if let Ok(pids) = ip(&["netns", "pids", name]) {
        for pid in pids.split_whitespace() {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
    }
    let _ = ip(&["netns", "del", name]);
}

/// The process that made a bed namespace or directory named
/// `kgtb<pid>x…`, if the name is one.
fn owner(name: &str) -> Option<u32> {
    name.strip_prefix(PREFIX)?.split('x').next()?.parse().ok()
}

fn gone(pid: u32) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes what bed runs whose process is gone (killed before they could
/// clean up) left: their namespaces, with everything still running in
/// them, and their directories under the temporary directory.
pub fn sweep_leftovers() {
    if let Ok(list) = ip(&["netns", "list"]) {
        for line in list.lines() {
            let Some(name) = line.split_whitespace().next() else {
                continue;
            };
            if owner(name).is_some_and(gone) {
                remove(name);
            }
        }
    }
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if owner(&name).is_some_and(gone) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
