//! What to generate ([`ClusterSpec`]) and how the generated objects are named.

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

    /// Total number of objects [`generate`](crate::generate) returns.
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

/// The system namespace generated clusters use.
pub const SYSTEM_NAMESPACE: &str = "istio-system";
/// The waypoint GatewayClass.
pub const WAYPOINT_CLASS: &str = "istio-waypoint";
/// The name of each namespace's waypoint (Gateway, Service and Deployment).
pub const WAYPOINT_NAME: &str = "waypoint";

/// 95 pods in 10 Services over 4 namespaces and 3 nodes, with waypoints: the unit tests' cluster.
#[cfg(test)]
pub(crate) fn small() -> ClusterSpec {
    ClusterSpec {
        pods: 95,
        pods_per_service: 10,
        namespaces: 4,
        waypoint_per_namespace: true,
        nodes: 3,
        seed: 7,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
