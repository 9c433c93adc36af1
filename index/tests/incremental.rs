//! Incremental updates: `Index::apply`, `Index::delete` and `Index::reset` report exactly the Address
//! resources whose content changed or that were removed, and the incremental index always equals one
//! built from scratch (`Index::build`) over the same objects.
//!
//! Every step goes through [`World`], which checks both properties before the test asserts the exact
//! names it expects. The last test runs long pseudo-random sequences (fixed seeds) over a small universe
//! of objects.

use std::collections::HashMap;
use std::sync::Arc;

use ambient_index::model::well_known::*;
use ambient_index::model::{AllowedRoutes, Kind, Object, ObjectRef};
use ambient_index::testing::*;
use ambient_index::{Enrollment, Index, Resource, Settings};
use ambient_proto::workload::WorkloadStatus;

// ---- harness ------------------------------------------------------------------------------------

/// [`Checked`], reporting the Address names of each step (the Authorization names are checked too).
struct World(Checked);

fn snapshot(index: &Index) -> HashMap<Arc<str>, Resource> {
    HashMap::clone(index.addresses())
}

impl World {
    fn new(settings: Settings, objects: Vec<Object>) -> World {
        World(Checked::new(settings, objects))
    }

    /// The unit-test environment (`test_settings()`, `istio-system` on `testnetwork`) plus `objects`.
    fn unit(objects: Vec<Object>) -> World {
        World(Checked::unit(objects))
    }

    fn apply(&mut self, obj: Object) -> Names {
        self.0.apply(obj).addresses
    }

    fn delete(&mut self, r: &ObjectRef) -> Names {
        self.0.delete(r).addresses
    }
}

fn changed(names: &[&str]) -> Names {
    let mut v: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    v.sort();
    (v, vec![])
}

fn removed(names: &[&str]) -> Names {
    let mut v: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    v.sort();
    (vec![], v)
}

fn none() -> Names {
    (vec![], vec![])
}

fn uid(ns: &str, name: &str) -> String {
    format!("cluster0//Pod/{ns}/{name}")
}

fn svc_name(ns: &str, name: &str) -> String {
    format!("{ns}/{name}.{ns}.svc.domain.suffix")
}

/// A ready pod `ns/<name>` with the given IP and `app` label.
fn app_pod(name: &str, ip: &str, app: &str) -> PodBuilder {
    pod("ns", name).ip(ip).ready().label("app", app)
}

/// `ns/svc` selecting `app: <app>`, port `http` 80→8080.
fn app_service(app: &str) -> ServiceBuilder {
    service("ns", "svc")
        .cluster_ip("10.96.0.1")
        .port("http", 80, 8080)
        .selector("app", app)
}

// ---- pods and services --------------------------------------------------------------------------

#[test]
fn new_pod_changes_exactly_its_uid() {
    let mut world = World::unit(vec![app_service("a").build()]);
    let got = world.apply(app_pod("p1", "10.0.0.1", "a").build());
    assert_eq!(got, changed(&[&uid("ns", "p1")]));
}

#[test]
fn identical_pod_changes_nothing() {
    let mut world = World::unit(vec![
        app_service("a").build(),
        app_pod("p1", "10.0.0.1", "a").build(),
    ]);
    assert_eq!(world.apply(app_pod("p1", "10.0.0.1", "a").build()), none());
}

#[test]
fn pod_label_change_without_effect_changes_nothing() {
    let mut world = World::unit(vec![
        app_service("a").build(),
        app_pod("p1", "10.0.0.1", "a").build(),
    ]);
    let got = world.apply(app_pod("p1", "10.0.0.1", "a").label("team", "x").build());
    assert_eq!(got, none());
}

#[test]
fn pod_label_change_joining_a_service_changes_only_the_pod() {
    let mut world = World::unit(vec![
        app_service("a").build(),
        app_pod("p1", "10.0.0.1", "b").build(),
        app_pod("p2", "10.0.0.2", "a").build(),
    ]);
    let got = world.apply(app_pod("p1", "10.0.0.1", "a").build());
    assert_eq!(got, changed(&[&uid("ns", "p1")]));
    let got = world.apply(app_pod("p1", "10.0.0.1", "b").build());
    assert_eq!(got, changed(&[&uid("ns", "p1")]));
}

#[test]
fn service_selector_change_changes_the_pods_gained_and_lost() {
    let mut world = World::unit(vec![
        app_service("a").build(),
        app_pod("p1", "10.0.0.1", "a").build(),
        app_pod("p2", "10.0.0.2", "b").build(),
        app_pod("p3", "10.0.0.3", "c").build(),
    ]);
    // The selector is not part of the Service resource, so the Service itself does not change.
    let got = world.apply(app_service("b").build());
    assert_eq!(got, changed(&[&uid("ns", "p1"), &uid("ns", "p2")]));
}

