//! The deployment files under `deploy/` (everything but `deploy/examples/`, which the golden tests cover),
//! checked without a cluster or a network:
//!
//! - every YAML document parses into its Kubernetes type, with no field the type does not know;
//! - the `istiod` Deployment, Service and ServiceAccount agree with each other, with istiod's port names and
//!   with `ambientd serve`'s flags;
//! - the RBAC grants every Kubernetes API call ambientd makes, and nothing else;
//! - the Dockerfile builds `ambientd` for a non-root runtime image exposing istiod's ports;
//! - every version of the Kind lab is pinned in `deploy/kind/versions.env` and nowhere else;
//! - `deploy/kind/lab.sh` is valid bash, names missing tools, and turns the cluster's answers into the
//!   verify table (driven here by a stub `kubectl`);
//! - ambientd's own index gives the demo the outcomes `lab.sh verify` expects.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ambient_control_plane::cli::ServeArgs;
use ambient_control_plane::cluster::{API_CALLS, ApiCall};
use ambient_control_plane::serve::ServeSource;
use ambient_control_plane::source::files::FileSource;
use ambient_index::model::Object;
use ambient_index::model::istio::AuthorizationPolicySpec;
use ambient_index::{Enrollment, Index, Settings};
use gateway_api::apis::standard::{gatewayclasses, gateways, httproutes};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Namespace, Pod, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

// --- What ambientd needs from the cluster --------------------------------------------------------------

/// What the RBAC must grant, and all it may grant.
fn api_calls() -> BTreeSet<ApiCall> {
    API_CALLS.iter().copied().collect()
}

/// Resources ambientd touches only in its own namespace: granted by a Role there, never cluster-wide.
const SYSTEM_NAMESPACE_ONLY: &[(&str, &str)] =
    &[("", "secrets"), ("coordination.k8s.io", "leases")];

/// The objects ambientd reads and writes by name, per `(API group, resource)`: rules may be limited to
/// them.
fn named_objects() -> BTreeMap<(&'static str, &'static str), Vec<&'static str>> {
    BTreeMap::from([
        (
            ("coordination.k8s.io", "leases"),
            vec![ambient_control_plane::cluster::leader::LEASE_NAME],
        ),
        (("", "secrets"), vec!["cacerts", "istio-ca-secret"]),
        (("", "configmaps"), vec!["istio-ca-root-cert"]),
    ])
}

const SYSTEM_NS: &str = "istio-system";
/// istiod's Service ports (name, port), which the stock charts and tools expect.
const ISTIOD_PORTS: &[(&str, i32)] = &[
    ("grpc-xds", 15010),
    ("https-dns", 15012),
    ("http-monitoring", 15014),
];

// --- Reading deploy/ -------------------------------------------------------------------------------------

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repository root")
}

fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One YAML document of a file under `deploy/`.
struct Doc {
    /// Path relative to the repository root.
    file: String,
    /// 1-based position of the document in its file.
    index: usize,
    value: Value,
}

impl Doc {
    fn str_at(&self, pointer: &str) -> &str {
        self.value
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or("")
    }
    fn api_version(&self) -> &str {
        self.str_at("/apiVersion")
    }
    fn kind(&self) -> &str {
        self.str_at("/kind")
    }
    fn name(&self) -> &str {
        self.str_at("/metadata/name")
    }
    fn namespace(&self) -> &str {
        self.str_at("/metadata/namespace")
    }
    fn describe(&self) -> String {
        format!(
            "{} (document {}) {}/{}",
            self.file,
            self.index,
            self.kind(),
            self.name()
        )
    }
    fn parse<T: DeserializeOwned>(&self) -> T {
        serde_json::from_value(self.value.clone())
            .unwrap_or_else(|e| panic!("{}: {e}", self.describe()))
    }
}

fn yaml_files(dir: &Path, skip: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path == skip {
            continue;
        }
        if path.is_dir() {
            yaml_files(&path, skip, out);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            out.push(path);
        }
    }
}

fn load(path: &Path) -> Vec<Doc> {
    use serde::Deserialize as _;
    let root = repo();
    let file = path
        .strip_prefix(&root)
        .unwrap_or(path)
        .display()
        .to_string();
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{file}: {e}"));
    let mut docs = Vec::new();
    for (i, document) in serde_norway::Deserializer::from_str(&text).enumerate() {
        let value = Value::deserialize(document)
            .unwrap_or_else(|e| panic!("{file} (document {}): not YAML: {e}", i + 1));
        if !value.is_null() {
            docs.push(Doc {
                file: file.clone(),
                index: i + 1,
                value,
            });
        }
    }
    docs
}

/// Every manifest under `deploy/`, except `deploy/examples/`.
fn manifests() -> Vec<Doc> {
    let deploy = repo().join("deploy");
    let mut files = Vec::new();
    yaml_files(&deploy, &deploy.join("examples"), &mut files);
    files.iter().flat_map(|f| load(f)).collect()
}

/// The manifests of one folder (relative to the repository root).
fn manifests_in(rel: &str) -> Vec<Doc> {
    let mut files = Vec::new();
    let dir = repo().join(rel);
    yaml_files(&dir, &dir.join("-"), &mut files);
    files.iter().flat_map(|f| load(f)).collect()
}

/// The one document of `kind` named `name` among `docs`.
fn find<'a>(docs: &'a [Doc], kind: &str, name: &str) -> &'a Doc {
    let found: Vec<&Doc> = docs
        .iter()
        .filter(|d| d.kind() == kind && d.name() == name)
        .collect();
    assert_eq!(found.len(), 1, "expected exactly one {kind}/{name}");
    found[0]
}

// --- Typed parsing with unknown fields detected ---------------------------------------------------------

