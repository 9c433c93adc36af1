//! Generated clusters: realistic Kubernetes objects in bulk, for benchmarks, load tests and `agent-sim gen`.
//!
//! [`generate`] builds an ambient cluster shaped like `kubectl get -o json` output: the system namespace,
//! Nodes with locality labels, `N` ambient namespaces each with a waypoint (Gateway, Service, pod),
//! Services of `pods_per_service` Deployment-style pods, every pod captured by istio-cni
//! (`ambient.istio.io/redirection: enabled`), Ready, with an IP, a node and a named container port.
//!
//! The output is a pure function of the [`ClusterSpec`]: the same spec (seed included) gives the same
//! objects, byte for byte. Randomness (hashes, uids, node placement, timestamps) comes from a small
//! SplitMix64 generator, [`SplitMix64`], also usable by callers that need reproducible picks.
//!
//! Addresses: Service cluster IPs come from `10.96.0.0/12`, pod IPs from `10.128.0.0/9`, node IPs from
//! `172.16.0.0/12`, each handed out in order; they wrap (and so repeat) only past about a million
//! Services or eight million pods.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use ambient_index::model::Object;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    /// Application pods. Waypoint pods come on top (one per namespace when enabled).
    pub pods: usize,
    /// Pods behind each Service (one Deployment each); the last Service takes the remainder.
    pub pods_per_service: usize,
    /// Ambient namespaces `ns-000`, `ns-001`, …; Services are spread over them in contiguous blocks.
    pub namespaces: usize,
    /// One waypoint per namespace (Gateway of class `istio-waypoint`, its Service and pod), with the
    /// namespace labelled `istio.io/use-waypoint: waypoint`.
    pub waypoint_per_namespace: bool,
    /// Nodes `node-0000`, …; pods are placed on them at random.
    pub nodes: usize,
    pub seed: u64,
}

impl ClusterSpec {
    /// `pods` application pods with the defaults: 10 pods per Service, 100 namespaces, a waypoint per
    /// namespace, one node per 100 pods (at least one), seed 1.
    pub fn new(pods: usize) -> Self {
        ClusterSpec {
            pods,
            pods_per_service: 10,
            namespaces: 100,
            waypoint_per_namespace: true,
            nodes: (pods / 100).max(1),
            seed: 1,
        }
    }

    /// Number of application Services (the waypoint Services are not counted).
    pub fn services(&self) -> usize {
        self.pods.div_ceil(self.pods_per_service.max(1))
    }

    /// Number of namespaces generated besides `istio-system` (never zero).
    pub fn namespace_count(&self) -> usize {
        self.namespaces.max(1)
    }

    /// Number of Nodes generated (never zero).
    pub fn node_count(&self) -> usize {
        self.nodes.max(1)
    }

    /// Name of the `i`-th ambient namespace.
    pub fn namespace_name(&self, i: usize) -> String {
        format!("ns-{i:03}")
    }

    /// Name of the `i`-th application Service (`svc-0042`; wider when there are more than 10,000).
    pub fn service_name(&self, i: usize) -> String {
        let width = digits(self.services().saturating_sub(1)).max(4);
        format!("svc-{i:0width$}")
    }

    /// The namespace index that holds Service `i`.
    pub fn namespace_of_service(&self, i: usize) -> usize {
        let services = self.services().max(1);
        // Contiguous, balanced blocks: with 10,000 Services and 100 namespaces, 100 per namespace.
        ((i as u128 * self.namespace_count() as u128) / services as u128) as usize
    }

    /// Total number of objects [`generate`] returns.
    pub fn object_count(&self) -> usize {
        let namespaces = self.namespace_count();
        let waypoint_objects = if self.waypoint_per_namespace {
            1 + 3 * namespaces // the GatewayClass, then Gateway, Service and pod per namespace
        } else {
            0
        };
        1 + self.node_count() + namespaces + waypoint_objects + self.services() + self.pods
    }
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec::new(1000)
    }
}

fn digits(mut n: usize) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

/// SplitMix64: a tiny, fast, deterministic pseudo-random generator (not for cryptography).
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// The alphabet Kubernetes uses for generated name suffixes and `pod-template-hash` (no vowels).
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The system namespace generated clusters use.
pub const SYSTEM_NAMESPACE: &str = "istio-system";
/// The waypoint GatewayClass.
pub const WAYPOINT_CLASS: &str = "istio-waypoint";
/// The name of each namespace's waypoint (Gateway, Service and Deployment).
pub const WAYPOINT_NAME: &str = "waypoint";

const ZONES: &[&str] = &["a", "b", "c"];
const REGIONS: &[&str] = &["us-east1", "us-west1"];

/// Generator state: the random stream and the address and version counters.
struct Gen<'a> {
    spec: &'a ClusterSpec,
    rng: SplitMix64,
    resource_version: u64,
    next_cluster_ip: u32,
    next_pod_ip: u32,
    nodes: Vec<(String, String)>,
}

