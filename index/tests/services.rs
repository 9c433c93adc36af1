//! Kubernetes Service → `istio.workload.Service` (docs/reference/istiod.md#services), following istiod's
//! `TestServiceServices`.
//!
//! Every case lists its objects, the complete set of Service resources and the complete set of
//! conditions the index must hold; each case runs through `Index::build` and through one-by-one
//! `Index::apply`, which must agree.

use ambient_index::model::well_known::*;
use ambient_index::model::{Kind, Object, ObjectRef};
use ambient_index::testing::*;
use ambient_index::{Condition, Settings};
use ambient_proto::workload::{
    AppProtocol, GatewayAddress, IpFamilies, LoadBalancing, NamespacedHostname, NetworkAddress,
    Port, Service, gateway_address,
    load_balancing::{HealthPolicy, Mode, Scope},
};

#[derive(Default)]
struct Case {
    name: &'static str,
    /// `None`: istiod's unit-test environment (`test_settings()` plus the `istio-system` namespace on
    /// network `testnetwork`). `Some`: exactly these settings and no system namespace object.
    settings: Option<Settings>,
    objects: Vec<Object>,
    /// Every Service resource (in any order).
    want: Vec<Service>,
    /// Every condition the index reports.
    conditions: Vec<(ObjectRef, Condition)>,
}

fn run(cases: Vec<Case>) {
    assert_build_and_apply(
        cases.into_iter().map(|mut case| {
            case.want
                .sort_by(|a, b| (&a.namespace, &a.hostname).cmp(&(&b.namespace, &b.hostname)));
            TableCase {
                name: case.name,
                settings: case.settings,
                objects: case.objects,
                want: (case.want, case.conditions.into_iter().collect()),
            }
        }),
        |index| (service_resources(index), index.conditions().clone()),
    );
}

fn vip(addr: &str) -> NetworkAddress {
    NetworkAddress {
        network: "testnetwork".to_string(),
        address: ip(addr),
        length: None,
    }
}

fn port(service_port: u32, target_port: u32, app_protocol: AppProtocol) -> Port {
    Port {
        service_port,
        target_port,
        app_protocol: app_protocol as i32,
    }
}

/// `ns/name` with cluster IP 10.0.0.1 and port `http` 80→8080, as in istiod's "simple" case.
fn simple() -> ServiceBuilder {
    service("ns", "name")
        .cluster_ip("10.0.0.1")
        .port("http", 80, 8080)
}

/// The resource of [`simple`].
fn simple_resource() -> Service {
    Service {
        name: "name".to_string(),
        namespace: "ns".to_string(),
        hostname: "name.ns.svc.domain.suffix".to_string(),
        addresses: vec![vip("10.0.0.1")],
        ports: vec![port(80, 8080, AppProtocol::Http11)],
        subject_alt_names: Vec::new(),
        waypoint: None,
        load_balancing: None,
        ip_families: IpFamilies::Automatic as i32,
        extensions: Vec::new(),
        canonical: true,
        ingress_use_waypoint: false,
        weighted_waypoints: Vec::new(),
        visibility: 0,
    }
}

fn svc_ref(namespace: &str, name: &str) -> ObjectRef {
    ObjectRef::new(Kind::Service, namespace, name)
}

fn lb(scopes: &[Scope], mode: Mode, health: HealthPolicy) -> Option<LoadBalancing> {
    Some(LoadBalancing {
        routing_preference: scopes.iter().map(|s| *s as i32).collect(),
        mode: mode as i32,
        health_policy: health as i32,
    })
}

const ZONE: &[Scope] = &[Scope::Network, Scope::Region, Scope::Zone];
const NODE: &[Scope] = &[
    Scope::Network,
    Scope::Region,
    Scope::Zone,
    Scope::Subzone,
    Scope::Node,
];