#[test]
fn service_port_change_changes_the_service_and_its_pods() {
    let mut world = World::unit(vec![
        app_service("a").build(),
        app_pod("p1", "10.0.0.1", "a").build(),
        app_pod("p2", "10.0.0.2", "a").build(),
        app_pod("p3", "10.0.0.3", "b").build(),
    ]);
    let got = world.apply(
        service("ns", "svc")
            .cluster_ip("10.96.0.1")
            .port("http", 80, 9090)
            .selector("app", "a")
            .build(),
    );
    assert_eq!(
        got,
        changed(&[&svc_name("ns", "svc"), &uid("ns", "p1"), &uid("ns", "p2")])
    );
}

#[test]
fn service_annotation_change_changes_only_the_service() {
    let mut world = World::unit(vec![
        app_service("a").build(),
        app_pod("p1", "10.0.0.1", "a").build(),
    ]);
    let got = world.apply(
        app_service("a")
            .annotation(TRAFFIC_DISTRIBUTION, "PreferClose")
            .build(),
    );
    assert_eq!(got, changed(&[&svc_name("ns", "svc")]));
}

#[test]
fn service_delete_and_external_name() {
    let mut world = World::unit(vec![
        app_service("a").build(),
        app_pod("p1", "10.0.0.1", "a").build(),
        app_pod("p2", "10.0.0.2", "b").build(),
    ]);
    let got = world.apply(app_service("a").external_name().build());
    assert_eq!(
        got,
        (vec![uid("ns", "p1")], vec![svc_name("ns", "svc")]),
        "ExternalName: Service gone, its pod leaves it"
    );
    let got = world.apply(app_service("a").build());
    assert_eq!(got, changed(&[&svc_name("ns", "svc"), &uid("ns", "p1")]));
    let got = world.delete(&ObjectRef::new(Kind::Service, "ns", "svc"));
    assert_eq!(got, (vec![uid("ns", "p1")], vec![svc_name("ns", "svc")]));
    assert_eq!(
        world.delete(&ObjectRef::new(Kind::Service, "ns", "svc")),
        none(),
        "deleting again is a no-op"
    );
}

#[test]
fn invalid_cluster_ip_removes_the_service_from_its_pods() {
    let mut world = World::unit(vec![
        app_service("a").build(),
        app_pod("p1", "10.0.0.1", "a").build(),
    ]);
    let got = world.apply(
        service("ns", "svc")
            .cluster_ip("10.96.0.999")
            .port("http", 80, 8080)
            .selector("app", "a")
            .build(),
    );
    assert_eq!(got, (vec![uid("ns", "p1")], vec![svc_name("ns", "svc")]));
}

#[test]
fn pod_delete_and_lifecycle() {
    let mut world = World::unit(vec![app_pod("p1", "10.0.0.1", "a").build()]);
    let got = world.apply(app_pod("p1", "10.0.0.1", "a").deleting().build());
    assert_eq!(got, changed(&[&uid("ns", "p1")]), "deleting: unhealthy");
    let got = world.apply(app_pod("p1", "10.0.0.1", "a").phase("Succeeded").build());
    assert_eq!(got, removed(&[&uid("ns", "p1")]), "terminal: gone");
    let got = world.apply(app_pod("p1", "10.0.0.1", "a").build());
    assert_eq!(got, changed(&[&uid("ns", "p1")]), "running again");
    let got = world.delete(&ObjectRef::new(Kind::Pod, "ns", "p1"));
    assert_eq!(got, removed(&[&uid("ns", "p1")]));
    let got = world.delete(&ObjectRef::new(Kind::Pod, "ns", "p1"));
    assert_eq!(got, none(), "deleting again is a no-op");
}

