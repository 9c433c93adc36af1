//! AuthorizationPolicies and PeerAuthentications in the index
//! (docs/reference/istiod.md#the-workloads-policy-list, #peerauthentication-converted-policies), following
//! istiod's `TestAmbientIndex_Policy`, `TestAmbientIndex_PeerAuthenticationNamespacePolicyChange`,
//! `TestWorkloadAuthorizationPolicy`, `TestWorkloadPeerAuthentication`, `TestPeerAuthenticationUpdate`,
//! `TestAuthorizationPolicyRevisionFiltering` and `TestPolicyAfterPod`.
//!
//! Every step goes through [`World`], which checks that the reported changes are exactly the Address and
//! Authorization resources whose content changed or that were removed, and that the index equals one built
//! from scratch over the same objects. Tests then assert the exact names and each workload's
//! `authorization_policies`.
//!
//! ambientd reports a resource only when its content changed, so a step istiod answers with a push of an
//! unchanged resource (for instance a selector change, which is not part of the Authorization) reports
//! nothing here.

use std::collections::HashMap;

use ambient_index::model::istio::MtlsMode::{self, Disable, Permissive, Strict, Unset};
use ambient_index::model::well_known::{DRY_RUN, GATEWAY_NAME, REVISION};
use ambient_index::model::{Kind, Object, ObjectRef};
use ambient_index::testing::*;
use ambient_index::{Index, Settings};

// ---- harness ------------------------------------------------------------------------------------

/// Every step checks the reported names and the equality with a fresh build ([`Checked`]).
type World = Checked;

/// `authorization_policies` of pod `ns/name`'s Workload.
fn policies(w: &World, ns: &str, name: &str) -> Vec<String> {
    workload_policies(&w.index, &uid(ns, name))
}

fn authorization_names(w: &World) -> Vec<String> {
    decoded_authorizations(&w.index).into_keys().collect()
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    v.sort();
    v
}

/// A step that changed these addresses and these authorizations, and removed nothing.
fn changed(addresses: &[&str], authorizations: &[&str]) -> Step {
    Step {
        addresses: (sorted(addresses), vec![]),
        authorizations: (sorted(authorizations), vec![]),
    }
}

fn nothing() -> Step {
    changed(&[], &[])
}

