//! The table-test harness: a case of objects in and an expected view out, checked against an index
//! built at once and one fed object by object.

use crate::model::Object;
use crate::{Index, Settings};

use super::{test_settings, test_system_namespace};

/// One row of a table test: objects in, and what a view of the index must read out.
#[derive(Debug)]
pub struct TableCase<T> {
    pub name: &'static str,
    /// `None`: istiod's unit-test environment ([`test_settings`] plus [`test_system_namespace`]).
    /// `Some`: exactly these settings and no system namespace object.
    pub settings: Option<Settings>,
    pub objects: Vec<Object>,
    pub want: T,
}

/// Runs table cases the two ways the index is fed: [`Index::build`] from all objects at once, and
/// [`Index::apply`] one object at a time from an empty index. `view` must read `want` from both.
pub fn assert_build_and_apply<T: PartialEq + std::fmt::Debug>(
    cases: impl IntoIterator<Item = TableCase<T>>,
    view: impl Fn(&Index) -> T,
) {
    for case in cases {
        let (settings, mut objects) = match case.settings {
            None => (test_settings(), vec![test_system_namespace()]),
            Some(s) => (s, Vec::new()),
        };
        objects.extend(case.objects);
        let built = Index::build(settings.clone(), objects.clone());
        assert_eq!(view(&built), case.want, "case {:?} (build)", case.name);
        let mut applied = Index::new(settings);
        for obj in objects {
            applied.apply(obj);
        }
        assert_eq!(
            view(&applied),
            case.want,
            "case {:?} (applied one by one)",
            case.name
        );
    }
}
