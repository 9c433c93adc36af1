//! The incremental-versus-fresh harness: an index fed one operation at a time, checked after every one
//! against two properties — the names it reported are exactly the resources whose content changed or
//! that were removed, and it equals an index built from scratch over the same objects.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::model::{Object, ObjectRef};
use crate::{Changes, Index, Resource, Settings};

use super::{
    decoded_addresses, decoded_authorizations, expected_changes, names, test_settings,
    test_system_namespace,
};

/// Names `(changed, removed)`, each sorted.
pub type Names = (Vec<String>, Vec<String>);

/// What one operation reported, per table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub addresses: Names,
    pub authorizations: Names,
}

/// An index together with the objects it was given, checked after every operation.
#[derive(Debug)]
pub struct Checked {
    pub settings: Settings,
    pub index: Index,
    pub objects: BTreeMap<ObjectRef, Object>,
}

type Tables = (HashMap<Arc<str>, Resource>, HashMap<Arc<str>, Resource>);

impl Checked {
    pub fn new(settings: Settings, objects: Vec<Object>) -> Checked {
        let objects: BTreeMap<ObjectRef, Object> =
            objects.into_iter().map(|o| (o.object_ref(), o)).collect();
        let index = Index::build(settings.clone(), objects.values().cloned());
        Checked {
            settings,
            index,
            objects,
        }
    }

    /// The unit-test environment ([`test_settings`], `istio-system` on `testnetwork`) plus `objects`.
    pub fn unit(objects: Vec<Object>) -> Checked {
        let mut all = vec![test_system_namespace()];
        all.extend(objects);
        Checked::new(test_settings(), all)
    }

    pub fn apply(&mut self, obj: Object) -> Step {
        let step = format!("apply {}", obj.object_ref());
        let before = self.tables();
        self.objects.insert(obj.object_ref(), obj.clone());
        let changes = self.index.apply(obj);
        self.check(&before, &changes, &step)
    }

    pub fn delete(&mut self, r: &ObjectRef) -> Step {
        let step = format!("delete {r}");
        let before = self.tables();
        self.objects.remove(r);
        let changes = self.index.delete(r);
        self.check(&before, &changes, &step)
    }

    /// An index built from scratch over the objects held now.
    pub fn fresh(&self) -> Index {
        Index::build(self.settings.clone(), self.objects.values().cloned())
    }

    fn tables(&self) -> Tables {
        (
            HashMap::clone(self.index.addresses()),
            HashMap::clone(self.index.authorizations()),
        )
    }

    /// Asserts both properties; returns the reported names.
    fn check(&self, before: &Tables, changes: &Changes, step: &str) -> Step {
        let reported = Step {
            addresses: names(&changes.addresses),
            authorizations: names(&changes.authorizations),
        };
        let expected = Step {
            addresses: expected_changes(&before.0, self.index.addresses()),
            authorizations: expected_changes(&before.1, self.index.authorizations()),
        };
        assert_eq!(reported, expected, "{step}: reported changes");
        assert_same(&self.index, &self.fresh(), step);
        reported
    }
}

/// `index` equals `fresh`: resources (content and version), policy status and conditions.
pub fn assert_same(index: &Index, fresh: &Index, step: &str) {
    assert_eq!(
        decoded_addresses(index),
        decoded_addresses(fresh),
        "{step}: addresses differ from a fresh build"
    );
    assert_eq!(
        decoded_authorizations(index),
        decoded_authorizations(fresh),
        "{step}: authorizations differ from a fresh build"
    );
    assert_eq!(
        index.addresses(),
        fresh.addresses(),
        "{step}: address versions differ from a fresh build"
    );
    assert_eq!(
        index.authorizations(),
        fresh.authorizations(),
        "{step}: authorization versions differ from a fresh build"
    );
    assert_eq!(
        index.policy_status(),
        fresh.policy_status(),
        "{step}: policy status differs from a fresh build"
    );
    assert_eq!(
        index.conditions(),
        fresh.conditions(),
        "{step}: conditions differ from a fresh build"
    );
}
