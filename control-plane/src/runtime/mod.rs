//! The parts of a running `ambientd serve`, which [`crate::serve::Server`] puts together in start
//! order: what it is told ([`config`]) and why it stops ([`error`]); the source and its follower, the
//! one writer of the index ([`source`], [`follow`]); the CA, the serving certificate and the
//! authenticators ([`authority`]), with the ztunnel token the banner prints ([`tokens`]); the
//! listeners ([`listeners`]); the background tasks and their one shutdown order ([`tasks`]); and the
//! start banner ([`banner`]).

pub mod authority;
pub mod banner;
pub mod config;
pub mod error;
pub mod follow;
pub mod listeners;
pub mod source;
pub mod tasks;
pub mod tokens;

pub use self::config::{AuthMethod, ServeConfig, ServeSource};
pub use self::error::ServeError;
