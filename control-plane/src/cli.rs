//! Command-line flags shared by ambientd's commands, with istiod's defaults.

use clap::{Args, ValueEnum};

use crate::index::{Enrollment, Settings};

/// How pods are judged enrolled in ambient mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EnrollmentArg {
    /// Only the `ambient.istio.io/redirection: enabled` annotation istio-cni writes.
    Annotation,
    /// The annotation, or istio-cni's `istio.io/dataplane-mode` label rules (for snapshots with no CNI).
    Labels,
}

/// Mesh settings (istiod's flags and defaults).
#[derive(Debug, Clone, Args)]
pub struct MeshArgs {
    /// Cluster ID, the first segment of workload uids.
    #[arg(long, default_value = "Kubernetes")]
    pub cluster_id: String,
    /// Mesh trust domain.
    #[arg(long, default_value = "cluster.local")]
    pub trust_domain: String,
    /// DNS suffix of Service hostnames.
    #[arg(long, default_value = "cluster.local")]
    pub domain_suffix: String,
    /// Namespace whose selector-less policies apply mesh-wide.
    #[arg(long, default_value = "istio-system")]
    pub root_namespace: String,
    /// Namespace whose `topology.istio.io/network` label names the local network.
    #[arg(long, default_value = "istio-system")]
    pub system_namespace: String,
    /// Enrollment rule; files have no CNI to annotate pods, so `labels` is the default there.
    #[arg(long, value_enum, default_value_t = EnrollmentArg::Labels)]
    pub enrollment: EnrollmentArg,
    /// Read only AuthorizationPolicies and PeerAuthentications labelled `istio.io/rev` with this value (or
    /// unlabelled); empty reads all.
    #[arg(long, default_value = "")]
    pub revision: String,
}

impl MeshArgs {
    pub fn settings(&self) -> Settings {
        Settings {
            cluster_id: self.cluster_id.clone(),
            trust_domain: self.trust_domain.clone(),
            domain_suffix: self.domain_suffix.clone(),
            root_namespace: self.root_namespace.clone(),
            system_namespace: self.system_namespace.clone(),
            enrollment: match self.enrollment {
                EnrollmentArg::Annotation => Enrollment::Annotation,
                EnrollmentArg::Labels => Enrollment::Labels,
            },
            revision: self.revision.clone(),
        }
    }
}
