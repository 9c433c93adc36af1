//! Index benchmark: build time, memory and single-pod change cost on generated clusters.
//!
//! ```text
//! cargo bench -p ambient-index --bench index            # 1k, 10k and 100k pods
//! cargo bench -p ambient-index --bench index -- --quick # fewer runs and changes
//! AMBIENTD_BENCH_SIZES=1000,10000 cargo bench -p ambient-index --bench index
//! AMBIENTD_BENCH_PODS_PER_SERVICE=100 cargo bench -p ambient-index --bench index
//! ```
//!
//! For each size the cluster comes from [`ambient_testkit::generate`] (10 pods per Service, 100
//! namespaces, one waypoint per namespace) and the bench reports, side by side:
//! - generation and parse time (`Object::from_value` of every raw object), separately from
//! - `Index::build` time (best and median of 3 runs up to 10k pods, one run above),
//! - memory of the objects and computed resources together: the growth of anonymous resident memory of
//!   a fresh child process that parses (streaming, so raw objects never pile up) and builds the index,
//!   next to a per-structure estimate computed from the index's public data and the layout of
//!   `index/src/lib.rs` (sizes of the stored structs, string capacities, hash table slots, allocator
//!   rounding),
//! - the cost of one `Index::apply` of a pod whose label change keeps its Services (`version` flip)
//!   and of one that moves the pod to another Service of its namespace and back, timed one by one:
//!   median, p90 and p99, with the number of resource names each apply reported changed.
//!
//! Memory is measured from outside the allocator because the workspace forbids `unsafe` code, which a
//! counting `#[global_allocator]` needs. Resident memory is an upper bound of live heap bytes (it also
//! holds freed chunks the allocator keeps); run `heaptrack <bench binary> --memory-probe N` for the
//! exact retained figure: the probe leaks the index on purpose, so heaptrack's "leaked" total is it.
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) a tiny cluster is used as a smoke test.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::mem::size_of;
use std::net::IpAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ambient_index::model::{Labels, NamedPort, Object, Pod, Service, ServicePort};
use ambient_index::{Index, Resource, Settings};
use ambient_testkit::{ClusterSpec, SplitMix64, for_each_object, generate};

const DEFAULT_SIZES: [usize; 3] = [1_000, 10_000, 100_000];
const SEED: u64 = 42;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(pods) = flag_value(&args, "--memory-probe") {
        memory_probe(pods);
        return;
    }
    let bench = args.iter().any(|a| a == "--bench");
    let quick = args.iter().any(|a| a == "--quick");
    let sizes = match std::env::var("AMBIENTD_BENCH_SIZES") {
        Ok(list) => parse_sizes(&list),
        Err(_) if bench => DEFAULT_SIZES.to_vec(),
        Err(_) => vec![300],
    };
    let plan = Plan {
        build_runs_small: if quick || !bench { 1 } else { 3 },
        changes: if !bench {
            50
        } else if quick {
            400
        } else {
            2000
        },
    };

    println!("# ambientd index benchmark\n");
    println!("{}", machine());
    let mut results = Vec::new();
    for &pods in &sizes {
        eprintln!("-- {pods} pods");
        results.push(run_size(pods, &plan));
    }
    print_tables(&results, &plan);
    println!("\nload average at the end: {}", load_average());
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

struct Plan {
    /// `Index::build` runs for sizes up to 10k pods (larger sizes build once).
    build_runs_small: usize,
    /// Timed applies per kind of change.
    changes: usize,
}

fn flag_value(args: &[String], flag: &str) -> Option<usize> {
    let i = args.iter().position(|a| a == flag)?;
    args.get(i + 1)?.parse().ok()
}

fn parse_sizes(list: &str) -> Vec<usize> {
    let sizes: Vec<usize> = list
        .split(',')
        .filter_map(|s| s.trim().replace('_', "").parse().ok())
        .filter(|n| *n > 0)
        .collect();
    if sizes.is_empty() {
        eprintln!("AMBIENTD_BENCH_SIZES={list:?} holds no size; using the defaults");
        return DEFAULT_SIZES.to_vec();
    }
    sizes
}