impl Gen<'_> {
    fn safe_string(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from(SAFE_ALPHABET[self.rng.below(SAFE_ALPHABET.len())]))
            .collect()
    }

    fn uid(&mut self) -> String {
        let (a, b) = (self.rng.next_u64(), self.rng.next_u64());
        // A version-4, variant-1 UUID.
        let a = (a & !0xF000) | 0x4000;
        let b = (b & !(0b11 << 62)) | (0b10 << 62);
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xFFFF,
            a & 0xFFFF,
            b >> 48,
            b & 0xFFFF_FFFF_FFFF
        )
    }

    fn resource_version(&mut self) -> String {
        self.resource_version += 1;
        self.resource_version.to_string()
    }

    /// A timestamp in January 2025, `kubectl` style.
    fn timestamp(&mut self) -> String {
        let s = self.rng.below(28 * 86_400);
        timestamp_at(s)
    }

    fn cluster_ip(&mut self) -> String {
        // 10.96.0.0/12, skipping .0 of the block.
        let offset = 1 + self.next_cluster_ip % ((1 << 20) - 2);
        self.next_cluster_ip += 1;
        Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + offset).to_string()
    }

    fn pod_ip(&mut self) -> String {
        // 10.128.0.0/9, skipping .0 of the block.
        let offset = 1 + self.next_pod_ip % ((1 << 23) - 2);
        self.next_pod_ip += 1;
        Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + offset).to_string()
    }

    /// A random node: `(name, InternalIP)`.
    fn node(&mut self) -> (String, String) {
        let i = self.rng.below(self.nodes.len());
        self.nodes[i].clone()
    }
}

/// `2025-01-DDTHH:MM:SSZ` for `seconds` after 2025-01-01T00:00:00Z (less than 31 days).
fn timestamp_at(seconds: usize) -> String {
    let (day, rest) = (seconds / 86_400, seconds % 86_400);
    format!(
        "2025-01-{:02}T{:02}:{:02}:{:02}Z",
        day + 1,
        rest / 3600,
        (rest / 60) % 60,
        rest % 60
    )
}

/// Generates the whole cluster as JSON values, in a stable order: `istio-system`, the waypoint
/// GatewayClass, Nodes, then per namespace the Namespace, its waypoint (Gateway, Service, pod) and its
/// Services, each followed by its pods.
pub fn generate(spec: &ClusterSpec) -> Vec<Value> {
    let mut out = Vec::with_capacity(spec.object_count());
    for_each_object(spec, |v| out.push(v));
    out
}

/// Like [`generate`], handing each object to `f` as soon as it is built, so that a caller can parse or
/// write a large cluster without holding every raw object at once.
pub fn for_each_object(spec: &ClusterSpec, mut f: impl FnMut(Value)) {
    let mut g = Gen {
        spec,
        rng: SplitMix64::new(spec.seed),
        resource_version: 1000,
        next_cluster_ip: 0,
        next_pod_ip: 0,
        nodes: Vec::new(),
    };

    f(namespace_object(&mut g, SYSTEM_NAMESPACE, false));
    if spec.waypoint_per_namespace {
        f(gateway_class(&mut g));
    }
    for i in 0..spec.node_count() {
        let (node, name, ip) = node_object(&mut g, i);
        g.nodes.push((name, ip));
        f(node);
    }

    let services = spec.services();
    let pods_per_service = spec.pods_per_service.max(1);
    let mut next_service = 0;
    for ns_index in 0..spec.namespace_count() {
        let ns = spec.namespace_name(ns_index);
        f(namespace_object(&mut g, &ns, spec.waypoint_per_namespace));
        if spec.waypoint_per_namespace {
            let ip = g.cluster_ip();
            let gateway_uid = g.uid();
            f(waypoint_gateway(&mut g, &ns, &ip, &gateway_uid));
            f(waypoint_service(&mut g, &ns, &ip, &gateway_uid));
            f(waypoint_pod(&mut g, &ns));
        }
        while next_service < services && spec.namespace_of_service(next_service) == ns_index {
            let name = spec.service_name(next_service);
            f(service_object(&mut g, &ns, &name));
            let first_pod = next_service * pods_per_service;
            let count = pods_per_service.min(spec.pods - first_pod);
            deployment_pods(&mut g, &ns, &name, count, &mut f);
            next_service += 1;
        }
    }
}

