//! Test fixtures: fluent builders for the slim object model, and helpers that read the index back.
//!
//! This module owns the fixtures used by the integration tests and the benches. Builders fill the
//! public fields of [`crate::model`] directly, so a fixture is exactly what a source would have handed
//! to the index after parsing, e.g.
//!
//! ```
//! use ambient_index::testing::*;
//!
//! let p = pod("ns", "web-0").ip("10.0.0.1").label("app", "web").sa("web").node("n1").ready().build();
//! let s = service("ns", "web").cluster_ip("10.96.0.1").port("http", 80, 8080).selector("app", "web").build();
//! ```
//!
//! Defaults: a pod has no IP, is not ready and is running (phase `Running`); its uid is
//! `uid-<ns>-<name>`. A Service has no selector, no cluster IP and no ports. A Gateway has class
//! `istio-waypoint`, no listeners and no status addresses (so it is not a waypoint until given one). A
//! Namespace carries the `kubernetes.io/metadata.name` label the API server adds. Annotations are stored
//! as given (the parser would keep only those the index reads).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ambient_proto::workload::{Address, Service as ServiceResource, Workload, address};
use prost::Message;

use crate::model::well_known::{NETWORK, SERVICE_NAME};
use crate::model::{
    AllowedRoutes, Endpoint, EndpointPort, EndpointSlice, Gateway, GatewayClass, LabelSelector,
    Labels, Listener, Meta, NamedPort, Namespace, Node, Object, OwnerRef, Pod, Service,
    ServicePort, StatusAddress, TargetPort, TargetRef,
};
use crate::{Index, NameChanges, Settings};

/// The cluster ID, domain suffix, system namespace and network of istiod's ambient unit tests.
pub const TEST_CLUSTER: &str = "cluster0";
pub const TEST_DOMAIN: &str = "domain.suffix";
pub const TEST_SYSTEM_NAMESPACE: &str = "istio-system";
pub const TEST_NETWORK: &str = "testnetwork";

/// Settings of istiod's ambient unit tests: cluster `cluster0`, domain suffix `domain.suffix`, system
/// namespace `istio-system`; everything else at istiod's defaults.
pub fn test_settings() -> Settings {
    Settings {
        cluster_id: TEST_CLUSTER.into(),
        domain_suffix: TEST_DOMAIN.into(),
        system_namespace: TEST_SYSTEM_NAMESPACE.into(),
        ..Settings::default()
    }
}

/// The system namespace of istiod's ambient unit tests, labelled with network `testnetwork`.
pub fn test_system_namespace() -> Object {
    namespace(TEST_SYSTEM_NAMESPACE)
        .label(NETWORK, TEST_NETWORK)
        .build()
}

/// One row of a table test: objects in, and what a view of the index must read out.
#[derive(Debug)]
pub struct TableCase<T> {
    pub name: &'static str,
    /// `None`: istiod's unit-test environment ([`test_settings`] plus [`test_system_namespace`]).
    /// `Some`: exactly these settings and no system namespace object.
    pub settings: Option<Settings>,
    pub objects: Vec<Object>,
    pub want: T,
}

/// Runs table cases the two ways the index is fed: [`Index::build`] from all objects at once, and
/// [`Index::apply`] one object at a time from an empty index. `view` must read `want` from both.
pub fn assert_build_and_apply<T: PartialEq + std::fmt::Debug>(
    cases: impl IntoIterator<Item = TableCase<T>>,
    view: impl Fn(&Index) -> T,
) {
    for case in cases {
        let (settings, mut objects) = match case.settings {
            None => (test_settings(), vec![test_system_namespace()]),
            Some(s) => (s, Vec::new()),
        };
        objects.extend(case.objects);
        let built = Index::build(settings.clone(), objects.clone());
        assert_eq!(view(&built), case.want, "case {:?} (build)", case.name);
        let mut applied = Index::new(settings);
        for obj in objects {
            applied.apply(obj);
        }
        assert_eq!(
            view(&applied),
            case.want,
            "case {:?} (applied one by one)",
            case.name
        );
    }
}

