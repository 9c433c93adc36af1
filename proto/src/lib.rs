//! Wire types for Istio ambient, compiled from this crate's own `.proto` files
//! without a system `protoc`.
//!
//! - [`workload`]: `istio.workload` — the `Address` resources (Workload or
//!   Service) streamed to ztunnel.
//! - [`security`]: `istio.security` — the `Authorization` resources streamed to
//!   ztunnel.
//! - [`auth`]: `istio.v1.auth` — the CA's `IstioCertificateService` messages,
//!   with the generated tonic client and server.
//! - [`descriptor_pool`] and [`json`]: reflection over the same definitions,
//!   for debug views that print resources in the protobuf JSON mapping.
//!
//! Envoy's xDS envelope types (`DeltaDiscoveryRequest`, `Resource`, ...) are
//! not defined here; they come from the `envoy-types` crate. Well-known types
//! used by our messages are `prost_types` (`Any`, `Struct`) or plain Rust
//! (`UInt32Value` is `Option<u32>`, `Empty` is `()`).

mod descriptor;
pub mod frames;
pub mod json;

pub use descriptor::{FILE_DESCRIPTOR_SET, descriptor_pool};

/// `istio.workload`: `Address`, `Workload`, `Service` and their parts.
// `address::Type` keeps `Workload` inline (unboxed) so that building and
// matching resources stays plain; the size gap with `Service` is accepted.
#[allow(clippy::large_enum_variant)]
pub mod workload {
    include!(concat!(env!("OUT_DIR"), "/istio.workload.rs"));
}

/// `istio.security`: `Authorization` and its rule tree.
pub mod security {
    include!(concat!(env!("OUT_DIR"), "/istio.security.rs"));
}

/// `istio.v1.auth`: certificate signing requests and responses, plus the
/// `IstioCertificateService` tonic client
/// ([`auth::istio_certificate_service_client`]) and server
/// ([`auth::istio_certificate_service_server`]) (feature `grpc`).
#[cfg(feature = "grpc")]
pub mod auth {
    include!(concat!(env!("OUT_DIR"), "/istio.v1.auth.rs"));
}

/// xDS type URL of `istio.workload.Address`, the resource type ztunnel
/// subscribes to for workloads and services.
pub const ADDRESS_TYPE_URL: &str = "type.googleapis.com/istio.workload.Address";

/// xDS type URL of `istio.security.Authorization`.
pub const AUTHORIZATION_TYPE_URL: &str = "type.googleapis.com/istio.security.Authorization";

/// xDS type URL of bare `istio.workload.Workload` resources, used by older
/// ztunnel releases before workloads were wrapped in `Address`.
pub const WORKLOAD_TYPE_URL: &str = "type.googleapis.com/istio.workload.Workload";

/// Packs `msg` into a [`prost_types::Any`] under `type_url`.
///
/// `envoy-types` has its own `Any` (`envoy_types::pb::google::protobuf::Any`)
/// with the same two fields, so moving `type_url` and `value` across is all a
/// conversion takes.
pub fn to_any<M: prost::Message>(type_url: &str, msg: &M) -> prost_types::Any {
    prost_types::Any {
        type_url: type_url.to_owned(),
        value: msg.encode_to_vec(),
    }
}
