//! `ambientd explain`: the migration example must reach the white paper's conclusions, block by block;
//! the filter argument and its errors; the whole report against a reviewed golden file; and the cases
//! the example does not show (DENY without effect, AUDIT, dry-run, unbound waypoint policies) on small
//! indexes built with the fixture builders.
//!
//! Run with `AMBIENTD_BLESS=1` to rewrite the golden file after an intended change, then review the diff.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ambient_control_plane::explain::{explain, matches, subjects};
use ambient_index::Index;
use ambient_index::model::Object;
use ambient_index::model::well_known::{DRY_RUN, REDIRECTION, USE_WAYPOINT};
use ambient_index::testing::*;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples")
}

fn migration() -> PathBuf {
    examples().join("bookinfo-migration")
}

fn ambientd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ambientd"))
        .arg("explain")
        .args(args)
        .output()
        .expect("run ambientd")
}

fn report_for(dir: &Path, extra: &[&str]) -> String {
    let dir = dir.to_str().expect("utf-8 path");
    let mut args = vec!["--config-dir", dir];
    args.extend_from_slice(extra);
    let out = ambientd(&args);
    assert!(
        out.status.success(),
        "explain failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 report")
}

/// The lines of the block titled `title`, up to the blank line that ends it.
fn block<'a>(report: &'a str, title: &str) -> Vec<&'a str> {
    let lines: Vec<&str> = report.lines().collect();
    let Some(start) = lines.iter().position(|l| *l == title) else {
        panic!("no block {title:?} in:\n{report}");
    };
    lines[start..]
        .iter()
        .take_while(|l| !l.is_empty())
        .copied()
        .collect()
}

/// The unwrapped text of one field (`  Label:` then continuation lines) of a block.
fn field(report: &str, title: &str, label: &str) -> String {
    let head = format!("  {label}:");
    let lines = block(report, title);
    let Some(start) = lines.iter().position(|l| l.starts_with(&head)) else {
        panic!(
            "no field {label:?} in block {title:?}:\n{}",
            lines.join("\n")
        );
    };
    let mut text = lines[start][head.len()..].trim().to_string();
    for line in &lines[start + 1..] {
        if !line.starts_with("                ") {
            break;
        }
        text.push(' ');
        text.push_str(line.trim());
    }
    text
}

const DETAILS: &str = "AuthorizationPolicy backend/details-policy";
const DETAILS_TWIN: &str = "AuthorizationPolicy backend/details-policy-waypoint";
const RATINGS: &str = "AuthorizationPolicy backend/ratings-policy";
const RATINGS_TWIN: &str = "AuthorizationPolicy backend/ratings-policy-waypoint";
const VIEWER: &str = "AuthorizationPolicy frontend/productpage-viewer";
const REVIEWS: &str = "HTTPRoute backend/reviews";
const PRODUCTPAGE: &str = "HTTPRoute frontend/productpage";

#[test]
fn productpage_viewer_is_l4_and_enforced_by_ztunnel() {
    let r = report_for(&migration(), &[]);
    assert_eq!(
        field(&r, VIEWER, "Kind"),
        "selector policy (matchLabels app=productpage), action ALLOW"
    );
    assert_eq!(
        field(&r, VIEWER, "ztunnel gets"),
        "frontend/productpage-viewer with its only rule, as written."
    );
    assert_eq!(
        field(&r, VIEWER, "Applies to"),
        "2 workloads (both captured by ztunnel): productpage-v1-55586884d5-kz8tn, \
         productpage-v1-55586884d5-mjntp."
    );
    assert_eq!(
        field(&r, VIEWER, "Condition"),
        "ZtunnelAccepted=True, reason Accepted: attached to ztunnel"
    );
    assert_eq!(field(&r, VIEWER, "Enforced by"), "ztunnel");
    assert_eq!(
        field(&r, VIEWER, "To do"),
        "Nothing: the policy is L4 only (no HTTP attributes), so ztunnel enforces it as written."
    );
}