/// AuthorizationPolicies for a generated cluster: `count` policies spread over its namespaces, mixing
/// the shapes ztunnel sees in practice. Per namespace, in turn: selector ALLOW policies on one of the
/// namespace's Services (principals and ports), a selector ALLOW with an HTTP method (dropped at ztunnel),
/// namespace-wide DENY policies (IP blocks), and, one in fifty, a mesh-wide DENY in `istio-system`.
pub fn policies(spec: &ClusterSpec, count: usize) -> Vec<Value> {
    let namespaces = spec.namespace_count();
    let services = spec.services().max(1);
    (0..count)
        .map(|i| {
            let ns_index = i % namespaces;
            let ns = spec.namespace_name(ns_index);
            // A Service of this namespace: Services are laid out in contiguous blocks per namespace.
            let first = (ns_index * services).div_ceil(namespaces);
            let last = ((ns_index + 1) * services).div_ceil(namespaces).max(first + 1);
            let svc = spec.service_name((first + i / namespaces % (last - first)).min(services - 1));
            let name = format!("policy-{i:05}");
            match i % 50 {
                49 => json!({
                    "apiVersion": "security.istio.io/v1",
                    "kind": "AuthorizationPolicy",
                    "metadata": {"name": name, "namespace": "istio-system"},
                    "spec": {"action": "DENY", "rules": [{"from": [{"source": {"ipBlocks": [format!("192.0.{}.0/24", i % 256)]}}]}]}
                }),
                k if k % 5 == 4 => json!({
                    "apiVersion": "security.istio.io/v1",
                    "kind": "AuthorizationPolicy",
                    "metadata": {"name": name, "namespace": ns},
                    "spec": {"action": "DENY", "rules": [{"from": [{"source": {"ipBlocks": ["203.0.113.0/24"], "notNamespaces": [ns]}}]}]}
                }),
                k if k % 5 == 3 => json!({
                    "apiVersion": "security.istio.io/v1",
                    "kind": "AuthorizationPolicy",
                    "metadata": {"name": name, "namespace": ns},
                    "spec": {
                        "selector": {"matchLabels": {"app": svc}},
                        "rules": [{"from": [{"source": {"principals": [format!("cluster.local/ns/{ns}/sa/client")]}}], "to": [{"operation": {"methods": ["GET"]}}]}]
                    }
                }),
                _ => json!({
                    "apiVersion": "security.istio.io/v1",
                    "kind": "AuthorizationPolicy",
                    "metadata": {"name": name, "namespace": ns},
                    "spec": {
                        "selector": {"matchLabels": {"app": svc}},
                        "rules": [{
                            "from": [{"source": {"principals": [format!("cluster.local/ns/{ns}/sa/client-{}", i % 7)], "namespaces": [ns]}}],
                            "to": [{"operation": {"ports": ["8080"]}}]
                        }]
                    }
                }),
            }
        })
        .collect()
}

/// Parses every generated object into the typed model.
///
/// Panics when an object does not parse: that is a bug in this generator, never an input problem.
pub fn generate_objects(spec: &ClusterSpec) -> Vec<Object> {
    let mut out = Vec::with_capacity(spec.object_count());
    for_each_object(spec, |v| out.extend(parse_generated(v)));
    out
}

/// Parses one generated object. A failure is a generator bug, so it panics with the object's name.
pub fn parse_generated(value: Value) -> Option<Object> {
    let name = format!(
        "{}/{}/{}",
        value["kind"].as_str().unwrap_or("?"),
        value["metadata"]["namespace"].as_str().unwrap_or(""),
        value["metadata"]["name"].as_str().unwrap_or("?"),
    );
    match Object::from_value(value) {
        Ok(obj) => obj,
        // A generated object must always parse; failing here means this module builds it wrongly.
        Err(e) => panic!("generator bug: {name} does not parse: {e}"),
    }
}

/// Writes `values` as multi-document YAML files into `dir` (which must exist), split over about
/// `files` files without splitting a namespace: objects are grouped by namespace (cluster-scoped
/// objects first, in their own group) and the groups are spread over the files in order. With one
/// group per file each file is named after its group (`000-cluster.yaml` with the Namespaces, Nodes and
/// GatewayClass, then `001-ns-000.yaml`, …), otherwise `part-000.yaml`, …. `files == 0` means one file
/// per group.
///
/// Returns the paths written, in order.
pub fn write_yaml(dir: &Path, values: &[Value], files: usize) -> io::Result<Vec<PathBuf>> {
    let mut groups = YamlGroups::new();
    for v in values {
        groups.push(v)?;
    }
    groups.write(dir, files)
}

