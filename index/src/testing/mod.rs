//! Test fixtures: fluent builders for the slim object model, and helpers that read the index back.
//!
//! This module owns the fixtures used by the integration tests and the benches. Builders fill the
//! public fields of [`crate::model`] directly, so a fixture is exactly what a source would have handed
//! to the index after parsing, e.g.
//!
//! ```
//! use ambient_index::testing::*;
//!
//! let p = pod("ns", "web-0").ip("10.0.0.1").label("app", "web").sa("web").node("n1").ready().build();
//! let s = service("ns", "web").cluster_ip("10.96.0.1").port("http", 80, 8080).selector("app", "web").build();
//! ```
//!
//! Defaults: a pod has no IP, is not ready and is running (phase `Running`); its uid is
//! `uid-<ns>-<name>`. A Service has no selector, no cluster IP and no ports. A Gateway has class
//! `istio-waypoint`, no listeners and no status addresses (so it is not a waypoint until given one). A
//! Namespace carries the `kubernetes.io/metadata.name` label the API server adds. Annotations are stored
//! as given (the parser would keep only those the index reads).
//!
//! Builders for Pods, Services, Namespaces, Nodes and EndpointSlices are in `workloads`, for the
//! Gateway API in `gateways`, for AuthorizationPolicy and PeerAuthentication in `policies`; `read`
//! reads resources back from the index, and `table` runs table tests. Everything is re-exported here.

mod checked;
mod gateways;
mod policies;
mod read;
mod table;
mod workloads;

use crate::Settings;
use crate::model::well_known::NETWORK;
use crate::model::{Meta, Object};

pub use self::checked::*;
pub use self::gateways::*;
pub use self::policies::*;
pub use self::read::*;
pub use self::table::*;
pub use self::workloads::*;

/// The cluster ID, domain suffix, system namespace and network of istiod's ambient unit tests.
pub const TEST_CLUSTER: &str = "cluster0";
pub const TEST_DOMAIN: &str = "domain.suffix";
pub const TEST_SYSTEM_NAMESPACE: &str = "istio-system";
pub const TEST_NETWORK: &str = "testnetwork";

/// Settings of istiod's ambient unit tests: cluster `cluster0`, domain suffix `domain.suffix`, system
/// namespace `istio-system`; everything else at istiod's defaults.
pub fn test_settings() -> Settings {
    Settings {
        cluster_id: TEST_CLUSTER.into(),
        domain_suffix: TEST_DOMAIN.into(),
        system_namespace: TEST_SYSTEM_NAMESPACE.into(),
        ..Settings::default()
    }
}

/// The system namespace of istiod's ambient unit tests, labelled with network `testnetwork`.
pub fn test_system_namespace() -> Object {
    namespace(TEST_SYSTEM_NAMESPACE)
        .label(NETWORK, TEST_NETWORK)
        .build()
}

fn meta(namespace: &str, name: &str) -> Meta {
    Meta {
        namespace: namespace.to_string(),
        name: name.to_string(),
        uid: if namespace.is_empty() {
            format!("uid-{name}")
        } else {
            format!("uid-{namespace}-{name}")
        },
        ..Meta::default()
    }
}
