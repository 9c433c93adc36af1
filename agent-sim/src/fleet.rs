//! Many simulated ztunnels at once: who each one is (node, token, namespace), starting them, and
//! waiting for them.
//!
//! [`plan`] turns the `agent-sim run` options into one [`ZtunnelConfig`] per client: distinct node
//! names (`PREFIX0000`, … or a given list, or the nodes of a tokens file), and for each client the
//! token of its node from a tokens file in the server's format
//! (`{"<token>": {namespace, serviceAccount, node, podName}}`, YAML or JSON), preferring a node
//! account (`istio-system/ztunnel`). The token's namespace becomes the client's `NAMESPACE` metadata,
//! so that the server's identity check (caller namespace = node metadata NAMESPACE) holds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::observe::Observer;
use crate::transport::{Target, TargetError};
use crate::ztunnel::{self, FleetCounters, ZtunnelConfig, ZtunnelHandle};

/// A problem with the fleet's options.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot read the tokens file {path}: {source}")]
    ReadTokens {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the tokens file {path} is not valid: {reason}; it maps tokens to {{namespace, serviceAccount, node, podName}}, as `ambientd serve --auth tokens=FILE` reads it"
    )]
    BadTokens { path: PathBuf, reason: String },
    #[error(
        "the tokens file {path} has no token for node {node}: add one (a node account such as istio-system/ztunnel with `node: {node}`), or choose nodes with --nodes"
    )]
    NoTokenForNode { path: PathBuf, node: String },
    #[error(
        "{wanted} ztunnels need {wanted} distinct nodes, but only {have} are given ({source_of_nodes}); pass more, or a prefix with --nodes"
    )]
    TooFewNodes {
        wanted: usize,
        have: usize,
        source_of_nodes: String,
    },
    #[error("--nodes lists {node} twice: every simulated ztunnel needs its own node")]
    DuplicateNode { node: String },
    #[error("--ztunnels must be at least 1")]
    NoClients,
}

/// How nodes are named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Nodes {
    /// `PREFIX0000`, `PREFIX0001`, … (the generated clusters' nodes with `node-`).
    Prefix(String),
    /// Exactly these.
    List(Vec<String>),
    /// The nodes the tokens file names (sorted), else `node-` prefixed.
    FromTokens,
}

impl Nodes {
    /// `--nodes`: a value with a comma is a list (`a,b,c`; `a,` for one node), otherwise a prefix.
    pub fn parse(s: &str) -> Nodes {
        if s.contains(',') {
            Nodes::List(
                s.split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(str::to_string)
                    .collect(),
            )
        } else {
            Nodes::Prefix(s.to_string())
        }
    }
}

/// One entry of a tokens file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenEntry {
    pub namespace: String,
    pub service_account: String,
    #[serde(default)]
    pub node: Option<String>,
    #[serde(default)]
    pub pod_name: Option<String>,
}

/// A tokens file, as `ambientd serve --auth tokens=FILE` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFile {
    pub path: PathBuf,
    pub entries: BTreeMap<String, TokenEntry>,
}

