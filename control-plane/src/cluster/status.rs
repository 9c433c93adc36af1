//! Writing the index's conditions back to the cluster, as istiod does: `ZtunnelAccepted` on
//! AuthorizationPolicies ([`Index::policy_status`]) and `istio.io/WaypointBound` on Services
//! ([`Index::conditions`]), through server-side apply on the status subresource (field manager
//! [`FIELD_MANAGER`]). Only the Lease holder writes ([`super::leader`]).
//!
//! The Kubernetes source records what each object's status currently says ([`StatusObservations`]);
//! after every batch the index applies, [`plan`] compares that with what the index computed and yields
//! a write only where they differ (type, status, reason, message or `observedGeneration`), so a
//! steady cluster costs no writes and a write's own echo causes none. `lastTransitionTime` is kept while
//! the status (`True`/`False`) stays the same.
//!
//! Which objects: every Service (a Service without a condition has ours removed); AuthorizationPolicies
//! the index holds (so policies of another revision are left alone); a waypoint policy, which ztunnel
//! does not receive, has no `ZtunnelAccepted`. On a Service the conditions list is a map keyed by type, so
//! the apply owns only our entry; an AuthorizationPolicy's status has no schema, so its list is written
//! whole, keeping the other conditions as they were observed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ::kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use ambient_index::model::{Kind, ObjectRef};
use ambient_index::waypoints::CONDITION_TYPE as WAYPOINT_BOUND;
use ambient_index::{Condition, Index};

use crate::shared_index::SharedIndex;
use crate::source::kube::watched;
use crate::source::kube::{ObservedStatus, StatusObservations};

/// The field manager of every status write.
pub const FIELD_MANAGER: &str = "ambientd";

/// The kinds whose status ambientd writes.
pub const STATUS_KINDS: [Kind; 2] = [Kind::Service, Kind::AuthorizationPolicy];

/// At most this many status writes are in flight at once.
const CONCURRENT_WRITES: usize = 8;

/// After a failed write, the next attempt comes this much later (unless a change comes first).
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// Changes arriving this close together make one pass (and an object's events in flight reach the index
/// before its observed status is compared with it).
const SETTLE: Duration = Duration::from_millis(50);

/// The condition an object should carry (or `None`: ours should be absent), with the generation it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub condition: Option<Condition>,
    pub generation: Option<i64>,
}

/// One status write: the object and the server-side apply body for its status subresource.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusWrite {
    pub object: ObjectRef,
    pub wanted: Wanted,
    /// The observation this write answers ([`ObservedStatus::seq`]).
    pub seq: u64,
    pub patch: Value,
}

/// The writes that bring the observed statuses to what `index` computed. `written` holds, per object,
/// what was last written and the observation it answered: an object whose observation has not changed
/// since is skipped (its echo is on its way). `now` is the RFC 3339 time for new transitions.
pub fn plan(
    index: &Index,
    observed: &[(ObjectRef, ObservedStatus)],
    written: &HashMap<ObjectRef, (Wanted, u64)>,
    now: &str,
) -> Vec<StatusWrite> {
    let mut writes = Vec::new();
    for (object, seen) in observed {
        let condition = match object.kind {
            // A Service the index does not hold yet (its event is on the way) is left for later.
            Kind::Service if index.service(&object.namespace, &object.name).is_none() => continue,
            Kind::Service => index
                .conditions()
                .get(object)
                .filter(|c| c.type_ == WAYPOINT_BOUND)
                .cloned(),
            Kind::AuthorizationPolicy => match index.policy_status().get(object) {
                Some(status) => status.ztunnel.clone(),
                // Not ours (another revision), or not readable: leave its status alone.
                None => continue,
            },
            _ => continue,
        };
        let wanted = Wanted {
            condition,
            generation: seen.generation,
        };
        if matches(&wanted, seen.condition.as_ref()) {
            continue;
        }
        if written
            .get(object)
            .is_some_and(|(w, seq)| *w == wanted && *seq == seen.seq)
        {
            continue;
        }
        let patch = apply_body(object, &wanted, seen, now);
        writes.push(StatusWrite {
            object: object.clone(),
            wanted,
            seq: seen.seq,
            patch,
        });
    }
    writes.sort_by(|a, b| a.object.cmp(&b.object));
    writes
}

