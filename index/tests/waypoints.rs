//! Waypoint assignment (docs/reference/istiod.md#waypoints-which-gateways-count and after), following
//! istiod's `waypoints_test.go` and the waypoint scenarios of `ambientindex_test.go`
//! (`WaypointForWorkloadTraffic`, `ServiceAttachedWaypoints`, `WaypointConfiguredOnlyWhenReady`,
//! `UpdateWaypointForWorkload`).
//!
//! Table cases list their objects, every Address resource and every condition the index must hold;
//! each runs through `Index::build` and through one-by-one `Index::apply`, which must agree.

use ambient_index::model::well_known::*;
use ambient_index::model::{AllowedRoutes, Kind, Object, ObjectRef};
use ambient_index::testing::*;
use ambient_index::{Condition, Index, Settings};
use ambient_proto::workload::{
    Address, AppProtocol, GatewayAddress, NamespacedHostname, NetworkAddress, NetworkMode, Port,
    PortList, Service, TunnelProtocol, Workload, WorkloadStatus, WorkloadType, address,
    gateway_address,
};

#[derive(Default)]
struct Case {
    name: &'static str,
    /// `None`: istiod's unit-test environment (`test_settings()` plus the `istio-system` namespace on
    /// network `testnetwork`). `Some`: exactly these settings and no system namespace object.
    settings: Option<Settings>,
    objects: Vec<Object>,
    /// Every Address resource.
    want: Vec<address::Type>,
    /// Every condition the index reports.
    conditions: Vec<(ObjectRef, Condition)>,
}

fn resource_name(t: &address::Type) -> String {
    match t {
        address::Type::Workload(w) => w.uid.clone(),
        address::Type::Service(s) => format!("{}/{}", s.namespace, s.hostname),
    }
}

