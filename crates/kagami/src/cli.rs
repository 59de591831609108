//! Command-line flags and the dispatch of subcommands.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use kagami::{
    DEFAULT_CONTAINERD_CONFIG_PATH, DEFAULT_DATA_DIR, DEFAULT_REGISTRY_PORT, HostsConfig, Mirrored,
    Node, StoreChoice,
};
use kagami_core::Registry;

use crate::image;
use crate::trust_flags::Role;

/// kagami: a peer-to-peer OCI registry mirror for Kubernetes nodes.
#[derive(Debug, Parser)]
#[command(name = "kagami", version)]
pub struct Cli {
    /// Log level or filter (`info`, `debug`, `kagami_registry=debug`); `RUST_LOG` overrides it.
    #[arg(long, global = true, env = "KAGAMI_LOG_LEVEL")]
    pub log_level: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a server node: own the cluster's CA and key (made on first start), and serve images.
    Server(Box<ServerArgs>),
    /// Run an agent node: join through a server with its token, and serve images.
    Agent(Box<ServerArgs>),
    /// Print the cluster's agent join token (on a server); `--server` prints the server token.
    Token {
        #[command(flatten)]
        data_dir: DataDir,
        /// Print the server token instead: it lets a node join as a server and receive the CA key.
        #[arg(long)]
        server: bool,
    },
    /// Manage the images of the built-in store.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Put containerd's mirror configuration back as it was before kagami wrote into it.
    Cleanup {
        /// containerd's registry configuration directory (its `config_path`).
        #[arg(long, env = "KAGAMI_CONTAINERD_CONFIG_PATH", default_value = DEFAULT_CONTAINERD_CONFIG_PATH)]
        containerd_config_path: PathBuf,
    },
    /// Start a small cluster on loopback, pull an image between its nodes, and report.
    Demo(crate::demo::DemoArgs),
    /// Pull an image through the local node and report, per key, the DHT lookup and its providers, and per blob the time, size and source.
    Measure {
        #[command(flatten)]
        data_dir: DataDir,
        /// The node's registry API.
        #[arg(
            long,
            env = "KAGAMI_MEASURE_ADDRESS",
            default_value = "127.0.0.1:6443",
            value_name = "HOST:PORT"
        )]
        address: SocketAddr,
        /// Speak plain HTTP, to a node run with --insecure-http.
        #[arg(long)]
        insecure_http: bool,
        /// The platform picked from a multi-platform image (os/architecture) [default: this machine's].
        #[arg(long)]
        platform: Option<String>,
        /// The image, as containerd names it (nginx:1.25, quay.io/org/app@sha256:…).
        image: String,
    },
}

/// Where the node keeps its state.
#[derive(Debug, Args)]
pub struct DataDir {
    /// The node's data directory; the built-in store lives in its `layout/`.
    #[arg(long = "data-dir", env = "KAGAMI_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub path: PathBuf,
}

#[derive(Debug, Args)]
struct ServerArgs {
    #[command(flatten)]
    data_dir: DataDir,

    /// Port of the registry API: HTTPS with client certificates of the cluster (`0` picks a free port).
    #[arg(long, env = "KAGAMI_HTTPS_LISTEN_PORT", default_value_t = DEFAULT_REGISTRY_PORT)]
    https_listen_port: u16,

    /// Address the registry API binds to.
    #[arg(long, env = "KAGAMI_BIND_ADDRESS", default_value = "0.0.0.0")]
    bind_address: IpAddr,

    /// Registry a request without containerd's `?ns=` parameter is for.
    #[arg(long, env = "KAGAMI_DEFAULT_REGISTRY", default_value = "docker.io")]
    default_registry: Registry,

    /// Which image store to serve: `auto` uses containerd when its socket exists, else the built-in store.
    #[arg(long, env = "KAGAMI_STORE", value_enum, default_value_t = StoreKind::Auto)]
    store: StoreKind,

