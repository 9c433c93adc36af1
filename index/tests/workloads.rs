//! Pod and EndpointSlice → `istio.workload.Workload` (docs/reference/istiod.md#workloads-from-pods,
//! #workloads-from-endpointslices), following istiod's `TestPodWorkloads`, `TestEndpointSliceWorkloads` and
//! `TestPodLifecycleWorkloadGates`.
//!
//! Every case lists its objects and the complete set of Workload resources the index must hold; each
//! case runs through `Index::build` and through one-by-one `Index::apply`, which must agree.

use std::collections::BTreeMap;

use ambient_index::model::Object;
use ambient_index::model::well_known::*;
use ambient_index::testing::*;
use ambient_index::{Enrollment, Settings};
use ambient_proto::workload::{
    ApplicationTunnel, GatewayAddress, Locality, NamespacedHostname, NetworkMode, Port, PortList,
    TunnelProtocol, Workload, WorkloadStatus, WorkloadType, application_tunnel, gateway_address,
};

struct Case {
    name: &'static str,
    /// `None`: istiod's unit-test environment (`test_settings()` plus the `istio-system` namespace on
    /// network `testnetwork`). `Some`: exactly these settings and no system namespace object.
    settings: Option<Settings>,
    objects: Vec<Object>,
    /// Every Workload resource (in any order).
    want: Vec<Workload>,
}

fn run(cases: Vec<Case>) {
    assert_build_and_apply(
        cases.into_iter().map(|mut case| {
            case.want.sort_by(|a, b| a.uid.cmp(&b.uid));
            TableCase {
                name: case.name,
                settings: case.settings,
                objects: case.objects,
                want: case.want,
            }
        }),
        workloads,
    );
}

/// The Workload of a ready pod `ns/<name>` with IP 1.2.3.4 in the unit-test environment, with no labels.
fn pod_workload(name: &str) -> Workload {
    Workload {
        uid: format!("cluster0//Pod/ns/{name}"),
        name: name.to_string(),
        namespace: "ns".to_string(),
        addresses: vec![ip("1.2.3.4")],
        hostname: String::new(),
        network: "testnetwork".to_string(),
        tunnel_protocol: TunnelProtocol::None as i32,
        trust_domain: String::new(),
        service_account: String::new(),
        waypoint: None,
        network_gateway: None,
        node: String::new(),
        canonical_name: name.to_string(),
        canonical_revision: "latest".to_string(),
        workload_type: WorkloadType::Pod as i32,
        workload_name: name.to_string(),
        native_tunnel: false,
        application_tunnel: None,
        services: BTreeMap::new(),
        authorization_policies: Vec::new(),
        status: WorkloadStatus::Healthy as i32,
        cluster_id: "cluster0".to_string(),
        locality: None,
        network_mode: NetworkMode::Standard as i32,
        extensions: Vec::new(),
        capacity: None,
    }
}

/// A ready pod `ns/<name>` with IP 1.2.3.4.
fn ready_pod(name: &str) -> PodBuilder {
    pod("ns", name).ip("1.2.3.4").ready()
}

fn port_list(pairs: &[(u32, u32)]) -> PortList {
    PortList {
        ports: pairs
            .iter()
            .map(|&(service_port, target_port)| Port {
                service_port,
                target_port,
                app_protocol: 0,
            })
            .collect(),
    }
}

fn services(entries: &[(&str, &[(u32, u32)])]) -> BTreeMap<String, PortList> {
    entries
        .iter()
        .map(|(k, ports)| (k.to_string(), port_list(ports)))
        .collect()
}

fn hostname_waypoint(namespace: &str, hostname: &str) -> Option<GatewayAddress> {
    Some(GatewayAddress {
        destination: Some(gateway_address::Destination::Hostname(NamespacedHostname {
            namespace: namespace.to_string(),
            hostname: hostname.to_string(),
        })),
        hbone_mtls_port: 15008,
    })
}

/// An EndpointSlice workload in the unit-test environment.
fn slice_workload(namespace: &str, slice: &str, addr: &str) -> Workload {
    Workload {
        uid: format!("cluster0/discovery.k8s.io/EndpointSlice/{namespace}/{slice}/{addr}"),
        name: slice.to_string(),
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
        canonical_name: String::new(),
        canonical_revision: String::new(),
        workload_type: WorkloadType::Deployment as i32,
        workload_name: String::new(),
        native_tunnel: false,
        application_tunnel: None,
        services: BTreeMap::new(),
        authorization_policies: Vec::new(),
        status: WorkloadStatus::Healthy as i32,
        cluster_id: "cluster0".to_string(),
        locality: None,
        network_mode: NetworkMode::HostNetwork as i32,
        extensions: Vec::new(),
        capacity: None,
    }
}

