//! PeerAuthentication → DENY `istio.security.Authorization`s for ztunnel
//! (docs/reference/istiod.md#peerauthentication-converted-policies): the static strict policy, the
//! per-workload port-level conversions, and the keys a workload lists.
//!
//! One deliberate difference from istiod, documented in `docs/design.md`: istiod's port check misplaces a
//! parenthesis, so a PERMISSIVE or DISABLE workload policy with a STRICT port, under a STRICT mesh policy and
//! no namespace policy, converts to nothing while the workload still lists its key; ztunnel then skips the
//! unknown policy and the port is not strict. ambientd converts that STRICT port as written, so the key the
//! workload lists always exists and the port is enforced.
//!
//! A second difference of the same kind: under a STRICT mesh policy and an UNSET namespace policy, an UNSET
//! workload policy with a PERMISSIVE port. istiod's port check reads the UNSET namespace policy as not strict
//! and converts nothing, while its key computation lets the namespace inherit STRICT and lists the converted
//! policy instead of the static one; ztunnel skips the unknown name and the workload loses mTLS enforcement
//! altogether. ambientd lets the namespace inherit in both places, so the listed policy exists and holds the
//! exemption merged with strictness. (A DISABLE port there is converted the same way; as in istiod without a
//! namespace policy, the workload's keys ignore DISABLE ports in this position, so that policy is sent but
//! not listed and the static strict policy applies.)

use ambient_proto::security::{self as sec, Clause, Match, StringMatch, string_match};

use crate::model::PeerAuthentication;
use crate::model::istio::MtlsMode;

/// Name of the singleton policy that denies plaintext, in the root namespace.
pub const STATIC_STRICT: &str = "istio_converted_static_strict";

/// Name of the converted form of a workload PeerAuthentication.
pub fn converted_name(name: &str) -> String {
    format!("converted_peer_authentication_{name}")
}

fn mode(pa: &PeerAuthentication) -> MtlsMode {
    pa.spec.mtls.as_ref().map(|m| m.mode).unwrap_or_default()
}

fn is_strict(pa: Option<&PeerAuthentication>) -> bool {
    pa.is_some_and(|p| mode(p) == MtlsMode::Strict)
}

fn is_unset(pa: &PeerAuthentication) -> bool {
    mode(pa) == MtlsMode::Unset
}

fn deny_plaintext() -> Match {
    Match {
        not_principals: vec![StringMatch {
            match_type: Some(string_match::MatchType::Presence(())),
        }],
        ..Default::default()
    }
}

/// The static strict policy: denies every connection without a peer identity.
pub fn static_strict(root_namespace: &str) -> sec::Authorization {
    sec::Authorization {
        name: STATIC_STRICT.to_string(),
        namespace: root_namespace.to_string(),
        scope: sec::Scope::WorkloadSelector as i32,
        action: sec::Action::Deny as i32,
        rules: vec![sec::Rule {
            clauses: vec![Clause {
                matches: vec![deny_plaintext()],
            }],
        }],
        dry_run: false,
        extensions: Vec::new(),
    }
}

/// Whether a PeerAuthentication is converted at all: a workload policy (has a selector, outside the root
/// namespace) with port-level settings.
pub fn is_convertible(pa: &PeerAuthentication, root_namespace: &str) -> bool {
    pa.meta.namespace != root_namespace
        && pa.spec.selector.is_some()
        && !pa.spec.port_level_mtls.is_empty()
}