/// Every pod of the cluster: the application pods and one waypoint pod per namespace. Per-pod figures
/// divide by this.
fn all_pods(spec: &ClusterSpec) -> usize {
    let waypoints = if spec.waypoint_per_namespace {
        spec.namespace_count()
    } else {
        0
    };
    (spec.pods + waypoints).max(1)
}

/// The cluster of `pods` pods; `AMBIENTD_BENCH_PODS_PER_SERVICE` and `AMBIENTD_BENCH_NAMESPACES`
/// change its shape (defaults 10 and 100) for scaling experiments.
fn spec(pods: usize) -> ClusterSpec {
    let env = |name: &str| -> Option<usize> {
        std::env::var(name)
            .ok()?
            .parse()
            .ok()
            .filter(|n: &usize| *n > 0)
    };
    let mut spec = ClusterSpec {
        seed: SEED,
        ..ClusterSpec::new(pods)
    };
    if let Some(k) = env("AMBIENTD_BENCH_PODS_PER_SERVICE") {
        spec.pods_per_service = k;
    }
    if let Some(n) = env("AMBIENTD_BENCH_NAMESPACES") {
        spec.namespaces = n;
    }
    spec
}

/// Everything measured for one cluster size.
struct SizeResult {
    spec: ClusterSpec,
    objects: usize,
    addresses: usize,
    generate: Duration,
    parse: Duration,
    /// Wall time of each `Index::build` run.
    builds: Vec<Duration>,
    /// On-CPU time of the fastest run (wall time minus time preempted by other processes).
    build_cpu: Option<Duration>,
    memory: Option<ProbeResult>,
    estimate: Estimate,
    label: ChangeStats,
    /// The pod moved to another Service.
    moved: ChangeStats,
    /// The same pod moved back right after (warm caches).
    moved_back: ChangeStats,
    /// How a membership change moved pods: true when some namespace had a single Service, so the pod
    /// left it for no Service (and came back) instead of moving to another one.
    membership_to_nothing: bool,
}

fn run_size(pods: usize, plan: &Plan) -> SizeResult {
    let spec = spec(pods);

    let start = Instant::now();
    let values = generate(&spec);
    let generate_time = start.elapsed();

    let start = Instant::now();
    let mut objects = Vec::with_capacity(values.len());
    for v in values {
        match Object::from_value(v) {
            Ok(Some(o)) => objects.push(o),
            Ok(None) => {}
            Err(e) => panic!("a generated object does not parse: {e}"),
        }
    }
    let parse_time = start.elapsed();
    let object_count = objects.len();

    // Pods to change later, chosen before the objects are consumed by the last build.
    let mut rng = SplitMix64::new(SEED ^ pods as u64);
    let app_pods: Vec<usize> = objects
        .iter()
        .enumerate()
        .filter(|(_, o)| matches!(o, Object::Pod(p) if p.meta.labels.contains_key("app")))
        .map(|(i, _)| i)
        .collect();
    let sample = sample_pods(&objects, &app_pods, plan.changes, &mut rng);

    let runs = if pods <= 10_000 {
        plan.build_runs_small
    } else {
        1
    };
    let mut builds = Vec::with_capacity(runs);
    let mut build_cpu: Option<(Duration, Duration)> = None;
    let mut record = |wall: Duration, cpu: Option<Duration>| {
        builds.push(wall);
        if let Some(cpu) = cpu
            && build_cpu.is_none_or(|(best, _)| wall < best)
        {
            build_cpu = Some((wall, cpu));
        }
    };
    for _ in 1..runs {
        let input = objects.clone();
        let (cpu, start) = (thread_cpu(), Instant::now());
        let index = Index::build(Settings::default(), input);
        record(start.elapsed(), cpu_since(cpu));
        drop(black_box(index));
    }
    let (cpu, start) = (thread_cpu(), Instant::now());
    let mut index = Index::build(Settings::default(), objects);
    record(start.elapsed(), cpu_since(cpu));
    let build_cpu = build_cpu.map(|(_, cpu)| cpu);

    let memory = probe_in_child(pods);
    let estimate = Estimate::of(&index, &spec);

    let services_by_namespace = services_by_namespace(&spec);
    let membership_to_nothing = services_by_namespace.values().any(|s| s.len() < 2);
    let mut changer = Changer {
        index: &mut index,
        pods: sample,
        rng,
        services_by_namespace,
    };
    // Warm caches and the allocator with untimed changes, then measure.
    changer.label_changes(plan.changes / 10);
    let label = changer.label_changes(plan.changes);
    let (moved, moved_back) = changer.membership_changes(plan.changes);

    SizeResult {
        spec,
        objects: object_count,
        addresses: index.addresses().len(),
        generate: generate_time,
        parse: parse_time,
        builds,
        build_cpu,
        memory,
        estimate,
        label,
        moved,
        moved_back,
        membership_to_nothing,
    }
}

