//! `ambientd zc`: what a running ambientd serves, read from its admin API and printed as tables shaped
//! like `istioctl ztunnel-config` (fitted to 80 columns), or as the JSON or YAML the API returned.
//!
//! ```text
//! ambientd zc workloads|services|policies|waypoints|connections|certs|sync NAME
//!     [--admin URL] [-n NAMESPACE] [--node NODE] [-o table|json|yaml]
//! ```
//!
//! This module owns the flags ([`ZcArgs`]), the request each command makes, and the rendering
//! ([`render`], a pure function of the fetched document, tested against golden files).

mod client;
pub mod table;

use std::io::{self, Write};
use std::time::SystemTime;

use clap::{Args, Subcommand, ValueEnum};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::admin::api::*;
use crate::connections::ConnectionSnapshot;
use table::{Column, Cut, Table};

pub use client::AdminUrl;

/// The admin API of a local `ambientd serve` (istiod's monitoring port).
pub const DEFAULT_ADMIN: &str = "http://127.0.0.1:15014";

/// Flags of `ambientd zc`.
#[derive(Debug, Clone, Args)]
pub struct ZcArgs {
    #[command(subcommand)]
    pub command: ZcCommand,
    /// Admin API of the ambientd to ask (`ambientd serve --admin-addr`).
    #[arg(long, global = true, value_name = "URL", default_value = DEFAULT_ADMIN)]
    pub admin: String,
    /// Only this namespace (workloads, services, policies, waypoints, connections).
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Only this Kubernetes node (workloads, connections).
    #[arg(long, global = true, value_name = "NODE")]
    pub node: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// What to show.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum ZcCommand {
    /// Workloads ztunnels receive: pod, address, node, waypoint, protocol.
    Workloads,
    /// Services ztunnels receive: VIPs, waypoint, endpoints.
    Services,
    /// Authorization policies ztunnels receive, and who enforces each AuthorizationPolicy.
    Policies,
    /// Waypoints, what is bound to each, and what was refused.
    Waypoints,
    /// Connected proxies and their xDS state.
    Connections,
    /// The root, signing and serving certificates, and certificates issued.
    Certs,
    /// Which connected proxies hold the current version of one resource.
    Sync {
        /// The resource name: a workload uid, `namespace/hostname` of a Service, or `namespace/name` of a
        /// policy.
        name: String,
        /// The resource type (`Address` or `Authorization`); by default the one holding NAME.
        #[arg(long = "type", value_name = "TYPE")]
        type_: Option<String>,
    },
}

