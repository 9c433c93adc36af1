//! The delta ADS call at the HTTP/2 level: gRPC framing of requests and responses, without tonic's
//! per-stream codec buffers.
//!
//! tonic's streaming codec keeps, for the life of each stream, an encode buffer and a decode buffer as
//! large as the largest message it carried. An initial response holds every resource (about 4 MB at
//! 10,000 pods) and a reconnect request lists every version held (about 0.7 MB), so a thousand ztunnels
//! would pin gigabytes that are never used again. Here:
//! - each response is encoded straight from the index's shared resource bodies into one buffer of
//!   exactly its framed size, handed to HTTP/2, and freed once written — no intermediate message structs,
//!   no copy per resource besides that one;
//! - each request is gathered in a buffer that is released after a large message.
//!
//! On the wire nothing differs from a generated service: the same path, `content-type:
//! application/grpc`, uncompressed length-prefixed protobuf messages, the status in the trailers.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use http_body_util::BodyExt;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::server::NamedService;
use tonic::{Code, Status};

use ambient_proto::frames::{FrameError, Frames, HEADER};

use super::XdsServer;
use ambient_index::Resource;

/// The service's gRPC name.
pub const SERVICE_NAME: &str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
const DELTA_METHOD: &str = "DeltaAggregatedResources";
const SOTW_METHOD: &str = "StreamAggregatedResources";
/// The largest request accepted (a reconnect lists every name held).
const MAX_REQUEST: usize = 64 * 1024 * 1024;

// Field numbers of envoy.service.discovery.v3.DeltaDiscoveryResponse, Resource and google.protobuf.Any.
const RESPONSE_RESOURCES: u32 = 2;
const RESPONSE_TYPE_URL: u32 = 4;
const RESPONSE_NONCE: u32 = 5;
const RESPONSE_REMOVED: u32 = 6;
const RESOURCE_VERSION: u32 = 1;
const RESOURCE_RESOURCE: u32 = 2;
const RESOURCE_NAME: u32 = 3;
const ANY_TYPE_URL: u32 = 1;
const ANY_VALUE: u32 = 2;

/// A `DeltaDiscoveryResponse`, gRPC-framed: resources (bodies copied once, from the index's shared
/// buffers), removed names, type URL and nonce.
pub(super) fn encode_response<'a, I>(
    type_url: &str,
    resources: impl Fn() -> I,
    removed: &[Arc<str>],
    nonce: &str,
) -> Bytes
where
    I: Iterator<Item = (&'a str, &'a Resource)>,
{
    let any_len =
        |r: &Resource| field_len(ANY_TYPE_URL, type_url.len()) + field_len(ANY_VALUE, r.body.len());
    let resource_len = |name: &str, r: &Resource| {
        field_len(RESOURCE_NAME, name.len())
            + field_len(RESOURCE_VERSION, 16)
            + field_len(RESOURCE_RESOURCE, any_len(r))
    };
    let mut len = 0;
    for (name, r) in resources() {
        len += field_len(RESPONSE_RESOURCES, resource_len(name, r));
    }
    len += string_field_len(RESPONSE_TYPE_URL, type_url);
    len += string_field_len(RESPONSE_NONCE, nonce);
    for name in removed {
        len += field_len(RESPONSE_REMOVED, name.len());
    }

    let mut buf = BytesMut::with_capacity(HEADER + len);
    buf.put_u8(0);
    buf.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    for (name, r) in resources() {
        length_delimited(RESPONSE_RESOURCES, resource_len(name, r), &mut buf);
        length_delimited(RESOURCE_NAME, name.len(), &mut buf);
        buf.put_slice(name.as_bytes());
        length_delimited(RESOURCE_VERSION, 16, &mut buf);
        buf.put_slice(&hex16(r.version));
        length_delimited(RESOURCE_RESOURCE, any_len(r), &mut buf);
        length_delimited(ANY_TYPE_URL, type_url.len(), &mut buf);
        buf.put_slice(type_url.as_bytes());
        length_delimited(ANY_VALUE, r.body.len(), &mut buf);
        buf.put_slice(&r.body);
    }
    // proto3 leaves empty strings out.
    if !type_url.is_empty() {
        length_delimited(RESPONSE_TYPE_URL, type_url.len(), &mut buf);
        buf.put_slice(type_url.as_bytes());
    }
    if !nonce.is_empty() {
        length_delimited(RESPONSE_NONCE, nonce.len(), &mut buf);
        buf.put_slice(nonce.as_bytes());
    }
    for name in removed {
        length_delimited(RESPONSE_REMOVED, name.len(), &mut buf);
        buf.put_slice(name.as_bytes());
    }
    debug_assert_eq!(buf.len(), HEADER + len);
    buf.freeze()
}

