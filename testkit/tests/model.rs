//! Generated clusters read by the object model and the index: every object parses into what the
//! generator means it to be, and the index builds the expected workloads, Services and waypoints.

use std::collections::{BTreeMap, BTreeSet};

use ambient_index::model::{Kind, Object, StatusAddress};
use ambient_testkit::{ClusterSpec, SYSTEM_NAMESPACE, WAYPOINT_CLASS, for_each_object};

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

/// Every generated object, parsed; each must be of a kind the model reads.
fn parse_all(spec: &ClusterSpec) -> Vec<Object> {
    let mut out = Vec::with_capacity(spec.object_count());
    for_each_object(spec, |value| {
        let name = format!(
            "{}/{}",
            value["kind"].as_str().unwrap_or("?"),
            value["metadata"]["name"].as_str().unwrap_or("?")
        );
        match Object::from_value(value) {
            Ok(Some(obj)) => out.push(obj),
            Ok(None) => panic!("{name}: a kind the model does not read"),
            Err(e) => panic!("{name} does not parse: {e}"),
        }
    });
    out
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
    let objects = parse_all(&spec);
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
    let objects = parse_all(&plain);
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
fn pods_are_spread_over_services_namespaces_and_nodes() {
    let spec = small();
    let objects = parse_all(&spec);
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
    for o in parse_all(&spec) {
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
                assert_eq!(gw.addresses[0], StatusAddress::Hostname(host));
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
    let index = ambient_index::Index::build(Default::default(), parse_all(&spec));
    // One workload per pod (waypoint pods included) plus one Service address per Service.
    assert_eq!(index.addresses().len(), (95 + 4) + (10 + 4));
    assert_eq!(index.waypoints().count(), 4);
}
