//! `bosun:operator/cache`: reads of the shared cache and plugin-local state.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use super::CallInfo;
use crate::bindings::iface::cache::Host;
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

/// Plugin state in memory.
#[derive(Debug, Default)]
pub struct MemoryState {
    entries: Mutex<HashMap<(String, String), Vec<u8>>>,
}

impl State for MemoryState {
    fn get(&self, plugin: &str, key: &str) -> Option<Vec<u8>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.get(&(plugin.to_owned(), key.to_owned())).cloned()
    }
    fn set(&self, plugin: &str, key: &str, value: Vec<u8>) -> Result<(), String> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.insert((plugin.to_owned(), key.to_owned()), value);
        Ok(())
    }
    fn delete(&self, plugin: &str, key: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.remove(&(plugin.to_owned(), key.to_owned()));
    }
}

impl StoreState {
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
        Ok(self
            .shared
            .services
            .cache
            .get(&self.call, &target)
            .map(|o| o.to_string()))
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
        Ok(Ok(items.iter().map(|o| o.to_string()).collect()))
    }

    fn state_get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(self.shared.services.state.get(&self.shared.name, &key))
    }

    fn state_set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), String>> {
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