impl ZcCommand {
    fn word(&self) -> &'static str {
        match self {
            ZcCommand::Workloads => "workloads",
            ZcCommand::Services => "services",
            ZcCommand::Policies => "policies",
            ZcCommand::Waypoints => "waypoints",
            ZcCommand::Connections => "connections",
            ZcCommand::Certs => "certs",
            ZcCommand::Sync { .. } => "sync",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
    Yaml,
}

/// Why `zc` printed nothing useful.
#[derive(Debug, thiserror::Error)]
pub enum ZcError {
    #[error(
        "--admin {url:?} is not a URL zc can use: {reason}; pass --admin http://HOST:PORT (for \
         example {DEFAULT_ADMIN})"
    )]
    BadUrl { url: String, reason: String },
    #[error(
        "cannot reach the ambientd admin API at {url}: {source}; start `ambientd serve` (its admin API \
         listens on 127.0.0.1:15014 by default) or point zc at it with --admin URL"
    )]
    Unreachable {
        url: String,
        #[source]
        source: io::Error,
    },
    #[error("{url} did not answer within {secs} s; is it an ambientd admin API?")]
    Timeout { url: String, secs: u64 },
    #[error("request to {url} failed: {source}")]
    Http {
        url: String,
        #[source]
        source: hyper::Error,
    },
    #[error("{url} answered {status}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    #[error(
        "{url} answered with a document zc cannot read ({source}); is it an ambientd of the same version?"
    )]
    Decode {
        url: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{flag} does not apply to `zc {command}` (it applies to {applies})")]
    Flag {
        flag: &'static str,
        command: &'static str,
        applies: &'static str,
    },
    #[error("cannot write the output: {0}")]
    Write(#[from] io::Error),
    #[error("cannot write YAML: {0}")]
    Yaml(#[from] serde_norway::Error),
}

/// The admin API path (with query) a command asks for; refuses filters the endpoint does not take.
pub fn request_path(args: &ZcArgs) -> Result<String, ZcError> {
    let command = args.command.word();
    let (path, takes_namespace, takes_node) = match &args.command {
        ZcCommand::Workloads => ("/debug/workloads", true, true),
        ZcCommand::Services => ("/debug/services", true, false),
        ZcCommand::Policies => ("/debug/policies", true, false),
        ZcCommand::Waypoints => ("/debug/waypoints", true, false),
        ZcCommand::Connections => ("/debug/connections", true, true),
        ZcCommand::Certs => ("/debug/certs", false, false),
        ZcCommand::Sync { .. } => ("/debug/sync", false, false),
    };
    let mut params: Vec<(&str, &str)> = Vec::new();
    if let Some(ns) = &args.namespace {
        if !takes_namespace {
            return Err(ZcError::Flag {
                flag: "-n/--namespace",
                command,
                applies: "workloads, services, policies, waypoints and connections",
            });
        }
        params.push(("namespace", ns));
    }
    if let Some(node) = &args.node {
        if !takes_node {
            return Err(ZcError::Flag {
                flag: "--node",
                command,
                applies: "workloads and connections",
            });
        }
        params.push(("node", node));
    }
    if let ZcCommand::Sync { name, type_ } = &args.command {
        params.push(("name", name));
        if let Some(t) = type_ {
            params.push(("type", t));
        }
    }
    Ok(if params.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", client::query(&params))
    })
}

/// Runs one `zc` command: fetches its document from the admin API and prints it to `out`.
pub async fn run(args: ZcArgs, out: &mut impl Write) -> Result<(), ZcError> {
    run_at(args, SystemTime::now(), out).await
}

/// [`run`] with the clock that tables use for ages and expiries.
pub async fn run_at(args: ZcArgs, now: SystemTime, out: &mut impl Write) -> Result<(), ZcError> {
    let url = AdminUrl::parse(&args.admin)?;
    let path = request_path(&args)?;
    let shown = url.show(&path);
    let (status, body) = client::get(&url, &path).await?;
    if !(200..300).contains(&status) {
        let message = serde_json::from_slice::<ErrorDoc>(&body)
            .map(|e| e.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).trim().to_string());
        return Err(ZcError::Status {
            url: shown,
            status,
            message,
        });
    }
    let doc: Value = serde_json::from_slice(&body).map_err(|source| ZcError::Decode {
        url: shown.clone(),
        source,
    })?;
    render(&args, &doc, now, out).map_err(|e| match e {
        ZcError::Decode { source, .. } => ZcError::Decode { url: shown, source },
        e => e,
    })
}

/// Prints a fetched document as `args.output` says; tables use `now` for ages and expiries.
pub fn render(
    args: &ZcArgs,
    doc: &Value,
    now: SystemTime,
    out: &mut impl Write,
) -> Result<(), ZcError> {
    match args.output {
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, doc).map_err(io::Error::from)?;
            writeln!(out)?;
            Ok(())
        }
        OutputFormat::Yaml => {
            out.write_all(serde_norway::to_string(doc)?.as_bytes())?;
            Ok(())
        }
        OutputFormat::Table => {
            let now = unix(now);
            let scope = args
                .namespace
                .as_deref()
                .map(|ns| format!(" in namespace {ns}"))
                .unwrap_or_default();
            match &args.command {
                ZcCommand::Workloads => workloads(&parse(doc)?, &scope, out),
                ZcCommand::Services => services(&parse(doc)?, &scope, out),
                ZcCommand::Policies => policies(&parse(doc)?, &scope, out),
                ZcCommand::Waypoints => waypoints(&parse(doc)?, &scope, out),
                ZcCommand::Connections => connections(&parse(doc)?, &scope, now, out),
                ZcCommand::Certs => certs(&parse(doc)?, now, out),
                ZcCommand::Sync { .. } => sync(&parse(doc)?, out),
            }
        }
    }
}

