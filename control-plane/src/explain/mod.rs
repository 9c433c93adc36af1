//! `ambientd explain`: a review, in plain English, of what ambient mode does with each
//! AuthorizationPolicy and HTTPRoute of a configuration.
//!
//! ztunnel enforces L4 only. A policy written for sidecars may carry HTTP attributes that ztunnel cannot
//! check, and a route attached to a Service needs a waypoint once clients lose their sidecars. For every
//! policy the report says what kind it is, what ztunnel receives (which rules are dropped, and because of
//! which HTTP attributes), which workloads it applies to, the `ZtunnelAccepted` or `WaypointAccepted`
//! condition istiod would write, who enforces it, and what to do about it. For every route it says who
//! serves each parent: the Service's waypoint, a waypoint Gateway, or an ordinary Gateway.
//!
//! Rules are numbered from 1 in the order of `spec.rules`. Blocks come in a fixed order: policies sorted
//! by `namespace/name`, then routes sorted the same way; without a filter a summary comes first. The
//! report is a pure function of the index.

mod advice;
mod block;
mod policy;
mod route;
mod subjects;
mod summary;
mod text;
mod waypoint_policy;
mod waypoints;

use ambient_index::Index;

use self::block::Block;
use self::policy::policy_block;
use self::route::route_block;
use self::summary::summary;
use self::text::count;

pub use self::subjects::{matches, subjects};

/// The report. With `filter` (`NAMESPACE/NAME`), only the policies and routes of that name, and no
/// summary; an unknown name gives an empty report (see [`matches`]).
pub fn explain(index: &Index, filter: Option<&str>) -> String {
    let wanted = |ns: &str, name: &str| filter.is_none_or(|f| f == format!("{ns}/{name}"));
    let mut blocks: Vec<Block> = Vec::new();
    for policy in index.authorization_policies() {
        if wanted(&policy.meta.namespace, &policy.meta.name) {
            blocks.push(policy_block(index, policy));
        }
    }
    let policies = blocks.len();
    for route in index.http_routes() {
        if wanted(&route.meta.namespace, &route.meta.name) {
            blocks.push(route_block(index, route));
        }
    }
    let routes = blocks.len() - policies;
    let mut out = String::new();
    if filter.is_none() {
        out.push_str(&format!(
            "ambientd explain: {}, {}.\n\n",
            count(policies, "AuthorizationPolicy", "AuthorizationPolicies"),
            count(routes, "HTTPRoute", "HTTPRoutes"),
        ));
        if !blocks.is_empty() {
            summary(&mut out, &blocks);
            out.push('\n');
        }
    }
    for (i, block) in blocks.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        block.render(&mut out);
    }
    out
}
