//! `bosun:operator/cache`: reads of the shared cache and plugin-local state.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use super::CallInfo;
use crate::bindings::iface::cache::Host;
use crate::call::LimitExceeded;
use crate::contract::ObjectRef;
use crate::limits::truncate;
use crate::store::StoreState;
use bosun_api::Selector;

/// A `cache.list` query, with its selector already parsed.
#[derive(Debug, Clone, Copy)]
pub struct ListQuery<'a> {
    /// api-version of the kind.
    pub api_version: &'a str,
    /// The kind.
    pub kind: &'a str,
    /// One namespace, or all.
    pub namespace: Option<&'a str>,
    /// Label selector; `None` matches everything.
    pub selector: Option<&'a Selector>,
}

/// The shared informer cache, as an embedder supplies it. Objects are JSON text kept in
/// serialized form so that a read does not re-serialize.
pub trait Cache: Send + Sync {
    /// One object, or `None`.
    fn get(&self, call: &CallInfo, target: &ObjectRef) -> Option<Arc<str>>;
    /// Objects of one kind matching the query.
    fn list(&self, call: &CallInfo, query: &ListQuery<'_>) -> Vec<Arc<str>>;
}

/// Plugin-local key/value state, kept per plugin name (revisions share it).
pub trait State: Send + Sync {
    /// The value under `key`.
    fn get(&self, plugin: &str, key: &str) -> Option<Vec<u8>>;
    /// Stores `value` under `key`.
    fn set(&self, plugin: &str, key: &str, value: Vec<u8>) -> Result<(), String>;
    /// Removes `key`.
    fn delete(&self, plugin: &str, key: &str);
    /// What `plugin` holds (for status and metrics).
    fn usage(&self, _plugin: &str) -> Usage {
        Usage::default()
    }
    /// Drops everything `plugin` holds (the plugin was removed).
    fn clear(&self, _plugin: &str) {}
}

/// What one plugin's state holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Bytes of keys plus values.
    pub bytes: usize,
    /// Keys.
    pub keys: usize,
}

/// A cache with nothing in it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Empty;

impl Cache for Empty {
    fn get(&self, _: &CallInfo, _: &ObjectRef) -> Option<Arc<str>> {
        None
    }
    fn list(&self, _: &CallInfo, _: &ListQuery<'_>) -> Vec<Arc<str>> {
        Vec::new()
    }
}

/// Plugin state in memory, capped per plugin in bytes (keys plus values) and keys.
#[derive(Debug)]
pub struct MemoryState {
    max_bytes: usize,
    max_keys: usize,
    plugins: Mutex<HashMap<String, PluginState>>,
}

#[derive(Debug, Default)]
struct PluginState {
    entries: HashMap<String, Vec<u8>>,
    bytes: usize,
}

impl Default for MemoryState {
    fn default() -> Self {
        let limits = crate::limits::Limits::default();
        MemoryState::with_caps(limits.max_state_bytes, limits.max_state_keys)
    }
}