#[test]
fn sidecar_era_policies_deny_all_traffic_and_should_be_deleted() {
    let r = report_for(&migration(), &[]);
    for (title, name, twin, app, pods, methods) in [
        (
            DETAILS,
            "backend/details-policy",
            "backend/details-policy-waypoint",
            "details",
            "details-v1-558d6b8747-fd6nx, details-v1-558d6b8747-tjjwc",
            "methods",
        ),
        (
            RATINGS,
            "backend/ratings-policy",
            "backend/ratings-policy-waypoint",
            "ratings",
            "ratings-v1-78d7884947-br5hw, ratings-v1-78d7884947-mg2p6",
            "methods",
        ),
    ] {
        assert_eq!(
            field(&r, title, "Kind"),
            format!("selector policy (matchLabels app={app}), action ALLOW")
        );
        assert_eq!(
            field(&r, title, "ztunnel gets"),
            format!(
                "{name} with 0 of its 1 rule. It drops rule 1, which uses the HTTP attribute \
                 {methods}: ztunnel cannot check HTTP attributes and leaves out every ALLOW rule \
                 that uses one."
            )
        );
        assert_eq!(
            field(&r, title, "Applies to"),
            format!("2 workloads (both captured by ztunnel): {pods}.")
        );
        assert!(
            field(&r, title, "Condition").starts_with(
                "ZtunnelAccepted=True, reason UnsupportedValue: ztunnel does not support HTTP \
                 attributes (found: methods)."
            ),
            "{title}"
        );
        assert_eq!(
            field(&r, title, "Enforced by"),
            "ztunnel (more restrictive than written)"
        );
        assert_eq!(
            field(&r, title, "To do"),
            format!(
                "ztunnel drops rule 1 and so denies all traffic to these 2 workloads unless \
                 another ALLOW policy matches. The waypoint policy {twin} already enforces these \
                 rules at waypoint backend/waypoint: delete {name} now that its twin is bound."
            )
        );
    }
}

#[test]
fn waypoint_twins_are_enforced_by_the_backend_waypoint() {
    let r = report_for(&migration(), &[]);
    for (title, svc, original) in [
        (DETAILS_TWIN, "details", "backend/details-policy"),
        (RATINGS_TWIN, "ratings", "backend/ratings-policy"),
    ] {
        assert_eq!(
            field(&r, title, "Kind"),
            format!("waypoint policy (targetRefs: Service backend/{svc}), action ALLOW")
        );
        assert_eq!(
            field(&r, title, "ztunnel gets"),
            "nothing: a policy with targetRefs is for waypoints only."
        );
        assert!(
            field(&r, title, "Targets").starts_with(&format!(
                "Service backend/{svc}: enforced at waypoint backend/waypoint, for traffic \
                 addressed to Service backend/{svc}. The Service selects 2 workloads:"
            )),
            "{title}"
        );
        assert_eq!(
            field(&r, title, "Condition"),
            "WaypointAccepted=True, reason Accepted: bound to backend/waypoint"
        );
        assert_eq!(field(&r, title, "Enforced by"), "waypoint backend/waypoint");
        assert_eq!(
            field(&r, title, "To do"),
            format!(
                "Nothing: waypoint backend/waypoint enforces it for traffic addressed to Service \
                 backend/{svc}. The selector policy {original} has the same rules and still \
                 applies at ztunnel: delete it (see its entry)."
            )
        );
    }
}

#[test]
fn reviews_route_needs_the_waypoint_and_productpage_route_the_ingress_gateway() {
    let r = report_for(&migration(), &[]);
    assert_eq!(
        field(&r, REVIEWS, "Parent"),
        "Service backend/reviews, port 9080. Without sidecars, only a waypoint applies a route \
         attached to a Service, so this route needs a waypoint for backend/reviews. The Service \
         is bound to waypoint backend/waypoint, which serves the route."
    );
    assert_eq!(
        field(&r, REVIEWS, "Rules"),
        "1 rule, sending traffic to reviews-v3:9080."
    );
    assert_eq!(field(&r, REVIEWS, "To do"), "Nothing.");
    assert_eq!(
        field(&r, PRODUCTPAGE, "Parent"),
        "Gateway istio-ingress/gateway. The route is served by the Gateway istio-ingress/gateway \
         (class istio), not a waypoint; ambient needs nothing more for it."
    );
    assert_eq!(field(&r, PRODUCTPAGE, "To do"), "Nothing.");
}