/// Encoded length of a length-delimited field of `len` bytes.
fn field_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

fn string_field_len(tag: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        field_len(tag, s.len())
    }
}

fn length_delimited(tag: u32, len: usize, buf: &mut BytesMut) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}

/// A version as 16 lower-case hex digits (what [`Resource::version_string`] gives), without allocating.
fn hex16(v: u64) -> [u8; 16] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = DIGITS[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
    out
}

/// The request messages of one stream, decoded from the HTTP body as they arrive.
pub(super) struct Requests {
    body: Body,
    frames: Frames,
    done: bool,
}

impl Requests {
    pub(super) fn new(body: Body) -> Requests {
        Requests {
            body,
            frames: Frames::new(MAX_REQUEST),
            done: false,
        }
    }

    /// The next request; `Ok(None)` when the client closed its side.
    pub(super) async fn message(&mut self) -> Result<Option<DeltaDiscoveryRequest>, Status> {
        loop {
            if let Some(m) = self.take_message()? {
                return Ok(Some(m));
            }
            if self.done {
                return Ok(None);
            }
            match self.body.frame().await {
                None => {
                    self.done = true;
                    if !self.frames.is_empty() {
                        return Err(Status::invalid_argument(
                            "the request stream ended inside a message",
                        ));
                    }
                }
                Some(Err(status)) => {
                    self.done = true;
                    return Err(status);
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.frames.extend(&data);
                    }
                }
            }
        }
    }

    fn take_message(&mut self) -> Result<Option<DeltaDiscoveryRequest>, Status> {
        self.frames.next_message().map_err(|e| match e {
            FrameError::Compressed => Status::unimplemented(
                "compressed requests are not supported: send uncompressed messages",
            ),
            FrameError::TooLarge { len, max } => Status::out_of_range(format!(
                "a request of {len} bytes is over the limit of {max} bytes"
            )),
            FrameError::Decode(e) => {
                Status::invalid_argument(format!("the request is not a DeltaDiscoveryRequest: {e}"))
            }
        })
    }
}

/// The response body: framed messages from the connection task, then the status as trailers (OK when the
/// task ends without one).
struct Responses {
    rx: mpsc::Receiver<Result<Bytes, Status>>,
    ended: bool,
}

impl Stream for Responses {
    type Item = Result<http_body::Frame<Bytes>, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(bytes))) => Poll::Ready(Some(Ok(http_body::Frame::data(bytes)))),
            Poll::Ready(Some(Err(status))) => {
                self.ended = true;
                Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers(&status)))))
            }
            Poll::Ready(None) => {
                self.ended = true;
                let ok = Status::new(Code::Ok, "");
                Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers(&ok)))))
            }
        }
    }
}

fn trailers(status: &Status) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    // Only fails for a message that cannot be a header value, which percent-encoding rules out.
    let _ = status.add_header(&mut headers);
    headers
}

/// The ADS service: `DeltaAggregatedResources` served by [`XdsServer`], `StreamAggregatedResources`
/// answered `Unimplemented`.
#[derive(Debug, Clone)]
pub struct AdsService {
    server: XdsServer,
}

impl AdsService {
    pub(super) fn new(server: XdsServer) -> AdsService {
        AdsService { server }
    }
}

impl NamedService for AdsService {
    const NAME: &'static str = SERVICE_NAME;
}

type ResponseFuture =
    Pin<Box<dyn std::future::Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

