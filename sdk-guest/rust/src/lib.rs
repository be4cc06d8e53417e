//! Rust guest SDK for Bosun operator plugins.
//!
//! A Bosun plugin is a WebAssembly component that implements one of the worlds of the
//! `bosun:operator@0.1.0` WIT package. This crate hides the generated bindings behind
//! idiomatic Rust: implement one trait and export it with one macro.
//!
//! | world        | cargo feature          | trait        | export macro         |
//! |--------------|------------------------|--------------|----------------------|
//! | `controller` | `controller` (default) | `Controller` | `export_controller!` |
//! | `admission`  | `admission`            | `Admission`  | `export_admission!`  |
//! | `pod-agent`  | `pod-agent`            | `PodAgent`   | `export_pod_agent!`  |
//!
//! Exactly one world feature may be enabled: a component implements one world, and each
//! world's bindings embed that world's component type. The feature `typed` adds
//! [`k8s-openapi`](https://docs.rs/k8s-openapi) reads (`Context::get_typed`).
//!
//! ```ignore
//! use bosun_sdk::{Context, Controller, Error, Metadata, Outcome, Request, Verb};
//!
//! struct Hello;
//!
//! impl Controller for Hello {
//!     fn metadata() -> Metadata {
//!         Metadata::new("hello", "0.1.0")
//!             .subscribe("v1", "Pod")
//!             .permit("v1", "Pod", &[Verb::Read])
//!     }
//!     fn init(_config: &str) -> Result<Self, Error> {
//!         Ok(Hello)
//!     }
//!     fn reconcile(&self, ctx: &mut Context, req: &Request) -> Result<Outcome, Error> {
//!         ctx.info(format!("hello, {}", req.target()));
//!         Ok(Outcome::done())
//!     }
//! }
//!
//! bosun_sdk::export_controller!(Hello);
//! ```
//!
//! Build with `cargo build --target wasm32-wasip2` and a `cdylib` crate type: the output
//! is already a component. In a native build (`cargo test`) the host calls go to an
//! in-memory host instead, so plugins can be unit-tested: see `testing::Host`.
#![warn(missing_docs)]

#[cfg(any(
    all(feature = "controller", feature = "admission"),
    all(feature = "controller", feature = "pod-agent"),
    all(feature = "admission", feature = "pod-agent"),
))]
compile_error!(
    "bosun-sdk: enable exactly one world feature (`controller`, `admission` or `pod-agent`): \
     a component implements one world. For a non-controller plugin write \
     `bosun-sdk = { workspace = true, default-features = false, features = [\"admission\"] }`; \
     if cargo unified features across crates, build plugins of different worlds in separate \
     cargo invocations"
);

mod command;
mod config;
mod error;
mod metadata;
mod object_ref;
pub mod objects;
mod outcome;

pub use command::{Command, CommandId, EventType, Refused, Taint, TaintEffect};
pub use config::parse_config;
pub use error::{Error, Result};
pub use metadata::{Metadata, Permission, Subscription, Verb};
pub use object_ref::ObjectRef;
pub use outcome::{CommandOutcome, EventKind, Outcome, Request, Verdict};

/// The generated WIT bindings. Not part of the API: use the traits and types at the crate
/// root instead.
///
/// The canonical-ABI glue inside is unsafe, but it is expanded from wit-bindgen's
/// proc-macro, so `unsafe_code = "deny"` does not fire on it and needs no exception here.
#[doc(hidden)]
#[allow(
    clippy::too_many_arguments,
    reason = "generated: the canonical ABI flattens `reconcile-request` into many parameters"
)]
pub mod wit {
    #[cfg(feature = "controller")]
    wit_bindgen::generate!({
        world: "controller",
        path: "../../wit",
        pub_export_macro: true,
        default_bindings_module: "bosun_sdk::wit",
    });

    #[cfg(feature = "admission")]
    wit_bindgen::generate!({
        world: "admission",
        path: "../../wit",
        pub_export_macro: true,
        default_bindings_module: "bosun_sdk::wit",
    });

    #[cfg(feature = "pod-agent")]
    wit_bindgen::generate!({
        world: "pod-agent",
        path: "../../wit",
        pub_export_macro: true,
        default_bindings_module: "bosun_sdk::wit",
    });
}

#[cfg(any(feature = "controller", feature = "admission", feature = "pod-agent"))]
mod backend;
#[cfg(any(feature = "controller", feature = "admission", feature = "pod-agent"))]
pub mod clock;
#[cfg(any(feature = "controller", feature = "admission", feature = "pod-agent"))]
mod convert;
#[cfg(any(feature = "controller", feature = "admission", feature = "pod-agent"))]
mod instance;
#[cfg(any(feature = "controller", feature = "admission", feature = "pod-agent"))]
pub mod log;
#[cfg(all(
    not(target_arch = "wasm32"),
    any(feature = "controller", feature = "admission", feature = "pod-agent")
))]
pub mod testing;

#[cfg(any(feature = "controller", feature = "admission"))]
mod context;
#[cfg(any(feature = "controller", feature = "admission"))]
pub use context::Context;

#[cfg(feature = "controller")]
mod controller;
#[cfg(feature = "controller")]
pub use controller::Controller;

#[cfg(feature = "admission")]
pub mod admission;
#[cfg(feature = "admission")]
pub use admission::Admission;

#[cfg(feature = "pod-agent")]
mod pod_agent;
#[cfg(feature = "pod-agent")]
pub use pod_agent::{PodAgent, ProbeKind, ProbeResult};
#[cfg(feature = "pod-agent")]
pub mod pod;

#[cfg(all(feature = "typed", any(feature = "controller", feature = "admission")))]
mod typed;

/// Items the export macros expand to. Not part of the API.
#[doc(hidden)]
pub mod __private {
    #[cfg(feature = "admission")]
    pub use crate::admission::AdmissionExport;
    #[cfg(feature = "controller")]
    pub use crate::controller::ControllerExport;
    #[cfg(feature = "pod-agent")]
    pub use crate::pod_agent::PodAgentExport;
}
