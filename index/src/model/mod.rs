//! The Kubernetes object model of ambientd: the kinds the index reads, in slim typed form.
//!
//! Sources (files, Kubernetes) hand raw objects to [`Object::from_value`], which picks the kind by
//! `apiVersion`/`kind`, parses it with the typed Kubernetes (k8s-openapi), Gateway API and Istio definitions, and keeps only
//! what the index needs.

pub mod core;
pub mod gateway;
pub mod istio;
pub mod labels;

use std::fmt;

pub use self::core::{
    Endpoint, EndpointPort, EndpointSlice, Meta, NamedPort, Namespace, Node, OwnerRef, Pod,
    Service, ServicePort, TargetPort, TargetRef,
};
pub use self::gateway::{
    AllowedRoutes, Gateway, GatewayClass, HttpRoute, HttpRouteSpec, Listener, ParentReference,
    StatusAddress,
};
pub use self::istio::{AuthorizationPolicy, PeerAuthentication};
pub use self::labels::{LabelSelector, Labels};

/// Label and annotation names the index reads (docs/reference/istiod.md#labels-and-annotations).
pub mod well_known {
    pub const DATAPLANE_MODE: &str = "istio.io/dataplane-mode";
    pub const REDIRECTION: &str = "ambient.istio.io/redirection";
    pub const SIDECAR_STATUS: &str = "sidecar.istio.io/status";
    pub const USE_WAYPOINT: &str = "istio.io/use-waypoint";
    pub const USE_WAYPOINT_NAMESPACE: &str = "istio.io/use-waypoint-namespace";
    pub const WAYPOINT_FOR: &str = "istio.io/waypoint-for";
    pub const INGRESS_USE_WAYPOINT: &str = "istio.io/ingress-use-waypoint";
    pub const GATEWAY_NAME: &str = "gateway.networking.k8s.io/gateway-name";
    pub const MANAGED: &str = "gateway.istio.io/managed";
    pub const MANAGED_MESH: &str = "istio.io-mesh-controller";
    pub const MANAGED_EAST_WEST: &str = "istio.io-eastwest-controller";
    pub const INBOUND_BINDING: &str = "ambient.istio.io/waypoint-inbound-binding";
    pub const TUNNEL: &str = "networking.istio.io/tunnel";
    pub const CANONICAL_NAME: &str = "service.istio.io/canonical-name";
    pub const CANONICAL_REVISION: &str = "service.istio.io/canonical-revision";
    pub const WORKLOAD_NAME: &str = "service.istio.io/workload-name";
    pub const NETWORK: &str = "topology.istio.io/network";
    pub const TRAFFIC_DISTRIBUTION: &str = "networking.istio.io/traffic-distribution";
    pub const DRY_RUN: &str = "istio.io/dry-run";
    pub const REVISION: &str = "istio.io/rev";
    pub const SERVICE_NAME: &str = "kubernetes.io/service-name";
}

/// The annotations stored with an object; every other annotation is dropped at parse time.
pub mod annotations {
    use super::well_known::*;

    pub const KEPT: &[&str] = &[
        REDIRECTION,
        SIDECAR_STATUS,
        TRAFFIC_DISTRIBUTION,
        INBOUND_BINDING,
        DRY_RUN,
    ];

    pub fn is_kept(key: &str) -> bool {
        KEPT.contains(&key)
    }
}

/// The kinds ambientd reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Namespace,
    Node,
    Pod,
    Service,
    EndpointSlice,
    GatewayClass,
    Gateway,
    HttpRoute,
    AuthorizationPolicy,
    PeerAuthentication,
}

impl Kind {
    pub const ALL: [Kind; 10] = [
        Kind::Namespace,
        Kind::Node,
        Kind::Pod,
        Kind::Service,
        Kind::EndpointSlice,
        Kind::GatewayClass,
        Kind::Gateway,
        Kind::HttpRoute,
        Kind::AuthorizationPolicy,
        Kind::PeerAuthentication,
    ];

    /// The kind for an `apiVersion`/`kind` pair, or `None` for kinds ambientd does not read.
    pub fn from_api(api_version: &str, kind: &str) -> Option<Kind> {
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        Some(match (group, kind) {
            ("", "Namespace") => Kind::Namespace,
            ("", "Node") => Kind::Node,
            ("", "Pod") => Kind::Pod,
            ("", "Service") => Kind::Service,
            ("discovery.k8s.io", "EndpointSlice") => Kind::EndpointSlice,
            ("gateway.networking.k8s.io", "GatewayClass") => Kind::GatewayClass,
            ("gateway.networking.k8s.io", "Gateway") => Kind::Gateway,
            ("gateway.networking.k8s.io", "HTTPRoute") => Kind::HttpRoute,
            ("security.istio.io", "AuthorizationPolicy") => Kind::AuthorizationPolicy,
            ("security.istio.io", "PeerAuthentication") => Kind::PeerAuthentication,
            _ => return None,
        })
    }

    pub fn cluster_scoped(self) -> bool {
        matches!(self, Kind::Namespace | Kind::Node | Kind::GatewayClass)
    }

