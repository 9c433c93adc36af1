//! Generated clusters: realistic Kubernetes objects in bulk, for benchmarks, load tests and `agent-sim gen`.
//!
//! [`generate`] builds an ambient cluster shaped like `kubectl get -o json` output: the system namespace,
//! Nodes with locality labels, `N` ambient namespaces each with a waypoint (Gateway, Service, pod),
//! Services of `pods_per_service` Deployment-style pods, every pod captured by istio-cni
//! (`ambient.istio.io/redirection: enabled`), Ready, with an IP, a node and a named container port.
//! The objects are raw JSON values, as a source reads them; parsing them is the reader's business.
//!
//! The output is a pure function of the [`ClusterSpec`]: the same spec (seed included) gives the same
//! objects, byte for byte. Randomness (hashes, uids, node placement, timestamps) comes from a small
//! SplitMix64 generator, [`SplitMix64`], also usable by callers that need reproducible picks.
//!
//! Addresses: Service cluster IPs come from `10.96.0.0/12`, pod IPs from `10.128.0.0/9`, node IPs from
//! `172.16.0.0/12`, each handed out in order; they wrap (and so repeat) only past about a million
//! Services or eight million pods.
//!
//! - [`spec`]: what to generate and how objects are named.
//! - [`rng`]: the random stream.
//! - [`cluster`]: the cluster in order; Namespaces, the GatewayClass and Nodes.
//! - `waypoint`, `workload`: each namespace's waypoint; application Services and pods.
//! - [`policies`](mod@policies): AuthorizationPolicies for a generated cluster.
//! - [`yaml`]: multi-document YAML files, one per namespace by default.
//! - [`deps`]: a crate's dependency names from `cargo tree`, for the tests that keep the crate graph.

pub mod cluster;
pub mod deps;
pub mod policies;
pub mod rng;
pub mod spec;
mod waypoint;
mod workload;
pub mod yaml;

pub use cluster::{for_each_object, generate};
pub use policies::policies;
pub use rng::SplitMix64;
pub use spec::{ClusterSpec, SYSTEM_NAMESPACE, WAYPOINT_CLASS, WAYPOINT_NAME};
pub use yaml::{write_cluster_yaml, write_yaml};
