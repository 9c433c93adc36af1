//! The built-in certificate authority of ambientd.
//!
//! This crate owns everything about workload identity: SPIFFE IDs now, and the root/intermediate keys,
//! CSR checks and leaf signing of `istio.v1.auth.IstioCertificateService` as they are added.

pub mod spiffe;

pub use spiffe::{Identity, IdentityError};
