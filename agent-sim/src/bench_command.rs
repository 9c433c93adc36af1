//! `agent-sim bench` (part of the binary): the propagation benchmark. It generates a cluster into a
//! folder, starts `ambientd serve` on it as a separate process (so that the server's memory is its own),
//! connects N simulated ztunnels, waits until all are synced, then makes single changes by editing files
//! in the folder — an AuthorizationPolicy added, a pod added, a pod's labels changed, a pod deleted — and
//! measures for each the time from the edit until every ztunnel has ACKed a response carrying it.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, IsTerminal, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use agent_sim::observe::ResponseEvent;
use agent_sim::{
    Auth, Expect, Fleet, Nodes, Observer, Propagation, Target, TokenFile, XdsKind, plan,
};
use ambient_testkit::{ClusterSpec, write_cluster_yaml};
use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;

/// A change that has not reached every ztunnel after this long counts as lost.
const CHANGE_PATIENCE: Duration = Duration::from_secs(60);
/// How long the server may take to start (load the folder, create the CA).
const START_PATIENCE: Duration = Duration::from_secs(120);
/// Namespace of the pods and policies the benchmark adds (a generated, ambient one).
const BENCH_NAMESPACE: &str = "ns-000";

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Folder to generate the cluster into and to edit; created when missing, must be empty unless
    /// --force.
    #[arg(long, value_name = "DIR")]
    config_dir: PathBuf,
    /// Simulated ztunnels (nodes `node-0000`, …).
    #[arg(long, value_name = "N")]
    ztunnels: usize,
    /// Application pods of the generated cluster.
    #[arg(long, value_name = "P")]
    pods: usize,
    /// Namespaces of the generated cluster.
    #[arg(long, value_name = "K", default_value_t = 100)]
    namespaces: usize,
    /// Single changes to measure, cycling through: policy add, pod add, pod label change, pod delete.
    #[arg(long, value_name = "M", default_value_t = 40)]
    changes: usize,
    /// The `ambientd` binary; default: the one next to this program (`cargo build --release` builds both).
    #[arg(long, value_name = "PATH")]
    ambientd: Option<PathBuf>,
    /// Overwrite the contents of --config-dir.
    #[arg(long)]
    force: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Seed of the generated cluster.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// One measured change.
#[derive(Debug, Clone)]
struct Measured {
    kind: &'static str,
    name: String,
    /// Time until the last ztunnel ACKed; `None` when not all did within the patience.
    all: Option<Duration>,
    /// Median over the ztunnels.
    median: Option<Duration>,
    reached: usize,
}

/// Sums the resource bytes every client received.
#[derive(Debug, Default)]
struct Bytes(AtomicU64);

impl Observer for Bytes {
    fn on_response(&self, event: &ResponseEvent<'_>) {
        self.0.fetch_add(event.body_bytes as u64, Ordering::Relaxed);
    }
}

/// `ambientd serve` as a child process; killed when dropped.
struct Server {
    child: Child,
    grpc: SocketAddr,
    root: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident and peak resident memory in bytes (Linux).
    fn memory(&self) -> Option<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let field = |key: &str| -> Option<u64> {
            let line = status.lines().find(|l| l.starts_with(key))?;
            let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kb * 1024)
        };
        Some((field("VmRSS:")?, field("VmHWM:")?))
    }

    /// CPU seconds used so far (user + system, Linux).
    fn cpu_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).ok()?;
        // Fields after the command name (which may contain spaces) start after the last ')'.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        // The kernel's clock ticks are 100 per second on every Linux this runs on.
        Some((utime + stime) / 100.0)
    }
}

