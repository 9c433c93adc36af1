//! What ztunnel rejects: the decode and conversion checks a real ztunnel applies to every `Address` and
//! `Authorization` resource it receives (docs/reference/ztunnel.md#resources-refused-with-a-nack), with
//! ztunnel's own error texts, and a process-wide cache of verdicts by resource body.
//!
//! ztunnel decodes the body as the type the *response's* `type_url` names (the inner `Any.type_url`
//! is not checked), then converts it into its internal types; a conversion error rejects that one
//! resource. The rules, in ztunnel's order:
//!
//! | resource | rejected when | message |
//! |---|---|---|
//! | any | `Resource.resource` missing | `XDS payload without resource` |
//! | any | body does not decode | `decode: <prost error>` |
//! | Address | neither `workload` nor `service` | `unknown address type` |
//! | Workload | `waypoint` / `network_gateway` without destination, or with an address ∉ {4,16} bytes | `nonempty gateway address is missing address` / `failed to parse address, had N bytes` |
//! | Workload | unknown `application_tunnel.protocol` | `decode error: unknown enumeration value N` |
//! | Workload | an address ∉ {4,16} bytes | `failed to parse address, had N bytes` |
//! | Workload | a `services` key without `/` | `failed to parse namespaced hostname: KEY` |
//! | Workload | `tunnel_protocol` LEGACY_ISTIO_MTLS / unknown; unknown `network_mode`, `status` | `unknown enum: unsupported tunnel protocol: legacy istio mtls` / `decode error: unknown enumeration value N` |
//! | Service | an address ∉ {4,16} bytes; a `length` ≠ full whose low byte exceeds 32 (v4) / 128 (v6) | `failed to parse address, had N bytes` / `invalid cidr: invalid IP prefix length` |
//! | Service | `waypoint` or a `weighted_waypoints` entry without destination (or bad address) | as for Workload |
//! | Service | `routing_preference` holding UNSPECIFIED_SCOPE / an unknown scope; unknown `mode`, `health_policy`, `ip_families` | `unknown enum: invalid target` / `decode error: unknown enumeration value N` |
//! | Authorization | unknown `scope` or `action` | `decode error: unknown enumeration value N` |
//!
//! Everything else is accepted (ztunnel drops invalid policy addresses and string matches silently,
//! truncates ports to 16 bits and maps an unknown Service visibility to PUBLIC).
//!
//! A verdict depends only on the type and the bytes, so it is computed once per distinct body per
//! process ([`VerdictCache::global`]) no matter how many simulated ztunnels receive it. Accepted
//! workloads also yield what the certificate prefetch needs: their node and SPIFFE identity when they
//! speak HBONE (or have a native tunnel).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use ambient_proto::security::Authorization;
use ambient_proto::workload::{
    Address, ApplicationTunnel, GatewayAddress, IpFamilies, NetworkMode, Service, TunnelProtocol,
    Workload, WorkloadStatus, address, application_tunnel, gateway_address, load_balancing,
};
use prost::Message;
use xxhash_rust::xxh64::{Xxh64Builder, xxh64};

use crate::intern::{StrId, XdsKind};

/// ztunnel's message for a resource without a body.
pub const MISSING_RESOURCE: &str = "XDS payload without resource";

/// A workload whose certificate a shared-mode ztunnel on `node` prefetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertTarget {
    /// `Workload.node`.
    pub node: StrId,
    /// `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`, with ztunnel's defaults
    /// (`cluster.local`, `default`) for empty fields.
    pub identity: StrId,
}

/// What ztunnel does with one resource body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Applied; for an HBONE workload, whom its certificate is for.
    Accept(Option<CertTarget>),
    /// Decoded but refused by the conversion (listed first in a NACK).
    Reject(Arc<str>),
    /// Not decodable (listed after the conversion rejects in a NACK).
    Undecodable(Arc<str>),
}

impl Verdict {
    pub fn is_accept(&self) -> bool {
        matches!(self, Verdict::Accept(_))
    }
}