fn meta(namespace: &str, name: &str) -> Meta {
    Meta {
        namespace: namespace.to_string(),
        name: name.to_string(),
        uid: if namespace.is_empty() {
            format!("uid-{name}")
        } else {
            format!("uid-{namespace}-{name}")
        },
        ..Meta::default()
    }
}

// ---- Pod ----------------------------------------------------------------------------------------

/// Builds a [`Pod`].
#[derive(Debug, Clone)]
pub struct PodBuilder(Pod);

pub fn pod(namespace: &str, name: &str) -> PodBuilder {
    PodBuilder(Pod {
        meta: meta(namespace, name),
        generate_name: false,
        controller: None,
        service_account: String::new(),
        node: String::new(),
        host_network: false,
        ips: Vec::new(),
        bad_ip: false,
        terminal: false,
        ready: false,
        named_ports: Vec::new(),
    })
}

impl PodBuilder {
    /// Adds a pod IP; one that does not parse marks the pod as having a bad IP, as the parser does.
    pub fn ip(mut self, ip: &str) -> Self {
        match ip.parse::<IpAddr>() {
            Ok(ip) => self.0.ips.push(ip),
            Err(_) => self.0.bad_ip = true,
        }
        self
    }

    pub fn uid(mut self, uid: &str) -> Self {
        self.0.meta.uid = uid.to_string();
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.0.meta.labels.insert(key, value);
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.0.meta.annotations.insert(key, value);
        self
    }

    /// `spec.serviceAccountName`.
    pub fn sa(mut self, service_account: &str) -> Self {
        self.0.service_account = service_account.to_string();
        self
    }

    /// `spec.nodeName`.
    pub fn node(mut self, node: &str) -> Self {
        self.0.node = node.to_string();
        self
    }

    /// The `Ready` condition is `True`.
    pub fn ready(mut self) -> Self {
        self.0.ready = true;
        self
    }

    pub fn not_ready(mut self) -> Self {
        self.0.ready = false;
        self
    }

    /// `status.phase`: `Failed` and `Succeeded` are terminal, anything else is not.
    pub fn phase(mut self, phase: &str) -> Self {
        self.0.terminal = matches!(phase, "Failed" | "Succeeded");
        self
    }

    /// `metadata.deletionTimestamp` is set.
    pub fn deleting(mut self) -> Self {
        self.0.meta.deleting = true;
        self
    }

    /// `metadata.generateName` is set (its value does not matter to the index).
    pub fn generate_name(mut self, _prefix: &str) -> Self {
        self.0.generate_name = true;
        self
    }

    /// The controller owner reference.
    pub fn owner(mut self, kind: &str, name: &str) -> Self {
        self.0.controller = Some(OwnerRef {
            kind: kind.to_string(),
            name: name.to_string(),
        });
        self
    }

    /// A named TCP container port.
    pub fn named_port(mut self, name: &str, port: u16) -> Self {
        self.0.named_ports.push(NamedPort {
            name: name.to_string(),
            port,
        });
        self
    }

    pub fn host_network(mut self) -> Self {
        self.0.host_network = true;
        self
    }

    pub fn creation(mut self, seconds: i64) -> Self {
        self.0.meta.creation = seconds;
        self
    }

    /// The `targetRef` an EndpointSlice endpoint uses to point at this pod.
    pub fn target_ref(&self) -> TargetRef {
        pod_ref(&self.0.meta.namespace, &self.0.meta.name, &self.0.meta.uid)
    }

    pub fn into_pod(self) -> Pod {
        self.0
    }

    pub fn build(self) -> Object {
        Object::Pod(Box::new(self.0))
    }
}

/// An endpoint `targetRef` of kind Pod.
pub fn pod_ref(namespace: &str, name: &str, uid: &str) -> TargetRef {
    TargetRef {
        kind: "Pod".to_string(),
        namespace: namespace.to_string(),
        name: name.to_string(),
        uid: uid.to_string(),
    }
}

// ---- Service ------------------------------------------------------------------------------------

/// Builds a [`Service`].
#[derive(Debug, Clone)]
pub struct ServiceBuilder(Service);