#[test]
fn migration_report_order_and_summary() {
    let r = report_for(&migration(), &[]);
    let titles: Vec<&str> = r
        .lines()
        .filter(|l| l.starts_with("AuthorizationPolicy ") || l.starts_with("HTTPRoute "))
        .collect();
    assert_eq!(
        titles,
        [
            DETAILS,
            DETAILS_TWIN,
            RATINGS,
            RATINGS_TWIN,
            VIEWER,
            REVIEWS,
            PRODUCTPAGE
        ]
    );
    assert!(r.starts_with("ambientd explain: 5 AuthorizationPolicies, 2 HTTPRoutes.\n\nSummary\n"));
    let summary = block(&r, "Summary").join("\n");
    for line in [
        "  policy backend/details-policy           ztunnel denies all traffic: delete it, its twin is bound",
        "  policy backend/details-policy-waypoint  enforced by waypoint backend/waypoint",
        "  policy backend/ratings-policy           ztunnel denies all traffic: delete it, its twin is bound",
        "  policy backend/ratings-policy-waypoint  enforced by waypoint backend/waypoint",
        "  policy frontend/productpage-viewer      enforced by ztunnel as written",
        "  route backend/reviews                   served by waypoint backend/waypoint",
        "  route frontend/productpage              served by Gateway istio-ingress/gateway, not a waypoint",
    ] {
        assert!(summary.contains(line), "{line:?} not in:\n{summary}");
    }
}

#[test]
fn end_state_has_nothing_left_to_delete() {
    let r = report_for(&examples().join("bookinfo"), &[]);
    assert!(r.starts_with("ambientd explain: 3 AuthorizationPolicies, 2 HTTPRoutes.\n"));
    assert!(!r.contains("delete"), "{r}");
    assert_eq!(field(&r, VIEWER, "Enforced by"), "ztunnel");
    assert_eq!(
        field(&r, DETAILS_TWIN, "To do"),
        "Nothing: waypoint backend/waypoint enforces it for traffic addressed to Service \
         backend/details."
    );
}

#[test]
fn filter_prints_only_that_block() {
    let full = report_for(&migration(), &[]);
    let one = report_for(&migration(), &["backend/reviews"]);
    let want = block(&full, REVIEWS).join("\n") + "\n";
    assert_eq!(one, want);
    let policy = report_for(&migration(), &["backend/details-policy"]);
    assert_eq!(policy, block(&full, DETAILS).join("\n") + "\n");
}

#[test]
fn unknown_filter_fails_and_lists_what_exists() {
    let out = ambientd(&[
        "--config-dir",
        migration().to_str().expect("utf-8 path"),
        "backend/nope",
    ]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no AuthorizationPolicy or HTTPRoute named backend/nope in"),
        "{err}"
    );
    for s in [DETAILS, DETAILS_TWIN, VIEWER, REVIEWS, PRODUCTPAGE] {
        assert!(
            err.contains(&format!("\n  {s}")),
            "{s} not listed in:\n{err}"
        );
    }
}

