//! `ambientd dump`: what every ztunnel would receive, as one JSON document.
//!
//! `{"addresses": {NAME: Address}, "authorizations": {NAME: Authorization}, "diagnostics": [...]}` with
//! resources in the protobuf JSON mapping and keys sorted.

use serde_json::{Map, Value, json};

use crate::index::Index;
use crate::source::SourceDiagnostic;

/// Why a dump could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("resource {name}: {source}")]
    Json {
        name: String,
        #[source]
        source: ambient_proto::json::JsonError,
    },
}

/// The dump document for an index and the source's current diagnostics.
pub fn dump(index: &Index, source: &[SourceDiagnostic]) -> Result<Value, DumpError> {
    let mut addresses = Map::new();
    let mut names: Vec<_> = index.addresses().keys().collect();
    names.sort();
    for name in names {
        let Some(res) = index.address(name) else {
            continue;
        };
        let value =
            ambient_proto::json::address_to_json(&res.body).map_err(|source| DumpError::Json {
                name: name.to_string(),
                source,
            })?;
        addresses.insert(name.to_string(), value);
    }
    Ok(json!({
        "addresses": addresses,
        "authorizations": Map::new(),
        "diagnostics": diagnostics(index, source),
    }))
}

/// Source problems first (sorted by location), then the index's conditions (sorted by object).
pub fn diagnostics(index: &Index, source: &[SourceDiagnostic]) -> Vec<Value> {
    let mut out: Vec<Value> = source
        .iter()
        .map(|d| {
            json!({
                "location": d.location,
                "object": d.object,
                "type": "Parse",
                "status": "False",
                "reason": "InvalidDocument",
                "message": d.message,
            })
        })
        .collect();
    out.extend(index.conditions().iter().map(|(obj, c)| {
        json!({
            "object": obj.to_string(),
            "type": c.type_,
            "status": if c.status { "True" } else { "False" },
            "reason": c.reason,
            "message": c.message,
        })
    }));
    out
}
