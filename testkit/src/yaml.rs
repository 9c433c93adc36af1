//! Generated objects as multi-document YAML files, grouped by namespace.

use std::collections::HashMap;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::cluster::for_each_object;
use crate::spec::ClusterSpec;

/// Writes `values` as multi-document YAML files into `dir` (which must exist), split over about
/// `files` files without splitting a namespace: objects are grouped by namespace (cluster-scoped
/// objects first, in their own group) and the groups are spread over the files in order. With one
/// group per file each file is named after its group (`000-cluster.yaml` with the Namespaces, Nodes and
/// GatewayClass, then `001-ns-000.yaml`, …), otherwise `part-000.yaml`, …. `files == 0` means one file
/// per group.
///
/// Returns the paths written, in order.
pub fn write_yaml(dir: &Path, values: &[Value], files: usize) -> io::Result<Vec<PathBuf>> {
    let mut groups = YamlGroups::new();
    for v in values {
        groups.push(v)?;
    }
    groups.write(dir, files)
}

/// Generates the cluster of `spec` straight into YAML files, as [`write_yaml`] lays them out, holding
/// only the YAML text in memory (not every raw object): the way to write large clusters.
pub fn write_cluster_yaml(
    dir: &Path,
    spec: &ClusterSpec,
    files: usize,
) -> io::Result<Vec<PathBuf>> {
    let mut groups = YamlGroups::new();
    let mut failed = None;
    for_each_object(spec, |v| {
        if failed.is_none()
            && let Err(e) = groups.push(&v)
        {
            failed = Some(e);
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    groups.write(dir, files)
}

/// Objects as YAML documents, grouped by namespace in first-seen order, cluster-scoped objects first.
struct YamlGroups {
    /// `(group name, YAML text)`; group 0 holds the cluster-scoped objects.
    groups: Vec<(String, String)>,
    by_namespace: HashMap<String, usize>,
}

impl YamlGroups {
    fn new() -> Self {
        YamlGroups {
            groups: vec![("cluster".to_string(), String::new())],
            by_namespace: HashMap::new(),
        }
    }

    fn push(&mut self, v: &Value) -> io::Result<()> {
        let ns = v["metadata"]["namespace"].as_str().unwrap_or("");
        let i = if ns.is_empty() {
            0
        } else {
            match self.by_namespace.get(ns) {
                Some(&i) => i,
                None => {
                    self.groups.push((ns.to_string(), String::new()));
                    self.by_namespace
                        .insert(ns.to_string(), self.groups.len() - 1);
                    self.groups.len() - 1
                }
            }
        };
        let doc = serde_norway::to_string(v).map_err(io::Error::other)?;
        let text = &mut self.groups[i].1;
        text.push_str("---\n");
        text.push_str(&doc);
        Ok(())
    }

    fn write(mut self, dir: &Path, files: usize) -> io::Result<Vec<PathBuf>> {
        self.groups.retain(|(_, text)| !text.is_empty());
        let groups = &self.groups;
        let files = if files == 0 {
            groups.len()
        } else {
            files.min(groups.len())
        };
        let one_group_per_file = files == groups.len();
        let mut written = Vec::with_capacity(files);
        for file in 0..files {
            let first = file * groups.len() / files;
            let end = (file + 1) * groups.len() / files;
            let name = if one_group_per_file {
                format!("{file:03}-{}.yaml", groups[first].0)
            } else {
                format!("part-{file:03}.yaml")
            };
            let path = dir.join(name);
            let mut out = io::BufWriter::new(std::fs::File::create(&path)?);
            for (_, text) in &groups[first..end] {
                out.write_all(text.as_bytes())?;
            }
            out.flush()?;
            written.push(path);
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::generate;
    use crate::spec::small;

    #[test]
    fn yaml_round_trips() -> Result<(), Box<dyn std::error::Error>> {
        let spec = small();
        let values = generate(&spec);
        let dir = tempfile::tempdir()?;
        let per_group = write_yaml(dir.path(), &values, 0)?;
        let names: Vec<String> = per_group
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .collect();
        assert_eq!(
            names,
            [
                "000-cluster.yaml",
                "001-ns-000.yaml",
                "002-ns-001.yaml",
                "003-ns-002.yaml",
                "004-ns-003.yaml"
            ]
        );
        let mut read = Vec::new();
        for path in &per_group {
            let text = std::fs::read_to_string(path)?;
            for doc in serde_norway::Deserializer::from_str(&text) {
                let v: Value = serde::Deserialize::deserialize(doc)?;
                read.push(v);
            }
        }
        // Regrouped by namespace, cluster-scoped first; the same multiset of objects.
        let sorted = |vs: &[Value]| {
            let mut out: Vec<String> = vs.iter().map(Value::to_string).collect();
            out.sort();
            out
        };
        assert_eq!(sorted(&read), sorted(&values));

        // Streaming straight from the spec writes the same files.
        let streamed = tempfile::tempdir()?;
        let streamed_paths = write_cluster_yaml(streamed.path(), &spec, 0)?;
        assert_eq!(streamed_paths.len(), per_group.len());
        for (a, b) in per_group.iter().zip(&streamed_paths) {
            assert_eq!(a.file_name(), b.file_name());
            assert_eq!(std::fs::read(a)?, std::fs::read(b)?);
        }

        let dir = tempfile::tempdir()?;
        let two = write_yaml(dir.path(), &values, 2)?;
        assert_eq!(two.len(), 2);
        assert!(two[0].ends_with("part-000.yaml"));
        Ok(())
    }
}