impl TokenFile {
    pub fn load(path: &Path) -> Result<TokenFile, PlanError> {
        let text = std::fs::read_to_string(path).map_err(|source| PlanError::ReadTokens {
            path: path.to_path_buf(),
            source,
        })?;
        TokenFile::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<TokenFile, PlanError> {
        let entries: BTreeMap<String, TokenEntry> =
            serde_norway::from_str(text).map_err(|e| PlanError::BadTokens {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        if entries.is_empty() {
            return Err(PlanError::BadTokens {
                path: path.to_path_buf(),
                reason: "it holds no token".into(),
            });
        }
        Ok(TokenFile {
            path: path.to_path_buf(),
            entries,
        })
    }

    /// Every node some token names, sorted.
    pub fn nodes(&self) -> Vec<String> {
        let set: BTreeSet<&str> = self
            .entries
            .values()
            .filter_map(|e| e.node.as_deref())
            .collect();
        set.into_iter().map(str::to_string).collect()
    }

    /// The token for a ztunnel on `node`: a node account (`istio-system/ztunnel`) first, then any
    /// token naming the node (by token order).
    pub fn for_node(&self, node: &str) -> Option<(&str, &TokenEntry)> {
        let on_node = || {
            self.entries
                .iter()
                .filter(move |(_, e)| e.node.as_deref() == Some(node))
        };
        on_node()
            .find(|(_, e)| e.namespace == "istio-system" && e.service_account == "ztunnel")
            .or_else(|| on_node().next())
            .map(|(t, e)| (t.as_str(), e))
    }
}

/// How the clients authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// No token: no `authorization` or `clusterid` header.
    None,
    /// The same token for every client.
    Token(String),
    /// Each client the token of its node.
    Tokens(TokenFile),
}

/// One config per client: distinct nodes, tokens by node, certificates if asked.
pub fn plan(
    clients: usize,
    nodes: &Nodes,
    auth: &Auth,
    certificates: bool,
) -> Result<Vec<ZtunnelConfig>, PlanError> {
    if clients == 0 {
        return Err(PlanError::NoClients);
    }
    let names: Vec<String> = match nodes {
        Nodes::Prefix(p) => (0..clients).map(|i| format!("{p}{i:04}")).collect(),
        Nodes::List(list) => {
            let mut seen = BTreeSet::new();
            for n in list {
                if !seen.insert(n) {
                    return Err(PlanError::DuplicateNode { node: n.clone() });
                }
            }
            if list.len() < clients {
                return Err(PlanError::TooFewNodes {
                    wanted: clients,
                    have: list.len(),
                    source_of_nodes: "--nodes".into(),
                });
            }
            list[..clients].to_vec()
        }
        Nodes::FromTokens => match auth {
            Auth::Tokens(file) => {
                let nodes = file.nodes();
                if nodes.len() < clients {
                    return Err(PlanError::TooFewNodes {
                        wanted: clients,
                        have: nodes.len(),
                        source_of_nodes: format!("the nodes of {}", file.path.display()),
                    });
                }
                nodes[..clients].to_vec()
            }
            _ => (0..clients).map(|i| format!("node-{i:04}")).collect(),
        },
    };
    names
        .into_iter()
        .enumerate()
        .map(|(i, node)| {
            let mut cfg = ZtunnelConfig::new(i, node);
            cfg.certificates = certificates;
            match auth {
                Auth::None => {}
                Auth::Token(t) => cfg.token = Some(t.clone()),
                Auth::Tokens(file) => {
                    let (token, entry) =
                        file.for_node(&cfg.node_name)
                            .ok_or_else(|| PlanError::NoTokenForNode {
                                path: file.path.clone(),
                                node: cfg.node_name.clone(),
                            })?;
                    cfg.token = Some(token.to_string());
                    cfg.namespace = entry.namespace.clone();
                    if let Some(pod) = &entry.pod_name {
                        cfg.pod_name = pod.clone();
                    }
                }
            }
            Ok(cfg)
        })
        .collect()
}

/// A set of running simulated ztunnels.
pub struct Fleet {
    clients: Vec<ZtunnelHandle>,
    counters: Arc<FleetCounters>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("clients", &self.clients.len())
            .field("connected", &self.counters.connected())
            .field("synced", &self.counters.synced())
            .finish()
    }
}

impl Fleet {
    /// Starts one client per config; every client reports to every observer.
    pub fn spawn(
        target: &Target,
        configs: Vec<ZtunnelConfig>,
        observers: Vec<Arc<dyn Observer>>,
    ) -> Result<Fleet, TargetError> {
        let observers: Arc<[Arc<dyn Observer>]> = observers.into();
        let counters = Arc::new(FleetCounters::default());
        let clients = configs
            .into_iter()
            .map(|cfg| ztunnel::spawn(target, cfg, Arc::clone(&observers), Arc::clone(&counters)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Fleet { clients, counters })
    }

    pub fn len(&self) -> usize {
        self.clients.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    pub fn clients(&self) -> &[ZtunnelHandle] {
        &self.clients
    }

    /// Client `i` (panics when out of range, like indexing).
    pub fn client(&self, i: usize) -> &ZtunnelHandle {
        &self.clients[i]
    }

    pub fn counters(&self) -> &Arc<FleetCounters> {
        &self.counters
    }

    /// Clients with an open stream.
    pub fn connected(&self) -> usize {
        self.counters.connected()
    }

    /// Clients synced (one ACK of each type, ever).
    pub fn synced(&self) -> usize {
        self.counters.synced()
    }

    /// Completes once at least `n` clients are synced.
    pub async fn wait_synced(&self, n: usize) {
        let mut rx = self.counters.subscribe();
        loop {
            rx.borrow_and_update();
            if self.synced() >= n {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Completes once exactly `n` clients have an open stream.
    pub async fn wait_connected(&self, n: usize) {
        let mut rx = self.counters.subscribe();
        loop {
            rx.borrow_and_update();
            if self.connected() == n {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Stops every client and waits for them to end.
    pub async fn shutdown(self) {
        for c in &self.clients {
            c.stop();
        }
        for c in self.clients {
            c.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> TokenFile {
        TokenFile::parse(
            Path::new("tokens.yaml"),
            "zt-b: {namespace: istio-system, serviceAccount: ztunnel, node: node-b, podName: ztunnel-b}\n\
             app-a: {namespace: default, serviceAccount: sleep, node: node-a}\n\
             zt-a: {namespace: istio-system, serviceAccount: ztunnel, node: node-a}\n\
             other: {namespace: default, serviceAccount: sleep}\n",
        )
        .expect("tokens")
    }

    #[test]
    fn clients_get_distinct_nodes_and_their_nodes_token() {
        let file = tokens();
        assert_eq!(file.nodes(), ["node-a", "node-b"]);
        let cfgs = plan(2, &Nodes::FromTokens, &Auth::Tokens(file.clone()), true).expect("plan");
        let got: Vec<_> = cfgs
            .iter()
            .map(|c| {
                (
                    c.index,
                    c.node_name.as_str(),
                    c.token.as_deref(),
                    c.namespace.as_str(),
                    c.pod_name.as_str(),
                    c.certificates,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    0,
                    "node-a",
                    Some("zt-a"),
                    "istio-system",
                    "ztunnel-00000",
                    true
                ),
                (1, "node-b", Some("zt-b"), "istio-system", "ztunnel-b", true),
            ]
        );
        let err = plan(3, &Nodes::FromTokens, &Auth::Tokens(file.clone()), false).expect_err("3");
        assert!(
            matches!(
                err,
                PlanError::TooFewNodes {
                    wanted: 3,
                    have: 2,
                    ..
                }
            ),
            "{err}"
        );
        let err =
            plan(1, &Nodes::Prefix("n-".into()), &Auth::Tokens(file), false).expect_err("n-0000");
        assert!(
            err.to_string().contains("no token for node n-0000"),
            "{err}"
        );
    }

    #[test]
    fn nodes_from_prefix_or_list() {
        let cfgs = plan(3, &Nodes::parse("node-"), &Auth::Token("t".into()), false).expect("plan");
        let nodes: Vec<_> = cfgs.iter().map(|c| c.node_name.as_str()).collect();
        assert_eq!(nodes, ["node-0000", "node-0001", "node-0002"]);
        assert!(cfgs.iter().all(|c| c.token.as_deref() == Some("t")));
        assert_eq!(
            Nodes::parse("kind-control-plane,"),
            Nodes::List(vec!["kind-control-plane".into()])
        );
        let cfgs = plan(1, &Nodes::parse("a,b"), &Auth::None, false).expect("plan");
        assert_eq!(cfgs[0].node_name, "a");
        assert!(matches!(
            plan(1, &Nodes::parse("a,a"), &Auth::None, false),
            Err(PlanError::DuplicateNode { .. })
        ));
        assert!(matches!(
            plan(0, &Nodes::FromTokens, &Auth::None, false),
            Err(PlanError::NoClients)
        ));
        let cfgs = plan(2, &Nodes::FromTokens, &Auth::None, false).expect("plan");
        assert_eq!(cfgs[1].node_name, "node-0001");
    }

    #[test]
    fn a_bad_tokens_file_says_what_it_should_hold() {
        let err = TokenFile::parse(Path::new("t.yaml"), "tok: {namespace: a}\n").expect_err("bad");
        assert!(
            err.to_string()
                .contains("{namespace, serviceAccount, node, podName}"),
            "{err}"
        );
        let err = TokenFile::parse(Path::new("t.yaml"), "{}").expect_err("empty");
        assert!(err.to_string().contains("no token"), "{err}");
    }
}
