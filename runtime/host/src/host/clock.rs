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

/// Formats milliseconds since the epoch as RFC 3339 with seconds precision
/// (`2026-11-29T03:00:00Z`), as Kubernetes writes timestamps.
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

impl Host for StoreState {
    fn now_ms(&mut self) -> wasmtime::Result<u64> {
        Ok(self.shared.services.clock.now_ms())
    }

    fn now_rfc3339(&mut self) -> wasmtime::Result<String> {
        Ok(rfc3339(self.shared.services.clock.now_ms()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_921_200_000), "2026-11-29T03:00:00Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
    }
}