/// Checks one body of `kind` as ztunnel does. Uncached; see [`VerdictCache`].
pub fn validate(kind: XdsKind, body: &[u8]) -> Verdict {
    let result = match kind {
        XdsKind::Address => match Address::decode(body) {
            Ok(a) => check_address(&a),
            Err(e) => return Verdict::Undecodable(format!("decode: {e}").into()),
        },
        XdsKind::Authorization => match Authorization::decode(body) {
            Ok(a) => check_authorization(&a).map(|()| None),
            Err(e) => return Verdict::Undecodable(format!("decode: {e}").into()),
        },
    };
    match result {
        Ok(cert) => Verdict::Accept(cert),
        Err(e) => Verdict::Reject(e.to_string().into()),
    }
}

/// ztunnel's conversion errors (`WorkloadError`), with its texts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConversionError {
    #[error("unknown address type")]
    UnknownAddressType,
    #[error("failed to parse namespaced hostname: {0}")]
    NamespacedHostname(String),
    #[error("failed to parse address, had {0} bytes")]
    ByteAddress(usize),
    #[error("invalid cidr: invalid IP prefix length")]
    Prefix,
    #[error("unknown enum: {0}")]
    Enum(&'static str),
    #[error("nonempty gateway address is missing address")]
    MissingGatewayAddress,
    #[error("decode error: unknown enumeration value {0}")]
    UnknownEnumValue(i32),
}

impl From<prost::UnknownEnumValue> for ConversionError {
    fn from(e: prost::UnknownEnumValue) -> Self {
        ConversionError::UnknownEnumValue(e.0)
    }
}

type Checked<T> = Result<T, ConversionError>;

fn check_address(a: &Address) -> Checked<Option<CertTarget>> {
    match &a.r#type {
        Some(address::Type::Workload(w)) => check_workload(w),
        Some(address::Type::Service(s)) => check_service(s).map(|()| None),
        None => Err(ConversionError::UnknownAddressType),
    }
}

/// IP bytes: 4 or 16 of them. Returns whether it is IPv4.
fn byte_to_ip(b: &[u8]) -> Checked<bool> {
    match b.len() {
        4 => Ok(true),
        16 => Ok(false),
        n => Err(ConversionError::ByteAddress(n)),
    }
}

fn check_gateway(g: &GatewayAddress) -> Checked<()> {
    match &g.destination {
        Some(gateway_address::Destination::Address(addr)) => byte_to_ip(&addr.address).map(|_| ()),
        Some(gateway_address::Destination::Hostname(_)) => Ok(()),
        None => Err(ConversionError::MissingGatewayAddress),
    }
}

fn check_application_tunnel(t: &ApplicationTunnel) -> Checked<()> {
    application_tunnel::Protocol::try_from(t.protocol)?;
    Ok(())
}

fn check_workload(w: &Workload) -> Checked<Option<CertTarget>> {
    if let Some(g) = &w.waypoint {
        check_gateway(g)?;
    }
    if let Some(g) = &w.network_gateway {
        check_gateway(g)?;
    }
    if let Some(t) = &w.application_tunnel {
        check_application_tunnel(t)?;
    }
    for a in &w.addresses {
        byte_to_ip(a)?;
    }
    for key in w.services.keys() {
        if !key.contains('/') {
            return Err(ConversionError::NamespacedHostname(key.clone()));
        }
    }
    let protocol = TunnelProtocol::try_from(w.tunnel_protocol)?;
    if protocol == TunnelProtocol::LegacyIstioMtls {
        return Err(ConversionError::Enum(
            "unsupported tunnel protocol: legacy istio mtls",
        ));
    }
    NetworkMode::try_from(w.network_mode)?;
    WorkloadStatus::try_from(w.status)?;

    let hbone = protocol == TunnelProtocol::Hbone;
    Ok((hbone || w.native_tunnel).then(|| CertTarget {
        node: StrId::of(&w.node),
        identity: StrId::of(&workload_identity(w)),
    }))
}