const SVC_KEY: &str = "ns/svc.ns.svc.domain.suffix";

#[test]
fn pod_lifecycle() {
    run(vec![
        Case {
            name: "simple pod not running and not have podIP",
            settings: None,
            objects: vec![pod("ns", "name").phase("Pending").build()],
            want: vec![],
        },
        Case {
            name: "simple pod not running but have podIP",
            settings: None,
            objects: vec![pod("ns", "name").phase("Pending").ip("1.2.3.4").build()],
            want: vec![Workload {
                status: WorkloadStatus::Unhealthy as i32,
                ..pod_workload("name")
            }],
        },
        Case {
            name: "simple pod not ready",
            settings: None,
            objects: vec![pod("ns", "name").phase("Running").ip("1.2.3.4").build()],
            want: vec![Workload {
                status: WorkloadStatus::Unhealthy as i32,
                ..pod_workload("name")
            }],
        },
        Case {
            name: "simple pod ready",
            settings: None,
            objects: vec![ready_pod("name").build()],
            want: vec![pod_workload("name")],
        },
        Case {
            name: "deleting pod is unhealthy even when ready",
            settings: None,
            objects: vec![ready_pod("name").deleting().build()],
            want: vec![Workload {
                status: WorkloadStatus::Unhealthy as i32,
                ..pod_workload("name")
            }],
        },
        Case {
            name: "succeeded pod has no workload",
            settings: None,
            objects: vec![ready_pod("name").phase("Succeeded").build()],
            want: vec![],
        },
        Case {
            name: "failed pod has no workload",
            settings: None,
            objects: vec![ready_pod("name").phase("Failed").build()],
            want: vec![],
        },
        Case {
            name: "pod with an IP that does not parse has no workload",
            settings: None,
            objects: vec![ready_pod("name").ip("1.2.3.999").build()],
            want: vec![],
        },
        Case {
            name: "dual-stack pod carries both addresses",
            settings: None,
            objects: vec![ready_pod("name").ip("2001:db8::1").build()],
            want: vec![Workload {
                addresses: vec![ip("1.2.3.4"), ip("2001:db8::1")],
                ..pod_workload("name")
            }],
        },
        Case {
            name: "service account and node are copied",
            settings: None,
            objects: vec![ready_pod("name").sa("sa").node("n1").build()],
            want: vec![Workload {
                service_account: "sa".to_string(),
                node: "n1".to_string(),
                ..pod_workload("name")
            }],
        },
    ]);
}