impl MemoryState {
    /// Empty state; each plugin may hold up to `max_bytes` (keys plus values) in up to
    /// `max_keys` keys.
    pub fn with_caps(max_bytes: usize, max_keys: usize) -> Self {
        MemoryState {
            max_bytes,
            max_keys,
            plugins: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, PluginState>> {
        self.plugins.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State for MemoryState {
    fn get(&self, plugin: &str, key: &str) -> Option<Vec<u8>> {
        self.lock().get(plugin)?.entries.get(key).cloned()
    }
    fn set(&self, plugin: &str, key: &str, value: Vec<u8>) -> Result<(), String> {
        let mut plugins = self.lock();
        let p = plugins.entry(plugin.to_owned()).or_default();
        let old = p.entries.get(key).map(|v| key.len() + v.len());
        if old.is_none() && p.entries.len() >= self.max_keys {
            return Err(format!(
                "plugin state holds {} keys, the cap of {} keys per plugin",
                p.entries.len(),
                self.max_keys
            ));
        }
        let bytes = p.bytes - old.unwrap_or(0) + key.len() + value.len();
        if bytes > self.max_bytes {
            return Err(format!(
                "plugin state would hold {bytes} bytes, over the cap of {} bytes per plugin",
                self.max_bytes
            ));
        }
        p.bytes = bytes;
        p.entries.insert(key.to_owned(), value);
        Ok(())
    }
    fn delete(&self, plugin: &str, key: &str) {
        let mut plugins = self.lock();
        if let Some(p) = plugins.get_mut(plugin)
            && let Some(v) = p.entries.remove(key)
        {
            p.bytes -= key.len() + v.len();
            if p.entries.is_empty() {
                plugins.remove(plugin);
            }
        }
    }
    fn usage(&self, plugin: &str) -> Usage {
        self.lock()
            .get(plugin)
            .map_or_else(Usage::default, |p| Usage {
                bytes: p.bytes,
                keys: p.entries.len(),
            })
    }
    fn clear(&self, plugin: &str) {
        self.lock().remove(plugin);
    }
}

impl StoreState {
    /// Counts `bytes` copied into the guest against the call's cap; over it, the call
    /// traps.
    fn copied(&mut self, bytes: usize) -> wasmtime::Result<()> {
        let max = self.shared.limits.max_read_bytes_per_call;
        self.counts.read_bytes = self.counts.read_bytes.saturating_add(bytes);
        if self.counts.read_bytes > max {
            return Err(wasmtime::Error::new(LimitExceeded(format!(
                "reads copied {} bytes, over the cap of {max} bytes per call",
                self.counts.read_bytes
            ))));
        }
        Ok(())
    }

    /// Reads are limited to the kinds the plugin declared; anything else reads as absent.
    fn readable(&self, api_version: &str, kind: &str) -> bool {
        let ok = self
            .shared
            .metadata
            .get()
            .is_some_and(|m| m.can_read(api_version, kind));
        if !ok {
            self.shared
                .counters
                .undeclared_reads
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(plugin = %self.shared.name, api_version, kind, "read of an undeclared kind");
        }
        ok
    }
}

impl Host for StoreState {
    fn get(&mut self, target: ObjectRef) -> wasmtime::Result<Option<String>> {
        if !self.readable(&target.api_version, &target.kind) {
            return Ok(None);
        }
        let object = self.shared.services.cache.get(&self.call, &target);
        self.copied(object.as_ref().map_or(1, |o| o.len().max(1)))?;
        Ok(object.map(|o| o.to_string()))
    }

    fn get_fields(
        &mut self,
        target: ObjectRef,
        fields: String,
    ) -> wasmtime::Result<Result<Option<String>, String>> {
        let fields = match self.shared.fields.get(fields) {
            Ok(f) => f,
            Err(e) => return Ok(Err(e.to_string())),
        };
        if !self.readable(&target.api_version, &target.kind) {
            return Ok(Ok(None));
        }
        let Some(object) = self.shared.services.cache.get(&self.call, &target) else {
            self.copied(1)?;
            return Ok(Ok(None));
        };
        // Counted as what the host reads, not the few bytes it hands over: cutting costs
        // a scan of the whole object, so it spends the read cap like `get`.
        self.copied(object.len().max(1))?;
        Ok(fields
            .cut(&object)
            .map(Some)
            .map_err(|e| format!("{target}: {e}")))
    }

    fn list_objects(
        &mut self,
        api_version: String,
        kind: String,
        namespace: Option<String>,
        label_selector: Option<String>,
    ) -> wasmtime::Result<Result<Vec<String>, String>> {
        let selector = match label_selector.as_deref().map(Selector::parse).transpose() {
            Ok(s) => s,
            Err(e) => return Ok(Err(e.to_string())),
        };
        if !self.readable(&api_version, &kind) {
            return Ok(Ok(Vec::new()));
        }
        let query = ListQuery {
            api_version: &api_version,
            kind: &kind,
            namespace: namespace.as_deref(),
            selector: selector.as_ref(),
        };
        let items = self.shared.services.cache.list(&self.call, &query);
        // Each call counts at least one byte, so an empty list still costs something.
        self.copied(items.iter().map(|o| o.len()).sum::<usize>().max(1))?;
        Ok(Ok(items.iter().map(|o| o.to_string()).collect()))
    }

    fn state_get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        let value = self.shared.services.state.get(&self.shared.name, &key);
        self.copied(value.as_ref().map_or(0, Vec::len).max(1))?;
        Ok(value)
    }

    fn state_set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), String>> {
        let max_sets = self.shared.limits.max_state_sets_per_call;
        self.counts.state_sets += 1;
        if self.counts.state_sets > max_sets {
            return Err(wasmtime::Error::new(LimitExceeded(format!(
                "more than {max_sets} state-set calls, the cap per call"
            ))));
        }
        let max = self.shared.limits.max_state_entry_bytes;
        if key.len() + value.len() > max {
            let msg = format!(
                "state entry {} is {} bytes, over the limit of {max}",
                truncate(key.clone(), 64),
                key.len() + value.len()
            );
            return Ok(Err(msg));
        }
        Ok(self
            .shared
            .services
            .state
            .set(&self.shared.name, &key, value))
    }

    fn state_delete(&mut self, key: String) -> wasmtime::Result<()> {
        self.shared.services.state.delete(&self.shared.name, &key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_state_accounts_per_plugin_and_frees_on_clear() {
        let s = MemoryState::with_caps(100, 3);
        s.set("a", "k1", vec![0; 40]).expect("fits");
        s.set("a", "k1", vec![0; 50])
            .expect("a replacement counts once");
        assert_eq!(s.usage("a"), Usage { bytes: 52, keys: 1 });
        let err = s.set("a", "k2", vec![0; 50]).expect_err("over the bytes");
        assert!(
            err.contains("over the cap of 100 bytes per plugin"),
            "{err}"
        );
        s.set("b", "k2", vec![0; 50])
            .expect("another plugin has its own cap");
        s.set("a", "k2", vec![]).expect("fits");
        s.set("a", "k3", vec![]).expect("fits");
        let err = s.set("a", "k4", vec![]).expect_err("over the keys");
        assert!(err.contains("the cap of 3 keys per plugin"), "{err}");
        s.delete("a", "k1");
        assert_eq!(s.usage("a"), Usage { bytes: 4, keys: 2 });
        s.clear("a");
        assert_eq!(s.usage("a"), Usage::default());
        assert_eq!(s.get("a", "k2"), None);
        assert_eq!(s.usage("b").keys, 1);
    }
}
