//! Label sets and label selectors: the compact form the index stores and the matching rules it applies.

use std::collections::BTreeMap;

/// A set of labels (or annotations), sorted by key, stored in two allocations: one string holding every
/// key and value back to back, and the offsets where each ends.
///
/// A pod's handful of labels would otherwise cost a vector plus two small strings per label; lookups are
/// binary searches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Labels {
    text: Box<str>,
    /// `ends[2i]` is where key `i` ends, `ends[2i + 1]` where its value ends (byte offsets in `text`).
    ends: Box<[u32]>,
}

impl Labels {
    pub fn new() -> Self {
        Labels::default()
    }

    fn pair(&self, i: usize) -> (&str, &str) {
        let start = if i == 0 {
            0
        } else {
            self.ends[2 * i - 1] as usize
        };
        let key_end = self.ends[2 * i] as usize;
        let value_end = self.ends[2 * i + 1] as usize;
        (&self.text[start..key_end], &self.text[key_end..value_end])
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.pair(mid).0.cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(mid),
            }
        }
        Err(lo)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.find(key).ok().map(|i| self.pair(i).1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ends.len() / 2
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        (0..self.len()).map(|i| self.pair(i))
    }

    /// Inserts or replaces one label (rebuilds the set: meant for builders, not hot paths).
    pub fn insert(&mut self, key: &str, value: &str) {
        let mut pairs: Vec<(&str, &str)> = self.iter().filter(|(k, _)| *k != key).collect();
        pairs.push((key, value));
        *self = pairs.into_iter().collect();
    }

    /// True when every pair of `selector` is present here: Kubernetes' `matchLabels` semantics.
    /// An empty selector is a subset of everything; callers that need "non-empty" check it themselves.
    pub fn is_superset_of(&self, selector: &Labels) -> bool {
        selector.iter().all(|(k, v)| self.get(k) == Some(v))
    }

    /// Keeps only the keys `keep` accepts (used to store just the annotations the index reads).
    pub fn retain(self, keep: impl Fn(&str) -> bool) -> Self {
        if self.iter().all(|(k, _)| keep(k)) {
            return self;
        }
        self.iter().filter(|(k, _)| keep(k)).collect()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Labels {
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Self {
        let mut pairs: Vec<(K, V)> = iter.into_iter().collect();
        // Sorted by key; for a repeated key the first one stays (stable sort, then dedup).
        pairs.sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
        pairs.dedup_by(|a, b| a.0.as_ref() == b.0.as_ref());
        let len: usize = pairs
            .iter()
            .map(|(k, v)| k.as_ref().len() + v.as_ref().len())
            .sum();
        let mut text = String::with_capacity(len);
        let mut ends = Vec::with_capacity(pairs.len() * 2);
        for (k, v) in &pairs {
            text.push_str(k.as_ref());
            ends.push(offset(text.len()));
            text.push_str(v.as_ref());
            ends.push(offset(text.len()));
        }
        Labels {
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
        }
    }
}

/// Label sets are far below 4 GiB (the API server caps an object at a few MiB).
fn offset(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
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
