//! The `DeltaAggregatedResources` call as plain gRPC framing over a tonic [`Channel`], so that a
//! simulated ztunnel keeps no per-stream buffer the size of its largest response.
//!
//! tonic's `Streaming` decoder reserves room for each whole message in a buffer it never shrinks: after
//! an 11,000-resource initial response every stream would keep ~4 MB, ~4 GB for a thousand clients.
//! Here each message is gathered in a buffer that is released once a large message is decoded. On
//! the wire nothing differs: the same path, `content-type: application/grpc`, `te: trailers`,
//! uncompressed length-prefixed protobuf messages, and the status from the trailers (or from the
//! headers of a trailers-only answer).

use std::convert::Infallible;

use ambient_proto::frames::{FrameError, Frames};
use bytes::Bytes;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use prost::Message;
use tokio_stream::{Stream, StreamExt};
use tonic::body::Body;
use tonic::codegen::http;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tower::{Service, ServiceExt};

use crate::transport::{Credentials, error_chain};

/// The method ztunnel calls.
pub const DELTA_ADS_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";
/// ztunnel's limit on a decoded xDS message.
pub const MAX_MESSAGE: usize = 200 * 1024 * 1024;
/// One gRPC message frame: no compression, 4-byte big-endian length, the encoded message.
fn frame<M: Message>(m: &M) -> Bytes {
    ambient_proto::frames::encode(m)
}

/// The response side of an open stream.
pub struct DeltaStream {
    body: Body,
    frames: Frames,
    done: bool,
}

impl std::fmt::Debug for DeltaStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeltaStream")
            .field("buffered", &!self.frames.is_empty())
            .finish()
    }
}

/// The gRPC status of an HTTP answer without one (tonic's mapping).
fn http_status(status: http::StatusCode) -> Status {
    let code = match status.as_u16() {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502 | 503 | 504 => Code::Unavailable,
        _ => Code::Unknown,
    };
    Status::new(code, format!("HTTP status {status} without a gRPC status"))
}

/// Opens the stream: sends the request headers and every request `requests` yields, and waits for
/// the response headers. An error here is a failure to open the stream.
pub async fn open(
    mut channel: Channel,
    requests: impl Stream<Item = DeltaDiscoveryRequest> + Send + 'static,
    credentials: Option<&Credentials>,
) -> Result<DeltaStream, Status> {
    let frames = requests.map(|r| Ok::<_, Infallible>(Frame::data(frame(&r))));
    let mut request = http::Request::builder()
        .method(http::Method::POST)
        .uri(DELTA_ADS_PATH)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Body::new(StreamBody::new(frames)))
        .map_err(|e| Status::internal(format!("building the request: {e}")))?;
    if let Some(c) = credentials {
        c.apply_headers(request.headers_mut());
    }
    let ready = channel
        .ready()
        .await
        .map_err(|e| Status::unavailable(error_chain(&e)))?;
    let response = ready
        .call(request)
        .await
        .map_err(|e| Status::unavailable(error_chain(&e)))?;
    let (parts, body) = response.into_parts();
    if let Some(status) = Status::from_header_map(&parts.headers) {
        // Trailers-only: the call is over before it started.
        if status.code() != Code::Ok {
            return Err(status);
        }
        return Ok(DeltaStream {
            body: Body::empty(),
            frames: Frames::new(MAX_MESSAGE),
            done: true,
        });
    }
    if parts.status != http::StatusCode::OK {
        return Err(http_status(parts.status));
    }
    Ok(DeltaStream {
        body,
        frames: Frames::new(MAX_MESSAGE),
        done: false,
    })
}

