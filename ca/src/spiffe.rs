//! SPIFFE identities of the form `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
//!
//! Parsing is as strict as ztunnel's (`identity/manager.rs`): exactly these five path segments, none empty.

use std::fmt;
use std::str::FromStr;

const SCHEME: &str = "spiffe://";

/// A workload identity: trust domain, namespace and service account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    pub trust_domain: String,
    pub namespace: String,
    pub service_account: String,
}

/// Why a string is not a SPIFFE identity ztunnel would accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "{0:?} does not start with spiffe:// (expected spiffe://<trust-domain>/ns/<ns>/sa/<sa>)"
    )]
    Scheme(String),
    #[error("{0:?} is not of the form spiffe://<trust-domain>/ns/<ns>/sa/<sa>")]
    Shape(String),
}

impl Identity {
    pub fn new(
        trust_domain: impl Into<String>,
        namespace: impl Into<String>,
        service_account: impl Into<String>,
    ) -> Self {
        Identity {
            trust_domain: trust_domain.into(),
            namespace: namespace.into(),
            service_account: service_account.into(),
        }
    }

    /// The principal as authorization policies write it: the identity without `spiffe://`.
    pub fn principal(&self) -> String {
        format!(
            "{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}", self.principal())
    }
}

impl FromStr for Identity {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s
            .strip_prefix(SCHEME)
            .ok_or_else(|| IdentityError::Scheme(s.to_string()))?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            [td, "ns", ns, "sa", sa] if !td.is_empty() && !ns.is_empty() && !sa.is_empty() => {
                Ok(Identity::new(*td, *ns, *sa))
            }
            _ => Err(IdentityError::Shape(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let cases: &[(&str, Result<Identity, IdentityError>)] = &[
            (
                "spiffe://cluster.local/ns/backend/sa/bookinfo-reviews",
                Ok(Identity::new(
                    "cluster.local",
                    "backend",
                    "bookinfo-reviews",
                )),
            ),
            (
                "spiffe://td/ns/a/sa/b/extra",
                Err(IdentityError::Shape("spiffe://td/ns/a/sa/b/extra".into())),
            ),
            (
                "spiffe://td/ns//sa/b",
                Err(IdentityError::Shape("spiffe://td/ns//sa/b".into())),
            ),
            (
                "spiffe:///ns/a/sa/b",
                Err(IdentityError::Shape("spiffe:///ns/a/sa/b".into())),
            ),
            (
                "spiffe://td/namespace/a/sa/b",
                Err(IdentityError::Shape("spiffe://td/namespace/a/sa/b".into())),
            ),
            (
                "cluster.local/ns/a/sa/b",
                Err(IdentityError::Scheme("cluster.local/ns/a/sa/b".into())),
            ),
        ];
        for (input, want) in cases {
            let got = input.parse::<Identity>();
            assert_eq!(&got, want, "{input}");
            if let Ok(id) = got {
                assert_eq!(id.to_string(), *input);
            }
        }
    }

    #[test]
    fn principal_has_no_scheme() {
        let id = Identity::new("cluster.local", "frontend", "bookinfo-productpage");
        assert_eq!(
            id.principal(),
            "cluster.local/ns/frontend/sa/bookinfo-productpage"
        );
    }
}
