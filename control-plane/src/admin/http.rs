//! The HTTP/1.1 side of the admin server: accepting connections, routing, query strings and responses.
//!
//! Every connection gets its own task; documents that read the index are computed on the blocking pool
//! under the index's read lock, so a large cluster's dump neither stalls the runtime nor holds the lock
//! longer than one document takes.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{Instrument, debug, info, info_span, warn};

use super::api::ErrorDoc;
use super::views::{self, Filter, ViewError};
use super::{AdminState, ENDPOINTS};

/// After shutdown, how long open connections may take to finish the request in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// How long a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";

/// Serves the admin API on `listener` until `shutdown` completes; then stops accepting, lets requests in
/// flight finish (for at most two seconds) and returns. Binds nothing itself.
pub async fn serve(listener: TcpListener, state: AdminState, shutdown: impl Future<Output = ()>) {
    let addr = listener
        .local_addr()
        .map_or_else(|_| "unknown".to_string(), |a| a.to_string());
    let span = info_span!("admin", %addr);
    serve_inner(listener, state, shutdown)
        .instrument(span)
        .await
}

async fn serve_inner(listener: TcpListener, state: AdminState, shutdown: impl Future<Output = ()>) {
    info!("admin API listening");
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(
                        serve_connection(stream, peer, state.clone(), stop_rx.clone())
                            .in_current_span(),
                    );
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!("admin accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        debug!("admin connections still open after the grace period; closing them");
    }
    connections.abort_all();
    info!("admin API stopped");
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    state: AdminState,
    mut stop: watch::Receiver<bool>,
) {
    let service = service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(&state, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                debug!(%peer, "admin connection ended: {e}");
            }
        }
        () = stopped => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

async fn handle(state: &AdminState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let response = route(state, &method, &path, req.uri().query().unwrap_or("")).await;
    debug!(%method, path, status = response.status().as_u16(), "admin request");
    response
}

async fn route(
    state: &AdminState,
    method: &Method,
    path: &str,
    query: &str,
) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        let mut resp = error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not served: the admin API is read-only (GET or HEAD)"),
        );
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    let allowed: &[&str] = match path {
        "/debug/workloads" | "/debug/connections" => &["namespace", "node"],
        "/debug/services" | "/debug/policies" | "/debug/diagnostics" | "/debug/waypoints" => {
            &["namespace"]
        }
        "/debug/sync" => &["name", "type"],
        _ => &[],
    };
    let params = match parse_query(query) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    if let Some(unknown) = params.keys().find(|k| !allowed.contains(&k.as_str())) {
        let accepted = if allowed.is_empty() {
            "it takes none".to_string()
        } else {
            format!("use {}", allowed.join(", "))
        };
        return error(
            StatusCode::BAD_REQUEST,
            format!("unknown query parameter {unknown:?} for {path}: {accepted}"),
        );
    }
    let filter = Filter {
        namespace: params.get("namespace").cloned(),
        node: params.get("node").cloned(),
    };

    match path {
        "/ready" => {
            if state.is_ready() {
                text(StatusCode::OK, TEXT, "ready\n".to_string())
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    TEXT,
                    "not ready\n".to_string(),
                )
            }
        }
        "/metrics" => match state.metrics.encode() {
            Ok(body) => text(StatusCode::OK, crate::metrics::CONTENT_TYPE, body),
            Err(_) => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the metrics could not be encoded".to_string(),
            ),
        },
        "/" | "/debug" | "/debug/" => json(
            StatusCode::OK,
            &serde_json::json!({ "endpoints": ENDPOINTS }),
        ),
        "/debug/workloads" => {
            from_index(state, move |index, _| views::workloads(index, &filter)).await
        }
        "/debug/services" => {
            from_index(state, move |index, _| views::services(index, &filter)).await
        }
        "/debug/policies" => {
            from_index(state, move |index, source| {
                views::policies(index, source, &filter)
            })
            .await
        }
        "/debug/diagnostics" => {
            from_index(state, move |index, source| {
                views::diagnostics(index, source, &filter)
            })
            .await
        }
        "/debug/waypoints" => {
            from_index(state, move |index, _| views::waypoints(index, &filter)).await
        }
        "/debug/connections" => {
            let registry = state.connections.clone();
            blocking(move || Ok(views::connections(registry.connections(), &filter))).await
        }
        "/debug/certs" => match &state.certs {
            Some(certs) => {
                let certs = certs.clone();
                blocking(move || Ok(certs())).await
            }
            None => json(StatusCode::OK, &super::api::CertsDoc::default()),
        },
        "/debug/config" => json(StatusCode::OK, &*state.config),
        "/debug/sync" => {
            let Some(name) = params.get("name").filter(|n| !n.is_empty()).cloned() else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "/debug/sync needs ?name=RESOURCE (a workload uid, namespace/hostname or \
                     namespace/policy)"
                        .to_string(),
                );
            };
            let requested = params.get("type").cloned();
            let index = state.index.clone();
            let registry = state.connections.clone();
            let doc = tokio::task::spawn_blocking(move || {
                let type_url = {
                    let index = index.read().map_err(SyncError::Failed)?;
                    views::sync_type(&index, requested.as_deref(), &name)
                };
                let type_url = type_url
                    .ok_or_else(|| SyncError::UnknownType(requested.unwrap_or_default()))?;
                // The registry is asked without the index lock held.
                let entries = registry.sync(type_url, &name);
                let index = index.read().map_err(SyncError::Failed)?;
                Ok::<_, SyncError>(views::sync(&index, type_url, &name, entries))
            })
            .await;
            match doc {
                Ok(Ok(doc)) => json(StatusCode::OK, &doc),
                Ok(Err(SyncError::Failed(e))) => {
                    error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
                }
                Ok(Err(SyncError::UnknownType(t))) => error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "unknown type {t:?}: use Address or Authorization (or their type URLs)"
                    ),
                ),
                Err(e) => internal(&e),
            }
        }
        _ => {
            let doc = ErrorDoc {
                error: format!("no endpoint {path}"),
                endpoints: ENDPOINTS.iter().map(|e| e.to_string()).collect(),
            };
            json(StatusCode::NOT_FOUND, &doc)
        }
    }
}

