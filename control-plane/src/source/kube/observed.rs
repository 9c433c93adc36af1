//! The status conditions the Kubernetes source sees on the objects whose status ambientd writes
//! (`ZtunnelAccepted` on AuthorizationPolicies, `istio.io/WaypointBound` on Services): recorded here as
//! objects arrive, with their `metadata.generation`, and read by the status writer
//! ([`crate::cluster::status`]) to decide what to write. The source strips these statuses before
//! parsing, so the index never sees them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use ambient_index::authorization::ZTUNNEL_ACCEPTED;
use ambient_index::model::{Kind, ObjectRef};
use ambient_index::waypoints::CONDITION_TYPE as WAYPOINT_BOUND;
use serde_json::Value;

/// The condition type ambientd owns on `kind`, if it writes that kind's status.
pub fn condition_type(kind: Kind) -> Option<&'static str> {
    match kind {
        Kind::Service => Some(WAYPOINT_BOUND),
        Kind::AuthorizationPolicy => Some(ZTUNNEL_ACCEPTED),
        _ => None,
    }
}

/// What the cluster holds of one object's status, as last seen by the source.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedStatus {
    /// `metadata.generation`, written as the condition's `observedGeneration`.
    pub generation: Option<i64>,
    /// The condition of our type, as found.
    pub condition: Option<Value>,
    /// The other conditions (kept when an AuthorizationPolicy's list is written).
    pub others: Vec<Value>,
    /// Increases with every observation, so a writer can tell whether it saw its own write's echo yet.
    pub seq: u64,
}

/// The statuses the source observed, by object; shared between the source and the status writer.
///
/// Should a panic ever interrupt an update, the observations may be wrong, and a write computed from
/// them could undo someone else's condition: from then on nothing is recorded and
/// [`StatusObservations::snapshot`] answers `None`, so the writer stops.
#[derive(Debug, Clone, Default)]
pub struct StatusObservations(Arc<Mutex<Observations>>);

#[derive(Debug, Default)]
struct Observations {
    seq: u64,
    objects: HashMap<ObjectRef, ObservedStatus>,
}

impl StatusObservations {
    fn lock(&self) -> Option<MutexGuard<'_, Observations>> {
        self.0.lock().ok()
    }

    /// Records an object's `status` (the raw JSON, if any) and generation. Kinds whose status is not
    /// written are ignored.
    pub fn observe(&self, object: ObjectRef, status: Option<&Value>, generation: Option<i64>) {
        let Some(ours) = condition_type(object.kind) else {
            return;
        };
        let mut condition = None;
        let mut others = Vec::new();
        let conditions = status
            .and_then(|s| s.get("conditions"))
            .and_then(Value::as_array);
        for c in conditions.into_iter().flatten() {
            if c.get("type").and_then(Value::as_str) == Some(ours) {
                condition = Some(c.clone());
            } else {
                others.push(c.clone());
            }
        }
        let Some(mut inner) = self.lock() else {
            return;
        };
        inner.seq += 1;
        let seq = inner.seq;
        inner.objects.insert(
            object,
            ObservedStatus {
                generation,
                condition,
                others,
                seq,
            },
        );
    }

    /// Forgets a deleted object.
    pub fn forget(&self, object: &ObjectRef) {
        if let Some(mut inner) = self.lock() {
            inner.objects.remove(object);
        }
    }

    /// A copy of every observation; `None` when they can no longer be trusted (see the type).
    pub fn snapshot(&self) -> Option<Vec<(ObjectRef, ObservedStatus)>> {
        let inner = self.lock()?;
        Some(
            inner
                .objects
                .iter()
                .map(|(r, s)| (r.clone(), s.clone()))
                .collect(),
        )
    }

    /// The observation of one object.
    pub fn get(&self, object: &ObjectRef) -> Option<ObservedStatus> {
        self.lock()?.objects.get(object).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn our_condition_is_kept_apart_from_the_others_and_other_kinds_are_ignored() {
        let obs = StatusObservations::default();
        let policy = ObjectRef::new(Kind::AuthorizationPolicy, "shop", "allow");
        let status = json!({"conditions": [
            {"type": "Other", "status": "True"},
            {"type": ZTUNNEL_ACCEPTED, "status": "False"},
        ]});
        obs.observe(policy.clone(), Some(&status), Some(3));
        obs.observe(ObjectRef::new(Kind::Pod, "shop", "p"), Some(&status), None);
        assert_eq!(
            obs.snapshot(),
            Some(vec![(
                policy.clone(),
                ObservedStatus {
                    generation: Some(3),
                    condition: Some(json!({"type": ZTUNNEL_ACCEPTED, "status": "False"})),
                    others: vec![json!({"type": "Other", "status": "True"})],
                    seq: 1,
                }
            )])
        );
        obs.forget(&policy);
        assert_eq!(obs.snapshot(), Some(vec![]));
    }

    #[test]
    fn observations_interrupted_by_a_panic_are_no_longer_given_out() {
        let obs = StatusObservations::default();
        let service = ObjectRef::new(Kind::Service, "shop", "cart");
        obs.observe(service.clone(), None, Some(1));
        let held = obs.clone();
        let _ = std::thread::spawn(move || {
            let _guard = held.0.lock();
            panic!("interrupted while recording");
        })
        .join();
        assert_eq!(obs.snapshot(), None);
        assert_eq!(obs.get(&service), None);
        obs.observe(service, None, Some(2));
        assert_eq!(obs.snapshot(), None);
    }
}