#[test]
fn workload_names() {
    run(vec![
        Case {
            name: "pod from replicaset",
            settings: None,
            objects: vec![
                ready_pod("name")
                    .generate_name("rs-")
                    .owner("ReplicaSet", "rs")
                    .build(),
            ],
            want: vec![Workload {
                workload_name: "rs".to_string(),
                canonical_name: "rs".to_string(),
                ..pod_workload("name")
            }],
        },
        Case {
            name: "pod from deployment (pod-template-hash)",
            settings: None,
            objects: vec![
                ready_pod("name")
                    .generate_name("details-v1-5d8f7c9b6-")
                    .owner("ReplicaSet", "details-v1-5d8f7c9b6")
                    .label("pod-template-hash", "5d8f7c9b6")
                    .build(),
            ],
            want: vec![Workload {
                workload_name: "details-v1".to_string(),
                canonical_name: "details-v1".to_string(),
                ..pod_workload("name")
            }],
        },
        Case {
            name: "pod from argo rollout (rollouts-pod-template-hash)",
            settings: None,
            objects: vec![
                ready_pod("name")
                    .generate_name("canary-6c4f8-")
                    .owner("ReplicaSet", "canary-6c4f8")
                    .label("rollouts-pod-template-hash", "6c4f8")
                    .build(),
            ],
            want: vec![Workload {
                workload_name: "canary".to_string(),
                canonical_name: "canary".to_string(),
                ..pod_workload("name")
            }],
        },
        Case {
            name: "pod from cronjob (job name with 8-digit suffix)",
            settings: None,
            objects: vec![
                ready_pod("name")
                    .generate_name("x-12345678-")
                    .owner("Job", "x-12345678")
                    .build(),
            ],
            want: vec![Workload {
                workload_name: "x".to_string(),
                canonical_name: "x".to_string(),
                ..pod_workload("name")
            }],
        },
        Case {
            name: "pod from a job that is not a cronjob's",
            settings: None,
            objects: vec![
                ready_pod("name")
                    .generate_name("migrate-1234-")
                    .owner("Job", "migrate-1234")
                    .build(),
            ],
            want: vec![Workload {
                workload_name: "migrate-1234".to_string(),
                canonical_name: "migrate-1234".to_string(),
                ..pod_workload("name")
            }],
        },
        Case {
            name: "pod from deploymentconfig replication controller",
            settings: None,
            objects: vec![
                ready_pod("name")
                    .generate_name("frontend-3-")
                    .owner("ReplicationController", "frontend-3")
                    .label("deploymentconfig", "frontend")
                    .build(),
            ],
            want: vec![Workload {
                workload_name: "frontend".to_string(),
                canonical_name: "frontend".to_string(),
                ..pod_workload("name")
            }],
        },
        Case {
            name: "owner is ignored without generateName",
            settings: None,
            objects: vec![ready_pod("name").owner("ReplicaSet", "rs").build()],
            want: vec![pod_workload("name")],
        },
        Case {
            name: "workload-name label overrides the owner",
            settings: None,
            objects: vec![
                ready_pod("name")
                    .generate_name("rs-")
                    .owner("ReplicaSet", "rs")
                    .label(WORKLOAD_NAME, "custom")
                    .build(),
            ],
            want: vec![Workload {
                workload_name: "custom".to_string(),
                canonical_name: "custom".to_string(),
                ..pod_workload("name")
            }],
        },
        Case {
            name: "canonical name and revision from app/version labels",
            settings: None,
            objects: vec![
                ready_pod("name")
                    .label("app", "foo")
                    .label("version", "v2")
                    .build(),
            ],
            want: vec![Workload {
                canonical_name: "foo".to_string(),
                canonical_revision: "v2".to_string(),
                ..pod_workload("name")
            }],
        },
        Case {
            name: "canonical labels take precedence over app.kubernetes.io and app",
            settings: None,
            objects: vec![
                ready_pod("name")
                    .label("app", "foo")
                    .label("app.kubernetes.io/name", "bar")
                    .label(CANONICAL_NAME, "baz")
                    .label("version", "v1")
                    .label("app.kubernetes.io/version", "v2")
                    .label(CANONICAL_REVISION, "v3")
                    .build(),
            ],
            want: vec![Workload {
                canonical_name: "baz".to_string(),
                canonical_revision: "v3".to_string(),
                ..pod_workload("name")
            }],
        },
        Case {
            name: "app.kubernetes.io labels take precedence over app and version",
            settings: None,
            objects: vec![
                ready_pod("name")
                    .label("app", "foo")
                    .label("app.kubernetes.io/name", "bar")
                    .label("version", "v1")
                    .label("app.kubernetes.io/version", "v2")
                    .build(),
            ],
            want: vec![Workload {
                canonical_name: "bar".to_string(),
                canonical_revision: "v2".to_string(),
                ..pod_workload("name")
            }],
        },
    ]);
}