/// `TestPodLifecycleWorkloadGates`: no IP → absent; Pending with an IP → unhealthy; ready → healthy;
/// not ready → unhealthy; IP gone → absent.
#[test]
fn pod_lifecycle_workload_gates() {
    let mut world = World::unit(vec![app_service("a").build()]);
    let p1 = || pod("ns", "p1").label("app", "a");
    let status = |world: &World| workload(&world.0.index, &uid("ns", "p1")).map(|w| w.status);
    assert_eq!(
        world.apply(p1().phase("Pending").build()),
        none(),
        "no IP yet"
    );
    assert_eq!(status(&world), None);
    assert_eq!(
        world.apply(p1().phase("Pending").ip("10.0.0.1").build()),
        changed(&[&uid("ns", "p1")]),
        "pending with an IP"
    );
    assert_eq!(status(&world), Some(WorkloadStatus::Unhealthy as i32));
    assert_eq!(
        world.apply(p1().phase("Running").ip("10.0.0.1").ready().build()),
        changed(&[&uid("ns", "p1")]),
        "ready"
    );
    assert_eq!(status(&world), Some(WorkloadStatus::Healthy as i32));
    assert_eq!(
        world.apply(p1().phase("Running").ip("10.0.0.1").build()),
        changed(&[&uid("ns", "p1")]),
        "not ready"
    );
    assert_eq!(status(&world), Some(WorkloadStatus::Unhealthy as i32));
    assert_eq!(
        world.apply(p1().phase("Running").build()),
        removed(&[&uid("ns", "p1")]),
        "IP gone"
    );
}

// ---- nodes and namespaces -----------------------------------------------------------------------

#[test]
fn node_locality_change_changes_the_pods_on_that_node() {
    let mut world = World::unit(vec![
        node("n1").region("r").zone("z1").build(),
        node("n2").region("r").zone("z2").build(),
        app_pod("p1", "10.0.0.1", "a").node("n1").build(),
        app_pod("p2", "10.0.0.2", "a").node("n1").build(),
        app_pod("p3", "10.0.0.3", "a").node("n2").build(),
        app_pod("p4", "10.0.0.4", "a").build(),
    ]);
    let got = world.apply(node("n1").region("r").zone("z3").build());
    assert_eq!(got, changed(&[&uid("ns", "p1"), &uid("ns", "p2")]));
    assert_eq!(
        world.apply(node("n1").region("r").zone("z3").build()),
        none(),
        "same node again"
    );
    let got = world.delete(&ObjectRef::new(Kind::Node, "", "n2"));
    assert_eq!(got, changed(&[&uid("ns", "p3")]));
    let got = world.apply(node("n3").zone("z").build());
    assert_eq!(got, none(), "no pod on the new node");
}

#[test]
fn system_namespace_network_change_changes_everything_with_a_network() {
    let mut world = World::unit(vec![
        app_service("a").build(),
        service("ns", "headless")
            .headless()
            .port("http", 80, 8080)
            .selector("app", "b")
            .build(),
        app_pod("p1", "10.0.0.1", "a").build(),
        pod("other", "p2").ip("10.0.0.2").ready().build(),
        service("ns", "slice-svc")
            .cluster_ip("10.96.0.2")
            .port("http", 80, 8080)
            .build(),
        endpoint_slice("ns", "slice-svc-1")
            .service("slice-svc")
            .port("http", 8080)
            .endpoint(&["10.1.0.1"], true, None)
            .build(),
    ]);
    let got = world.apply(
        namespace("istio-system")
            .label(NETWORK, "other-network")
            .build(),
    );
    // The headless Service has no address, so nothing of it carries the network.
    assert_eq!(
        got,
        changed(&[
            &svc_name("ns", "svc"),
            &svc_name("ns", "slice-svc"),
            &uid("ns", "p1"),
            &uid("other", "p2"),
            "cluster0/discovery.k8s.io/EndpointSlice/ns/slice-svc-1/10.1.0.1",
        ])
    );
    let got = world.apply(
        namespace("istio-system")
            .label(NETWORK, "other-network")
            .label("team", "mesh")
            .build(),
    );
    assert_eq!(got, none(), "other labels of the system namespace");
    let got = world.delete(&ObjectRef::new(Kind::Namespace, "", "istio-system"));
    assert_eq!(got.0.len(), 5, "network back to empty: {got:?}");
}

#[test]
fn namespace_enrollment_label_in_labels_mode() {
    let mut world = World::new(
        Settings {
            enrollment: Enrollment::Labels,
            ..test_settings()
        },
        vec![
            test_system_namespace(),
            namespace("ns").build(),
            app_service("a").build(),
            app_pod("p1", "10.0.0.1", "a").build(),
            app_pod("p2", "10.0.0.2", "a")
                .label(DATAPLANE_MODE, "none")
                .build(),
            pod("other", "p3").ip("10.0.0.3").ready().build(),
        ],
    );
    let got = world.apply(namespace("ns").label(DATAPLANE_MODE, "ambient").build());
    assert_eq!(got, changed(&[&uid("ns", "p1")]));
    let got = world.delete(&ObjectRef::new(Kind::Namespace, "", "ns"));
    assert_eq!(got, changed(&[&uid("ns", "p1")]), "namespace gone");
}