    /// The name Kubernetes uses (`HTTPRoute`, not `HttpRoute`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::Node => "Node",
            Kind::Pod => "Pod",
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::GatewayClass => "GatewayClass",
            Kind::Gateway => "Gateway",
            Kind::HttpRoute => "HTTPRoute",
            Kind::AuthorizationPolicy => "AuthorizationPolicy",
            Kind::PeerAuthentication => "PeerAuthentication",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identifies one object: kind, namespace (empty for cluster-scoped kinds) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl ObjectRef {
    pub fn new(kind: Kind, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectRef {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectRef {
    /// `Kind/namespace/name`, or `Kind/name` for cluster-scoped kinds.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}/{}", self.kind, self.name)
        } else {
            write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// Why an object could not be turned into its typed form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("metadata.name is missing")]
    MissingName,
    #[error("{0}")]
    Decode(String),
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
}

/// One typed object of a kind ambientd reads.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    Namespace(Namespace),
    Node(Node),
    Pod(Box<Pod>),
    Service(Box<Service>),
    EndpointSlice(Box<EndpointSlice>),
    GatewayClass(GatewayClass),
    Gateway(Box<Gateway>),
    HttpRoute(Box<HttpRoute>),
    AuthorizationPolicy(Box<AuthorizationPolicy>),
    PeerAuthentication(Box<PeerAuthentication>),
}

/// Decodes a typed object, naming the field that failed (`spec.ports[0].port: invalid type: ...`).
pub(crate) fn typed<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
) -> Result<T, ModelError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." {
            ModelError::Decode(inner.to_string())
        } else {
            ModelError::Decode(format!("{path}: {inner}"))
        }
    })
}

impl Object {
    /// Parses one raw object (JSON-shaped, as decoded from YAML). `Ok(None)` for kinds ambientd does not read.
    pub fn from_value(value: serde_json::Value) -> Result<Option<Object>, ModelError> {
        let api_version = value
            .get("apiVersion")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let kind = value.get("kind").and_then(|v| v.as_str()).unwrap_or("");
        let Some(kind) = Kind::from_api(api_version, kind) else {
            return Ok(None);
        };
        Self::from_value_of(kind, value).map(Some)
    }

    /// Parses one raw object already known to be of `kind`.
    pub fn from_value_of(kind: Kind, value: serde_json::Value) -> Result<Object, ModelError> {
        Ok(match kind {
            Kind::Namespace => Object::Namespace(Namespace::from_k8s(typed(value)?)?),
            Kind::Node => Object::Node(Node::from_k8s(typed(value)?)?),
            Kind::Pod => Object::Pod(Box::new(Pod::from_k8s(typed(value)?)?)),
            Kind::Service => Object::Service(Box::new(Service::from_k8s(typed(value)?)?)),
            Kind::EndpointSlice => {
                Object::EndpointSlice(Box::new(EndpointSlice::from_k8s(typed(value)?)?))
            }
            Kind::GatewayClass => Object::GatewayClass(GatewayClass::from_value(value)?),
            Kind::Gateway => Object::Gateway(Box::new(Gateway::from_value(value)?)),
            Kind::HttpRoute => Object::HttpRoute(Box::new(HttpRoute::from_value(value)?)),
            Kind::AuthorizationPolicy => {
                Object::AuthorizationPolicy(Box::new(AuthorizationPolicy::from_value(value)?))
            }
            Kind::PeerAuthentication => {
                Object::PeerAuthentication(Box::new(PeerAuthentication::from_value(value)?))
            }
        })
    }

    pub fn kind(&self) -> Kind {
        match self {
            Object::Namespace(_) => Kind::Namespace,
            Object::Node(_) => Kind::Node,
            Object::Pod(_) => Kind::Pod,
            Object::Service(_) => Kind::Service,
            Object::EndpointSlice(_) => Kind::EndpointSlice,
            Object::GatewayClass(_) => Kind::GatewayClass,
            Object::Gateway(_) => Kind::Gateway,
            Object::HttpRoute(_) => Kind::HttpRoute,
            Object::AuthorizationPolicy(_) => Kind::AuthorizationPolicy,
            Object::PeerAuthentication(_) => Kind::PeerAuthentication,
        }
    }

    pub fn object_ref(&self) -> ObjectRef {
        let (ns, name) = match self {
            Object::Namespace(o) => ("", o.meta.name.as_str()),
            Object::Node(o) => ("", o.name.as_str()),
            Object::Pod(o) => (o.meta.namespace.as_str(), o.meta.name.as_str()),
            Object::Service(o) => (o.meta.namespace.as_str(), o.meta.name.as_str()),
            Object::EndpointSlice(o) => (o.meta.namespace.as_str(), o.meta.name.as_str()),
            Object::GatewayClass(o) => ("", o.meta.name.as_str()),
            Object::Gateway(o) => (o.meta.namespace.as_str(), o.meta.name.as_str()),
            Object::HttpRoute(o) => (o.meta.namespace.as_str(), o.meta.name.as_str()),
            Object::AuthorizationPolicy(o) => (o.meta.namespace.as_str(), o.meta.name.as_str()),
            Object::PeerAuthentication(o) => (o.meta.namespace.as_str(), o.meta.name.as_str()),
        };
        ObjectRef::new(self.kind(), ns, name)
    }
}
