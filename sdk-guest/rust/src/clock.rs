//! The only clock a plugin gets. Under record/replay it returns the recorded time.

/// Wall-clock time in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    crate::backend::now_ms()
}

/// The same instant as an RFC 3339 timestamp with seconds precision, as Kubernetes writes
/// it (`2026-11-29T03:00:00Z`).
pub fn now_rfc3339() -> String {
    crate::backend::now_rfc3339()
}
