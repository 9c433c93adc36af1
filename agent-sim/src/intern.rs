//! Process-wide interning of xDS resource names, versions and the few other strings that many
//! simulated ztunnels hold at once (node names, SPIFFE identities).
//!
//! A thousand simulated ztunnels that each hold the same eleven thousand names must not hold eleven
//! million strings: every client keeps `u32` ids instead, and the strings live once here. Ids are
//! dense, never reused and never freed (a long run with heavy churn grows the tables by the names it
//! has seen, not by the number of clients). Lookups are sharded so that clients on different threads
//! rarely touch the same lock.

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use xxhash_rust::xxh64::Xxh64Builder;

/// The two resource types ztunnel subscribes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum XdsKind {
    /// `istio.workload.Address` (Workload or Service).
    Address,
    /// `istio.security.Authorization`.
    Authorization,
}

impl XdsKind {
    /// Address first, then Authorization: the order ztunnel subscribes in.
    pub const ALL: [XdsKind; 2] = [XdsKind::Address, XdsKind::Authorization];

    pub fn type_url(self) -> &'static str {
        match self {
            XdsKind::Address => ambient_proto::ADDRESS_TYPE_URL,
            XdsKind::Authorization => ambient_proto::AUTHORIZATION_TYPE_URL,
        }
    }

    /// The kind a response's `type_url` names; `None` for any other type (ztunnel ACKs those).
    pub fn from_type_url(type_url: &str) -> Option<XdsKind> {
        match type_url {
            ambient_proto::ADDRESS_TYPE_URL => Some(XdsKind::Address),
            ambient_proto::AUTHORIZATION_TYPE_URL => Some(XdsKind::Authorization),
            _ => None,
        }
    }

    /// `address` or `authorization`, for output.
    pub fn as_str(self) -> &'static str {
        match self {
            XdsKind::Address => "address",
            XdsKind::Authorization => "authorization",
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            XdsKind::Address => 0,
            XdsKind::Authorization => 1,
        }
    }
}