#[test]
fn pod_services() {
    run(vec![
        Case {
            name: "pod with service",
            settings: None,
            objects: vec![
                service("ns", "svc")
                    .cluster_ip("10.0.0.1")
                    .port("http", 80, 8080)
                    .selector("app", "foo")
                    .build(),
                ready_pod("name").label("app", "foo").build(),
            ],
            want: vec![Workload {
                canonical_name: "foo".to_string(),
                services: services(&[(SVC_KEY, &[(80, 8080)])]),
                ..pod_workload("name")
            }],
        },
        Case {
            name: "pod with service named ports",
            settings: None,
            objects: vec![
                service("ns", "svc")
                    .cluster_ip("10.0.0.1")
                    .port("http", 80, 8080)
                    .named_target("found", 81, "81-target")
                    .named_target("missing", 82, "82-target")
                    .selector("app", "foo")
                    .build(),
                ready_pod("name")
                    .label("app", "foo")
                    .named_port("81-target", 9090)
                    .build(),
            ],
            want: vec![Workload {
                canonical_name: "foo".to_string(),
                services: services(&[(SVC_KEY, &[(80, 8080), (81, 9090)])]),
                ..pod_workload("name")
            }],
        },
        Case {
            name: "service selecting other labels does not join",
            settings: None,
            objects: vec![
                service("ns", "svc")
                    .cluster_ip("10.0.0.1")
                    .port("http", 80, 8080)
                    .selector("app", "foo")
                    .selector("version", "v1")
                    .build(),
                ready_pod("name").label("app", "foo").build(),
            ],
            want: vec![Workload {
                canonical_name: "foo".to_string(),
                ..pod_workload("name")
            }],
        },
        Case {
            name: "service in another namespace does not select",
            settings: None,
            objects: vec![
                service("other", "svc")
                    .cluster_ip("10.0.0.1")
                    .port("http", 80, 8080)
                    .selector("app", "foo")
                    .build(),
                ready_pod("name").label("app", "foo").build(),
            ],
            want: vec![Workload {
                canonical_name: "foo".to_string(),
                ..pod_workload("name")
            }],
        },
        Case {
            name: "external name service does not select",
            settings: None,
            objects: vec![
                service("ns", "svc")
                    .external_name()
                    .port("http", 80, 8080)
                    .selector("app", "foo")
                    .build(),
                ready_pod("name").label("app", "foo").build(),
            ],
            want: vec![Workload {
                canonical_name: "foo".to_string(),
                ..pod_workload("name")
            }],
        },
        Case {
            name: "headless service selects",
            settings: None,
            objects: vec![
                service("ns", "svc")
                    .headless()
                    .port("http", 80, 8080)
                    .selector("app", "foo")
                    .build(),
                ready_pod("name").label("app", "foo").build(),
            ],
            want: vec![Workload {
                canonical_name: "foo".to_string(),
                services: services(&[(SVC_KEY, &[(80, 8080)])]),
                ..pod_workload("name")
            }],
        },
        Case {
            name: "two services select the pod",
            settings: None,
            objects: vec![
                service("ns", "svc")
                    .cluster_ip("10.0.0.1")
                    .port("http", 80, 8080)
                    .selector("app", "foo")
                    .build(),
                service("ns", "svc2")
                    .cluster_ip("10.0.0.2")
                    .port("grpc", 90, 9090)
                    .udp_port("dns", 53, 5353)
                    .selector("app", "foo")
                    .build(),
                ready_pod("name").label("app", "foo").build(),
            ],
            want: vec![Workload {
                canonical_name: "foo".to_string(),
                services: services(&[
                    (SVC_KEY, &[(80, 8080)]),
                    ("ns/svc2.ns.svc.domain.suffix", &[(90, 9090), (53, 5353)]),
                ]),
                ..pod_workload("name")
            }],
        },
        Case {
            name: "pod as part of selectorless service",
            settings: None,
            objects: vec![
                service("ns", "svc")
                    .cluster_ip("10.0.0.1")
                    .port("http", 80, 8080)
                    .build(),
                endpoint_slice("ns", "svc-abc")
                    .service("svc")
                    .port("http", 8080)
                    .endpoint(
                        &["1.2.3.4"],
                        true,
                        Some(pod_ref("ns", "name", "uid-ns-name")),
                    )
                    .build(),
                ready_pod("name").build(),
            ],
            want: vec![Workload {
                services: services(&[(SVC_KEY, &[(80, 8080)])]),
                ..pod_workload("name")
            }],
        },
        Case {
            name: "pod as part of selectorless service without targetRef",
            settings: None,
            objects: vec![
                service("ns", "svc")
                    .cluster_ip("10.0.0.1")
                    .port("http", 80, 8080)
                    .build(),
                endpoint_slice("ns", "svc-abc")
                    .service("svc")
                    .port("http", 8080)
                    .endpoint(&["1.2.3.4"], true, None)
                    .build(),
                ready_pod("name").build(),
            ],
            want: vec![
                slice_workload_with_services("ns", "svc-abc", "1.2.3.4", &[(80, 8080)]),
                pod_workload("name"),
            ],
        },
        Case {
            name: "selectorless service targetRef with the wrong uid does not join",
            settings: None,
            objects: vec![
                service("ns", "svc")
                    .cluster_ip("10.0.0.1")
                    .port("http", 80, 8080)
                    .build(),
                endpoint_slice("ns", "svc-abc")
                    .service("svc")
                    .port("http", 8080)
                    .endpoint(
                        &["1.2.3.4"],
                        true,
                        Some(pod_ref("ns", "name", "uid-of-an-older-pod")),
                    )
                    .build(),
                ready_pod("name").build(),
            ],
            want: vec![pod_workload("name")],
        },
        Case {
            name: "slice without the service-name label does not join",
            settings: None,
            objects: vec![
                service("ns", "svc")
                    .cluster_ip("10.0.0.1")
                    .port("http", 80, 8080)
                    .build(),
                endpoint_slice("ns", "svc-abc")
                    .port("http", 8080)
                    .endpoint(
                        &["1.2.3.4"],
                        true,
                        Some(pod_ref("ns", "name", "uid-ns-name")),
                    )
                    .build(),
                ready_pod("name").build(),
            ],
            want: vec![pod_workload("name")],
        },
        Case {
            name: "selectorless service with named target port resolves per pod",
            settings: None,
            objects: vec![
                service("ns", "svc")
                    .cluster_ip("10.0.0.1")
                    .named_target("http", 80, "web")
                    .build(),
                endpoint_slice("ns", "svc-abc")
                    .service("svc")
                    .port("http", 8080)
                    .endpoint(
                        &["1.2.3.4"],
                        true,
                        Some(pod_ref("ns", "name", "uid-ns-name")),
                    )
                    .build(),
                ready_pod("name").named_port("web", 8080).build(),
            ],
            want: vec![Workload {
                services: services(&[(SVC_KEY, &[(80, 8080)])]),
                ..pod_workload("name")
            }],
        },
    ]);
}

