//! The token the start banner's ztunnel command authenticates with: picked from a `tokens=FILE` the
//! operator gave, or, on a first run with no `--auth`, made here for the pod the banner names. Either way
//! ztunnel reads it from `<state-dir>/ztunnel-token` (`AUTH_TOKEN` names a file and sends its bytes
//! verbatim, so it holds the token without a newline). Every file written here is readable by its owner
//! only, and replaced whole (written beside it, then renamed), so a ztunnel reading it never sees half.

use std::collections::BTreeMap;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use ambient_index::Index;
use tracing::warn;

/// The file of a first-run token, in the tokens-file format `tokens=FILE` reads.
pub const FIRST_RUN_TOKENS_FILE: &str = "first-run-tokens.yaml";

/// The file holding the banner's token alone, ztunnel's `AUTH_TOKEN`.
pub const ZTUNNEL_TOKEN_FILE: &str = "ztunnel-token";

/// The token the banner shows, with the workload it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenExample {
    /// The absolute path of the file holding just the token.
    pub file: PathBuf,
    /// `namespace/pod/service-account` for `PROXY_WORKLOAD_INFO`.
    pub workload_info: String,
}

/// The workload the banner's ztunnel command stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub namespace: String,
    pub pod: String,
    pub service_account: String,
}

impl Workload {
    /// `namespace/pod/service-account`, ztunnel's `PROXY_WORKLOAD_INFO`.
    pub fn info(&self) -> String {
        format!("{}/{}/{}", self.namespace, self.pod, self.service_account)
    }