/// Generates the cluster of `spec` straight into YAML files, as [`write_yaml`] lays them out, holding
/// only the YAML text in memory (not every raw object): the way to write large clusters.
pub fn write_cluster_yaml(
    dir: &Path,
    spec: &ClusterSpec,
    files: usize,
) -> io::Result<Vec<PathBuf>> {
    let mut groups = YamlGroups::new();
    let mut failed = None;
    for_each_object(spec, |v| {
        if failed.is_none()
            && let Err(e) = groups.push(&v)
        {
            failed = Some(e);
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    groups.write(dir, files)
}

/// Objects as YAML documents, grouped by namespace in first-seen order, cluster-scoped objects first.
struct YamlGroups {
    /// `(group name, YAML text)`; group 0 holds the cluster-scoped objects.
    groups: Vec<(String, String)>,
    by_namespace: HashMap<String, usize>,
}

impl YamlGroups {
    fn new() -> Self {
        YamlGroups {
            groups: vec![("cluster".to_string(), String::new())],
            by_namespace: HashMap::new(),
        }
    }

    fn push(&mut self, v: &Value) -> io::Result<()> {
        let ns = v["metadata"]["namespace"].as_str().unwrap_or("");
        let i = if ns.is_empty() {
            0
        } else {
            match self.by_namespace.get(ns) {
                Some(&i) => i,
                None => {
                    self.groups.push((ns.to_string(), String::new()));
                    self.by_namespace
                        .insert(ns.to_string(), self.groups.len() - 1);
                    self.groups.len() - 1
                }
            }
        };
        let doc = serde_norway::to_string(v).map_err(io::Error::other)?;
        let text = &mut self.groups[i].1;
        text.push_str("---\n");
        text.push_str(&doc);
        Ok(())
    }

    fn write(mut self, dir: &Path, files: usize) -> io::Result<Vec<PathBuf>> {
        self.groups.retain(|(_, text)| !text.is_empty());
        let groups = &self.groups;
        let files = if files == 0 {
            groups.len()
        } else {
            files.min(groups.len())
        };
        let one_group_per_file = files == groups.len();
        let mut written = Vec::with_capacity(files);
        for file in 0..files {
            let first = file * groups.len() / files;
            let end = (file + 1) * groups.len() / files;
            let name = if one_group_per_file {
                format!("{file:03}-{}.yaml", groups[first].0)
            } else {
                format!("part-{file:03}.yaml")
            };
            let path = dir.join(name);
            let mut out = io::BufWriter::new(std::fs::File::create(&path)?);
            for (_, text) in &groups[first..end] {
                out.write_all(text.as_bytes())?;
            }
            out.flush()?;
            written.push(path);
        }
        Ok(written)
    }
}

// ---- object builders ---------------------------------------------------------------------------

fn namespace_object(g: &mut Gen<'_>, name: &str, ambient: bool) -> Value {
    let mut labels = json!({ "kubernetes.io/metadata.name": name });
    if ambient {
        labels["istio.io/dataplane-mode"] = json!("ambient");
        if g.spec.waypoint_per_namespace {
            labels["istio.io/use-waypoint"] = json!(WAYPOINT_NAME);
        }
    }
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "creationTimestamp": g.timestamp(),
            "labels": labels,
            "name": name,
            "resourceVersion": g.resource_version(),
            "uid": g.uid(),
        },
        "spec": { "finalizers": ["kubernetes"] },
        "status": { "phase": "Active" },
    })
}

fn gateway_class(g: &mut Gen<'_>) -> Value {
    let ts = g.timestamp();
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GatewayClass",
        "metadata": {
            "creationTimestamp": ts,
            "generation": 1,
            "name": WAYPOINT_CLASS,
            "resourceVersion": g.resource_version(),
            "uid": g.uid(),
        },
        "spec": {
            "controllerName": "istio.io/mesh-controller",
            "description": "The default Istio waypoint GatewayClass",
        },
        "status": {
            "conditions": [{
                "lastTransitionTime": ts,
                "message": "Handled by Istio controller",
                "observedGeneration": 1,
                "reason": "Accepted",
                "status": "True",
                "type": "Accepted",
            }],
        },
    })
}

/// A Node and its `(name, InternalIP)`.
fn node_object(g: &mut Gen<'_>, i: usize) -> (Value, String, String) {
    let name = format!("node-{i:04}");
    let region = REGIONS[i % REGIONS.len()];
    let zone = format!("{region}-{}", ZONES[(i / REGIONS.len()) % ZONES.len()]);
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 16, 0, 0)) + 2 + (i as u32 % 1_000_000))
        .to_string();
    let ts = g.timestamp();
    let pod_cidr = format!("10.{}.{}.0/24", 64 + (i / 256) % 32, i % 256);
    let node = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "annotations": {
                "kubeadm.alpha.kubernetes.io/cri-socket": "unix:///run/containerd/containerd.sock",
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
            "creationTimestamp": ts,
            "labels": {
                "beta.kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "topology.kubernetes.io/region": region,
                "topology.kubernetes.io/zone": zone,
            },
            "name": name,
            "resourceVersion": g.resource_version(),
            "uid": g.uid(),
        },
        "spec": {
            "podCIDR": pod_cidr,
            "podCIDRs": [pod_cidr],
            "providerID": format!("gce://ambientd-bench/{zone}/{name}"),
        },
        "status": {
            "addresses": [
                { "address": ip, "type": "InternalIP" },
                { "address": name, "type": "Hostname" },
            ],
            "allocatable": { "cpu": "8", "memory": "32Gi", "pods": "250" },
            "capacity": { "cpu": "8", "memory": "32Gi", "pods": "250" },
            "conditions": [{
                "lastHeartbeatTime": ts,
                "lastTransitionTime": ts,
                "message": "kubelet is posting ready status",
                "reason": "KubeletReady",
                "status": "True",
                "type": "Ready",
            }],
            "nodeInfo": {
                "architecture": "amd64",
                "bootID": g.uid(),
                "containerRuntimeVersion": "containerd://1.7.18",
                "kernelVersion": "6.1.0-18-cloud-amd64",
                "kubeProxyVersion": "",
                "kubeletVersion": "v1.33.1",
                "machineID": g.uid().replace('-', ""),
                "operatingSystem": "linux",
                "osImage": "Debian GNU/Linux 12 (bookworm)",
                "systemUUID": g.uid(),
            },
        },
    });
    (node, name, ip)
}

