//! `agent-sim`: generated clusters and simulated ztunnels for ambientd.
//!
//! `agent-sim run` starts N simulated ztunnels ([`agent_sim`]) against an xDS server and prints how
//! they converge: how many are connected and synced, then one line per change with the time until
//! every ztunnel had ACKed it:
//!
//! ```text
//! agent-sim run --xds https://127.0.0.1:15012 --root-cert .ambientd/root-cert.pem \
//!     --tokens tokens.yaml --ztunnels 100 [--nodes node-] [--certs] [--json] [--for 60s]
//! ```
//!
//! `agent-sim gen` writes a realistic ambient cluster as multi-document YAML, one file per namespace
//! by default, ready for `ambientd dump --config-dir DIR` or a file-watching ambientd:
//!
//! ```text
//! agent-sim gen --out /tmp/cluster --pods 10000
//! agent-sim gen --out /tmp/cluster --pods 500 --namespaces 5 --pods-per-service 5 --seed 7 --force
//! ```
//!
//! The cluster is the one `ambient_testkit::generate` builds: `ns-000`, … labelled
//! `istio.io/dataplane-mode: ambient`, a waypoint per namespace, Services `svc-NNNN` of
//! `--pods-per-service` Deployment pods each, spread over `--nodes` nodes. The same options and seed
//! always give the same files.

mod bench_command;
mod run_command;

use std::path::{Path, PathBuf};

use ambient_testkit::{ClusterSpec, write_cluster_yaml};
use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "agent-sim",
    version,
    about = "Generated clusters and simulated agents for ambientd"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a generated ambient cluster as YAML files into a directory.
    Gen(GenArgs),
    /// Run simulated ztunnels against an xDS server and print how changes reach them.
    Run(run_command::RunArgs),
    /// Measure propagation: generate a cluster, start ambientd on it, sync N simulated ztunnels, then
    /// time single changes (file edits) until every ztunnel has ACKed them.
    Bench(bench_command::BenchArgs),
}

#[derive(Debug, Args)]
struct GenArgs {
    /// Directory to write into; created when missing.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Application pods (waypoint pods come on top, one per namespace).
    #[arg(long, value_name = "P")]
    pods: usize,
    /// Ambient namespaces (`ns-000`, …).
    #[arg(long, value_name = "N", default_value_t = 100)]
    namespaces: usize,
    /// Pods behind each Service.
    #[arg(long, value_name = "K", default_value_t = 10)]
    pods_per_service: usize,
    /// Nodes; default one per 100 pods (at least one).
    #[arg(long, value_name = "M")]
    nodes: Option<usize>,
    /// Seed of the generator: the same seed gives the same cluster.
    #[arg(long, value_name = "S", default_value_t = 1)]
    seed: u64,
    /// Number of files; default one per namespace plus one for cluster-scoped objects.
    #[arg(long, value_name = "F")]
    files: Option<usize>,
    /// Leave out the per-namespace waypoints.
    #[arg(long)]
    no_waypoints: bool,
    /// Write even if the directory is not empty (files of the same name are replaced).
    #[arg(long)]
    force: bool,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Gen(args) => gen_cluster(&args),
        Command::Run(args) => {
            init_tracing();
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?
                .block_on(run_command::run(args))
        }
        Command::Bench(args) => {
            init_tracing();
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?
                .block_on(bench_command::run(args))
        }
    }
}

/// Logs go to standard error; `RUST_LOG` chooses them (default: errors only, since a thousand
/// clients retrying would otherwise flood the terminal).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn gen_cluster(args: &GenArgs) -> Result<()> {
    if args.pods_per_service == 0 {
        bail!("--pods-per-service must be at least 1");
    }
    if args.namespaces == 0 {
        bail!("--namespaces must be at least 1");
    }
    prepare_dir(&args.out, args.force)?;

    let mut spec = ClusterSpec::new(args.pods);
    spec.namespaces = args.namespaces;
    spec.pods_per_service = args.pods_per_service;
    spec.waypoint_per_namespace = !args.no_waypoints;
    spec.seed = args.seed;
    if let Some(nodes) = args.nodes {
        spec.nodes = nodes.max(1);
    }

    let written = write_cluster_yaml(&args.out, &spec, args.files.unwrap_or(0))
        .with_context(|| format!("writing YAML into {}", args.out.display()))?;

    let bytes: u64 = written
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    println!(
        "wrote {} objects in {} files, {:.1} MiB, to {}",
        spec.object_count(),
        written.len(),
        bytes as f64 / (1024.0 * 1024.0),
        args.out.display()
    );
    println!(
        "cluster: {} pods in {} Services of {} pods over {} namespaces and {} nodes, {}, seed {}",
        spec.pods,
        spec.services(),
        spec.pods_per_service,
        spec.namespace_count(),
        spec.node_count(),
        if spec.waypoint_per_namespace {
            "a waypoint per namespace"
        } else {
            "no waypoints"
        },
        spec.seed
    );
    let shown = 5;
    for path in written.iter().take(shown) {
        println!("  {}", path.display());
    }
    if written.len() > shown {
        println!("  … and {} more", written.len() - shown);
    }
    Ok(())
}

/// Creates `dir` when missing; refuses a non-empty one unless `force`.
fn prepare_dir(dir: &Path, force: bool) -> Result<()> {
    if dir.exists() {
        if !dir.is_dir() {
            bail!("{} exists and is not a directory", dir.display());
        }
        let not_empty = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_some();
        if not_empty && !force {
            bail!(
                "{} is not empty; pass --force to write into it anyway (files of the same name are replaced, others are left as they are)",
                dir.display()
            );
        }
        return Ok(());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}