fn slice_workload_with_services(
    namespace: &str,
    slice: &str,
    addr: &str,
    ports: &[(u32, u32)],
) -> Workload {
    Workload {
        services: BTreeMap::from([(
            format!("{namespace}/svc.{namespace}.svc.domain.suffix"),
            port_list(ports),
        )]),
        ..slice_workload(namespace, slice, addr)
    }
}

#[test]
fn pod_locality_and_network() {
    run(vec![
        Case {
            name: "simple pod with locality",
            settings: None,
            objects: vec![
                node("n1").region("r").zone("z").subzone("s").build(),
                ready_pod("name").node("n1").build(),
            ],
            want: vec![Workload {
                node: "n1".to_string(),
                locality: Some(Locality {
                    region: "r".to_string(),
                    zone: "z".to_string(),
                    subzone: "s".to_string(),
                }),
                ..pod_workload("name")
            }],
        },
        Case {
            name: "pod on a node with only a zone",
            settings: None,
            objects: vec![
                node("n1").zone("z").build(),
                ready_pod("name").node("n1").build(),
            ],
            want: vec![Workload {
                node: "n1".to_string(),
                locality: Some(Locality {
                    region: String::new(),
                    zone: "z".to_string(),
                    subzone: String::new(),
                }),
                ..pod_workload("name")
            }],
        },
        Case {
            name: "pod on a node without locality labels",
            settings: None,
            objects: vec![node("n1").build(), ready_pod("name").node("n1").build()],
            want: vec![Workload {
                node: "n1".to_string(),
                ..pod_workload("name")
            }],
        },
        Case {
            name: "pod on an unknown node",
            settings: None,
            objects: vec![
                node("n1").region("r").build(),
                ready_pod("name").node("n2").build(),
            ],
            want: vec![Workload {
                node: "n2".to_string(),
                ..pod_workload("name")
            }],
        },
        Case {
            name: "host network pod",
            settings: None,
            objects: vec![
                ready_pod("name").host_network().build(),
                // A slice with the same IP but no Service label has no effect.
                endpoint_slice("ns", "unrelated")
                    .port("http", 8080)
                    .endpoint(&["1.2.3.4"], true, None)
                    .build(),
            ],
            want: vec![Workload {
                network_mode: NetworkMode::HostNetwork as i32,
                ..pod_workload("name")
            }],
        },
        Case {
            name: "network comes from the system namespace, not the pod",
            settings: None,
            objects: vec![ready_pod("name").label(NETWORK, "other").build()],
            want: vec![pod_workload("name")],
        },
        Case {
            name: "defaults: cluster Kubernetes, empty network",
            settings: Some(Settings::default()),
            objects: vec![namespace("istio-system").build(), ready_pod("name").build()],
            want: vec![Workload {
                uid: "Kubernetes//Pod/ns/name".to_string(),
                network: String::new(),
                cluster_id: "Kubernetes".to_string(),
                ..pod_workload("name")
            }],
        },
        Case {
            name: "network label on a namespace that is not the system namespace is ignored",
            settings: Some(Settings::default()),
            objects: vec![
                namespace("ns").label(NETWORK, "nsnetwork").build(),
                ready_pod("name").build(),
            ],
            want: vec![Workload {
                uid: "Kubernetes//Pod/ns/name".to_string(),
                network: String::new(),
                cluster_id: "Kubernetes".to_string(),
                ..pod_workload("name")
            }],
        },
        Case {
            name: "trust domain cluster.local is sent empty",
            settings: Some(Settings {
                trust_domain: "cluster.local".to_string(),
                ..test_settings()
            }),
            objects: vec![test_system_namespace(), ready_pod("name").build()],
            want: vec![pod_workload("name")],
        },
        Case {
            name: "other trust domains are sent",
            settings: Some(Settings {
                trust_domain: "example.org".to_string(),
                ..test_settings()
            }),
            objects: vec![test_system_namespace(), ready_pod("name").build()],
            want: vec![Workload {
                trust_domain: "example.org".to_string(),
                ..pod_workload("name")
            }],
        },
    ]);
}