// ---- waypoints ----------------------------------------------------------------------------------

#[test]
fn namespace_use_waypoint_label_with_a_service_waypoint() {
    let mut world = World::unit(vec![
        namespace("ns").build(),
        waypoint("ns", "wp", "domain.suffix", "10.0.0.9").build(),
        app_service("a").build(),
        app_pod("p1", "10.0.0.1", "a").build(),
        service("other", "svc")
            .cluster_ip("10.96.1.1")
            .port("http", 80, 8080)
            .build(),
    ]);
    let got = world.apply(namespace("ns").label(USE_WAYPOINT, "wp").build());
    assert_eq!(
        got,
        changed(&[&svc_name("ns", "svc")]),
        "pods inherit a service waypoint silently"
    );
    let got = world.apply(namespace("ns").build());
    assert_eq!(got, changed(&[&svc_name("ns", "svc")]), "label removed");
}

#[test]
fn namespace_use_waypoint_label_with_an_all_waypoint() {
    let mut world = World::unit(vec![
        namespace("ns").build(),
        waypoint("ns", "wp", "domain.suffix", "10.0.0.9")
            .label(WAYPOINT_FOR, "all")
            .build(),
        app_service("a").build(),
        app_pod("p1", "10.0.0.1", "a").build(),
        app_pod("p2", "10.0.0.2", "b")
            .label(USE_WAYPOINT, "none")
            .build(),
        pod("ns", "wp-pod")
            .ip("10.0.0.9")
            .ready()
            .label(GATEWAY_NAME, "wp")
            .build(),
    ]);
    let got = world.apply(namespace("ns").label(USE_WAYPOINT, "wp").build());
    assert_eq!(got, changed(&[&svc_name("ns", "svc"), &uid("ns", "p1")]));
}

/// `TestPushXdsAddressWaypointRefs`: adding the waypoint later changes its dependents; deleting it
/// changes them back.
#[test]
fn waypoint_added_later_then_deleted() {
    let mut world = World::unit(vec![
        namespace("ns").label(USE_WAYPOINT, "wp").build(),
        app_service("a").build(),
        app_pod("p1", "10.0.0.1", "a").build(),
        app_pod("p2", "10.0.0.2", "b")
            .label(USE_WAYPOINT, "none")
            .build(),
        pod("ns", "wp-pod")
            .ip("10.0.0.9")
            .ready()
            .label(GATEWAY_NAME, "wp")
            .build(),
        service("other", "svc")
            .cluster_ip("10.96.1.1")
            .port("http", 80, 8080)
            .label(USE_WAYPOINT, "wp")
            .label(USE_WAYPOINT_NAMESPACE, "ns")
            .build(),
    ]);
    let dependents = changed(&[&svc_name("ns", "svc"), &uid("ns", "p1")]);
    let gw = || waypoint("ns", "wp", "domain.suffix", "10.0.0.9").label(WAYPOINT_FOR, "all");
    assert_eq!(world.apply(gw().build()), dependents, "waypoint added");
    assert!(workload(&world.0.index, &uid("ns", "p1")).is_some_and(|w| w.waypoint.is_some()));
    assert!(workload(&world.0.index, &uid("ns", "wp-pod")).is_some_and(|w| w.waypoint.is_none()));
    assert_eq!(
        world.apply(gw().label("team", "x").build()),
        none(),
        "a Gateway change that leaves the waypoint as it is"
    );
    let got = world.delete(&ObjectRef::new(Kind::Gateway, "ns", "wp"));
    assert_eq!(got, dependents, "waypoint deleted");
    assert!(workload(&world.0.index, &uid("ns", "p1")).is_some_and(|w| w.waypoint.is_none()));
}

#[test]
fn cross_namespace_waypoint_users_follow_the_waypoint() {
    let mut world = World::unit(vec![
        namespace("ns").label("team", "x").build(),
        namespace("wpns").build(),
        app_service("a")
            .label(USE_WAYPOINT, "wp")
            .label(USE_WAYPOINT_NAMESPACE, "wpns")
            .build(),
        app_pod("p1", "10.0.0.1", "a")
            .label(USE_WAYPOINT, "wp")
            .label(USE_WAYPOINT_NAMESPACE, "wpns")
            .build(),
    ]);
    let gw = |allowed| {
        gateway("wpns", "wp")
            .hbone_listener(allowed)
            .status_hostname("wp.wpns.svc.domain.suffix")
            .label(WAYPOINT_FOR, "all")
            .build()
    };
    assert_eq!(
        world.apply(gw(AllowedRoutes::Same)),
        none(),
        "Same: denied, which sends what a missing waypoint sent"
    );
    assert_eq!(
        world.apply(gw(AllowedRoutes::All)),
        changed(&[&svc_name("ns", "svc"), &uid("ns", "p1")]),
        "All"
    );
    assert_eq!(
        world.apply(gw(allowed_selector(&[("team", "x")]))),
        none(),
        "Selector matching"
    );
    assert_eq!(
        world.apply(namespace("ns").label("team", "y").build()),
        changed(&[&svc_name("ns", "svc"), &uid("ns", "p1")]),
        "namespace no longer selected"
    );
}

