//! The `kagami server` flags of the P2P network and the mirror path, and
//! the K3s environment variables honoured beside kagami's own.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use kagami::p2p::{DEFAULT_P2P_PORT, Options};
use kagami_registry::MirrorConfig;

#[derive(Debug, Args)]
pub struct P2pArgs {
    /// Join the P2P network: advertise this node's images to peers and serve
    /// what it lacks from them. Off by default, as in K3s.
    #[arg(long, env = "KAGAMI_EMBEDDED_REGISTRY")]
    embedded_registry: bool,

    /// P2P port, the same on every node [default: 5001; also K3S_P2P_PORT].
    #[arg(long, env = "KAGAMI_P2P_PORT")]
    p2p_port: Option<u16>,

    /// A peer to join through: a multiaddr (`/ip4/10.0.0.1/tcp/5001/p2p/12D3…`)
    /// or `host:port`. Repeatable.
    #[arg(
        long = "bootstrap-peer",
        env = "KAGAMI_BOOTSTRAP_PEERS",
        value_delimiter = ','
    )]
    bootstrap_peers: Vec<String>,

    /// The cluster's 32-byte pre-shared key [default: DATA_DIR/p2p/psk, created on first start].
    #[arg(long, env = "KAGAMI_PSK_FILE")]
    psk_file: Option<PathBuf>,

    /// Resolve and advertise `latest` tags through peers (unsupported; also K3S_P2P_ENABLE_LATEST).
    #[arg(long, env = "KAGAMI_P2P_ENABLE_LATEST")]
    p2p_enable_latest: Option<bool>,

    /// Longest wait for the DHT to name providers of a key.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    resolve_timeout: Duration,

    /// Wait for a peer's first byte before racing a second peer (adapts downwards).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "300ms")]
    first_byte_timeout: Duration,

    /// Overall budget of a manifest, a HEAD or a blob's response head from peers.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "3s")]
    manifest_timeout: Duration,

    /// Slowest a peer may send a blob, per second (`512KiB`, `2MB`, `0` for no floor): a slower peer is left for another provider, or the client's next endpoint.
    #[arg(long, value_parser = parse_rate, default_value = "512KiB")]
    min_peer_rate: u64,

    /// Pull-through: what no peer serves is fetched from the upstream once for the cluster, by its origin; `false`: never contact an upstream.
    #[arg(long, env = "KAGAMI_PULL_THROUGH", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pull_through: bool,

    /// Most bytes the pull-through cache (DATA_DIR/cache) keeps: `10GiB`, `500MB`.
    #[arg(long, env = "KAGAMI_CACHE_SIZE", value_parser = parse_rate, default_value = "10GiB")]
    cache_size: u64,

    /// How long a tag resolved at the upstream is trusted before it is asked again.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    tag_ttl: Duration,

    /// Longest wait for a key's origin to answer (it may be asking the upstream) before the next closest node is asked.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "20s")]
    origin_timeout: Duration,

    /// Longest wait for an upstream registry's response head.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "15s")]
    upstream_timeout: Duration,

    /// Longest an upstream registry may go without sending a byte of a body.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    upstream_idle_timeout: Duration,

    /// Most providers asked for and tried per key.
    #[arg(long, default_value_t = MirrorConfig::DEFAULT_MAX_PROVIDERS)]
    max_providers: usize,
}

impl P2pArgs {
    /// The mirror's budgets, range-checked: a zero wait would fail every
    /// lookup, and the first byte is raced within the manifest's budget.
    fn check_budgets(&self) -> anyhow::Result<()> {
        const FLOOR: Duration = Duration::from_millis(10);
        for (flag, value) in [
            ("resolve-timeout", self.resolve_timeout),
            ("first-byte-timeout", self.first_byte_timeout),
            ("manifest-timeout", self.manifest_timeout),
        ] {
            if value < FLOOR {
                anyhow::bail!(
                    "--{flag} {} is too short: at least {}",
                    humantime::format_duration(value),
                    humantime::format_duration(FLOOR)
                );
            }
        }
        if self.first_byte_timeout >= self.manifest_timeout {
            anyhow::bail!(
                "--first-byte-timeout {} must be shorter than --manifest-timeout {}",
                humantime::format_duration(self.first_byte_timeout),
                humantime::format_duration(self.manifest_timeout)
            );
        }
        if self.max_providers == 0 {
            anyhow::bail!("--max-providers 0 would never ask a peer: at least 1");
        }
        Ok(())
    }