/// Parses `value` as `T`, then serializes it back: a key of the input missing from the round trip is a
/// field `T` does not know (Kubernetes types ignore unknown fields when they deserialize).
fn check_typed<T: DeserializeOwned + Serialize>(value: &Value) -> Result<(), String> {
    let typed: T = serde_path_to_error::deserialize(value.clone())
        .map_err(|e| format!("at {}: {}", e.path(), e.inner()))?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    let mut problems = Vec::new();
    unknown_fields(value, &back, "", &mut problems);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

fn unknown_fields(orig: &Value, back: &Value, path: &str, out: &mut Vec<String>) {
    match (orig, back) {
        (Value::Null, _) => {}
        (Value::Object(o), Value::Object(b)) => {
            for (key, v) in o {
                let here = format!("{path}.{key}");
                match b.get(key) {
                    Some(bv) => unknown_fields(v, bv, &here, out),
                    None if v.is_null() => {}
                    None => out.push(format!("{here}: unknown field")),
                }
            }
        }
        (Value::Array(o), Value::Array(b)) if o.len() == b.len() => {
            for (i, (v, bv)) in o.iter().zip(b).enumerate() {
                unknown_fields(v, bv, &format!("{path}[{i}]"), out);
            }
        }
        (Value::Number(o), Value::Number(b)) if o.as_f64() == b.as_f64() => {}
        (o, b) if o == b => {}
        (o, b) => out.push(format!("{path}: {o} reads back as {b}")),
    }
}

/// AuthorizationPolicy has no published Rust type: its `spec` is checked against ambientd's own
/// definition, its metadata against `ObjectMeta`.
fn check_authorization_policy(value: &Value) -> Result<(), String> {
    let top = value.as_object().ok_or("not a mapping")?;
    for key in top.keys() {
        if !["apiVersion", "kind", "metadata", "spec", "status"].contains(&key.as_str()) {
            return Err(format!(".{key}: unknown field"));
        }
    }
    check_typed::<ObjectMeta>(&value["metadata"]).map_err(|e| format!("metadata {e}"))?;
    check_typed::<AuthorizationPolicySpec>(&value["spec"]).map_err(|e| format!("spec {e}"))
}

fn check_document(doc: &Doc) -> Result<(), String> {
    match (doc.api_version(), doc.kind()) {
        ("v1", "Namespace") => check_typed::<Namespace>(&doc.value),
        ("v1", "ServiceAccount") => check_typed::<ServiceAccount>(&doc.value),
        ("v1", "Service") => check_typed::<Service>(&doc.value),
        ("v1", "Pod") => check_typed::<Pod>(&doc.value),
        ("v1", "ConfigMap") => check_typed::<ConfigMap>(&doc.value),
        ("apps/v1", "Deployment") => check_typed::<Deployment>(&doc.value),
        ("apps/v1", "DaemonSet") => check_typed::<DaemonSet>(&doc.value),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => check_typed::<ClusterRole>(&doc.value),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            check_typed::<ClusterRoleBinding>(&doc.value)
        }
        ("rbac.authorization.k8s.io/v1", "Role") => check_typed::<Role>(&doc.value),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => check_typed::<RoleBinding>(&doc.value),
        ("gateway.networking.k8s.io/v1", "GatewayClass") => {
            check_typed::<gatewayclasses::GatewayClass>(&doc.value)
        }
        ("gateway.networking.k8s.io/v1", "Gateway") => check_typed::<gateways::Gateway>(&doc.value),
        ("gateway.networking.k8s.io/v1", "HTTPRoute") => {
            check_typed::<httproutes::HttpRoute>(&doc.value)
        }
        ("security.istio.io/v1", "AuthorizationPolicy") => check_authorization_policy(&doc.value),
        (api, kind) => Err(format!(
            "no Rust type is known here for apiVersion {api:?} kind {kind:?}: add one to check_document"
        )),
    }
}

const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "GatewayClass",
];

#[test]
fn every_manifest_parses_into_its_kubernetes_type() {
    let docs = manifests();
    let mut problems = Vec::new();
    let mut files = BTreeSet::new();
    for doc in &docs {
        files.insert(doc.file.clone());
        if let Err(e) = check_document(doc) {
            problems.push(format!("{}: {e}", doc.describe()));
        }
        // lab.sh applies folders without `-n`: a namespaced object must say where it goes.
        let cluster_scoped = CLUSTER_SCOPED.contains(&doc.kind());
        let has_namespace = !doc.namespace().is_empty();
        if cluster_scoped == has_namespace {
            problems.push(format!(
                "{}: metadata.namespace must be {}",
                doc.describe(),
                if cluster_scoped { "absent" } else { "set" }
            ));
        }
        // The kinds ambientd itself reads must also read as ambientd reads them.
        if let Err(e) = Object::from_value(doc.value.clone()) {
            problems.push(format!("{}: ambientd cannot read it: {e}", doc.describe()));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
    for expected in [
        "deploy/kubernetes/10-serviceaccount.yaml",
        "deploy/kubernetes/20-rbac.yaml",
        "deploy/kubernetes/30-service.yaml",
        "deploy/kubernetes/40-deployment.yaml",
        "deploy/kind/demo/50-policies.yaml",
    ] {
        assert!(files.contains(expected), "{expected} was not read");
    }
    assert!(
        files.iter().all(|f| !f.starts_with("deploy/examples/")),
        "deploy/examples/ is covered by the golden tests"
    );
}

#[test]
fn unknown_fields_are_reported() {
    // The check above is only as good as its detection of misspelt fields; make sure it detects them.
    let deployment: Value = serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "x", "namespace": "y"},
        "spec": {"selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}},
                              "spec": {"containers": [{"name": "c", "image": "i", "readinessProbe": {"httpGet": {"path": "/ready", "prot": 15014}}}]}}}
    });
    let err = check_typed::<Deployment>(&deployment).expect_err("`prot` is not a field");
    assert!(err.contains("readinessProbe.httpGet.prot"), "{err}");
    let policy: Value = serde_json::json!({
        "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
        "metadata": {"name": "p", "namespace": "n"},
        "spec": {"rules": [{"from": [{"source": {"principal": ["a"]}}]}]}
    });
    let err = check_authorization_policy(&policy).expect_err("`principal` is not a field");
    assert!(err.contains("source.principal"), "{err}");
}

// --- The istiod Deployment, Service and ServiceAccount --------------------------------------------------

fn kube_manifests() -> Vec<Doc> {
    manifests_in("deploy/kubernetes")
}

fn ambientd_container(deployment: &Deployment) -> Container {
    let pod = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod template");
    assert_eq!(
        pod.containers.len(),
        1,
        "one container: ambientd ({:?})",
        pod.containers.iter().map(|c| &c.name).collect::<Vec<_>>()
    );
    pod.containers[0].clone()
}

/// containerPort number by port name, and the set of numbers.
fn container_ports(container: &Container) -> (BTreeMap<String, i32>, BTreeSet<i32>) {
    let ports = container.ports.clone().unwrap_or_default();
    let named = ports
        .iter()
        .filter_map(|p| Some((p.name.clone()?, p.container_port)))
        .collect();
    let numbers = ports.iter().map(|p| p.container_port).collect();
    (named, numbers)
}

fn resolve(port: &IntOrString, named: &BTreeMap<String, i32>) -> Option<i32> {
    match port {
        IntOrString::Int(n) => Some(*n),
        IntOrString::String(name) => named.get(name).copied(),
    }
}

