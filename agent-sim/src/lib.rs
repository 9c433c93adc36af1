//! Simulated ztunnels for ambientd: delta xDS and CSR clients that behave exactly as a real ztunnel
//! does on the wire (docs/reference/ztunnel.md), cheap enough to run a thousand in
//! one process, with an observation API for measuring how fast a change reaches all of them.
//!
//! - [`ztunnel`]: one simulated ztunnel ([`ztunnel::spawn`], [`ZtunnelConfig`], [`ZtunnelHandle`],
//!   [`Faults`]): connect, initial requests, ACK/NACK, reconnect with backoff, readiness,
//!   shared-mode certificates.
//! - [`state`]: what a ztunnel holds and how it handles a response, without I/O.
//! - [`validate`]: what ztunnel rejects, cached by body for the whole process.
//! - [`certs`]: CSRs and the checks of the CA's reply.
//! - [`transport`]: the server URL, TLS and credentials; [`grpc`]: the xDS stream's framing.
//! - [`observe`]: observers — [`Propagation`] for benchmarks, [`ChangeFeed`], [`Recorder`].
//! - [`fleet`]: many clients at once, nodes and tokens.
//! - [`intern`]: process-wide interning of names and versions.
//!
//! Measuring the propagation of one change to N clients:
//!
//! ```no_run
//! # async fn demo(target: agent_sim::Target, configs: Vec<agent_sim::ZtunnelConfig>) {
//! use agent_sim::{Expect, Fleet, Propagation, XdsKind};
//! let n = configs.len();
//! let propagation = Propagation::new(n);
//! let fleet = Fleet::spawn(&target, configs, vec![propagation.clone()]).expect("tokens are valid");
//! fleet.wait_synced(n).await;
//! let mut watch = propagation.watch(XdsKind::Address, "Kubernetes//Pod/ns/new-pod", Expect::Changed);
//! // ... make the change (write a file, apply to the index) ...
//! let report = watch.wait().await;
//! println!("all {} ACKed after {:?} (p50 {:?})", report.reached, report.max(), report.percentile(50.0));
//! # }
//! ```

pub mod certs;
pub mod fleet;
pub mod grpc;
pub mod intern;
pub mod observe;
pub mod state;
pub mod transport;
pub mod validate;
pub mod ztunnel;

pub use fleet::{Auth, Fleet, Nodes, PlanError, TokenFile, plan};
pub use intern::{NameId, VersionId, XdsKind};
pub use observe::{
    CertEvent, ChangeFeed, ChangeReport, ConnectionEvent, Expect, Observer, Propagation,
    PropagationReport, PropagationWatch, Recorded, RecordedResponse, Recorder, ResponseEvent,
};
pub use transport::{ConnectError, Target, TargetError};
pub use ztunnel::{ClientStatus, Faults, ZtunnelConfig, ZtunnelHandle};