    /// Pull-through as the flags and `registries.yaml` say, or `None`
    /// with `--pull-through false`.
    pub fn pull_through(
        &self,
        registries: Option<&kagami_config::Registries>,
        default_endpoint: bool,
    ) -> Option<kagami::p2p::PullThroughOptions> {
        if !self.pull_through {
            return None;
        }
        let budgets = kagami_upstream::Budgets {
            response: self.upstream_timeout,
            idle: self.upstream_idle_timeout,
            ..kagami_upstream::Budgets::default()
        };
        Some(kagami::p2p::PullThroughOptions {
            upstream: kagami::upstream_config(registries, default_endpoint, budgets),
            cache_size: self.cache_size,
        })
    }

    /// Whether `--embedded-registry` is on.
    pub fn embedded_registry(&self) -> bool {
        self.embedded_registry
    }

    /// The node's P2P options.
    pub fn options(&self, bind: IpAddr) -> anyhow::Result<Options> {
        self.check_budgets()?;
        let port = match self.p2p_port {
            Some(port) => port,
            None => k3s_env("K3S_P2P_PORT")?.unwrap_or(DEFAULT_P2P_PORT),
        };
        let latest = match self.p2p_enable_latest {
            Some(latest) => latest,
            None => k3s_env("K3S_P2P_ENABLE_LATEST")?.unwrap_or(false),
        };
        let bootstrap = self
            .bootstrap_peers
            .iter()
            .map(|peer| {
                kagami_p2p::parse_bootstrap(peer)
                    .with_context(|| format!("bad --bootstrap-peer {peer:?}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mirror = MirrorConfig {
            resolve_latest: latest,
            advertise_latest: latest,
            resolve_timeout: self.resolve_timeout,
            first_byte_timeout: self.first_byte_timeout,
            manifest_timeout: self.manifest_timeout,
            max_providers: self.max_providers,
            min_peer_rate: self.min_peer_rate,
            tag_ttl: self.tag_ttl,
            origin_timeout: self.origin_timeout,
            ..MirrorConfig::default()
        };
        Ok(Options {
            listen: SocketAddr::new(bind, port),
            bootstrap,
            psk_file: self.psk_file.clone(),
            mirror,
            // Set by `pull_through` once registries.yaml is read.
            pull_through: None,
            ..Options::default()
        })
    }
}

/// Bytes (per second, for rates) from `512KiB`, `2MB`, `10GiB`,
/// `1048576` (a `/s` may follow).
fn parse_rate(text: &str) -> Result<u64, String> {
    let text = text.trim().trim_end_matches("/s");
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("not a rate: {text:?} (say 512KiB or 2MB)"))?;
    let scale: u64 = match unit {
        "" | "B" => 1,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "unknown unit {other:?} (B, KB, MB, GB, KiB, MiB, GiB)"
            ));
        }
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// A K3s variable, read only when kagami's own flag and variable are unset.
fn k3s_env<T>(name: &str) -> anyhow::Result<Option<T>>
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .map(Some)
            .with_context(|| format!("bad {name}={value:?}")),
        Err(_) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_bytes_per_second() {
        assert_eq!(parse_rate("512KiB"), Ok(512 * 1024));
        assert_eq!(parse_rate("2MB/s"), Ok(2_000_000));
        assert_eq!(parse_rate("0"), Ok(0));
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("1TB").is_err());
        assert_eq!(parse_rate("10GiB"), Ok(10 << 30));
    }
}
