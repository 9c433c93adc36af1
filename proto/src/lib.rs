//! Wire types for Istio ambient.
