//! The index's outputs: one [`Table`] of encoded resources per resource family ([`TableId`]), each
//! resource with the generation at which it got its current content, and the names one operation
//! touched ([`NameChanges`], [`Changes`]).
//!
//! A table is what one xDS type serves: the xDS server reads resources and generations from it and
//! follows the [`Changes`] each operation reports. Encoding happens once, when the index stores a
//! resource; readers clone [`Resource`] handles (a shared name and a reference-counted body), or take the
//! whole table as one handle ([`Table::snapshot`]) when they send all of it.

use std::collections::{BTreeSet, HashMap};
use std::ops::Deref;
use std::sync::Arc;

use crate::resource::Resource;

/// The resource families the index computes; each is served as one xDS type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TableId {
    /// `istio.workload.Address`: workloads (by uid) and services (by `namespace/hostname`).
    Addresses,
    /// `istio.security.Authorization`: policies by `namespace/name`.
    Authorizations,
}

impl TableId {
    pub const ALL: [TableId; 2] = [TableId::Addresses, TableId::Authorizations];
}

/// The resources of a table at one moment, shared: see [`Table::snapshot`].
pub type Snapshot = Arc<HashMap<Arc<str>, Resource>>;

/// Resources by name, read like a map, plus the generation at which each got its current content.
#[derive(Debug, Default)]
pub struct Table {
    /// Copied on write while a snapshot of it is held, changed in place otherwise.
    resources: Snapshot,
    /// Absent: unchanged since the index was built (generation 0).
    generations: HashMap<Arc<str>, u64>,
}

impl Deref for Table {
    type Target = HashMap<Arc<str>, Resource>;

    fn deref(&self) -> &Self::Target {
        &self.resources
    }
}

/// Two tables are equal when they hold the same resources: generations say when content arrived, not
/// what it is (an index built afresh has the same table as one that got there change by change).
impl PartialEq for Table {
    fn eq(&self, other: &Table) -> bool {
        self.resources == other.resources
    }
}

impl Eq for Table {}

impl<'a> IntoIterator for &'a Table {
    type Item = (&'a Arc<str>, &'a Resource);
    type IntoIter = std::collections::hash_map::Iter<'a, Arc<str>, Resource>;

    fn into_iter(self) -> Self::IntoIter {
        self.resources.iter()
    }
}

impl FromIterator<Resource> for Table {
    /// A table holding `resources`, all at generation 0 (as after a build).
    fn from_iter<I: IntoIterator<Item = Resource>>(resources: I) -> Self {
        Table {
            resources: Arc::new(resources.into_iter().map(|r| (r.name.clone(), r)).collect()),
            generations: HashMap::new(),
        }
    }
}

impl Table {
    /// The whole table as it is now, as one handle: taking it costs one reference count, however many
    /// resources there are, and a later change of the table copies the map instead of changing the
    /// snapshot. For readers that send everything (a first response) without holding the index's lock.
    pub fn snapshot(&self) -> Snapshot {
        Arc::clone(&self.resources)
    }

    /// The generation at which `name` got its current content (0: since the index was built); `None`
    /// when there is no such resource.
    pub fn generation_of(&self, name: &str) -> Option<u64> {
        self.resources
            .contains_key(name)
            .then(|| self.generations.get(name).copied().unwrap_or(0))
    }

    /// Stores, replaces or (for `None`) removes one resource, encoding it once; a name whose bytes did not
    /// change is not reported. `record` is off while a full build runs (nobody reads its changes).
    pub(crate) fn store<M: prost::Message>(
        &mut self,
        changes: &mut NameChanges,
        record: bool,
        name: &str,
        value: Option<&M>,
    ) {
        let Some(value) = value else {
            if !self.resources.contains_key(name) {
                return;
            }
            if let Some((name, _)) = Arc::make_mut(&mut self.resources).remove_entry(name)
                && record
            {
                changes.mark_removed(&name);
            }
            return;
        };
        // Reuse the table's key so that the name is allocated once per resource, not once per version.
        let (name, new): (Arc<str>, bool) = match self.resources.get_key_value(name) {
            Some((k, _)) => (k.clone(), false),
            None => (Arc::from(name), true),
        };
        let res = Resource::encode(name.clone(), value);
        if self.resources.get(&name).is_some_and(|old| *old == res) {
            return;
        }
        Arc::make_mut(&mut self.resources).insert(name.clone(), res);
        if record {
            changes.mark_changed(&name, new);
        }
    }

    /// Records `generation` for every name `changes` touched.
    pub(crate) fn note_generation(&mut self, changes: &NameChanges, generation: u64) {
        for name in &changes.changed {
            self.generations.insert(name.clone(), generation);
        }
        for name in &changes.removed {
            self.generations.remove(name);
        }
    }