pub fn service(namespace: &str, name: &str) -> ServiceBuilder {
    ServiceBuilder(Service {
        meta: meta(namespace, name),
        selector: None,
        external_name: false,
        cluster_ips: Vec::new(),
        ports: Vec::new(),
        internal_traffic_local: false,
        traffic_distribution: None,
        publish_not_ready: false,
        ip_families: Vec::new(),
    })
}

impl ServiceBuilder {
    /// Adds an entry of `spec.clusterIPs`, written as given (it may not parse).
    pub fn cluster_ip(mut self, ip: &str) -> Self {
        self.0.cluster_ips.push(ip.to_string());
        self
    }

    /// `clusterIP: None`.
    pub fn headless(mut self) -> Self {
        self.0.cluster_ips = vec!["None".to_string()];
        self
    }

    /// `type: ExternalName`.
    pub fn external_name(mut self) -> Self {
        self.0.external_name = true;
        self
    }

    fn push_port(mut self, name: &str, port: u16, protocol: &str, target: TargetPort) -> Self {
        self.0.ports.push(ServicePort {
            name: name.to_string(),
            port,
            protocol: protocol.to_string(),
            app_protocol: None,
            target_port: target,
        });
        self
    }

    /// A TCP port with a numeric `targetPort`.
    pub fn port(self, name: &str, port: u16, target_port: u16) -> Self {
        self.push_port(name, port, "TCP", TargetPort::Number(target_port))
    }

    /// A TCP port with a named `targetPort`.
    pub fn named_target(self, name: &str, port: u16, target_port: &str) -> Self {
        self.push_port(name, port, "TCP", TargetPort::Name(target_port.to_string()))
    }

    /// A UDP port with a numeric `targetPort`.
    pub fn udp_port(self, name: &str, port: u16, target_port: u16) -> Self {
        self.push_port(name, port, "UDP", TargetPort::Number(target_port))
    }

    /// Sets `appProtocol` on the port added last (no-op without ports).
    pub fn app_protocol(mut self, app_protocol: &str) -> Self {
        if let Some(p) = self.0.ports.last_mut() {
            p.app_protocol = Some(app_protocol.to_string());
        }
        self
    }

    /// Adds one `spec.selector` pair (making the Service a selector Service).
    pub fn selector(mut self, key: &str, value: &str) -> Self {
        self.0
            .selector
            .get_or_insert_with(Labels::new)
            .insert(key, value);
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.0.meta.labels.insert(key, value);
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.0.meta.annotations.insert(key, value);
        self
    }

    /// `internalTrafficPolicy: Local`.
    pub fn internal_local(mut self) -> Self {
        self.0.internal_traffic_local = true;
        self
    }

    /// `spec.trafficDistribution`.
    pub fn traffic_distribution(mut self, value: &str) -> Self {
        self.0.traffic_distribution = Some(value.to_string());
        self
    }

    /// `publishNotReadyAddresses: true`.
    pub fn publish_not_ready(mut self) -> Self {
        self.0.publish_not_ready = true;
        self
    }

    /// `spec.ipFamilies`.
    pub fn ip_families(mut self, families: &[&str]) -> Self {
        self.0.ip_families = families.iter().map(|f| f.to_string()).collect();
        self
    }

    pub fn uid(mut self, uid: &str) -> Self {
        self.0.meta.uid = uid.to_string();
        self
    }

    pub fn into_service(self) -> Service {
        self.0
    }

    pub fn build(self) -> Object {
        Object::Service(Box::new(self.0))
    }
}

// ---- Namespace and Node -------------------------------------------------------------------------

/// Builds a [`Namespace`].
#[derive(Debug, Clone)]
pub struct NamespaceBuilder(Namespace);

pub fn namespace(name: &str) -> NamespaceBuilder {
    let mut m = meta("", name);
    m.labels.insert("kubernetes.io/metadata.name", name);
    NamespaceBuilder(Namespace { meta: m })
}

impl NamespaceBuilder {
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.0.meta.labels.insert(key, value);
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.0.meta.annotations.insert(key, value);
        self
    }

    pub fn build(self) -> Object {
        Object::Namespace(self.0)
    }
}

/// Builds a [`Node`].
#[derive(Debug, Clone)]
pub struct NodeBuilder(Node);

