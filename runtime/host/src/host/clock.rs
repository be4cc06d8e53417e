//! `bosun:operator/clock`: the only clock a plugin sees (WASI's clocks read it too).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::bindings::iface::clock::Host;
use crate::store::StoreState;

/// A plugin's clock, as an embedder supplies it.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct System;

impl Clock for System {
    fn now_ms(&self) -> u64 {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    }
}

/// A clock stopped at one instant: replays and tests.
#[derive(Debug, Clone, Copy)]
pub struct Fixed(pub u64);

impl Clock for Fixed {
    fn now_ms(&self) -> u64 {
        self.0
    }
}

impl Host for StoreState {
    fn now_ms(&mut self) -> wasmtime::Result<u64> {
        Ok(self.shared.services.clock.now_ms())
    }

    fn now_rfc3339(&mut self) -> wasmtime::Result<String> {
        Ok(bosun_api::time::rfc3339(
            self.shared.services.clock.now_ms(),
        ))
    }
}

/// WASI's wall clock, backed by the plugin's clock.
pub(crate) struct WasiWall(pub std::sync::Arc<dyn Clock>);

impl wasmtime_wasi::HostWallClock for WasiWall {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn now(&self) -> Duration {
        Duration::from_millis(self.0.now_ms())
    }
}

/// WASI's monotonic clock, backed by the plugin's clock (so replays are deterministic).
pub(crate) struct WasiMonotonic(pub std::sync::Arc<dyn Clock>);

impl wasmtime_wasi::HostMonotonicClock for WasiMonotonic {
    fn resolution(&self) -> u64 {
        1_000_000
    }
    fn now(&self) -> u64 {
        self.0.now_ms().saturating_mul(1_000_000)
    }
}