    /// A pod of the config that a dedicated-mode ztunnel can stand for: it has a service account, runs
    /// outside the system namespace and not on the host network. `default/local/default` when there is
    /// none (an empty folder).
    pub fn example(index: &Index) -> Workload {
        let system = &index.settings().system_namespace;
        index
            .pods()
            .into_iter()
            .find(|p| {
                !p.service_account.is_empty() && p.meta.namespace != *system && !p.host_network
            })
            .map(|p| Workload {
                namespace: p.meta.namespace.to_string(),
                pod: p.meta.name.to_string(),
                service_account: p.service_account.to_string(),
            })
            .unwrap_or_else(|| Workload {
                namespace: "default".to_string(),
                pod: "local".to_string(),
                service_account: "default".to_string(),
            })
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenEntry {
    namespace: String,
    service_account: String,
    #[serde(default)]
    pod_name: Option<String>,
}

/// From an operator's tokens file: a token for a workload (not a node account, which would need
/// impersonation), or any token when there is no other, written to `<state-dir>/ztunnel-token`. `None`
/// when the file cannot be read (its authenticator reports why) or the token cannot be written (a
/// warning; the banner then shows no token).
pub fn pick(
    path: &Path,
    node_accounts: &[(String, String)],
    state_dir: &Path,
) -> Option<TokenExample> {
    let text = std::fs::read_to_string(path).ok()?;
    let entries: BTreeMap<String, TokenEntry> = serde_norway::from_str(&text).ok()?;
    let is_node = |e: &TokenEntry| {
        node_accounts
            .iter()
            .any(|(ns, sa)| *ns == e.namespace && *sa == e.service_account)
    };
    let (token, entry) = entries
        .iter()
        .find(|(_, e)| !is_node(e))
        .or_else(|| entries.iter().next())?;
    let pod = entry.pod_name.as_deref().unwrap_or(&entry.service_account);
    let workload_info = format!("{}/{pod}/{}", entry.namespace, entry.service_account);
    let file = state_dir.join(ZTUNNEL_TOKEN_FILE);
    match write_private(&file, token.as_bytes()) {
        Ok(file) => Some(TokenExample {
            file,
            workload_info,
        }),
        Err(e) => {
            warn!(path = %file.display(), "could not write the example ztunnel token: {e}");
            None
        }
    }
}

/// A first-run token: a new random token for `workload`, written with its account to
/// `<state-dir>/first-run-tokens.yaml` (returned, for the token authenticator) and alone to
/// `<state-dir>/ztunnel-token`. Each start makes a new one, so a token copied from an earlier run stops
/// working.
pub fn first_run(
    state_dir: &Path,
    workload: &Workload,
) -> Result<(PathBuf, TokenExample), TokenError> {
    let token = random_token().map_err(|source| TokenError {
        path: state_dir.join(FIRST_RUN_TOKENS_FILE),
        source,
    })?;
    let entry = serde_json::json!({
        token.as_str(): {
            "namespace": workload.namespace,
            "serviceAccount": workload.service_account,
            "podName": workload.pod,
        }
    });
    let tokens = state_dir.join(FIRST_RUN_TOKENS_FILE);
    // JSON is YAML, and `tokens=FILE` reads both.
    let text = format!("{entry}\n");
    let tokens = write_private(&tokens, text.as_bytes()).map_err(|source| TokenError {
        path: tokens,
        source,
    })?;
    let file = state_dir.join(ZTUNNEL_TOKEN_FILE);
    let file = write_private(&file, token.as_bytes())
        .map_err(|source| TokenError { path: file, source })?;
    Ok((
        tokens,
        TokenExample {
            file,
            workload_info: workload.info(),
        },
    ))
}

/// A first-run token file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {}: {source}", .path.display())]
pub struct TokenError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// 32 random bytes, hex: 64 characters with nothing a bearer header would mangle.
fn random_token() -> io::Result<String> {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| io::Error::other("the system random source failed"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes `contents` to `path` readable by its owner only (created so, never wider for an instant), by
/// way of a file beside it that is then renamed over it. Creates the folder. Returns the absolute path.
fn write_private(path: &Path, contents: &[u8]) -> io::Result<PathBuf> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let partial = dir.join(format!(".{name}.partial"));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(&partial)?;
    // A file left by an earlier run keeps its mode on open: narrow it before writing.
    restrict_to_owner(&partial)?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&partial, path)?;
    Ok(std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()))
}

#[cfg(unix)]
fn restrict_to_owner(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn restrict_to_owner(_path: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ambient_index::testing::{pod, test_settings};

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_example_is_a_workload_pod_outside_the_system_namespace() {
        let index = Index::build(
            test_settings(),
            [
                pod("istio-system", "ztunnel-x").sa("ztunnel").build(),
                pod("shop", "host").sa("host").host_network().build(),
                pod("shop", "cart-1").sa("cart").build(),
            ],
        );
        assert_eq!(Workload::example(&index).info(), "shop/cart-1/cart");
        let empty = Index::new(test_settings());
        assert_eq!(Workload::example(&empty).info(), "default/local/default");
    }

    #[test]
    fn a_first_run_token_is_written_owner_only_in_the_tokens_file_format() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let workload = Workload {
            namespace: "shop".to_string(),
            pod: "cart-1".to_string(),
            service_account: "cart".to_string(),
        };
        let (tokens, example) = first_run(&state, &workload).unwrap();
        assert_eq!(
            tokens,
            std::path::absolute(state.join("first-run-tokens.yaml")).unwrap()
        );
        assert_eq!(
            example,
            TokenExample {
                file: std::path::absolute(state.join("ztunnel-token")).unwrap(),
                workload_info: "shop/cart-1/cart".to_string(),
            }
        );
        let token = std::fs::read_to_string(&example.file).unwrap();
        assert_eq!(token.len(), 64);
        assert!(token.chars().all(|c| c.is_ascii_hexdigit()), "{token}");
        let text = std::fs::read_to_string(&tokens).unwrap();
        let entries: BTreeMap<String, serde_json::Value> = serde_norway::from_str(&text).unwrap();
        assert_eq!(
            entries,
            BTreeMap::from([(
                token.clone(),
                serde_json::json!({"namespace": "shop", "serviceAccount": "cart", "podName": "cart-1"})
            )])
        );
        #[cfg(unix)]
        {
            assert_eq!(mode(&tokens), 0o600);
            assert_eq!(mode(&example.file), 0o600);
        }
        // A second start makes another token and leaves no partial file behind.
        let (_, again) = first_run(&state, &workload).unwrap();
        assert_ne!(std::fs::read_to_string(&again.file).unwrap(), token);
        let mut names: Vec<String> = std::fs::read_dir(&state)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["first-run-tokens.yaml", "ztunnel-token"]);
    }

    #[cfg(unix)]
    #[test]
    fn a_token_file_left_readable_is_narrowed_to_its_owner() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ztunnel-token");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let partial = dir.path().join(".ztunnel-token.partial");
        std::fs::write(&partial, "stale").unwrap();
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn an_operators_tokens_file_gives_a_workload_token_before_a_node_token() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens.yaml");
        std::fs::write(
            &tokens,
            "a-node: {namespace: istio-system, serviceAccount: ztunnel, node: n1}\n\
             b-work: {namespace: shop, serviceAccount: cart, podName: cart-1}\n",
        )
        .unwrap();
        let state = dir.path().join("state");
        let nodes = [("istio-system".to_string(), "ztunnel".to_string())];
        let example = pick(&tokens, &nodes, &state).unwrap();
        assert_eq!(example.workload_info, "shop/cart-1/cart");
        assert_eq!(std::fs::read(&example.file).unwrap(), b"b-work");
        assert_eq!(pick(&dir.path().join("missing"), &nodes, &state), None);
    }
}
