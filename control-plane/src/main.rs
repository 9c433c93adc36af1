//! The `ambientd` binary: command-line parsing, logging, and wiring sources to the index.

use std::io::Write;
use std::path::PathBuf;

use ambient_control_plane::cli::{CaArgs, MeshArgs, ServeArgs};
use ambient_control_plane::shared_index::SharedIndex;
use ambient_control_plane::source::Event;
use ambient_control_plane::source::files::{self, FileSource};
use ambient_index::{Changes, Index};
use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "ambientd",
    version,
    about = "An istiod-compatible control plane for Istio ambient mode"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log level or filter (e.g. `info`, `ambient_control_plane=debug`); RUST_LOG wins when set.
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print what every ztunnel would receive for a folder (or file) of Kubernetes YAML, as JSON.
    Dump {
        /// Folder (read recursively) or single file of Kubernetes YAML, e.g. deploy/examples/bookinfo.
        #[arg(long)]
        config_dir: PathBuf,
        /// Write the JSON here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Exit non-zero when any document failed to parse.
        #[arg(long)]
        strict: bool,
        #[command(flatten)]
        mesh: MeshArgs,
    },
    /// Explain, policy by policy and route by route, what ztunnel and waypoints do with a folder of YAML.
    Explain {
        /// Folder (read recursively) or single file of Kubernetes YAML.
        #[arg(long)]
        config_dir: PathBuf,
        /// Explain only the AuthorizationPolicy or HTTPRoute of this name (without it: all of them, after a
        /// summary). A name that matches nothing is an error that lists what exists.
        #[arg(value_name = "NAMESPACE/NAME")]
        name: Option<String>,
        #[command(flatten)]
        mesh: MeshArgs,
    },
    /// Load a folder of Kubernetes YAML, then follow its changes and print the resources each one touches.
    Watch {
        /// Folder (read recursively) or single file of Kubernetes YAML.
        #[arg(long)]
        config_dir: PathBuf,
        #[command(flatten)]
        mesh: MeshArgs,
    },
    /// Serve ztunnels: the CA and delta xDS on a TLS gRPC port (istiod's 15012), following a folder of
    /// Kubernetes YAML or, with --kube, the cluster.
    Serve(Box<ServeArgs>),
    /// The certificate authority from the command line: print the root, issue or inspect certificates.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// What a running `ambientd serve` holds and sends, from its admin API: workloads, services,
    /// policies, waypoints, connected proxies, certificates, and who is in sync.
    Zc(ambient_control_plane::zc::ZcArgs),
}

#[derive(Debug, Subcommand)]
enum CaCommand {
    /// Print the root bundle (PEM) that ztunnels trust.
    Root {
        /// Trust domain of a self-signed root created by this command (when none exists yet).
        #[arg(long, default_value = "cluster.local")]
        trust_domain: String,
        #[command(flatten)]
        ca: CaArgs,
    },
    /// Issue a workload certificate and key into a folder (cert-chain.pem, key.pem, root-cert.pem).
    Issue {
        /// The identity, e.g. spiffe://cluster.local/ns/default/sa/default.
        #[arg(long, value_name = "SPIFFE_ID")]
        spiffe: ambient_ca::Identity,
        /// Certificate lifetime.
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "24h")]
        ttl: std::time::Duration,
        /// Folder to write the files to (created if needed).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        #[command(flatten)]
        ca: CaArgs,
    },
    /// Describe the certificates (or CSRs) of a PEM file: SANs, issuer, validity.
    Inspect {
        /// PEM file.
        file: PathBuf,
    },
}

fn init_logging(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    init_logging(&cli.log_level, cli.log_format);
    match cli.command {
        Command::Dump {
            config_dir,
            output,
            strict,
            mesh,
        } => dump(config_dir, output, strict, mesh),
        Command::Explain {
            config_dir,
            name,
            mesh,
        } => explain(config_dir, name, mesh),
        Command::Watch { config_dir, mesh } => watch(config_dir, mesh),
        Command::Serve(args) => serve(*args),
        Command::Ca { command } => ca(command),
        Command::Zc(args) => zc(args),
    }
}

fn zc(args: ambient_control_plane::zc::ZcArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match runtime.block_on(ambient_control_plane::zc::run(args, &mut out)) {
        // The reader went away (`zc ... | head`): not an error.
        Err(ambient_control_plane::zc::ZcError::Write(e))
            if e.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            Ok(())
        }
        other => Ok(other?),
    }
}

#[tokio::main]
async fn serve(args: ServeArgs) -> Result<()> {
    // Listen for the signals before the server starts, so that a signal sent as soon as the banner is
    // out stops it cleanly instead of killing the process.
    let shutdown = shutdown_signal().context("cannot listen for SIGTERM and SIGINT")?;
    ambient_control_plane::serve::run(args.config(), shutdown).await?;
    Ok(())
}