fn status_word(status: bool) -> &'static str {
    if status { "True" } else { "False" }
}

/// Whether the observed condition already says what is wanted.
fn matches(wanted: &Wanted, seen: Option<&Value>) -> bool {
    let (want, seen) = match (&wanted.condition, seen) {
        (None, None) => return true,
        (Some(want), Some(seen)) => (want, seen),
        _ => return false,
    };
    let text = |k: &str| seen.get(k).and_then(Value::as_str);
    let generation = match seen.get("observedGeneration") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    text("status") == Some(status_word(want.status))
        && text("reason") == Some(want.reason.as_str())
        && text("message") == Some(want.message.as_str())
        && generation == wanted.generation
}

/// The server-side apply body: the object's identity and `status.conditions`.
fn apply_body(object: &ObjectRef, wanted: &Wanted, seen: &ObservedStatus, now: &str) -> Value {
    let w = watched(object.kind);
    let mut conditions: Vec<Value> = match object.kind {
        // A schemaless list is replaced whole: keep what others wrote.
        Kind::AuthorizationPolicy => seen.others.clone(),
        _ => Vec::new(),
    };
    if let Some(c) = &wanted.condition {
        let status = status_word(c.status);
        let since = seen
            .condition
            .as_ref()
            .filter(|old| old.get("status").and_then(Value::as_str) == Some(status))
            .and_then(|old| old.get("lastTransitionTime").and_then(Value::as_str))
            .unwrap_or(now);
        let mut condition = json!({
            "type": c.type_,
            "status": status,
            "reason": c.reason,
            "message": c.message,
            "lastTransitionTime": since,
        });
        if let (Some(generation), Some(map)) = (wanted.generation, condition.as_object_mut()) {
            map.insert("observedGeneration".to_string(), json!(generation));
        }
        conditions.push(condition);
    }
    json!({
        "apiVersion": w.api_version(),
        "kind": object.kind.as_str(),
        "metadata": { "name": object.name, "namespace": object.namespace },
        "status": { "conditions": conditions },
    })
}