#[test]
fn tunnel_protocol() {
    let labels_mode = || {
        Some(Settings {
            enrollment: Enrollment::Labels,
            ..test_settings()
        })
    };
    let hbone = |name: &str| Workload {
        tunnel_protocol: TunnelProtocol::Hbone as i32,
        ..pod_workload(name)
    };
    run(vec![
        Case {
            name: "no annotation: NONE",
            settings: None,
            objects: vec![ready_pod("name").build()],
            want: vec![pod_workload("name")],
        },
        Case {
            name: "redirection annotation enabled: HBONE",
            settings: None,
            objects: vec![ready_pod("name").annotation(REDIRECTION, "enabled").build()],
            want: vec![hbone("name")],
        },
        Case {
            name: "redirection annotation pending: NONE",
            settings: None,
            objects: vec![ready_pod("name").annotation(REDIRECTION, "pending").build()],
            want: vec![pod_workload("name")],
        },
        Case {
            name: "tunnel label http: HBONE and native tunnel",
            settings: None,
            objects: vec![ready_pod("name").label(TUNNEL, "http").build()],
            want: vec![Workload {
                native_tunnel: true,
                ..hbone("name")
            }],
        },
        Case {
            name: "tunnel label list containing http",
            settings: None,
            objects: vec![ready_pod("name").label(TUNNEL, "tcp,http").build()],
            want: vec![Workload {
                native_tunnel: true,
                ..hbone("name")
            }],
        },
        Case {
            name: "tunnel label without http",
            settings: None,
            objects: vec![ready_pod("name").label(TUNNEL, "tcp").build()],
            want: vec![pod_workload("name")],
        },
        Case {
            name: "annotation mode: dataplane-mode labels alone give NONE",
            settings: None,
            objects: vec![
                namespace("ns").label(DATAPLANE_MODE, "ambient").build(),
                ready_pod("name").label(DATAPLANE_MODE, "ambient").build(),
            ],
            want: vec![pod_workload("name")],
        },
        Case {
            name: "labels mode: namespace ambient",
            settings: labels_mode(),
            objects: vec![
                test_system_namespace(),
                namespace("ns").label(DATAPLANE_MODE, "ambient").build(),
                ready_pod("name").build(),
            ],
            want: vec![hbone("name")],
        },
        Case {
            name: "labels mode: pod none opts out of an ambient namespace",
            settings: labels_mode(),
            objects: vec![
                test_system_namespace(),
                namespace("ns").label(DATAPLANE_MODE, "ambient").build(),
                ready_pod("name").label(DATAPLANE_MODE, "none").build(),
            ],
            want: vec![pod_workload("name")],
        },
        Case {
            name: "labels mode: pod ambient in a plain namespace",
            settings: labels_mode(),
            objects: vec![
                test_system_namespace(),
                namespace("ns").build(),
                ready_pod("name").label(DATAPLANE_MODE, "ambient").build(),
            ],
            want: vec![hbone("name")],
        },
        Case {
            name: "labels mode: plain pod in a plain namespace",
            settings: labels_mode(),
            objects: vec![
                test_system_namespace(),
                namespace("ns").build(),
                ready_pod("name").build(),
            ],
            want: vec![pod_workload("name")],
        },
        Case {
            name: "labels mode: kube-system is excluded",
            settings: labels_mode(),
            objects: vec![
                test_system_namespace(),
                namespace("kube-system")
                    .label(DATAPLANE_MODE, "ambient")
                    .build(),
                pod("kube-system", "name")
                    .ip("1.2.3.4")
                    .ready()
                    .label(DATAPLANE_MODE, "ambient")
                    .build(),
            ],
            want: vec![Workload {
                uid: "cluster0//Pod/kube-system/name".to_string(),
                namespace: "kube-system".to_string(),
                ..pod_workload("name")
            }],
        },
        Case {
            name: "labels mode: host network pods are excluded",
            settings: labels_mode(),
            objects: vec![
                test_system_namespace(),
                namespace("ns").label(DATAPLANE_MODE, "ambient").build(),
                ready_pod("name").host_network().build(),
            ],
            want: vec![Workload {
                network_mode: NetworkMode::HostNetwork as i32,
                ..pod_workload("name")
            }],
        },
        Case {
            name: "labels mode: sidecar-injected pods are excluded",
            settings: labels_mode(),
            objects: vec![
                test_system_namespace(),
                namespace("ns").label(DATAPLANE_MODE, "ambient").build(),
                ready_pod("name")
                    .annotation(SIDECAR_STATUS, "{\"containers\":[\"istio-proxy\"]}")
                    .build(),
            ],
            want: vec![pod_workload("name")],
        },
        Case {
            name: "labels mode: the annotation still counts",
            settings: labels_mode(),
            objects: vec![
                test_system_namespace(),
                ready_pod("name")
                    .host_network()
                    .annotation(REDIRECTION, "enabled")
                    .build(),
            ],
            want: vec![Workload {
                network_mode: NetworkMode::HostNetwork as i32,
                ..hbone("name")
            }],
        },
    ]);
}

