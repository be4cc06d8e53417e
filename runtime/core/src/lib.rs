//! Bosun's central runtime: turns cluster events into reconcile calls of controller
//! plugins, gives them one shared cache, and is the only way their decisions reach the
//! cluster — through the command pipe and its guardrails.
//!
//! ```text
//! kube watch -> informer (cache) -> queue (per plugin) -> dispatch -> plugin (bosun-host)
//!                                                                      | commands
//!                                         executor <- guardrail <- pipe
//!                                             |                       \-> audit, metrics
//!                                       kube API (SSA, patch, evict, events)
//! ```
//!
//! Beside that flow: [`rollout`] turns `Plugin` objects into serving revisions (direct,
//! canary, shadow) and judges canaries; [`sidecars`] is the sidecar link, where
//! pod-commands go down to pods; [`webhook`] serves admission plugins to the API server; [`admin`] serves metrics, health and status; [`leader`]
//! elects one runtime to act. [`runtime`] only assembles the parts and hands each the
//! narrow handles it needs. `bosun up`'s embedded mode lives in the `bosun-dev` crate,
//! and the types every part agrees on in `bosun-api`.
#![warn(missing_docs)]

pub mod admin;
pub mod audit;
pub mod config;
pub mod connect;
pub mod dispatch;
pub mod executor;
pub mod guardrail;
pub mod informer;
pub mod leader;
pub mod metrics;
pub mod pipe;
pub mod queue;
pub mod rbac;
pub mod record;
pub mod rollout;
pub mod runtime;
pub mod sidecars;
pub mod webhook;

pub use config::Config;
pub use runtime::Runtime;