fn waypoint_gateway(g: &mut Gen<'_>, ns: &str, ip: &str, uid: &str) -> Value {
    let ts = g.timestamp();
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {
            "annotations": { "gateway.istio.io/controller-version": "5" },
            "creationTimestamp": ts,
            "generation": 1,
            "labels": { "istio.io/waypoint-for": "service" },
            "name": WAYPOINT_NAME,
            "namespace": ns,
            "resourceVersion": g.resource_version(),
            "uid": uid,
        },
        "spec": {
            "gatewayClassName": WAYPOINT_CLASS,
            "listeners": [{
                "allowedRoutes": { "namespaces": { "from": "Same" } },
                "name": "mesh",
                "port": 15008,
                "protocol": "HBONE",
            }],
        },
        "status": {
            "addresses": [
                { "type": "Hostname", "value": format!("{WAYPOINT_NAME}.{ns}.svc.cluster.local") },
                { "type": "IPAddress", "value": ip },
            ],
            "conditions": [
                {
                    "lastTransitionTime": ts,
                    "message": "Resource accepted",
                    "observedGeneration": 1,
                    "reason": "Accepted",
                    "status": "True",
                    "type": "Accepted",
                },
                {
                    "lastTransitionTime": ts,
                    "message": format!(
                        "Resource programmed, assigned to service(s) {WAYPOINT_NAME}.{ns}.svc.cluster.local:15008"
                    ),
                    "observedGeneration": 1,
                    "reason": "Programmed",
                    "status": "True",
                    "type": "Programmed",
                },
            ],
            "listeners": [{
                "attachedRoutes": 0,
                "conditions": [{
                    "lastTransitionTime": ts,
                    "message": "No errors found",
                    "observedGeneration": 1,
                    "reason": "Accepted",
                    "status": "True",
                    "type": "Accepted",
                }],
                "name": "mesh",
                "supportedKinds": [],
            }],
        },
    })
}

fn waypoint_service(g: &mut Gen<'_>, ns: &str, ip: &str, gateway_uid: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "creationTimestamp": g.timestamp(),
            "labels": {
                "gateway.istio.io/managed": "istio.io-mesh-controller",
                "gateway.networking.k8s.io/gateway-name": WAYPOINT_NAME,
                "istio.io/gateway-name": WAYPOINT_NAME,
            },
            "name": WAYPOINT_NAME,
            "namespace": ns,
            "ownerReferences": [{
                "apiVersion": "gateway.networking.k8s.io/v1beta1",
                "kind": "Gateway",
                "name": WAYPOINT_NAME,
                "uid": gateway_uid,
            }],
            "resourceVersion": g.resource_version(),
            "uid": g.uid(),
        },
        "spec": {
            "clusterIP": ip,
            "clusterIPs": [ip],
            "internalTrafficPolicy": "Cluster",
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "ports": [
                {
                    "appProtocol": "tcp",
                    "name": "status-port",
                    "port": 15021,
                    "protocol": "TCP",
                    "targetPort": 15021,
                },
                {
                    "appProtocol": "all",
                    "name": "mesh",
                    "port": 15008,
                    "protocol": "TCP",
                    "targetPort": 15008,
                },
            ],
            "selector": { "gateway.networking.k8s.io/gateway-name": WAYPOINT_NAME },
            "sessionAffinity": "None",
            "type": "ClusterIP",
        },
        "status": { "loadBalancer": {} },
    })
}