#[test]
fn pod_waypoints() {
    let wp_host = "waypoint.ns.svc.domain.suffix";
    run(vec![
        Case {
            name: "pod with waypoint",
            settings: None,
            objects: vec![
                gateway("ns", "waypoint")
                    .hbone_listener(Default::default())
                    .status_hostname(wp_host)
                    .label(WAYPOINT_FOR, "all")
                    .build(),
                ready_pod("name").label(USE_WAYPOINT, "waypoint").build(),
            ],
            want: vec![Workload {
                waypoint: hostname_waypoint("ns", wp_host),
                ..pod_workload("name")
            }],
        },
        Case {
            name: "pod that is a waypoint",
            settings: None,
            objects: vec![
                namespace("ns").label(USE_WAYPOINT, "waypoint").build(),
                gateway("ns", "waypoint")
                    .hbone_listener(Default::default())
                    .status_hostname(wp_host)
                    .label(WAYPOINT_FOR, "all")
                    .build(),
                ready_pod("name").build(),
                pod("ns", "waypoint-pod")
                    .ip("1.2.3.5")
                    .ready()
                    .label(GATEWAY_NAME, "waypoint")
                    .label(DATAPLANE_MODE, "none")
                    .build(),
            ],
            want: vec![
                Workload {
                    waypoint: hostname_waypoint("ns", wp_host),
                    ..pod_workload("name")
                },
                Workload {
                    addresses: vec![ip("1.2.3.5")],
                    ..pod_workload("waypoint-pod")
                },
            ],
        },
        Case {
            name: "waypoint instance with inbound binding PROXY/15088",
            settings: None,
            objects: vec![
                gateway("ns", "waypoint")
                    .hbone_listener(Default::default())
                    .status_hostname(wp_host)
                    .annotation(INBOUND_BINDING, "PROXY/15088")
                    .build(),
                ready_pod("waypoint-pod")
                    .label(GATEWAY_NAME, "waypoint")
                    .build(),
            ],
            want: vec![Workload {
                application_tunnel: Some(ApplicationTunnel {
                    protocol: application_tunnel::Protocol::Proxy as i32,
                    port: 15088,
                }),
                ..pod_workload("waypoint-pod")
            }],
        },
        Case {
            name: "waypoint instance with inbound binding from the GatewayClass",
            settings: None,
            objects: vec![
                gateway_class("istio-waypoint")
                    .annotation(INBOUND_BINDING, "PROXY/15088")
                    .build(),
                gateway("ns", "waypoint")
                    .hbone_listener(Default::default())
                    .status_hostname(wp_host)
                    .build(),
                ready_pod("waypoint-pod")
                    .label(GATEWAY_NAME, "waypoint")
                    .build(),
            ],
            want: vec![Workload {
                application_tunnel: Some(ApplicationTunnel {
                    protocol: application_tunnel::Protocol::Proxy as i32,
                    port: 15088,
                }),
                ..pod_workload("waypoint-pod")
            }],
        },
        Case {
            name: "instance of a gateway that is not ready binds like any pod",
            settings: None,
            objects: vec![
                namespace("ns").label(USE_WAYPOINT, "other").build(),
                gateway("ns", "waypoint")
                    .hbone_listener(Default::default())
                    .annotation(INBOUND_BINDING, "PROXY/15088")
                    .build(),
                gateway("ns", "other")
                    .hbone_listener(Default::default())
                    .status_hostname("other.ns.svc.domain.suffix")
                    .label(WAYPOINT_FOR, "workload")
                    .build(),
                ready_pod("waypoint-pod")
                    .label(GATEWAY_NAME, "waypoint")
                    .build(),
            ],
            want: vec![Workload {
                waypoint: hostname_waypoint("ns", "other.ns.svc.domain.suffix"),
                ..pod_workload("waypoint-pod")
            }],
        },
    ]);
}