fn uid(ns: &str, name: &str) -> String {
    format!("cluster0//Pod/{ns}/{name}")
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

const STATIC: &str = "istio-system/istio_converted_static_strict";

/// A ready pod in `ns1` with service account `sa1`.
fn ns1_pod(name: &str, ip: &str, app: &str) -> Object {
    pod("ns1", name)
        .ip(ip)
        .sa("sa1")
        .label("app", app)
        .ready()
        .build()
}

/// A PeerAuthentication in `ns`, selecting `app` when given.
fn pa(
    ns: &str,
    name: &str,
    app: Option<&str>,
    mode: Option<MtlsMode>,
) -> PeerAuthenticationBuilder {
    let mut p = peer_authentication(ns, name);
    if let Some(app) = app {
        p = p.selector("app", app);
    }
    if let Some(mode) = mode {
        p = p.mode(mode);
    }
    p
}

// ---- TestAmbientIndex_Policy --------------------------------------------------------------------

/// `pod1` (app a) and two waypoint pods in `ns1`, as istiod's `setupPolicyTest` leaves them.
fn policy_world() -> World {
    World::unit(vec![
        ns1_pod("pod1", "127.0.0.1", "a"),
        pod("ns1", "waypoint-ns-pod")
            .ip("127.0.0.200")
            .sa("namespace-wide")
            .label(GATEWAY_NAME, "waypoint-ns")
            .ready()
            .build(),
        pod("ns1", "waypoint2-sa")
            .ip("127.0.0.201")
            .sa("waypoint-sa")
            .label(GATEWAY_NAME, "waypoint-ns")
            .ready()
            .build(),
    ])
}

#[test]
fn ambient_index_policy() {
    let mut w = policy_world();
    let pod1 = uid("ns1", "pod1");
    let pod2 = uid("ns1", "pod2");
    let pod3 = uid("ns1", "pod3");
    let wp1 = uid("ns1", "waypoint-ns-pod");
    let wp2 = uid("ns1", "waypoint2-sa");
    let converted = "ns1/converted_peer_authentication_selector";
    let converted_strict = "ns1/converted_peer_authentication_selector-strict";

    // PeerAuthentications.
    assert_eq!(
        w.apply(pa("istio-system", "global", None, Some(Permissive)).build()),
        changed(&[], &[STATIC]),
        "the first PeerAuthentication brings the static strict policy"
    );
    assert_eq!(policies(&w, "ns1", "pod1"), Vec::<String>::new());

    assert_eq!(
        w.apply(pa("ns1", "namespace", None, Some(Strict)).build()),
        changed(&[&pod1, &wp1, &wp2], &[]),
        "a STRICT namespace policy attaches the static policy to every pod of the namespace"
    );
    assert_eq!(policies(&w, "ns1", "pod1"), [STATIC]);

    assert_eq!(
        w.apply(pa("ns1", "selector", Some("a"), Some(Strict)).build()),
        nothing(),
        "a STRICT workload policy under a STRICT namespace changes nothing"
    );
    assert_eq!(policies(&w, "ns1", "pod1"), [STATIC]);

    assert_eq!(
        w.apply(pa("ns1", "selector", Some("a"), Some(Permissive)).build()),
        changed(&[&pod1], &[]),
        "a PERMISSIVE workload policy removes the static policy"
    );
    assert_eq!(policies(&w, "ns1", "pod1"), Vec::<String>::new());

    assert_eq!(
        w.apply(
            pa("ns1", "selector", Some("a"), Some(Permissive))
                .port(9090, Strict)
                .build()
        ),
        changed(&[&pod1], &[converted]),
        "a STRICT port converts the workload policy, which the pod lists"
    );
    assert_eq!(policies(&w, "ns1", "pod1"), [converted]);

    assert_eq!(
        w.apply(ns1_pod("pod2", "127.0.0.2", "not-a")),
        changed(&[&pod2], &[]),
        "a pod outside the selector gets the namespace mode"
    );
    assert_eq!(policies(&w, "ns1", "pod2"), [STATIC]);
    assert_eq!(
        w.apply(ns1_pod("pod2", "127.0.0.2", "a")),
        changed(&[&pod2], &[]),
        "relabelled into the selector"
    );
    assert_eq!(policies(&w, "ns1", "pod2"), [converted]);

    assert_eq!(
        w.apply(pa("istio-system", "global-selector", Some("a"), Some(Strict)).build()),
        nothing(),
        "a root-namespace PeerAuthentication with a selector is ignored"
    );
    assert_eq!(policies(&w, "ns1", "pod1"), [converted]);
    assert_eq!(
        w.delete(&ObjectRef::new(
            Kind::PeerAuthentication,
            "istio-system",
            "global-selector"
        )),
        nothing()
    );

    assert_eq!(
        w.apply(
            pa("ns1", "selector", Some("a"), Some(Permissive))
                .port(9090, Permissive)
                .build()
        ),
        Step {
            addresses: (sorted(&[&pod1, &pod2]), vec![]),
            authorizations: (vec![], strings(&[converted])),
        },
        "nothing STRICT left: the converted policy goes"
    );
    assert_eq!(policies(&w, "ns1", "pod1"), Vec::<String>::new());

    assert_eq!(
        w.apply(pa("ns1", "namespace", None, Some(Permissive)).build()),
        changed(&[&wp1, &wp2], &[]),
        "a PERMISSIVE namespace: the pods outside the selector lose the static policy"
    );
    assert_eq!(policies(&w, "ns1", "pod1"), Vec::<String>::new());

    assert_eq!(
        w.apply(pa("ns1", "selector", Some("a"), Some(Strict)).build()),
        changed(&[&pod1, &pod2], &[]),
        "a STRICT workload policy without ports: the static policy"
    );
    assert_eq!(policies(&w, "ns1", "pod1"), [STATIC]);

    assert_eq!(
        w.apply(
            pa("ns1", "selector", Some("a"), Some(Strict))
                .port(9090, Permissive)
                .build()
        ),
        changed(&[&pod1, &pod2], &[converted]),
        "a PERMISSIVE port under a STRICT workload policy: the converted policy replaces the static one"
    );
    assert_eq!(policies(&w, "ns1", "pod1"), [converted]);

    assert_eq!(
        w.apply(
            pa("ns1", "selector", Some("a"), None)
                .port(9090, Strict)
                .build()
        ),
        changed(&[], &[converted]),
        "UNSET with a STRICT port under a PERMISSIVE namespace: same name, new content"
    );
    assert_eq!(policies(&w, "ns1", "pod1"), [converted]);

    assert_eq!(
        w.apply(pa("ns1", "namespace", None, Some(Strict)).build()),
        Step {
            addresses: (sorted(&[&pod1, &pod2, &wp1, &wp2]), vec![]),
            authorizations: (vec![], strings(&[converted])),
        },
        "a STRICT namespace covers the STRICT port: nothing to convert, the static policy applies"
    );
    assert_eq!(policies(&w, "ns1", "pod1"), [STATIC]);

    assert_eq!(
        w.apply(
            pa("ns1", "selector", Some("a"), None)
                .port(9090, Permissive)
                .build()
        ),
        changed(&[&pod1, &pod2], &[converted]),
        "UNSET with a PERMISSIVE port under a STRICT namespace: the strictness is merged in"
    );
    assert_eq!(policies(&w, "ns1", "pod1"), [converted]);

    assert_eq!(
        w.delete(&ObjectRef::new(Kind::PeerAuthentication, "ns1", "selector")),
        Step {
            addresses: (sorted(&[&pod1, &pod2]), vec![]),
            authorizations: (vec![], strings(&[converted])),
        },
        "workload policy deleted: back to the static policy"
    );
    assert_eq!(policies(&w, "ns1", "pod1"), [STATIC]);

    assert_eq!(
        w.delete(&ObjectRef::new(
            Kind::PeerAuthentication,
            "ns1",
            "namespace"
        )),
        changed(&[&pod1, &pod2, &wp1, &wp2], &[])
    );
    assert_eq!(
        w.delete(&ObjectRef::new(
            Kind::PeerAuthentication,
            "istio-system",
            "global"
        )),
        Step {
            addresses: (vec![], vec![]),
            authorizations: (vec![], strings(&[STATIC])),
        },
        "the last PeerAuthentication takes the static policy with it"
    );
    assert_eq!(
        w.delete(&ObjectRef::new(Kind::Pod, "ns1", "pod2")),
        Step {
            addresses: (vec![], vec![pod2.clone()]),
            authorizations: (vec![], vec![]),
        }
    );

    // AuthorizationPolicies.
    assert_eq!(
        w.apply(authorization_policy("istio-system", "global").build()),
        changed(&[], &["istio-system/global"]),
        "a GLOBAL policy is sent but attached to no workload"
    );
    assert_eq!(
        w.apply(authorization_policy("ns1", "namespace").build()),
        changed(&[], &["ns1/namespace"]),
        "a NAMESPACE policy is sent but attached to no workload"
    );
    assert_eq!(policies(&w, "ns1", "pod1"), Vec::<String>::new());

    assert_eq!(
        w.apply(
            authorization_policy("ns1", "selector")
                .selector("app", "a")
                .build()
        ),
        changed(&[&pod1], &["ns1/selector"])
    );
    assert_eq!(policies(&w, "ns1", "pod1"), ["ns1/selector"]);

    assert_eq!(
        w.apply(ns1_pod("pod3", "127.0.0.2", "not-a")),
        changed(&[&pod3], &[])
    );
    assert_eq!(policies(&w, "ns1", "pod3"), Vec::<String>::new());
    assert_eq!(
        w.apply(ns1_pod("pod3", "127.0.0.2", "a")),
        changed(&[&pod3], &[])
    );
    assert_eq!(policies(&w, "ns1", "pod3"), ["ns1/selector"]);

    assert_eq!(
        w.apply(
            authorization_policy("istio-system", "global-selector")
                .selector("app", "a")
                .build()
        ),
        changed(&[&pod1, &pod3], &["istio-system/global-selector"]),
        "a root-namespace selector policy attaches across namespaces"
    );
    assert_eq!(
        policies(&w, "ns1", "pod1"),
        ["istio-system/global-selector", "ns1/selector"]
    );

    assert_eq!(
        w.apply(
            authorization_policy("istio-system", "global-selector")
                .selector("app", "not-a")
                .build()
        ),
        changed(&[&pod1, &pod3], &[]),
        "a selector change detaches; the Authorization itself is unchanged"
    );
    assert_eq!(policies(&w, "ns1", "pod1"), ["ns1/selector"]);

    assert_eq!(
        w.apply(pa("istio-system", "strict", None, Some(Strict)).build()),
        changed(&[&pod1, &pod3, &wp1, &wp2], &[STATIC]),
        "a STRICT mesh policy reaches every workload"
    );
    assert_eq!(policies(&w, "ns1", "pod1"), ["ns1/selector", STATIC]);

    assert_eq!(
        w.apply(pa("ns1", "selector-strict", Some("a"), Some(Strict)).build()),
        nothing()
    );
    assert_eq!(policies(&w, "ns1", "pod1"), ["ns1/selector", STATIC]);

    assert_eq!(
        w.apply(pa("ns1", "selector-strict", Some("a"), Some(Permissive)).build()),
        changed(&[&pod1, &pod3], &[])
    );
    assert_eq!(policies(&w, "ns1", "pod1"), ["ns1/selector"]);

    assert_eq!(
        w.apply(pa("ns1", "selector-strict", Some("a"), Some(Disable)).build()),
        nothing()
    );
    assert_eq!(policies(&w, "ns1", "pod1"), ["ns1/selector"]);

    assert_eq!(
        w.apply(
            pa("ns1", "selector-strict", Some("a"), Some(Strict))
                .port(9090, Permissive)
                .build()
        ),
        changed(&[&pod1, &pod3], &[converted_strict])
    );
    assert_eq!(
        policies(&w, "ns1", "pod1"),
        ["ns1/selector", converted_strict]
    );

    assert_eq!(
        w.apply(
            authorization_policy("ns1", "selector")
                .selector("app", "a")
                .rule(rule().principals(&["cluster.local/ns/ns1/sa/sa1"]))
                .build()
        ),
        changed(&[], &["ns1/selector"]),
        "new rules, same attachment: only the Authorization changes"
    );
    assert_eq!(
        policies(&w, "ns1", "pod1"),
        ["ns1/selector", converted_strict]
    );

    assert_eq!(
        w.delete(&ObjectRef::new(
            Kind::AuthorizationPolicy,
            "ns1",
            "selector"
        )),
        Step {
            addresses: (sorted(&[&pod1, &pod3]), vec![]),
            authorizations: (vec![], strings(&["ns1/selector"])),
        }
    );
    assert_eq!(policies(&w, "ns1", "pod1"), [converted_strict]);

    assert_eq!(
        w.delete(&ObjectRef::new(
            Kind::PeerAuthentication,
            "ns1",
            "selector-strict"
        )),
        Step {
            addresses: (sorted(&[&pod1, &pod3]), vec![]),
            authorizations: (vec![], strings(&[converted_strict])),
        }
    );
    assert_eq!(policies(&w, "ns1", "pod1"), [STATIC]);

    assert_eq!(
        w.delete(&ObjectRef::new(
            Kind::PeerAuthentication,
            "istio-system",
            "strict"
        )),
        Step {
            addresses: (sorted(&[&pod1, &pod3, &wp1, &wp2]), vec![]),
            authorizations: (vec![], strings(&[STATIC])),
        }
    );
    assert_eq!(policies(&w, "ns1", "pod1"), Vec::<String>::new());

    assert_eq!(
        w.apply(
            authorization_policy("ns1", "gateway-targeted")
                .target_ref("Gateway", "dummy-waypoint")
                .build()
        ),
        nothing(),
        "a targetRef policy is for a waypoint: no resource, no event"
    );
    assert!(w.index.authorization("ns1/gateway-targeted").is_none());
    assert_eq!(
        authorization_names(&w),
        [
            "istio-system/global",
            "istio-system/global-selector",
            "ns1/namespace"
        ]
    );
}

// ---- TestAmbientIndex_PeerAuthenticationNamespacePolicyChange ----------------------------------

#[test]
fn peer_authentication_namespace_policy_change() {
    let mut w = World::unit(vec![ns1_pod("pod1", "127.0.0.1", "a")]);
    let pod1 = uid("ns1", "pod1");
    let converted = "ns1/converted_peer_authentication_selector";

    assert_eq!(
        w.apply(pa("ns1", "namespace", None, Some(Strict)).build()),
        changed(&[&pod1], &[STATIC])
    );
    assert_eq!(
        w.apply(
            pa("ns1", "selector", Some("a"), None)
                .port(9090, Permissive)
                .build()
        ),
        changed(&[&pod1], &[converted]),
        "an exemption from the namespace's strictness converts to a policy of its own"
    );
    assert_eq!(policies(&w, "ns1", "pod1"), [converted]);
    assert!(w.index.authorization(converted).is_some());

    assert_eq!(
        w.apply(pa("ns1", "namespace", None, Some(Permissive)).build()),
        Step {
            addresses: (vec![pod1.clone()], vec![]),
            authorizations: (vec![], strings(&[converted])),
        },
        "nothing left to exempt from: the listed name and the policy go together"
    );
    assert_eq!(policies(&w, "ns1", "pod1"), Vec::<String>::new());
    assert!(w.index.authorization(converted).is_none());

    assert_eq!(
        w.apply(pa("ns1", "namespace", None, Some(Strict)).build()),
        changed(&[&pod1], &[converted]),
        "and back"
    );
    assert_eq!(policies(&w, "ns1", "pod1"), [converted]);
}

/// Under a STRICT mesh policy, an UNSET namespace policy inherits STRICT for the converted policy as it
/// does for the workload's keys, so the name the workload lists always exists (see the module doc of
/// `index::peer_authentication`).
#[test]
fn unset_namespace_policy_inherits_the_mesh_mode_for_port_exemptions() {
    let mut w = World::unit(vec![ns1_pod("pod1", "127.0.0.1", "a")]);
    let pod1 = uid("ns1", "pod1");
    let converted = "ns1/converted_peer_authentication_selector";
    w.apply(pa("istio-system", "mesh", None, Some(Strict)).build());
    w.apply(pa("ns1", "namespace", None, Some(Unset)).build());
    assert_eq!(policies(&w, "ns1", "pod1"), [STATIC]);
    assert_eq!(
        w.apply(
            pa("ns1", "selector", Some("a"), None)
                .port(9090, Permissive)
                .build()
        ),
        changed(&[&pod1], &[converted])
    );
    assert_eq!(policies(&w, "ns1", "pod1"), [converted]);
    let auth = &decoded_authorizations(&w.index)[converted];
    assert_eq!(auth.rules.len(), 1);
    assert_eq!(
        auth.rules[0].clauses.len(),
        2,
        "not port 9090, and deny plaintext"
    );
    assert_eq!(
        auth.rules[0].clauses[0].matches[0].not_destination_ports,
        [9090]
    );
    assert_eq!(auth.rules[0].clauses[1].matches[0].not_principals.len(), 1);
    for name in policies(&w, "ns1", "pod1") {
        assert!(
            w.index.authorization(&name).is_some(),
            "{name} is listed but not sent"
        );
    }
}

// ---- pilot/pkg/xds/workload_test.go --------------------------------------------------------------

#[test]
fn workload_authorization_policy() {
    let mut w = World::unit(vec![]);
    assert_eq!(
        w.apply(authorization_policy("ns", "policy1").build()),
        changed(&[], &["ns/policy1"])
    );
    assert_eq!(
        w.apply(authorization_policy("ns", "policy2").build()),
        changed(&[], &["ns/policy2"]),
        "a new policy changes only itself"
    );
    assert_eq!(
        w.delete(&ObjectRef::new(Kind::AuthorizationPolicy, "ns", "policy2")),
        Step {
            addresses: (vec![], vec![]),
            authorizations: (vec![], strings(&["ns/policy2"])),
        }
    );
    assert_eq!(
        w.apply(
            pod("ns", "pod")
                .ip("127.0.0.1")
                .sa("sa")
                .node("node")
                .build()
        ),
        changed(&[&uid("ns", "pod")], &[]),
        "a pod changes no Authorization"
    );

    // With a selector policy attached, a pod change that keeps the attachment changes no Authorization
    // and, when nothing else differs, no Address either.
    let app = |extra: Option<(&str, &str)>| {
        let mut p = pod("ns", "pod")
            .ip("127.0.0.1")
            .sa("sa")
            .node("node")
            .label("app", "a");
        if let Some((k, v)) = extra {
            p = p.label(k, v);
        }
        p.build()
    };
    assert_eq!(w.apply(app(None)), changed(&[&uid("ns", "pod")], &[]));
    assert_eq!(
        w.apply(
            authorization_policy("ns", "selected")
                .selector("app", "a")
                .build()
        ),
        changed(&[&uid("ns", "pod")], &["ns/selected"])
    );
    assert_eq!(w.apply(app(Some(("team", "x")))), nothing());
    assert_eq!(
        w.apply(
            pod("ns", "pod")
                .ip("127.0.0.1")
                .sa("sa")
                .node("node")
                .label("app", "a")
                .ready()
                .build()
        ),
        changed(&[&uid("ns", "pod")], &[]),
        "a readiness change changes the pod only"
    );
    assert_eq!(policies(&w, "ns", "pod"), ["ns/selected"]);
}

#[test]
fn workload_peer_authentication() {
    let mut w = World::unit(vec![]);
    assert_eq!(
        w.apply(peer_authentication("ns", "policy1").build()),
        changed(&[], &[STATIC]),
        "the first PeerAuthentication pushes only the static strict policy"
    );
    assert_eq!(
        w.apply(
            peer_authentication("ns", "policy2")
                .selector("app", "sa")
                .mode(Permissive)
                .port(9080, Strict)
                .build()
        ),
        changed(&[], &["ns/converted_peer_authentication_policy2"])
    );
    assert_eq!(
        w.delete(&ObjectRef::new(Kind::PeerAuthentication, "ns", "policy2")),
        Step {
            addresses: (vec![], vec![]),
            authorizations: (
                vec![],
                strings(&["ns/converted_peer_authentication_policy2"])
            ),
        }
    );
    assert_eq!(
        w.apply(pod("default", "pod").ip("127.0.0.1").sa("sa").build()),
        changed(&[&uid("default", "pod")], &[]),
        "a pod in another namespace changes no Authorization"
    );
}

#[test]
fn peer_authentication_update() {
    let mut w = World::unit(vec![]);
    assert_eq!(
        w.apply(peer_authentication("ns", "policy1").build()),
        changed(&[], &[STATIC])
    );
    let real = || {
        peer_authentication("ns", "policy1")
            .selector("app", "sa")
            .mode(Strict)
            .port(8080, Disable)
            .build()
    };
    assert_eq!(
        w.apply(real()),
        changed(&[], &["ns/converted_peer_authentication_policy1"])
    );
    assert_eq!(w.apply(real()), nothing(), "the same policy again");
}

// ---- TestAuthorizationPolicyRevisionFiltering ---------------------------------------------------

#[test]
fn revision_filtering() {
    let canary = Settings {
        revision: "canary".to_string(),
        ..test_settings()
    };
    let mut w = World::new(canary, vec![test_system_namespace()]);
    assert_eq!(
        w.apply(authorization_policy("ns1", "unlabelled").build()),
        changed(&[], &["ns1/unlabelled"]),
        "no revision label: read"
    );
    assert_eq!(
        w.apply(
            authorization_policy("ns1", "other-rev")
                .label(REVISION, "default")
                .build()
        ),
        nothing(),
        "another revision: ignored"
    );
    assert!(
        w.index
            .authorization_policies()
            .all(|p| p.meta.name != "other-rev")
    );
    assert_eq!(
        w.apply(
            authorization_policy("ns1", "other-rev")
                .label(REVISION, "canary")
                .build()
        ),
        changed(&[], &["ns1/other-rev"]),
        "relabelled to this revision: read"
    );
    assert_eq!(
        w.apply(
            authorization_policy("ns1", "unlabelled")
                .label(REVISION, "default")
                .build()
        ),
        Step {
            addresses: (vec![], vec![]),
            authorizations: (vec![], strings(&["ns1/unlabelled"])),
        },
        "relabelled away: removed"
    );
    assert_eq!(
        w.apply(
            peer_authentication("ns1", "pa")
                .label(REVISION, "default")
                .mode(Strict)
                .build()
        ),
        nothing(),
        "a PeerAuthentication of another revision does not exist for this one"
    );
    assert_eq!(
        w.apply(
            peer_authentication("ns1", "pa")
                .label(REVISION, "canary")
                .mode(Strict)
                .build()
        ),
        changed(&[], &[STATIC])
    );
    assert_eq!(authorization_names(&w), [STATIC, "ns1/other-rev"]);

    // An empty revision reads everything.
    let all = World::new(
        test_settings(),
        vec![
            authorization_policy("ns1", "a")
                .label(REVISION, "default")
                .build(),
            authorization_policy("ns1", "b")
                .label(REVISION, "canary")
                .build(),
            authorization_policy("ns1", "c").build(),
        ],
    );
    assert_eq!(authorization_names(&all), ["ns1/a", "ns1/b", "ns1/c"]);
}

// ---- TestPolicyAfterPod -------------------------------------------------------------------------

#[test]
fn policy_after_pod() {
    let mut w = World::unit(vec![]);
    w.apply(
        service("ns1", "svc1")
            .cluster_ip("10.0.0.1")
            .port("http", 80, 80)
            .selector("app", "a")
            .build(),
    );
    assert_eq!(
        w.apply(ns1_pod("pod1", "127.0.0.1", "a")),
        changed(&[&uid("ns1", "pod1")], &[])
    );
    assert_eq!(
        w.apply(
            authorization_policy("ns1", "selector")
                .selector("app", "a")
                .build()
        ),
        changed(&[&uid("ns1", "pod1")], &["ns1/selector"]),
        "the pod, not its Service, changes"
    );
    assert_eq!(policies(&w, "ns1", "pod1"), ["ns1/selector"]);
}

// ---- attachment follows labels ------------------------------------------------------------------

#[test]
fn pod_label_changes_attach_and_detach_exactly_that_workload() {
    let mut w = World::unit(vec![
        authorization_policy("ns1", "sel")
            .selector("app", "a")
            .build(),
        authorization_policy("istio-system", "root-sel")
            .selector("tier", "front")
            .build(),
        ns1_pod("p1", "10.0.0.1", "b"),
        ns1_pod("p2", "10.0.0.2", "a"),
        pod("ns2", "p3").ip("10.0.0.3").label("app", "a").build(),
    ]);
    let (p1, p2, p3) = (uid("ns1", "p1"), uid("ns1", "p2"), uid("ns2", "p3"));
    assert_eq!(policies(&w, "ns1", "p2"), ["ns1/sel"]);
    assert_eq!(
        policies(&w, "ns2", "p3"),
        Vec::<String>::new(),
        "another namespace's selector policy does not attach"
    );

    let p1_with = |labels: &[(&str, &str)]| {
        let mut p = pod("ns1", "p1").ip("10.0.0.1").sa("sa1").ready();
        for (k, v) in labels {
            p = p.label(k, v);
        }
        p.build()
    };
    assert_eq!(
        w.apply(p1_with(&[("app", "b"), ("team", "x")])),
        nothing(),
        "a label no selector reads"
    );
    assert_eq!(
        w.apply(p1_with(&[("app", "b"), ("tier", "front")])),
        changed(&[&p1], &[]),
        "starts matching the root-namespace policy"
    );
    assert_eq!(policies(&w, "ns1", "p1"), ["istio-system/root-sel"]);
    assert_eq!(
        w.apply(p1_with(&[("app", "a"), ("tier", "front")])),
        changed(&[&p1], &[]),
        "and its own namespace's"
    );
    assert_eq!(
        policies(&w, "ns1", "p1"),
        ["istio-system/root-sel", "ns1/sel"]
    );
    assert_eq!(
        w.apply(p1_with(&[("app", "a")])),
        changed(&[&p1], &[]),
        "stops matching the root-namespace policy"
    );
    assert_eq!(policies(&w, "ns1", "p1"), ["ns1/sel"]);
    assert_eq!(
        w.apply(p1_with(&[])),
        changed(&[&p1], &[]),
        "stops matching both"
    );
    assert_eq!(policies(&w, "ns1", "p1"), Vec::<String>::new());

    assert_eq!(
        w.apply(
            pod("ns2", "p3")
                .ip("10.0.0.3")
                .label("app", "a")
                .label("tier", "front")
                .build()
        ),
        changed(&[&p3], &[]),
        "a root-namespace policy reaches other namespaces"
    );
    assert_eq!(policies(&w, "ns2", "p3"), ["istio-system/root-sel"]);

    // Changing a policy's selector changes the pods it gains or loses, and only those.
    assert_eq!(
        w.apply(
            authorization_policy("ns1", "sel")
                .selector("app", "a")
                .selector("tier", "front")
                .build()
        ),
        changed(&[&p2], &[]),
        "narrowed: p2 (no tier) leaves"
    );
    assert_eq!(
        w.apply(
            authorization_policy("istio-system", "root-sel")
                .selector("app", "a")
                .build()
        ),
        changed(&[&p2], &[]),
        "the root policy moves from tier=front (p3) to app=a (p2, p3): p3 matches both, p2 joins"
    );
    assert_eq!(policies(&w, "ns2", "p3"), ["istio-system/root-sel"]);
    assert_eq!(policies(&w, "ns1", "p2"), ["istio-system/root-sel"]);
    assert_eq!(
        w.apply(
            authorization_policy("istio-system", "root-sel")
                .selector("app", "a")
                .action("AUDIT")
                .build()
        ),
        Step {
            addresses: (sorted(&[&p2, &p3]), vec![]),
            authorizations: (vec![], strings(&["istio-system/root-sel"])),
        },
        "a policy that is no longer sent is no longer listed"
    );
    assert_eq!(
        w.apply(
            authorization_policy("ns1", "sel")
                .selector("app", "a")
                .selector("tier", "front")
                .annotation(DRY_RUN, "true")
                .build()
        ),
        Step {
            addresses: (vec![], vec![]),
            authorizations: (vec![], strings(&["ns1/sel"])),
        },
        "a dry-run policy is not sent (and p1, p2 did not list it)"
    );
}

#[test]
fn attachment_order_is_selector_policies_sorted_then_peer_authentication_keys() {
    let mut w = World::unit(vec![
        pod("ns1", "web")
            .ip("10.0.0.1")
            .label("app", "a")
            .label("tier", "front")
            .build(),
        pa("istio-system", "mesh", None, Some(Strict)).build(),
    ]);
    for (ns, name, key, value) in [
        ("ns1", "zeta", "app", "a"),
        ("istio-system", "middle", "tier", "front"),
        ("ns1", "alpha", "tier", "front"),
        ("istio-system", "aardvark", "app", "a"),
        ("ns1", "alpha-2", "app", "a"),
        ("ns1", "unmatched", "app", "b"),
        ("ns2", "elsewhere", "app", "a"),
    ] {
        w.apply(authorization_policy(ns, name).selector(key, value).build());
    }
    assert_eq!(
        policies(&w, "ns1", "web"),
        [
            "istio-system/aardvark",
            "istio-system/middle",
            "ns1/alpha",
            "ns1/alpha-2",
            "ns1/zeta",
            STATIC,
        ]
    );
    w.apply(
        pa("ns1", "web", Some("a"), Some(Strict))
            .port(8080, Permissive)
            .build(),
    );
    assert_eq!(
        policies(&w, "ns1", "web"),
        [
            "istio-system/aardvark",
            "istio-system/middle",
            "ns1/alpha",
            "ns1/alpha-2",
            "ns1/zeta",
            "ns1/converted_peer_authentication_web",
        ]
    );
}

// ---- pseudo-random sequences --------------------------------------------------------------------

/// splitmix64: small, fast and deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const NAMESPACES: &[&str] = &["a", "b", "istio-system"];
const MODES: &[Option<MtlsMode>] = &[
    None,
    Some(Unset),
    Some(Strict),
    Some(Strict),
    Some(Permissive),
    Some(Disable),
];

fn random_pod(rng: &mut Rng) -> Object {
    let ns = rng.pick(NAMESPACES);
    let name = rng.pick(&["p0", "p1", "p2"]);
    let mut p = pod(ns, name).ip(rng.pick(&["10.0.0.1", "10.0.0.2", "10.0.0.3"]));
    if rng.chance(80) {
        p = p.label("app", rng.pick(&["x", "y"]));
    }
    if rng.chance(40) {
        p = p.label("tier", "t");
    }
    if rng.chance(50) {
        p = p.ready();
    }
    if rng.chance(10) {
        p = p.phase("Succeeded");
    }
    p.sa(rng.pick(&["default", "sa"])).build()
}

fn random_rule(rng: &mut Rng) -> RuleBuilder {
    let mut r = rule();
    if rng.chance(40) {
        r = r.principals(&[rng.pick(&["cluster.local/ns/a/sa/x", "*", "*/sa/y"])]);
    }
    if rng.chance(20) {
        r = r.namespaces(&[rng.pick(&["a", "b-*"])]);
    }
    if rng.chance(20) {
        r = r.ip_blocks(&[rng.pick(&["10.0.0.0/8", "10.0.0.1", "bad", "10.0.0.0/08"])]);
    }
    if rng.chance(30) {
        r = r.ports(&[rng.pick(&["80", "http", "8080", "+80"])]);
    }
    if rng.chance(15) {
        r = r.methods(&["GET"]);
    }
    if rng.chance(10) {
        r = r.request_principals(&["issuer/x"]);
    }
    if rng.chance(20) {
        r = r.when(
            rng.pick(&[
                "source.ip",
                "destination.port",
                "request.headers[x]",
                "connection.sni",
            ]),
            &[rng.pick(&["10.0.0.1", "80", "v"])],
        );
    }
    r
}

fn random_authorization_policy(rng: &mut Rng) -> Object {
    let ns = rng.pick(NAMESPACES);
    let name = rng.pick(&["ap0", "ap1", "ap2"]);
    let mut p = authorization_policy(ns, name);
    match rng.below(6) {
        0 | 1 => {}
        2 => p = p.selector("app", "x"),
        3 => p = p.selector("app", "y"),
        4 => p = p.selector("tier", "t"),
        _ => p = p.empty_selector(),
    }
    match rng.below(10) {
        0..=3 => {}
        4..=6 => p = p.action("DENY"),
        7 => p = p.action("ALLOW"),
        8 => p = p.action("AUDIT"),
        _ => p = p.action("FOO"),
    }
    for _ in 0..rng.below(3) {
        let r = random_rule(rng);
        p = p.rule(r);
    }
    if rng.chance(10) {
        p = p.target_ref("Service", "svc");
    }
    if rng.chance(10) {
        p = p.annotation(DRY_RUN, rng.pick(&["true", "false", "maybe"]));
    }
    if rng.chance(20) {
        p = p.label(REVISION, rng.pick(&["canary", "default"]));
    }
    p.build()
}

fn random_peer_authentication(rng: &mut Rng) -> Object {
    let ns = rng.pick(NAMESPACES);
    // Mostly one namespace-wide (or mesh-wide) policy and workload policies beside it, so that the levels
    // meet; sometimes a second policy of a level, where the oldest wins.
    let name = rng.pick(&["wide", "wide", "pa1", "pa1", "pa2"]);
    let mut p = peer_authentication(ns, name);
    let wide = name == "wide" || rng.chance(15);
    if !wide {
        match rng.below(3) {
            0 | 1 => p = p.selector("app", "x"),
            _ => p = p.selector("tier", "t"),
        }
    }
    if let Some(mode) = rng.pick(MODES) {
        p = p.mode(mode);
    }
    for port in [8080, 9090] {
        if rng.chance(35) {
            let mode = rng.pick(MODES).unwrap_or(Unset);
            p = p.port(port, mode);
        }
    }
    p = p.creation(rng.below(3) as i64);
    if rng.chance(15) {
        p = p.label(REVISION, rng.pick(&["canary", "default"]));
    }
    p.build()
}

fn random_object(rng: &mut Rng) -> Object {
    match rng.below(10) {
        0..=2 => random_pod(rng),
        3..=5 => random_authorization_policy(rng),
        6..=8 => random_peer_authentication(rng),
        _ => {
            let ns = rng.pick(NAMESPACES);
            let mut n = namespace(ns);
            if rng.chance(50) {
                n = n.label("team", "x");
            }
            n.build()
        }
    }
}

fn random_sequence(seed: u64, settings: Settings, steps: usize) {
    let mut rng = Rng(seed);
    let mut world = World::new(settings.clone(), vec![]);
    let mut shadow = Index::new(settings);
    for step in 0..steps {
        let obj = random_object(&mut rng);
        if rng.chance(25) {
            let r = obj.object_ref();
            world.delete(&r);
        } else {
            world.apply(obj);
        }
        // Every name a workload lists is sent.
        for w in workloads(&world.index) {
            for name in &w.authorization_policies {
                assert!(
                    world.index.authorization(name).is_some(),
                    "seed {seed} step {step}: {} lists {name}, which is not sent",
                    w.uid
                );
            }
        }
        if step % 20 == 19 {
            // `reset` from the state of 20 steps ago reports exactly the difference.
            let before = (
                HashMap::clone(shadow.addresses()),
                HashMap::clone(shadow.authorizations()),
            );
            let changes = shadow.reset(world.objects.values().cloned());
            assert_eq!(
                (names(&changes.addresses), names(&changes.authorizations)),
                (
                    expected_changes(&before.0, shadow.addresses()),
                    expected_changes(&before.1, shadow.authorizations())
                ),
                "seed {seed} step {step}: reset changes"
            );
            assert_same(
                &shadow,
                &world.index,
                &format!("seed {seed} step {step}: reset"),
            );
        }
    }
}

#[test]
fn random_policy_sequences_match_a_fresh_build() {
    for seed in [11, 12, 13, 14] {
        random_sequence(seed, test_settings(), 250);
    }
    for seed in [21, 22] {
        random_sequence(
            seed,
            Settings {
                revision: "canary".to_string(),
                ..test_settings()
            },
            250,
        );
    }
}