pub async fn run(args: BenchArgs) -> Result<()> {
    if args.ztunnels == 0 {
        bail!("--ztunnels must be at least 1");
    }
    if args.namespaces == 0 {
        bail!("--namespaces must be at least 1");
    }
    let progress = !args.json && std::io::stderr().is_terminal();
    let ambientd = match &args.ambientd {
        Some(p) => p.clone(),
        None => default_ambientd()?,
    };

    // 1. The cluster.
    prepare_dir(&args.config_dir, args.force)?;
    let mut spec = ClusterSpec::new(args.pods);
    spec.namespaces = args.namespaces;
    spec.seed = args.seed;
    let started = Instant::now();
    let written = write_cluster_yaml(&args.config_dir, &spec, 0)
        .with_context(|| format!("writing the cluster into {}", args.config_dir.display()))?;
    let generated = started.elapsed();
    let yaml_bytes: u64 = written
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();

    // 2. Tokens, one per simulated ztunnel's node, outside the config folder.
    let work = tempfile::tempdir().context("creating a temporary folder")?;
    let tokens_path = work.path().join("tokens.yaml");
    let mut tokens = String::new();
    for i in 0..args.ztunnels {
        let _ = writeln!(
            tokens,
            "bench-zt-{i:04}: {{namespace: istio-system, serviceAccount: ztunnel, node: node-{i:04}, podName: ztunnel-{i:04}}}"
        );
    }
    std::fs::write(&tokens_path, tokens).context("writing the tokens file")?;

    // 3. The server.
    let started = Instant::now();
    let server = start_server(&ambientd, &args.config_dir, work.path(), &tokens_path)?;
    let server_start = started.elapsed();
    let rss_idle = server.memory().map(|m| m.0);

    // 4. The fleet.
    let root = std::fs::read_to_string(&server.root)
        .with_context(|| format!("reading the root bundle {}", server.root.display()))?;
    let target = Target::new(&format!("https://{}", server.grpc), Some(&root))?;
    let token_file = TokenFile::load(&tokens_path)?;
    let configs = plan(
        args.ztunnels,
        &Nodes::Prefix("node-".to_string()),
        &Auth::Tokens(token_file),
        false,
    )?;
    let propagation = Propagation::new(args.ztunnels);
    let bytes = Arc::new(Bytes::default());
    let cpu_before_sync = server.cpu_seconds();
    let started = Instant::now();
    let fleet = Fleet::spawn(&target, configs, vec![propagation.clone(), bytes.clone()])?;
    {
        let wait = fleet.wait_synced(args.ztunnels);
        tokio::pin!(wait);
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                () = &mut wait => break,
                _ = tick.tick() => {
                    if progress {
                        eprint!(
                            "\r  initial sync: {}/{} synced, {}/{} connected, {:.1} s   ",
                            fleet.synced(),
                            args.ztunnels,
                            fleet.connected(),
                            args.ztunnels,
                            started.elapsed().as_secs_f64()
                        );
                    }
                    if started.elapsed() > Duration::from_secs(600) {
                        bail!(
                            "only {} of {} ztunnels synced within 10 minutes",
                            fleet.synced(),
                            args.ztunnels
                        );
                    }
                }
            }
        }
    }
    let initial_sync = started.elapsed();
    if progress {
        eprintln!();
    }
    let sync_bytes = bytes.0.load(Ordering::Relaxed);
    let cpu_sync = cpu_before_sync
        .zip(server.cpu_seconds())
        .map(|(a, b)| b - a);
    let rss_synced = server.memory();

    // 5. The changes.
    let cpu_before_changes = server.cpu_seconds();
    let mut measured = Vec::with_capacity(args.changes);
    for k in 0..args.changes {
        let round = k / 4;
        let (kind, xds, name, expect, edit): (_, _, String, _, Box<dyn FnOnce() -> Result<()>>) =
            match k % 4 {
                0 => {
                    let name = format!("bench-policy-{round}");
                    let path = args.config_dir.join(format!("zz-{name}.yaml"));
                    let body = policy_yaml(&name, round);
                    (
                        "policy add",
                        XdsKind::Authorization,
                        format!("{BENCH_NAMESPACE}/{name}"),
                        Expect::Changed,
                        Box::new(move || write_atomically(&path, &body)),
                    )
                }
                step => {
                    let pod = format!("bench-pod-{round}");
                    let path = args.config_dir.join(format!("zz-{pod}.yaml"));
                    let uid = format!("Kubernetes//Pod/{BENCH_NAMESPACE}/{pod}");
                    match step {
                        1 => {
                            let body = pod_yaml(&pod, round, "a");
                            (
                                "pod add",
                                XdsKind::Address,
                                uid,
                                Expect::Changed,
                                Box::new(move || write_atomically(&path, &body)),
                            )
                        }
                        2 => {
                            let body = pod_yaml(&pod, round, "b");
                            (
                                "pod label change",
                                XdsKind::Address,
                                uid,
                                Expect::Changed,
                                Box::new(move || write_atomically(&path, &body)),
                            )
                        }
                        _ => (
                            "pod delete",
                            XdsKind::Address,
                            uid,
                            Expect::Removed,
                            Box::new(move || {
                                std::fs::remove_file(&path)
                                    .with_context(|| format!("removing {}", path.display()))
                            }),
                        ),
                    }
                }
            };
        let mut watch = propagation.watch(xds, &name, expect);
        edit()?;
        let report = match watch.wait_timeout(CHANGE_PATIENCE).await {
            Ok(r) => r,
            Err(r) => r,
        };
        let mut times: Vec<Duration> = report.acked.iter().flatten().copied().collect();
        times.sort_unstable();
        let m = Measured {
            kind,
            name: name.clone(),
            all: report.complete().then(|| report.max()).flatten(),
            median: times.get(times.len() / 2).copied(),
            reached: report.reached,
        };
        if progress {
            eprint!(
                "\r  change {}/{}: {} {} → {}   ",
                k + 1,
                args.changes,
                kind,
                name,
                m.all
                    .map_or("incomplete".to_string(), |d| format!("{:.1} ms", ms(d)))
            );
        }
        measured.push(m);
    }
    if progress && args.changes > 0 {
        eprintln!();
    }
    let cpu_changes = cpu_before_changes
        .zip(server.cpu_seconds())
        .map(|(a, b)| b - a);
    let rss_end = server.memory();
    fleet.shutdown().await;
    let (server_pid, server_grpc) = (server.pid(), server.grpc);
    drop(server);

    // 6. The report.
    let mut all: Vec<Duration> = measured.iter().filter_map(|m| m.all).collect();
    all.sort_unstable();
    let lost = measured.iter().filter(|m| m.all.is_none()).count();
    let p50 = percentile(&all, 50.0);
    let p99 = percentile(&all, 99.0);
    let max = all.last().copied();
    let rss_mb = |b: Option<u64>| b.map(|b| b as f64 / (1024.0 * 1024.0));
    let server_rss = rss_mb(rss_end.map(|m| m.0));
    let server_peak = rss_mb(rss_end.map(|m| m.1));

    if args.json {
        let changes: Vec<_> = measured
            .iter()
            .map(|m| {
                json!({
                    "kind": m.kind,
                    "name": m.name,
                    "all_ms": m.all.map(ms),
                    "median_ms": m.median.map(ms),
                    "reached": m.reached,
                })
            })
            .collect();
        let out = json!({
            "ztunnels": args.ztunnels,
            "pods": args.pods,
            "namespaces": args.namespaces,
            "config_bytes": yaml_bytes,
            "server_start_s": server_start.as_secs_f64(),
            "initial_sync_s": initial_sync.as_secs_f64(),
            "initial_sync_bytes": sync_bytes,
            "server_cpu_initial_sync_s": cpu_sync,
            "server_cpu_changes_s": cpu_changes,
            "server_rss_idle_mb": rss_mb(rss_idle),
            "server_rss_synced_mb": rss_mb(rss_synced.map(|m| m.0)),
            "server_rss_mb": server_rss,
            "server_peak_rss_mb": server_peak,
            "propagation_p50_ms": p50.map(ms),
            "propagation_p99_ms": p99.map(ms),
            "propagation_max_ms": max.map(ms),
            "changes_lost": lost,
            "changes": changes,
        });
        println!("{out}");
    } else {
        println!(
            "agent-sim bench: {} ztunnels, {} pods in {} namespaces, {} changes",
            args.ztunnels, args.pods, args.namespaces, args.changes
        );
        println!(
            "  cluster:       {} files, {:.1} MiB of YAML, generated in {:.2} s",
            written.len(),
            yaml_bytes as f64 / (1024.0 * 1024.0),
            generated.as_secs_f64()
        );
        println!(
            "  server:        {} pid {}, grpc {}, ready in {:.2} s, RSS {} MB idle",
            ambientd.display(),
            server_pid,
            server_grpc,
            server_start.as_secs_f64(),
            fmt_opt(rss_mb(rss_idle), 1)
        );
        println!(
            "  initial sync:  {} ztunnels in {:.2} s, {:.1} MiB of resources ({:.1} KiB each), server CPU {} s, RSS {} MB",
            args.ztunnels,
            initial_sync.as_secs_f64(),
            sync_bytes as f64 / (1024.0 * 1024.0),
            sync_bytes as f64 / 1024.0 / args.ztunnels as f64,
            fmt_opt(cpu_sync, 2),
            fmt_opt(rss_mb(rss_synced.map(|m| m.0)), 1)
        );
        println!("  changes (ms from the file edit until every ztunnel ACKed; median ztunnel):");
        for (i, m) in measured.iter().enumerate() {
            println!(
                "    {:>3}  {:<17} {:<44} {:>9}  {:>9}",
                i + 1,
                m.kind,
                m.name,
                m.all
                    .map_or(format!("lost ({})", m.reached), |d| format!("{:.1}", ms(d))),
                m.median
                    .map_or("-".to_string(), |d| format!("{:.1}", ms(d)))
            );
        }
        for kind in ["policy add", "pod add", "pod label change", "pod delete"] {
            let mut of: Vec<Duration> = measured
                .iter()
                .filter(|m| m.kind == kind)
                .filter_map(|m| m.all)
                .collect();
            of.sort_unstable();
            if !of.is_empty() {
                println!(
                    "  {:<17} p50 {} ms, max {} ms over {}",
                    kind,
                    fmt_opt(percentile(&of, 50.0).map(ms), 1),
                    fmt_opt(of.last().copied().map(ms), 1),
                    of.len()
                );
            }
        }
        println!(
            "  all changes:       p50 {} ms, p99 {} ms, max {} ms; {} lost; server CPU {} s",
            fmt_opt(p50.map(ms), 1),
            fmt_opt(p99.map(ms), 1),
            fmt_opt(max.map(ms), 1),
            lost,
            fmt_opt(cpu_changes, 2)
        );
        println!(
            "  server memory:     RSS {} MB at the end, peak {} MB",
            fmt_opt(server_rss, 1),
            fmt_opt(server_peak, 1)
        );
    }
    println!(
        "propagation_p50_ms={} propagation_p99_ms={} initial_sync_s={:.3} server_rss_mb={}",
        fmt_opt(p50.map(ms), 1),
        fmt_opt(p99.map(ms), 1),
        initial_sync.as_secs_f64(),
        fmt_opt(server_rss, 1)
    );
    if lost > 0 {
        bail!(
            "{lost} of {} changes did not reach every ztunnel within {CHANGE_PATIENCE:?}",
            args.changes
        );
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.digits$}"))
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// `ambientd` next to this program.
fn default_ambientd() -> Result<PathBuf> {
    let me = std::env::current_exe().context("finding this program's path")?;
    let path = me.with_file_name(format!("ambientd{}", std::env::consts::EXE_SUFFIX));
    if !path.is_file() {
        bail!(
            "no ambientd binary next to agent-sim ({}): build both with `cargo build --release -p \
             ambient-control-plane -p agent-sim`, or pass --ambientd PATH",
            path.display()
        );
    }
    Ok(path)
}