#[test]
fn endpoint_slice_workloads() {
    let kubernetes = || {
        service("default", "kubernetes")
            .cluster_ip("10.96.0.1")
            .port("https", 443, 6443)
    };
    let api_server = || Workload {
        services: BTreeMap::from([(
            "default/kubernetes.default.svc.domain.suffix".to_string(),
            port_list(&[(443, 6443)]),
        )]),
        ..slice_workload("default", "kubernetes", "172.18.0.5")
    };
    run(vec![
        Case {
            name: "api server",
            settings: None,
            objects: vec![
                kubernetes().build(),
                endpoint_slice("default", "kubernetes")
                    .service("kubernetes")
                    .port("https", 6443)
                    .endpoint(&["172.18.0.5"], true, None)
                    .build(),
            ],
            want: vec![api_server()],
        },
        Case {
            name: "api server, ready unset counts as ready",
            settings: None,
            objects: vec![
                kubernetes().build(),
                endpoint_slice("default", "kubernetes")
                    .service("kubernetes")
                    .port("https", 6443)
                    .endpoint_ready_unset(&["172.18.0.5"], None)
                    .build(),
            ],
            want: vec![api_server()],
        },
        Case {
            name: "api server not ready",
            settings: None,
            objects: vec![
                kubernetes().build(),
                endpoint_slice("default", "kubernetes")
                    .service("kubernetes")
                    .port("https", 6443)
                    .endpoint(&["172.18.0.5"], false, None)
                    .build(),
            ],
            want: vec![Workload {
                status: WorkloadStatus::Unhealthy as i32,
                ..api_server()
            }],
        },
        Case {
            name: "ports: only TCP, and only those named like a Service port",
            settings: None,
            objects: vec![
                kubernetes().udp_port("dns", 53, 5353).build(),
                endpoint_slice("default", "kubernetes")
                    .service("kubernetes")
                    .port("https", 6443)
                    .udp_port("dns", 5353)
                    .port("metrics", 9090)
                    .endpoint(&["172.18.0.5"], true, None)
                    .build(),
            ],
            want: vec![api_server()],
        },
        Case {
            name: "one workload per endpoint; pod endpoints and repeated addresses skipped",
            settings: None,
            objects: vec![
                kubernetes().build(),
                endpoint_slice("default", "kubernetes")
                    .service("kubernetes")
                    .port("https", 6443)
                    .endpoint(&["172.18.0.5"], true, None)
                    .endpoint(&["172.18.0.6"], false, None)
                    .endpoint(&["172.18.0.5"], true, None)
                    .endpoint(
                        &["172.18.0.7"],
                        true,
                        Some(pod_ref("default", "p", "uid-default-p")),
                    )
                    .endpoint(&["not-an-ip"], true, None)
                    .build(),
            ],
            want: vec![
                api_server(),
                Workload {
                    uid: "cluster0/discovery.k8s.io/EndpointSlice/default/kubernetes/172.18.0.6"
                        .to_string(),
                    addresses: vec![ip("172.18.0.6")],
                    status: WorkloadStatus::Unhealthy as i32,
                    ..api_server()
                },
            ],
        },
        Case {
            name: "FQDN slice gives nothing",
            settings: None,
            objects: vec![
                kubernetes().build(),
                endpoint_slice("default", "kubernetes")
                    .service("kubernetes")
                    .address_type("FQDN")
                    .port("https", 6443)
                    .endpoint(&["172.18.0.5"], true, None)
                    .build(),
            ],
            want: vec![],
        },
        Case {
            name: "slice whose Service is missing gives nothing",
            settings: None,
            objects: vec![
                endpoint_slice("default", "kubernetes")
                    .service("kubernetes")
                    .port("https", 6443)
                    .endpoint(&["172.18.0.5"], true, None)
                    .build(),
            ],
            want: vec![],
        },
        Case {
            name: "slice without the service-name label gives nothing",
            settings: None,
            objects: vec![
                kubernetes().build(),
                endpoint_slice("default", "kubernetes")
                    .port("https", 6443)
                    .endpoint(&["172.18.0.5"], true, None)
                    .build(),
            ],
            want: vec![],
        },
        Case {
            name: "defaults: cluster Kubernetes, empty network",
            settings: Some(Settings::default()),
            objects: vec![
                kubernetes().build(),
                endpoint_slice("default", "kubernetes")
                    .service("kubernetes")
                    .port("https", 6443)
                    .endpoint(&["172.18.0.5"], true, None)
                    .build(),
            ],
            want: vec![Workload {
                uid: "Kubernetes/discovery.k8s.io/EndpointSlice/default/kubernetes/172.18.0.5"
                    .to_string(),
                network: String::new(),
                cluster_id: "Kubernetes".to_string(),
                services: BTreeMap::from([(
                    "default/kubernetes.default.svc.cluster.local".to_string(),
                    port_list(&[(443, 6443)]),
                )]),
                ..api_server()
            }],
        },
    ]);
}
