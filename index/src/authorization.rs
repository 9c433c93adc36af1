//! AuthorizationPolicy → `istio.security.Authorization` for ztunnel
//! (docs/reference/istiod.md#authorizationpolicy-which-policies-reach-ztunnel and the two sections after it),
//! with the `ZtunnelAccepted` condition istiod writes and an account of who enforces the policy.
//!
//! Everything here is a pure function of one policy and the root namespace.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ambient_proto::security::{
    self as sec, Address, Clause, Match, ServiceAccountMatch, StringMatch, string_match,
};

use crate::model::istio::{Action, AuthorizationPolicySpec, Condition as When, Operation, Source};
use crate::model::{AuthorizationPolicy, Labels};

use super::Condition;

pub const ZTUNNEL_ACCEPTED: &str = "ZtunnelAccepted";

/// Who enforces a policy once the mesh runs in ambient mode. istiod does not report this; ambientd does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum EnforcedBy {
    /// ztunnel enforces the policy as written.
    #[serde(rename = "ztunnel")]
    Ztunnel,
    /// ztunnel enforces it, but without its HTTP rules: it denies more than written.
    #[serde(rename = "ztunnel (more restrictive than written)")]
    ZtunnelMoreRestrictive,
    /// A waypoint enforces it (`targetRef`/`targetRefs`).
    #[serde(rename = "waypoint")]
    Waypoint,
    /// Neither ztunnel nor, without a `targetRef`, a waypoint enforces it.
    #[serde(rename = "nothing (needs a waypoint)")]
    Nothing,
    /// A dry-run policy: nothing enforces it.
    #[serde(rename = "nothing (dry-run)")]
    DryRun,
}

impl EnforcedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            EnforcedBy::Ztunnel => "ztunnel",
            EnforcedBy::ZtunnelMoreRestrictive => "ztunnel (more restrictive than written)",
            EnforcedBy::Waypoint => "waypoint",
            EnforcedBy::Nothing => "nothing (needs a waypoint)",
            EnforcedBy::DryRun => "nothing (dry-run)",
        }
    }
}

/// The result of converting one AuthorizationPolicy.
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    /// What ztunnel receives; `None` when the policy is not sent.
    pub authorization: Option<sec::Authorization>,
    /// The `ZtunnelAccepted` condition; `None` for waypoint (`targetRef`) policies.
    pub condition: Option<Condition>,
    pub enforced_by: EnforcedBy,
    /// HTTP (L7) attributes found, sorted: what ztunnel cannot enforce.
    pub http_attributes: BTreeSet<String>,
    /// Indices of rules dropped entirely (ALLOW rules with HTTP attributes).
    pub dropped_rules: Vec<usize>,
    /// Values ztunnel never sees (non-numeric ports, invalid IPs), each naming its field. istiod drops these
    /// silently; ambientd drops them too and says so.
    pub warnings: Vec<String>,
}

/// Whether the policy is a waypoint policy (has `targetRef` or `targetRefs`).
pub fn is_waypoint_policy(spec: &AuthorizationPolicySpec) -> bool {
    spec.target_ref.is_some() || !spec.target_refs.is_empty()
}

/// The label selector used to attach a policy to workloads: `None` when the policy has no `matchLabels`
/// (namespace/global policies, and `selector: {}`), which then attaches to no workload.
pub fn attachment_selector(spec: &AuthorizationPolicySpec) -> Option<Labels> {
    let sel = spec.selector.as_ref()?;
    sel.match_labels.as_ref()?;
    Some(sel.labels())
}

fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

fn unsupported(message: String) -> Option<Condition> {
    Some(Condition::new(
        ZTUNNEL_ACCEPTED,
        false,
        "UnsupportedValue",
        message,
    ))
}

const HTTP_ALLOW: &str = "Within an ALLOW policy, rules matching HTTP attributes are omitted. This will be more restrictive than requested.";
const HTTP_DENY_NO_EFFECT: &str = "After omitting unsupported HTTP attributes, this DENY policy has no enforceable rules at ztunnel and will have no effect. Deploy a waypoint proxy and use a targetRef to enforce this policy.";
const HTTP_DENY_BROADER: &str = "DENY policy with HTTP attributes is enforced without the HTTP rules. This will be more restrictive than requested.";