fn parse<T: DeserializeOwned>(doc: &Value) -> Result<T, ZcError> {
    T::deserialize(doc).map_err(|source| ZcError::Decode {
        url: String::new(),
        source,
    })
}

fn unix(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

fn write_table(table: &Table, none: &str, out: &mut impl Write) -> Result<(), ZcError> {
    if table.is_empty() {
        writeln!(out, "{none}")?;
    } else {
        table.write(out, table::WIDTH)?;
    }
    Ok(())
}

/// The waypoint column: the waypoint's name (the first label of its hostname), its address, or `None`.
fn waypoint_cell(waypoint: Option<&str>) -> String {
    match waypoint {
        None => "None".to_string(),
        Some(w) => match w.split_once('/') {
            // `namespace/hostname`: the Gateway's name is the hostname's first label.
            Some((_, host)) if host.parse::<std::net::IpAddr>().is_err() => {
                host.split('.').next().unwrap_or(host).to_string()
            }
            _ => w.to_string(),
        },
    }
}

/// A waypoint's address: the hostname of `namespace/hostname` (its namespace is in it), else as given.
fn address_cell(address: &str) -> String {
    match address.split_once('/') {
        Some((_, host)) if host.parse::<std::net::IpAddr>().is_err() => host.to_string(),
        _ => address.to_string(),
    }
}

/// The `pod.namespace` part of an Istio node id (`type~ip~pod.namespace~domain`), else the whole id.
fn proxy_cell(node_id: &str) -> String {
    match node_id.split('~').nth(2) {
        Some(pod) if !pod.is_empty() => pod.to_string(),
        _ => dash(node_id),
    }
}

fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_string()
    } else {
        s.to_string()
    }
}

fn workloads(doc: &WorkloadList, scope: &str, out: &mut impl Write) -> Result<(), ZcError> {
    let mut t = Table::new(vec![
        Column::new("NAMESPACE", Cut::Middle),
        Column::new("POD-NAME", Cut::Middle),
        Column::new("ADDRESS", Cut::End),
        Column::new("NODE", Cut::Middle).weight(2),
        Column::new("WAYPOINT", Cut::Middle),
        Column::new("PROTOCOL", Cut::Never),
    ]);
    for w in &doc.workloads {
        t.row(vec![
            w.namespace.clone(),
            w.name.clone(),
            dash(&w.addresses.join(",")),
            dash(&w.node),
            waypoint_cell(w.waypoint.as_deref()),
            w.protocol.clone(),
        ]);
    }
    write_table(&t, &format!("No workloads found{scope}."), out)
}

fn services(doc: &ServiceList, scope: &str, out: &mut impl Write) -> Result<(), ZcError> {
    let mut t = Table::new(vec![
        Column::new("NAMESPACE", Cut::Middle),
        Column::new("SERVICE-NAME", Cut::Middle),
        Column::new("SERVICE-VIP", Cut::End),
        Column::new("WAYPOINT", Cut::Middle),
        Column::new("ENDPOINTS", Cut::Never),
    ]);
    for s in &doc.services {
        t.row(vec![
            s.namespace.clone(),
            s.name.clone(),
            dash(&s.vips.join(",")),
            waypoint_cell(s.waypoint.as_deref()),
            format!("{}/{}", s.healthy_endpoints, s.endpoints),
        ]);
    }
    write_table(&t, &format!("No services found{scope}."), out)
}