#[test]
fn gateway_class_change_changes_the_waypoint_dependents() {
    let mut world = World::unit(vec![
        namespace("ns").label(USE_WAYPOINT, "wp").build(),
        waypoint("ns", "wp", "domain.suffix", "10.0.0.9").build(),
        gateway_class("istio-waypoint").build(),
        app_service("a").build(),
        app_pod("p1", "10.0.0.1", "a").build(),
    ]);
    let got = world.apply(
        gateway_class("istio-waypoint")
            .label(WAYPOINT_FOR, "workload")
            .build(),
    );
    assert_eq!(got, changed(&[&svc_name("ns", "svc"), &uid("ns", "p1")]));
    let got = world.apply(gateway_class("other").label(WAYPOINT_FOR, "all").build());
    assert_eq!(got, none(), "another class");
    let got = world.delete(&ObjectRef::new(Kind::GatewayClass, "", "istio-waypoint"));
    assert_eq!(got, changed(&[&svc_name("ns", "svc"), &uid("ns", "p1")]));
}

#[test]
fn waypoint_instance_binding_follows_the_gateway() {
    let mut world = World::unit(vec![
        pod("ns", "wp-pod")
            .ip("10.0.0.9")
            .ready()
            .label(GATEWAY_NAME, "wp")
            .build(),
    ]);
    let got = world.apply(
        waypoint("ns", "wp", "domain.suffix", "10.0.0.9")
            .annotation(INBOUND_BINDING, "PROXY/15088")
            .build(),
    );
    assert_eq!(got, changed(&[&uid("ns", "wp-pod")]));
    assert!(
        workload(&world.0.index, &uid("ns", "wp-pod"))
            .is_some_and(|w| w.application_tunnel.is_some())
    );
}

// ---- EndpointSlices -----------------------------------------------------------------------------

#[test]
fn endpoint_slice_add_and_remove() {
    let p1 = app_pod("p1", "10.0.0.1", "a");
    let slice = || {
        endpoint_slice("ns", "svc-1")
            .service("svc")
            .port("http", 8080)
            .endpoint(&["10.0.0.1"], true, Some(p1.target_ref()))
            .endpoint(&["10.1.0.1"], true, None)
    };
    let mut world = World::unit(vec![
        service("ns", "svc")
            .cluster_ip("10.96.0.1")
            .port("http", 80, 8080)
            .build(),
        p1.clone().build(),
        app_pod("p2", "10.0.0.2", "a").build(),
    ]);
    let slice_wl = "cluster0/discovery.k8s.io/EndpointSlice/ns/svc-1/10.1.0.1";
    assert_eq!(
        world.apply(slice().build()),
        changed(&[&uid("ns", "p1"), slice_wl]),
        "slice added: the pod joins, the IP-only endpoint appears"
    );
    assert_eq!(world.apply(slice().build()), none(), "same slice again");
    assert_eq!(
        world.apply(slice().endpoint(&["10.1.0.2"], false, None).build()),
        changed(&["cluster0/discovery.k8s.io/EndpointSlice/ns/svc-1/10.1.0.2"]),
        "endpoint added"
    );
    assert_eq!(
        world.apply(p1.clone().uid("recreated").build()),
        changed(&[&uid("ns", "p1")]),
        "pod recreated with a new uid leaves the service"
    );
    assert_eq!(
        world.apply(p1.clone().build()),
        changed(&[&uid("ns", "p1")]),
        "and joins again with the old one"
    );
    assert_eq!(
        world.apply(
            service("ns", "svc")
                .cluster_ip("10.96.0.1")
                .port("http", 80, 8080)
                .port("metrics", 9090, 9090)
                .build()
        ),
        changed(&[&svc_name("ns", "svc"), &uid("ns", "p1")]),
        "a Service port the slice does not carry changes the pod, not the slice workloads"
    );
    assert_eq!(
        world.delete(&ObjectRef::new(Kind::EndpointSlice, "ns", "svc-1")),
        (
            vec![uid("ns", "p1")],
            vec![
                slice_wl.to_string(),
                "cluster0/discovery.k8s.io/EndpointSlice/ns/svc-1/10.1.0.2".to_string()
            ]
        ),
        "slice removed"
    );
}