/// Converts one AuthorizationPolicy for ztunnel.
pub fn convert(policy: &AuthorizationPolicy, root_namespace: &str) -> Converted {
    let meta = &policy.meta;
    let spec = &policy.spec;
    let mut out = Converted {
        authorization: None,
        condition: None,
        enforced_by: EnforcedBy::Nothing,
        http_attributes: BTreeSet::new(),
        dropped_rules: Vec::new(),
        warnings: Vec::new(),
    };

    if let Some(value) = meta.annotations.get(crate::model::well_known::DRY_RUN) {
        match parse_bool(value) {
            Some(true) => {
                out.enforced_by = EnforcedBy::DryRun;
                out.condition = unsupported(format!(
                    "found policy \"{}/{}\" using dry-run annotation, but support for ambient dry-run authorizationPolicies isn't enabled",
                    meta.namespace, meta.name
                ));
                return out;
            }
            Some(false) => {}
            None => out.warnings.push(format!(
                "metadata.annotations[istio.io/dry-run]: {value:?} is not a boolean; the policy is enforced"
            )),
        }
    }
    if is_waypoint_policy(spec) {
        out.enforced_by = EnforcedBy::Waypoint;
        return out;
    }
    let action = match Action::parse(spec.action.as_deref()) {
        Ok(Action::Allow) => sec::Action::Allow,
        Ok(Action::Deny) => sec::Action::Deny,
        Ok(other @ (Action::Audit | Action::Custom)) => {
            out.condition = unsupported(format!(
                "ztunnel does not support the {} action",
                other.as_str()
            ));
            return out;
        }
        Err(unknown) => {
            out.condition = Some(Condition::new(
                ZTUNNEL_ACCEPTED,
                false,
                "InvalidValue",
                format!(
                    "spec.action: unknown action {unknown:?} (expected ALLOW, DENY, AUDIT or CUSTOM)"
                ),
            ));
            return out;
        }
    };
    let scope = match &spec.selector {
        Some(_) => sec::Scope::WorkloadSelector,
        None if meta.namespace == root_namespace => sec::Scope::Global,
        None => sec::Scope::Namespace,
    };

    let mut rules = Vec::new();
    for (i, rule) in spec.rules.iter().enumerate() {
        let mut ctx = RuleContext {
            namespace: &meta.namespace,
            path: format!("spec.rules[{i}]"),
            http: BTreeSet::new(),
            warnings: &mut out.warnings,
        };
        let clauses = ctx.clauses(rule);
        let l7 = !ctx.http.is_empty();
        out.http_attributes.append(&mut ctx.http);
        if action == sec::Action::Allow && l7 {
            out.dropped_rules.push(i);
            continue;
        }
        rules.push(sec::Rule { clauses });
    }

    out.enforced_by = EnforcedBy::Ztunnel;
    out.condition = Some(Condition::new(
        ZTUNNEL_ACCEPTED,
        true,
        "Accepted",
        "attached to ztunnel".to_string(),
    ));
    if !out.http_attributes.is_empty() {
        let found = out
            .http_attributes
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        let (boilerplate, enforced_by) = if action == sec::Action::Allow {
            (HTTP_ALLOW, EnforcedBy::ZtunnelMoreRestrictive)
        } else if has_effective_rules(&rules) {
            (HTTP_DENY_BROADER, EnforcedBy::ZtunnelMoreRestrictive)
        } else {
            (HTTP_DENY_NO_EFFECT, EnforcedBy::Nothing)
        };
        out.enforced_by = enforced_by;
        out.condition = Some(Condition::new(
            ZTUNNEL_ACCEPTED,
            true,
            "UnsupportedValue",
            format!(
                "ztunnel does not support HTTP attributes (found: {found}). In ambient mode you must use a waypoint proxy to enforce HTTP rules. {boilerplate}"
            ),
        ));
    }
    out.authorization = Some(sec::Authorization {
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        scope: scope as i32,
        action: action as i32,
        rules,
        dry_run: false,
        extensions: Vec::new(),
    });
    out
}