pub fn node(name: &str) -> NodeBuilder {
    NodeBuilder(Node {
        name: name.to_string(),
        region: String::new(),
        zone: String::new(),
        subzone: String::new(),
    })
}

impl NodeBuilder {
    pub fn region(mut self, region: &str) -> Self {
        self.0.region = region.to_string();
        self
    }

    pub fn zone(mut self, zone: &str) -> Self {
        self.0.zone = zone.to_string();
        self
    }

    pub fn subzone(mut self, subzone: &str) -> Self {
        self.0.subzone = subzone.to_string();
        self
    }

    pub fn build(self) -> Object {
        Object::Node(self.0)
    }
}

// ---- EndpointSlice ------------------------------------------------------------------------------

/// Builds an [`EndpointSlice`] (address type `IPv4` unless told otherwise).
#[derive(Debug, Clone)]
pub struct EndpointSliceBuilder(EndpointSlice);

pub fn endpoint_slice(namespace: &str, name: &str) -> EndpointSliceBuilder {
    EndpointSliceBuilder(EndpointSlice {
        meta: meta(namespace, name),
        service_name: None,
        address_type: "IPv4".to_string(),
        endpoints: Vec::new(),
        ports: Vec::new(),
    })
}

impl EndpointSliceBuilder {
    /// The `kubernetes.io/service-name` label.
    pub fn service(mut self, service: &str) -> Self {
        self.0.meta.labels.insert(SERVICE_NAME, service);
        self.0.service_name = Some(service.to_string());
        self
    }

    pub fn address_type(mut self, address_type: &str) -> Self {
        self.0.address_type = address_type.to_string();
        self
    }

    /// One endpoint: its addresses, `conditions.ready`, and an optional `targetRef`.
    pub fn endpoint(mut self, addresses: &[&str], ready: bool, target: Option<TargetRef>) -> Self {
        self.0.endpoints.push(Endpoint {
            addresses: addresses.iter().map(|a| a.to_string()).collect(),
            ready: Some(ready),
            target_ref: target,
        });
        self
    }

    /// One endpoint without `conditions.ready` (which counts as ready).
    pub fn endpoint_ready_unset(mut self, addresses: &[&str], target: Option<TargetRef>) -> Self {
        self.0.endpoints.push(Endpoint {
            addresses: addresses.iter().map(|a| a.to_string()).collect(),
            ready: None,
            target_ref: target,
        });
        self
    }

    /// A TCP port: the Service port name and the target port number.
    pub fn port(mut self, name: &str, port: u16) -> Self {
        self.0.ports.push(EndpointPort {
            name: name.to_string(),
            port: Some(port),
            protocol: "TCP".to_string(),
        });
        self
    }

    pub fn udp_port(mut self, name: &str, port: u16) -> Self {
        self.0.ports.push(EndpointPort {
            name: name.to_string(),
            port: Some(port),
            protocol: "UDP".to_string(),
        });
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.0.meta.labels.insert(key, value);
        self
    }

    pub fn build(self) -> Object {
        Object::EndpointSlice(Box::new(self.0))
    }
}

// ---- Gateway API --------------------------------------------------------------------------------

/// Builds a [`Gateway`].
#[derive(Debug, Clone)]
pub struct GatewayBuilder(Gateway);

pub fn gateway(namespace: &str, name: &str) -> GatewayBuilder {
    GatewayBuilder(Gateway {
        meta: meta(namespace, name),
        class: "istio-waypoint".to_string(),
        listeners: Vec::new(),
        addresses: Vec::new(),
    })
}

/// A Gateway as istiod's index tests make waypoints (`addWaypoint`): class `istio-waypoint`, an
/// HBONE:15008 listener allowing the same namespace, and status addresses hostname
/// `<name>.<ns>.svc.<domain_suffix>` and `ip`.
pub fn waypoint(namespace: &str, name: &str, domain_suffix: &str, ip: &str) -> GatewayBuilder {
    gateway(namespace, name)
        .hbone_listener(AllowedRoutes::Same)
        .status_hostname(&format!("{name}.{namespace}.svc.{domain_suffix}"))
        .status_ip(ip)
}