    /// What turns this table into `fresh`: names added or changed, and names gone.
    pub(crate) fn difference(&self, fresh: &Table) -> NameChanges {
        let mut out = NameChanges::default();
        for (name, res) in fresh.resources.iter() {
            match self.resources.get(name) {
                Some(old) if old == res => {}
                Some(_) => {
                    out.changed.insert(name.clone());
                }
                None => {
                    out.changed.insert(name.clone());
                    out.added.insert(name.clone());
                }
            }
        }
        for name in self.resources.keys() {
            if !fresh.resources.contains_key(name) {
                out.removed.insert(name.clone());
            }
        }
        out
    }

    /// Takes `fresh`'s resources, keeping this table's generations (unchanged names keep theirs; the
    /// caller notes the new generation of the changed ones).
    pub(crate) fn replace_resources(&mut self, fresh: Table) {
        self.resources = fresh.resources;
    }
}

/// Resource names touched by one operation, in one table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameChanges {
    /// Added or changed: send these.
    pub changed: BTreeSet<Arc<str>>,
    /// Gone: send these as `removed_resources`.
    pub removed: BTreeSet<Arc<str>>,
    /// The names of `changed` that did not exist before the operation. A reader that has not yet sent
    /// such a name and then sees it removed knows that its client never held it.
    pub added: BTreeSet<Arc<str>>,
}

impl NameChanges {
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.removed.is_empty()
    }

    /// `name` has new content; `new`: it did not exist before this step.
    pub(crate) fn mark_changed(&mut self, name: &Arc<str>, new: bool) {
        if self.removed.remove(name) {
            // Removed earlier in the same operation: it existed before, so it is not added.
        } else if new && !self.changed.contains(name) {
            self.added.insert(name.clone());
        }
        self.changed.insert(name.clone());
    }

    pub(crate) fn mark_removed(&mut self, name: &Arc<str>) {
        self.changed.remove(name);
        if !self.added.remove(name) {
            self.removed.insert(name.clone());
        }
    }

    /// Folds a later change set of the same table into this one.
    fn merge(&mut self, later: &NameChanges) {
        for n in &later.changed {
            self.mark_changed(n, later.added.contains(n));
        }
        for n in &later.removed {
            self.mark_removed(n);
        }
    }
}

/// What one `apply`/`delete`/`reset` (or a batch of them) changed, per table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub addresses: NameChanges,
    pub authorizations: NameChanges,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        TableId::ALL.iter().all(|t| self.of(*t).is_empty())
    }

    /// The names `table` had touched.
    pub fn of(&self, table: TableId) -> &NameChanges {
        match table {
            TableId::Addresses => &self.addresses,
            TableId::Authorizations => &self.authorizations,
        }
    }

    pub(crate) fn of_mut(&mut self, table: TableId) -> &mut NameChanges {
        match table {
            TableId::Addresses => &mut self.addresses,
            TableId::Authorizations => &mut self.authorizations,
        }
    }

    /// Folds a later change set into this one.
    pub fn merge(&mut self, later: Changes) {
        for table in TableId::ALL {
            self.of_mut(table).merge(later.of(table));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ambient_proto::workload::{Address, Workload, address};

    fn workload(uid: &str, name: &str) -> Address {
        Address {
            r#type: Some(address::Type::Workload(Workload {
                uid: uid.to_string(),
                name: name.to_string(),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn a_snapshot_keeps_what_the_table_held_and_later_changes_do_not_touch_it() {
        let mut table = Table::default();
        let mut changes = NameChanges::default();
        table.store(&mut changes, true, "a", Some(&workload("a", "one")));
        let before = table.snapshot();
        table.store(&mut changes, true, "a", Some(&workload("a", "two")));
        table.store(&mut changes, true, "b", Some(&workload("b", "b")));
        table.store::<Address>(&mut changes, true, "a", None);
        assert_eq!(
            before.keys().map(|k| &**k).collect::<Vec<_>>(),
            ["a"],
            "the snapshot is unchanged"
        );
        assert_eq!(
            before["a"].body,
            Resource::encode(Arc::from("a"), &workload("a", "one")).body
        );
        assert_eq!(table.keys().map(|k| &**k).collect::<Vec<_>>(), ["b"]);
        // Without a snapshot held, the table is changed in place (no copy).
        drop(before);
        let map = Arc::as_ptr(&table.resources);
        table.store(&mut changes, true, "c", Some(&workload("c", "c")));
        assert_eq!(Arc::as_ptr(&table.resources), map);
    }
}