#[test]
fn missing_path_fails_clearly() {
    let out = ambientd(&["--config-dir", "/nonexistent/ambientd-explain"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("config path /nonexistent/ambientd-explain does not exist"),
        "{err}"
    );
}

#[test]
fn migration_report_matches_golden() {
    let got = report_for(&migration(), &[]);
    let golden = migration().join("explain.txt");
    if std::env::var_os("AMBIENTD_BLESS").is_some() {
        std::fs::write(&golden, &got).expect("write golden");
    }
    let want = std::fs::read_to_string(&golden).expect("golden file (AMBIENTD_BLESS=1 creates it)");
    assert!(
        got == want,
        "report differs from {}; rerun with AMBIENTD_BLESS=1 and review the diff",
        golden.display()
    );
}

// ---- small indexes ------------------------------------------------------------------------------

/// Namespace `shop` with two captured `web` pods behind Service `web`, plus `extra`.
fn shop(extra: Vec<Object>) -> Index {
    let mut objects = vec![
        namespace("shop").build(),
        service("shop", "web")
            .cluster_ip("10.96.0.10")
            .port("http", 80, 8080)
            .selector("app", "web")
            .build(),
    ];
    for (i, ip) in ["10.0.0.1", "10.0.0.2"].iter().enumerate() {
        objects.push(
            pod("shop", &format!("web-{i}"))
                .ip(ip)
                .label("app", "web")
                .annotation(REDIRECTION, "enabled")
                .sa("web")
                .ready()
                .build(),
        );
    }
    objects.extend(extra);
    Index::build(test_settings(), objects)
}

/// [`field`] on a report held in memory.
fn text(report: &str, title: &str, label: &str) -> String {
    field(report, title, label)
}

#[test]
fn deny_without_effect() {
    let index = shop(vec![
        authorization_policy("shop", "no-delete")
            .selector("app", "web")
            .action("DENY")
            .rule(
                rule()
                    .principals(&["cluster.local/ns/shop/sa/batch"])
                    .methods(&["DELETE"]),
            )
            .build(),
    ]);
    let r = explain(&index, Some("shop/no-delete"));
    let t = "AuthorizationPolicy shop/no-delete";
    assert_eq!(
        text(&r, t, "ztunnel gets"),
        "shop/no-delete with its only rule, minus its HTTP attributes: rule 1 without methods. \
         What is left of the rule matches nothing, so it can never match at ztunnel."
    );
    assert_eq!(text(&r, t, "Enforced by"), "nothing (needs a waypoint)");
    assert!(text(&r, t, "Condition").ends_with(
        "this DENY policy has no enforceable rules at ztunnel and will have no effect. Deploy \
             a waypoint proxy and use a targetRef to enforce this policy."
    ));
    assert_eq!(
        text(&r, t, "To do"),
        "Once ztunnel leaves out the HTTP attributes, no rule can match: this DENY policy has no \
         effect in ambient. Enforce the HTTP rules at a waypoint: deploy a waypoint for shop \
         (istioctl waypoint apply -n shop --enroll-namespace) and copy this policy with \
         targetRefs naming Service shop/web."
    );
}

#[test]
fn deny_broader_than_written() {
    let index = shop(vec![
        authorization_policy("shop", "no-delete")
            .selector("app", "web")
            .action("DENY")
            .rule(
                rule()
                    .principals(&["cluster.local/ns/shop/sa/batch"])
                    .methods(&["DELETE"]),
            )
            .rule(rule().principals(&["cluster.local/ns/shop/sa/cron"]))
            .build(),
    ]);
    let r = explain(&index, None);
    let t = "AuthorizationPolicy shop/no-delete";
    assert_eq!(
        text(&r, t, "Enforced by"),
        "ztunnel (more restrictive than written)"
    );
    assert!(text(&r, t, "To do").starts_with(
        "ztunnel enforces the rules without their HTTP attributes, so it denies more than \
         written: a connection that matches the rest of a rule is denied whatever its HTTP \
         request."
    ));
    assert!(text(&r, t, "To do").ends_with("Keep only L4 rules in this policy."));
}

#[test]
fn audit_is_not_sent() {
    let index = shop(vec![
        authorization_policy("shop", "audit-web")
            .selector("app", "web")
            .action("AUDIT")
            .rule(rule().methods(&["POST"]))
            .build(),
    ]);
    let r = explain(&index, None);
    let t = "AuthorizationPolicy shop/audit-web";
    assert_eq!(
        text(&r, t, "ztunnel gets"),
        "nothing: ztunnel does not support the AUDIT action."
    );
    assert_eq!(
        text(&r, t, "Applies to"),
        "no workload, since ztunnel does not receive the policy. It selects 2 workloads (both \
         captured by ztunnel): web-0, web-1."
    );
    assert_eq!(
        text(&r, t, "Condition"),
        "ZtunnelAccepted=False, reason UnsupportedValue: ztunnel does not support the AUDIT action"
    );
    assert!(
        text(&r, t, "To do")
            .starts_with("ztunnel does not support AUDIT; only a waypoint applies it. Enforce the"),
        "{r}"
    );
    assert!(
        r.contains("policy shop/audit-web  AUDIT is not supported by ztunnel: needs a waypoint")
    );
}

#[test]
fn dry_run_is_not_sent() {
    let index = shop(vec![
        authorization_policy("shop", "try-it")
            .selector("app", "web")
            .annotation(DRY_RUN, "true")
            .rule(rule().namespaces(&["shop"]))
            .build(),
    ]);
    let r = explain(&index, None);
    let t = "AuthorizationPolicy shop/try-it";
    assert_eq!(
        text(&r, t, "Kind"),
        "selector policy (matchLabels app=web), action ALLOW, dry-run (istio.io/dry-run: true)"
    );
    assert_eq!(
        text(&r, t, "ztunnel gets"),
        "nothing: dry-run policies are not sent while ambient dry-run support \
         (AMBIENT_ENABLE_DRY_RUN_AUTHORIZATION_POLICY) is off."
    );
    assert_eq!(text(&r, t, "Enforced by"), "nothing (dry-run)");
    assert_eq!(
        text(&r, t, "To do"),
        "Nothing enforces or logs this policy in ambient. To enforce it, remove the \
         istio.io/dry-run annotation: ztunnel would then enforce it as written."
    );
}

#[test]
fn waypoint_policy_without_a_bound_target() {
    // No waypoint at all.
    let index = shop(vec![
        authorization_policy("shop", "web-get")
            .target_ref("Service", "web")
            .rule(rule().methods(&["GET"]))
            .build(),
    ]);
    let r = explain(&index, None);
    let t = "AuthorizationPolicy shop/web-get";
    assert!(text(&r, t, "Targets").starts_with("Service shop/web: not bound to a waypoint"));
    assert_eq!(
        text(&r, t, "Condition"),
        "WaypointAccepted=False, reason AncestorNotBound: Service shop/web is not bound to a \
         waypoint"
    );
    assert_eq!(
        text(&r, t, "Enforced by"),
        "waypoint, once a target is bound to one; none is yet, so nothing enforces it."
    );
    assert_eq!(
        text(&r, t, "To do"),
        "Deploy a waypoint for shop (istioctl waypoint apply -n shop --enroll-namespace), or \
         label Service shop/web with istio.io/use-waypoint naming an existing waypoint."
    );
    assert!(r.contains("policy shop/web-get  not enforced: no target is bound to a waypoint"));

    // A ready waypoint in the namespace that nothing uses yet.
    let index = shop(vec![
        waypoint("shop", "waypoint", TEST_DOMAIN, "10.96.0.99").build(),
        authorization_policy("shop", "web-get")
            .target_ref("Service", "web")
            .rule(rule().methods(&["GET"]))
            .build(),
    ]);
    let r = explain(&index, Some("shop/web-get"));
    assert_eq!(
        text(&r, t, "To do"),
        format!("Label Service shop/web (or namespace shop) with {USE_WAYPOINT}=waypoint.")
    );

    // The namespace names a waypoint that does not exist.
    let mut objects = vec![namespace("shop").label(USE_WAYPOINT, "missing").build()];
    objects.push(
        authorization_policy("shop", "web-get")
            .target_ref("Service", "web")
            .build(),
    );
    objects.push(
        service("shop", "web")
            .cluster_ip("10.96.0.10")
            .port("http", 80, 8080)
            .build(),
    );
    let index = Index::build(test_settings(), objects);
    let r = explain(&index, None);
    assert!(text(&r, t, "Targets").starts_with(
        "Service shop/web: not bound (istio.io/WaypointBound, reason WaypointIsNotReady: \
         waypoint \"shop/missing\" is not ready)"
    ));
    assert_eq!(
        text(&r, t, "To do"),
        "Deploy waypoint shop/missing (or wait until it has an address), or fix the \
         istio.io/use-waypoint label that names it."
    );
}

#[test]
fn subjects_and_matches() {
    let index = shop(vec![
        authorization_policy("shop", "a").build(),
        authorization_policy("other", "b").build(),
    ]);
    assert_eq!(
        subjects(&index),
        ["AuthorizationPolicy other/b", "AuthorizationPolicy shop/a"]
    );
    assert!(matches(&index, "shop/a"));
    assert!(!matches(&index, "shop/b"));
    assert!(!matches(&index, "a"));
    assert_eq!(explain(&index, Some("shop/b")), "");
    // A namespace policy with no rules denies everything in its namespace.
    let r = explain(&index, Some("shop/a"));
    let t = "AuthorizationPolicy shop/a";
    assert_eq!(
        text(&r, t, "Kind"),
        "namespace policy (no selector: every workload in shop), action ALLOW"
    );
    assert!(text(&r, t, "To do").contains(
        "an ALLOW policy without rules allows nothing, so it denies all traffic to these 2 \
         workloads unless another ALLOW policy matches."
    ));
}
