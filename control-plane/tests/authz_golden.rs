//! Golden conversions of AuthorizationPolicies and PeerAuthentications
//! (docs/reference/istiod.md#authorizationpolicy-rule-conversion and the sections after it; upstream:
//! `TestConvertAuthorizationPolicyStatus` and `testdata/`, docs/reference/istiod.md#upstream-tests).
//!
//! Every `tests/golden/authz/<case>.in.yaml` is read through the file source and built into an index with
//! the default settings (root namespace `istio-system`). `<case>.out.json` holds what that index produces:
//!
//! - `authorizations`: every `istio.security.Authorization`, by resource name, in the protobuf JSON mapping;
//! - `policies`: per AuthorizationPolicy, the `ZtunnelAccepted` condition (`ztunnel`, null for waypoint
//!   policies), `enforcedBy`, the HTTP attributes found, the rules dropped and the warnings;
//! - `workloads` (only when the case has pods): each Workload's `authorization_policies`;
//! - `diagnostics` (only when the file source reported problems): `file:line: object: message`.
//!
//! `AMBIENTD_BLESS=1 cargo test --test authz_golden` rewrites the expected files; review every change by
//! hand against the reference before keeping it.
//!
//! The other tests feed broken policies through the file source, the index and `dump`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ambient_control_plane::dump;
use ambient_control_plane::source::files::FileSource;
use ambient_index::model::{Kind, Object, ObjectRef};
use ambient_index::testing::decoded_addresses;
use ambient_index::{Index, Settings};
use ambient_proto::workload::address;
use serde_json::{Map, Value, json};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/authz")
}

/// The `.in.yaml` files of the golden folder, sorted.
fn cases() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .expect("golden folder")
        .map(|e| e.expect("folder entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".in.yaml"))
        .collect();
    cases.sort();
    cases
}

fn case_name(input: &Path) -> String {
    let file = input.file_name().expect("file name").to_string_lossy();
    file.trim_end_matches(".in.yaml").to_string()
}

/// Everything a case's expected file holds, for an index and the diagnostics of its source.
fn render(index: &Index, diagnostics: &[String]) -> Value {
    let mut authorizations = Map::new();
    let mut names: Vec<_> = index.authorizations().keys().collect();
    names.sort();
    for name in names {
        let res = &index.authorizations()[name];
        let value = ambient_proto::json::authorization_to_json(&res.body)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        authorizations.insert(name.to_string(), value);
    }
    let mut policies = Map::new();
    for (obj, status) in index.policy_status() {
        policies.insert(
            obj.to_string(),
            serde_json::to_value(status).expect("status serializes"),
        );
    }
    let mut workloads = Map::new();
    for (name, addr) in decoded_addresses(index) {
        if let Some(address::Type::Workload(w)) = addr.r#type {
            workloads.insert(name, json!(w.authorization_policies));
        }
    }
    let mut out = json!({
        "authorizations": authorizations,
        "policies": policies,
    });
    if !workloads.is_empty() {
        out["workloads"] = Value::Object(workloads);
    }
    if !diagnostics.is_empty() {
        out["diagnostics"] = json!(diagnostics);
    }
    out
}

/// Loads one input file: its objects and its diagnostics, with locations relative to the golden folder.
fn load(input: &Path) -> (Vec<Object>, Vec<String>) {
    let (source, objects) = FileSource::open(input).expect("input file opens");
    let prefix = format!("{}/", golden_dir().display());
    let diagnostics = source
        .diagnostics()
        .iter()
        .map(|d| d.to_string().replace(&prefix, ""))
        .collect();
    (objects, diagnostics)
}

fn pretty(value: &Value) -> String {
    let mut s = serde_json::to_string_pretty(value).expect("json");
    s.push('\n');
    s
}