fn prepare_dir(dir: &Path, force: bool) -> Result<()> {
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .peekable();
        if entries.peek().is_some() {
            if !force {
                bail!(
                    "{} is not empty: the benchmark writes a generated cluster there; choose an empty \
                     folder or pass --force to replace its contents",
                    dir.display()
                );
            }
            std::fs::remove_dir_all(dir).with_context(|| format!("emptying {}", dir.display()))?;
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

/// Starts `ambientd serve` on `config_dir` with a state folder under `work`, and reads its banner for the
/// address and root bundle.
fn start_server(ambientd: &Path, config_dir: &Path, work: &Path, tokens: &Path) -> Result<Server> {
    let mut child = Command::new(ambientd)
        .arg("serve")
        .arg("--config-dir")
        .arg(config_dir)
        .arg("--state-dir")
        .arg(work.join("state"))
        .args(["--grpc-addr", "127.0.0.1:0", "--xds-plaintext-addr", "off"])
        .args(["--admin-addr", "off", "--log-level", "warn"])
        .arg("--auth")
        .arg(format!("tokens={}", tokens.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", ambientd.display()))?;
    let stdout = child.stdout.take().context("reading the server's output")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut grpc = None;
        let mut root = None;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(v) = line.trim().strip_prefix("grpc:") {
                grpc = v
                    .split_whitespace()
                    .next()
                    .and_then(|a| a.parse::<SocketAddr>().ok());
            }
            if let Some(v) = line.trim().strip_prefix("root bundle:") {
                root = Some(PathBuf::from(v.trim()));
            }
            if line.contains("ztunnel proxy") {
                let _ = tx.send((grpc, root.clone()));
                grpc = None;
            }
        }
    });
    let mut server = Server {
        child,
        grpc: SocketAddr::from(([127, 0, 0, 1], 0)),
        root: PathBuf::new(),
    };
    match rx.recv_timeout(START_PATIENCE) {
        Ok((Some(grpc), Some(root))) => {
            server.grpc = grpc;
            server.root = root;
            Ok(server)
        }
        Ok(_) => bail!("ambientd's start banner did not show its address and root bundle"),
        Err(_) => {
            let status = server.child.try_wait().ok().flatten();
            match status {
                Some(status) => {
                    bail!("ambientd exited before it was ready ({status}); see its errors above")
                }
                None => bail!("ambientd was not ready within {START_PATIENCE:?}"),
            }
        }
    }
}

/// Writes a file whole: a temporary name in the same folder (not YAML, so the watcher ignores it
/// until it is renamed into place).
fn write_atomically(path: &Path, body: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, body).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    let _ = std::io::stdout().flush();
    Ok(())
}

/// An ALLOW policy for one generated Service's pods.
fn policy_yaml(name: &str, round: usize) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: {name}\n  namespace: {BENCH_NAMESPACE}\nspec:\n  selector:\n    matchLabels:\n      bench-target: \"{round}\"\n  action: ALLOW\n  rules:\n  - from:\n    - source:\n        principals: [\"cluster.local/ns/{BENCH_NAMESPACE}/sa/client-{round}\"]\n    to:\n    - operation:\n        ports: [\"8080\"]\n"
    )
}

/// A running, Ready pod of the benchmark; `variant` changes its `app` label (and so its workload).
fn pod_yaml(name: &str, round: usize, variant: &str) -> String {
    let ip = format!("10.127.{}.{}", (round / 250) % 250, round % 250 + 1);
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {BENCH_NAMESPACE}\n  labels:\n    app: bench-{variant}\n    bench-target: \"{round}\"\nspec:\n  nodeName: node-0000\n  serviceAccountName: bench\n  containers:\n  - name: app\n    image: bench:1\nstatus:\n  phase: Running\n  podIP: {ip}\n  podIPs:\n  - ip: {ip}\n  conditions:\n  - type: Ready\n    status: \"True\"\n"
    )
}