/// Computes a document from the index (under its read lock) and the source diagnostics, on the blocking
/// pool.
async fn from_index<T: Serialize + Send + 'static>(
    state: &AdminState,
    view: impl FnOnce(&ambient_index::Index, &[crate::source::SourceDiagnostic]) -> Result<T, ViewError>
    + Send
    + 'static,
) -> Response<Full<Bytes>> {
    let index = state.index.clone();
    let source = state.source_diagnostics.clone();
    blocking(move || {
        let diagnostics = source.map(|f| f()).unwrap_or_default();
        let index = index.read()?;
        view(&index, &diagnostics)
    })
    .await
}

/// Why `/debug/sync` could not answer.
enum SyncError {
    Failed(crate::shared_index::IndexFailed),
    UnknownType(String),
}

async fn blocking<T: Serialize + Send + 'static>(
    f: impl FnOnce() -> Result<T, ViewError> + Send + 'static,
) -> Response<Full<Bytes>> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(doc)) => json(StatusCode::OK, &doc),
        Ok(Err(ViewError::IndexFailed(e))) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Ok(Err(e)) => {
            warn!("admin document failed: {e}");
            error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
        Err(e) => internal(&e),
    }
}

fn internal(e: &tokio::task::JoinError) -> Response<Full<Bytes>> {
    warn!("admin document task failed: {e}");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the document could not be computed (see the server log)".to_string(),
    )
}

fn json<T: Serialize + ?Sized>(status: StatusCode, doc: &T) -> Response<Full<Bytes>> {
    match serde_json::to_vec_pretty(doc) {
        Ok(mut body) => {
            body.push(b'\n');
            respond(status, JSON, Bytes::from(body))
        }
        Err(e) => {
            warn!("admin document does not serialize: {e}");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                TEXT,
                "the document could not be serialized\n".to_string(),
            )
        }
    }
}

fn error(status: StatusCode, message: String) -> Response<Full<Bytes>> {
    json(
        status,
        &ErrorDoc {
            error: message,
            endpoints: Vec::new(),
        },
    )
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    respond(status, content_type, Bytes::from(body))
}

fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `a=1&b=x%2Fy` → `{a: 1, b: x/y}` (`+` is a space; a repeated key keeps its last value).
pub(crate) fn parse_query(query: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(k).ok_or_else(|| format!("bad escape in query key {k:?}"))?;
        let value = percent_decode(v).ok_or_else(|| format!("bad escape in query value {v:?}"))?;
        out.insert(key, value);
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode() {
        let q =
            parse_query("namespace=backend&name=Kubernetes%2F%2FPod%2Fa%2Fb&x=a+b&flag").unwrap();
        assert_eq!(q["namespace"], "backend");
        assert_eq!(q["name"], "Kubernetes//Pod/a/b");
        assert_eq!(q["x"], "a b");
        assert_eq!(q["flag"], "");
        assert_eq!(parse_query("").unwrap().len(), 0);
        assert!(parse_query("a=%zz").is_err());
        assert!(parse_query("a=%4").is_err());
        assert!(parse_query("a=%ff").is_err());
    }
}