#[test]
fn basics() {
    run(vec![
        Case {
            name: "simple",
            objects: vec![simple().build()],
            want: vec![simple_resource()],
            ..Default::default()
        },
        Case {
            name: "defaults: cluster.local suffix, empty network",
            settings: Some(Settings::default()),
            objects: vec![namespace("istio-system").build(), simple().build()],
            want: vec![Service {
                hostname: "name.ns.svc.cluster.local".to_string(),
                addresses: vec![NetworkAddress {
                    network: String::new(),
                    ..vip("10.0.0.1")
                }],
                ..simple_resource()
            }],
            ..Default::default()
        },
        Case {
            name: "external name",
            objects: vec![simple().external_name().build()],
            want: vec![],
            ..Default::default()
        },
        Case {
            name: "target ports",
            objects: vec![
                service("ns", "name")
                    .cluster_ip("10.0.0.1")
                    .port("http", 80, 8080)
                    .named_target("http-named", 81, "web")
                    .build(),
            ],
            want: vec![Service {
                ports: vec![
                    port(80, 8080, AppProtocol::Http11),
                    port(81, 0, AppProtocol::Http11),
                ],
                ..simple_resource()
            }],
            ..Default::default()
        },
        Case {
            name: "headless",
            objects: vec![simple().headless().build()],
            want: vec![Service {
                addresses: vec![],
                ..simple_resource()
            }],
            ..Default::default()
        },
        Case {
            name: "no cluster IP at all",
            objects: vec![service("ns", "name").port("http", 80, 8080).build()],
            want: vec![Service {
                addresses: vec![],
                ..simple_resource()
            }],
            ..Default::default()
        },
        Case {
            name: "no ports",
            objects: vec![service("ns", "name").cluster_ip("10.0.0.1").build()],
            want: vec![Service {
                ports: vec![],
                ..simple_resource()
            }],
            ..Default::default()
        },
        Case {
            name: "dual-stack cluster IPs",
            objects: vec![
                simple()
                    .cluster_ip("2001:db8::1")
                    .ip_families(&["IPv4", "IPv6"])
                    .build(),
            ],
            want: vec![Service {
                addresses: vec![vip("10.0.0.1"), vip("2001:db8::1")],
                ip_families: IpFamilies::Dual as i32,
                ..simple_resource()
            }],
            ..Default::default()
        },
        Case {
            name: "invalid cluster IP: no resource and a condition",
            objects: vec![
                service("ns", "name")
                    .cluster_ip("10.0.0.999")
                    .port("http", 80, 8080)
                    .build(),
            ],
            want: vec![],
            conditions: vec![(
                svc_ref("ns", "name"),
                Condition::new(
                    "ambientd.io/Skipped",
                    false,
                    "InvalidClusterIP",
                    "cluster IP \"10.0.0.999\" does not parse; the Service is not sent".to_string(),
                ),
            )],
            ..Default::default()
        },
        Case {
            name: "the selector does not show in the resource",
            objects: vec![simple().selector("app", "a").label("team", "x").build()],
            want: vec![simple_resource()],
            ..Default::default()
        },
    ]);
}

