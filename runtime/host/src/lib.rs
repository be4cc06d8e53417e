//! Bosun's wasm plugin host: loads operator plugins (WebAssembly components of the
//! `bosun:operator` worlds), runs them with limits, and serves their imports from
//! services the embedder supplies. The central runtime, the sidecar, the CLI and the
//! tests all run plugins through this crate; it depends on neither kube nor tonic.
//!
//! ```text
//! Source (bytes) --load--> Revision (compiled, checked, metadata, init)
//!                             | reconcile / review / probe / on-command ...
//!                             v
//!                  Store per call or warm instance: deadline, memory cap, caps
//!                             | imports
//!                             v
//!                  Services: Cache, State, Commands, Log, Clock, Pod
//! ```
#![warn(missing_docs)]

mod bindings;
pub mod call;
pub mod contract;
pub mod engine;
pub mod host;
pub mod limits;
pub mod load;
pub mod metadata;
pub mod registry;
pub mod revision;
pub mod stats;
mod store;
pub mod watch;

pub use engine::Engine;
pub use host::{CallInfo, Services};
pub use load::{Source, Spec, Strategy, World};
pub use registry::Registry;
pub use revision::Revision;
