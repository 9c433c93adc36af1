//! `agent-sim run` (part of the binary): starts a fleet of simulated ztunnels and prints how it
//! converges — connected and synced counts, then one line per change with the time until every
//! ztunnel had ACKed it — as text or as one JSON object per line, until Ctrl-C or `--for` elapses.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use agent_sim::observe::CertEvent;
use agent_sim::{Auth, ChangeFeed, ChangeReport, Fleet, Nodes, Observer, Target, TokenFile, plan};
use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;

/// A change that not every ztunnel ACKed within this long is reported as incomplete.
const CHANGE_PATIENCE: Duration = Duration::from_secs(30);
/// How often connected/synced progress is printed while it changes.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// After this long with no stream open, the last error of a client is printed.
const NOBODY_CONNECTED: Duration = Duration::from_secs(5);

#[derive(Debug, Args)]
pub struct RunArgs {
    /// xDS server: https://HOST:PORT (TLS, as ztunnel) or http://HOST:PORT (plaintext port).
    #[arg(long, value_name = "URL")]
    xds: String,
    /// Root bundle (PEM) to trust for https: the root-cert.pem `ambientd serve` prints.
    #[arg(long, value_name = "FILE")]
    root_cert: Option<PathBuf>,
    /// One bearer token for every ztunnel.
    #[arg(long, value_name = "T", conflicts_with = "tokens")]
    token: Option<String>,
    /// Tokens file of the server (`--auth tokens=FILE`): each ztunnel uses the token of its node.
    #[arg(long, value_name = "FILE")]
    tokens: Option<PathBuf>,
    /// Number of simulated ztunnels.
    #[arg(long, value_name = "N")]
    ztunnels: usize,
    /// Node names: a prefix (`node-` gives node-0000, node-0001, …) or a comma-separated list
    /// (`a,b`; `a,` for one). Default: the nodes of --tokens, else `node-`.
    #[arg(long, value_name = "PREFIX|LIST")]
    nodes: Option<String>,
    /// Request certificates for the HBONE workloads on each ztunnel's node (shared mode).
    #[arg(long)]
    certs: bool,
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,
    /// Stop after this long (e.g. 30s, 5m); default: until Ctrl-C.
    #[arg(long = "for", value_name = "DURATION", value_parser = humantime::parse_duration)]
    run_for: Option<Duration>,
    /// CLUSTER_ID of every ztunnel (node metadata and `clusterid` header).
    #[arg(long, value_name = "ID", default_value = "Kubernetes")]
    cluster_id: String,
}

/// Counts certificate outcomes for the summary lines.
#[derive(Default)]
struct CertCounts {
    issued: AtomicUsize,
    failed: AtomicUsize,
}

impl Observer for CertCounts {
    fn on_certificate(&self, e: &CertEvent<'_>) {
        match e.result {
            Ok(_) => self.issued.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

struct Printer {
    json: bool,
    start: Instant,
}

impl Printer {
    fn ms(d: Duration) -> f64 {
        (d.as_secs_f64() * 1e6).round() / 1e3
    }

    fn line(&self, text: String, value: serde_json::Value) {
        if self.json {
            println!("{value}");
        } else {
            println!("[{:>8.2}s] {text}", self.start.elapsed().as_secs_f64());
        }
    }

    fn t_ms(&self) -> f64 {
        Printer::ms(self.start.elapsed())
    }

    fn change(&self, r: &ChangeReport) {
        let list = |names: &[Arc<str>]| -> String {
            let shown: Vec<&str> = names.iter().take(5).map(|s| &**s).collect();
            let more = names.len().saturating_sub(shown.len());
            if more > 0 {
                format!("{} (+{more} more)", shown.join(", "))
            } else {
                shown.join(", ")
            }
        };
        let mut what = Vec::new();
        if !r.changed.is_empty() {
            what.push(format!("changed {}", list(&r.changed)));
        }
        if !r.removed.is_empty() {
            what.push(format!("removed {}", list(&r.removed)));
        }
        let nacks = if r.nacks > 0 {
            format!(" ({} NACKs)", r.nacks)
        } else {
            String::new()
        };
        let outcome = if r.complete {
            format!("all {} ACKed in {:.1} ms", r.clients, Printer::ms(r.spread))
        } else {
            format!(
                "only {}/{} ACKed after {:.1} s",
                r.acked,
                r.clients,
                r.spread.as_secs_f64()
            )
        };
        self.line(
            format!("{}: {} → {outcome}{nacks}", r.kind, what.join("; ")),
            json!({
                "event": "change",
                "t_ms": self.t_ms(),
                "type": r.kind.as_str(),
                "changed": r.changed.iter().map(|s| &**s).collect::<Vec<_>>(),
                "removed": r.removed.iter().map(|s| &**s).collect::<Vec<_>>(),
                "clients": r.clients,
                "acked": r.acked,
                "nacks": r.nacks,
                "complete": r.complete,
                "all_acked_ms": r.complete.then(|| Printer::ms(r.spread)),
            }),
        );
    }
}

pub async fn run(args: RunArgs) -> Result<()> {
    let root_pem = match &args.root_cert {
        Some(path) => Some(std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read the root bundle {}: pass the root-cert.pem that `ambientd serve` prints (`root bundle:` line)",
                path.display()
            )
        })?),
        None => None,
    };
    let target = Target::new(&args.xds, root_pem.as_deref())?;
    let auth = match (&args.token, &args.tokens) {
        (Some(t), _) => Auth::Token(t.clone()),
        (None, Some(path)) => Auth::Tokens(TokenFile::load(path)?),
        (None, None) => Auth::None,
    };
    let nodes = match &args.nodes {
        Some(s) => Nodes::parse(s),
        None => Nodes::FromTokens,
    };
    let mut configs = plan(args.ztunnels, &nodes, &auth, args.certs)?;
    for c in &mut configs {
        c.cluster_id = args.cluster_id.clone();
    }
    target
        .probe()
        .await
        .with_context(|| format!("the xDS server {} cannot be reached", target.url()))?;