#[test]
fn deployment_ports_match_the_istiod_service() {
    let docs = kube_manifests();
    let deployment: Deployment = find(&docs, "Deployment", "istiod").parse();
    let service: Service = find(&docs, "Service", "istiod").parse();
    for meta in [&deployment.metadata, &service.metadata] {
        assert_eq!(meta.namespace.as_deref(), Some(SYSTEM_NS));
    }
    let container = ambientd_container(&deployment);
    let (named, numbers) = container_ports(&container);

    let spec = service.spec.clone().expect("Service spec");
    let ports = spec.ports.clone().unwrap_or_default();
    let by_name: BTreeMap<&str, i32> = ports
        .iter()
        .map(|p| (p.name.as_deref().unwrap_or(""), p.port))
        .collect();
    assert_eq!(
        by_name,
        ISTIOD_PORTS.iter().copied().collect::<BTreeMap<_, _>>(),
        "istiod's port names and numbers"
    );
    let mut targeted = BTreeSet::new();
    for p in &ports {
        let target = p.target_port.clone().unwrap_or(IntOrString::Int(p.port));
        let resolved = resolve(&target, &named).unwrap_or_else(|| {
            panic!(
                "Service port {:?}: targetPort {target:?} is no containerPort of ambientd",
                p.name
            )
        });
        assert!(
            numbers.contains(&resolved),
            "Service port {:?}: targetPort {resolved} is no containerPort of ambientd ({numbers:?})",
            p.name
        );
        assert_eq!(
            resolved, p.port,
            "Service port {:?} forwards to another port",
            p.name
        );
        targeted.insert(resolved);
    }
    assert_eq!(
        targeted, numbers,
        "every containerPort is reachable through the Service"
    );

    // The Service selects the Deployment's pods, and the Deployment's selector matches its template.
    let template = deployment.spec.as_ref().expect("spec").template.clone();
    let labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let selects = |selector: &BTreeMap<String, String>| {
        !selector.is_empty()
            && selector
                .iter()
                .all(|(k, v)| labels.get(k).is_some_and(|l| l == v))
    };
    assert!(
        selects(&spec.selector.unwrap_or_default()),
        "Service selector vs pod labels {labels:?}"
    );
    let match_labels = deployment
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default();
    assert!(
        selects(&match_labels),
        "Deployment selector vs pod labels {labels:?}"
    );

    // Ready when ambientd says so: GET /ready on the admin port.
    let probe = container
        .readiness_probe
        .as_ref()
        .and_then(|p| p.http_get.clone())
        .expect("an HTTP readiness probe");
    assert_eq!(probe.path.as_deref(), Some("/ready"));
    assert_eq!(resolve(&probe.port, &named), Some(15014));
    assert!(probe.scheme.is_none_or(|s| s == "HTTP"));

    // It runs as the istiod ServiceAccount, which exists, and as a non-root user.
    let pod = template.spec.expect("pod spec");
    assert_eq!(pod.service_account_name.as_deref(), Some("istiod"));
    let sa: ServiceAccount = find(&docs, "ServiceAccount", "istiod").parse();
    assert_eq!(sa.metadata.namespace.as_deref(), Some(SYSTEM_NS));
    let pod_security = pod.security_context.expect("pod securityContext");
    assert_eq!(pod_security.run_as_non_root, Some(true));
    assert!(pod_security.run_as_user.is_some_and(|u| u != 0));
    let security = container
        .security_context
        .clone()
        .expect("container securityContext");
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(security.read_only_root_filesystem, Some(true));
}

/// `--name=value` / `--name value` / `--flag` → (name, value).
fn flags(args: &[String]) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        assert!(
            arg.starts_with("--"),
            "argument {arg:?} is not a --flag (write --name=value)"
        );
        match arg.split_once('=') {
            Some((name, value)) => out.push((name.to_string(), Some(value.to_string()))),
            None => {
                let value = args.get(i + 1).filter(|v| !v.starts_with("--")).cloned();
                if value.is_some() {
                    i += 1;
                }
                out.push((arg.clone(), value));
            }
        }
        i += 1;
    }
    out
}

/// The `IMAGE="…"` assignment of lab.sh.
fn lab_image() -> String {
    read("deploy/kind/lab.sh")
        .lines()
        .find_map(|l| l.strip_prefix("IMAGE=\""))
        .and_then(|rest| rest.strip_suffix('"'))
        .expect("IMAGE=\"…\" in lab.sh")
        .to_string()
}

#[test]
fn deployment_runs_ambientd_serve_with_flags_it_has() {
    use clap::Args as _;
    let docs = kube_manifests();
    let deployment: Deployment = find(&docs, "Deployment", "istiod").parse();
    let container = ambientd_container(&deployment);
    assert_eq!(
        container.command, None,
        "the image's ENTRYPOINT (ambientd) runs"
    );
    assert_eq!(container.image.as_deref(), Some(lab_image().as_str()));
    let args = container.args.clone().expect("args");
    assert_eq!(args.first().map(String::as_str), Some("serve"));

    // Every flag is one of `ambientd serve`'s, and together they parse.
    let cmd = ServeArgs::augment_args(clap::Command::new("serve"));
    let known: BTreeSet<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .collect();
    let unknown: Vec<String> = flags(&args[1..])
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| !known.contains(name))
        .collect();
    assert!(
        unknown.is_empty(),
        "the Deployment passes flags `ambientd serve` does not have: {unknown:?}"
    );
    let matches = cmd
        .try_get_matches_from(&args)
        .unwrap_or_else(|e| panic!("ambientd {}: {e}", args.join(" ")));
    let serve = <ServeArgs as clap::FromArgMatches>::from_arg_matches(&matches)
        .unwrap_or_else(|e| panic!("ambientd {}: {e}", args.join(" ")));
    assert!(serve.kube, "serve --kube: the in-cluster mode");
    let config = serve.config();
    assert!(matches!(config.source, ServeSource::Kube(_)));

    // Every listener is a containerPort and every containerPort a listener.
    let listeners: BTreeSet<i32> = [
        Some(config.grpc_addr),
        config.xds_plaintext_addr,
        config.admin_addr,
    ]
    .into_iter()
    .flatten()
    .map(|a| i32::from(a.port()))
    .collect();
    let (_, numbers) = container_ports(&container);
    assert_eq!(listeners, numbers, "listeners vs containerPorts");
    assert_eq!(config.grpc_addr.port(), 15012);
    assert_eq!(config.admin_addr.map(|a| a.port()), Some(15014));
    assert!(
        config.grpc_addr.ip().is_unspecified(),
        "ztunnels reach the gRPC port from other pods"
    );
    assert_eq!(
        config.settings.enrollment,
        Enrollment::Annotation,
        "in a cluster, istio-cni's annotation says who is captured"
    );

    // The state folder is a writable volume (the root filesystem is read-only).
    let mounts = container.volume_mounts.clone().unwrap_or_default();
    assert!(
        mounts
            .iter()
            .any(|m| Path::new(&m.mount_path) == config.state_dir && m.read_only != Some(true)),
        "--state-dir {} is not a writable volume mount",
        config.state_dir.display()
    );
    // The leader election names this replica after its pod.
    let env = container.env.clone().unwrap_or_default();
    assert!(
        env.iter().any(|e| e.name == "POD_NAME"
            && e.value_from
                .as_ref()
                .and_then(|v| v.field_ref.as_ref())
                .is_some_and(|f| f.field_path == "metadata.name")),
        "POD_NAME from the downward API"
    );
}