#[test]
fn ip_families() {
    let cases: &[(&'static str, &[&str], IpFamilies)] = &[
        ("ip families dual", &["IPv4", "IPv6"], IpFamilies::Dual),
        (
            "ip families dual, v6 first",
            &["IPv6", "IPv4"],
            IpFamilies::Dual,
        ),
        ("ip families v4", &["IPv4"], IpFamilies::Ipv4Only),
        ("ip families v6", &["IPv6"], IpFamilies::Ipv6Only),
        ("ip families none", &[], IpFamilies::Automatic),
    ];
    run(cases
        .iter()
        .map(|(name, families, want)| Case {
            name,
            objects: vec![simple().ip_families(families).build()],
            want: vec![Service {
                ip_families: *want as i32,
                ..simple_resource()
            }],
            ..Default::default()
        })
        .collect());
}

#[test]
fn app_protocols() {
    // (case, port, port name, protocol, appProtocol, want)
    type Row = (
        &'static str,
        u16,
        &'static str,
        &'static str,
        Option<&'static str>,
        AppProtocol,
    );
    let rows: &[Row] = &[
        ("name http", 80, "http", "TCP", None, AppProtocol::Http11),
        (
            "name prefix http-",
            80,
            "http-web",
            "TCP",
            None,
            AppProtocol::Http11,
        ),
        (
            "name is case-insensitive",
            80,
            "HTTP-web",
            "TCP",
            None,
            AppProtocol::Http11,
        ),
        ("name http2", 80, "http2", "TCP", None, AppProtocol::Http2),
        ("name grpc", 80, "grpc", "TCP", None, AppProtocol::Grpc),
        (
            "name grpc-web",
            80,
            "grpc-web",
            "TCP",
            None,
            AppProtocol::Unknown,
        ),
        ("name https", 443, "https", "TCP", None, AppProtocol::Tls),
        (
            "name tls",
            443,
            "tls-passthrough",
            "TCP",
            None,
            AppProtocol::Tls,
        ),
        ("name tcp", 80, "tcp", "TCP", None, AppProtocol::Tcp),
        ("name mongo", 80, "mongo", "TCP", None, AppProtocol::Unknown),
        (
            "name mongo on mongo's port",
            27017,
            "mongo",
            "TCP",
            None,
            AppProtocol::Unknown,
        ),
        (
            "name redis",
            6379,
            "redis",
            "TCP",
            None,
            AppProtocol::Unknown,
        ),
        ("unknown name", 80, "web", "TCP", None, AppProtocol::Unknown),
        (
            "unknown name on port 3306",
            3306,
            "db",
            "TCP",
            None,
            AppProtocol::Tcp,
        ),
        (
            "empty name on port 53",
            53,
            "",
            "TCP",
            None,
            AppProtocol::Tcp,
        ),
        (
            "empty name on port 80",
            80,
            "",
            "TCP",
            None,
            AppProtocol::Unknown,
        ),
        (
            "appProtocol wins over name",
            80,
            "tcp",
            "TCP",
            Some("http"),
            AppProtocol::Http11,
        ),
        (
            "appProtocol http2",
            80,
            "web",
            "TCP",
            Some("http2"),
            AppProtocol::Http2,
        ),
        (
            "appProtocol grpc",
            80,
            "http",
            "TCP",
            Some("grpc"),
            AppProtocol::Grpc,
        ),
        (
            "appProtocol grpc-web",
            80,
            "http",
            "TCP",
            Some("grpc-web"),
            AppProtocol::Unknown,
        ),
        (
            "appProtocol unknown ignores name",
            80,
            "http",
            "TCP",
            Some("web"),
            AppProtocol::Unknown,
        ),
        (
            "appProtocol kubernetes.io/h2c",
            80,
            "web",
            "TCP",
            Some("kubernetes.io/h2c"),
            AppProtocol::Http2,
        ),
        (
            "appProtocol kubernetes.io/ws",
            80,
            "web",
            "TCP",
            Some("kubernetes.io/ws"),
            AppProtocol::Http11,
        ),
        (
            "appProtocol kubernetes.io/wss",
            80,
            "web",
            "TCP",
            Some("kubernetes.io/wss"),
            AppProtocol::Tls,
        ),
        ("UDP", 80, "http", "UDP", None, AppProtocol::Unknown),
        (
            "UDP with appProtocol",
            80,
            "web",
            "UDP",
            Some("http"),
            AppProtocol::Unknown,
        ),
    ];
    run(rows
        .iter()
        .map(|&(name, number, port_name, protocol, app, want)| {
            let mut svc = service("ns", "name").cluster_ip("10.0.0.1");
            svc = if protocol == "UDP" {
                svc.udp_port(port_name, number, 8080)
            } else {
                svc.port(port_name, number, 8080)
            };
            if let Some(app) = app {
                svc = svc.app_protocol(app);
            }
            Case {
                name,
                objects: vec![svc.build()],
                want: vec![Service {
                    ports: vec![port(u32::from(number), 8080, want)],
                    ..simple_resource()
                }],
                ..Default::default()
            }
        })
        .collect());
}

#[test]
fn load_balancing() {
    let with_lb = |load_balancing| Service {
        load_balancing,
        ..simple_resource()
    };
    run(vec![
        Case {
            name: "traffic distribution prefer close",
            objects: vec![simple().traffic_distribution("PreferClose").build()],
            want: vec![with_lb(lb(ZONE, Mode::Failover, HealthPolicy::OnlyHealthy))],
            ..Default::default()
        },
        Case {
            name: "traffic distribution prefer same zone",
            objects: vec![simple().traffic_distribution("PreferSameZone").build()],
            want: vec![with_lb(lb(ZONE, Mode::Failover, HealthPolicy::OnlyHealthy))],
            ..Default::default()
        },
        Case {
            name: "traffic distribution prefer same node",
            objects: vec![simple().traffic_distribution("PreferSameNode").build()],
            want: vec![with_lb(lb(NODE, Mode::Failover, HealthPolicy::OnlyHealthy))],
            ..Default::default()
        },
        Case {
            name: "service annotation prefer close",
            objects: vec![
                simple()
                    .annotation(TRAFFIC_DISTRIBUTION, "PreferClose")
                    .build(),
            ],
            want: vec![with_lb(lb(ZONE, Mode::Failover, HealthPolicy::OnlyHealthy))],
            ..Default::default()
        },
        Case {
            name: "service annotation is case-insensitive",
            objects: vec![
                simple()
                    .annotation(TRAFFIC_DISTRIBUTION, "prefersamenode")
                    .build(),
            ],
            want: vec![with_lb(lb(NODE, Mode::Failover, HealthPolicy::OnlyHealthy))],
            ..Default::default()
        },
        Case {
            name: "spec field wins over the annotation",
            objects: vec![
                simple()
                    .traffic_distribution("PreferClose")
                    .annotation(TRAFFIC_DISTRIBUTION, "PreferSameNode")
                    .build(),
            ],
            want: vec![with_lb(lb(ZONE, Mode::Failover, HealthPolicy::OnlyHealthy))],
            ..Default::default()
        },
        Case {
            name: "unknown spec value falls back to the annotation",
            objects: vec![
                simple()
                    .traffic_distribution("PreferSomewhere")
                    .annotation(TRAFFIC_DISTRIBUTION, "PreferSameNode")
                    .build(),
            ],
            want: vec![with_lb(lb(NODE, Mode::Failover, HealthPolicy::OnlyHealthy))],
            ..Default::default()
        },
        Case {
            name: "namespace annotation inheritance",
            objects: vec![
                namespace("ns")
                    .annotation(TRAFFIC_DISTRIBUTION, "PreferClose")
                    .build(),
                simple().build(),
            ],
            want: vec![with_lb(lb(ZONE, Mode::Failover, HealthPolicy::OnlyHealthy))],
            ..Default::default()
        },
        Case {
            name: "service annotation overrides namespace",
            objects: vec![
                namespace("ns")
                    .annotation(TRAFFIC_DISTRIBUTION, "PreferClose")
                    .build(),
                simple()
                    .annotation(TRAFFIC_DISTRIBUTION, "PreferSameNode")
                    .build(),
            ],
            want: vec![with_lb(lb(NODE, Mode::Failover, HealthPolicy::OnlyHealthy))],
            ..Default::default()
        },
        Case {
            name: "unknown service annotation stops inheritance",
            objects: vec![
                namespace("ns")
                    .annotation(TRAFFIC_DISTRIBUTION, "PreferClose")
                    .build(),
                simple()
                    .annotation(TRAFFIC_DISTRIBUTION, "Anywhere")
                    .build(),
            ],
            want: vec![simple_resource()],
            ..Default::default()
        },
        Case {
            name: "namespace annotation of another namespace does not apply",
            objects: vec![
                namespace("other")
                    .annotation(TRAFFIC_DISTRIBUTION, "PreferClose")
                    .build(),
                simple().build(),
            ],
            want: vec![simple_resource()],
            ..Default::default()
        },
        Case {
            name: "internalTrafficPolicy Local",
            objects: vec![simple().internal_local().build()],
            want: vec![with_lb(lb(
                &[Scope::Node],
                Mode::Strict,
                HealthPolicy::OnlyHealthy,
            ))],
            ..Default::default()
        },
        Case {
            name: "internalTrafficPolicy Local wins over traffic distribution",
            objects: vec![
                simple()
                    .internal_local()
                    .traffic_distribution("PreferClose")
                    .build(),
            ],
            want: vec![with_lb(lb(
                &[Scope::Node],
                Mode::Strict,
                HealthPolicy::OnlyHealthy,
            ))],
            ..Default::default()
        },
        Case {
            name: "publishNotReadyAddresses",
            objects: vec![simple().publish_not_ready().build()],
            want: vec![with_lb(lb(
                &[],
                Mode::UnspecifiedMode,
                HealthPolicy::AllowAll,
            ))],
            ..Default::default()
        },
        Case {
            name: "publishNotReadyAddresses with prefer close",
            objects: vec![
                simple()
                    .publish_not_ready()
                    .traffic_distribution("PreferClose")
                    .build(),
            ],
            want: vec![with_lb(lb(ZONE, Mode::Failover, HealthPolicy::AllowAll))],
            ..Default::default()
        },
        Case {
            name: "publishNotReadyAddresses with internalTrafficPolicy Local",
            objects: vec![simple().publish_not_ready().internal_local().build()],
            want: vec![with_lb(lb(
                &[Scope::Node],
                Mode::Strict,
                HealthPolicy::AllowAll,
            ))],
            ..Default::default()
        },
    ]);
}

fn waypoint_address() -> Option<GatewayAddress> {
    Some(GatewayAddress {
        destination: Some(gateway_address::Destination::Hostname(NamespacedHostname {
            namespace: "ns".to_string(),
            hostname: "wp.ns.svc.domain.suffix".to_string(),
        })),
        hbone_mtls_port: 15008,
    })
}

fn bound(suffix: &str) -> (ObjectRef, Condition) {
    (
        svc_ref("ns", "name"),
        Condition::new(
            "istio.io/WaypointBound",
            true,
            "WaypointAccepted",
            format!("Successfully attached to waypoint ns/wp{suffix}"),
        ),
    )
}

#[test]
fn ingress_use_waypoint() {
    let wp = || waypoint("ns", "wp", "domain.suffix", "10.0.0.9").build();
    let not_using = ". Ingress traffic is not using the waypoint, set the istio.io/ingress-use-waypoint label to true if desired.";
    run(vec![
        Case {
            name: "ingress-use-waypoint label true sets WDS field",
            objects: vec![
                wp(),
                simple()
                    .label(USE_WAYPOINT, "wp")
                    .label(INGRESS_USE_WAYPOINT, "true")
                    .build(),
            ],
            want: vec![Service {
                waypoint: waypoint_address(),
                ingress_use_waypoint: true,
                ..simple_resource()
            }],
            conditions: vec![bound(". Ingress traffic will traverse the waypoint")],
            ..Default::default()
        },
        Case {
            name: "ingress-use-waypoint label false does not set WDS field",
            objects: vec![
                wp(),
                simple()
                    .label(USE_WAYPOINT, "wp")
                    .label(INGRESS_USE_WAYPOINT, "false")
                    .build(),
            ],
            want: vec![Service {
                waypoint: waypoint_address(),
                ..simple_resource()
            }],
            conditions: vec![bound(not_using)],
            ..Default::default()
        },
        Case {
            name: "ingress-use-waypoint label malformed",
            objects: vec![
                wp(),
                simple()
                    .label(USE_WAYPOINT, "wp")
                    .label(INGRESS_USE_WAYPOINT, "yes")
                    .build(),
            ],
            want: vec![Service {
                waypoint: waypoint_address(),
                ..simple_resource()
            }],
            conditions: vec![bound(not_using)],
            ..Default::default()
        },
        Case {
            name: "ingress-use-waypoint from the namespace",
            objects: vec![
                namespace("ns")
                    .label(USE_WAYPOINT, "wp")
                    .label(INGRESS_USE_WAYPOINT, "true")
                    .build(),
                wp(),
                simple().build(),
            ],
            want: vec![Service {
                waypoint: waypoint_address(),
                ingress_use_waypoint: true,
                ..simple_resource()
            }],
            conditions: vec![bound(". Ingress traffic will traverse the waypoint")],
            ..Default::default()
        },
        Case {
            name: "service ingress label overrides the namespace",
            objects: vec![
                namespace("ns").label(INGRESS_USE_WAYPOINT, "true").build(),
                wp(),
                simple()
                    .label(USE_WAYPOINT, "wp")
                    .label(INGRESS_USE_WAYPOINT, "false")
                    .build(),
            ],
            want: vec![Service {
                waypoint: waypoint_address(),
                ..simple_resource()
            }],
            conditions: vec![bound(not_using)],
            ..Default::default()
        },
        Case {
            name: "ingress-use-waypoint without a waypoint is not set",
            objects: vec![simple().label(INGRESS_USE_WAYPOINT, "true").build()],
            want: vec![simple_resource()],
            ..Default::default()
        },
        Case {
            name: "ingress-use-waypoint with a waypoint that is not ready is not set",
            objects: vec![
                simple()
                    .label(USE_WAYPOINT, "wp")
                    .label(INGRESS_USE_WAYPOINT, "true")
                    .build(),
            ],
            want: vec![simple_resource()],
            conditions: vec![(
                svc_ref("ns", "name"),
                Condition::new(
                    "istio.io/WaypointBound",
                    false,
                    "WaypointIsNotReady",
                    "waypoint \"ns/wp\" is not ready".to_string(),
                ),
            )],
            ..Default::default()
        },
        Case {
            name: "bound without ingress label",
            objects: vec![wp(), simple().label(USE_WAYPOINT, "wp").build()],
            want: vec![Service {
                waypoint: waypoint_address(),
                ..simple_resource()
            }],
            conditions: vec![bound("")],
            ..Default::default()
        },
    ]);
}
