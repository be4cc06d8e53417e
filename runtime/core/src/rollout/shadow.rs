//! Shadow revisions: they reconcile every key beside the stable revision; their commands
//! are recorded here and compared with stable's, never executed.

use std::collections::HashMap;
use std::sync::PoisonError;

use bosun_host::contract::ObjectRef;

/// One key where a shadow revision decided differently from the stable one.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Difference {
    /// When (unix ms).
    pub at_ms: u64,
    /// The key.
    pub key: String,
    /// The events of the call.
    pub events: Vec<String>,
    /// What the stable revision submitted.
    pub stable: Vec<serde_json::Value>,
    /// What the shadow revision would have submitted (or its error).
    pub shadow: Result<Vec<serde_json::Value>, String>,
}

/// Differences kept per plugin (the newest).
pub(super) const DIFFERENCES: usize = 1000;

/// Commands of a shadow revision: recorded per key, never executed.
#[derive(Debug, Default)]
pub struct ShadowSink {
    submitted: std::sync::Mutex<HashMap<String, Vec<serde_json::Value>>>,
}

impl ShadowSink {
    /// Takes what was submitted while reconciling `key`.
    pub fn take(&self, key: &str) -> Vec<serde_json::Value> {
        self.submitted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key)
            .unwrap_or_default()
    }
}

impl bosun_host::host::commands::Commands for ShadowSink {
    fn submit(
        &self,
        call: &bosun_host::host::CallInfo,
        command: bosun_host::contract::Command,
    ) -> Result<u64, String> {
        let key = call.key.as_ref().map(ObjectRef::key).unwrap_or_default();
        let mut map = self
            .submitted
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let list = map.entry(key).or_default();
        list.push(command.to_json());
        Ok(list.len() as u64)
    }
}