// --- RBAC ------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Scope {
    Cluster,
    Namespace(String),
}

#[derive(Debug, Clone)]
struct Grant {
    scope: Scope,
    group: String,
    resource: String,
    verb: String,
    /// `resourceNames` of the rule, if it has any.
    names: Option<Vec<String>>,
    role: String,
}

fn is_istiod(subjects: &Option<Vec<k8s_openapi::api::rbac::v1::Subject>>) -> bool {
    subjects.iter().flatten().any(|s| {
        s.kind == "ServiceAccount"
            && s.name == "istiod"
            && s.namespace.as_deref() == Some(SYSTEM_NS)
    })
}

fn expand(
    rules: &[PolicyRule],
    scope: &Scope,
    role: &str,
    problems: &mut Vec<String>,
) -> Vec<Grant> {
    let mut out = Vec::new();
    for rule in rules {
        if rule.non_resource_urls.is_some() {
            problems.push(format!("{role}: nonResourceURLs are not needed"));
        }
        let groups = rule.api_groups.clone().unwrap_or_default();
        let resources = rule.resources.clone().unwrap_or_default();
        for word in groups.iter().chain(&resources).chain(&rule.verbs) {
            if word.contains('*') {
                problems.push(format!("{role}: wildcard {word:?}"));
            }
        }
        for group in &groups {
            for resource in &resources {
                for verb in &rule.verbs {
                    out.push(Grant {
                        scope: scope.clone(),
                        group: group.clone(),
                        resource: resource.clone(),
                        verb: verb.clone(),
                        names: rule.resource_names.clone().filter(|n| !n.is_empty()),
                        role: role.to_string(),
                    });
                }
            }
        }
    }
    out
}

/// What the ServiceAccount istio-system/istiod may do, through the bindings of `deploy/kubernetes/`.
fn istiod_grants(docs: &[Doc], problems: &mut Vec<String>) -> Vec<Grant> {
    let cluster_roles: BTreeMap<String, ClusterRole> = docs
        .iter()
        .filter(|d| d.kind() == "ClusterRole")
        .map(|d| (d.name().to_string(), d.parse()))
        .collect();
    let roles: BTreeMap<(String, String), Role> = docs
        .iter()
        .filter(|d| d.kind() == "Role")
        .map(|d| ((d.namespace().to_string(), d.name().to_string()), d.parse()))
        .collect();
    let mut bound_cluster_roles = BTreeSet::new();
    let mut bound_roles = BTreeSet::new();
    let mut grants = Vec::new();
    for doc in docs.iter().filter(|d| d.kind() == "ClusterRoleBinding") {
        let binding: ClusterRoleBinding = doc.parse();
        if !is_istiod(&binding.subjects) {
            continue;
        }
        let name = &binding.role_ref.name;
        match (binding.role_ref.kind.as_str(), cluster_roles.get(name)) {
            ("ClusterRole", Some(role)) => {
                bound_cluster_roles.insert(name.clone());
                let rules = role.rules.clone().unwrap_or_default();
                grants.extend(expand(
                    &rules,
                    &Scope::Cluster,
                    &format!("ClusterRole/{name}"),
                    problems,
                ));
            }
            (kind, _) => problems.push(format!(
                "{}: binds {kind}/{name}, which is not in deploy/kubernetes/",
                doc.describe()
            )),
        }
    }
    for doc in docs.iter().filter(|d| d.kind() == "RoleBinding") {
        let binding: RoleBinding = doc.parse();
        if !is_istiod(&binding.subjects) {
            continue;
        }
        let ns = doc.namespace().to_string();
        let name = binding.role_ref.name.clone();
        let scope = Scope::Namespace(ns.clone());
        let rules = match binding.role_ref.kind.as_str() {
            "Role" => roles.get(&(ns.clone(), name.clone())).map(|r| {
                bound_roles.insert((ns.clone(), name.clone()));
                r.rules.clone().unwrap_or_default()
            }),
            "ClusterRole" => cluster_roles.get(&name).map(|r| {
                bound_cluster_roles.insert(name.clone());
                r.rules.clone().unwrap_or_default()
            }),
            _ => None,
        };
        match rules {
            Some(rules) => grants.extend(expand(
                &rules,
                &scope,
                &format!("{}/{ns}/{name}", binding.role_ref.kind),
                problems,
            )),
            None => problems.push(format!(
                "{}: binds {}/{name}, which is not in deploy/kubernetes/",
                doc.describe(),
                binding.role_ref.kind
            )),
        }
    }
    for name in cluster_roles
        .keys()
        .filter(|n| !bound_cluster_roles.contains(*n))
    {
        problems.push(format!(
            "ClusterRole/{name} is not bound to {SYSTEM_NS}/istiod"
        ));
    }
    for (ns, name) in roles.keys().filter(|k| !bound_roles.contains(*k)) {
        problems.push(format!(
            "Role/{ns}/{name} is not bound to {SYSTEM_NS}/istiod"
        ));
    }
    grants
}