#[test]
fn golden_conversions() {
    let bless = std::env::var("AMBIENTD_BLESS").is_ok_and(|v| v == "1");
    let cases = cases();
    assert!(cases.len() >= 40, "golden cases missing: {}", cases.len());
    let mut failures = Vec::new();
    for input in &cases {
        let name = case_name(input);
        let (objects, diagnostics) = load(input);
        let index = Index::build(Settings::default(), objects.clone());
        let got = render(&index, &diagnostics);

        // Applying the same objects one at a time gives the same result as building them at once.
        let mut incremental = Index::new(Settings::default());
        for obj in objects {
            incremental.apply(obj);
        }
        assert_eq!(
            render(&incremental, &diagnostics),
            got,
            "{name}: incremental index differs from a fresh build"
        );

        let expected_path = input.with_file_name(format!("{name}.out.json"));
        if bless {
            std::fs::write(&expected_path, pretty(&got)).expect("write expected file");
            continue;
        }
        let expected: Value = match std::fs::read_to_string(&expected_path) {
            Ok(text) => serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display())),
            Err(e) => {
                failures.push(format!("{name}: {}: {e}", expected_path.display()));
                continue;
            }
        };
        if expected != got {
            failures.push(format!(
                "{name}: output differs from {}\n--- expected\n{}--- got\n{}",
                expected_path.display(),
                pretty(&expected),
                pretty(&got)
            ));
        }
    }
    // Every expected file belongs to an input.
    for entry in std::fs::read_dir(golden_dir()).expect("golden folder") {
        let path = entry.expect("folder entry").path();
        let file = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_string();
        if let Some(stem) = file.strip_suffix(".out.json")
            && !path.with_file_name(format!("{stem}.in.yaml")).exists()
        {
            failures.push(format!("{file}: no matching .in.yaml"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} golden cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

// ---- broken input -------------------------------------------------------------------------------

/// One file with a policy for each kind of mistake, and two good policies around them.
const BROKEN: &str = r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: good-before, namespace: ns1}
spec:
  selector: {matchLabels: {app: a}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/ns1/sa/client"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: bad-cidr, namespace: ns1}
spec:
  action: DENY
  rules:
  - from: [{source: {ipBlocks: ["10.0.0.0/33", "10.1.0.0/16", "not-an-ip"]}}]
    when:
    - key: destination.ip
      notValues: ["192.168.1.300"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: bad-port, namespace: ns1}
spec:
  rules:
  - to: [{operation: {ports: ["http", "8080", "70000"], notPorts: ["+81"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: bad-action, namespace: ns1}
spec:
  action: FOO
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: bad-selector-string, namespace: ns1}
spec:
  selector: {matchLabels: "x"}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: bad-selector-list, namespace: ns1}
spec:
  selector: [1]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: good-after, namespace: ns1}
spec:
  action: DENY
  rules:
  - to: [{operation: {ports: ["9000"]}}]
"#;

fn open_broken() -> (tempfile::TempDir, PathBuf, FileSource, Vec<Object>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("policies.yaml");
    std::fs::write(&path, BROKEN).expect("write");
    let (source, objects) = FileSource::open(&path).expect("open");
    (dir, path, source, objects)
}

fn status_of(index: &Index, name: &str) -> Value {
    let obj = ObjectRef::new(Kind::AuthorizationPolicy, "ns1", name);
    serde_json::to_value(
        index
            .policy_status()
            .get(&obj)
            .unwrap_or_else(|| panic!("no status for {obj}")),
    )
    .expect("json")
}

#[test]
fn malformed_selectors_are_parse_diagnostics_naming_the_policy_and_field() {
    let (_dir, path, source, objects) = open_broken();
    let diagnostics = source.diagnostics();
    let lines: Vec<String> = diagnostics.iter().map(|d| d.to_string()).collect();
    assert_eq!(diagnostics.len(), 2, "{lines:#?}");

    let string = &diagnostics[0];
    assert_eq!(string.location, format!("{}:34", path.display()));
    assert_eq!(string.object, "AuthorizationPolicy/ns1/bad-selector-string");
    assert!(
        string.message.starts_with("spec.selector.matchLabels: "),
        "{}",
        string.message
    );
    assert!(
        string.message.contains("invalid type"),
        "{}",
        string.message
    );

    let list = &diagnostics[1];
    assert_eq!(list.location, format!("{}:40", path.display()));
    assert_eq!(list.object, "AuthorizationPolicy/ns1/bad-selector-list");
    assert!(
        list.message.starts_with("spec.selector[0]: "),
        "{}",
        list.message
    );
    assert!(list.message.contains("invalid type"), "{}", list.message);
    assert!(
        lines[0].starts_with(&format!(
            "{}:34: AuthorizationPolicy/ns1/bad-selector-string: spec.selector.matchLabels: ",
            path.display()
        )),
        "{}",
        lines[0]
    );

    // The five policies that parse are all read.
    let mut names: Vec<String> = objects.iter().map(|o| o.object_ref().name).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "bad-action",
            "bad-cidr",
            "bad-port",
            "good-after",
            "good-before"
        ]
    );
}

#[test]
fn bad_values_are_warnings_naming_the_field_and_the_rest_converts() {
    let (_dir, _path, _source, objects) = open_broken();
    let index = Index::build(Settings::default(), objects);

    let mut names: Vec<String> = index
        .authorizations()
        .keys()
        .map(|n| n.to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "ns1/bad-cidr",
            "ns1/bad-port",
            "ns1/good-after",
            "ns1/good-before"
        ],
        "every policy but the one with an unknown action is sent"
    );

    let cidr = status_of(&index, "bad-cidr");
    assert_eq!(
        cidr["warnings"],
        json!([
            "spec.rules[0].from[0].source.ipBlocks: \"10.0.0.0/33\" is not an IP address or CIDR; ztunnel never sees it",
            "spec.rules[0].from[0].source.ipBlocks: \"not-an-ip\" is not an IP address or CIDR; ztunnel never sees it",
            "spec.rules[0].when[0].notValues: \"192.168.1.300\" is not an IP address or CIDR; ztunnel never sees it",
        ])
    );
    assert_eq!(cidr["ztunnel"]["reason"], "Accepted");
    assert_eq!(cidr["enforcedBy"], "ztunnel");

    let port = status_of(&index, "bad-port");
    assert_eq!(
        port["warnings"],
        json!([
            "spec.rules[0].to[0].operation.ports: \"http\" is not a port number; ztunnel never sees it",
            "spec.rules[0].to[0].operation.ports: \"70000\" is not a port number; ztunnel never sees it",
            "spec.rules[0].to[0].operation.notPorts: \"+81\" is not a port number; ztunnel never sees it",
        ])
    );
    let auth = ambient_proto::json::authorization_to_json(
        &index.authorization("ns1/bad-port").expect("sent").body,
    )
    .expect("json");
    assert_eq!(
        auth["rules"],
        json!([{"clauses": [{"matches": [{"destinationPorts": [8080]}]}]}]),
        "only the valid port reaches ztunnel"
    );

    let action = status_of(&index, "bad-action");
    assert_eq!(
        action["ztunnel"],
        json!({
            "type": "ZtunnelAccepted",
            "status": false,
            "reason": "InvalidValue",
            "message": "spec.action: unknown action \"FOO\" (expected ALLOW, DENY, AUDIT or CUSTOM)",
        })
    );
    assert!(index.authorization("ns1/bad-action").is_none());

    for good in ["good-before", "good-after"] {
        let s = status_of(&index, good);
        assert_eq!(s["warnings"], json!([]), "{good}");
        assert_eq!(s["ztunnel"]["reason"], "Accepted", "{good}");
    }
}

