//! Application workloads: Services and the Running, Ready pods of their Deployments, as `kubectl`
//! prints them.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::cluster::{Gen, timestamp_at};

pub(crate) fn service_object(g: &mut Gen<'_>, ns: &str, name: &str) -> Value {
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
pub(crate) fn deployment_pods(
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

/// What differs between the generated pods (application and waypoint).
pub(crate) struct PodParts<'a> {
    pub(crate) ns: &'a str,
    pub(crate) name: &'a str,
    pub(crate) replica_set: &'a str,
    pub(crate) labels: Value,
    pub(crate) annotations: Value,
    pub(crate) service_account: &'a str,
    pub(crate) container: Value,
    pub(crate) image: &'a str,
    pub(crate) qos: &'a str,
    pub(crate) grace: u32,
}

/// A running, Ready pod owned by a ReplicaSet, scheduled on a random node, as `kubectl` prints it.
pub(crate) fn pod_object(g: &mut Gen<'_>, p: PodParts<'_>) -> Value {
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