#[test]
fn rbac_grants_every_api_call_of_ambientd_and_nothing_else() {
    let docs = kube_manifests();
    let mut problems = Vec::new();
    let grants = istiod_grants(&docs, &mut problems);
    let calls = api_calls();
    let named = named_objects();
    let system_only = |g: &str, r: &str| SYSTEM_NAMESPACE_ONLY.contains(&(g, r));
    let needed_scope = |g: &str, r: &str| {
        if system_only(g, r) {
            Scope::Namespace(SYSTEM_NS.to_string())
        } else {
            Scope::Cluster
        }
    };

    // Every call is granted, in the scope it needs, for every object it names.
    for &(group, resource, verb) in &calls {
        let scope = needed_scope(group, resource);
        let matching: Vec<&Grant> = grants
            .iter()
            .filter(|g| {
                g.group == group && g.resource == resource && g.verb == verb && g.scope == scope
            })
            .collect();
        let unrestricted = matching.iter().any(|g| g.names.is_none());
        let granted_names: BTreeSet<&str> = matching
            .iter()
            .flat_map(|g| g.names.iter().flatten().map(String::as_str))
            .collect();
        let needed_names = named.get(&(group, resource)).cloned().unwrap_or_default();
        let covered = unrestricted
            || (!granted_names.is_empty()
                && needed_names.iter().all(|n| granted_names.contains(n)));
        if !covered {
            problems.push(format!(
                "not granted: {verb} {resource} (group {group:?}) {}{}",
                match &scope {
                    Scope::Cluster => "cluster-wide".to_string(),
                    Scope::Namespace(ns) => format!("in {ns}"),
                },
                if granted_names.is_empty() {
                    String::new()
                } else {
                    format!(" for {needed_names:?} (granted for {granted_names:?})")
                }
            ));
        }
    }
    // Nothing else is granted, nothing wider than needed, and no rule is limited by names in a way
    // RBAC cannot honour.
    for g in &grants {
        let call = (g.group.as_str(), g.resource.as_str(), g.verb.as_str());
        if !calls.contains(&call) {
            problems.push(format!(
                "{} grants {} {} (group {:?}), which ambientd does not call",
                g.role, g.verb, g.resource, g.group
            ));
        } else if g.scope == Scope::Cluster && system_only(&g.group, &g.resource) {
            problems.push(format!(
                "{} grants {} {} cluster-wide; ambientd needs it in {SYSTEM_NS} only",
                g.role, g.verb, g.resource
            ));
        }
        if let Some(names) = &g.names {
            if ["create", "list", "watch", "deletecollection"].contains(&g.verb.as_str()) {
                problems.push(format!(
                    "{}: {} {} limited to {names:?} never matches: RBAC cannot limit {} by name",
                    g.role, g.verb, g.resource, g.verb
                ));
            }
            let known = named.get(&(g.group.as_str(), g.resource.as_str()));
            for name in names {
                if !known.is_some_and(|k| k.contains(&name.as_str())) {
                    problems.push(format!(
                        "{}: {} {} names {name:?}, which ambientd does not use",
                        g.role, g.verb, g.resource
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

// --- Dockerfile -------------------------------------------------------------------------------------------

/// KEY=VALUE lines of versions.env.
fn versions() -> BTreeMap<String, String> {
    read("deploy/kind/versions.env")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("versions.env: {l:?} is not NAME=value"));
            assert!(
                !v.contains(char::is_whitespace) && !v.contains('$') && !v.contains('"'),
                "versions.env: {l:?}: plain values only"
            );
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// `1.95` → (1, 95).
fn minor_version(v: &str) -> (u32, u32) {
    let mut parts = v
        .split('.')
        .map(|p| p.parse::<u32>().expect("numeric version"));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

#[test]
fn dockerfile_builds_ambientd_for_a_non_root_image_with_istiod_ports() {
    let text = read("deploy/Dockerfile");
    // Instructions, with continuation lines joined.
    let joined = text.replace("\\\n", " ");
    let instructions: Vec<(String, String)> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (op, rest) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            (op.to_ascii_uppercase(), rest.trim().to_string())
        })
        .collect();
    let of = |op: &str| -> Vec<&str> {
        instructions
            .iter()
            .filter(|(o, _)| o == op)
            .map(|(_, r)| r.as_str())
            .collect()
    };

    let froms = of("FROM");
    assert!(froms.len() >= 2, "multi-stage: {froms:?}");
    assert!(
        froms[0].contains("rust:") && froms[0].ends_with("AS builder"),
        "builder stage: {}",
        froms[0]
    );
    let build = of("RUN").join(" ");
    for needed in [
        "cargo build",
        "--release",
        "--locked",
        "-p ambient-control-plane",
        "--bin ambientd",
    ] {
        assert!(build.contains(needed), "the build runs `{needed}`: {build}");
    }
    let runtime = froms.last().expect("runtime stage");
    assert!(
        !runtime.contains("rust"),
        "the runtime image is not the toolchain: {runtime}"
    );
    assert!(
        of("COPY")
            .iter()
            .any(|c| c.starts_with("--from=builder") && c.contains("ambientd")),
        "the runtime stage copies ambientd from the builder"
    );
    let user = of("USER");
    let user = user.last().expect("USER");
    let uid: u32 = user
        .split(':')
        .next()
        .and_then(|u| u.parse().ok())
        .expect("numeric USER");
    assert_ne!(uid, 0, "non-root");
    let exposed: BTreeSet<i32> = of("EXPOSE")
        .iter()
        .flat_map(|e| e.split_whitespace())
        .map(|p| p.trim_end_matches("/tcp").parse().expect("port"))
        .collect();
    assert_eq!(exposed, ISTIOD_PORTS.iter().map(|(_, p)| *p).collect());
    assert!(of("ENTRYPOINT").iter().any(|e| e.contains("ambientd")));

    // The build arguments default to versions.env, and the toolchain meets the workspace's rust-version.
    let args: BTreeMap<&str, &str> = of("ARG").iter().filter_map(|a| a.split_once('=')).collect();
    let versions = versions();
    for key in ["RUST_VERSION", "RUNTIME_IMAGE"] {
        assert_eq!(
            args.get(key).copied(),
            versions.get(key).map(String::as_str),
            "ARG {key} of deploy/Dockerfile vs deploy/kind/versions.env"
        );
    }
    let workspace = read("Cargo.toml");
    let msrv = workspace
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("workspace rust-version");
    assert!(
        minor_version(args["RUST_VERSION"]) >= minor_version(msrv),
        "builder Rust {} is older than the workspace's rust-version {msrv}",
        args["RUST_VERSION"]
    );

    // The build context leaves out build output and history.
    let ignore = read("deploy/Dockerfile.dockerignore");
    let ignored: BTreeSet<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for needed in ["target", ".git"] {
        assert!(
            ignored.contains(needed),
            "Dockerfile.dockerignore leaves out {needed}"
        );
    }
    for member in [
        "proto",
        "ca",
        "control-plane",
        "agent-sim",
        "tests",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        assert!(
            !ignored.contains(member),
            "{member} is needed by cargo build"
        );
    }
}

// --- versions.env -----------------------------------------------------------------------------------------

/// Substrings that look like a version: digits, a dot, digits (e.g. `1.30`, `v1.5.1`).
fn version_literals(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    for (i, w) in bytes.windows(3).enumerate() {
        if w[0].is_ascii_digit() && w[1] == b'.' && w[2].is_ascii_digit() {
            let start = text[..i]
                .rfind(|c: char| !c.is_ascii_alphanumeric() && c != '.')
                .map_or(0, |s| s + 1);
            let end = text[i..]
                .find(|c: char| !c.is_ascii_alphanumeric() && c != '.')
                .map_or(text.len(), |e| i + e);
            out.push(text[start..end].to_string());
        }
    }
    out.dedup();
    out
}

#[test]
fn every_version_of_the_lab_is_pinned_in_versions_env() {
    let v = versions();
    for key in [
        "KIND_NODE_IMAGE",
        "KIND_MIN_VERSION",
        "ISTIO_VERSION",
        "ISTIO_HELM_REPO",
        "GATEWAY_API_VERSION",
        "RUST_VERSION",
        "RUNTIME_IMAGE",
        "BOOKINFO_VERSION",
        "CURL_IMAGE",
    ] {
        assert!(
            v.get(key).is_some_and(|x| !x.is_empty()),
            "versions.env sets {key}"
        );
    }
    let node = &v["KIND_NODE_IMAGE"];
    let digest = node.split_once("@sha256:").map(|(_, d)| d).unwrap_or("");
    assert!(
        node.starts_with("kindest/node:v")
            && digest.len() == 64
            && digest.chars().all(|c| c.is_ascii_hexdigit()),
        "the Kind node image is pinned by digest: {node}"
    );
    assert_eq!(
        v["ISTIO_VERSION"].split('.').count(),
        3,
        "an exact Istio release"
    );
    assert!(v["GATEWAY_API_VERSION"].starts_with('v'));

    // lab.sh takes every version from versions.env and writes none itself.
    let lab = read("deploy/kind/lab.sh");
    let code: String = lab
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let literals = version_literals(&code);
    assert!(
        literals.is_empty(),
        "version literals in lab.sh: {literals:?}"
    );
    for key in [
        "KIND_NODE_IMAGE",
        "KIND_MIN_VERSION",
        "ISTIO_VERSION",
        "ISTIO_HELM_REPO",
        "GATEWAY_API_VERSION",
        "RUST_VERSION",
        "RUNTIME_IMAGE",
    ] {
        assert!(
            code.contains(&format!("${key}")) || code.contains(&format!("${{{key}}}")),
            "lab.sh uses {key}"
        );
    }
    assert!(
        code.contains("source \"$LAB_DIR/versions.env\""),
        "lab.sh reads versions.env"
    );
    for line in code
        .lines()
        .filter(|l| l.contains("helm upgrade --install"))
    {
        assert!(line.contains("\"$release\""), "{line}");
    }
    assert!(code.contains("--version \"$ISTIO_VERSION\""));

    // The demo's images are the pinned ones.
    let mut problems = Vec::new();
    for doc in manifests_in("deploy/kind/demo") {
        let mut images = Vec::new();
        collect_images(&doc.value, &mut images);
        for image in images {
            let bookinfo = image
                .strip_prefix("registry.istio.io/release/examples-bookinfo-")
                .and_then(|rest| rest.rsplit_once(':'))
                .is_some_and(|(_, tag)| tag == v["BOOKINFO_VERSION"]);
            if !bookinfo && image != v["CURL_IMAGE"] {
                problems.push(format!(
                    "{}: image {image} is not pinned in versions.env",
                    doc.describe()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

fn collect_images(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("image", Value::String(s)) => out.push(s.clone()),
                    _ => collect_images(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_images(v, out)),
        _ => {}
    }
}

// --- lab.sh -----------------------------------------------------------------------------------------------

fn lab_sh() -> PathBuf {
    repo().join("deploy/kind/lab.sh")
}

/// A program on the PATH this test runs with.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

#[test]
fn lab_script_is_valid_bash() {
    let out = Command::new("bash")
        .arg("-n")
        .arg(lab_sh())
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(read("deploy/kind/lab.sh").contains("set -euo pipefail"));
    match on_path("shellcheck") {
        Some(shellcheck) => {
            let out = Command::new(shellcheck)
                .arg("--external-sources")
                .arg(lab_sh())
                .current_dir(repo().join("deploy/kind"))
                .output()
                .expect("shellcheck");
            assert!(
                out.status.success(),
                "shellcheck:\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        None => eprintln!("note: shellcheck is not installed; only `bash -n` checked lab.sh"),
    }
}

/// A PATH holding only the ordinary tools lab.sh uses, plus stubs: what is installed on this machine
/// (kind, docker, kubectl, …) cannot leak into the test.
struct Sandbox {
    dir: tempfile::TempDir,
}

const BASE_TOOLS: &[&str] = &[
    "bash", "env", "dirname", "sed", "sort", "head", "grep", "awk", "id", "wc", "tr", "sleep",
    "cat",
];

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("bin")).expect("bin");
        for tool in BASE_TOOLS {
            let path = on_path(tool).unwrap_or_else(|| panic!("{tool} is not installed"));
            std::os::unix::fs::symlink(path, dir.path().join("bin").join(tool)).expect("symlink");
        }
        Sandbox { dir }
    }

    fn stub(&self, name: &str, script: &str) {
        use std::os::unix::fs::PermissionsExt as _;
        let path = self.dir.path().join("bin").join(name);
        std::fs::write(&path, format!("#!/usr/bin/env bash\n{script}")).expect("write stub");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(self.dir.path().join("bin/bash"))
            .arg(lab_sh())
            .args(args)
            .env_clear()
            .env("PATH", self.dir.path().join("bin"))
            .env("HOME", self.dir.path())
            .env("STUB_LOG", self.dir.path().join("calls.log"))
            .envs(env.iter().copied())
            .output()
            .expect("run lab.sh")
    }

    fn calls(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("calls.log")).unwrap_or_default()
    }
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn lab_script_says_which_tool_is_missing() {
    let sandbox = Sandbox::new();
    let out = sandbox.run(&["up"], &[]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("docker is not on PATH. Install Docker"),
        "{}",
        text(&out)
    );
    let out = sandbox.run(&["down"], &[]);
    assert!(
        text(&out).contains("kind is not on PATH. Install kind"),
        "{}",
        text(&out)
    );
    let out = sandbox.run(&["verify"], &[]);
    assert!(
        text(&out).contains("kubectl is not on PATH"),
        "{}",
        text(&out)
    );

    // Every tool present, but Docker's daemon does not answer.
    for tool in ["kind", "kubectl", "helm"] {
        sandbox.stub(tool, "exit 0\n");
    }
    sandbox.stub("docker", "exit 1\n");
    let out = sandbox.run(&["up"], &[]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("its daemon does not answer"),
        "{}",
        text(&out)
    );

    // No command, or an unknown one: usage, exit 2.
    let out = sandbox.run(&[], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = sandbox.run(&["help"], &[]);
    assert!(out.status.success());
    for command in ["up", "load", "demo", "verify", "down"] {
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(&format!("lab.sh {command}")),
            "{}",
            text(&out)
        );
    }
}

/// Answers lab.sh verify's kubectl calls as the lab cluster would after `up`, `load` and `demo`.
/// `STUB_SCENARIO=ingress-denied` makes ztunnel refuse the ingress identity too; `policies-deleted`
/// removes the sidecar-era policies (the white paper's last step).
const STUB_KUBECTL: &str = r#"
echo "$*" >> "$STUB_LOG"
args="$*"
curl_ok() { printf '%s' "$1"; exit 0; }
curl_denied() { printf '000'; exit 56; }
case "$args" in
  *"get namespace frontend"*) exit 0 ;;
  *"get deployment istiod -o jsonpath={.status.readyReplicas}"*) printf 1 ;;
  *"get daemonset ztunnel -o jsonpath={.status.desiredNumberScheduled}"*) printf 1 ;;
  *"get daemonset ztunnel -o jsonpath={.status.numberReady}"*) printf 1 ;;
  *"ambientd zc connections"*)
    printf 'ID TYPE    NODE                      AGE ACKED PENDING LAST-NACK\n'
    printf '1  ztunnel ambientd-lab-control-plane 5m  2/2   0       -\n' ;;
  *"ambientd zc workloads -n frontend"*)
    printf 'NAMESPACE POD-NAME                   ADDRESS     NODE      WAYPOINT PROTOCOL\n'
    printf 'frontend  productpage-v1-6d8f-abcde  10.244.0.9  ambien…ne None     HBONE\n'
    printf 'frontend  sleep                      10.244.0.10 ambien…ne None     HBONE\n' ;;
  *"ambientd zc workloads -n backend"*)
    printf 'NAMESPACE POD-NAME                  ADDRESS     NODE      WAYPOINT PROTOCOL\n'
    for p in details ratings reviews-v1 reviews-v2 reviews-v3 sleep; do
      printf 'backend   %-25s 10.244.0.20 ambien…ne None     HBONE\n' "$p"
    done ;;
  *"-n frontend get pods --field-selector=status.phase=Running --no-headers"*)
    printf 'productpage-v1-6d8f-abcde 1/1 Running 0 1m\nsleep 1/1 Running 0 1m\n' ;;
  *"-n frontend get pods --field-selector=status.phase=Running -o jsonpath="*) printf 'enabled\nenabled\n' ;;
  *"-n backend get pods --field-selector=status.phase=Running --no-headers"*)
    for p in details ratings reviews-v1 reviews-v2 reviews-v3 sleep; do printf '%s 1/1 Running 0 1m\n' "$p"; done ;;
  *"-n backend get pods --field-selector=status.phase=Running -o jsonpath="*)
    printf 'enabled\nenabled\nenabled\nenabled\nenabled\nenabled\n' ;;
  *"ambientd zc workloads -n istio-ingress"*)
    printf 'NAMESPACE     POD-NAME       ADDRESS     NODE      WAYPOINT PROTOCOL\n'
    printf 'istio-ingress ingress-client 10.244.0.30 ambien…ne None     HBONE\n' ;;
  *"-n istio-ingress get pods --field-selector=status.phase=Running --no-headers"*)
    printf 'ingress-client 1/1 Running 0 1m\n' ;;
  *"-n istio-ingress get pods --field-selector=status.phase=Running -o jsonpath="*) printf 'enabled\n' ;;
  *"-n backend get authorizationpolicy details-policy"* | *"-n backend get authorizationpolicy ratings-policy"*)
    [[ "${STUB_SCENARIO:-}" == policies-deleted ]] && exit 1
    exit 0 ;;
  *"-n istio-ingress exec ingress-client -- curl"*"productpage.frontend:9080/productpage"*)
    [[ "${STUB_SCENARIO:-}" == ingress-denied ]] && curl_denied
    curl_ok 200 ;;
  *"-n frontend exec sleep -- curl"*"productpage.frontend:9080/productpage"*) curl_denied ;;
  *"exec sleep -- curl"*"details.backend:9080/details/1"*)
    [[ "${STUB_SCENARIO:-}" == policies-deleted ]] && curl_ok 200
    curl_denied ;;
  *"exec sleep -- curl"*"ratings.backend:9080/ratings/1"*)
    [[ "${STUB_SCENARIO:-}" == policies-deleted ]] && curl_ok 200
    curl_denied ;;
  *"exec sleep -- curl"*"reviews.backend:9080/reviews/1"*) curl_ok 200 ;;
  *) echo "stub kubectl: unexpected call: $args" >&2; exit 97 ;;
