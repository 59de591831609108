//! `kagami-testbed SCENARIO …`: makes a bed, runs one scenario (or the
//! baseline set) on it, prints the table and writes the JSON. Run it with
//! `scripts/testbed`, which builds kagami first.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use kagami_testbed::{Bed, BedConfig, Report, Shape, scenario};

/// Runs a rollout scenario on hosts in network namespaces (needs root).
#[derive(Debug, Parser)]
#[command(name = "kagami-testbed")]
struct Args {
    /// What to run.
    #[arg(value_enum)]
    scenario: Which,
    /// Hosts with containerd and kagami.
    #[arg(long, default_value_t = 4)]
    hosts: usize,
    /// Image size: `100MB`, `16MiB`, `1GB`, or bytes.
    #[arg(long, default_value = "16MiB", value_parser = parse_size)]
    size: u64,
    /// Layers the image is split into.
    #[arg(long, default_value_t = 1)]
    layers: u32,
    /// Rate of the upstream host's link, Mbit/s (0: unshaped).
    #[arg(long, default_value_t = 0)]
    upstream_mbit: u32,
    /// Rate of every other host's link, Mbit/s (0: unshaped).
    #[arg(long, default_value_t = 0)]
    host_mbit: u32,
    /// Rate of the slow host's link in `slow-provider`, Mbit/s.
    #[arg(long, default_value_t = 2)]
    slow_mbit: u32,
    /// The kagami binary.
    #[arg(long, default_value = "target/release/kagami")]
    kagami: PathBuf,
    /// Also write the reports as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// kagami's log level on every node.
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Copy every host's kagami log into this directory before the bed is removed.
    #[arg(long, value_name = "DIR")]
    keep_logs: Option<PathBuf>,
    /// kagami's `--pull-through` on every node.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pull_through: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Which {
    /// One host pulls alone: the reference time.
    Lone,
    /// One host pulls, then all the others at once.
    Rolling,
    /// Every host pulls at once.
    Cold,
    /// A providing host is killed mid-rollout.
    ProviderKilled,
    /// A host cut off from the others pulls, and serves again once healed.
    CutOff,
    /// The providing host (the biggest layer's origin) slows down to
    /// --slow-mbit.
    SlowProvider,
    /// Every host pulls at once; only the image's origins reach the
    /// upstream.
    OriginsOnly,
    /// The providing host's containerd restarts mid-rollout.
    ContainerdRestarted,
    /// lone, rolling and cold, each on an image of its own: the figures
    /// BENCHMARKS.md reports.
    Baseline,
}

fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("not a size: {text:?}"))?;
    let scale = match unit.trim() {
        "" | "B" => 1.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} (B, KB, MB, GB, KiB, MiB, GiB)"
            ));
        }
    };
    Ok((number * scale) as u64)
}

fn shape(mbit: u32) -> Shape {
    if mbit == 0 {
        Shape::default()
    } else {
        Shape::rate(mbit)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let kagami = std::fs::canonicalize(&args.kagami)
        .with_context(|| format!("no kagami binary at {}", args.kagami.display()))?;
    let config = BedConfig {
        hosts: args.hosts,
        host_shape: shape(args.host_mbit),
        upstream_shape: shape(args.upstream_mbit),
        kagami,
        log_level: args.log_level.clone(),
        pull_through: args.pull_through,
    };
    eprintln!("starting a bed of {} hosts …", args.hosts);
    let mut bed = tokio::task::spawn_blocking(move || Bed::start(config)).await??;
    let mut reports: Vec<Report> = Vec::new();
    // Ctrl-C still removes the bed: the run stops, and the bed is dropped.
    tokio::select! {
        outcome = run(&mut bed, &args, &mut reports) => outcome?,
        _ = tokio::signal::ctrl_c() => eprintln!("interrupted; removing the bed"),
    }
    for report in &reports {
        println!("{}", report.table());
    }
    if let Some(path) = &args.json {
        let json: Vec<serde_json::Value> = reports.iter().map(Report::json).collect();
        let text = serde_json::to_string_pretty(&json)?;
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(dir) = &args.keep_logs {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot make {}", dir.display()))?;
        for node in &bed.nodes {
            let path = dir.join(format!("{}.log", node.name));
            std::fs::write(&path, node.log())
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    // Dropping the bed removes its namespaces and processes.
    tokio::task::spawn_blocking(move || drop(bed)).await?;
    Ok(())
}

/// Runs the scenario asked for, adding its reports.
async fn run(bed: &mut Bed, args: &Args, reports: &mut Vec<Report>) -> anyhow::Result<()> {
    match args.scenario {
        Which::Lone => {
            let image = bed.publish(args.size, args.layers)?;
            reports.push(scenario::lone(bed, &image).await?);
        }
        Which::Rolling => {
            let image = bed.publish(args.size, args.layers)?;
            reports.push(scenario::rolling(bed, &image).await?);
        }
        Which::Cold => {
            let image = bed.publish(args.size, args.layers)?;
            reports.push(scenario::cold(bed, &image).await?);
        }
        Which::ProviderKilled => {
            let image = bed.publish(args.size, args.layers)?;
            reports.push(scenario::provider_killed(bed, &image).await?);
        }
        Which::CutOff => {
            let image = bed.publish(args.size, args.layers)?;
            let second = bed.publish(args.size, args.layers)?;
            reports.push(scenario::cut_off(bed, &image, &second).await?);
        }
        Which::SlowProvider => {
            let image = bed.publish(args.size, args.layers)?;
            let slow = Shape::rate(args.slow_mbit);
            reports.push(scenario::slow_provider(bed, &image, &slow).await?);
        }
        Which::ContainerdRestarted => {
            let image = bed.publish(args.size, args.layers)?;
            reports.push(scenario::containerd_restarted(bed, &image).await?);
        }
        Which::OriginsOnly => {
            let image = bed.publish(args.size, args.layers)?;
            reports.push(scenario::origins_only(bed, &image).await?);
        }
        Which::Baseline => {
            let image = bed.publish(args.size, args.layers)?;
            reports.push(scenario::lone(bed, &image).await?);
            let image = bed.publish(args.size, args.layers)?;
            reports.push(scenario::rolling(bed, &image).await?);
            let image = bed.publish(args.size, args.layers)?;
            reports.push(scenario::cold(bed, &image).await?);
        }
    }
    Ok(())
}