fn policies(doc: &PolicyList, scope: &str, out: &mut impl Write) -> Result<(), ZcError> {
    let mut t = Table::new(vec![
        Column::new("NAMESPACE", Cut::Middle),
        Column::new("POLICY-NAME", Cut::Middle),
        Column::new("ACTION", Cut::Never),
        Column::new("SCOPE", Cut::Never),
        Column::new("RULES", Cut::Never),
    ]);
    for p in &doc.policies {
        t.row(vec![
            p.namespace.clone(),
            p.name.clone(),
            p.action.clone(),
            p.scope.clone(),
            p.rules.to_string(),
        ]);
    }
    write_table(&t, &format!("No policies sent to ztunnel{scope}."), out)?;
    if doc.diagnostics.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    let mut t = Table::new(vec![
        Column::new("POLICY", Cut::Middle),
        Column::new("ENFORCED-BY", Cut::End),
        Column::new("CONDITION", Cut::End),
    ]);
    for d in &doc.diagnostics {
        let policy = match (&d.location, d.object.strip_prefix("AuthorizationPolicy/")) {
            (Some(loc), _) => loc.clone(),
            (None, Some(short)) => short.to_string(),
            (None, None) => d.object.clone(),
        };
        let mut condition = match (&d.type_, &d.status) {
            (Some(ty), Some(st)) => format!("{ty}={st}"),
            _ => String::new(),
        };
        let detail = if d.location.is_some() {
            d.message.as_deref()
        } else {
            d.reason.as_deref()
        };
        if let Some(detail) = detail.filter(|r| !r.is_empty()) {
            condition.push_str(": ");
            condition.push_str(detail);
        }
        t.row(vec![
            policy,
            dash(d.enforced_by.as_deref().unwrap_or("")),
            dash(&condition),
        ]);
    }
    t.write(out, table::WIDTH)?;
    Ok(())
}

fn waypoints(doc: &WaypointList, scope: &str, out: &mut impl Write) -> Result<(), ZcError> {
    let mut t = Table::new(vec![
        Column::new("NAMESPACE", Cut::Middle),
        Column::new("NAME", Cut::Middle),
        Column::new("ADDRESS", Cut::Middle),
        Column::new("TRAFFIC", Cut::Never),
        Column::new("BOUND", Cut::Never),
        Column::new("REFUSED", Cut::Never),
    ]);
    for w in &doc.waypoints {
        t.row(vec![
            w.namespace.clone(),
            w.name.clone(),
            w.address
                .as_deref()
                .map_or_else(|| "None".to_string(), address_cell),
            w.traffic_type.clone(),
            w.bound.len().to_string(),
            w.refused.len().to_string(),
        ]);
    }
    write_table(&t, &format!("No waypoints found{scope}."), out)?;

    let mut bound = Table::new(vec![
        Column::new("WAYPOINT", Cut::Middle),
        Column::new("BOUND", Cut::Middle),
    ]);
    let mut refused = Table::new(vec![
        Column::new("WAYPOINT", Cut::Middle),
        Column::new("REFUSED", Cut::Middle),
        Column::new("REASON", Cut::End),
    ]);
    for w in &doc.waypoints {
        let key = format!("{}/{}", w.namespace, w.name);
        for b in &w.bound {
            bound.row(vec![key.clone(), b.object.clone()]);
        }
        for r in &w.refused {
            refused.row(vec![key.clone(), r.object.clone(), r.reason.clone()]);
        }
    }
    for r in &doc.unresolved {
        let waypoint = match &r.waypoint {
            Some(w) => format!("{w} (missing)"),
            None => "-".to_string(),
        };
        refused.row(vec![waypoint, r.object.clone(), r.reason.clone()]);
    }
    for t in [&bound, &refused] {
        if !t.is_empty() {
            writeln!(out)?;
            t.write(out, table::WIDTH)?;
        }
    }
    Ok(())
}

/// `45s`, `5m3s`, `2h5m`, `3d4h`, as kubectl prints ages.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86400, s % 86400 / 3600),
    }
}

