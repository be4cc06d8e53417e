//! Bosun's API: what the CLI, the runtime, the embedded cluster and the SDK's test host
//! must agree on, in one small crate with no wasm engine and no Kubernetes client.
//!
//! - [`plugin`]: the `Plugin` custom resource (`bosun.dev/v1alpha1`); the CRD YAML under
//!   `deploy/crds/` is generated from it (feature `crd`, on by default).
//! - [`sidecarset`]: the `SidecarSet` custom resource, OpenKruise's SidecarSet under
//!   `bosun.dev/v1alpha1` (feature `crd`).
//! - [`healthcheck`]: the `HealthCheck` custom resource, medik8s's NodeHealthCheck for
//!   nodes and pods under `bosun.dev/v1alpha1` (feature `crd`).
//! - [`sidecarset_hash`]: OpenKruise's SidecarSet hashes, bit for bit (no feature needed:
//!   it builds for wasm32-wasip2 plugins).
//! - [`quantity`]: resource quantities in Go's canonical form.
//! - [`gojson`]: JSON strings written byte for byte as Go writes them.
//! - [`keys`]: every annotation, label and ConfigMap key Bosun reads or writes.
//! - [`selector`]: the one Kubernetes label-selector parser.
//! - [`fields`]: an object cut down to named fields (`cache.get-fields`).
//! - [`name`]: Kubernetes name rules (DNS-1123 labels and subdomains).
//! - [`time`]: RFC 3339 times as Kubernetes writes them.
//! - [`World`]: the WIT worlds a plugin can implement.
#![warn(missing_docs)]

pub mod fields;
pub mod gojson;
#[cfg(feature = "crd")]
pub mod healthcheck;
pub mod keys;
pub mod name;
#[cfg(feature = "crd")]
pub mod plugin;
pub mod quantity;
pub mod selector;
#[cfg(feature = "crd")]
pub mod sidecarset;
pub mod sidecarset_hash;
pub mod time;
mod world;

pub use selector::Selector;
pub use world::World;