/// Converts a workload PeerAuthentication given the namespace-wide and mesh-wide policies in force.
pub fn convert(
    pa: &PeerAuthentication,
    namespace_policy: Option<&PeerAuthentication>,
    mesh_policy: Option<&PeerAuthentication>,
    root_namespace: &str,
) -> Option<sec::Authorization> {
    if !is_convertible(pa, root_namespace) {
        return None;
    }
    let own = mode(pa);
    let mut clauses: Vec<Clause> = Vec::new();
    let mut groups: Vec<sec::Rule> = Vec::new();
    if own == MtlsMode::Strict {
        clauses.push(Clause {
            matches: vec![deny_plaintext()],
        });
    }
    // Whether the parent (namespace, else mesh) makes unset ports strict anyway.
    let inherited_strict = match namespace_policy {
        Some(ns) if !is_unset(ns) => is_strict(Some(ns)),
        _ => is_strict(mesh_policy),
    };
    let mut found_non_strict_port = false;
    for (port, port_mtls) in &pa.spec.port_level_mtls {
        match port_mtls.mode {
            MtlsMode::Strict => {
                if own == MtlsMode::Strict || (own == MtlsMode::Unset && inherited_strict) {
                    continue;
                }
                groups.push(sec::Rule {
                    clauses: vec![Clause {
                        matches: vec![Match {
                            destination_ports: vec![*port],
                            ..deny_plaintext()
                        }],
                    }],
                });
            }
            MtlsMode::Permissive | MtlsMode::Disable => {
                if matches!(own, MtlsMode::Permissive | MtlsMode::Disable) {
                    continue;
                }
                // An UNSET namespace policy inherits the mesh mode here too, as in `workload_keys` (istiod
                // reads it as not strict; see the module doc).
                if own == MtlsMode::Unset && !inherited_strict {
                    continue;
                }
                found_non_strict_port = true;
                clauses.push(Clause {
                    matches: vec![Match {
                        not_destination_ports: vec![*port],
                        ..Default::default()
                    }],
                });
            }
            MtlsMode::Unset => {}
        }
    }
    if own == MtlsMode::Strict && !found_non_strict_port {
        return None;
    }
    if clauses.is_empty() && groups.is_empty() {
        return None;
    }
    let merge_strict = (is_strict(mesh_policy)
        && namespace_policy.is_none_or(|ns| is_unset(ns) || is_strict(Some(ns))))
        || is_strict(namespace_policy);
    if merge_strict && found_non_strict_port {
        clauses.push(Clause {
            matches: vec![deny_plaintext()],
        });
    }
    if !clauses.is_empty() {
        groups.push(sec::Rule { clauses });
    }
    Some(sec::Authorization {
        name: converted_name(&pa.meta.name),
        namespace: pa.meta.namespace.clone(),
        scope: sec::Scope::WorkloadSelector as i32,
        action: sec::Action::Deny as i32,
        rules: groups,
        dry_run: false,
        extensions: Vec::new(),
    })
}

/// The oldest policy by creation time (the first seen wins a tie).
pub fn oldest<'a>(
    policies: impl IntoIterator<Item = &'a PeerAuthentication>,
) -> Option<&'a PeerAuthentication> {
    let mut best: Option<&PeerAuthentication> = None;
    for p in policies {
        if best.is_none_or(|b| p.meta.creation < b.meta.creation) {
            best = Some(p);
        }
    }
    best
}

/// The PeerAuthentication-derived keys a workload lists, given the policies that apply to it: those of its
/// namespace without a selector or whose selector matches it, and the mesh-wide ones (root namespace, no
/// selector). Sorted.
pub fn workload_keys(root_namespace: &str, applicable: &[&PeerAuthentication]) -> Vec<String> {
    let level = |p: &&&PeerAuthentication| p.spec.selector.as_ref().is_none_or(|s| s.is_empty());
    let mesh = oldest(
        applicable
            .iter()
            .filter(|p| level(p) && p.meta.namespace == root_namespace)
            .copied(),
    );
    let namespace = oldest(
        applicable
            .iter()
            .filter(|p| level(p) && p.meta.namespace != root_namespace)
            .copied(),
    );
    let workload = oldest(
        applicable
            .iter()
            .filter(|p| !level(p) && p.meta.namespace != root_namespace)
            .copied(),
    );

    let mut strict = is_strict(mesh);
    if let Some(ns) = namespace
        && !is_unset(ns)
    {
        strict = is_strict(Some(ns));
    }
    let mut port_key = None;
    if let Some(w) = workload {
        let own = mode(w);
        match own {
            MtlsMode::Strict => strict = true,
            MtlsMode::Permissive | MtlsMode::Disable => strict = false,
            MtlsMode::Unset => {}
        }
        let ports = &w.spec.port_level_mtls;
        let key = || format!("{}/{}", w.meta.namespace, converted_name(&w.meta.name));
        if !ports.is_empty() {
            match own {
                MtlsMode::Strict => {
                    if ports
                        .values()
                        .any(|m| matches!(m.mode, MtlsMode::Permissive | MtlsMode::Disable))
                    {
                        port_key = Some(key());
                        strict = false;
                    }
                }
                MtlsMode::Permissive | MtlsMode::Disable => {
                    if ports.values().any(|m| m.mode == MtlsMode::Strict) {
                        port_key = Some(key());
                    }
                }
                MtlsMode::Unset => {
                    if strict {
                        if ports.values().any(|m| m.mode == MtlsMode::Permissive) {
                            port_key = Some(key());
                            strict = false;
                        }
                    } else if ports.values().any(|m| m.mode == MtlsMode::Strict) {
                        port_key = Some(key());
                    }
                }
            }
        }
    }
    let mut keys = Vec::new();
    if strict {
        keys.push(format!("{root_namespace}/{STATIC_STRICT}"));
    }
    keys.extend(port_key);
    keys.sort();
    keys.dedup();
    keys
}