/// Writes status while `leader` says this replica holds the Lease: a pass after every change of `applied`
/// (the count of batches the index applied; nothing happens before the first), after gaining the Lease,
/// and again after a failed write.
pub async fn run(
    client: ::kube::Client,
    index: Arc<SharedIndex>,
    observations: StatusObservations,
    mut leader: watch::Receiver<bool>,
    mut applied: watch::Receiver<u64>,
) {
    let mut written: HashMap<ObjectRef, (Wanted, u64)> = HashMap::new();
    // Until the first sync is applied the index is empty and would ask to remove every condition.
    if applied.wait_for(|n| *n >= 1).await.is_err() {
        return;
    }
    loop {
        if !*leader.borrow_and_update() {
            written.clear();
            if leader.wait_for(|l| *l).await.is_err() {
                return;
            }
            info!("writing status as the lease holder");
        }
        applied.borrow_and_update();
        let writes = {
            let Some(observed) = observations.snapshot() else {
                warn!(
                    "the observed statuses were interrupted by an internal error and may be wrong: \
                     status is no longer written; restart ambientd to write it again"
                );
                return;
            };
            // Forget what was written to objects that are gone.
            let present: std::collections::HashSet<&ObjectRef> =
                observed.iter().map(|(r, _)| r).collect();
            written.retain(|r, _| present.contains(r));
            let Ok(index) = index.read() else {
                // The server is stopping on a failed index: nothing more to write.
                return;
            };
            plan(
                &index,
                &observed,
                &written,
                &ambient_ca::rfc3339::format(std::time::SystemTime::now()),
            )
        };
        let failed = write_all(&client, writes, &mut written, &leader).await;
        let retry = async {
            if failed {
                tokio::time::sleep(RETRY_AFTER).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            changed = applied.changed() => if changed.is_err() { return },
            changed = leader.changed() => if changed.is_err() { return },
            () = retry => {}
        }
        tokio::time::sleep(SETTLE).await;
    }
}

/// Performs the writes, at most [`CONCURRENT_WRITES`] at a time; returns whether any failed. Stops
/// starting new writes when the Lease is lost.
async fn write_all(
    client: &::kube::Client,
    writes: Vec<StatusWrite>,
    written: &mut HashMap<ObjectRef, (Wanted, u64)>,
    leader: &watch::Receiver<bool>,
) -> bool {
    if writes.is_empty() {
        return false;
    }
    debug!(count = writes.len(), "writing status");
    let mut failed = false;
    let mut pending = writes.into_iter();
    let mut running = JoinSet::new();
    loop {
        while running.len() < CONCURRENT_WRITES && *leader.borrow() {
            let Some(write) = pending.next() else { break };
            let client = client.clone();
            running.spawn(async move {
                let result = write_one(client, &write).await;
                (write, result)
            });
        }
        let Some(done) = running.join_next().await else {
            break;
        };
        let Ok((write, result)) = done else { continue };
        match result {
            Ok(()) => {
                written.insert(write.object, (write.wanted, write.seq));
            }
            Err(e) if crate::api_errors::is_not_found(&e) => {
                debug!(object = %write.object, "object gone before its status was written");
            }
            Err(e) => {
                failed = true;
                warn!(object = %write.object, "cannot write status: {e}; retrying");
            }
        }
    }
    failed
}

async fn write_one(client: ::kube::Client, write: &StatusWrite) -> Result<(), ::kube::Error> {
    let resource = watched(write.object.kind).api_resource();
    let api: Api<DynamicObject> = Api::namespaced_with(client, &write.object.namespace, &resource);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch_status(&write.object.name, &params, &Patch::Apply(&write.patch))
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ambient_index::Settings;
    use ambient_index::model::{AuthorizationPolicy, Object};
    use ambient_index::testing::{namespace, service};

    const NOW: &str = "2025-11-24T16:00:00Z";

    fn policy(ns: &str, name: &str, action: &str) -> Object {
        let value = json!({
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"action": action, "rules": [{"from": [{"source": {"namespaces": ["a"]}}]}]},
        });
        Object::AuthorizationPolicy(Box::new(AuthorizationPolicy::from_value(value).unwrap()))
    }

    fn index() -> Index {
        let svc = service("shop", "cart")
            .cluster_ip("10.96.0.10")
            .port("http", 80, 8080)
            .label(ambient_index::model::well_known::USE_WAYPOINT, "missing")
            .build();
        Index::build(
            Settings::default(),
            [
                namespace("shop").build(),
                svc,
                service("shop", "plain").cluster_ip("10.96.0.11").build(),
                policy("shop", "allow-a", "ALLOW"),
            ],
        )
    }

    fn observed(
        kind: Kind,
        name: &str,
        status: Option<Value>,
        seq: u64,
    ) -> (ObjectRef, ObservedStatus) {
        let obs = StatusObservations::default();
        let r = ObjectRef::new(kind, "shop", name);
        obs.observe(r.clone(), status.as_ref(), Some(2));
        let mut s = obs.get(&r).unwrap();
        s.seq = seq;
        (r, s)
    }

    #[test]
    fn a_missing_condition_is_written_with_its_generation() {
        let index = index();
        let seen = vec![
            observed(Kind::Service, "cart", None, 1),
            observed(Kind::Service, "plain", None, 2),
            observed(
                Kind::AuthorizationPolicy,
                "allow-a",
                Some(json!({"conditions": [
                    {"type": "WaypointAccepted", "status": "False", "reason": "NoWaypoint", "message": "x"}
                ]})),
                3,
            ),
        ];
        let writes = plan(&index, &seen, &HashMap::new(), NOW);
        let bodies: Vec<(String, Value)> = writes
            .iter()
            .map(|w| (w.object.to_string(), w.patch.clone()))
            .collect();
        let service_condition =
            index.conditions()[&ObjectRef::new(Kind::Service, "shop", "cart")].clone();
        assert_eq!(
            bodies,
            vec![
                (
                    "Service/shop/cart".to_string(),
                    json!({
                        "apiVersion": "v1", "kind": "Service",
                        "metadata": {"name": "cart", "namespace": "shop"},
                        "status": {"conditions": [{
                            "type": "istio.io/WaypointBound", "status": "False",
                            "reason": service_condition.reason, "message": service_condition.message,
                            "lastTransitionTime": NOW, "observedGeneration": 2,
                        }]},
                    })
                ),
                (
                    "AuthorizationPolicy/shop/allow-a".to_string(),
                    json!({
                        "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                        "metadata": {"name": "allow-a", "namespace": "shop"},
                        "status": {"conditions": [
                            {"type": "WaypointAccepted", "status": "False", "reason": "NoWaypoint", "message": "x"},
                            {"type": "ZtunnelAccepted", "status": "True", "reason": "Accepted",
                             "message": "attached to ztunnel", "lastTransitionTime": NOW, "observedGeneration": 2},
                        ]},
                    })
                ),
            ]
        );
    }

    #[test]
    fn an_equal_condition_is_not_written_and_a_stale_one_keeps_its_transition_time() {
        let index = index();
        let accepted = |generation: i64| {
            json!({"conditions": [{"type": "ZtunnelAccepted", "status": "True", "reason": "Accepted",
                "message": "attached to ztunnel", "lastTransitionTime": "2020-01-01T00:00:00Z",
                "observedGeneration": generation}]})
        };
        let same = vec![observed(
            Kind::AuthorizationPolicy,
            "allow-a",
            Some(accepted(2)),
            1,
        )];
        assert_eq!(plan(&index, &same, &HashMap::new(), NOW), vec![]);

        let older = vec![observed(
            Kind::AuthorizationPolicy,
            "allow-a",
            Some(accepted(1)),
            1,
        )];
        let writes = plan(&index, &older, &HashMap::new(), NOW);
        assert_eq!(writes.len(), 1);
        assert_eq!(
            writes[0].patch["status"]["conditions"][0]["lastTransitionTime"],
            json!("2020-01-01T00:00:00Z")
        );
        assert_eq!(
            writes[0].patch["status"]["conditions"][0]["observedGeneration"],
            json!(2)
        );

        // Written, echo not yet observed: not written again.
        let written = HashMap::from([(writes[0].object.clone(), (writes[0].wanted.clone(), 1))]);
        assert_eq!(plan(&index, &older, &written, NOW), vec![]);
        // Someone else changed it since: written again.
        let overwritten = vec![observed(
            Kind::AuthorizationPolicy,
            "allow-a",
            Some(accepted(1)),
            7,
        )];
        assert_eq!(plan(&index, &overwritten, &written, NOW).len(), 1);
    }

    #[test]
    fn a_condition_the_index_no_longer_computes_is_removed() {
        let index = index();
        let stale = json!({"conditions": [{"type": "istio.io/WaypointBound", "status": "True",
            "reason": "WaypointAccepted", "message": "old", "lastTransitionTime": NOW}]});
        let seen = vec![observed(Kind::Service, "plain", Some(stale), 4)];
        let writes = plan(&index, &seen, &HashMap::new(), NOW);
        assert_eq!(writes.len(), 1);
        assert_eq!(writes[0].patch["status"], json!({"conditions": []}));
        assert_eq!(writes[0].wanted.condition, None);
    }

    #[test]
    fn policies_the_index_does_not_hold_are_left_alone() {
        let index = index();
        let seen = vec![observed(
            Kind::AuthorizationPolicy,
            "other-revision",
            None,
            1,
        )];
        assert_eq!(plan(&index, &seen, &HashMap::new(), NOW), vec![]);
    }
}