impl DeltaStream {
    /// The next response; `Ok(None)` when the stream ended with status OK (or without a status).
    pub async fn message(&mut self) -> Result<Option<DeltaDiscoveryResponse>, Status> {
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
                        return Err(Status::internal("the stream ended inside a message"));
                    }
                    return Ok(None);
                }
                Some(Err(status)) => {
                    self.done = true;
                    return Err(status);
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.frames.extend(&data),
                    Err(frame) => {
                        self.done = true;
                        if let Some(status) = frame
                            .trailers_ref()
                            .and_then(Status::from_header_map)
                            .filter(|s| s.code() != Code::Ok)
                        {
                            return Err(status);
                        }
                    }
                },
            }
        }
    }

    /// Decodes a whole message from the buffer, if one is there.
    fn take_message(&mut self) -> Result<Option<DeltaDiscoveryResponse>, Status> {
        self.frames.next_message().map_err(|e| match e {
            FrameError::Compressed => {
                Status::internal("the server sent a compressed message, which was not asked for")
            }
            FrameError::TooLarge { len, max } => Status::out_of_range(format!(
                "decoded message length too large: found {len} bytes, the limit is: {max} bytes"
            )),
            FrameError::Decode(e) => Status::internal(format!("decoding the response: {e}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};

    fn stream_of(chunks: Vec<Bytes>, trailers: Option<http::HeaderMap>) -> DeltaStream {
        let mut frames: Vec<Result<Frame<Bytes>, Infallible>> =
            chunks.into_iter().map(|c| Ok(Frame::data(c))).collect();
        if let Some(t) = trailers {
            frames.push(Ok(Frame::trailers(t)));
        }
        DeltaStream {
            body: Body::new(StreamBody::new(tokio_stream::iter(frames))),
            frames: Frames::new(MAX_MESSAGE),
            done: false,
        }
    }

    fn response(nonce: &str, names: usize) -> DeltaDiscoveryResponse {
        DeltaDiscoveryResponse {
            nonce: nonce.into(),
            removed_resources: (0..names).map(|i| format!("name-{i}")).collect(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn messages_split_across_frames_decode_and_big_buffers_are_released() {
        let big = frame(&response("1", 20_000));
        let small = frame(&response("2", 1));
        let mut both = BytesMut::new();
        both.extend_from_slice(&big[big.len() - 7..]);
        both.extend_from_slice(&small);
        let chunks = vec![big.slice(..3), big.slice(3..big.len() - 7), both.freeze()];
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().expect("header"));
        let mut s = stream_of(chunks, Some(trailers));
        let first = s.message().await.expect("ok").expect("message");
        assert_eq!(
            (first.nonce.as_str(), first.removed_resources.len()),
            ("1", 20_000)
        );
        // Only the start of the next message is kept, in a buffer of its own.
        assert!(s.frames.capacity() < 1024, "{}", s.frames.capacity());
        let second = s.message().await.expect("ok").expect("message");
        assert_eq!(second.nonce, "2");
        assert_eq!(s.message().await.expect("ok"), None);
    }

    #[tokio::test]
    async fn a_status_in_the_trailers_ends_the_stream_with_it() {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", "14".parse().expect("header"));
        trailers.insert(
            "grpc-message",
            "control%20plane%20shutting%20down".parse().expect("header"),
        );
        let mut s = stream_of(vec![frame(&response("1", 1))], Some(trailers));
        assert!(s.message().await.expect("ok").is_some());
        let err = s.message().await.expect_err("status");
        assert_eq!(err.code(), Code::Unavailable);
        assert_eq!(err.message(), "control plane shutting down");
    }

    #[tokio::test]
    async fn truncated_and_oversized_messages_are_errors() {
        let f = frame(&response("1", 3));
        let mut s = stream_of(vec![f.slice(..f.len() - 1)], None);
        assert_eq!(
            s.message().await.expect_err("truncated").code(),
            Code::Internal
        );
        let mut header = BytesMut::new();
        header.put_u8(0);
        header.put_u32(u32::MAX);
        let mut s = stream_of(vec![header.freeze()], None);
        assert_eq!(
            s.message().await.expect_err("too big").code(),
            Code::OutOfRange
        );
        assert_eq!(
            http_status(http::StatusCode::SERVICE_UNAVAILABLE).code(),
            Code::Unavailable
        );
    }
}