fn run(cases: Vec<Case>) {
    assert_build_and_apply(
        cases.into_iter().map(|case| TableCase {
            name: case.name,
            settings: case.settings,
            objects: case.objects,
            want: (
                case.want
                    .into_iter()
                    .map(|t| (resource_name(&t), Address { r#type: Some(t) }))
                    .collect(),
                case.conditions.into_iter().collect(),
            ),
        }),
        |index| (decoded_addresses(index), index.conditions().clone()),
    );
}

// ---- fixtures and expected values ---------------------------------------------------------------

/// A ready pod `<ns>/<name>` with label `app: app` and the given IP.
fn app_pod(namespace: &str, name: &str, addr: &str) -> PodBuilder {
    pod(namespace, name).ip(addr).ready().label("app", "app")
}

/// A Service `<ns>/<name>` selecting `app: app`, port `http` 80→8080.
fn app_service(namespace: &str, name: &str, vip: &str) -> ServiceBuilder {
    service(namespace, name)
        .cluster_ip(vip)
        .port("http", 80, 8080)
        .selector("app", "app")
}

fn host(namespace: &str, name: &str) -> String {
    format!("{name}.{namespace}.svc.domain.suffix")
}

/// The Workload of [`app_pod`], with the Services selecting it (each port 80→8080).
fn pod_wl(namespace: &str, name: &str, addr: &str, services: &[&str]) -> Workload {
    Workload {
        uid: format!("cluster0//Pod/{namespace}/{name}"),
        name: name.to_string(),
        namespace: namespace.to_string(),
        addresses: vec![ip(addr)],
        hostname: String::new(),
        network: "testnetwork".to_string(),
        tunnel_protocol: TunnelProtocol::None as i32,
        trust_domain: String::new(),
        service_account: String::new(),
        waypoint: None,
        network_gateway: None,
        node: String::new(),
        canonical_name: "app".to_string(),
        canonical_revision: "latest".to_string(),
        workload_type: WorkloadType::Pod as i32,
        workload_name: name.to_string(),
        native_tunnel: false,
        application_tunnel: None,
        services: services
            .iter()
            .map(|svc| {
                (
                    format!("{namespace}/{}", host(namespace, svc)),
                    PortList {
                        ports: vec![Port {
                            service_port: 80,
                            target_port: 8080,
                            app_protocol: 0,
                        }],
                    },
                )
            })
            .collect(),
        authorization_policies: Vec::new(),
        status: WorkloadStatus::Healthy as i32,
        cluster_id: "cluster0".to_string(),
        locality: None,
        network_mode: NetworkMode::Standard as i32,
        extensions: Vec::new(),
        capacity: None,
    }
}

/// The resource of [`app_service`].
fn svc_res(namespace: &str, name: &str, vip: &str) -> Service {
    Service {
        name: name.to_string(),
        namespace: namespace.to_string(),
        hostname: host(namespace, name),
        addresses: vec![NetworkAddress {
            network: "testnetwork".to_string(),
            address: ip(vip),
            length: None,
        }],
        ports: vec![Port {
            service_port: 80,
            target_port: 8080,
            app_protocol: AppProtocol::Http11 as i32,
        }],
        subject_alt_names: Vec::new(),
        waypoint: None,
        load_balancing: None,
        ip_families: 0,
        extensions: Vec::new(),
        canonical: true,
        ingress_use_waypoint: false,
        weighted_waypoints: Vec::new(),
        visibility: 0,
    }
}

fn w(workload: Workload) -> address::Type {
    address::Type::Workload(workload)
}

fn s(service: Service) -> address::Type {
    address::Type::Service(service)
}

/// Hostname form of a waypoint address: `<name>.<ns>.svc.domain.suffix`.
fn via_host(namespace: &str, name: &str) -> Option<GatewayAddress> {
    Some(GatewayAddress {
        destination: Some(gateway_address::Destination::Hostname(NamespacedHostname {
            namespace: namespace.to_string(),
            hostname: host(namespace, name),
        })),
        hbone_mtls_port: 15008,
    })
}

/// IP form of a waypoint address on the local network.
fn via_ip(addr: &str) -> Option<GatewayAddress> {
    Some(GatewayAddress {
        destination: Some(gateway_address::Destination::Address(NetworkAddress {
            network: "testnetwork".to_string(),
            address: ip(addr),
            length: None,
        })),
        hbone_mtls_port: 15008,
    })
}

/// A ready waypoint `<ns>/<name>`: HBONE listener with `allowed`, status hostname and IP.
fn wp(namespace: &str, name: &str, allowed: AllowedRoutes) -> GatewayBuilder {
    gateway(namespace, name)
        .hbone_listener(allowed)
        .status_hostname(&host(namespace, name))
        .status_ip("10.0.0.9")
}

fn pod_ref(namespace: &str, name: &str) -> ObjectRef {
    ObjectRef::new(Kind::Pod, namespace, name)
}

fn svc_ref(namespace: &str, name: &str) -> ObjectRef {
    ObjectRef::new(Kind::Service, namespace, name)
}

fn accepted(obj: ObjectRef, waypoint: &str) -> (ObjectRef, Condition) {
    (
        obj,
        Condition::new(
            "istio.io/WaypointBound",
            true,
            "WaypointAccepted",
            format!("Successfully attached to waypoint {waypoint}"),
        ),
    )
}

fn not_ready(obj: ObjectRef, waypoint: &str) -> (ObjectRef, Condition) {
    (
        obj,
        Condition::new(
            "istio.io/WaypointBound",
            false,
            "WaypointIsNotReady",
            format!("waypoint \"{waypoint}\" is not ready"),
        ),
    )
}

fn denied(obj: ObjectRef, waypoint: &str) -> (ObjectRef, Condition) {
    (
        obj,
        Condition::new(
            "istio.io/WaypointBound",
            false,
            "AttachmentDenied",
            format!(
                "we are not permitted to attach to waypoint \"{waypoint}\" (missing allowedRoutes?)"
            ),
        ),
    )
}

fn unsupported(obj: ObjectRef, kind: &str, waypoint: &str) -> (ObjectRef, Condition) {
    (
        obj,
        Condition::new(
            "istio.io/WaypointBound",
            false,
            "UnsupportedTrafficType",
            format!(
                "attempting to bind to traffic type \"{kind}\" which the waypoint \"{waypoint}\" does not support"
            ),
        ),
    )
}

// ---- cases --------------------------------------------------------------------------------------

#[test]
fn waypoint_address() {
    run(vec![
        Case {
            name: "hostname address preferred over IP",
            objects: vec![
                gateway("ns", "wp")
                    .hbone_listener(AllowedRoutes::Same)
                    .status_ip("10.0.0.9")
                    .status_hostname(&host("ns", "wp"))
                    .build(),
                app_service("ns", "svc", "10.0.0.1")
                    .label(USE_WAYPOINT, "wp")
                    .build(),
            ],
            want: vec![s(Service {
                waypoint: via_host("ns", "wp"),
                ..svc_res("ns", "svc", "10.0.0.1")
            })],
            conditions: vec![accepted(svc_ref("ns", "svc"), "ns/wp")],
            ..Default::default()
        },
        Case {
            name: "IP-only status gives an IP address on the local network",
            objects: vec![
                gateway("ns", "wp")
                    .hbone_listener(AllowedRoutes::Same)
                    .status_ip("10.0.0.9")
                    .build(),
                app_service("ns", "svc", "10.0.0.1")
                    .label(USE_WAYPOINT, "wp")
                    .build(),
            ],
            want: vec![s(Service {
                waypoint: via_ip("10.0.0.9"),
                ..svc_res("ns", "svc", "10.0.0.1")
            })],
            conditions: vec![accepted(svc_ref("ns", "svc"), "ns/wp")],
            ..Default::default()
        },
        Case {
            name: "the first valid IP is used",
            objects: vec![
                gateway("ns", "wp")
                    .hbone_listener(AllowedRoutes::Same)
                    .status_ip("not-an-ip")
                    .status_ip("10.0.0.9")
                    .status_ip("10.0.0.10")
                    .build(),
                app_service("ns", "svc", "10.0.0.1")
                    .label(USE_WAYPOINT, "wp")
                    .build(),
            ],
            want: vec![s(Service {
                waypoint: via_ip("10.0.0.9"),
                ..svc_res("ns", "svc", "10.0.0.1")
            })],
            conditions: vec![accepted(svc_ref("ns", "svc"), "ns/wp")],
            ..Default::default()
        },
        Case {
            name: "defaults: IP address on the empty network",
            settings: Some(Settings::default()),
            objects: vec![
                gateway("ns", "wp")
                    .hbone_listener(AllowedRoutes::Same)
                    .status_ip("10.0.0.9")
                    .build(),
                app_service("ns", "svc", "10.0.0.1")
                    .label(USE_WAYPOINT, "wp")
                    .build(),
            ],
            want: vec![s(Service {
                hostname: "svc.ns.svc.cluster.local".to_string(),
                addresses: vec![NetworkAddress {
                    network: String::new(),
                    address: ip("10.0.0.1"),
                    length: None,
                }],
                waypoint: Some(GatewayAddress {
                    destination: Some(gateway_address::Destination::Address(NetworkAddress {
                        network: String::new(),
                        address: ip("10.0.0.9"),
                        length: None,
                    })),
                    hbone_mtls_port: 15008,
                }),
                ..svc_res("ns", "svc", "10.0.0.1")
            })],
            conditions: vec![accepted(svc_ref("ns", "svc"), "ns/wp")],
        },
        Case {
            name: "gateway without status addresses is not a waypoint",
            objects: vec![
                gateway("ns", "wp")
                    .hbone_listener(AllowedRoutes::Same)
                    .build(),
                app_service("ns", "svc", "10.0.0.1")
                    .label(USE_WAYPOINT, "wp")
                    .build(),
            ],
            want: vec![s(svc_res("ns", "svc", "10.0.0.1"))],
            conditions: vec![not_ready(svc_ref("ns", "svc"), "ns/wp")],
            ..Default::default()
        },
        Case {
            name: "the class is not checked",
            objects: vec![
                wp("ns", "wp", AllowedRoutes::Same)
                    .class("some-other-class")
                    .build(),
                app_service("ns", "svc", "10.0.0.1")
                    .label(USE_WAYPOINT, "wp")
                    .build(),
            ],
            want: vec![s(Service {
                waypoint: via_host("ns", "wp"),
                ..svc_res("ns", "svc", "10.0.0.1")
            })],
            conditions: vec![accepted(svc_ref("ns", "svc"), "ns/wp")],
            ..Default::default()
        },
        Case {
            name: "service attached waypoint with a custom domain",
            settings: Some(Settings {
                domain_suffix: "company.com".to_string(),
                ..test_settings()
            }),
            objects: vec![
                test_system_namespace(),
                waypoint("ns1", "test-wp", "company.com", "10.0.0.9").build(),
                service("ns1", "svc1")
                    .cluster_ip("10.0.0.1")
                    .port("http", 80, 8080)
                    .label(USE_WAYPOINT, "test-wp")
                    .build(),
            ],
            want: vec![s(Service {
                name: "svc1".to_string(),
                namespace: "ns1".to_string(),
                hostname: "svc1.ns1.svc.company.com".to_string(),
                waypoint: Some(GatewayAddress {
                    destination: Some(gateway_address::Destination::Hostname(NamespacedHostname {
                        namespace: "ns1".to_string(),
                        hostname: "test-wp.ns1.svc.company.com".to_string(),
                    })),
                    hbone_mtls_port: 15008,
                }),
                ..svc_res("ns1", "svc1", "10.0.0.1")
            })],
            conditions: vec![accepted(svc_ref("ns1", "svc1"), "ns1/test-wp")],
        },
    ]);
}

#[test]
fn traffic_type() {
    let pod = || app_pod("ns", "pod", "10.1.0.1");
    let svc = || app_service("ns", "svc", "10.0.0.1");
    run(vec![
        Case {
            name: "default is service: pod label refused, service label bound",
            objects: vec![
                wp("ns", "wp", AllowedRoutes::Same).build(),
                pod().label(USE_WAYPOINT, "wp").build(),
                svc().label(USE_WAYPOINT, "wp").build(),
            ],
            want: vec![
                w(pod_wl("ns", "pod", "10.1.0.1", &["svc"])),
                s(Service {
                    waypoint: via_host("ns", "wp"),
                    ..svc_res("ns", "svc", "10.0.0.1")
                }),
            ],
            conditions: vec![
                unsupported(pod_ref("ns", "pod"), "workload", "ns/wp"),
                accepted(svc_ref("ns", "svc"), "ns/wp"),
            ],
            ..Default::default()
        },
        Case {
            name: "waypoint-for workload: pod bound, service refused",
            objects: vec![
                wp("ns", "wp", AllowedRoutes::Same)
                    .label(WAYPOINT_FOR, "workload")
                    .build(),
                pod().label(USE_WAYPOINT, "wp").build(),
                svc().label(USE_WAYPOINT, "wp").build(),
            ],
            want: vec![
                w(Workload {
                    waypoint: via_host("ns", "wp"),
                    ..pod_wl("ns", "pod", "10.1.0.1", &["svc"])
                }),
                s(svc_res("ns", "svc", "10.0.0.1")),
            ],
            conditions: vec![unsupported(svc_ref("ns", "svc"), "service", "ns/wp")],
            ..Default::default()
        },
        Case {
            name: "waypoint-for all: both bound",
            objects: vec![
                wp("ns", "wp", AllowedRoutes::Same)
                    .label(WAYPOINT_FOR, "all")
                    .build(),
                pod().label(USE_WAYPOINT, "wp").build(),
                svc().label(USE_WAYPOINT, "wp").build(),
            ],
            want: vec![
                w(Workload {
                    waypoint: via_host("ns", "wp"),
                    ..pod_wl("ns", "pod", "10.1.0.1", &["svc"])
                }),
                s(Service {
                    waypoint: via_host("ns", "wp"),
                    ..svc_res("ns", "svc", "10.0.0.1")
                }),
            ],
            conditions: vec![accepted(svc_ref("ns", "svc"), "ns/wp")],
            ..Default::default()
        },
        Case {
            name: "waypoint-for none: both refused",
            objects: vec![
                wp("ns", "wp", AllowedRoutes::Same)
                    .label(WAYPOINT_FOR, "none")
                    .build(),
                pod().label(USE_WAYPOINT, "wp").build(),
                svc().label(USE_WAYPOINT, "wp").build(),
            ],
            want: vec![
                w(pod_wl("ns", "pod", "10.1.0.1", &["svc"])),
                s(svc_res("ns", "svc", "10.0.0.1")),
            ],
            conditions: vec![
                unsupported(pod_ref("ns", "pod"), "workload", "ns/wp"),
                unsupported(svc_ref("ns", "svc"), "service", "ns/wp"),
            ],
            ..Default::default()
        },
        Case {
            name: "unknown waypoint-for acts like none",
            objects: vec![
                wp("ns", "wp", AllowedRoutes::Same)
                    .label(WAYPOINT_FOR, "everything")
                    .build(),
                pod().label(USE_WAYPOINT, "wp").build(),
                svc().label(USE_WAYPOINT, "wp").build(),
            ],
            want: vec![
                w(pod_wl("ns", "pod", "10.1.0.1", &["svc"])),
                s(svc_res("ns", "svc", "10.0.0.1")),
            ],
            conditions: vec![
                unsupported(pod_ref("ns", "pod"), "workload", "ns/wp"),
                unsupported(svc_ref("ns", "svc"), "service", "ns/wp"),
            ],
            ..Default::default()
        },
        Case {
            name: "GatewayClass label applies when the Gateway has none",
            objects: vec![
                gateway_class("istio-waypoint")
                    .label(WAYPOINT_FOR, "workload")
                    .build(),
                wp("ns", "wp", AllowedRoutes::Same).build(),
                pod().label(USE_WAYPOINT, "wp").build(),
                svc().label(USE_WAYPOINT, "wp").build(),
            ],
            want: vec![
                w(Workload {
                    waypoint: via_host("ns", "wp"),
                    ..pod_wl("ns", "pod", "10.1.0.1", &["svc"])
                }),
                s(svc_res("ns", "svc", "10.0.0.1")),
            ],
            conditions: vec![unsupported(svc_ref("ns", "svc"), "service", "ns/wp")],
            ..Default::default()
        },
        Case {
            name: "waypoint-for on the Gateway overrides the GatewayClass",
            objects: vec![
                gateway_class("istio-waypoint")
                    .label(WAYPOINT_FOR, "workload")
                    .build(),
                wp("ns", "wp", AllowedRoutes::Same)
                    .label(WAYPOINT_FOR, "service")
                    .build(),
                pod().label(USE_WAYPOINT, "wp").build(),
                svc().label(USE_WAYPOINT, "wp").build(),
            ],
            want: vec![
                w(pod_wl("ns", "pod", "10.1.0.1", &["svc"])),
                s(Service {
                    waypoint: via_host("ns", "wp"),
                    ..svc_res("ns", "svc", "10.0.0.1")
                }),
            ],
            conditions: vec![
                unsupported(pod_ref("ns", "pod"), "workload", "ns/wp"),
                accepted(svc_ref("ns", "svc"), "ns/wp"),
            ],
            ..Default::default()
        },
        Case {
            name: "the class label of another class does not apply",
            objects: vec![
                gateway_class("other")
                    .label(WAYPOINT_FOR, "workload")
                    .build(),
                wp("ns", "wp", AllowedRoutes::Same).build(),
                pod().label(USE_WAYPOINT, "wp").build(),
            ],
            want: vec![w(pod_wl("ns", "pod", "10.1.0.1", &[]))],
            conditions: vec![unsupported(pod_ref("ns", "pod"), "workload", "ns/wp")],
            ..Default::default()
        },
    ]);
}

#[test]
fn namespace_waypoints() {
    let pod = || app_pod("ns", "pod", "10.1.0.1");
    let svc = || app_service("ns", "svc", "10.0.0.1");
    let ns = || namespace("ns").label(USE_WAYPOINT, "wp");
    run(vec![
        Case {
            name: "namespace label with a service waypoint: service bound, pods silently none",
            objects: vec![
                ns().build(),
                wp("ns", "wp", AllowedRoutes::Same).build(),
                pod().build(),
                svc().build(),
            ],
            want: vec![
                w(pod_wl("ns", "pod", "10.1.0.1", &["svc"])),
                s(Service {
                    waypoint: via_host("ns", "wp"),
                    ..svc_res("ns", "svc", "10.0.0.1")
                }),
            ],
            conditions: vec![accepted(svc_ref("ns", "svc"), "ns/wp")],
            ..Default::default()
        },
        Case {
            name: "namespace label with an all waypoint: both bound",
            objects: vec![
                ns().build(),
                wp("ns", "wp", AllowedRoutes::Same)
                    .label(WAYPOINT_FOR, "all")
                    .build(),
                pod().build(),
                svc().build(),
            ],
            want: vec![
                w(Workload {
                    waypoint: via_host("ns", "wp"),
                    ..pod_wl("ns", "pod", "10.1.0.1", &["svc"])
                }),
                s(Service {
                    waypoint: via_host("ns", "wp"),
                    ..svc_res("ns", "svc", "10.0.0.1")
                }),
            ],
            conditions: vec![accepted(svc_ref("ns", "svc"), "ns/wp")],
            ..Default::default()
        },
        Case {
            name: "namespace label with a workload waypoint: pod bound, service refused",
            objects: vec![
                ns().build(),
                wp("ns", "wp", AllowedRoutes::Same)
                    .label(WAYPOINT_FOR, "workload")
                    .build(),
                pod().build(),
                svc().build(),
            ],
            want: vec![
                w(Workload {
                    waypoint: via_host("ns", "wp"),
                    ..pod_wl("ns", "pod", "10.1.0.1", &["svc"])
                }),
                s(svc_res("ns", "svc", "10.0.0.1")),
            ],
            conditions: vec![unsupported(svc_ref("ns", "svc"), "service", "ns/wp")],
            ..Default::default()
        },
        Case {
            name: "pod and service label none opt out of the namespace waypoint",
            objects: vec![
                ns().build(),
                wp("ns", "wp", AllowedRoutes::Same)
                    .label(WAYPOINT_FOR, "all")
                    .build(),
                pod().label(USE_WAYPOINT, "none").build(),
                svc().label(USE_WAYPOINT, "none").build(),
            ],
            want: vec![
                w(pod_wl("ns", "pod", "10.1.0.1", &["svc"])),
                s(svc_res("ns", "svc", "10.0.0.1")),
            ],
            ..Default::default()
        },
        Case {
            name: "namespace label none",
            objects: vec![
                namespace("ns").label(USE_WAYPOINT, "none").build(),
                wp("ns", "wp", AllowedRoutes::Same)
                    .label(WAYPOINT_FOR, "all")
                    .build(),
                pod().build(),
                svc().build(),
            ],
            want: vec![
                w(pod_wl("ns", "pod", "10.1.0.1", &["svc"])),
                s(svc_res("ns", "svc", "10.0.0.1")),
            ],
            ..Default::default()
        },
        Case {
            name: "own label overrides the namespace label",
            objects: vec![
                ns().build(),
                wp("ns", "wp", AllowedRoutes::Same)
                    .label(WAYPOINT_FOR, "all")
                    .build(),
                wp("ns", "wp2", AllowedRoutes::Same)
                    .label(WAYPOINT_FOR, "all")
                    .build(),
                pod().label(USE_WAYPOINT, "wp2").build(),
                svc().label(USE_WAYPOINT, "wp2").build(),
            ],
            want: vec![
                w(Workload {
                    waypoint: via_host("ns", "wp2"),
                    ..pod_wl("ns", "pod", "10.1.0.1", &["svc"])
                }),
                s(Service {
                    waypoint: via_host("ns", "wp2"),
                    ..svc_res("ns", "svc", "10.0.0.1")
                }),
            ],
            conditions: vec![accepted(svc_ref("ns", "svc"), "ns/wp2")],
            ..Default::default()
        },
        Case {
            name: "missing named waypoint: no fallback to the namespace waypoint",
            objects: vec![
                ns().build(),
                wp("ns", "wp", AllowedRoutes::Same)
                    .label(WAYPOINT_FOR, "all")
                    .build(),
                pod().label(USE_WAYPOINT, "missing").build(),
                svc().label(USE_WAYPOINT, "missing").build(),
            ],
            want: vec![
                w(pod_wl("ns", "pod", "10.1.0.1", &["svc"])),
                s(svc_res("ns", "svc", "10.0.0.1")),
            ],
            conditions: vec![
                not_ready(pod_ref("ns", "pod"), "ns/missing"),
                not_ready(svc_ref("ns", "svc"), "ns/missing"),
            ],
            ..Default::default()
        },
        Case {
            name: "use-waypoint ~ behaves like an opt-out",
            objects: vec![
                ns().build(),
                wp("ns", "wp", AllowedRoutes::Same)
                    .label(WAYPOINT_FOR, "all")
                    .build(),
                pod().label(USE_WAYPOINT, "~").build(),
            ],
            want: vec![w(pod_wl("ns", "pod", "10.1.0.1", &[]))],
            conditions: vec![not_ready(pod_ref("ns", "pod"), "ns/~")],
            ..Default::default()
        },
        Case {
            name: "namespace waypoint missing",
            objects: vec![ns().build(), pod().build(), svc().build()],
            want: vec![
                w(pod_wl("ns", "pod", "10.1.0.1", &["svc"])),
                s(svc_res("ns", "svc", "10.0.0.1")),
            ],
            conditions: vec![
                not_ready(pod_ref("ns", "pod"), "ns/wp"),
                not_ready(svc_ref("ns", "svc"), "ns/wp"),
            ],
            ..Default::default()
        },
        Case {
            name: "managed mesh Service never gets a waypoint",
            objects: vec![
                ns().build(),
                wp("ns", "wp", AllowedRoutes::Same)
                    .label(WAYPOINT_FOR, "all")
                    .build(),
                service("ns", "wp")
                    .cluster_ip("10.0.0.9")
                    .port("mesh", 15008, 15008)
                    .selector(GATEWAY_NAME, "wp")
                    .label(MANAGED, MANAGED_MESH)
                    .label(USE_WAYPOINT, "wp")
                    .build(),
            ],
            want: vec![s(Service {
                name: "wp".to_string(),
                hostname: host("ns", "wp"),
                addresses: vec![NetworkAddress {
                    network: "testnetwork".to_string(),
                    address: ip("10.0.0.9"),
                    length: None,
                }],
                ports: vec![Port {
                    service_port: 15008,
                    target_port: 15008,
                    app_protocol: AppProtocol::Unknown as i32,
                }],
                ..svc_res("ns", "svc", "10.0.0.1")
            })],
            ..Default::default()
        },
        Case {
            name: "managed east-west Service never gets a waypoint",
            objects: vec![
                ns().build(),
                wp("ns", "wp", AllowedRoutes::Same).build(),
                svc().label(MANAGED, MANAGED_EAST_WEST).build(),
            ],
            want: vec![s(svc_res("ns", "svc", "10.0.0.1"))],
            ..Default::default()
        },
    ]);
}

#[test]
fn cross_namespace() {
    let pod = || app_pod("ns", "pod", "10.1.0.1");
    let svc = || app_service("ns", "svc", "10.0.0.1");
    let bound_svc = || {
        s(Service {
            waypoint: via_host("wpns", "wp"),
            ..svc_res("ns", "svc", "10.0.0.1")
        })
    };
    run(vec![
        Case {
            name: "allowedRoutes All: bound",
            objects: vec![
                wp("wpns", "wp", AllowedRoutes::All).build(),
                svc()
                    .label(USE_WAYPOINT, "wp")
                    .label(USE_WAYPOINT_NAMESPACE, "wpns")
                    .build(),
            ],
            want: vec![bound_svc()],
            conditions: vec![accepted(svc_ref("ns", "svc"), "wpns/wp")],
            ..Default::default()
        },
        Case {
            name: "allowedRoutes Same: denied",
            objects: vec![
                wp("wpns", "wp", AllowedRoutes::Same).build(),
                svc()
                    .label(USE_WAYPOINT, "wp")
                    .label(USE_WAYPOINT_NAMESPACE, "wpns")
                    .build(),
            ],
            want: vec![s(svc_res("ns", "svc", "10.0.0.1"))],
            conditions: vec![denied(svc_ref("ns", "svc"), "wpns/wp")],
            ..Default::default()
        },
        Case {
            name: "no HBONE listener means Same",
            objects: vec![
                gateway("wpns", "wp")
                    .listener("http", 80, "HTTP", AllowedRoutes::All)
                    .status_hostname(&host("wpns", "wp"))
                    .build(),
                svc()
                    .label(USE_WAYPOINT, "wp")
                    .label(USE_WAYPOINT_NAMESPACE, "wpns")
                    .build(),
            ],
            want: vec![s(svc_res("ns", "svc", "10.0.0.1"))],
            conditions: vec![denied(svc_ref("ns", "svc"), "wpns/wp")],
            ..Default::default()
        },
        Case {
            name: "allowedRoutes Selector matching the namespace labels: bound",
            objects: vec![
                namespace("ns").label("team", "a").build(),
                wp("wpns", "wp", allowed_selector(&[("team", "a")])).build(),
                svc()
                    .label(USE_WAYPOINT, "wp")
                    .label(USE_WAYPOINT_NAMESPACE, "wpns")
                    .build(),
            ],
            want: vec![bound_svc()],
            conditions: vec![accepted(svc_ref("ns", "svc"), "wpns/wp")],
            ..Default::default()
        },
        Case {
            name: "allowedRoutes Selector not matching: denied",
            objects: vec![
                namespace("ns").label("team", "b").build(),
                wp("wpns", "wp", allowed_selector(&[("team", "a")])).build(),
                svc()
                    .label(USE_WAYPOINT, "wp")
                    .label(USE_WAYPOINT_NAMESPACE, "wpns")
                    .build(),
            ],
            want: vec![s(svc_res("ns", "svc", "10.0.0.1"))],
            conditions: vec![denied(svc_ref("ns", "svc"), "wpns/wp")],
            ..Default::default()
        },
        Case {
            name: "allowedRoutes Selector on the metadata.name label",
            objects: vec![
                namespace("ns").build(),
                wp(
                    "wpns",
                    "wp",
                    allowed_selector(&[("kubernetes.io/metadata.name", "ns")]),
                )
                .label(WAYPOINT_FOR, "all")
                .build(),
                pod()
                    .label(USE_WAYPOINT, "wp")
                    .label(USE_WAYPOINT_NAMESPACE, "wpns")
                    .build(),
            ],
            want: vec![w(Workload {
                waypoint: via_host("wpns", "wp"),
                ..pod_wl("ns", "pod", "10.1.0.1", &[])
            })],
            ..Default::default()
        },
        Case {
            name: "namespace-level cross-namespace waypoint",
            objects: vec![
                namespace("ns")
                    .label(USE_WAYPOINT, "wp")
                    .label(USE_WAYPOINT_NAMESPACE, "wpns")
                    .build(),
                wp("wpns", "wp", AllowedRoutes::All).build(),
                svc().build(),
                pod().build(),
            ],
            want: vec![bound_svc(), w(pod_wl("ns", "pod", "10.1.0.1", &["svc"]))],
            conditions: vec![accepted(svc_ref("ns", "svc"), "wpns/wp")],
            ..Default::default()
        },
        Case {
            name: "use-waypoint-namespace on the namespace does not apply to a pod's own label",
            objects: vec![
                namespace("ns")
                    .label(USE_WAYPOINT_NAMESPACE, "wpns")
                    .build(),
                wp("wpns", "wp", AllowedRoutes::All)
                    .label(WAYPOINT_FOR, "all")
                    .build(),
                pod().label(USE_WAYPOINT, "wp").build(),
            ],
            want: vec![w(pod_wl("ns", "pod", "10.1.0.1", &[]))],
            conditions: vec![not_ready(pod_ref("ns", "pod"), "ns/wp")],
            ..Default::default()
        },
        Case {
            name: "use-waypoint-namespace alone is ignored",
            objects: vec![
                wp("wpns", "wp", AllowedRoutes::All)
                    .label(WAYPOINT_FOR, "all")
                    .build(),
                pod().label(USE_WAYPOINT_NAMESPACE, "wpns").build(),
            ],
            want: vec![w(pod_wl("ns", "pod", "10.1.0.1", &[]))],
            ..Default::default()
        },
        Case {
            name: "denied attachment is reported before the traffic type",
            objects: vec![
                namespace("ns")
                    .label(USE_WAYPOINT, "wp")
                    .label(USE_WAYPOINT_NAMESPACE, "wpns")
                    .build(),
                wp("wpns", "wp", AllowedRoutes::Same).build(),
                pod().build(),
            ],
            want: vec![w(pod_wl("ns", "pod", "10.1.0.1", &[]))],
            conditions: vec![denied(pod_ref("ns", "pod"), "wpns/wp")],
            ..Default::default()
        },
    ]);
}

/// `TestAmbientIndex_WaypointForWorkloadTraffic`: labelling a pod or a Service with `use-waypoint`
/// changes (pushes) the target only when the waypoint accepts that traffic type.
#[test]
fn waypoint_for_workload_traffic() {
    let cases = [
        ("service", false, true),
        ("all", true, true),
        ("workload", true, false),
        ("none", false, false),
    ];
    for (traffic, pod_bound, svc_bound) in cases {
        let mut index = Index::build(
            test_settings(),
            [
                test_system_namespace(),
                wp("ns", "wp", AllowedRoutes::Same)
                    .label(WAYPOINT_FOR, traffic)
                    .build(),
                app_pod("ns", "pod", "10.1.0.1").build(),
                service("ns", "svc")
                    .cluster_ip("10.0.0.1")
                    .port("http", 80, 8080)
                    .build(),
            ],
        );

        let changes = index.apply(
            app_pod("ns", "pod", "10.1.0.1")
                .label(USE_WAYPOINT, "wp")
                .build(),
        );
        let want: Vec<String> = if pod_bound {
            vec!["cluster0//Pod/ns/pod".to_string()]
        } else {
            vec![]
        };
        assert_eq!(names(&changes.addresses), (want, vec![]), "{traffic}: pod");
        assert_eq!(
            workload(&index, "cluster0//Pod/ns/pod").and_then(|w| w.waypoint),
            if pod_bound {
                via_host("ns", "wp")
            } else {
                None
            },
            "{traffic}: pod waypoint"
        );

        let changes = index.apply(
            service("ns", "svc")
                .cluster_ip("10.0.0.1")
                .port("http", 80, 8080)
                .label(USE_WAYPOINT, "wp")
                .build(),
        );
        let want: Vec<String> = if svc_bound {
            vec!["ns/svc.ns.svc.domain.suffix".to_string()]
        } else {
            vec![]
        };
        assert_eq!(
            names(&changes.addresses),
            (want, vec![]),
            "{traffic}: service"
        );
        assert_eq!(
            service_resource(&index, "ns/svc.ns.svc.domain.suffix").and_then(|s| s.waypoint),
            if svc_bound {
                via_host("ns", "wp")
            } else {
                None
            },
            "{traffic}: service waypoint"
        );
    }
}

/// `TestUpdateWaypointForWorkload`: namespace label → pod label overrides → pod label removed
/// (inherit again) → `none` opts out → `~` (missing) gives no waypoint and no event.
#[test]
fn update_waypoint_for_workload() {
    const UID: &str = "cluster0//Pod/ns/pod";
    let pod = || app_pod("ns", "pod", "10.1.0.1");
    let mut index = Index::build(
        test_settings(),
        [
            test_system_namespace(),
            namespace("ns").build(),
            wp("ns", "wp", AllowedRoutes::Same)
                .label(WAYPOINT_FOR, "workload")
                .build(),
            wp("ns", "wp2", AllowedRoutes::Same)
                .label(WAYPOINT_FOR, "workload")
                .build(),
            pod().build(),
        ],
    );
    let waypoint_of = |index: &Index| workload(index, UID).and_then(|w| w.waypoint);
    let only_pod = (vec![UID.to_string()], vec![]);
    let nothing: (Vec<String>, Vec<String>) = (vec![], vec![]);

    let c = index.apply(namespace("ns").label(USE_WAYPOINT, "wp").build());
    assert_eq!(names(&c.addresses), only_pod, "namespace label");
    assert_eq!(waypoint_of(&index), via_host("ns", "wp"));

    let c = index.apply(pod().label(USE_WAYPOINT, "wp2").build());
    assert_eq!(names(&c.addresses), only_pod, "pod label overrides");
    assert_eq!(waypoint_of(&index), via_host("ns", "wp2"));

    let c = index.apply(pod().build());
    assert_eq!(names(&c.addresses), only_pod, "pod label removed");
    assert_eq!(waypoint_of(&index), via_host("ns", "wp"));

    let c = index.apply(pod().label(USE_WAYPOINT, "none").build());
    assert_eq!(names(&c.addresses), only_pod, "pod opts out");
    assert_eq!(waypoint_of(&index), None);

    let c = index.apply(pod().label(USE_WAYPOINT, "~").build());
    assert_eq!(names(&c.addresses), nothing, "missing waypoint: no event");
    assert_eq!(waypoint_of(&index), None);
    assert_eq!(
        index.conditions().get(&pod_ref("ns", "pod")),
        Some(&not_ready(pod_ref("ns", "pod"), "ns/~").1)
    );
}

/// `TestAmbientIndex_WaypointConfiguredOnlyWhenReady`: a Gateway without status addresses is ignored
/// until it reports one.
#[test]
fn waypoint_configured_only_when_ready() {
    const SVC: &str = "ns/svc.ns.svc.domain.suffix";
    let mut index = Index::build(
        test_settings(),
        [
            test_system_namespace(),
            namespace("ns").label(USE_WAYPOINT, "wp").build(),
            app_pod("ns", "pod", "10.1.0.1").build(),
            app_service("ns", "svc", "10.0.0.1").build(),
        ],
    );
    assert_eq!(
        index.conditions().get(&svc_ref("ns", "svc")),
        Some(&not_ready(svc_ref("ns", "svc"), "ns/wp").1)
    );

    let c = index.apply(
        gateway("ns", "wp")
            .hbone_listener(AllowedRoutes::Same)
            .build(),
    );
    assert_eq!(names(&c.addresses), (vec![], vec![]), "not ready yet");
    assert_eq!(service_resource(&index, SVC).and_then(|s| s.waypoint), None);

    let c = index.apply(wp("ns", "wp", AllowedRoutes::Same).build());
    assert_eq!(
        names(&c.addresses),
        (vec![SVC.to_string()], vec![]),
        "ready: the Service binds, the pod (service waypoint) does not"
    );
    assert_eq!(
        service_resource(&index, SVC).and_then(|s| s.waypoint),
        via_host("ns", "wp")
    );
    assert_eq!(
        index.conditions().get(&svc_ref("ns", "svc")),
        Some(&accepted(svc_ref("ns", "svc"), "ns/wp").1)
    );
}

/// A `Selector` listener as parsed from a Gateway: no selector selects no namespace, an empty one
/// selects every namespace (Kubernetes' `LabelSelectorAsSelector`, as istiod's
/// `makeWaypointSelector` uses it).
#[test]
fn parsed_selector_listener() {
    let gateway_with = |selector: Option<serde_json::Value>| {
        let mut namespaces = serde_json::json!({ "from": "Selector" });
        if let Some(selector) = selector {
            namespaces["selector"] = selector;
        }
        let value = serde_json::json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": { "name": "wp", "namespace": "wpns" },
            "spec": {
                "gatewayClassName": "istio-waypoint",
                "listeners": [{
                    "name": "mesh",
                    "port": 15008,
                    "protocol": "HBONE",
                    "allowedRoutes": { "namespaces": namespaces },
                }],
            },
            "status": {
                "addresses": [{ "type": "Hostname", "value": "wp.wpns.svc.domain.suffix" }],
            },
        });
        match Object::from_value(value) {
            Ok(Some(obj)) => obj,
            other => panic!("gateway fixture does not parse: {other:?}"),
        }
    };
    let svc = || {
        app_service("ns", "svc", "10.0.0.1")
            .label(USE_WAYPOINT, "wp")
            .label(USE_WAYPOINT_NAMESPACE, "wpns")
            .build()
    };
    let bound = || {
        s(Service {
            waypoint: via_host("wpns", "wp"),
            ..svc_res("ns", "svc", "10.0.0.1")
        })
    };
    run(vec![
        Case {
            name: "Selector without a selector: denied",
            objects: vec![
                namespace("ns").label("team", "x").build(),
                gateway_with(None),
                svc(),
            ],
            want: vec![s(svc_res("ns", "svc", "10.0.0.1"))],
            conditions: vec![denied(svc_ref("ns", "svc"), "wpns/wp")],
            ..Default::default()
        },
        Case {
            name: "Selector with an empty selector: every namespace",
            objects: vec![
                namespace("ns").build(),
                gateway_with(Some(serde_json::json!({}))),
                svc(),
            ],
            want: vec![bound()],
            conditions: vec![accepted(svc_ref("ns", "svc"), "wpns/wp")],
            ..Default::default()
        },
        Case {
            name: "Selector with matchLabels",
            objects: vec![
                namespace("ns").label("team", "x").build(),
                gateway_with(Some(serde_json::json!({ "matchLabels": { "team": "x" } }))),
                svc(),
            ],
            want: vec![bound()],
            conditions: vec![accepted(svc_ref("ns", "svc"), "wpns/wp")],
            ..Default::default()
        },
        Case {
            name: "Selector with matchExpressions",
            objects: vec![
                namespace("ns").label("team", "x").build(),
                gateway_with(Some(serde_json::json!({
                    "matchExpressions": [{ "key": "team", "operator": "NotIn", "values": ["x"] }],
                }))),
                svc(),
            ],
            want: vec![s(svc_res("ns", "svc", "10.0.0.1"))],
            conditions: vec![denied(svc_ref("ns", "svc"), "wpns/wp")],
            ..Default::default()
        },
    ]);
}