esac
"#;

fn verify(scenario: &str) -> (Sandbox, Output) {
    let sandbox = Sandbox::new();
    sandbox.stub("kubectl", STUB_KUBECTL);
    let out = sandbox.run(
        &["verify"],
        &[("VERIFY_ATTEMPTS", "1"), ("STUB_SCENARIO", scenario)],
    );
    (sandbox, out)
}

/// The table rows, as (RESULT, rest of the line).
fn rows(out: &Output) -> Vec<(String, String)> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (result, rest) = l.split_once(' ')?;
            ["PASS", "FAIL", "SKIP"]
                .contains(&result)
                .then(|| (result.to_string(), rest.trim().to_string()))
        })
        .collect()
}

fn has_row(rows: &[(String, String)], result: &str, parts: &[&str]) -> bool {
    rows.iter()
        .any(|(r, rest)| r == result && parts.iter().all(|p| rest.contains(p)))
}

#[test]
fn lab_verify_prints_the_white_paper_checks() {
    let (sandbox, out) = verify("healthy");
    let report = format!("{}\n--- kubectl calls\n{}", text(&out), sandbox.calls());
    assert!(out.status.success(), "{report}");
    let rows = rows(&out);
    for (result, parts) in [
        ("PASS", &["ambientd ready"][..]),
        ("PASS", &["ztunnel synced", "1/1"]),
        ("PASS", &["ztunnels connected"]),
        (
            "PASS",
            &["captured by istio-cni", "pods of frontend", "2/2"],
        ),
        ("PASS", &["captured by istio-cni", "pods of backend", "6/6"]),
        ("PASS", &["HBONE workloads", "-n backend", "6"]),
        (
            "PASS",
            &["captured by istio-cni", "pods of istio-ingress", "1/1"],
        ),
        (
            "PASS",
            &[
                "productpage-viewer",
                "frontend/sleep -> productpage.frontend:9080/productpage",
                "denied",
            ],
        ),
        (
            "PASS",
            &[
                "productpage-viewer",
                "istio-ingress/ingress-client -> productpage",
                "200",
            ],
        ),
        (
            "PASS",
            &[
                "details-policy (ztunnel)",
                "backend/sleep -> details.backend:9080/details/1",
                "denied",
            ],
        ),
        (
            "PASS",
            &[
                "ratings-policy (ztunnel)",
                "backend/sleep -> ratings.backend:9080/ratings/1",
                "denied",
            ],
        ),
        (
            "PASS",
            &[
                "mesh traffic (no policy)",
                "frontend/sleep -> reviews.backend",
                "200",
            ],
        ),
        (
            "SKIP",
            &["details-policy-waypoint", "403", "needs a waypoint"],
        ),
        (
            "SKIP",
            &["ratings-policy-waypoint", "403", "needs a waypoint"],
        ),
        ("SKIP", &["reviews route", "needs a waypoint"]),
        ("SKIP", &["zc service: WAYPOINT", "needs a waypoint"]),
    ] {
        assert!(
            has_row(&rows, result, parts),
            "no {result} row with {parts:?}\n{report}"
        );
    }
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("15 passed, 0 failed, 4 skipped."),
        "{report}"
    );
}

