//! The admin API client of `ambientd zc`: one plain HTTP/1.1 GET per command, over a fresh TCP
//! connection, with a connect and a response timeout.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{ACCEPT, HOST};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::ZcError;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// A parsed `--admin` URL: `http://HOST:PORT[/prefix]` (`HOST:PORT` alone means the same).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminUrl {
    /// `host:port`, what is dialled and sent as `Host`.
    authority: String,
    /// A path prefix (no trailing slash), for an admin API behind a proxy path.
    prefix: String,
    /// The URL as the user wrote it, for messages.
    shown: String,
}

impl AdminUrl {
    pub fn parse(url: &str) -> Result<AdminUrl, ZcError> {
        let bad = |reason: &str| ZcError::BadUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let with_scheme = if url.contains("://") {
            url.to_string()
        } else {
            format!("http://{url}")
        };
        let uri: Uri = with_scheme.parse().map_err(|e| bad(&format!("{e}")))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(bad(&format!(
                    "the {other} scheme is not supported, the admin API speaks plain http"
                )));
            }
            None => return Err(bad("no scheme")),
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("user information is not supported"));
        }
        let port = authority.port_u16().unwrap_or(80);
        Ok(AdminUrl {
            authority: format!("{}:{port}", authority.host()),
            prefix: uri.path().trim_end_matches('/').to_string(),
            shown: url.to_string(),
        })
    }

    /// The full URL of `path_and_query`, for messages.
    pub fn show(&self, path_and_query: &str) -> String {
        format!("http://{}{}{path_and_query}", self.authority, self.prefix)
    }

    pub fn as_given(&self) -> &str {
        &self.shown
    }
}

/// GETs `path_and_query` and returns the status and the whole body.
pub async fn get(url: &AdminUrl, path_and_query: &str) -> Result<(u16, Bytes), ZcError> {
    let shown = url.show(path_and_query);
    let unreachable = |source: std::io::Error| ZcError::Unreachable {
        url: url.as_given().to_string(),
        source,
    };
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&url.authority))
        .await
        .map_err(|_| {
            unreachable(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no connection within {} s", CONNECT_TIMEOUT.as_secs()),
            ))
        })?
        .map_err(unreachable)?;
    let http = |source: hyper::Error| ZcError::Http {
        url: shown.clone(),
        source,
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http)?;
    let conn = tokio::spawn(conn);
    let request = Request::get(format!("{}{path_and_query}", url.prefix))
        .header(HOST, &url.authority)
        .header(ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|e| ZcError::BadUrl {
            url: url.as_given().to_string(),
            reason: e.to_string(),
        })?;
    let exchange = async {
        let response = sender.send_request(request).await.map_err(http)?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.map_err(http)?;
        Ok::<_, ZcError>((status, body.to_bytes()))
    };
    let result = tokio::time::timeout(RESPONSE_TIMEOUT, exchange)
        .await
        .map_err(|_| ZcError::Timeout {
            url: shown.clone(),
            secs: RESPONSE_TIMEOUT.as_secs(),
        })?;
    conn.abort();
    result
}

/// `key=value&…` with every byte outside the unreserved set percent-encoded.
pub fn query(params: &[(&str, &str)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let u = AdminUrl::parse("http://127.0.0.1:15014").unwrap();
        assert_eq!(u.show("/debug/certs"), "http://127.0.0.1:15014/debug/certs");
        let u = AdminUrl::parse("localhost:9000/").unwrap();
        assert_eq!(u.show("/x"), "http://localhost:9000/x");
        let u = AdminUrl::parse("http://example.test/ambientd/").unwrap();
        assert_eq!(u.show("/x"), "http://example.test:80/ambientd/x");
        for bad in ["https://127.0.0.1:15014", "http://", "http://u:p@h:1", "::"] {
            assert!(AdminUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn queries_encode() {
        assert_eq!(
            query(&[("name", "Kubernetes//Pod/a b"), ("type", "Address")]),
            "name=Kubernetes%2F%2FPod%2Fa%20b&type=Address"
        );
    }
}