impl GatewayBuilder {
    pub fn class(mut self, class: &str) -> Self {
        self.0.class = class.to_string();
        self
    }

    /// The `mesh` listener: protocol `HBONE`, port 15008.
    pub fn hbone_listener(self, allowed_routes: AllowedRoutes) -> Self {
        self.listener("mesh", 15008, "HBONE", allowed_routes)
    }

    pub fn listener(
        mut self,
        name: &str,
        port: i32,
        protocol: &str,
        allowed_routes: AllowedRoutes,
    ) -> Self {
        self.0.listeners.push(Listener {
            name: name.to_string(),
            port,
            protocol: protocol.to_string(),
            allowed_routes,
        });
        self
    }

    /// A `Hostname` status address.
    pub fn status_hostname(mut self, hostname: &str) -> Self {
        self.0
            .addresses
            .push(StatusAddress::Hostname(hostname.to_string()));
        self
    }

    /// An `IPAddress` status address (written as given; it may not parse).
    pub fn status_ip(mut self, ip: &str) -> Self {
        self.0.addresses.push(StatusAddress::Ip(ip.to_string()));
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.0.meta.labels.insert(key, value);
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.0.meta.annotations.insert(key, value);
        self
    }

    pub fn build(self) -> Object {
        Object::Gateway(Box::new(self.0))
    }
}

/// `allowedRoutes.namespaces.from: Selector` with `matchLabels`.
pub fn allowed_selector(match_labels: &[(&str, &str)]) -> AllowedRoutes {
    AllowedRoutes::Selector(LabelSelector {
        match_labels: match_labels.iter().copied().collect(),
        match_expressions: Vec::new(),
    })
}

/// Builds a [`GatewayClass`] (controller `istio.io/mesh-controller`).
#[derive(Debug, Clone)]
pub struct GatewayClassBuilder(GatewayClass);

pub fn gateway_class(name: &str) -> GatewayClassBuilder {
    GatewayClassBuilder(GatewayClass {
        meta: meta("", name),
        controller: "istio.io/mesh-controller".to_string(),
    })
}

impl GatewayClassBuilder {
    pub fn controller(mut self, controller: &str) -> Self {
        self.0.controller = controller.to_string();
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.0.meta.labels.insert(key, value);
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.0.meta.annotations.insert(key, value);
        self
    }

    pub fn build(self) -> Object {
        Object::GatewayClass(self.0)
    }
}

// ---- Reading the index back ---------------------------------------------------------------------

/// Every Address resource of the index, decoded, by name. A resource that does not decode is left out
/// (and so shows up as a difference in any comparison).
pub fn decoded_addresses(index: &Index) -> BTreeMap<String, Address> {
    index
        .addresses()
        .iter()
        .filter_map(|(name, res)| {
            let addr = Address::decode(res.body.clone()).ok()?;
            Some((name.to_string(), addr))
        })
        .collect()
}

/// The Workload stored under `uid`, if that resource is a Workload.
pub fn workload(index: &Index, uid: &str) -> Option<Workload> {
    let res = index.address(uid)?;
    match Address::decode(res.body.clone()).ok()?.r#type? {
        address::Type::Workload(w) => Some(w),
        address::Type::Service(_) => None,
    }
}

/// The Service stored under `ns/hostname`, if that resource is a Service.
pub fn service_resource(index: &Index, name: &str) -> Option<ServiceResource> {
    let res = index.address(name)?;
    match Address::decode(res.body.clone()).ok()?.r#type? {
        address::Type::Service(s) => Some(s),
        address::Type::Workload(_) => None,
    }
}

/// Every Workload resource, sorted by uid.
pub fn workloads(index: &Index) -> Vec<Workload> {
    decoded_addresses(index)
        .into_values()
        .filter_map(|a| match a.r#type? {
            address::Type::Workload(w) => Some(w),
            address::Type::Service(_) => None,
        })
        .collect()
}

/// Every Service resource, sorted by resource name.
pub fn service_resources(index: &Index) -> Vec<ServiceResource> {
    decoded_addresses(index)
        .into_values()
        .filter_map(|a| match a.r#type? {
            address::Type::Service(s) => Some(s),
            address::Type::Workload(_) => None,
        })
        .collect()
}