/// Whether some rule can match at ztunnel: a rule with no clauses matches everything; otherwise every
/// clause needs a non-empty match (ztunnel skips empty matches).
pub fn has_effective_rules(rules: &[sec::Rule]) -> bool {
    rules.iter().any(|r| {
        r.clauses.is_empty()
            || r.clauses
                .iter()
                .all(|c| c.matches.iter().any(|m| *m != Match::default()))
    })
}

struct RuleContext<'a> {
    namespace: &'a str,
    path: String,
    http: BTreeSet<String>,
    warnings: &'a mut Vec<String>,
}

impl RuleContext<'_> {
    /// One clause for all `to` operations, one for all `from` sources, one per `when` condition.
    fn clauses(&mut self, rule: &crate::model::istio::Rule) -> Vec<Clause> {
        let mut clauses = Vec::new();
        if !rule.to.is_empty() {
            let matches = rule
                .to
                .iter()
                .enumerate()
                .map(|(j, t)| self.operation(&t.operation, &format!("to[{j}].operation")))
                .collect();
            clauses.push(Clause { matches });
        }
        if !rule.from.is_empty() {
            let matches = rule
                .from
                .iter()
                .enumerate()
                .map(|(j, f)| self.source(&f.source, &format!("from[{j}].source")))
                .collect();
            clauses.push(Clause { matches });
        }
        for (j, cond) in rule.when.iter().enumerate() {
            let m = self.when(cond, &format!("when[{j}]"));
            clauses.push(Clause { matches: vec![m] });
        }
        clauses
    }

    fn note_http(&mut self, name: &str, present: bool) {
        if present {
            self.http.insert(name.to_string());
        }
    }

    fn operation(&mut self, op: &Operation, field: &str) -> Match {
        for (name, values) in [
            ("hosts", &op.hosts),
            ("notHosts", &op.not_hosts),
            ("methods", &op.methods),
            ("notMethods", &op.not_methods),
            ("paths", &op.paths),
            ("notPaths", &op.not_paths),
        ] {
            self.note_http(name, !values.is_empty());
        }
        Match {
            destination_ports: self.ports(&op.ports, &format!("{field}.ports")),
            not_destination_ports: self.ports(&op.not_ports, &format!("{field}.notPorts")),
            ..Default::default()
        }
    }

    fn source(&mut self, src: &Source, field: &str) -> Match {
        for (name, values) in [
            ("remoteIpBlocks", &src.remote_ip_blocks),
            ("notRemoteIpBlocks", &src.not_remote_ip_blocks),
            ("requestPrincipals", &src.request_principals),
            ("notRequestPrincipals", &src.not_request_principals),
        ] {
            self.note_http(name, !values.is_empty());
        }
        Match {
            namespaces: string_matches(&src.namespaces),
            not_namespaces: string_matches(&src.not_namespaces),
            principals: string_matches(&src.principals),
            not_principals: string_matches(&src.not_principals),
            source_ips: self.ips(&src.ip_blocks, &format!("{field}.ipBlocks")),
            not_source_ips: self.ips(&src.not_ip_blocks, &format!("{field}.notIpBlocks")),
            service_accounts: service_accounts(&src.service_accounts, self.namespace),
            not_service_accounts: service_accounts(&src.not_service_accounts, self.namespace),
            ..Default::default()
        }
    }

    /// The L4 `when` keys map to match fields; every other key is HTTP and leaves an empty match.
    fn when(&mut self, cond: &When, field: &str) -> Match {
        let (v, nv) = (&cond.values, &cond.not_values);
        let mut m = Match::default();
        match cond.key.as_str() {
            "source.ip" => {
                m.source_ips = self.ips(v, &format!("{field}.values"));
                m.not_source_ips = self.ips(nv, &format!("{field}.notValues"));
            }
            "source.namespace" => {
                m.namespaces = string_matches(v);
                m.not_namespaces = string_matches(nv);
            }
            "source.principal" => {
                m.principals = string_matches(v);
                m.not_principals = string_matches(nv);
            }
            "destination.ip" => {
                m.destination_ips = self.ips(v, &format!("{field}.values"));
                m.not_destination_ips = self.ips(nv, &format!("{field}.notValues"));
            }
            "destination.port" => {
                m.destination_ports = self.ports(v, &format!("{field}.values"));
                m.not_destination_ports = self.ports(nv, &format!("{field}.notValues"));
            }
            other => {
                self.http.insert(other.to_string());
            }
        }
        m
    }

    /// Numeric ports up to 65535; anything else is dropped (istiod drops it silently).
    fn ports(&mut self, values: &[String], field: &str) -> Vec<u32> {
        values
            .iter()
            .filter_map(|v| match v.parse::<u32>() {
                // Go's `strconv.ParseUint` takes digits only; Rust's parser also takes a leading `+`.
                Ok(p) if p <= 65535 && v.bytes().all(|b| b.is_ascii_digit()) => Some(p),
                _ => {
                    self.warnings.push(format!(
                        "{}.{field}: {v:?} is not a port number; ztunnel never sees it",
                        self.path
                    ));
                    None
                }
            })
            .collect()
    }

    /// IPs as /32 or /128, CIDRs with their length (not masked); invalid entries are dropped.
    fn ips(&mut self, values: &[String], field: &str) -> Vec<Address> {
        values
            .iter()
            .filter(|v| !v.is_empty())
            .filter_map(|v| match parse_ip_or_cidr(v) {
                Some(a) => Some(a),
                None => {
                    self.warnings.push(format!(
                        "{}.{field}: {v:?} is not an IP address or CIDR; ztunnel never sees it",
                        self.path
                    ));
                    None
                }
            })
            .collect()
    }
}

