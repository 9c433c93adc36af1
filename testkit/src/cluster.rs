//! The whole cluster in order ([`generate`], [`for_each_object`]), the generator's state, and the
//! cluster-scoped objects: Namespaces, the waypoint GatewayClass and Nodes.

use std::net::Ipv4Addr;

use serde_json::{Value, json};

use crate::rng::SplitMix64;
use crate::spec::{ClusterSpec, SYSTEM_NAMESPACE, WAYPOINT_CLASS, WAYPOINT_NAME};
use crate::waypoint::{waypoint_gateway, waypoint_pod, waypoint_service};
use crate::workload::{deployment_pods, service_object};

/// The alphabet Kubernetes uses for generated name suffixes and `pod-template-hash` (no vowels).
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

const ZONES: &[&str] = &["a", "b", "c"];
const REGIONS: &[&str] = &["us-east1", "us-west1"];

/// Generator state: the random stream and the address and version counters.
pub(crate) struct Gen<'a> {
    pub(crate) spec: &'a ClusterSpec,
    pub(crate) rng: SplitMix64,
    resource_version: u64,
    next_cluster_ip: u32,
    next_pod_ip: u32,
    nodes: Vec<(String, String)>,
}

impl Gen<'_> {
    pub(crate) fn safe_string(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from(SAFE_ALPHABET[self.rng.below(SAFE_ALPHABET.len())]))
            .collect()
    }

    pub(crate) fn uid(&mut self) -> String {
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

    pub(crate) fn resource_version(&mut self) -> String {
        self.resource_version += 1;
        self.resource_version.to_string()
    }

    /// A timestamp in January 2025, `kubectl` style.
    pub(crate) fn timestamp(&mut self) -> String {
        let s = self.rng.below(28 * 86_400);
        timestamp_at(s)
    }

    pub(crate) fn cluster_ip(&mut self) -> String {
        // 10.96.0.0/12, skipping .0 of the block.
        let offset = 1 + self.next_cluster_ip % ((1 << 20) - 2);
        self.next_cluster_ip += 1;
        Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + offset).to_string()
    }

    pub(crate) fn pod_ip(&mut self) -> String {
        // 10.128.0.0/9, skipping .0 of the block.
        let offset = 1 + self.next_pod_ip % ((1 << 23) - 2);
        self.next_pod_ip += 1;
        Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + offset).to_string()
    }

    /// A random node: `(name, InternalIP)`.
    pub(crate) fn node(&mut self) -> (String, String) {
        let i = self.rng.below(self.nodes.len());
        self.nodes[i].clone()
    }
}

/// `2025-01-DDTHH:MM:SSZ` for `seconds` after 2025-01-01T00:00:00Z (less than 31 days).
pub(crate) fn timestamp_at(seconds: usize) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::small;

    #[test]
    fn deterministic_for_a_seed() {
        let spec = small();
        assert_eq!(generate(&spec), generate(&spec));
        let other = ClusterSpec { seed: 8, ..small() };
        assert_ne!(generate(&spec), generate(&other));
    }

    #[test]
    fn the_objects_counted_are_the_objects_generated() {
        let spec = small();
        assert_eq!(generate(&spec).len(), spec.object_count());
        let plain = ClusterSpec {
            waypoint_per_namespace: false,
            ..small()
        };
        assert_eq!(generate(&plain).len(), plain.object_count());
    }
}