/// `(changed, removed)`, each sorted, for exact assertions.
pub fn names(changes: &NameChanges) -> (Vec<String>, Vec<String>) {
    (
        changes.changed.iter().map(|n| n.to_string()).collect(),
        changes.removed.iter().map(|n| n.to_string()).collect(),
    )
}

// ---- AuthorizationPolicy and PeerAuthentication -------------------------------------------------

/// Builds an [`AuthorizationPolicy`](crate::model::AuthorizationPolicy): no selector, no action (ALLOW), no
/// rules until given.
#[derive(Debug, Clone)]
pub struct AuthorizationPolicyBuilder(crate::model::AuthorizationPolicy);

pub fn authorization_policy(namespace: &str, name: &str) -> AuthorizationPolicyBuilder {
    AuthorizationPolicyBuilder(crate::model::AuthorizationPolicy {
        meta: meta(namespace, name),
        spec: crate::model::istio::AuthorizationPolicySpec::default(),
    })
}

impl AuthorizationPolicyBuilder {
    /// Adds one `spec.selector.matchLabels` pair.
    pub fn selector(mut self, key: &str, value: &str) -> Self {
        self.0
            .spec
            .selector
            .get_or_insert_with(Default::default)
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(key.to_string(), value.to_string());
        self
    }

    /// `selector: {}`: a selector without `matchLabels`.
    pub fn empty_selector(mut self) -> Self {
        self.0.spec.selector = Some(Default::default());
        self
    }

    /// `spec.action`, written as given (`ALLOW`, `DENY`, `AUDIT`, `CUSTOM`, or anything else).
    pub fn action(mut self, action: &str) -> Self {
        self.0.spec.action = Some(action.to_string());
        self
    }

    /// Adds a `targetRefs` entry (`group` empty, same namespace).
    pub fn target_ref(mut self, kind: &str, name: &str) -> Self {
        self.0
            .spec
            .target_refs
            .push(crate::model::istio::PolicyTargetReference {
                kind: kind.to_string(),
                name: name.to_string(),
                ..Default::default()
            });
        self
    }

    /// Adds one rule.
    pub fn rule(mut self, rule: RuleBuilder) -> Self {
        self.0.spec.rules.push(rule.0);
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.0.meta.labels.insert(key, value);
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.0.meta.annotations.insert(key, value);
        self
    }

    pub fn into_policy(self) -> crate::model::AuthorizationPolicy {
        self.0
    }

    pub fn build(self) -> Object {
        Object::AuthorizationPolicy(Box::new(self.0))
    }
}

/// Builds one AuthorizationPolicy rule. Source fields go into one `from` entry and operation fields into
/// one `to` entry, each created on first use; [`RuleBuilder::build`] of an untouched builder is `{}`.
#[derive(Debug, Clone, Default)]
pub struct RuleBuilder(crate::model::istio::Rule);