fn waypoint_pod(g: &mut Gen<'_>, ns: &str) -> Value {
    let hash = g.safe_string(10);
    let replica_set = format!("{WAYPOINT_NAME}-{hash}");
    let name = format!("{replica_set}-{}", g.safe_string(5));
    let labels = json!({
        "gateway.istio.io/managed": "istio.io-mesh-controller",
        "gateway.networking.k8s.io/gateway-name": WAYPOINT_NAME,
        "istio.io/dataplane-mode": "none",
        "istio.io/gateway-name": WAYPOINT_NAME,
        "pod-template-hash": hash,
        "service.istio.io/canonical-name": WAYPOINT_NAME,
        "service.istio.io/canonical-revision": "latest",
        "sidecar.istio.io/inject": "false",
    });
    let annotations = json!({
        "istio.io/rev": "default",
        "prometheus.io/path": "/stats/prometheus",
        "prometheus.io/port": "15020",
        "prometheus.io/scrape": "true",
    });
    let container = json!({
        "args": [
            "proxy", "waypoint", "--domain", "$(POD_NAMESPACE).svc.cluster.local",
            "--serviceCluster", "waypoint.$(POD_NAMESPACE)",
        ],
        "image": "docker.io/istio/proxyv2:1.26.0",
        "imagePullPolicy": "IfNotPresent",
        "name": "istio-proxy",
        "ports": [
            { "containerPort": 15021, "name": "status-port", "protocol": "TCP" },
            { "containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP" },
        ],
        "resources": {
            "limits": { "cpu": "2", "memory": "1Gi" },
            "requests": { "cpu": "100m", "memory": "128Mi" },
        },
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    });
    let p = PodParts {
        ns,
        name: &name,
        replica_set: &replica_set,
        labels,
        annotations,
        service_account: WAYPOINT_NAME,
        container,
        image: "docker.io/istio/proxyv2:1.26.0",
        qos: "Burstable",
        grace: 2,
    };
    pod_object(g, p)
}

fn service_object(g: &mut Gen<'_>, ns: &str, name: &str) -> Value {
    let ip = g.cluster_ip();
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "creationTimestamp": g.timestamp(),
            "labels": { "app": name, "service": name },
            "name": name,
            "namespace": ns,
            "resourceVersion": g.resource_version(),
            "uid": g.uid(),
        },
        "spec": {
            "clusterIP": ip,
            "clusterIPs": [ip],
            "internalTrafficPolicy": "Cluster",
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "ports": [{ "name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080 }],
            "selector": { "app": name },
            "sessionAffinity": "None",
            "type": "ClusterIP",
        },
        "status": { "loadBalancer": {} },
    })
}

/// The `count` pods of Deployment `<service>-v1`: one ReplicaSet, distinct random suffixes.
fn deployment_pods(
    g: &mut Gen<'_>,
    ns: &str,
    service: &str,
    count: usize,
    f: &mut impl FnMut(Value),
) {
    let hash = g.safe_string(10);
    let replica_set = format!("{service}-v1-{hash}");
    let image = format!("registry.example.com/{service}:1.0.0");
    let mut suffixes: Vec<String> = Vec::with_capacity(count);
    for _ in 0..count {
        let mut suffix = g.safe_string(5);
        while suffixes.contains(&suffix) {
            suffix = g.safe_string(5);
        }
        suffixes.push(suffix.clone());
        let name = format!("{replica_set}-{suffix}");
        let labels = json!({ "app": service, "pod-template-hash": hash, "version": "v1" });
        let annotations = json!({ "ambient.istio.io/redirection": "enabled" });
        let container = json!({
            "image": image,
            "imagePullPolicy": "IfNotPresent",
            "name": "app",
            "ports": [{ "containerPort": 8080, "name": "http", "protocol": "TCP" }],
            "resources": {},
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
        });
        let p = PodParts {
            ns,
            name: &name,
            replica_set: &replica_set,
            labels,
            annotations,
            service_account: service,
            container,
            image: &image,
            qos: "BestEffort",
            grace: 30,
        };
        f(pod_object(g, p));
    }
}

/// What differs between the pods this module generates.
struct PodParts<'a> {
    ns: &'a str,
    name: &'a str,
    replica_set: &'a str,
    labels: Value,
    annotations: Value,
    service_account: &'a str,
    container: Value,
    image: &'a str,
    qos: &'a str,
    grace: u32,
}