/// Completes on SIGTERM or SIGINT (Ctrl-C). The handlers are installed when this is called.
#[cfg(unix)]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}

/// Completes on Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

fn ca(command: CaCommand) -> Result<()> {
    use ambient_control_plane::ca_cli;
    let mut out = std::io::stdout();
    match command {
        CaCommand::Root { trust_domain, ca } => {
            out.write_all(ca_cli::root(&ca, &trust_domain)?.as_bytes())?;
        }
        CaCommand::Issue {
            spiffe,
            ttl,
            out: dir,
            ca,
        } => {
            let issued = ca_cli::issue(&ca, &spiffe, ttl, &dir)?;
            writeln!(out, "issued {spiffe}")?;
            writeln!(out, "  cert-chain: {}", issued.cert_chain.display())?;
            writeln!(out, "  key:        {}", issued.key.display())?;
            writeln!(out, "  root:       {}", issued.root.display())?;
            out.write_all(ca_cli::inspect(&issued.cert_chain)?.as_bytes())?;
        }
        CaCommand::Inspect { file } => {
            out.write_all(ca_cli::inspect(&file)?.as_bytes())?;
        }
    }
    out.flush()?;
    Ok(())
}

fn explain(config_dir: PathBuf, name: Option<String>, mesh: MeshArgs) -> Result<()> {
    let (source, objects) = FileSource::open(&config_dir)?;
    let index = Index::build(mesh.settings(), objects);
    for d in source.diagnostics() {
        eprintln!("warning: {d}");
    }
    if let Some(name) = &name
        && !ambient_control_plane::explain::matches(&index, name)
    {
        let known = ambient_control_plane::explain::subjects(&index);
        let list = if known.is_empty() {
            " none".to_string()
        } else {
            known.iter().map(|s| format!("\n  {s}")).collect()
        };
        bail!(
            "no AuthorizationPolicy or HTTPRoute named {name} in {}; it has:{list}",
            config_dir.display()
        );
    }
    let report = ambient_control_plane::explain::explain(&index, name.as_deref());
    std::io::stdout().write_all(report.as_bytes())?;
    Ok(())
}

fn dump(config_dir: PathBuf, output: Option<PathBuf>, strict: bool, mesh: MeshArgs) -> Result<()> {
    let (source, objects) = FileSource::open(&config_dir)?;
    let index = Index::build(mesh.settings(), objects);
    let diagnostics = source.diagnostics();
    let doc = ambient_control_plane::dump::dump(&index, &diagnostics)?;
    let mut text = serde_json::to_string_pretty(&doc)?;
    text.push('\n');
    match &output {
        Some(path) => std::fs::write(path, &text)
            .with_context(|| format!("cannot write the dump to {}", path.display()))?,
        None => std::io::stdout().write_all(text.as_bytes())?,
    }
    for d in &diagnostics {
        eprintln!("warning: {d}");
    }
    if strict && !diagnostics.is_empty() {
        bail!(
            "{} document(s) in {} failed to parse (--strict)",
            diagnostics.len(),
            config_dir.display()
        );
    }
    Ok(())
}

fn print_changes(out: &mut impl Write, changes: &Changes) -> std::io::Result<()> {
    for name in &changes.addresses.changed {
        writeln!(out, "address changed {name}")?;
    }
    for name in &changes.addresses.removed {
        writeln!(out, "address removed {name}")?;
    }
    for name in &changes.authorizations.changed {
        writeln!(out, "authorization changed {name}")?;
    }
    for name in &changes.authorizations.removed {
        writeln!(out, "authorization removed {name}")?;
    }
    out.flush()
}

#[tokio::main(flavor = "current_thread")]
async fn watch(config_dir: PathBuf, mesh: MeshArgs) -> Result<()> {
    let (source, objects) = FileSource::open(&config_dir)?;
    let index = SharedIndex::new(Index::new(mesh.settings()));
    let initial = index.apply(vec![Event::Reset(objects)])?;
    for d in source.diagnostics() {
        eprintln!("warning: {d}");
    }
    let mut out = std::io::stdout();
    print_changes(&mut out, &initial)?;
    writeln!(
        out,
        "ready: {} addresses from {}",
        index.read()?.addresses().len(),
        config_dir.display()
    )?;
    out.flush()?;
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let _watch = files::watch(source, tx)?;
    loop {
        tokio::select! {
            batch = rx.recv() => {
                let Some(batch) = batch else { break };
                print_changes(&mut out, &index.apply(batch)?)?;
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    Ok(())
}
