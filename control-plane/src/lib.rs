//! ambientd: an istiod-compatible control plane for Istio ambient mode.
//!
//! Data flows one way: a source (files or Kubernetes) turns objects into [`model::Object`]s, the pure
//! [`index`] turns them into `istio.workload.Address` and `istio.security.Authorization` resources and
//! reports which names changed, and the edges (dump, `serve`, xDS) read the index.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod admin;
pub mod api_errors;
pub mod ca_cli;
pub mod cli;
pub mod cluster;
pub mod connections;
pub mod dump;
pub mod explain;
pub mod metrics;
pub mod runtime;
pub mod serve;
pub mod shared_index;
pub mod source;
pub mod xds;
pub mod zc;
