//! Who may open a stream: the caller is authenticated by the same authenticators as the CA's, then
//! istiod's identity check — the caller's namespace must be the node's, and its service account the
//! node's `SERVICE_ACCOUNT` when that is set.

use std::net::SocketAddr;
use std::sync::Arc;

use ambient_ca::{Identity, RequestInfo};
use rustls_pki_types::CertificateDer;
use tonic::Status;
use tonic::metadata::MetadataMap;
use tracing::{info, warn};

use super::XdsConfig;
use super::node::Peer;

/// What the request that opened the stream carried besides its messages.
pub(super) struct Opening {
    pub(super) metadata: MetadataMap,
    pub(super) peer_certificates: Option<Arc<Vec<CertificateDer<'static>>>>,
    pub(super) remote_addr: Option<SocketAddr>,
}

/// Admits stream `conn` for `peer`, or says why not (istiod's statuses and words).
pub(super) async fn admit(
    config: &XdsConfig,
    opening: &Opening,
    peer: &Peer,
    conn: u64,
) -> Result<(), Status> {
    let Some(authenticators) = &config.authenticators else {
        info!(conn, node = %peer.node, remote = ?opening.remote_addr, "xDS stream opened");
        return Ok(());
    };
    let requested = Identity {
        trust_domain: config.trust_domain.clone(),
        namespace: peer.namespace.clone(),
        service_account: peer
            .service_account
            .clone()
            .unwrap_or_else(|| peer.proxy_type.clone()),
    };
    let info = RequestInfo {
        metadata: &opening.metadata,
        peer_certificates: opening.peer_certificates.as_deref().map(Vec::as_slice),
    };
    let mut caller = None;
    for a in authenticators.iter() {
        match a.authenticate(&info, &requested).await {
            Ok(Some(c)) => {
                caller = Some(c);
                break;
            }
            Ok(None) => continue,
            Err(e) => {
                warn!(conn, node = %peer.node, authenticator = a.name(),
                    reason = e.reason(), "xDS caller refused: {e}");
                return Err(Status::unauthenticated(ambient_ca::AUTHENTICATE_FAILURE));
            }
        }
    }
    let Some(caller) = caller else {
        let tried: Vec<&str> = authenticators.iter().map(|a| a.name()).collect();
        warn!(conn, node = %peer.node, tried = %tried.join(", "),
            "xDS caller refused: no authenticator recognised it (no bearer token or client certificate?)");
        return Err(Status::unauthenticated(ambient_ca::AUTHENTICATE_FAILURE));
    };
    let id = &caller.identity;
    let ns_ok = peer.namespace.is_empty() || id.namespace == peer.namespace;
    let sa_ok = peer
        .service_account
        .as_ref()
        .is_none_or(|sa| *sa == id.service_account);
    if !ns_ok || !sa_ok {
        return Err(Status::permission_denied(format!(
            "the caller is {id}, which may not act for node {} (namespace {:?}{})",
            peer.node,
            peer.namespace,
            peer.service_account
                .as_ref()
                .map(|sa| format!(", service account {sa:?}"))
                .unwrap_or_default()
        )));
    }
    info!(conn, node = %peer.node, caller = %caller, remote = ?opening.remote_addr,
        "xDS stream opened");
    Ok(())
}