#[test]
fn endpoint_slice_service_appears_later() {
    let mut world = World::unit(vec![
        endpoint_slice("default", "kubernetes")
            .service("kubernetes")
            .port("https", 6443)
            .endpoint(&["172.18.0.5"], true, None)
            .build(),
    ]);
    let svc = || {
        service("default", "kubernetes")
            .cluster_ip("10.96.0.1")
            .port("https", 443, 6443)
    };
    let slice_wl = "cluster0/discovery.k8s.io/EndpointSlice/default/kubernetes/172.18.0.5";
    assert_eq!(
        world.apply(svc().build()),
        changed(&[&svc_name("default", "kubernetes"), slice_wl])
    );
    assert_eq!(
        world.apply(svc().port("http", 80, 8080).build()),
        changed(&[&svc_name("default", "kubernetes")]),
        "a port the slice does not carry"
    );
    assert_eq!(
        world.apply(
            service("default", "kubernetes")
                .cluster_ip("10.96.0.1")
                .port("https", 8443, 6443)
                .build()
        ),
        changed(&[&svc_name("default", "kubernetes"), slice_wl]),
        "the service port of the slice's port changed"
    );
    assert_eq!(
        world.delete(&ObjectRef::new(Kind::Service, "default", "kubernetes")),
        removed(&[&svc_name("default", "kubernetes"), slice_wl])
    );
}

// ---- reset --------------------------------------------------------------------------------------

#[test]
fn reset_reports_the_difference() {
    let before = vec![
        test_system_namespace(),
        app_service("a").build(),
        app_pod("p1", "10.0.0.1", "a").build(),
        app_pod("p2", "10.0.0.2", "a").build(),
        app_pod("p3", "10.0.0.3", "b").build(),
    ];
    let after = vec![
        test_system_namespace(),
        app_service("a").build(),
        app_pod("p1", "10.0.0.1", "a").build(),
        app_pod("p2", "10.0.0.2", "b").build(),
        app_pod("p4", "10.0.0.4", "b").build(),
    ];
    let mut index = Index::build(test_settings(), before);
    let changes = index.reset(after.clone());
    assert_eq!(
        names(&changes.addresses),
        (
            vec![uid("ns", "p2"), uid("ns", "p4")],
            vec![uid("ns", "p3")]
        )
    );
    assert_eq!(
        decoded_addresses(&index),
        decoded_addresses(&Index::build(test_settings(), after.clone()))
    );
    assert!(index.reset(after).is_empty(), "same set again");
}

// ---- pseudo-random sequences --------------------------------------------------------------------

/// splitmix64: small, fast and deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    /// True `percent`% of the time.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const NAMESPACES: &[&str] = &["a", "b"];
const PODS: &[&str] = &["p0", "p1", "p2"];
const SERVICES: &[&str] = &["s0", "s1"];
const SLICES: &[&str] = &["e0", "e1"];
const GATEWAYS: &[&str] = &["wp", "wp2"];
const NODES: &[&str] = &["n1", "n2"];
const IPS: &[&str] = &[
    "10.0.0.1",
    "10.0.0.2",
    "10.0.0.3",
    "10.0.0.4",
    "2001:db8::1",
];
const WAYPOINT_NAMES: &[&str] = &["wp", "wp2", "none", "missing"];

fn random_system_namespace(rng: &mut Rng) -> Object {
    let mut ns = namespace("istio-system");
    if let Some(net) = rng.pick(&[None, Some("net1"), Some("net2")]) {
        ns = ns.label(NETWORK, net);
    }
    ns.build()
}

fn random_namespace(rng: &mut Rng, name: &str) -> Object {
    let mut ns = namespace(name);
    if rng.chance(50) {
        ns = ns.label(USE_WAYPOINT, rng.pick(WAYPOINT_NAMES));
        if rng.chance(30) {
            ns = ns.label(USE_WAYPOINT_NAMESPACE, rng.pick(NAMESPACES));
        }
    }
    if rng.chance(40) {
        ns = ns.label(DATAPLANE_MODE, "ambient");
    }
    if rng.chance(40) {
        ns = ns.label("team", rng.pick(&["x", "y"]));
    }
    if rng.chance(30) {
        ns = ns.label(INGRESS_USE_WAYPOINT, rng.pick(&["true", "false"]));
    }
    if rng.chance(30) {
        ns = ns.annotation(
            TRAFFIC_DISTRIBUTION,
            rng.pick(&["PreferClose", "PreferSameNode", "Anywhere"]),
        );
    }
    ns.build()
}