/// The SPIFFE identity ztunnel derives for a workload (`Workload::identity`).
pub fn workload_identity(w: &Workload) -> String {
    let td = if w.trust_domain.is_empty() {
        "cluster.local"
    } else {
        &w.trust_domain
    };
    let sa = if w.service_account.is_empty() {
        "default"
    } else {
        &w.service_account
    };
    format!("spiffe://{td}/ns/{}/sa/{sa}", w.namespace)
}

fn check_service(s: &Service) -> Checked<()> {
    for addr in &s.addresses {
        let v4 = byte_to_ip(&addr.address)?;
        let max: u32 = if v4 { 32 } else { 128 };
        if let Some(len) = addr.length
            && len != max
            // ztunnel builds the CIDR with `len as u8`.
            && u32::from(len as u8) > max
        {
            return Err(ConversionError::Prefix);
        }
    }
    if let Some(g) = &s.waypoint {
        check_gateway(g)?;
    }
    for ww in &s.weighted_waypoints {
        let dest = ww
            .destination
            .as_ref()
            .ok_or(ConversionError::MissingGatewayAddress)?;
        check_gateway(dest)?;
    }
    if let Some(lb) = &s.load_balancing {
        for r in &lb.routing_preference {
            let scope = load_balancing::Scope::try_from(*r)?;
            if scope == load_balancing::Scope::UnspecifiedScope {
                return Err(ConversionError::Enum("invalid target"));
            }
        }
        load_balancing::Mode::try_from(lb.mode)?;
        load_balancing::HealthPolicy::try_from(lb.health_policy)?;
    }
    IpFamilies::try_from(s.ip_families)?;
    Ok(())
}

fn check_authorization(a: &Authorization) -> Checked<()> {
    ambient_proto::security::Scope::try_from(a.scope)?;
    ambient_proto::security::Action::try_from(a.action)?;
    Ok(())
}

const SHARDS: usize = 16;

/// Key of a body: its kind, 64-bit hash and length.
type BodyKey = (u8, u64, u32);

/// Verdicts by body, shared by every simulated ztunnel of the process.
pub struct VerdictCache {
    shards: [RwLock<HashMap<BodyKey, Verdict, Xxh64Builder>>; SHARDS],
    decodes: AtomicU64,
    hits: AtomicU64,
}

impl fmt::Debug for VerdictCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerdictCache")
            .field("decodes", &self.decodes())
            .field("hits", &self.hits.load(Ordering::Relaxed))
            .finish()
    }
}

impl Default for VerdictCache {
    fn default() -> Self {
        VerdictCache::new()
    }
}

impl VerdictCache {
    pub fn new() -> VerdictCache {
        VerdictCache {
            shards: std::array::from_fn(|_| {
                RwLock::new(HashMap::with_hasher(Xxh64Builder::new(7)))
            }),
            decodes: AtomicU64::new(0),
            hits: AtomicU64::new(0),
        }
    }

