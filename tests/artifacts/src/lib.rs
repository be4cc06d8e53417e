//! Bosun's guest plugins, built for `wasm32-wasip2` by this crate's build script and named
//! by constants that hold the absolute path of each `.wasm` component:
//!
//! - [`ZONE_LABELER`]: the example controller `plugins/zone-labeler`;
//! - [`RELEASE`]: the release controller `plugins/release` (in-place StatefulSet release);
//! - [`HOSTILE`]: `tests/plugins/hostile`, a controller that misbehaves on demand
//!   (init config `{"mode": "trap" | "loop" | "alloc" | "flood" | ...}`, see its crate docs);
//! - [`CRD_WATCHER`]: `tests/plugins/crd-watcher`, a controller of a custom resource
//!   (`example.com/v1` Widget);
//! - [`BAD_METADATA`]: `tests/plugins/bad-metadata`, a controller whose metadata the
//!   host must reject;
//! - [`GREEDY_METADATA`]: `tests/plugins/greedy-metadata`, a controller declaring
//!   100,000 subscriptions, over the host's cap;
//! - [`TEST_ADMISSION`]: `tests/plugins/admission`, an admission plugin that requires a
//!   label, adds labels or misbehaves as its init config says (see its crate docs);
//! - [`SIDECARSET_INJECTOR`]: the admission plugin `plugins/sidecarset-injector`
//!   (OpenKruise-compatible SidecarSet injection).
//!
//! Depend on this crate from tests (`[dev-dependencies] bosun-test-artifacts`) and read
//! the files at run time: `std::fs::read(bosun_test_artifacts::HOSTILE)`. Building it
//! needs the target: `rustup target add wasm32-wasip2`.
#![warn(missing_docs)]

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));

/// Every controller artifact, as `(constant name, path)`.
pub const ALL: &[(&str, &str)] = &[
    ("ZONE_LABELER", ZONE_LABELER),
    ("RELEASE", RELEASE),
    ("HOSTILE", HOSTILE),
    ("CRD_WATCHER", CRD_WATCHER),
    ("BAD_METADATA", BAD_METADATA),
    ("GREEDY_METADATA", GREEDY_METADATA),
];
