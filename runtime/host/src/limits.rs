//! Limits on one plugin: what a guest may consume or produce in one call.

use std::time::Duration;

/// Per-plugin limits. Every size a guest controls has a cap here.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Limits {
    /// Wall-clock budget of one call (`metadata`, `init`, `reconcile`, ...).
    #[serde(with = "millis")]
    pub deadline: Duration,
    /// Linear memory one instance may grow to.
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
}

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