/// Up to `n` distinct random application pods (cloned), in random order.
fn sample_pods(objects: &[Object], app_pods: &[usize], n: usize, rng: &mut SplitMix64) -> Vec<Pod> {
    let mut order = app_pods.to_vec();
    let take = n.min(order.len());
    for i in 0..take {
        let j = i + rng.below(order.len() - i);
        order.swap(i, j);
    }
    order[..take]
        .iter()
        .filter_map(|&i| match &objects[i] {
            Object::Pod(p) => Some((**p).clone()),
            _ => None,
        })
        .collect()
}

fn services_by_namespace(spec: &ClusterSpec) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for i in 0..spec.services() {
        let ns = spec.namespace_name(spec.namespace_of_service(i));
        out.entry(ns).or_default().push(spec.service_name(i));
    }
    out
}

// ---- single-pod changes ------------------------------------------------------------------------

/// Timings of individual applies and the number of names each reported changed or removed.
struct ChangeStats {
    /// Sorted.
    times: Vec<Duration>,
    names: Vec<usize>,
}

impl ChangeStats {
    fn new(mut times: Vec<Duration>, names: Vec<usize>) -> Self {
        times.sort();
        ChangeStats { times, names }
    }

    fn percentile(&self, p: f64) -> Duration {
        if self.times.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.times.len() - 1) as f64 * p).round() as usize;
        self.times[i]
    }

    fn names_summary(&self) -> String {
        let min = self.names.iter().min().copied().unwrap_or(0);
        let max = self.names.iter().max().copied().unwrap_or(0);
        if min == max {
            format!("{min}")
        } else {
            let mean = self.names.iter().sum::<usize>() as f64 / self.names.len() as f64;
            format!("{min}–{max} (mean {mean:.2})")
        }
    }
}

struct Changer<'a> {
    index: &'a mut Index,
    pods: Vec<Pod>,
    rng: SplitMix64,
    services_by_namespace: HashMap<String, Vec<String>>,
}