/// A running, Ready pod owned by a ReplicaSet, scheduled on a random node, as `kubectl` prints it.
fn pod_object(g: &mut Gen<'_>, p: PodParts<'_>) -> Value {
    let (node, host_ip) = g.node();
    let ip = g.pod_ip();
    let created = g.rng.below(27 * 86_400);
    let ts = |offset: usize| timestamp_at(created + offset);
    let container_name = p.container["name"].as_str().unwrap_or("app").to_string();
    let mut container_id = String::with_capacity(64);
    for _ in 0..4 {
        let _ = write!(container_id, "{:016x}", g.rng.next_u64());
    }
    let condition = |type_: &str, at: usize| {
        json!({
            "lastProbeTime": null,
            "lastTransitionTime": ts(at),
            "status": "True",
            "type": type_,
        })
    };
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "annotations": p.annotations,
            "creationTimestamp": ts(0),
            "generateName": format!("{}-", p.replica_set),
            "labels": p.labels,
            "name": p.name,
            "namespace": p.ns,
            "ownerReferences": [{
                "apiVersion": "apps/v1",
                "blockOwnerDeletion": true,
                "controller": true,
                "kind": "ReplicaSet",
                "name": p.replica_set,
                "uid": g.uid(),
            }],
            "resourceVersion": g.resource_version(),
            "uid": g.uid(),
        },
        "spec": {
            "containers": [p.container],
            "dnsPolicy": "ClusterFirst",
            "enableServiceLinks": true,
            "nodeName": node,
            "preemptionPolicy": "PreemptLowerPriority",
            "priority": 0,
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "securityContext": {},
            "serviceAccount": p.service_account,
            "serviceAccountName": p.service_account,
            "terminationGracePeriodSeconds": p.grace,
            "tolerations": [
                {
                    "effect": "NoExecute",
                    "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists",
                    "tolerationSeconds": 300,
                },
                {
                    "effect": "NoExecute",
                    "key": "node.kubernetes.io/unreachable",
                    "operator": "Exists",
                    "tolerationSeconds": 300,
                },
            ],
        },
        "status": {
            "conditions": [
                condition("PodReadyToStartContainers", 2),
                condition("Initialized", 0),
                condition("Ready", 6),
                condition("ContainersReady", 6),
                condition("PodScheduled", 0),
            ],
            "containerStatuses": [{
                "containerID": format!("containerd://{container_id}"),
                "image": p.image,
                "imageID": format!("{}@sha256:{container_id}", p.image),
                "lastState": {},
                "name": container_name,
                "ready": true,
                "restartCount": 0,
                "started": true,
                "state": { "running": { "startedAt": ts(2) } },
            }],
            "hostIP": host_ip,
            "hostIPs": [{ "ip": host_ip }],
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{ "ip": ip }],
            "qosClass": p.qos,
            "startTime": ts(0),
        },
    })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use ambient_index::model::Kind;

    fn small() -> ClusterSpec {
        ClusterSpec {
            pods: 95,
            pods_per_service: 10,
            namespaces: 4,
            waypoint_per_namespace: true,
            nodes: 3,
            seed: 7,
        }
    }

    fn kind_counts(objects: &[Object]) -> BTreeMap<Kind, usize> {
        let mut counts = BTreeMap::new();
        for o in objects {
            *counts.entry(o.kind()).or_default() += 1;
        }
        counts
    }

    #[test]
    fn counts_per_kind() {
        let spec = small();
        let objects = generate_objects(&spec);
        assert_eq!(objects.len(), spec.object_count());
        let want = BTreeMap::from([
            (Kind::Namespace, 1 + 4),
            (Kind::Node, 3),
            (Kind::GatewayClass, 1),
            (Kind::Gateway, 4),
            (Kind::Service, 10 + 4),
            (Kind::Pod, 95 + 4),
        ]);
        assert_eq!(kind_counts(&objects), want);

        let plain = ClusterSpec {
            waypoint_per_namespace: false,
            ..small()
        };
        let objects = generate_objects(&plain);
        assert_eq!(objects.len(), plain.object_count());
        let want = BTreeMap::from([
            (Kind::Namespace, 1 + 4),
            (Kind::Node, 3),
            (Kind::Service, 10),
            (Kind::Pod, 95),
        ]);
        assert_eq!(kind_counts(&objects), want);
    }

    #[test]
    fn deterministic_for_a_seed() {
        let spec = small();
        assert_eq!(generate(&spec), generate(&spec));
        let other = ClusterSpec { seed: 8, ..small() };
        assert_ne!(generate(&spec), generate(&other));
    }

    #[test]
    fn pods_are_spread_over_services_namespaces_and_nodes() {
        let spec = small();
        let objects = generate_objects(&spec);
        let mut per_service: BTreeMap<(String, String), usize> = BTreeMap::new();
        let mut names = BTreeSet::new();
        let mut ips = BTreeSet::new();
        let mut nodes = BTreeSet::new();
        for o in &objects {
            let Object::Pod(p) = o else { continue };
            assert!(names.insert((p.meta.namespace.clone(), p.meta.name.clone())));
            assert!(
                ips.insert(p.ips.clone()),
                "{} has a duplicate IP",
                p.meta.name
            );
            assert!(p.ready && !p.terminal && !p.bad_ip && p.generate_name);
            nodes.insert(p.node.clone());
            let Some(app) = p.meta.labels.get("app") else {
                assert_eq!(
                    p.meta.labels.get("gateway.networking.k8s.io/gateway-name"),
                    Some("waypoint")
                );
                continue;
            };
            assert_eq!(
                p.meta.annotations.get("ambient.istio.io/redirection"),
                Some("enabled")
            );
            assert_eq!(p.meta.labels.get("version"), Some("v1"));
            let hash = p.meta.labels.get("pod-template-hash").unwrap_or_default();
            assert_eq!(hash.len(), 10);
            let owner = p
                .controller
                .as_ref()
                .map(|c| (c.kind.as_str(), c.name.as_str()));
            assert_eq!(
                owner,
                Some(("ReplicaSet", format!("{app}-v1-{hash}").as_str()))
            );
            assert!(p.meta.name.starts_with(&format!("{app}-v1-{hash}-")));
            assert_eq!(p.service_account, app);
            assert_eq!(p.named_ports.len(), 1);
            *per_service
                .entry((p.meta.namespace.clone(), app.to_string()))
                .or_default() += 1;
        }
        assert_eq!(per_service.len(), 10);
        assert_eq!(per_service.values().sum::<usize>(), 95);
        assert_eq!(per_service.values().filter(|n| **n == 10).count(), 9);
        // Contiguous blocks: svc-0000..svc-0002 in ns-000, and every namespace has some.
        assert_eq!(
            per_service.keys().next(),
            Some(&("ns-000".into(), "svc-0000".into()))
        );
        let namespaces: BTreeSet<_> = per_service.keys().map(|(ns, _)| ns.clone()).collect();
        assert_eq!(namespaces.len(), 4);
        assert_eq!(nodes.len(), 3);
    }

    #[test]
    fn waypoints_are_complete() {
        let spec = small();
        for o in generate_objects(&spec) {
            match o {
                Object::Gateway(gw) => {
                    assert_eq!(gw.class, WAYPOINT_CLASS);
                    assert_eq!(gw.listeners.len(), 1);
                    assert_eq!(
                        (gw.listeners[0].port, gw.listeners[0].protocol.as_str()),
                        (15008, "HBONE")
                    );
                    assert_eq!(gw.addresses.len(), 2);
                    let host = format!("waypoint.{}.svc.cluster.local", gw.meta.namespace);
                    assert_eq!(
                        gw.addresses[0],
                        ambient_index::model::StatusAddress::Hostname(host)
                    );
                }
                Object::Namespace(ns) if ns.meta.name != SYSTEM_NAMESPACE => {
                    assert_eq!(
                        ns.meta.labels.get("istio.io/dataplane-mode"),
                        Some("ambient")
                    );
                    assert_eq!(
                        ns.meta.labels.get("istio.io/use-waypoint"),
                        Some("waypoint")
                    );
                }
                Object::Node(node) => {
                    assert!(!node.region.is_empty() && node.zone.starts_with(&node.region));
                }
                _ => {}
            }
        }
    }

    #[test]
    fn the_index_builds_workloads_and_services() {
        let spec = small();
        let index = ambient_index::Index::build(Default::default(), generate_objects(&spec));
        // One workload per pod (waypoint pods included) plus one Service address per Service.
        assert_eq!(index.addresses().len(), (95 + 4) + (10 + 4));
        assert_eq!(index.waypoints().count(), 4);
    }

    #[test]
    fn names_are_wide_enough() {
        let spec = ClusterSpec::new(200_000);
        assert_eq!(spec.services(), 20_000);
        assert_eq!(spec.service_name(7), "svc-00007");
        assert_eq!(ClusterSpec::new(1000).service_name(7), "svc-0007");
        assert_eq!(spec.namespace_of_service(0), 0);
        assert_eq!(spec.namespace_of_service(19_999), 99);
        assert_eq!(spec.node_count(), 2000);
        assert_eq!(ClusterSpec::new(5).node_count(), 1);
    }

    #[test]
    fn yaml_round_trips() -> Result<(), Box<dyn std::error::Error>> {
        let spec = small();
        let values = generate(&spec);
        let dir = tempfile::tempdir()?;
        let per_group = write_yaml(dir.path(), &values, 0)?;
        let names: Vec<String> = per_group
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .collect();
        assert_eq!(
            names,
            [
                "000-cluster.yaml",
                "001-ns-000.yaml",
                "002-ns-001.yaml",
                "003-ns-002.yaml",
                "004-ns-003.yaml"
            ]
        );
        let mut read = Vec::new();
        for path in &per_group {
            let text = std::fs::read_to_string(path)?;
            for doc in serde_norway::Deserializer::from_str(&text) {
                let v: Value = serde::Deserialize::deserialize(doc)?;
                read.push(v);
            }
        }
        // Regrouped by namespace, cluster-scoped first; the same multiset of objects.
        let sorted = |vs: &[Value]| {
            let mut out: Vec<String> = vs.iter().map(Value::to_string).collect();
            out.sort();
            out
        };
        assert_eq!(sorted(&read), sorted(&values));

        // Streaming straight from the spec writes the same files.
        let streamed = tempfile::tempdir()?;
        let streamed_paths = write_cluster_yaml(streamed.path(), &spec, 0)?;
        assert_eq!(streamed_paths.len(), per_group.len());
        for (a, b) in per_group.iter().zip(&streamed_paths) {
            assert_eq!(a.file_name(), b.file_name());
            assert_eq!(std::fs::read(a)?, std::fs::read(b)?);
        }

        let dir = tempfile::tempdir()?;
        let two = write_yaml(dir.path(), &values, 2)?;
        assert_eq!(two.len(), 2);
        assert!(two[0].ends_with("part-000.yaml"));
        Ok(())
    }
}
