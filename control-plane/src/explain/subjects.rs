//! Subject matching: the names of the policies and routes the report can explain, and whether a
//! `NAMESPACE/NAME` given on the command line is one of them.

use ambient_index::Index;

/// Every policy and route the report can explain, as `Kind namespace/name`, in report order.
pub fn subjects(index: &Index) -> Vec<String> {
    let policies = index
        .authorization_policies()
        .map(|p| format!("AuthorizationPolicy {}/{}", p.meta.namespace, p.meta.name));
    let routes = index
        .http_routes()
        .map(|r| format!("HTTPRoute {}/{}", r.meta.namespace, r.meta.name));
    policies.chain(routes).collect()
}

/// Whether `name` (`NAMESPACE/NAME`) names a policy or route of the index.
pub fn matches(index: &Index, name: &str) -> bool {
    let is = |ns: &str, n: &str| name.split_once('/') == Some((ns, n));
    index
        .authorization_policies()
        .any(|p| is(&p.meta.namespace, &p.meta.name))
        || index
            .http_routes()
            .any(|r| is(&r.meta.namespace, &r.meta.name))
}