fn connections(
    doc: &ConnectionList,
    scope: &str,
    now: i64,
    out: &mut impl Write,
) -> Result<(), ZcError> {
    let mut t = Table::new(vec![
        Column::new("ID", Cut::Never),
        Column::new("TYPE", Cut::Middle),
        Column::new("NODE", Cut::Middle),
        Column::new("AGE", Cut::Never),
        Column::new("ACKED", Cut::Never),
        Column::new("PENDING", Cut::Never),
        Column::new("LAST-NACK", Cut::End),
    ]);
    for c in &doc.connections {
        t.row(connection_row(c, now));
    }
    write_table(&t, &format!("No proxies connected{scope}."), out)
}

fn connection_row(c: &ConnectionSnapshot, now: i64) -> Vec<String> {
    let subscribed: Vec<_> = c.types.iter().filter(|t| t.subscribed).collect();
    let acked = subscribed
        .iter()
        .filter(|t| t.last_sent_nonce.is_some() && t.last_acked_nonce == t.last_sent_nonce)
        .count();
    let pending: u64 = c.types.iter().map(|t| t.pending_names).sum();
    let nack = c
        .types
        .iter()
        .filter_map(|t| t.last_nack.as_ref().map(|n| (t, n)))
        .max_by_key(|(_, n)| n.at)
        .map(|(t, n)| {
            let ty = crate::metrics::type_label(&t.type_url);
            let short = ty.rsplit('.').next().unwrap_or(ty);
            format!("{short}: {}", n.message)
        })
        .unwrap_or_else(|| "-".to_string());
    let since = i64::try_from(c.connected_since).unwrap_or(i64::MAX);
    vec![
        c.id.to_string(),
        dash(&c.proxy_type),
        c.node_name
            .clone()
            .unwrap_or_else(|| proxy_cell(&c.node_id)),
        human_duration(now - since),
        format!("{acked}/{}", subscribed.len()),
        pending.to_string(),
        nack,
    ]
}

fn certs(doc: &CertsDoc, now: i64, out: &mut impl Write) -> Result<(), ZcError> {
    let mut t = Table::new(vec![
        Column::new("CERTIFICATE", Cut::Never),
        Column::new("NOT-AFTER", Cut::Never),
        Column::new("EXPIRES", Cut::Never),
        Column::new("NAMES", Cut::End),
    ]);
    for (what, cert) in [
        ("root", &doc.root),
        ("signing", &doc.signing),
        ("serving", &doc.serving),
    ] {
        let Some(c) = cert else { continue };
        let left = c.not_after_unix - now;
        let expires = if left >= 0 {
            format!("in {}", human_duration(left))
        } else {
            format!("{} ago", human_duration(-left))
        };
        t.row(vec![
            what.to_string(),
            c.not_after.clone(),
            expires,
            dash(&c.names.join(", ")),
        ]);
    }
    write_table(&t, "No certificates: the server runs no CA.", out)?;
    writeln!(out)?;
    let refused: u64 = doc.refused.values().sum();
    let reasons: Vec<String> = doc
        .refused
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(r, n)| format!("{r} {n}"))
        .collect();
    write!(
        out,
        "Workload certificates issued: {}, refused: {refused}",
        doc.issued
    )?;
    if reasons.is_empty() {
        writeln!(out)?;
    } else {
        writeln!(out, " ({})", reasons.join(", "))?;
    }
    Ok(())
}