fn parse_ip_or_cidr(value: &str) -> Option<Address> {
    let (ip, length) = match value.split_once('/') {
        Some((ip, bits)) => {
            let ip: IpAddr = ip.parse().ok()?;
            // Go's netip accepts only plain decimal prefix lengths, without leading zeros.
            if bits.is_empty()
                || !bits.bytes().all(|b| b.is_ascii_digit())
                || bits.len() > 3
                || (bits.len() > 1 && bits.starts_with('0'))
            {
                return None;
            }
            let bits: u32 = bits.parse().ok()?;
            (ip, bits)
        }
        None => {
            let ip: IpAddr = value.parse().ok()?;
            let bits = if ip.is_ipv4() { 32 } else { 128 };
            (ip, bits)
        }
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if length > max {
        return None;
    }
    Some(Address {
        address: super::waypoints::ip_bytes(ip),
        length,
    })
}

/// `*` → presence, `*x` → suffix, `x*` → prefix, otherwise exact.
pub fn string_match(value: &str) -> StringMatch {
    use string_match::MatchType;
    let t = if value == "*" {
        MatchType::Presence(())
    } else if let Some(rest) = value.strip_prefix('*') {
        MatchType::Suffix(rest.to_string())
    } else if let Some(rest) = value.strip_suffix('*') {
        MatchType::Prefix(rest.to_string())
    } else {
        MatchType::Exact(value.to_string())
    };
    StringMatch {
        match_type: Some(t),
    }
}

fn string_matches(values: &[String]) -> Vec<StringMatch> {
    values.iter().map(|v| string_match(v)).collect()
}

/// `ns/sa`, or a bare `sa` in the policy's namespace.
fn service_accounts(values: &[String], namespace: &str) -> Vec<ServiceAccountMatch> {
    values
        .iter()
        .map(|v| match v.split_once('/') {
            Some((ns, sa)) => ServiceAccountMatch {
                namespace: ns.to_string(),
                service_account: sa.to_string(),
            },
            None => ServiceAccountMatch {
                namespace: namespace.to_string(),
                service_account: v.clone(),
            },
        })
        .collect()
}