    /// containerd's gRPC socket.
    #[arg(
        long,
        env = "KAGAMI_CONTAINERD_ADDRESS",
        default_value = "/run/containerd/containerd.sock"
    )]
    containerd_address: PathBuf,

    /// containerd namespace whose images are served (Kubernetes uses k8s.io).
    #[arg(long, env = "KAGAMI_CONTAINERD_NAMESPACE", default_value = "k8s.io")]
    containerd_namespace: String,

    /// containerd's content directory, read directly [default: asked of containerd].
    #[arg(long, env = "KAGAMI_CONTAINERD_CONTENT_DIR")]
    containerd_content_dir: Option<PathBuf>,

    /// Most connections to the registry port at once; a share of them is kept for members (see docs/configuration.md).
    #[arg(long, env = "KAGAMI_MAX_CONNECTIONS", default_value_t = kagami_registry::Limits::default().max_connections)]
    max_connections: usize,

    /// Close a registry connection on which no byte has moved either way for this long.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    connection_idle_timeout: Duration,

    /// Time a client has to finish its TLS handshake on the registry port.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    handshake_timeout: Duration,

    /// Also answer /healthz and /readyz in plain HTTP here (a loopback address such as 127.0.0.1:6444), for probes without a cluster certificate.
    #[arg(long, env = "KAGAMI_HEALTHZ_ADDRESS")]
    healthz_address: Option<SocketAddr>,

    /// Serve /metrics (Prometheus) and the status page (/) in plain HTTP here, and nothing else; an empty value turns it off.
    #[arg(long, env = "KAGAMI_METRICS_ADDRESS", default_value = "127.0.0.1:9090", value_parser = parse_metrics_address, value_name = "ADDR")]
    metrics_address: MetricsAddress,

    /// A YAML file with one key per long flag (K3s's config.yaml works too) [default: /etc/kagami/config.yaml, if it exists].
    #[arg(long, env = "KAGAMI_CONFIG_FILE")]
    config: Option<PathBuf>,

    /// K3s's registries.yaml: `mirrors:` names the registries shared (`"*"` for all) and their endpoints [default: /etc/kagami/registries.yaml, if it exists].
    #[arg(long, env = "KAGAMI_PRIVATE_REGISTRY")]
    private_registry: Option<PathBuf>,

    /// Leave the upstream registry out of containerd's hosts.toml (unless a listed endpoint is the registry itself).
    #[arg(long, env = "KAGAMI_DISABLE_DEFAULT_REGISTRY_ENDPOINT")]
    disable_default_registry_endpoint: bool,

    /// containerd's registry configuration directory (its `config_path`), where kagami writes `<registry>/hosts.toml`.
    #[arg(long, env = "KAGAMI_CONTAINERD_CONFIG_PATH", default_value = DEFAULT_CONTAINERD_CONFIG_PATH)]
    containerd_config_path: PathBuf,

    /// A registry containerd pulls through this node (repeatable; `"*"` for all). Needs --embedded-registry.
    #[arg(
        long = "mirror",
        value_name = "REGISTRY",
        env = "KAGAMI_MIRRORS",
        value_delimiter = ','
    )]
    mirrors: Vec<Mirrored>,

    #[command(flatten)]
    p2p: crate::p2p_flags::P2pArgs,

    #[command(flatten)]
    trust: crate::trust_flags::TrustArgs,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum StoreKind {
    Auto,
    Containerd,
    Layout,
}

