//! kagami-bench: the fixtures and the load client of kagami's blob
//! throughput benchmark.
//!
//! `bench/run.sh` drives it: `fixtures` writes the same images as an OCI
//! archive (for `kagami image import`) and as OCI layouts (for pushing into
//! another registry with skopeo), with one `digest size` list per image;
//! `load` downloads the listed blobs from a registry with N concurrent
//! clients and prints one `key=value` line of figures; `port` prints a free
//! loopback port for the next server to listen on. `bench/containerd.sh`
//! uses `image`, which writes one many-layer image as a docker archive.

mod fixtures;
mod image;
mod load;

use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// Fixtures and load client for the blob throughput benchmark (bench/run.sh).
#[derive(Debug, Parser)]
#[command(name = "kagami-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write the benchmark images: an OCI archive, OCI layouts and digest lists.
    Fixtures {
        /// Directory to write into (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Size of the one layer of `docker.io/bench/big:1`, in bytes.
        #[arg(long, default_value_t = fixtures::BIG_LAYER)]
        big_size: u64,
        /// Number of layers of `docker.io/bench/small:1`.
        #[arg(long, default_value_t = fixtures::SMALL_COUNT)]
        small_count: usize,
        /// Size of each layer of `docker.io/bench/small:1`, in bytes.
        #[arg(long, default_value_t = fixtures::SMALL_LAYER)]
        small_size: u64,
    },
    /// Write one image as a plain docker archive (for bench/containerd.sh).
    Image {
        /// The archive file to write.
        #[arg(long)]
        out: PathBuf,
        /// The image's name inside the archive.
        #[arg(long, default_value = image::REFERENCE)]
        reference: String,
        /// Number of layers, which share the size evenly.
        #[arg(long, default_value_t = image::LAYERS)]
        layers: usize,
        /// Payload of all layers together, in MiB.
        #[arg(long, default_value_t = image::SIZE_MIB)]
        size_mib: u64,
    },
    /// Download every listed blob from a registry with concurrent clients.
    Load {
        /// Base URL of the registry, e.g. `http://127.0.0.1:5000`.
        #[arg(long)]
        url: String,
        /// Repository the blobs are fetched from, e.g. `bench/big`.
        #[arg(long)]
        repo: String,
        /// File of `digest size` lines, as `fixtures` writes them.
        #[arg(long)]
        digests: PathBuf,
        /// Number of clients downloading at once.
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// How many times the whole list is downloaded (shared by all clients).
        #[arg(long, default_value_t = 1)]
        rounds: usize,
        /// Check each body against its digest (costs client CPU; off for timing).
        #[arg(long)]
        verify: bool,
        /// Give up on the whole run after this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// Print a loopback TCP port that is free right now.
    Port,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("kagami-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Fixtures {
            out,
            big_size,
            small_count,
            small_size,
        } => {
            let sizes = fixtures::Sizes {
                big_layer: big_size,
                small_count,
                small_layer: small_size,
            };
            fixtures::write(&out, &sizes)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Image {
            out,
            reference,
            layers,
            size_mib,
        } => {
            let options = image::Options {
                reference,
                layers,
                size_mib,
            };
            println!("{}", image::write(&out, &options)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Load {
            url,
            repo,
            digests,
            concurrency,
            rounds,
            verify,
            timeout,
        } => {
            let plan = load::Plan {
                url,
                repo,
                blobs: load::read_digest_list(&digests)?,
                concurrency,
                rounds,
                verify,
            };
            let runtime = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
            let summary = runtime.block_on(async {
                tokio::time::timeout(Duration::from_secs(timeout), load::run(&plan))
                    .await
                    .with_context(|| format!("the load did not finish within {timeout} s"))?
            })?;
            println!("{summary}");
            Ok(if summary.errors == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Port => {
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .context("cannot bind a loopback port")?;
            println!("{}", listener.local_addr()?.port());
            Ok(ExitCode::SUCCESS)
        }
    }
}
