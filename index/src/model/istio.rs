//! Istio security CRDs (`security.istio.io/v1`): AuthorizationPolicy and PeerAuthentication, written by hand
//! with serde because no maintained crate carries them. Field names follow the Istio API exactly.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use super::ModelError;
use super::core::Meta;
use super::labels::Labels;

/// `spec.selector` of Istio security policies: labels only.
///
/// istiod tells apart `selector: {}` (no label selector: attaches to nothing) from
/// `selector: {matchLabels: {}}` (an empty label selector: selects everything), so both levels are optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSelector {
    #[serde(default)]
    pub match_labels: Option<BTreeMap<String, String>>,
}

impl WorkloadSelector {
    /// The match labels, empty when absent.
    pub fn labels(&self) -> Labels {
        self.match_labels.iter().flatten().collect()
    }

    /// True when there are no match labels at all.
    pub fn is_empty(&self) -> bool {
        self.match_labels.as_ref().is_none_or(|m| m.is_empty())
    }
}

/// A `targetRef`/`targetRefs` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyTargetReference {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    #[serde(default)]
    pub principals: Vec<String>,
    #[serde(default)]
    pub not_principals: Vec<String>,
    #[serde(default)]
    pub request_principals: Vec<String>,
    #[serde(default)]
    pub not_request_principals: Vec<String>,
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default)]
    pub not_namespaces: Vec<String>,
    #[serde(default)]
    pub service_accounts: Vec<String>,
    #[serde(default)]
    pub not_service_accounts: Vec<String>,
    #[serde(default)]
    pub ip_blocks: Vec<String>,
    #[serde(default)]
    pub not_ip_blocks: Vec<String>,
    #[serde(default)]
    pub remote_ip_blocks: Vec<String>,
    #[serde(default)]
    pub not_remote_ip_blocks: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub not_hosts: Vec<String>,
    #[serde(default)]
    pub ports: Vec<String>,
    #[serde(default)]
    pub not_ports: Vec<String>,
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default)]
    pub not_methods: Vec<String>,
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub not_paths: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct From {
    #[serde(default)]
    pub source: Source,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct To {
    #[serde(default)]
    pub operation: Operation,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    pub key: String,
    #[serde(default)]
    pub values: Vec<String>,
    #[serde(default)]
    pub not_values: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    #[serde(default)]
    pub from: Vec<From>,
    #[serde(default)]
    pub to: Vec<To>,
    #[serde(default)]
    pub when: Vec<Condition>,
}

/// `spec.action`; absent means ALLOW.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Action {
    #[default]
    Allow,
    Deny,
    Audit,
    Custom,
}

impl Action {
    /// Parses the wire value; an unknown value is returned as the error so it can be reported.
    pub fn parse(value: Option<&str>) -> Result<Action, String> {
        match value {
            None | Some("") | Some("ALLOW") => Ok(Action::Allow),
            Some("DENY") => Ok(Action::Deny),
            Some("AUDIT") => Ok(Action::Audit),
            Some("CUSTOM") => Ok(Action::Custom),
            Some(other) => Err(other.to_string()),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "ALLOW",
            Action::Deny => "DENY",
            Action::Audit => "AUDIT",
            Action::Custom => "CUSTOM",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationPolicySpec {
    #[serde(default)]
    pub selector: Option<WorkloadSelector>,
    #[serde(default)]
    pub target_ref: Option<PolicyTargetReference>,
    #[serde(default)]
    pub target_refs: Vec<PolicyTargetReference>,
    /// Kept as written so that an unknown action is reported on the policy rather than failing the
    /// document; see [`Action::parse`].
    #[serde(default)]
    pub action: Option<String>,
    /// `rules` absent and `rules: []` mean the same: no rule.
    #[serde(default)]
    pub rules: Vec<Rule>,
    #[serde(default)]
    pub provider: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationPolicy {
    pub meta: Meta,
    pub spec: AuthorizationPolicySpec,
}

/// mTLS mode of a PeerAuthentication (or of one of its ports).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum MtlsMode {
    #[default]
    Unset,
    Disable,
    Permissive,
    Strict,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mtls {
    #[serde(default)]
    pub mode: MtlsMode,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerAuthenticationSpec {
    #[serde(default)]
    pub selector: Option<WorkloadSelector>,
    #[serde(default)]
    pub mtls: Option<Mtls>,
    /// Port number → mode. Keys are strings in YAML (`"8080":`) and numbers in some tools' output.
    #[serde(default)]
    pub port_level_mtls: BTreeMap<u32, Mtls>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAuthentication {
    pub meta: Meta,
    pub spec: PeerAuthenticationSpec,
}

/// The wire shape shared by both CRDs: standard metadata plus a typed spec.
#[derive(Debug, Deserialize)]
struct Wire<S> {
    metadata: ObjectMeta,
    #[serde(default)]
    spec: Option<S>,
}

fn decode<S: serde::de::DeserializeOwned + Default>(
    value: serde_json::Value,
) -> Result<(Meta, S), ModelError> {
    let wire: Wire<S> = super::typed(value)?;
    Ok((
        Meta::from_k8s(wire.metadata, false)?,
        wire.spec.unwrap_or_default(),
    ))
}

impl AuthorizationPolicy {
    pub fn from_value(value: serde_json::Value) -> Result<Self, ModelError> {
        let (meta, spec) = decode(value)?;
        Ok(AuthorizationPolicy { meta, spec })
    }
}

impl PeerAuthentication {
    pub fn from_value(value: serde_json::Value) -> Result<Self, ModelError> {
        let (meta, spec) = decode(value)?;
        Ok(PeerAuthentication { meta, spec })
    }
}
