//! `ambientd dump`: what every ztunnel would receive, as one JSON document.
//!
//! `{"addresses": {NAME: Address}, "authorizations": {NAME: Authorization}, "diagnostics": [...]}` with
//! resources in the protobuf JSON mapping and keys sorted.

use serde_json::{Map, Value, json};

use crate::source::SourceDiagnostic;
use ambient_index::Index;

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
    let addresses = resources_json(index.addresses(), ambient_proto::json::address_to_json)?;
    let authorizations = resources_json(
        index.authorizations(),
        ambient_proto::json::authorization_to_json,
    )?;
    Ok(json!({
        "addresses": addresses,
        "authorizations": authorizations,
        "diagnostics": diagnostics(index, source),
    }))
}

/// Every resource of one type as protobuf JSON, keyed (and so sorted) by resource name.
fn resources_json(
    table: &std::collections::HashMap<std::sync::Arc<str>, ambient_index::Resource>,
    to_json: fn(&[u8]) -> Result<Value, ambient_proto::json::JsonError>,
) -> Result<Map<String, Value>, DumpError> {
    table
        .iter()
        .map(|(name, res)| {
            let value = to_json(&res.body).map_err(|source| DumpError::Json {
                name: name.to_string(),
                source,
            })?;
            Ok((name.to_string(), value))
        })
        .collect()
}

/// Source problems first (sorted by location), then the index's conditions (sorted by object), then one
/// entry per AuthorizationPolicy: its `ZtunnelAccepted` (or, for waypoint policies, `WaypointAccepted`)
/// condition, who enforces it, and what was dropped.
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
    for policy in index.authorization_policies() {
        let obj = ambient_index::model::ObjectRef::new(
            ambient_index::model::Kind::AuthorizationPolicy,
            &policy.meta.namespace,
            &policy.meta.name,
        );
        let Some(status) = index.policy_status().get(&obj) else {
            continue;
        };
        let condition = status
            .ztunnel
            .clone()
            .or_else(|| index.waypoint_policy_condition(policy));
        let mut entry = json!({
            "object": obj.to_string(),
            "enforcedBy": status.enforced_by,
        });
        if let Some(c) = condition {
            entry["type"] = json!(c.type_);
            entry["status"] = json!(if c.status { "True" } else { "False" });
            entry["reason"] = json!(c.reason);
            entry["message"] = json!(c.message);
        }
        if !status.http_attributes.is_empty() {
            entry["httpAttributes"] = json!(status.http_attributes);
        }
        if !status.dropped_rules.is_empty() {
            entry["droppedRules"] = json!(status.dropped_rules);
        }
        if !status.warnings.is_empty() {
            entry["warnings"] = json!(status.warnings);
        }
        out.push(entry);
    }
    out
}
