//! Limits on one plugin: what a guest may consume or produce in one call.

use std::time::Duration;

/// Per-plugin limits. Every size a guest controls has a cap here.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Limits {
    /// Wall-clock budget of one call (`metadata`, `init`, `reconcile`, ...).
    #[serde(with = "millis")]
    pub deadline: Duration,
    /// Linear memory one instance may grow to, summed over all its memories.
    pub memory_bytes: usize,
    /// Commands one call may submit; one more traps the call.
    pub max_commands_per_call: u32,
    /// Log lines one call may write; the rest are dropped and counted.
    pub max_log_lines_per_call: u32,
    /// Bytes of one log line; longer lines are truncated.
    pub max_log_line_bytes: usize,
    /// Bytes of guest stdout/stderr kept per call (forwarded to the log); the rest is dropped.
    pub max_stdio_bytes: usize,
    /// Bytes of an error message a plugin returns; longer messages are truncated.
    pub max_error_bytes: usize,
    /// Bytes of one plugin-state key plus value.
    pub max_state_entry_bytes: usize,
    /// Bytes (keys plus values) of all of one plugin's state; a `state-set` that would
    /// go over is refused.
    pub max_state_bytes: usize,
    /// Keys of one plugin's state; a `state-set` of a new key over it is refused.
    pub max_state_keys: usize,
    /// `state-set` calls one call may make; one more traps the call.
    pub max_state_sets_per_call: u32,
    /// Bytes the host copies into the guest in one call (cache reads, lists, state
    /// reads); one more read traps the call, so a plugin spinning on `list-objects` is
    /// stopped by this cap or by its deadline, whichever comes first.
    pub max_read_bytes_per_call: usize,
}

/// Subscriptions one plugin may declare.
pub const MAX_SUBSCRIPTIONS: usize = 64;
/// Permissions one plugin may declare.
pub const MAX_PERMISSIONS: usize = 64;
/// Bytes of a short metadata string (version, api-version, kind, namespace).
pub const MAX_METADATA_FIELD_BYTES: usize = 253;
/// Bytes of a metadata description or label selector.
pub const MAX_METADATA_TEXT_BYTES: usize = 4 << 10;
/// Verbs one permission may list (there are fewer distinct verbs; repeats are refused).
pub const MAX_VERBS_PER_PERMISSION: usize = 16;
/// Table elements one instance may hold, summed over all its tables.
pub const MAX_TABLE_ELEMENTS: usize = 100_000;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: Duration::from_secs(1),
            memory_bytes: 64 << 20,
            max_commands_per_call: 1_000,
            max_log_lines_per_call: 1_000,
            max_log_line_bytes: 4 << 10,
            max_stdio_bytes: 64 << 10,
            max_error_bytes: 4 << 10,
            max_state_entry_bytes: 1 << 20,
            max_state_bytes: 16 << 20,
            max_state_keys: 10_000,
            max_state_sets_per_call: 1_000,
            max_read_bytes_per_call: 256 << 20,
        }
    }
}

mod millis {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let ms = <u64 as serde::Deserialize>::deserialize(d)?;
        Ok(Duration::from_millis(ms))
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary, saying how much was cut.
pub(crate) fn truncate(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let total = s.len();
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s.push_str(&format!("… [truncated, {total} bytes in all]"));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_respects_char_boundaries() {
        let s = truncate("ééé".to_owned(), 3);
        assert!(s.starts_with('é') && s.contains("6 bytes in all"), "{s}");
        assert_eq!(truncate("short".to_owned(), 10), "short");
    }

    #[test]
    fn limits_read_from_camel_case_json() {
        let l: Limits =
            serde_json::from_str(r#"{"deadline": 250, "memoryBytes": 1048576}"#).expect("valid");
        assert_eq!(l.deadline, Duration::from_millis(250));
        assert_eq!(l.memory_bytes, 1 << 20);
        assert_eq!(
            l.max_commands_per_call,
            Limits::default().max_commands_per_call
        );
    }
}
