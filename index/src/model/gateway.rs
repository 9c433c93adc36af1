//! Gateway API kinds (`gateway.networking.k8s.io/v1`): Gateway and GatewayClass reduced to what waypoint
//! binding reads, and HTTPRoute kept whole (its standard-channel fields) for the waypoint routes built on it.
//!
//! The wire types are written here rather than taken from a generated Gateway API crate: those crates
//! derive Kubernetes client traits and would pull a Kubernetes client into the index. Field names and
//! required fields follow the v1 CRDs; fields this crate does not know are ignored, as the API server's
//! pruning would do.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use super::ModelError;
use super::core::Meta;
use super::labels::LabelSelector;

/// Which namespaces may attach to a listener (`allowedRoutes.namespaces`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AllowedRoutes {
    #[default]
    Same,
    All,
    Selector(LabelSelector),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub port: i32,
    pub protocol: String,
    pub allowed_routes: AllowedRoutes,
}

/// A `status.addresses` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusAddress {
    Hostname(String),
    Ip(String),
    /// A named address or another implementation-specific type; never used as a waypoint address.
    Other {
        kind: String,
        value: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    pub meta: Meta,
    pub class: String,
    pub listeners: Vec<Listener>,
    pub addresses: Vec<StatusAddress>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayClass {
    pub meta: Meta,
    pub controller: String,
}

/// An HTTPRoute: its metadata and its whole spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRoute {
    pub meta: Meta,
    pub spec: HttpRouteSpec,
}

// ---- Gateway and GatewayClass on the wire --------------------------------------------------------