impl Changer<'_> {
    fn apply(&mut self, pod: Pod) -> (Duration, usize) {
        let obj = Object::Pod(Box::new(pod));
        let start = Instant::now();
        let changes = self.index.apply(obj);
        let elapsed = start.elapsed();
        let names = changes.addresses.changed.len()
            + changes.addresses.removed.len()
            + changes.authorizations.changed.len()
            + changes.authorizations.removed.len();
        drop(black_box(changes));
        (elapsed, names)
    }

    /// Flips `version` between `v1` and `v2` on `n` pods in turn: Services stay the same, the
    /// workload's canonical revision changes.
    fn label_changes(&mut self, n: usize) -> ChangeStats {
        let (mut times, mut names) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for i in 0..n {
            let len = self.pods.len();
            let pod = &mut self.pods[i % len];
            let next = if pod.meta.labels.get("version") == Some("v1") {
                "v2"
            } else {
                "v1"
            };
            pod.meta.labels.insert("version", next);
            let pod = pod.clone();
            let (t, c) = self.apply(pod);
            times.push(t);
            names.push(c);
        }
        ChangeStats::new(times, names)
    }

    /// Moves `n` pods to another Service of their namespace (relabelling `app`), each followed by the
    /// move back; the two are reported apart. Where the namespace has a single Service the pod leaves
    /// it for none and comes back.
    fn membership_changes(&mut self, n: usize) -> (ChangeStats, ChangeStats) {
        let mut stats = [(); 2].map(|_| (Vec::with_capacity(n), Vec::with_capacity(n)));
        for i in 0..n {
            let len = self.pods.len();
            let original = self.pods[i % len].clone();
            let app = original
                .meta
                .labels
                .get("app")
                .unwrap_or_default()
                .to_string();
            let others: Vec<&String> = self
                .services_by_namespace
                .get(&original.meta.namespace)
                .map(|s| s.iter().filter(|s| **s != app).collect())
                .unwrap_or_default();
            let target = if others.is_empty() {
                format!("{app}-moved")
            } else {
                others[self.rng.below(others.len())].clone()
            };
            let mut moved = original.clone();
            moved.meta.labels.insert("app", &target);
            for (pod, (times, names)) in [moved, original].into_iter().zip(stats.iter_mut()) {
                let (t, c) = self.apply(pod);
                times.push(t);
                names.push(c);
            }
        }
        let [(t0, n0), (t1, n1)] = stats;
        (ChangeStats::new(t0, n0), ChangeStats::new(t1, n1))
    }
}

// ---- memory ------------------------------------------------------------------------------------

/// Anonymous resident memory of a fresh process, in bytes: before, after parsing, after building.
struct ProbeResult {
    before: u64,
    objects: u64,
    index: u64,
}

/// Child-process mode: parse the cluster while generating it (so raw objects never accumulate),
/// build the index, print resident memory at each step, and leak the index (see the module docs).
fn memory_probe(pods: usize) {
    let spec = spec(pods);
    let before = rss_anon().unwrap_or(0);
    let mut objects = Vec::with_capacity(spec.object_count());
    for_each_object(&spec, |v| match Object::from_value(v) {
        Ok(Some(o)) => objects.push(o),
        Ok(None) => {}
        Err(e) => panic!("a generated object does not parse: {e}"),
    });
    let after_objects = rss_anon().unwrap_or(0);
    let index = Index::build(Settings::default(), objects);
    let after_index = rss_anon().unwrap_or(0);
    println!("before={before} objects={after_objects} index={after_index}");
    std::mem::forget(index);
}

fn probe_in_child(pods: usize) -> Option<ProbeResult> {
    let exe = std::env::current_exe().ok()?;
    let out = Command::new(exe)
        .args(["--memory-probe", &pods.to_string()])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "memory probe failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> Option<u64> {
        text.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
    };
    Some(ProbeResult {
        before: field("before")?,
        objects: field("objects")?,
        index: field("index")?,
    })
}

/// Time this thread has spent on a CPU (`/proc/thread-self/schedstat`).
fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(Duration::from_nanos(
        stat.split_whitespace().next()?.parse().ok()?,
    ))
}

fn cpu_since(start: Option<Duration>) -> Option<Duration> {
    Some(thread_cpu()?.saturating_sub(start?))
}

