//! Each namespace's waypoint: its Gateway (programmed, with addresses), its Service and its pod.

use serde_json::{Value, json};

use crate::cluster::Gen;
use crate::spec::{WAYPOINT_CLASS, WAYPOINT_NAME};
use crate::workload::{PodParts, pod_object};

pub(crate) fn waypoint_gateway(g: &mut Gen<'_>, ns: &str, ip: &str, uid: &str) -> Value {
    let ts = g.timestamp();
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {
            "annotations": { "gateway.istio.io/controller-version": "5" },
            "creationTimestamp": ts,
            "generation": 1,
            "labels": { "istio.io/waypoint-for": "service" },
            "name": WAYPOINT_NAME,
            "namespace": ns,
            "resourceVersion": g.resource_version(),
            "uid": uid,
        },
        "spec": {
            "gatewayClassName": WAYPOINT_CLASS,
            "listeners": [{
                "allowedRoutes": { "namespaces": { "from": "Same" } },
                "name": "mesh",
                "port": 15008,
                "protocol": "HBONE",
            }],
        },
        "status": {
            "addresses": [
                { "type": "Hostname", "value": format!("{WAYPOINT_NAME}.{ns}.svc.cluster.local") },
                { "type": "IPAddress", "value": ip },
            ],
            "conditions": [
                {
                    "lastTransitionTime": ts,
                    "message": "Resource accepted",
                    "observedGeneration": 1,
                    "reason": "Accepted",
                    "status": "True",
                    "type": "Accepted",
                },
                {
                    "lastTransitionTime": ts,
                    "message": format!(
                        "Resource programmed, assigned to service(s) {WAYPOINT_NAME}.{ns}.svc.cluster.local:15008"
                    ),
                    "observedGeneration": 1,
                    "reason": "Programmed",
                    "status": "True",
                    "type": "Programmed",
                },
            ],
            "listeners": [{
                "attachedRoutes": 0,
                "conditions": [{
                    "lastTransitionTime": ts,
                    "message": "No errors found",
                    "observedGeneration": 1,
                    "reason": "Accepted",
                    "status": "True",
                    "type": "Accepted",
                }],
                "name": "mesh",
                "supportedKinds": [],
            }],
        },
    })
}

pub(crate) fn waypoint_service(g: &mut Gen<'_>, ns: &str, ip: &str, gateway_uid: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "creationTimestamp": g.timestamp(),
            "labels": {
                "gateway.istio.io/managed": "istio.io-mesh-controller",
                "gateway.networking.k8s.io/gateway-name": WAYPOINT_NAME,
                "istio.io/gateway-name": WAYPOINT_NAME,
            },
            "name": WAYPOINT_NAME,
            "namespace": ns,
            "ownerReferences": [{
                "apiVersion": "gateway.networking.k8s.io/v1beta1",
                "kind": "Gateway",
                "name": WAYPOINT_NAME,
                "uid": gateway_uid,
            }],
            "resourceVersion": g.resource_version(),
            "uid": g.uid(),
        },
        "spec": {
            "clusterIP": ip,
            "clusterIPs": [ip],
            "internalTrafficPolicy": "Cluster",
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "ports": [
                {
                    "appProtocol": "tcp",
                    "name": "status-port",
                    "port": 15021,
                    "protocol": "TCP",
                    "targetPort": 15021,
                },
                {
                    "appProtocol": "all",
                    "name": "mesh",
                    "port": 15008,
                    "protocol": "TCP",
                    "targetPort": 15008,
                },
            ],
            "selector": { "gateway.networking.k8s.io/gateway-name": WAYPOINT_NAME },
            "sessionAffinity": "None",
            "type": "ClusterIP",
        },
        "status": { "loadBalancer": {} },
    })
}

pub(crate) fn waypoint_pod(g: &mut Gen<'_>, ns: &str) -> Value {
    let hash = g.safe_string(10);
    let replica_set = format!("{WAYPOINT_NAME}-{hash}");
    let name = format!("{replica_set}-{}", g.safe_string(5));
    let labels = json!({
        "gateway.istio.io/managed": "istio.io-mesh-controller",
        "gateway.networking.k8s.io/gateway-name": WAYPOINT_NAME,
        "istio.io/dataplane-mode": "none",
        "istio.io/gateway-name": WAYPOINT_NAME,
        "pod-template-hash": hash,
        "service.istio.io/canonical-name": WAYPOINT_NAME,
        "service.istio.io/canonical-revision": "latest",
        "sidecar.istio.io/inject": "false",
    });
    let annotations = json!({
        "istio.io/rev": "default",
        "prometheus.io/path": "/stats/prometheus",
        "prometheus.io/port": "15020",
        "prometheus.io/scrape": "true",
    });
    let container = json!({
        "args": [
            "proxy", "waypoint", "--domain", "$(POD_NAMESPACE).svc.cluster.local",
            "--serviceCluster", "waypoint.$(POD_NAMESPACE)",
        ],
        "image": "docker.io/istio/proxyv2:1.26.0",
        "imagePullPolicy": "IfNotPresent",
        "name": "istio-proxy",
        "ports": [
            { "containerPort": 15021, "name": "status-port", "protocol": "TCP" },
            { "containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP" },
        ],
        "resources": {
            "limits": { "cpu": "2", "memory": "1Gi" },
            "requests": { "cpu": "100m", "memory": "128Mi" },
        },
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    });
    let p = PodParts {
        ns,
        name: &name,
        replica_set: &replica_set,
        labels,
        annotations,
        service_account: WAYPOINT_NAME,
        container,
        image: "docker.io/istio/proxyv2:1.26.0",
        qos: "Burstable",
        grace: 2,
    };
    pod_object(g, p)
}