fn random_node(rng: &mut Rng, name: &str) -> Object {
    let mut n = node(name);
    if rng.chance(70) {
        n = n.region(rng.pick(&["r1", "r2"]));
    }
    if rng.chance(70) {
        n = n.zone(rng.pick(&["z1", "z2"]));
    }
    n.build()
}

fn random_pod(rng: &mut Rng, ns: &str, name: &str) -> Object {
    let mut p = pod(ns, name);
    if rng.chance(85) {
        p = p.ip(rng.pick(IPS));
    }
    if rng.chance(5) {
        p = p.ip("not-an-ip");
    }
    if rng.chance(75) {
        p = p.ready();
    }
    p = p.phase(rng.pick(&["Running", "Running", "Running", "Pending", "Succeeded"]));
    if rng.chance(10) {
        p = p.deleting();
    }
    if rng.chance(20) {
        p = p.uid(&format!("uid-{ns}-{name}-recreated"));
    }
    if rng.chance(80) {
        p = p.label("app", rng.pick(&["x", "y"]));
    }
    if rng.chance(35) {
        p = p.label(USE_WAYPOINT, rng.pick(WAYPOINT_NAMES));
        if rng.chance(30) {
            p = p.label(USE_WAYPOINT_NAMESPACE, rng.pick(NAMESPACES));
        }
    }
    if rng.chance(15) {
        p = p.label(GATEWAY_NAME, rng.pick(GATEWAYS));
    }
    if rng.chance(20) {
        p = p.label(DATAPLANE_MODE, rng.pick(&["ambient", "none"]));
    }
    if rng.chance(10) {
        p = p.label(TUNNEL, "http");
    }
    if rng.chance(20) {
        p = p.annotation(REDIRECTION, "enabled");
    }
    if rng.chance(10) {
        p = p.host_network();
    }
    if rng.chance(70) {
        p = p.node(rng.pick(&["n1", "n2", "n3"]));
    }
    if rng.chance(50) {
        p = p.named_port("web", rng.pick(&[9000, 9001]));
    }
    if rng.chance(30) {
        p = p
            .generate_name("rs-")
            .owner("ReplicaSet", rng.pick(&["rs-abc", "rs-def"]));
    }
    p.sa(rng.pick(&["default", "sa"])).build()
}

fn random_service(rng: &mut Rng, ns: &str, name: &str) -> Object {
    let mut s = service(ns, name);
    match rng.below(10) {
        0 => s = s.headless(),
        1 => s = s.cluster_ip("10.96.0.999"),
        2 => {}
        _ => s = s.cluster_ip(rng.pick(&["10.96.0.1", "10.96.0.2"])),
    }
    if rng.chance(5) {
        s = s.external_name();
    }
    if rng.chance(70) {
        s = s.selector("app", rng.pick(&["x", "y"]));
    }
    s = s.port("http", 80, rng.pick(&[8080, 8081]));
    if rng.chance(50) {
        s = s.named_target("web", 81, "web");
    }
    if rng.chance(30) {
        s = s.label(USE_WAYPOINT, rng.pick(WAYPOINT_NAMES));
        if rng.chance(30) {
            s = s.label(USE_WAYPOINT_NAMESPACE, rng.pick(NAMESPACES));
        }
    }
    if rng.chance(10) {
        s = s.label(MANAGED, MANAGED_MESH);
    }
    if rng.chance(20) {
        s = s.label(INGRESS_USE_WAYPOINT, rng.pick(&["true", "false"]));
    }
    if rng.chance(20) {
        s = s.annotation(TRAFFIC_DISTRIBUTION, rng.pick(&["PreferSameZone", "bogus"]));
    }
    if rng.chance(10) {
        s = s.internal_local();
    }
    if rng.chance(10) {
        s = s.publish_not_ready();
    }
    if rng.chance(20) {
        s = s.ip_families(&["IPv4"]);
    }
    s.build()
}