/// `RssAnon` of this process in bytes.
fn rss_anon() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("RssAnon:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Bytes per pod, by structure: `(label, requested, in malloc chunks)`.
#[derive(Default)]
struct Estimate {
    rows: Vec<(&'static str, f64, f64)>,
    allocations_per_pod: f64,
}

/// Allocation sizes tallied for one structure: requested bytes and glibc malloc chunk bytes.
#[derive(Default, Clone, Copy)]
struct Tally {
    requested: usize,
    chunks: usize,
    count: usize,
}

impl Tally {
    /// One heap allocation of `n` bytes (nothing for `n == 0`).
    fn alloc(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        self.requested += n;
        // glibc on 64-bit: 8 bytes of header, 16-byte granularity, 32-byte minimum.
        self.chunks += (n + 8).div_ceil(16).max(2) * 16;
        self.count += 1;
    }

    /// Bytes living inside a larger allocation already counted elsewhere (a table's slots).
    fn inline(&mut self, n: usize) {
        self.requested += n;
        self.chunks += n;
    }
}

/// hashbrown's bucket count for a table that grew one insert at a time to `n` entries.
fn buckets_for(n: usize) -> usize {
    match n {
        0 => 0,
        1..=3 => 4,
        4..=7 => 8,
        _ => (n * 8).div_ceil(7).next_power_of_two(),
    }
}

/// Slots, control bytes and the allocation of a hash table of `n` entries of `entry` bytes.
fn table(t: &mut Tally, n: usize, entry: usize) {
    let buckets = buckets_for(n);
    if buckets > 0 {
        t.alloc(buckets * entry + buckets + 16);
    }
}

fn string_alloc(t: &mut Tally, s: &String) {
    t.alloc(s.capacity());
}

fn labels_alloc(t: &mut Tally, labels: &Labels) {
    // One string with every key and value, and two `u32` end offsets per label.
    t.alloc(labels.iter().map(|(k, v)| k.len() + v.len()).sum());
    t.alloc(labels.len() * 2 * size_of::<u32>());
}

fn pod_heap(t: &mut Tally, pod: &Pod) {
    string_alloc(t, &pod.meta.namespace);
    string_alloc(t, &pod.meta.name);
    string_alloc(t, &pod.meta.uid);
    string_alloc(t, &pod.service_account);
    string_alloc(t, &pod.node);
    if let Some(owner) = &pod.controller {
        string_alloc(t, &owner.kind);
        string_alloc(t, &owner.name);
    }
    t.alloc(pod.ips.capacity() * size_of::<IpAddr>());
    t.alloc(pod.named_ports.capacity() * size_of::<NamedPort>());
    for p in &pod.named_ports {
        string_alloc(t, &p.name);
    }
}

fn service_heap(t: &mut Tally, svc: &Service) {
    t.inline(size_of::<Service>());
    string_alloc(t, &svc.meta.namespace);
    string_alloc(t, &svc.meta.name);
    string_alloc(t, &svc.meta.uid);
    labels_alloc(t, &svc.meta.labels);
    if let Some(sel) = &svc.selector {
        labels_alloc(t, sel);
    }
    for ip in &svc.cluster_ips {
        string_alloc(t, ip);
    }
    t.alloc(svc.cluster_ips.capacity() * size_of::<String>());
    t.alloc(svc.ports.capacity() * size_of::<ServicePort>());
    for p in &svc.ports {
        string_alloc(t, &p.name);
        string_alloc(t, &p.protocol);
    }
    for f in &svc.ip_families {
        string_alloc(t, f);
    }
}

fn resource_alloc(t: &mut Tally, name: &Arc<str>, res: &Resource) {
    t.alloc(2 * size_of::<usize>() + name.len()); // Arc<str>: two counters and the text
    t.alloc(res.body.len());
}

impl Estimate {
    /// Walks the objects the index was built from (regenerated) and the index's public resources.
    fn of(index: &Index, spec: &ClusterSpec) -> Estimate {
        let pods_n = all_pods(spec) as f64;
        let mut pod_struct = Tally::default();
        let mut pod_own = Tally::default();
        let mut labels = Tally::default();
        let mut pod_keys = Tally::default();
        let mut others = Tally::default();
        let mut pod_count = 0usize;
        let mut pods_per_node: HashMap<String, usize> = HashMap::new();
        let mut pods_per_ns: HashMap<String, usize> = HashMap::new();
        for_each_object(spec, |v| {
            let Ok(Some(obj)) = Object::from_value(v) else {
                return;
            };
            match obj {
                Object::Pod(p) => {
                    pod_count += 1;
                    pod_struct.alloc(size_of::<Pod>()); // Box<Pod>
                    pod_heap(&mut pod_own, &p);
                    labels_alloc(&mut labels, &p.meta.labels);
                    labels_alloc(&mut labels, &p.meta.annotations);
                    // `pods` map key: Arc<str> "namespace/name".
                    pod_keys.alloc(
                        2 * size_of::<usize>() + p.meta.namespace.len() + 1 + p.meta.name.len(),
                    );
                    *pods_per_node.entry(p.node.clone()).or_default() += 1;
                    *pods_per_ns.entry(p.meta.namespace.clone()).or_default() += 1;
                }
                Object::Service(s) => service_heap(&mut others, &s),
                _ => {}
            }
        });

        // `pods: HashMap<Arc<str>, Box<Pod>>`: key and box pointer per slot, empty slots included.
        let mut pods_map = Tally::default();
        let slot = size_of::<Arc<str>>() + size_of::<Box<Pod>>();
        let buckets = buckets_for(pod_count);
        pods_map.alloc(buckets * slot + buckets + 16);

        // `pods_by_namespace` and `pods_by_node`: HashSet<Arc<str>> each.
        let mut reverse = Tally::default();
        for n in pods_per_ns.values().chain(pods_per_node.values()) {
            table(&mut reverse, *n, size_of::<Arc<str>>());
        }

        let mut body = Tally::default();
        let mut wrapper = Tally::default();
        for (name, res) in index.addresses() {
            if name.contains("//Pod/") {
                body.alloc(res.body.len());
                let mut t = Tally::default();
                resource_alloc(&mut t, name, res);
                wrapper.requested += t.requested - res.body.len();
                wrapper.chunks += t.chunks - (res.body.len() + 8).div_ceil(16).max(2) * 16;
                wrapper.count += t.count - 1;
            } else {
                resource_alloc(&mut others, name, res);
            }
        }
        let mut addresses_map = Tally::default();
        let cap = index.addresses().capacity();
        let buckets = if cap < 7 { cap + 1 } else { cap / 7 * 8 };
        addresses_map
            .alloc(buckets * (size_of::<Arc<str>>() + size_of::<Resource>()) + buckets + 16);

        let parts = [
            ("slim Pod struct (boxed)", pod_struct),
            ("Pod strings, IPs, ports, owner (heap)", pod_own),
            ("labels + kept annotations", labels),
            (
                "`pods` key Arc<str> + empty slots",
                Tally {
                    requested: pod_keys.requested + pods_map.requested,
                    chunks: pod_keys.chunks + pods_map.chunks,
                    count: pod_keys.count + pods_map.count,
                },
            ),
            ("reverse indices (pods_by_namespace, pods_by_node)", reverse),
            ("encoded Address body (pod workload)", body),
            ("xDS name Arc<str>", wrapper),
            ("`addresses` map slots", addresses_map),
            ("Services + their resources (amortised)", others),
        ];
        let mut est = Estimate::default();
        let (mut requested, mut chunks, mut count) = (0, 0, 0);
        for (label, t) in parts {
            est.rows
                .push((label, t.requested as f64 / pods_n, t.chunks as f64 / pods_n));
            requested += t.requested;
            chunks += t.chunks;
            count += t.count;
        }
        est.rows.push((
            "estimated total",
            requested as f64 / pods_n,
            chunks as f64 / pods_n,
        ));
        est.allocations_per_pod = count as f64 / pods_n;
        est
    }
}

// ---- output ------------------------------------------------------------------------------------

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, m)| m.trim())
        })
        .unwrap_or("unknown");
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let kib: u64 = m.lines().next()?.split_whitespace().nth(1)?.parse().ok()?;
            Some(format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0))
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "machine: {cpus} CPUs ({model}), {memory} RAM, Linux {}, load average at start {}, profile: {}\n",
        kernel.trim(),
        load_average(),
        if cfg!(debug_assertions) {
            "debug (numbers are not meaningful)"
        } else {
            "optimised"
        }
    )
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

