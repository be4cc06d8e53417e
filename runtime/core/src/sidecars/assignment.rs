//! Which pod-agent plugins a pod's sidecar runs: those whose `v1 Pod` subscription
//! matches the pod, and those the pod names in [`PLUGINS_ANNOTATION`]. A sidecar is sent
//! the full set when it connects and again whenever the set changes.

use std::collections::BTreeMap;
use std::sync::PoisonError;

use bosun_api::Selector;
use bosun_host::World;
use bosun_host::contract::ObjectRef;
use bosun_link::{Assignment, PluginAssignment, RuntimeMessage, runtime_message};

use super::{PodKey, Sidecars};

/// The pod annotation naming pod-agent plugins the pod runs (comma-separated), besides
/// those whose `v1 Pod` subscription matches it.
pub const PLUGINS_ANNOTATION: &str = "sidecar.bosun.dev/plugins";

impl Sidecars {
    /// The pod-agent plugins `pod` should run: those with a Pod subscription matching
    /// its namespace and labels. `None` while the pod is not in the cache.
    fn plugins_for(&self, namespace: &str, pod: &str) -> Option<Vec<PluginAssignment>> {
        let object = self
            .informers
            .get(&ObjectRef::namespaced("v1", "Pod", namespace, pod))?;
        let value: serde_json::Value = serde_json::from_str(&object).ok()?;
        let labels: BTreeMap<String, String> =
            serde_json::from_value(value["metadata"]["labels"].clone()).unwrap_or_default();
        // The pod may name the pod-agent plugins it wants (what sidecar injection sets).
        let named: Vec<&str> = value["metadata"]["annotations"][PLUGINS_ANNOTATION]
            .as_str()
            .map(|s| {
                s.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let mut out = Vec::new();
        for name in self.registry.names() {
            let Some(r) = self.registry.current(&name) else {
                continue;
            };
            if r.info().world != World::PodAgent {
                continue;
            }
            let wanted = named.contains(&name.as_str())
                || r.metadata().subscriptions.iter().any(|s| {
                    s.api_version == "v1"
                        && s.kind == "Pod"
                        && s.namespace.as_deref().is_none_or(|n| n == namespace)
                        && s.label_selector.as_deref().is_none_or(|l| {
                            Selector::parse(l).is_ok_and(|sel| sel.matches(&labels))
                        })
                });
            if wanted {
                out.push(PluginAssignment {
                    name,
                    digest: r.digest().to_owned(),
                    config: r.config().to_owned(),
                    size: r.bytes().len() as u64,
                });
            }
        }
        Some(out)
    }

    /// Sends every connected sidecar its assignment, if it changed.
    pub(super) fn assign_all(&self) {
        let keys: Vec<PodKey> = {
            let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.conns.keys().cloned().collect()
        };
        for key in keys {
            self.assign(&key);
        }
    }

    /// Sends the sidecar of `key` its assignment, if it changed since the last one sent.
    pub(super) fn assign(&self, key: &PodKey) {
        let Some(plugins) = self.plugins_for(&key.0, &key.1) else {
            return;
        };
        let fingerprint: String = plugins
            .iter()
            .map(|p| format!("{}@{}#{}\n", p.name, p.digest, p.config))
            .collect();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(conn) = state.conns.get_mut(key) else {
            return;
        };
        if conn.assigned.as_deref() == Some(fingerprint.as_str()) {
            return;
        }
        let message = RuntimeMessage {
            body: Some(runtime_message::Body::Assignment(Assignment { plugins })),
        };
        if conn.tx.try_send(Ok(message)).is_ok() {
            conn.assigned = Some(fingerprint);
        }
    }
}
