//! Label sets and label selectors: the compact form the index stores and the matching rules it applies.

use std::collections::BTreeMap;

/// A set of labels (or annotations), stored as a sorted vector of boxed strings.
///
/// Much smaller than a `BTreeMap` for the handful of labels a pod carries; lookups are binary searches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Labels(Vec<(Box<str>, Box<str>)>);

impl Labels {
    pub fn new() -> Self {
        Labels(Vec::new())
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &*self.0[i].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }

    /// Inserts or replaces one label.
    pub fn insert(&mut self, key: &str, value: &str) {
        match self.0.binary_search_by(|(k, _)| (**k).cmp(key)) {
            Ok(i) => self.0[i].1 = value.into(),
            Err(i) => self.0.insert(i, (key.into(), value.into())),
        }
    }

    /// True when every pair of `selector` is present here: Kubernetes' `matchLabels` semantics.
    /// An empty selector is a subset of everything; callers that need "non-empty" check it themselves.
    pub fn is_superset_of(&self, selector: &Labels) -> bool {
        selector.iter().all(|(k, v)| self.get(k) == Some(v))
    }

    /// Keeps only the keys `keep` accepts (used to store just the annotations the index reads).
    pub fn retain(mut self, keep: impl Fn(&str) -> bool) -> Self {
        self.0.retain(|(k, _)| keep(k));
        self.0.shrink_to_fit();
        self
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Labels {
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Self {
        let mut v: Vec<(Box<str>, Box<str>)> = iter
            .into_iter()
            .map(|(k, v)| (k.as_ref().into(), v.as_ref().into()))
            .collect();
        v.sort();
        v.dedup_by(|a, b| a.0 == b.0);
        v.shrink_to_fit();
        Labels(v)
    }
}

impl From<BTreeMap<String, String>> for Labels {
    fn from(m: BTreeMap<String, String>) -> Self {
        m.into_iter().collect()
    }
}

impl From<Option<BTreeMap<String, String>>> for Labels {
    fn from(m: Option<BTreeMap<String, String>>) -> Self {
        m.map(Labels::from).unwrap_or_default()
    }
}

/// One `matchExpressions` requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A Kubernetes `LabelSelector`: `matchLabels` and `matchExpressions`, ANDed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub match_labels: Labels,
    pub match_expressions: Vec<Requirement>,
}

impl LabelSelector {
    /// Builds a selector from the wire form; an unknown operator makes the selector match nothing,
    /// as the API server would have refused it.
    pub fn from_parts(
        match_labels: Option<BTreeMap<String, String>>,
        expressions: impl IntoIterator<Item = (String, String, Option<Vec<String>>)>,
    ) -> Self {
        let match_expressions = expressions
            .into_iter()
            .map(|(key, op, values)| {
                let values = values.unwrap_or_default();
                match op.as_str() {
                    "In" => Requirement::In(key, values),
                    "NotIn" => Requirement::NotIn(key, values),
                    "Exists" => Requirement::Exists(key),
                    "DoesNotExist" => Requirement::DoesNotExist(key),
                    // Matches nothing: an `In` with no values.
                    _ => Requirement::In(key, Vec::new()),
                }
            })
            .collect();
        LabelSelector {
            match_labels: match_labels.into(),
            match_expressions,
        }
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        labels.is_superset_of(&self.match_labels)
            && self.match_expressions.iter().all(|r| match r {
                Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.iter().any(|x| x == v)),
                Requirement::NotIn(k, vs) => {
                    labels.get(k).is_none_or(|v| vs.iter().all(|x| x != v))
                }
                Requirement::Exists(k) => labels.contains_key(k),
                Requirement::DoesNotExist(k) => !labels.contains_key(k),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().copied().collect()
    }

    #[test]
    fn subset_matching() {
        let pod = l(&[("app", "reviews"), ("version", "v1")]);
        assert!(pod.is_superset_of(&l(&[("app", "reviews")])));
        assert!(pod.is_superset_of(&l(&[])));
        assert!(!pod.is_superset_of(&l(&[("app", "ratings")])));
        assert!(!pod.is_superset_of(&l(&[("app", "reviews"), ("tier", "x")])));
    }

    #[test]
    fn insert_keeps_order_and_replaces() {
        let mut labels = l(&[("b", "2")]);
        labels.insert("a", "1");
        labels.insert("b", "3");
        assert_eq!(
            labels.iter().collect::<Vec<_>>(),
            vec![("a", "1"), ("b", "3")]
        );
    }

    #[test]
    fn selector_expressions() {
        let ns = l(&[("kubernetes.io/metadata.name", "frontend"), ("team", "web")]);
        let cases: &[(&str, &str, Option<Vec<&str>>, bool)] = &[
            ("team", "In", Some(vec!["web", "api"]), true),
            ("team", "In", Some(vec!["api"]), false),
            ("team", "NotIn", Some(vec!["api"]), true),
            ("team", "NotIn", Some(vec!["web"]), false),
            ("missing", "NotIn", Some(vec!["web"]), true),
            ("team", "Exists", None, true),
            ("missing", "Exists", None, false),
            ("missing", "DoesNotExist", None, true),
            ("team", "DoesNotExist", None, false),
            ("team", "Bogus", Some(vec!["web"]), false),
        ];
        for (key, op, values, want) in cases {
            let sel = LabelSelector::from_parts(
                None,
                [(
                    key.to_string(),
                    op.to_string(),
                    values
                        .as_ref()
                        .map(|v| v.iter().map(|s| s.to_string()).collect()),
                )],
            );
            assert_eq!(sel.matches(&ns), *want, "{key} {op} {values:?}");
        }
    }
}