fn count(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn print_tables(results: &[SizeResult], plan: &Plan) {
    let header = |title: &str| {
        let mut s = format!("| {title} |");
        for r in results {
            let _ = write!(s, " {} pods |", count(r.spec.pods));
        }
        s.push_str("\n|---|");
        for _ in results {
            s.push_str("---:|");
        }
        s
    };
    let row = |label: &str, cell: &dyn Fn(&SizeResult) -> String| {
        let mut s = format!("| {label} |");
        for r in results {
            let _ = write!(s, " {} |", cell(r));
        }
        println!("{s}");
    };

    println!("{}", header("cluster"));
    row("objects (all kinds)", &|r| count(r.objects));
    row("pods per Service", &|r| r.spec.pods_per_service.to_string());
    row("Services / namespaces / nodes", &|r| {
        format!(
            "{} / {} / {}",
            count(r.spec.services()),
            r.spec.namespace_count(),
            r.spec.node_count()
        )
    });
    row("pods (application + waypoint)", &|r| {
        count(all_pods(&r.spec))
    });
    row("Address resources", &|r| count(r.addresses));
    println!();

    println!("{}", header("time"));
    row("generate raw objects (ms)", &|r| ms(r.generate));
    row("parse: `Object::from_value` (ms)", &|r| ms(r.parse));
    row("`Index::build` min / median (ms)", &|r| {
        let mut b = r.builds.clone();
        b.sort();
        format!(
            "{} / {} ({} run{})",
            ms(b[0]),
            ms(b[b.len() / 2]),
            b.len(),
            if b.len() == 1 { "" } else { "s" }
        )
    });
    row("`Index::build` on-CPU time of the fastest run (ms)", &|r| {
        r.build_cpu.map_or_else(|| "n/a".into(), ms)
    });
    row("`Index::build` per pod (µs, min)", &|r| {
        let min = r.builds.iter().min().copied().unwrap_or_default();
        format!("{:.2}", min.as_secs_f64() * 1e6 / all_pods(&r.spec) as f64)
    });
    println!();

    println!(
        "{}",
        header("memory, bytes per pod (estimates: requested / in malloc chunks)")
    );
    row(
        "resident growth: objects + index (upper bound)",
        &|r| match &r.memory {
            Some(m) => format!(
                "{:.0}",
                m.index.saturating_sub(m.before) as f64 / all_pods(&r.spec) as f64
            ),
            None => "n/a".into(),
        },
    );
    row("resident growth after parse only", &|r| match &r.memory {
        Some(m) => format!(
            "{:.0}",
            m.objects.saturating_sub(m.before) as f64 / all_pods(&r.spec) as f64
        ),
        None => "n/a".into(),
    });
    let labels: Vec<&str> = results
        .first()
        .map(|r| r.estimate.rows.iter().map(|(l, _, _)| *l).collect())
        .unwrap_or_default();
    for (i, label) in labels.iter().enumerate() {
        row(label, &|r| match r.estimate.rows.get(i) {
            Some((_, requested, chunks)) => format!("{requested:.0} / {chunks:.0}"),
            None => "n/a".into(),
        });
    }
    row("heap allocations per pod (estimate)", &|r| {
        format!("{:.1}", r.estimate.allocations_per_pod)
    });
    println!();

    println!(
        "{}",
        header(&format!(
            "one pod change, µs ({} applies each)",
            plan.changes
        ))
    );
    let stats = |label: &str, get: fn(&SizeResult) -> &ChangeStats| {
        row(&format!("{label}: median / p90 / p99"), &|r| {
            let c = get(r);
            format!(
                "{} / {} / {}",
                us(c.percentile(0.5)),
                us(c.percentile(0.9)),
                us(c.percentile(0.99))
            )
        });
        row(&format!("{label}: names changed per apply"), &|r| {
            get(r).names_summary()
        });
    };
    stats("label change, same Services", |r| &r.label);
    stats("move to another Service", |r| &r.moved);
    stats("move back (warm caches)", |r| &r.moved_back);
    println!(
        "\nA label change flips `version` (v1/v2): the pod keeps its Services, its workload's canonical \
         revision changes. A move relabels `app` to another Service of the namespace; the move back \
         follows at once and finds the caches warm."
    );
    if results.iter().any(|r| r.membership_to_nothing) {
        println!(
            "Where a namespace holds a single Service (1k pods: 100 Services over 100 namespaces) the pod \
             moves out of it, to an `app` no Service selects, instead."
        );
    }
}