#[derive(Debug, Subcommand)]
enum ImageCommand {
    /// Import `docker save` or OCI archives (plain, gzip or zstd) into the built-in store.
    Import {
        #[command(flatten)]
        data_dir: DataDir,
        /// Archives to import.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List the images of the built-in store.
    #[command(alias = "list")]
    Ls {
        #[command(flatten)]
        data_dir: DataDir,
        /// Print only the references.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Remove images, and the content no other image uses, from the built-in store.
    #[command(alias = "remove")]
    Rm {
        #[command(flatten)]
        data_dir: DataDir,
        /// References of the images (`nginx:1` means `docker.io/library/nginx:1`).
        #[arg(required = true)]
        references: Vec<String>,
    },
    /// Remove what interrupted imports left: blobs no image references, and temporary files.
    Gc {
        #[command(flatten)]
        data_dir: DataDir,
    },
}

impl Cli {
    /// Parses `args` (the program's name first), without exiting.
    pub fn try_parse_from_args(args: Vec<std::ffi::OsString>) -> Result<Cli, clap::Error> {
        <Cli as clap::Parser>::try_parse_from(args)
    }

    /// The log filter: the flag, else quiet for the demo (its table is the
    /// output), else `info`.
    pub fn log_filter(&self) -> &str {
        match (&self.log_level, &self.command) {
            (Some(level), _) => level,
            (None, Command::Demo(_)) => "warn",
            (None, _) => "info",
        }
    }
}

/// Runs the chosen subcommand.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Server(args) => server(*args, Role::Server).await,
        Command::Agent(args) => server(*args, Role::Agent).await,
        Command::Token { data_dir, server } => token(&data_dir.path, server),
        Command::Demo(args) => crate::demo::run(args).await,
        Command::Measure {
            data_dir,
            address,
            insecure_http,
            platform,
            image,
        } => {
            let measure = crate::measure::Measure {
                image,
                addr: address,
                insecure_http,
                platform: platform.unwrap_or_else(crate::measure::this_platform),
            };
            crate::measure::run(measure, &data_dir.path).await
        }
        Command::Cleanup {
            containerd_config_path,
        } => cleanup(&containerd_config_path),
        Command::Image(ImageCommand::Import { data_dir, files }) => {
            image::import(&data_dir.path, &files).await
        }
        Command::Image(ImageCommand::Ls { data_dir, quiet }) => {
            image::list(&data_dir.path, quiet).await
        }
        Command::Image(ImageCommand::Rm {
            data_dir,
            references,
        }) => image::remove(&data_dir.path, &references).await,
        Command::Image(ImageCommand::Gc { data_dir }) => image::gc(&data_dir.path).await,
    }
}

/// The registry port's budgets from the flags, range-checked.
fn connection_limits(args: &ServerArgs) -> anyhow::Result<kagami_registry::Limits> {
    let min = kagami_registry::Limits::MIN_CONNECTIONS;
    if args.max_connections < min {
        anyhow::bail!(
            "--max-connections {} is too few: at least {min}",
            args.max_connections
        );
    }
    let at_least = |flag: &str, value: Duration, floor: Duration| {
        if value < floor {
            anyhow::bail!(
                "--{flag} {} is too short: at least {}",
                humantime::format_duration(value),
                humantime::format_duration(floor)
            );
        }
        Ok(())
    };
    at_least(
        "connection-idle-timeout",
        args.connection_idle_timeout,
        Duration::from_secs(1),
    )?;
    at_least(
        "handshake-timeout",
        args.handshake_timeout,
        Duration::from_millis(100),
    )?;
    Ok(kagami_registry::Limits {
        idle_timeout: args.connection_idle_timeout,
        handshake_timeout: args.handshake_timeout,
        ..kagami_registry::Limits::with_max_connections(args.max_connections)
    })
}

