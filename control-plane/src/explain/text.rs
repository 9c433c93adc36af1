//! Text helpers: how conditions, workloads, labels, HTTP attributes, counts and lists read in the
//! report.

use std::collections::BTreeSet;

use ambient_index::Condition;
use ambient_index::model::Labels;
use ambient_index::views::WorkloadRef;

/// Workloads listed by name before the rest is counted.
const LISTED: usize = 10;

pub(super) fn condition_text(c: &Condition) -> String {
    let status = if c.status { "True" } else { "False" };
    if c.message.is_empty() {
        format!("{}={status}, reason {}.", c.type_, c.reason)
    } else {
        format!("{}={status}, reason {}: {}", c.type_, c.reason, c.message)
    }
}

/// `2 (both captured by ztunnel): a, b.` Names are pods, with their namespace when it is not `namespace`.
pub(super) fn workloads_text(workloads: &[WorkloadRef], namespace: &str) -> String {
    let n = workloads.len();
    let uncaptured = workloads.iter().filter(|w| !w.captured).count();
    let capture = match (n, uncaptured) {
        (1, 0) => "captured by ztunnel".to_string(),
        (1, _) => "not captured by ztunnel".to_string(),
        (2, 0) => "both captured by ztunnel".to_string(),
        (_, 0) => "all captured by ztunnel".to_string(),
        (_, k) if k == n => "none captured by ztunnel".to_string(),
        (_, k) => format!("{k} not captured by ztunnel"),
    };
    format!(
        "{} ({capture}): {}.",
        count(n, "workload", "workloads"),
        names_of(workloads, namespace)
    )
}

/// Pod names, the first [`LISTED`] of them, then how many more.
pub(super) fn names_of(workloads: &[WorkloadRef], namespace: &str) -> String {
    let names: Vec<String> = workloads
        .iter()
        .take(LISTED)
        .map(|w| pod_name(w, namespace))
        .collect();
    match workloads.len().saturating_sub(LISTED) {
        0 => names.join(", "),
        more => format!("{} and {more} more", names.join(", ")),
    }
}

pub(super) fn labels_text(labels: &Labels) -> String {
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.join(",")
}

pub(super) fn names_list(attrs: &BTreeSet<String>) -> String {
    let list: Vec<&str> = attrs.iter().map(String::as_str).collect();
    list.join(", ")
}

pub(super) fn http_list(attrs: &BTreeSet<String>) -> String {
    let list: Vec<&str> = attrs.iter().map(String::as_str).collect();
    format!(
        "HTTP {} {}",
        if list.len() == 1 {
            "attribute"
        } else {
            "attributes"
        },
        list.join(", ")
    )
}

pub(super) fn with_warnings(mut text: String, warnings: &[String]) -> String {
    for w in warnings {
        text.push_str(&format!("\nWarning: {w}"));
    }
    text
}

pub(super) fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `a`, `a and b`, `a, b and c`.
pub(super) fn join_and<S: AsRef<str>>(items: &[S]) -> String {
    match items {
        [] => String::new(),
        [one] => one.as_ref().to_string(),
        [rest @ .., last] => {
            let rest: Vec<&str> = rest.iter().map(AsRef::as_ref).collect();
            format!("{} and {}", rest.join(", "), last.as_ref())
        }
    }
}

/// A workload's pod name, with its namespace when it is not `namespace`.
fn pod_name(w: &WorkloadRef, namespace: &str) -> String {
    if w.pod.namespace == namespace {
        w.pod.name.clone()
    } else {
        format!("{}/{}", w.pod.namespace, w.pod.name)
    }
}
