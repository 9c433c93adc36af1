//! Who is on the other end of a stream: the node its first request names, read as istiod reads it.

use envoy_types::pb::envoy::config::core::v3::Node;

/// The proxy a stream speaks for, from its first request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Peer {
    /// The node id as sent.
    pub(super) node: String,
    /// The node type: the part of the id before the first `~` (`ztunnel`, `waypoint`, ...).
    pub(super) proxy_type: String,
    /// `NODE_NAME` of the metadata: the Kubernetes node the proxy runs on.
    pub(super) node_name: Option<String>,
    /// `NAMESPACE` of the metadata, else the namespace of the id's `<pod>.<namespace>` part.
    pub(super) namespace: String,
    /// `SERVICE_ACCOUNT` of the metadata.
    pub(super) service_account: Option<String>,
    /// `<pod>.<namespace>` of the id.
    pub(super) workload: String,
}

/// Reads the node: `<type>~<ip>~<pod>.<namespace>~<namespace>.svc.<domain>` (istiod's service-node
/// format) plus the `NAMESPACE`, `SERVICE_ACCOUNT` and `NODE_NAME` metadata.
pub(super) fn parse_node(node: &Node) -> Result<Peer, String> {
    let bad = |why: &str| {
        format!(
            "node id {:?} is not <type>~<ip>~<pod>.<namespace>~<namespace>.svc.<domain>: {why}",
            node.id
        )
    };
    let parts: Vec<&str> = node.id.split('~').collect();
    let [proxy_type, ip, pod, _domain] = parts.as_slice() else {
        return Err(bad("it needs exactly four parts separated by '~'"));
    };
    if !matches!(*proxy_type, "ztunnel" | "waypoint" | "sidecar" | "router") {
        return Err(bad("the type must be ztunnel, waypoint, sidecar or router"));
    }
    if ip.parse::<std::net::IpAddr>().is_err() {
        return Err(bad("the second part must be an IP address"));
    }
    let metadata = |key: &str| -> Option<String> {
        use envoy_types::pb::google::protobuf::value::Kind;
        let value = node.metadata.as_ref()?.fields.get(key)?;
        match &value.kind {
            Some(Kind::StringValue(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        }
    };
    let namespace = metadata("NAMESPACE")
        .or_else(|| pod.split_once('.').map(|(_, ns)| ns.to_string()))
        .unwrap_or_default();
    Ok(Peer {
        node: node.id.clone(),
        proxy_type: proxy_type.to_string(),
        namespace,
        service_account: metadata("SERVICE_ACCOUNT"),
        node_name: metadata("NODE_NAME"),
        workload: pod.to_string(),
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::xds) fn node(id: &str, meta: &[(&str, &str)]) -> Node {
        use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
        Node {
            id: id.to_string(),
            metadata: Some(Struct {
                fields: meta
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.to_string(),
                            Value {
                                kind: Some(Kind::StringValue(v.to_string())),
                            },
                        )
                    })
                    .collect(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn node_ids_parse_as_istiod_reads_them() {
        let zt = "ztunnel~10.0.0.9~ztunnel-abc.istio-system~istio-system.svc.cluster.local";
        let p = parse_node(&node(zt, &[])).unwrap();
        assert_eq!(
            (
                p.proxy_type.as_str(),
                p.namespace.as_str(),
                p.service_account,
                p.workload.as_str()
            ),
            ("ztunnel", "istio-system", None, "ztunnel-abc.istio-system")
        );
        let p = parse_node(&node(
            zt,
            &[("NAMESPACE", "kube-system"), ("SERVICE_ACCOUNT", "zt")],
        ))
        .unwrap();
        assert_eq!(
            (p.namespace.as_str(), p.service_account.as_deref()),
            ("kube-system", Some("zt"))
        );
    }

    #[test]
    fn malformed_node_ids_are_refused_with_the_reason() {
        for (id, why) in [
            ("ztunnel", "exactly four parts"),
            ("ztunnel~1.2.3.4~a.b", "exactly four parts"),
            ("proxy~1.2.3.4~a.b~b.svc.cluster.local", "the type must be"),
            ("ztunnel~not-an-ip~a.b~b.svc.cluster.local", "IP address"),
        ] {
            let err = parse_node(&node(id, &[])).unwrap_err();
            assert!(err.contains(why), "{id}: {err}");
            assert!(err.contains(id), "{id}: {err}");
        }
    }
}