async fn server(args: ServerArgs, role: Role) -> anyhow::Result<()> {
    tracing::info!(version = env!("CARGO_PKG_VERSION"), data_dir = %args.data_dir.path.display(), ?role, "kagami starting");
    let limits = connection_limits(&args)?;
    let containerd = kagami_containerd::Config {
        address: args.containerd_address,
        namespace: args.containerd_namespace,
        content_dir: args.containerd_content_dir,
    };
    let store = match args.store {
        StoreKind::Auto => StoreChoice::Auto(containerd),
        StoreKind::Containerd => StoreChoice::Containerd(containerd),
        StoreKind::Layout => StoreChoice::Layout,
    };
    let mut builder = Node::builder()
        .store(store)
        .data_dir(&args.data_dir.path)
        .listen(SocketAddr::new(args.bind_address, args.https_listen_port))
        .limits(limits);
    if let MetricsAddress(Some(addr)) = args.metrics_address {
        if !addr.ip().is_loopback() {
            tracing::warn!(%addr, "metrics and the status page are served beyond loopback, without authentication");
        }
        builder = builder.metrics(addr);
    }
    if let Some(addr) = args.healthz_address {
        if !addr.ip().is_loopback() {
            tracing::warn!(%addr, "the plain health endpoint listens beyond loopback");
        }
        builder = builder.probes(addr);
    }

    // Trust first: an agent learns the cluster's settings from its server.
    let settings = if args.trust.insecure_http {
        if role == Role::Agent {
            anyhow::bail!(
                "--insecure-http is for lab servers only: an agent joins with cluster trust"
            );
        }
        builder = builder.insecure_http();
        kagami_cluster::Settings {
            embedded_registry: args.p2p.embedded_registry(),
        }
    } else {
        let data_dir = &args.data_dir.path;
        let fresh = !data_dir.exists();
        let identity = kagami::p2p::node_identity(data_dir)?;
        let settings = kagami_cluster::Settings {
            embedded_registry: args.p2p.embedded_registry(),
        };
        let trust = match args
            .trust
            .load(role, data_dir, args.bind_address, &identity, settings)
            .await
        {
            Ok(trust) => trust,
            Err(e) => {
                // A failed first join leaves nothing behind.
                if fresh {
                    let _ = std::fs::remove_dir_all(data_dir);
                }
                return Err(e);
            }
        };
        let settings = trust.settings().await?;
        builder = builder.trust(trust);
        settings
    };
    let embedded = match role {
        Role::Server => args.p2p.embedded_registry(),
        Role::Agent => {
            if args.p2p.embedded_registry() != settings.embedded_registry {
                tracing::warn!(
                    cluster = settings.embedded_registry,
                    "the embedded registry is switched on or off for the whole cluster by its servers; this agent's --embedded-registry is ignored"
                );
            }
            settings.embedded_registry
        }
    };
    let registries = match &args.private_registry {
        Some(path) => Some(kagami_config::registries::load(path)?),
        None => kagami_config::registries::load_optional(Path::new(DEFAULT_REGISTRIES))?,
    };
    let listed = match &registries {
        Some(registries) => {
            registries.check_files()?;
            tracing::info!(mirrors = registries.mirrors.len(), "registries.yaml read");
            registries
                .mirrored()
                .into_iter()
                .map(|name| name.parse::<Mirrored>().map_err(anyhow::Error::msg))
                .collect::<anyhow::Result<Vec<_>>>()?
        }
        None => Vec::new(),
    };
    let shared = kagami::SharedRegistries::new(
        &args.mirrors,
        &listed,
        args.bind_address,
        &args.trust.node_ips(),
    );
    let mut registry = kagami_registry::Config {
        default_registry: args.default_registry,
        ..kagami_registry::Config::default()
    };
    if !embedded {
        tracing::info!(
            "embedded registry mirror off: no P2P network, and no mirror configuration for containerd"
        );
        if !args.mirrors.is_empty() {
            tracing::warn!(
                "--mirror has no effect without --embedded-registry: no mirror configuration written"
            );
        }
    } else if shared.is_empty() {
        tracing::info!(
            "no registry is mirrored (list one under `mirrors:` in registries.yaml, or give --mirror): not joining the P2P network"
        );
    } else {
        let mut options = args.p2p.options(args.bind_address)?;
        options.pull_through = args
            .p2p
            .pull_through(registries.as_ref(), !args.disable_default_registry_endpoint);
        options.mirror.mirrored = shared.set();
        registry.served = shared.set();
        tracing::info!(registries = %shared, "sharing through the P2P network");
        builder = builder.p2p(options).containerd_hosts(HostsConfig {
            dir: args.containerd_config_path,
            registries: shared
                .hosts()
                .iter()
                .map(|mirrored| {
                    registry_hosts(
                        mirrored.host(),
                        registries.as_ref(),
                        !args.disable_default_registry_endpoint,
                    )
                })
                .collect(),
        });
    }
    builder = builder.registry(registry);
    let signal = shutdown_signal()?;
    let node = builder.start().await.context("cannot start the node")?;
    node.run_until(signal).await?;
    tracing::info!("stopped");
    Ok(())
}