#[derive(Debug, Deserialize)]
struct GatewayWire {
    metadata: ObjectMeta,
    spec: GatewaySpecWire,
    #[serde(default)]
    status: Option<GatewayStatusWire>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GatewaySpecWire {
    gateway_class_name: String,
    listeners: Vec<ListenerWire>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListenerWire {
    name: String,
    port: i32,
    protocol: String,
    #[serde(default)]
    allowed_routes: Option<AllowedRoutesWire>,
}

#[derive(Debug, Deserialize)]
struct AllowedRoutesWire {
    #[serde(default)]
    namespaces: Option<RouteNamespacesWire>,
}

#[derive(Debug, Deserialize)]
struct RouteNamespacesWire {
    #[serde(default)]
    from: Option<FromNamespaces>,
    #[serde(default)]
    selector: Option<LabelSelectorWire>,
}

/// `allowedRoutes.namespaces.from`: the CRD's enum; another value does not parse.
#[derive(Debug, Clone, Copy, Deserialize)]
enum FromNamespaces {
    All,
    Same,
    Selector,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LabelSelectorWire {
    #[serde(default)]
    match_labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    match_expressions: Vec<RequirementWire>,
}

#[derive(Debug, Deserialize)]
struct RequirementWire {
    key: String,
    operator: String,
    #[serde(default)]
    values: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct GatewayStatusWire {
    #[serde(default)]
    addresses: Vec<StatusAddressWire>,
}

#[derive(Debug, Deserialize)]
struct StatusAddressWire {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    value: String,
}

#[derive(Debug, Deserialize)]
struct GatewayClassWire {
    metadata: ObjectMeta,
    spec: GatewayClassSpecWire,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GatewayClassSpecWire {
    controller_name: String,
}

impl Gateway {
    pub fn from_value(value: serde_json::Value) -> Result<Self, ModelError> {
        let g: GatewayWire = super::typed(value)?;
        let meta = Meta::from_k8s(g.metadata, false)?;
        let listeners = g
            .spec
            .listeners
            .into_iter()
            .map(|l| {
                let ns = l.allowed_routes.and_then(|a| a.namespaces);
                let allowed_routes = match ns {
                    None => AllowedRoutes::Same,
                    Some(ns) => match ns.from {
                        None | Some(FromNamespaces::Same) => AllowedRoutes::Same,
                        Some(FromNamespaces::All) => AllowedRoutes::All,
                        // No selector selects no namespace (Kubernetes' `LabelSelectorAsSelector(nil)`
                        // is `Nothing`, which istiod's `makeWaypointSelector` keeps); an empty one
                        // selects every namespace. An `In` without values matches nothing.
                        Some(FromNamespaces::Selector) => match ns.selector {
                            None => AllowedRoutes::Selector(LabelSelector::from_parts(
                                None,
                                [(String::new(), "In".to_string(), None)],
                            )),
                            Some(sel) => AllowedRoutes::Selector(LabelSelector::from_parts(
                                sel.match_labels,
                                sel.match_expressions
                                    .into_iter()
                                    .map(|e| (e.key, e.operator, e.values)),
                            )),
                        },
                    },
                };
                Listener {
                    name: l.name,
                    port: l.port,
                    protocol: l.protocol,
                    allowed_routes,
                }
            })
            .collect();
        let addresses = g
            .status
            .map(|s| s.addresses)
            .unwrap_or_default()
            .into_iter()
            .map(|a| match a.kind.as_deref() {
                None | Some("IPAddress") => StatusAddress::Ip(a.value),
                Some("Hostname") => StatusAddress::Hostname(a.value),
                Some(other) => StatusAddress::Other {
                    kind: other.to_string(),
                    value: a.value,
                },
            })
            .collect();
        Ok(Gateway {
            meta,
            class: g.spec.gateway_class_name,
            listeners,
            addresses,
        })
    }
}

impl GatewayClass {
    pub fn from_value(value: serde_json::Value) -> Result<Self, ModelError> {
        let c: GatewayClassWire = super::typed(value)?;
        Ok(GatewayClass {
            meta: Meta::from_k8s(c.metadata, true)?,
            controller: c.spec.controller_name,
        })
    }
}

// ---- HTTPRoute ----------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct HttpRouteWire {
    metadata: ObjectMeta,
    spec: HttpRouteSpec,
}

impl HttpRoute {
    pub fn from_value(value: serde_json::Value) -> Result<Self, ModelError> {
        let r: HttpRouteWire = super::typed(value)?;
        Ok(HttpRoute {
            meta: Meta::from_k8s(r.metadata, false)?,
            spec: r.spec,
        })
    }
}

/// `HTTPRoute.spec`. Absent lists are empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteSpec {
    #[serde(default)]
    pub parent_refs: Vec<ParentReference>,
    #[serde(default)]
    pub hostnames: Vec<String>,
    #[serde(default)]
    pub rules: Vec<HttpRouteRule>,
}

/// A `parentRefs` entry: a Gateway (the default group and kind) or, for mesh routes, a Service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentReference {
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    pub name: String,
    #[serde(default)]
    pub section_name: Option<String>,
    #[serde(default)]
    pub port: Option<i32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteRule {
    #[serde(default)]
    pub name: Option<String>,
    /// Absent: one match of every request (path prefix `/`).
    #[serde(default)]
    pub matches: Vec<HttpRouteMatch>,
    #[serde(default)]
    pub filters: Vec<HttpRouteFilter>,
    #[serde(default)]
    pub backend_refs: Vec<HttpBackendRef>,
    #[serde(default)]
    pub timeouts: Option<HttpRouteTimeouts>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteMatch {
    #[serde(default)]
    pub path: Option<HttpPathMatch>,
    #[serde(default)]
    pub headers: Vec<HttpHeaderMatch>,
    #[serde(default)]
    pub query_params: Vec<HttpQueryParamMatch>,
    #[serde(default)]
    pub method: Option<String>,
}

/// `type` is `Exact`, `PathPrefix` (the default) or `RegularExpression`; `value` defaults to `/`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpPathMatch {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
}

/// `type` is `Exact` (the default) or `RegularExpression`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpHeaderMatch {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    pub name: String,
    pub value: String,
}

/// `type` is `Exact` (the default) or `RegularExpression`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpQueryParamMatch {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    pub name: String,
    pub value: String,
}

/// One filter: `type` names which of the other fields applies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteFilter {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub request_header_modifier: Option<HttpHeaderFilter>,
    #[serde(default)]
    pub response_header_modifier: Option<HttpHeaderFilter>,
    #[serde(default)]
    pub request_mirror: Option<HttpRequestMirrorFilter>,
    #[serde(default)]
    pub request_redirect: Option<HttpRequestRedirectFilter>,
    #[serde(default, rename = "urlRewrite")]
    pub url_rewrite: Option<HttpUrlRewriteFilter>,
    #[serde(default)]
    pub extension_ref: Option<LocalObjectReference>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpHeaderFilter {
    #[serde(default)]
    pub set: Vec<HttpHeader>,
    #[serde(default)]
    pub add: Vec<HttpHeader>,
    #[serde(default)]
    pub remove: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpHeader {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRequestMirrorFilter {
    pub backend_ref: BackendObjectReference,
    #[serde(default)]
    pub percent: Option<i32>,
    #[serde(default)]
    pub fraction: Option<Fraction>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fraction {
    pub numerator: i32,
    #[serde(default)]
    pub denominator: Option<i32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRequestRedirectFilter {
    #[serde(default)]
    pub scheme: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub path: Option<HttpPathModifier>,
    #[serde(default)]
    pub port: Option<i32>,
    #[serde(default)]
    pub status_code: Option<i32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpUrlRewriteFilter {
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub path: Option<HttpPathModifier>,
}

/// `type` is `ReplaceFullPath` or `ReplacePrefixMatch`, naming which value applies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpPathModifier {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub replace_full_path: Option<String>,
    #[serde(default)]
    pub replace_prefix_match: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalObjectReference {
    pub group: String,
    pub kind: String,
    pub name: String,
}

/// A backend: a Service (the default group and kind) of the route's namespace unless one is named.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendObjectReference {
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub port: Option<i32>,
}

/// A `backendRefs` entry: the backend, its weight (1 when absent) and its own filters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpBackendRef {
    #[serde(flatten)]
    pub backend: BackendObjectReference,
    #[serde(default)]
    pub weight: Option<i32>,
    #[serde(default)]
    pub filters: Vec<HttpRouteFilter>,
}

/// Durations as Gateway API writes them (`10s`, `500ms`), kept as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteTimeouts {
    #[serde(default)]
    pub request: Option<String>,
    #[serde(default)]
    pub backend_request: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn gateway_reads_listeners_and_status_addresses() {
        let gw = Gateway::from_value(json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "waypoint", "namespace": "backend"},
            "spec": {
                "gatewayClassName": "istio-waypoint",
                "listeners": [
                    {"name": "mesh", "port": 15008, "protocol": "HBONE",
                     "allowedRoutes": {"namespaces": {"from": "All"}}},
                    {"name": "sel", "port": 15008, "protocol": "HBONE",
                     "allowedRoutes": {"namespaces": {"from": "Selector"}}}
                ]
            },
            "status": {"addresses": [
                {"type": "IPAddress", "value": "10.0.0.9"},
                {"type": "Hostname", "value": "waypoint.backend.svc.cluster.local"},
                {"type": "example.com/name", "value": "x"}
            ]}
        }))
        .unwrap();
        assert_eq!(gw.class, "istio-waypoint");
        assert_eq!(gw.listeners[0].allowed_routes, AllowedRoutes::All);
        // `Selector` without a selector selects nothing: an `In` with no values.
        assert!(
            matches!(&gw.listeners[1].allowed_routes, AllowedRoutes::Selector(s)
                if !s.matches(&crate::model::Labels::default()))
        );
        assert_eq!(
            gw.addresses,
            [
                StatusAddress::Ip("10.0.0.9".into()),
                StatusAddress::Hostname("waypoint.backend.svc.cluster.local".into()),
                StatusAddress::Other {
                    kind: "example.com/name".into(),
                    value: "x".into()
                }
            ]
        );
    }