#[test]
fn lab_verify_fails_when_ztunnel_refuses_the_ingress_identity() {
    let (sandbox, out) = verify("ingress-denied");
    let report = format!("{}\n--- kubectl calls\n{}", text(&out), sandbox.calls());
    assert_eq!(out.status.code(), Some(1), "{report}");
    let rows = rows(&out);
    assert!(
        has_row(
            &rows,
            "FAIL",
            &[
                "productpage-viewer",
                "istio-ingress/ingress-client",
                "200",
                "denied"
            ]
        ),
        "{report}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("14 passed, 1 failed, 4 skipped."),
        "{report}"
    );
}

#[test]
fn lab_verify_skips_the_sidecar_era_policies_once_deleted() {
    let (sandbox, out) = verify("policies-deleted");
    let report = format!("{}\n--- kubectl calls\n{}", text(&out), sandbox.calls());
    assert!(out.status.success(), "{report}");
    let rows = rows(&out);
    assert!(
        has_row(&rows, "SKIP", &["details-policy (ztunnel)", "deleted"]),
        "{report}"
    );
    assert!(
        has_row(&rows, "SKIP", &["ratings-policy (ztunnel)", "deleted"]),
        "{report}"
    );
    assert!(
        !sandbox.calls().contains("details.backend"),
        "no request to details once its policy is gone\n{report}"
    );
}