/// What containerd's `hosts.toml` for `registry` (`_default` for all)
/// lists after kagami: registries.yaml's endpoints for it (or for `"*"`),
/// with their rewrites and the `configs:` TLS of each endpoint's host.
fn registry_hosts(
    registry: &str,
    file: Option<&kagami_config::Registries>,
    default_endpoint: bool,
) -> kagami_containerd::hosts::RegistryHosts {
    use kagami_containerd::hosts::{Endpoint, EndpointTls, RegistryHosts, Rewrite};
    let tls_for = |host: &str| -> Option<EndpointTls> {
        let tls = file?.config_for(host)?.tls.as_ref()?;
        Some(EndpointTls {
            ca_file: tls.ca_file.clone(),
            cert_file: tls.cert_file.clone(),
            key_file: tls.key_file.clone(),
            insecure_skip_verify: tls.insecure_skip_verify,
        })
    };
    let lookup = if registry == kagami_containerd::hosts::DEFAULT_REGISTRY {
        "*"
    } else {
        registry
    };
    let mut hosts = RegistryHosts::new(registry);
    hosts.default_endpoint = default_endpoint;
    if lookup != "*" {
        hosts.upstream_tls = tls_for(registry);
    }
    if let Some(mirror) = file.and_then(|f| f.mirror_for(lookup)) {
        for url in &mirror.endpoints {
            let host = url
                .split_once("://")
                .map_or(url.as_str(), |(_, rest)| rest)
                .split('/')
                .next()
                .unwrap_or_default();
            let mut endpoint = Endpoint::new(url.clone());
            endpoint.rewrites = mirror
                .rewrites
                .iter()
                .map(|(pattern, replacement)| Rewrite {
                    pattern: pattern.clone(),
                    replacement: replacement.clone(),
                })
                .collect();
            endpoint.tls = tls_for(host);
            hosts.endpoints.push(endpoint);
        }
    }
    hosts
}

/// Where registries.yaml is looked for when `--private-registry` is not given.
const DEFAULT_REGISTRIES: &str = "/etc/kagami/registries.yaml";

/// Prints the join token of the server whose data directory is `data_dir`.
fn token(data_dir: &std::path::Path, server: bool) -> anyhow::Result<()> {
    let material = kagami_cluster::Material::new(data_dir);
    let missing = || {
        format!(
            "{} holds no join token: only a server that has started once has one",
            material.dir().display()
        )
    };
    let token = if server {
        material.ca()?.with_context(missing)?.server_token()
    } else {
        material.token()?.with_context(missing)?
    };
    println!("{token}");
    Ok(())
}

/// Restores containerd's configuration directory and says what it did.
fn cleanup(dir: &std::path::Path) -> anyhow::Result<()> {
    let kept = kagami_containerd::hosts::restore(dir)
        .with_context(|| format!("cannot restore {}", dir.display()))?;
    for path in &kept {
        println!(
            "kept {} (changed since kagami wrote it; check it by hand)",
            path.display()
        );
    }
    println!("{} restored", dir.display());
    Ok(())
}

/// Installs the SIGINT and SIGTERM handlers now, so that a signal that
/// arrives while the node starts is not lost to the default action, and
/// returns a future that resolves on the first of them.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
        }
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every flag of every command, as `--name`.
    fn flags(command: &clap::Command, out: &mut Vec<String>) {
        for arg in command.get_arguments() {
            if let Some(long) = arg.get_long()
                && long != "help"
            {
                out.push(format!("--{long}"));
            }
        }
        for sub in command.get_subcommands() {
            flags(sub, out);
        }
    }

    #[test]
    fn every_flag_is_documented_in_the_configuration_guide() {
        let guide = include_str!("../../../docs/configuration.md");
        let mut all = Vec::new();
        flags(&Cli::command(), &mut all);
        assert!(all.len() > 30, "{all:?}");
        let missing: Vec<&String> = all
            .iter()
            .filter(|flag| !guide.contains(&format!("`{flag}")))
            .collect();
        assert!(
            missing.is_empty(),
            "not in docs/configuration.md: {missing:?}"
        );
    }
}

/// `--metrics-address`: where to serve metrics, or nowhere.
#[derive(Debug, Clone, Copy)]
struct MetricsAddress(Option<SocketAddr>);

fn parse_metrics_address(value: &str) -> Result<MetricsAddress, std::net::AddrParseError> {
    match value.trim() {
        "" => Ok(MetricsAddress(None)),
        addr => addr.parse().map(|addr| MetricsAddress(Some(addr))),
    }
}