fn random_slice(rng: &mut Rng, ns: &str, name: &str) -> Object {
    let mut e = endpoint_slice(ns, name);
    if rng.chance(85) {
        e = e.service(rng.pick(&["s0", "s1", "gone"]));
    }
    if rng.chance(10) {
        e = e.address_type("FQDN");
    }
    e = e.port("http", 8080);
    if rng.chance(40) {
        e = e.port("web", 9000);
    }
    for _ in 0..rng.below(4) {
        let addr = [rng.pick(IPS)];
        let ready = rng.chance(80);
        if rng.chance(60) {
            let pod_name = rng.pick(PODS);
            // Mostly the slice's own namespace; sometimes another one, or left empty.
            let pod_ns = rng.pick(&[ns, ns, ns, "a", "b"]);
            let uid = if rng.chance(80) {
                format!("uid-{pod_ns}-{pod_name}")
            } else {
                format!("uid-{pod_ns}-{pod_name}-recreated")
            };
            let ref_ns = if rng.chance(10) { "" } else { pod_ns };
            e = e.endpoint(&addr, ready, Some(pod_ref(ref_ns, pod_name, &uid)));
        } else {
            e = e.endpoint(&addr, ready, None);
        }
    }
    e.build()
}

fn random_gateway(rng: &mut Rng, ns: &str, name: &str) -> Object {
    let mut g = gateway(ns, name);
    if rng.chance(10) {
        g = g.class("other");
    }
    if rng.chance(80) {
        let allowed = match rng.below(3) {
            0 => AllowedRoutes::Same,
            1 => AllowedRoutes::All,
            _ => allowed_selector(&[("team", "x")]),
        };
        g = g.hbone_listener(allowed);
    }
    match rng.below(4) {
        0 => {}
        1 => g = g.status_ip("10.0.0.9"),
        2 => g = g.status_hostname(&format!("{name}.{ns}.svc.domain.suffix")),
        _ => {
            g = g
                .status_ip("10.0.0.9")
                .status_hostname(&format!("{name}.{ns}.svc.domain.suffix"))
        }
    }
    if rng.chance(60) {
        g = g.label(
            WAYPOINT_FOR,
            rng.pick(&["service", "workload", "all", "none"]),
        );
    }
    if rng.chance(20) {
        g = g.annotation(INBOUND_BINDING, rng.pick(&["PROXY/15088", "NONE"]));
    }
    g.build()
}

fn random_class(rng: &mut Rng) -> Object {
    let mut c = gateway_class("istio-waypoint");
    if rng.chance(50) {
        c = c.label(WAYPOINT_FOR, rng.pick(&["service", "workload", "all"]));
    }
    if rng.chance(30) {
        c = c.annotation(INBOUND_BINDING, "PROXY/15088");
    }
    c.build()
}

/// One random object of a random kind, from the small universe above.
fn random_object(rng: &mut Rng) -> Object {
    let ns = rng.pick(NAMESPACES);
    match rng.below(16) {
        0 => random_system_namespace(rng),
        1 | 2 => random_namespace(rng, ns),
        3 => {
            let name = rng.pick(NODES);
            random_node(rng, name)
        }
        4..=7 => {
            let name = rng.pick(PODS);
            random_pod(rng, ns, name)
        }
        8..=10 => {
            let name = rng.pick(SERVICES);
            random_service(rng, ns, name)
        }
        11 | 12 => {
            let name = rng.pick(SLICES);
            random_slice(rng, ns, name)
        }
        13 | 14 => {
            let name = rng.pick(GATEWAYS);
            random_gateway(rng, ns, name)
        }
        _ => random_class(rng),
    }
}

fn random_sequence(seed: u64, settings: Settings, steps: usize) {
    let mut rng = Rng(seed);
    let mut world = World::new(settings.clone(), vec![]);
    let mut shadow = Index::new(settings);
    for step in 0..steps {
        let obj = random_object(&mut rng);
        if rng.chance(25) {
            world.delete(&obj.object_ref());
        } else {
            world.apply(obj);
        }
        if step % 25 == 24 {
            // `reset` from the state of 25 steps ago reports exactly the difference.
            let before = snapshot(&shadow);
            let changes = shadow.reset(world.0.objects.values().cloned());
            assert_eq!(
                names(&changes.addresses),
                expected_changes(&before, &snapshot(&shadow)),
                "seed {seed} step {step}: reset changes"
            );
            assert_eq!(
                snapshot(&shadow),
                snapshot(&world.0.index),
                "seed {seed} step {step}: reset index"
            );
        }
    }
}

#[test]
fn random_sequences_match_a_fresh_build() {
    for seed in [1, 2, 3] {
        random_sequence(seed, test_settings(), 200);
    }
    for seed in [4, 5, 6] {
        random_sequence(
            seed,
            Settings {
                enrollment: Enrollment::Labels,
                ..test_settings()
            },
            200,
        );
    }
}