    let printer = Printer {
        json: args.json,
        start: Instant::now(),
    };
    let n = configs.len();
    let first_node = configs
        .first()
        .map(|c| c.node_name.clone())
        .unwrap_or_default();
    let last_node = configs
        .last()
        .map(|c| c.node_name.clone())
        .unwrap_or_default();
    let auth_text = match &auth {
        Auth::None => "no token".to_string(),
        Auth::Token(_) => "one token".to_string(),
        Auth::Tokens(f) => format!("tokens of {}", f.path.display()),
    };
    printer.line(
        format!(
            "agent-sim: {n} ztunnels to {} (nodes {first_node} … {last_node}; {auth_text}{})",
            target.url(),
            if args.certs { "; certificates" } else { "" }
        ),
        json!({"event": "start", "ztunnels": n, "url": target.url(), "certificates": args.certs}),
    );

    let (feed, mut changes) = ChangeFeed::new(n);
    let certs = Arc::new(CertCounts::default());
    let fleet = Fleet::spawn(&target, configs, vec![feed.clone(), certs.clone()])?;

    let deadline = args.run_for.map(|d| tokio::time::Instant::now() + d);
    let mut progress = fleet.counters().subscribe();
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_counts = (usize::MAX, usize::MAX);
    let mut all_synced = false;
    let mut warned_nobody = false;
    let mut last_certs = (0, 0);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let sleep_until_deadline = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(sleep_until_deadline);

    loop {
        tokio::select! {
            r = &mut ctrl_c => {
                r.context("waiting for Ctrl-C")?;
                break;
            }
            () = &mut sleep_until_deadline => break,
            Some(report) = changes.recv() => printer.change(&report),
            _ = progress.changed(), if !all_synced => {
                let (c, s) = (fleet.connected(), fleet.synced());
                if s == n {
                    all_synced = true;
                    let status = fleet.client(0).status();
                    printer.line(
                        format!(
                            "all {n} synced in {:.2} s: {} addresses, {} authorizations each",
                            printer.start.elapsed().as_secs_f64(),
                            status.addresses,
                            status.authorizations
                        ),
                        json!({"event": "synced", "t_ms": printer.t_ms(), "connected": c, "synced": s,
                            "addresses": status.addresses, "authorizations": status.authorizations}),
                    );
                    last_counts = (c, s);
                }
            }
            _ = tick.tick() => {
                let (c, s) = (fleet.connected(), fleet.synced());
                if (c, s) != last_counts && !(all_synced && c == n) {
                    last_counts = (c, s);
                    printer.line(
                        format!("connected {c}/{n}, synced {s}/{n}"),
                        json!({"event": "progress", "t_ms": printer.t_ms(), "connected": c, "synced": s}),
                    );
                }
                if c == 0 && !warned_nobody && printer.start.elapsed() > NOBODY_CONNECTED {
                    warned_nobody = true;
                    let error = fleet.client(0).status().last_error.unwrap_or_default();
                    printer.line(
                        format!("no ztunnel has a stream open yet; last error of ztunnel 0: {error}"),
                        json!({"event": "not_connected", "t_ms": printer.t_ms(), "error": error}),
                    );
                }
                if args.certs {
                    let now = (certs.issued.load(Ordering::Relaxed), certs.failed.load(Ordering::Relaxed));
                    if now != last_certs {
                        last_certs = now;
                        printer.line(
                            format!("certificates: {} issued, {} failed attempts", now.0, now.1),
                            json!({"event": "certificates", "t_ms": printer.t_ms(), "issued": now.0, "failed_attempts": now.1}),
                        );
                    }
                }
                feed.flush_older_than(CHANGE_PATIENCE);
            }
        }
    }

    let statuses: Vec<_> = fleet.clients().iter().map(|c| c.status()).collect();
    let sum = |f: fn(&agent_sim::ClientStatus) -> u64| statuses.iter().map(f).sum::<u64>();
    let (responses, acks, nacks, streams) = (
        sum(|s| s.responses),
        sum(|s| s.acks),
        sum(|s| s.nacks),
        sum(|s| s.streams),
    );
    let (c, s) = (fleet.connected(), fleet.synced());
    fleet.shutdown().await;
    printer.line(
        format!(
            "stopped: {c}/{n} connected, {s}/{n} synced; {responses} responses, {acks} ACKs, {nacks} NACKs, {streams} streams"
        ),
        json!({"event": "stop", "t_ms": printer.t_ms(), "connected": c, "synced": s,
            "responses": responses, "acks": acks, "nacks": nacks, "streams": streams}),
    );
    if n > 0 && s == 0 {
        bail!("no ztunnel synced; see the errors above");
    }
    Ok(())
}