pub fn rule() -> RuleBuilder {
    RuleBuilder::default()
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

impl RuleBuilder {
    fn source(&mut self) -> &mut crate::model::istio::Source {
        if self.0.from.is_empty() {
            self.0.from.push(Default::default());
        }
        &mut self.0.from[0].source
    }

    fn operation(&mut self) -> &mut crate::model::istio::Operation {
        if self.0.to.is_empty() {
            self.0.to.push(Default::default());
        }
        &mut self.0.to[0].operation
    }

    pub fn principals(mut self, values: &[&str]) -> Self {
        self.source().principals = strings(values);
        self
    }

    pub fn not_principals(mut self, values: &[&str]) -> Self {
        self.source().not_principals = strings(values);
        self
    }

    pub fn namespaces(mut self, values: &[&str]) -> Self {
        self.source().namespaces = strings(values);
        self
    }

    pub fn service_accounts(mut self, values: &[&str]) -> Self {
        self.source().service_accounts = strings(values);
        self
    }

    pub fn ip_blocks(mut self, values: &[&str]) -> Self {
        self.source().ip_blocks = strings(values);
        self
    }

    /// An HTTP (L7) source field.
    pub fn request_principals(mut self, values: &[&str]) -> Self {
        self.source().request_principals = strings(values);
        self
    }

    pub fn ports(mut self, values: &[&str]) -> Self {
        self.operation().ports = strings(values);
        self
    }

    pub fn not_ports(mut self, values: &[&str]) -> Self {
        self.operation().not_ports = strings(values);
        self
    }

    /// An HTTP (L7) operation field.
    pub fn methods(mut self, values: &[&str]) -> Self {
        self.operation().methods = strings(values);
        self
    }

    /// Adds a `when` condition with `values`.
    pub fn when(mut self, key: &str, values: &[&str]) -> Self {
        self.0.when.push(crate::model::istio::Condition {
            key: key.to_string(),
            values: strings(values),
            not_values: Vec::new(),
        });
        self
    }

    pub fn build(self) -> crate::model::istio::Rule {
        self.0
    }
}

/// Builds a [`PeerAuthentication`](crate::model::PeerAuthentication): no selector, no `mtls` (UNSET), no
/// port-level settings, creation time 0.
#[derive(Debug, Clone)]
pub struct PeerAuthenticationBuilder(crate::model::PeerAuthentication);

pub fn peer_authentication(namespace: &str, name: &str) -> PeerAuthenticationBuilder {
    PeerAuthenticationBuilder(crate::model::PeerAuthentication {
        meta: meta(namespace, name),
        spec: crate::model::istio::PeerAuthenticationSpec::default(),
    })
}

impl PeerAuthenticationBuilder {
    /// Adds one `spec.selector.matchLabels` pair.
    pub fn selector(mut self, key: &str, value: &str) -> Self {
        self.0
            .spec
            .selector
            .get_or_insert_with(Default::default)
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(key.to_string(), value.to_string());
        self
    }

    /// `spec.mtls.mode`.
    pub fn mode(mut self, mode: crate::model::istio::MtlsMode) -> Self {
        self.0.spec.mtls = Some(crate::model::istio::Mtls { mode });
        self
    }

    /// One `spec.portLevelMtls` entry.
    pub fn port(mut self, port: u32, mode: crate::model::istio::MtlsMode) -> Self {
        self.0
            .spec
            .port_level_mtls
            .insert(port, crate::model::istio::Mtls { mode });
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.0.meta.labels.insert(key, value);
        self
    }

    /// `metadata.creationTimestamp`, in seconds since the Unix epoch (the oldest policy of a level wins).
    pub fn creation(mut self, seconds: i64) -> Self {
        self.0.meta.creation = seconds;
        self
    }

    pub fn into_policy(self) -> crate::model::PeerAuthentication {
        self.0
    }

    pub fn build(self) -> Object {
        Object::PeerAuthentication(Box::new(self.0))
    }
}

/// Every Authorization resource of the index, decoded, by name (undecodable ones are left out).
pub fn decoded_authorizations(
    index: &Index,
) -> BTreeMap<String, ambient_proto::security::Authorization> {
    index
        .authorizations()
        .iter()
        .filter_map(|(name, res)| {
            let auth = ambient_proto::security::Authorization::decode(res.body.clone()).ok()?;
            Some((name.to_string(), auth))
        })
        .collect()
}

/// The `authorization_policies` of the Workload stored under `uid` (empty when there is no such Workload).
pub fn workload_policies(index: &Index, uid: &str) -> Vec<String> {
    workload(index, uid)
        .map(|w| w.authorization_policies)
        .unwrap_or_default()
}

/// The names a correct index reports when its resources move from `before` to `after`: `(changed, removed)`,
/// each sorted.
pub fn expected_changes(
    before: &std::collections::HashMap<std::sync::Arc<str>, crate::Resource>,
    after: &std::collections::HashMap<std::sync::Arc<str>, crate::Resource>,
) -> (Vec<String>, Vec<String>) {
    let mut changed: Vec<String> = after
        .iter()
        .filter(|(name, res)| before.get(*name) != Some(*res))
        .map(|(name, _)| name.to_string())
        .collect();
    let mut removed: Vec<String> = before
        .keys()
        .filter(|name| !after.contains_key(*name))
        .map(|name| name.to_string())
        .collect();
    changed.sort();
    removed.sort();
    (changed, removed)
}