impl fmt::Display for XdsKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A resource name of one [`XdsKind`], interned process-wide ([`NameId::of`], [`NameId::name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NameId(pub(crate) u32);

impl NameId {
    /// The id of `name` among `kind`'s names (interned if new).
    pub fn of(kind: XdsKind, name: &str) -> NameId {
        NameId(names(kind).intern(name))
    }

    /// The id of `name` if some client has seen it (or it was asked for) already.
    pub fn lookup(kind: XdsKind, name: &str) -> Option<NameId> {
        names(kind).lookup(name).map(NameId)
    }

    /// The name itself.
    pub fn name(self, kind: XdsKind) -> Arc<str> {
        names(kind).resolve(self.0)
    }
}

/// An interned resource version (shared by both kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VersionId(pub(crate) u32);

impl VersionId {
    pub fn of(version: &str) -> VersionId {
        VersionId(versions().intern(version))
    }

    pub fn version(self) -> Arc<str> {
        versions().resolve(self.0)
    }
}

/// An interned string of any other sort (node names and identities of workload certificates).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StrId(pub(crate) u32);

impl StrId {
    pub fn of(s: &str) -> StrId {
        StrId(strings().intern(s))
    }

    pub fn get(self) -> Arc<str> {
        strings().resolve(self.0)
    }
}

const SHARDS: usize = 16;

/// A sharded, append-only string interner handing out dense `u32` ids.
pub(crate) struct Interner {
    hasher: Xxh64Builder,
    shards: [RwLock<HashMap<Arc<str>, u32, Xxh64Builder>>; SHARDS],
    strings: RwLock<Vec<Arc<str>>>,
}

impl fmt::Debug for Interner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Interner")
            .field("len", &self.len())
            .finish()
    }
}

impl Interner {
    pub(crate) fn new() -> Interner {
        Interner {
            hasher: Xxh64Builder::new(0x5eed),
            shards: std::array::from_fn(|_| {
                RwLock::new(HashMap::with_hasher(Xxh64Builder::new(1)))
            }),
            strings: RwLock::new(Vec::new()),
        }
    }

    fn shard(&self, s: &str) -> &RwLock<HashMap<Arc<str>, u32, Xxh64Builder>> {
        let h = self.hasher.hash_one(s);
        &self.shards[(h as usize) % SHARDS]
    }

    pub(crate) fn lookup(&self, s: &str) -> Option<u32> {
        self.shard(s)
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(s)
            .copied()
    }

    pub(crate) fn intern(&self, s: &str) -> u32 {
        let shard = self.shard(s);
        if let Some(id) = shard.read().unwrap_or_else(PoisonError::into_inner).get(s) {
            return *id;
        }
        let mut map = shard.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(id) = map.get(s) {
            return *id;
        }
        let arc: Arc<str> = Arc::from(s);
        let id = {
            let mut strings = self.strings.write().unwrap_or_else(PoisonError::into_inner);
            strings.push(Arc::clone(&arc));
            // More than four billion distinct strings is far beyond what a simulation holds.
            u32::try_from(strings.len() - 1).unwrap_or(u32::MAX)
        };
        map.insert(arc, id);
        id
    }

    /// The string of `id`; ids only come from [`Interner::intern`], so it exists.
    pub(crate) fn resolve(&self, id: u32) -> Arc<str> {
        self.strings
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id as usize)
            .cloned()
            .unwrap_or_else(|| Arc::from(""))
    }

    /// Resolves many ids under one lock.
    pub(crate) fn resolve_many(&self, ids: impl IntoIterator<Item = u32>) -> Vec<Arc<str>> {
        let strings = self.strings.read().unwrap_or_else(PoisonError::into_inner);
        ids.into_iter()
            .map(|id| {
                strings
                    .get(id as usize)
                    .cloned()
                    .unwrap_or_else(|| Arc::from(""))
            })
            .collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.strings
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

static NAMES: OnceLock<[Interner; 2]> = OnceLock::new();
static VERSIONS: OnceLock<Interner> = OnceLock::new();
static STRINGS: OnceLock<Interner> = OnceLock::new();

pub(crate) fn names(kind: XdsKind) -> &'static Interner {
    &NAMES.get_or_init(|| [Interner::new(), Interner::new()])[kind.index()]
}

pub(crate) fn versions() -> &'static Interner {
    VERSIONS.get_or_init(Interner::new)
}

pub(crate) fn strings() -> &'static Interner {
    STRINGS.get_or_init(Interner::new)
}

/// Resolves names of one kind under one lock (for output and for `initial_resource_versions`).
pub fn resolve_names(kind: XdsKind, ids: &[NameId]) -> Vec<Arc<str>> {
    names(kind).resolve_many(ids.iter().map(|id| id.0))
}

/// How many distinct names, versions and other strings this process has interned.
pub fn interned_counts() -> (usize, usize, usize, usize) {
    (
        names(XdsKind::Address).len(),
        names(XdsKind::Authorization).len(),
        versions().len(),
        strings().len(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_resolve_back() {
        let interner = Interner::new();
        let a = interner.intern("ns/a");
        let b = interner.intern("ns/b");
        assert_ne!(a, b);
        assert_eq!(interner.intern("ns/a"), a);
        assert_eq!(interner.lookup("ns/b"), Some(b));
        assert_eq!(interner.lookup("ns/c"), None);
        assert_eq!(&*interner.resolve(a), "ns/a");
        assert_eq!(
            interner
                .resolve_many([b, a])
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
            ["ns/b", "ns/a"]
        );
        assert_eq!(interner.len(), 2);
    }

    #[test]
    fn kinds_have_separate_names() {
        let a = NameId::of(XdsKind::Address, "intern-test/same");
        let z = NameId::of(XdsKind::Authorization, "intern-test/same");
        assert_eq!(&*a.name(XdsKind::Address), "intern-test/same");
        assert_eq!(&*z.name(XdsKind::Authorization), "intern-test/same");
    }
}
