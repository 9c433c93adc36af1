//! Builders for the security policies: AuthorizationPolicy (and its rules) and PeerAuthentication.

use std::collections::BTreeMap;

use crate::model::Object;

use super::meta;

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
