//! `Index::pod_on_node`, the lookup behind the CA's impersonation check, as pods come, move and go.

use ambient_index::Index;
use ambient_index::model::{Kind, ObjectRef};
use ambient_index::testing::*;

#[test]
fn pod_on_node_follows_pods() {
    let mut index = Index::new(test_settings());
    assert!(!index.pod_on_node("n1", "ns", "web"));

    index.apply(pod("ns", "web-0").sa("web").node("n1").build());
    assert!(index.pod_on_node("n1", "ns", "web"));
    assert!(!index.pod_on_node("n2", "ns", "web"), "another node");
    assert!(
        !index.pod_on_node("n1", "other", "web"),
        "another namespace"
    );
    assert!(
        !index.pod_on_node("n1", "ns", "db"),
        "another service account"
    );

    // A second pod of the account keeps it on the node when the first moves away.
    index.apply(pod("ns", "web-1").sa("web").node("n1").build());
    index.apply(pod("ns", "web-0").sa("web").node("n2").build());
    assert!(index.pod_on_node("n1", "ns", "web"));
    assert!(index.pod_on_node("n2", "ns", "web"));

    index.delete(&ObjectRef::new(Kind::Pod, "ns", "web-1"));
    assert!(!index.pod_on_node("n1", "ns", "web"));
    assert!(index.pod_on_node("n2", "ns", "web"));
}

#[test]
fn unscheduled_pods_and_empty_names_match_nothing() {
    let mut index = Index::new(test_settings());
    index.apply(pod("ns", "pending").sa("web").build());
    index.apply(pod("ns", "no-sa").node("n1").build());
    assert!(!index.pod_on_node("", "ns", "web"));
    assert!(!index.pod_on_node("n1", "ns", ""));
}