fn sync(doc: &SyncDoc, out: &mut impl Write) -> Result<(), ZcError> {
    let ty = crate::metrics::type_label(&doc.type_url);
    writeln!(out, "RESOURCE: {}", doc.name)?;
    writeln!(out, "TYPE:     {ty}")?;
    match &doc.version {
        Some(v) => writeln!(out, "VERSION:  {v}")?,
        None => writeln!(out, "VERSION:  none (the resource does not exist)")?,
    }
    writeln!(out)?;
    let mut t = Table::new(vec![
        Column::new("ID", Cut::Never),
        Column::new("TYPE", Cut::Middle),
        Column::new("PROXY", Cut::Middle),
        Column::new("ACKED-VERSION", Cut::Never),
        Column::new("STATUS", Cut::Never),
    ]);
    for p in &doc.proxies {
        t.row(vec![
            p.connection_id.to_string(),
            dash(&p.proxy_type),
            proxy_cell(&p.node_id),
            p.acked_version.clone().unwrap_or_else(|| "-".to_string()),
            p.status.clone(),
        ]);
    }
    write_table(&t, "No proxies connected.", out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Top,
    }

    #[derive(Debug, clap::Subcommand)]
    enum Top {
        Zc(ZcArgs),
    }

    fn parse(args: &[&str]) -> Result<ZcArgs, clap::Error> {
        use clap::Parser;
        let Top::Zc(args) = Cli::try_parse_from(args)?.command;
        Ok(args)
    }

    #[test]
    fn flags_parse_before_and_after_the_subcommand() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let a = parse(&["ambientd", "zc", "workloads", "-n", "backend", "-o", "json"]).unwrap();
        assert_eq!(a.command, ZcCommand::Workloads);
        assert_eq!(a.namespace.as_deref(), Some("backend"));
        assert_eq!(a.output, OutputFormat::Json);
        assert_eq!(a.admin, DEFAULT_ADMIN);
        let a = parse(&[
            "ambientd",
            "zc",
            "--admin",
            "http://127.0.0.1:9",
            "sync",
            "frontend/productpage-viewer",
            "--type",
            "Authorization",
        ])
        .unwrap();
        assert_eq!(
            a.command,
            ZcCommand::Sync {
                name: "frontend/productpage-viewer".to_string(),
                type_: Some("Authorization".to_string())
            }
        );
        assert_eq!(a.admin, "http://127.0.0.1:9");
        assert!(parse(&["ambientd", "zc", "sync"]).is_err());
        assert!(parse(&["ambientd", "zc", "workloads", "-o", "xml"]).is_err());
    }

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(human_duration(45), "45s");
        assert_eq!(human_duration(303), "5m3s");
        assert_eq!(human_duration(7500), "2h5m");
        assert_eq!(human_duration(3 * 86400 + 4 * 3600 + 5), "3d4h");
        assert_eq!(human_duration(-5), "0s");
    }

    #[test]
    fn waypoint_cells_show_the_gateway_name() {
        assert_eq!(
            waypoint_cell(Some("backend/waypoint.backend.svc.cluster.local")),
            "waypoint"
        );
        assert_eq!(waypoint_cell(Some("10.96.0.9")), "10.96.0.9");
        assert_eq!(waypoint_cell(Some("net1/10.96.0.9")), "net1/10.96.0.9");
        assert_eq!(waypoint_cell(None), "None");
    }

    #[test]
    fn filters_go_only_where_they_apply() {
        let args = |command, namespace: Option<&str>, node: Option<&str>| ZcArgs {
            command,
            admin: DEFAULT_ADMIN.to_string(),
            namespace: namespace.map(str::to_string),
            node: node.map(str::to_string),
            output: OutputFormat::Table,
        };
        assert_eq!(
            request_path(&args(ZcCommand::Workloads, Some("backend"), Some("n1"))).unwrap(),
            "/debug/workloads?namespace=backend&node=n1"
        );
        assert_eq!(
            request_path(&args(
                ZcCommand::Sync {
                    name: "backend/details.backend.svc.cluster.local".into(),
                    type_: None
                },
                None,
                None
            ))
            .unwrap(),
            "/debug/sync?name=backend%2Fdetails.backend.svc.cluster.local"
        );
        let err = request_path(&args(ZcCommand::Services, None, Some("n1"))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--node does not apply to `zc services` (it applies to workloads and connections)"
        );
        assert!(request_path(&args(ZcCommand::Certs, Some("x"), None)).is_err());
    }
}