#[test]
fn dump_lists_parse_and_policy_diagnostics() {
    let (_dir, path, source, objects) = open_broken();
    let index = Index::build(Settings::default(), objects);
    let doc = dump::dump(&index, &source.diagnostics()).expect("dump");
    let diagnostics = doc["diagnostics"].as_array().expect("diagnostics list");

    let by_object: BTreeMap<String, &Value> = diagnostics
        .iter()
        .map(|d| (d["object"].as_str().expect("object").to_string(), d))
        .collect();
    assert_eq!(
        by_object.keys().cloned().collect::<Vec<_>>(),
        [
            "AuthorizationPolicy/ns1/bad-action",
            "AuthorizationPolicy/ns1/bad-cidr",
            "AuthorizationPolicy/ns1/bad-port",
            "AuthorizationPolicy/ns1/bad-selector-list",
            "AuthorizationPolicy/ns1/bad-selector-string",
            "AuthorizationPolicy/ns1/good-after",
            "AuthorizationPolicy/ns1/good-before",
        ]
    );
    let parse = by_object["AuthorizationPolicy/ns1/bad-selector-string"];
    assert_eq!(parse["type"], "Parse");
    assert_eq!(parse["reason"], "InvalidDocument");
    assert_eq!(parse["location"], format!("{}:34", path.display()));
    assert!(
        parse["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("spec.selector.matchLabels: ")),
        "{parse}"
    );
    let list = by_object["AuthorizationPolicy/ns1/bad-selector-list"];
    assert_eq!(list["type"], "Parse");
    assert_eq!(list["location"], format!("{}:40", path.display()));

    let action = by_object["AuthorizationPolicy/ns1/bad-action"];
    assert_eq!(action["type"], "ZtunnelAccepted");
    assert_eq!(action["status"], "False");
    assert_eq!(action["reason"], "InvalidValue");
    assert_eq!(action["enforcedBy"], "nothing (needs a waypoint)");

    let cidr = by_object["AuthorizationPolicy/ns1/bad-cidr"];
    assert_eq!(cidr["status"], "True");
    assert_eq!(cidr["warnings"].as_array().map(Vec::len), Some(3));
    let port = by_object["AuthorizationPolicy/ns1/bad-port"];
    assert_eq!(port["warnings"].as_array().map(Vec::len), Some(3));
    let good = by_object["AuthorizationPolicy/ns1/good-after"];
    assert!(good.get("warnings").is_none(), "{good}");

    let auths = doc["authorizations"].as_object().expect("authorizations");
    assert_eq!(
        auths.keys().cloned().collect::<Vec<_>>(),
        [
            "ns1/bad-cidr",
            "ns1/bad-port",
            "ns1/good-after",
            "ns1/good-before"
        ]
    );
}

#[test]
fn a_selector_that_breaks_later_keeps_the_last_good_policy() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("p.yaml");
    let good = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: ns1}\nspec:\n  selector: {matchLabels: {app: a}}\n";
    std::fs::write(&path, good).expect("write");
    let (mut source, objects) = FileSource::open(&path).expect("open");
    let mut index = Index::build(Settings::default(), objects);
    assert!(index.authorization("ns1/p").is_some());

    std::fs::write(&path, good.replace("{matchLabels: {app: a}}", "[1]")).expect("write");
    for event in source.reload_path(&path) {
        match event {
            ambient_control_plane::source::Event::Apply(o) => {
                index.apply(o);
            }
            ambient_control_plane::source::Event::Delete(r) => {
                index.delete(&r);
            }
            ambient_control_plane::source::Event::Reset(all) => {
                index.reset(all);
            }
        }
    }
    assert!(
        index.authorization("ns1/p").is_some(),
        "the policy last read is kept"
    );
    let diagnostics = source.diagnostics();
    assert_eq!(diagnostics.len(), 1);
    assert_eq!(diagnostics[0].object, "AuthorizationPolicy/ns1/p");
    assert!(
        diagnostics[0].message.starts_with("spec.selector[0]: "),
        "{}",
        diagnostics[0].message
    );
}