    /// The cache every simulated ztunnel of this process uses.
    pub fn global() -> &'static VerdictCache {
        static GLOBAL: OnceLock<VerdictCache> = OnceLock::new();
        GLOBAL.get_or_init(VerdictCache::new)
    }

    /// The verdict for `body`, decoding and checking it only the first time it is seen.
    pub fn verdict(&self, kind: XdsKind, body: &[u8]) -> Verdict {
        let hash = xxh64(body, 0);
        let key: BodyKey = (kind.index() as u8, hash, body.len() as u32);
        let shard = &self.shards[(hash as usize) % SHARDS];
        if let Some(v) = shard
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return v.clone();
        }
        // Two clients may race to the same new body; both compute the same verdict.
        let verdict = validate(kind, body);
        self.decodes.fetch_add(1, Ordering::Relaxed);
        shard
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, verdict.clone());
        verdict
    }

    /// Bodies decoded and checked so far.
    pub fn decodes(&self) -> u64 {
        self.decodes.load(Ordering::Relaxed)
    }

    /// Verdicts answered from the cache so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use ambient_proto::security::{self, Authorization};
    use ambient_proto::workload::{
        LoadBalancing, NamespacedHostname, NetworkAddress, PortList, WeightedWaypoint,
    };

    use super::*;

    fn workload() -> Workload {
        Workload {
            uid: "Kubernetes//Pod/default/local".into(),
            name: "local".into(),
            namespace: "default".into(),
            addresses: vec![vec![10, 0, 0, 1]],
            tunnel_protocol: TunnelProtocol::Hbone as i32,
            service_account: "sleep".into(),
            node: "node-0".into(),
            ..Default::default()
        }
    }

    fn service() -> Service {
        Service {
            name: "example".into(),
            namespace: "default".into(),
            hostname: "example.default.svc.cluster.local".into(),
            addresses: vec![NetworkAddress {
                network: String::new(),
                address: vec![10, 96, 0, 1],
                length: None,
            }],
            ..Default::default()
        }
    }

    fn w(w: Workload) -> Vec<u8> {
        Address {
            r#type: Some(address::Type::Workload(w)),
        }
        .encode_to_vec()
    }

    fn s(s: Service) -> Vec<u8> {
        Address {
            r#type: Some(address::Type::Service(s)),
        }
        .encode_to_vec()
    }

    fn gw_addr(bytes: Vec<u8>) -> GatewayAddress {
        GatewayAddress {
            destination: Some(gateway_address::Destination::Address(NetworkAddress {
                network: String::new(),
                address: bytes,
                length: None,
            })),
            hbone_mtls_port: 15008,
        }
    }

    fn rejected(kind: XdsKind, body: &[u8]) -> String {
        match validate(kind, body) {
            Verdict::Reject(m) | Verdict::Undecodable(m) => m.to_string(),
            Verdict::Accept(_) => "accepted".to_string(),
        }
    }

    #[test]
    fn valid_resources_are_accepted_with_the_certificate_target_of_hbone_workloads() {
        let v = validate(XdsKind::Address, &w(workload()));
        assert_eq!(
            v,
            Verdict::Accept(Some(CertTarget {
                node: StrId::of("node-0"),
                identity: StrId::of("spiffe://cluster.local/ns/default/sa/sleep"),
            }))
        );
        let mut tcp = workload();
        tcp.tunnel_protocol = TunnelProtocol::None as i32;
        assert_eq!(
            validate(XdsKind::Address, &w(tcp.clone())),
            Verdict::Accept(None)
        );
        tcp.native_tunnel = true;
        tcp.trust_domain = "example.org".into();
        tcp.service_account = String::new();
        assert_eq!(
            validate(XdsKind::Address, &w(tcp)),
            Verdict::Accept(Some(CertTarget {
                node: StrId::of("node-0"),
                identity: StrId::of("spiffe://example.org/ns/default/sa/default"),
            }))
        );
        assert_eq!(
            validate(XdsKind::Address, &s(service())),
            Verdict::Accept(None)
        );
        let authz = Authorization {
            name: "deny".into(),
            namespace: "default".into(),
            scope: security::Scope::Namespace as i32,
            action: security::Action::Deny as i32,
            ..Default::default()
        };
        assert_eq!(
            validate(XdsKind::Authorization, &authz.encode_to_vec()),
            Verdict::Accept(None)
        );
        // Lenient fields: unknown visibility and workload type, ports beyond 16 bits.
        let mut lenient = service();
        lenient.visibility = 9;
        lenient.ports = vec![ambient_proto::workload::Port {
            service_port: 70000,
            target_port: 8080,
            app_protocol: 42,
        }];
        assert!(validate(XdsKind::Address, &s(lenient)).is_accept());
        let mut wl = workload();
        wl.workload_type = 9;
        assert!(validate(XdsKind::Address, &w(wl)).is_accept());
    }

    /// One row per rule of docs/reference/ztunnel.md#resources-refused-with-a-nack: the body and ztunnel's
    /// message.
    #[test]
    fn every_rule_of_section_7_rejects_with_ztunnels_message() {
        let mut cases: Vec<(&str, XdsKind, Vec<u8>, &str)> = Vec::new();

        // 1. Undecodable bytes (a truncated varint).
        cases.push((
            "1 undecodable",
            XdsKind::Address,
            vec![0x0a, 0xff],
            "decode: failed to decode Protobuf message: Address.r#type: invalid varint",
        ));
        // 2. Neither workload nor service.
        cases.push((
            "2 empty address",
            XdsKind::Address,
            Address { r#type: None }.encode_to_vec(),
            "unknown address type",
        ));
        // 3. IP bytes of a wrong length, in each place.
        let mut bad = workload();
        bad.addresses = vec![vec![10, 0, 0]];
        cases.push((
            "3 workload address",
            XdsKind::Address,
            w(bad),
            "failed to parse address, had 3 bytes",
        ));
        let mut bad = service();
        bad.addresses[0].address = vec![1, 2, 3, 4, 5];
        cases.push((
            "3 service address",
            XdsKind::Address,
            s(bad),
            "failed to parse address, had 5 bytes",
        ));
        let mut bad = workload();
        bad.waypoint = Some(gw_addr(Vec::new()));
        cases.push((
            "3 gateway address",
            XdsKind::Address,
            w(bad),
            "failed to parse address, had 0 bytes",
        ));
        // 4. Gateway / weighted waypoint without destination.
        let mut bad = workload();
        bad.network_gateway = Some(GatewayAddress {
            destination: None,
            hbone_mtls_port: 15008,
        });
        cases.push((
            "4 gateway without destination",
            XdsKind::Address,
            w(bad),
            "nonempty gateway address is missing address",
        ));
        let mut bad = service();
        bad.weighted_waypoints = vec![WeightedWaypoint {
            destination: None,
            weight: 1,
        }];
        cases.push((
            "4 weighted waypoint without destination",
            XdsKind::Address,
            s(bad),
            "nonempty gateway address is missing address",
        ));
        // 5. A services key without '/'.
        let mut bad = workload();
        bad.services
            .insert("example.default.svc".into(), PortList::default());
        cases.push((
            "5 services key",
            XdsKind::Address,
            w(bad),
            "failed to parse namespaced hostname: example.default.svc",
        ));
        // 6. LEGACY_ISTIO_MTLS and unknown enums.
        let mut bad = workload();
        bad.tunnel_protocol = TunnelProtocol::LegacyIstioMtls as i32;
        cases.push((
            "6 legacy mtls",
            XdsKind::Address,
            w(bad),
            "unknown enum: unsupported tunnel protocol: legacy istio mtls",
        ));
        let unknown_enum = "decode error: unknown enumeration value 7";
        let mut bad = workload();
        bad.tunnel_protocol = 7;
        cases.push(("6 tunnel protocol", XdsKind::Address, w(bad), unknown_enum));
        let mut bad = workload();
        bad.network_mode = 7;
        cases.push(("6 network mode", XdsKind::Address, w(bad), unknown_enum));
        let mut bad = workload();
        bad.status = 7;
        cases.push(("6 status", XdsKind::Address, w(bad), unknown_enum));
        let mut bad = workload();
        bad.application_tunnel = Some(ApplicationTunnel {
            protocol: 7,
            port: 15088,
        });
        cases.push((
            "6 application tunnel",
            XdsKind::Address,
            w(bad),
            unknown_enum,
        ));
        let lb = |routing_preference: Vec<i32>, mode: i32, health_policy: i32| {
            let mut svc = service();
            svc.load_balancing = Some(LoadBalancing {
                routing_preference,
                mode,
                health_policy,
            });
            s(svc)
        };
        cases.push((
            "6 lb mode",
            XdsKind::Address,
            lb(vec![1], 7, 0),
            unknown_enum,
        ));
        cases.push((
            "6 lb health",
            XdsKind::Address,
            lb(vec![1], 1, 7),
            unknown_enum,
        ));
        cases.push((
            "6 lb scope",
            XdsKind::Address,
            lb(vec![1, 7], 1, 0),
            unknown_enum,
        ));
        let mut bad = service();
        bad.ip_families = 7;
        cases.push(("6 ip families", XdsKind::Address, s(bad), unknown_enum));
        let authz = |scope: i32, action: i32| {
            Authorization {
                name: "p".into(),
                namespace: "default".into(),
                scope,
                action,
                ..Default::default()
            }
            .encode_to_vec()
        };
        cases.push((
            "6 authz scope",
            XdsKind::Authorization,
            authz(7, 0),
            unknown_enum,
        ));
        cases.push((
            "6 authz action",
            XdsKind::Authorization,
            authz(0, 7),
            unknown_enum,
        ));
        // 7. UNSPECIFIED_SCOPE in routing_preference.
        cases.push((
            "7 unspecified scope",
            XdsKind::Address,
            lb(vec![2, 0], 1, 0),
            "unknown enum: invalid target",
        ));
        // 8. NetworkAddress.length beyond the family's maximum.
        let mut bad = service();
        bad.addresses[0].length = Some(33);
        cases.push((
            "8 v4 prefix",
            XdsKind::Address,
            s(bad),
            "invalid cidr: invalid IP prefix length",
        ));
        let mut bad = service();
        bad.addresses[0].address = vec![0; 16];
        bad.addresses[0].length = Some(129);
        cases.push((
            "8 v6 prefix",
            XdsKind::Address,
            s(bad),
            "invalid cidr: invalid IP prefix length",
        ));

        for (what, kind, body, message) in cases {
            assert_eq!(rejected(kind, &body), message, "{what}");
        }
    }

    #[test]
    fn near_misses_are_accepted() {
        // A CIDR VIP within range, a full-length prefix, hostname gateways, a policy whose addresses
        // ztunnel drops silently.
        let mut svc = service();
        svc.addresses[0].length = Some(16);
        svc.addresses.push(NetworkAddress {
            network: "n".into(),
            address: vec![0; 16],
            length: Some(128),
        });
        svc.waypoint = Some(GatewayAddress {
            destination: Some(gateway_address::Destination::Hostname(NamespacedHostname {
                namespace: "ns".into(),
                hostname: "waypoint.ns.svc.cluster.local".into(),
            })),
            hbone_mtls_port: 15008,
        });
        svc.load_balancing = Some(LoadBalancing {
            routing_preference: vec![1, 2, 3, 4, 5, 6],
            mode: 0,
            health_policy: 1,
        });
        assert!(validate(XdsKind::Address, &s(svc)).is_accept());
        let authz = Authorization {
            name: "p".into(),
            namespace: "default".into(),
            rules: vec![security::Rule {
                clauses: vec![security::Clause {
                    matches: vec![security::Match {
                        source_ips: vec![security::Address {
                            address: vec![1, 2, 3],
                            length: 99,
                        }],
                        ..Default::default()
                    }],
                }],
            }],
            ..Default::default()
        };
        assert!(validate(XdsKind::Authorization, &authz.encode_to_vec()).is_accept());
    }

    #[test]
    fn the_cache_decodes_each_body_once() {
        let cache = VerdictCache::new();
        let body = w(workload());
        let bad = Address { r#type: None }.encode_to_vec();
        for _ in 0..3 {
            assert!(cache.verdict(XdsKind::Address, &body).is_accept());
            assert_eq!(
                cache.verdict(XdsKind::Address, &bad),
                Verdict::Reject("unknown address type".into())
            );
        }
        assert_eq!(cache.decodes(), 2);
        assert_eq!(cache.hits(), 4);
        // The same bytes as another type are another body.
        let _ = cache.verdict(XdsKind::Authorization, &body);
        assert_eq!(cache.decodes(), 3);
    }
}