    #[test]
    fn status_fields_the_index_does_not_read_are_not_checked() {
        // Hand-written YAML often has conditions without `lastTransitionTime`; only addresses are read.
        let gw = Gateway::from_value(json!({
            "metadata": {"name": "waypoint", "namespace": "backend"},
            "spec": {"gatewayClassName": "istio-waypoint", "listeners": []},
            "status": {
                "addresses": [{"value": "10.0.0.9"}],
                "conditions": [{"type": "Programmed", "status": "True"}]
            }
        }))
        .unwrap();
        assert_eq!(gw.addresses, [StatusAddress::Ip("10.0.0.9".into())]);
    }

    #[test]
    fn gateway_errors_name_the_field() {
        let err = Gateway::from_value(json!({
            "metadata": {"name": "w"},
            "spec": {"gatewayClassName": "c", "listeners": [
                {"name": "l", "port": 1, "protocol": "HBONE",
                 "allowedRoutes": {"namespaces": {"from": "Elsewhere"}}}
            ]}
        }))
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("spec.listeners[0].allowedRoutes.namespaces.from: unknown variant"),
            "{err}"
        );
        let err =
            GatewayClass::from_value(json!({"metadata": {"name": "c"}, "spec": {}})).unwrap_err();
        assert_eq!(err.to_string(), "spec: missing field `controllerName`");
    }

    #[test]
    fn http_route_keeps_matches_filters_and_weighted_backends() {
        let route = HttpRoute::from_value(json!({
            "metadata": {"name": "reviews", "namespace": "backend"},
            "spec": {
                "parentRefs": [{"group": "", "kind": "Service", "name": "reviews", "port": 9080}],
                "rules": [{
                    "matches": [{"path": {"type": "PathPrefix", "value": "/api"},
                                 "headers": [{"name": "x-user", "value": "jason"}],
                                 "method": "GET"}],
                    "filters": [{"type": "RequestHeaderModifier",
                                 "requestHeaderModifier": {"set": [{"name": "x-a", "value": "1"}],
                                                           "remove": ["x-b"]}},
                                {"type": "URLRewrite",
                                 "urlRewrite": {"path": {"type": "ReplacePrefixMatch",
                                                         "replacePrefixMatch": "/v2"}}}],
                    "backendRefs": [{"name": "reviews-v3", "port": 9080, "weight": 90},
                                    {"name": "reviews-v2", "port": 9080, "weight": 10}]
                }]
            }
        }))
        .unwrap();
        let parent = &route.spec.parent_refs[0];
        assert_eq!(
            (parent.kind.as_deref(), parent.port),
            (Some("Service"), Some(9080))
        );
        let rule = &route.spec.rules[0];
        assert_eq!(rule.matches[0].method.as_deref(), Some("GET"));
        assert_eq!(rule.matches[0].headers[0].kind, None);
        assert_eq!(
            rule.filters[0]
                .request_header_modifier
                .as_ref()
                .map(|m| m.remove.clone()),
            Some(vec!["x-b".to_string()])
        );
        assert_eq!(
            rule.filters[1]
                .url_rewrite
                .as_ref()
                .and_then(|r| r.path.as_ref())
                .and_then(|p| p.replace_prefix_match.as_deref()),
            Some("/v2")
        );
        let backends: Vec<(&str, Option<i32>, Option<i32>)> = rule
            .backend_refs
            .iter()
            .map(|b| (b.backend.name.as_str(), b.backend.port, b.weight))
            .collect();
        assert_eq!(
            backends,
            [
                ("reviews-v3", Some(9080), Some(90)),
                ("reviews-v2", Some(9080), Some(10))
            ]
        );
    }
}
