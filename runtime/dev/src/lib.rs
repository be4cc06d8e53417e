//! Bosun's development mode, `bosun up`: the embedded Kubernetes-compatible cluster, the
//! runtime connected to it like to any cluster, the plugins of a folder, and real
//! sidecars (in-process) for the simulated pods that ask for one.
//!
//! This composition lives outside `bosun-runtime` so that the production runtime links
//! neither the simulator nor the sidecar: only the CLI's `up` pulls them in.
#![warn(missing_docs)]

pub mod launcher;
pub mod up;

pub use up::{Options, Snapshot, Up};