// --- The demo, as ambientd sees it ------------------------------------------------------------------------

/// `lab.sh verify` expects ztunnel to refuse other callers of productpage but admit the ingress identity,
/// to deny all traffic to details and ratings while the sidecar-era policies exist, and to let reviews
/// through; and it skips what a waypoint would do because no Service gets bound to the never-deployed
/// waypoint. This is what ambientd's index computes for the demo.
#[test]
fn demo_gives_ztunnel_what_verify_expects() {
    let dir = repo().join("deploy/kind/demo");
    let (source, objects) = FileSource::open(&dir).expect("load the demo");
    assert!(
        source.diagnostics().is_empty(),
        "{:?}",
        source.diagnostics()
    );
    let index = Index::build(
        Settings {
            enrollment: Enrollment::Annotation,
            ..Settings::default()
        },
        objects,
    );
    let doc = ambient_control_plane::dump::dump(&index, &[]).expect("dump");

    let authorizations = doc["authorizations"].as_object().expect("authorizations");
    let names: BTreeSet<&str> = authorizations.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "backend/details-policy",
            "backend/ratings-policy",
            "frontend/productpage-viewer"
        ]),
        "ztunnel gets the selector policies; the targetRefs twins are for the waypoint"
    );
    for denies_all in ["backend/details-policy", "backend/ratings-policy"] {
        let rules = &authorizations[denies_all]["rules"];
        assert!(
            rules.as_array().is_none_or(|r| r.is_empty()),
            "{denies_all}: an ALLOW policy with no rules (ztunnel denies all): {rules}"
        );
    }
    let viewer =
        serde_json::to_string(&authorizations["frontend/productpage-viewer"]).expect("json");
    assert!(
        viewer.contains("cluster.local/ns/istio-ingress/sa/gateway-istio"),
        "{viewer}"
    );

    for (name, address) in doc["addresses"].as_object().expect("addresses") {
        if let Some(service) = address.get("service") {
            assert!(
                service.get("waypoint").is_none(),
                "{name} is bound to a waypoint that this lab never deploys"
            );
        }
    }

    // The clients and targets verify uses exist, and the stand-in client has the gateway's identity.
    let docs = manifests_in("deploy/kind/demo");
    let pod = |ns: &str, name: &str| -> Pod {
        let doc = docs
            .iter()
            .find(|d| d.kind() == "Pod" && d.namespace() == ns && d.name() == name)
            .unwrap_or_else(|| panic!("Pod {ns}/{name} in the demo"));
        doc.parse()
    };
    pod("frontend", "sleep");
    pod("backend", "sleep");
    let client = pod("istio-ingress", "ingress-client");
    assert_eq!(
        client.spec.and_then(|s| s.service_account_name).as_deref(),
        Some("gateway-istio")
    );
    let labels = client.metadata.labels.unwrap_or_default();
    assert_eq!(
        labels.get("istio.io/dataplane-mode").map(String::as_str),
        Some("ambient"),
        "the stand-in client is enrolled by its own label (its namespace is not ambient)"
    );
    for (ns, service) in [
        ("frontend", "productpage"),
        ("backend", "details"),
        ("backend", "ratings"),
        ("backend", "reviews"),
        ("backend", "reviews-v3"),
    ] {
        assert!(
            docs.iter()
                .any(|d| d.kind() == "Service" && d.namespace() == ns && d.name() == service),
            "Service {ns}/{service} in the demo"
        );
    }
    let lab = read("deploy/kind/lab.sh");
    for doc in docs.iter().filter(|d| d.kind() == "Deployment") {
        assert!(
            lab.contains(doc.name()),
            "lab.sh demo waits for Deployment {}/{}",
            doc.namespace(),
            doc.name()
        );
    }
}