impl tower::Service<http::Request<Body>> for AdsService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let method = request
            .uri()
            .path()
            .strip_prefix('/')
            .and_then(|p| p.strip_prefix(SERVICE_NAME))
            .and_then(|p| p.strip_prefix('/'))
            .unwrap_or("")
            .to_string();
        let server = self.server.clone();
        Box::pin(async move {
            let response = match method.as_str() {
                DELTA_METHOD => {
                    let rx = server.start(tonic::Request::from_http(request));
                    let body = Body::new(http_body_util::StreamBody::new(Responses { rx, ended: false }));
                    let mut response = http::Response::new(body);
                    response.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/grpc"),
                    );
                    response
                }
                SOTW_METHOD => Status::unimplemented(
                    "state-of-the-world xDS is not served: use DeltaAggregatedResources (delta xDS is required)",
                )
                .into_http(),
                other => Status::unimplemented(format!("{SERVICE_NAME} has no method {other:?}")).into_http(),
            };
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::service::discovery::v3::{
        DeltaDiscoveryResponse, Resource as XdsResource,
    };
    use envoy_types::pb::google::protobuf::Any;
    use prost::Message;

    fn resource(name: &str, body: &[u8]) -> Resource {
        Resource {
            name: Arc::from(name),
            version: xxhash_rust::xxh64::xxh64(body, 0),
            body: Bytes::copy_from_slice(body),
        }
    }

    #[test]
    fn responses_decode_as_envoys_message() {
        let long = vec![7u8; 300];
        let a = resource("Kubernetes//Pod/ns/a", b"\x0a\x01x");
        let b = resource("ns/svc.ns.svc.cluster.local", &long);
        let type_url = "type.googleapis.com/istio.workload.Address";
        let sent = [(&*a.name, &a), ("/10.0.0.1", &b)];
        let framed = encode_response(
            type_url,
            || sent.iter().copied(),
            &[Arc::from("gone")],
            "3-7",
        );
        assert_eq!(framed[0], 0);
        let len = u32::from_be_bytes([framed[1], framed[2], framed[3], framed[4]]) as usize;
        assert_eq!(len, framed.len() - HEADER);
        let decoded = DeltaDiscoveryResponse::decode(&framed[HEADER..]).unwrap();
        let expect = |name: &str, r: &Resource| XdsResource {
            name: name.to_string(),
            version: r.version_string(),
            resource: Some(Any {
                type_url: type_url.to_string(),
                value: r.body.to_vec(),
            }),
            ..Default::default()
        };
        assert_eq!(
            decoded,
            DeltaDiscoveryResponse {
                type_url: type_url.to_string(),
                resources: vec![expect(&a.name, &a), expect("/10.0.0.1", &b)],
                removed_resources: vec!["gone".to_string()],
                nonce: "3-7".to_string(),
                ..Default::default()
            }
        );
    }

    #[test]
    fn an_empty_response_is_just_type_and_nonce() {
        let framed = encode_response("t", std::iter::empty, &[], "n");
        let decoded = DeltaDiscoveryResponse::decode(&framed[HEADER..]).unwrap();
        assert_eq!(
            decoded,
            DeltaDiscoveryResponse {
                type_url: "t".into(),
                nonce: "n".into(),
                ..Default::default()
            }
        );
    }

    #[test]
    fn versions_are_sixteen_hex_digits() {
        for v in [0u64, 1, 0xdead_beef, u64::MAX, 0x0123_4567_89ab_cdef] {
            assert_eq!(std::str::from_utf8(&hex16(v)).unwrap(), format!("{v:016x}"));
        }
    }

    #[tokio::test]
    async fn requests_split_across_frames_and_large_ones_are_decoded() {
        let big = DeltaDiscoveryRequest {
            type_url: "t".into(),
            initial_resource_versions: (0..5000)
                .map(|i| (format!("Kubernetes//Pod/ns/pod-{i}"), format!("{i:016x}")))
                .collect(),
            ..Default::default()
        };
        let small = DeltaDiscoveryRequest {
            type_url: "t".into(),
            response_nonce: "1-1".into(),
            ..Default::default()
        };
        let mut wire = BytesMut::new();
        for m in [&big, &small] {
            wire.put_u8(0);
            wire.put_u32(m.encoded_len() as u32);
            m.encode(&mut wire).unwrap();
        }
        // Delivered in odd-sized pieces.
        let chunks: Vec<Result<http_body::Frame<Bytes>, Status>> = wire
            .freeze()
            .chunks(777)
            .map(|c| Ok(http_body::Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        let body = Body::new(http_body_util::StreamBody::new(tokio_stream::iter(chunks)));
        let mut requests = Requests::new(body);
        assert_eq!(requests.message().await.unwrap(), Some(big));
        assert!(
            requests.frames.capacity() <= 64 * 1024,
            "the large buffer is released"
        );
        assert_eq!(requests.message().await.unwrap(), Some(small));
        assert_eq!(requests.message().await.unwrap(), None);
    }

    #[tokio::test]
    async fn compressed_requests_are_refused() {
        let frame = Bytes::from_static(&[1, 0, 0, 0, 0]);
        let body = Body::new(http_body_util::StreamBody::new(tokio_stream::iter(vec![
            Ok::<_, Status>(http_body::Frame::data(frame)),
        ])));
        let err = Requests::new(body).message().await.unwrap_err();
        assert_eq!(err.code(), Code::Unimplemented);
    }
}
