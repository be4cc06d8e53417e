//! The host side of the contract's imports: one file per WIT interface, each an
//! `impl Host` for the store's state, delegating to a trait the embedder supplies
//! (the runtime, the sidecar, the CLI and the tests each plug in their own).

pub mod cache;
pub mod clock;
pub mod commands;
pub mod log;
pub mod pod;
pub(crate) mod stdio;

use std::sync::Arc;

use crate::contract::ObjectRef;

/// Who is calling an embedder's service: the plugin, its revision and the key being
/// reconciled (none during `metadata`, `init` and non-reconcile calls).
#[derive(Debug, Clone)]
pub struct CallInfo {
    /// The plugin's name.
    pub plugin: Arc<str>,
    /// The revision's digest (`sha256:…`).
    pub revision: Arc<str>,
    /// The object being reconciled, if any.
    pub key: Option<ObjectRef>,
}

/// The services a plugin's imports are served by.
#[derive(Clone)]
pub struct Services {
    /// Reads of the shared cache.
    pub cache: Arc<dyn cache::Cache>,
    /// Plugin-local key/value state.
    pub state: Arc<dyn cache::State>,
    /// The command pipe.
    pub commands: Arc<dyn commands::Commands>,
    /// Where plugin log lines go.
    pub log: Arc<dyn log::Log>,
    /// The plugin's only clock.
    pub clock: Arc<dyn clock::Clock>,
    /// The pod a pod-agent plugin runs in (sidecar only).
    pub pod: Option<Arc<dyn pod::Pod>>,
}

impl Services {
    /// Services with nothing behind them: an empty cache, in-memory state, a command sink
    /// that accepts and records, logs to `tracing`, the system clock, no pod.
    pub fn offline() -> Self {
        Services {
            cache: Arc::new(cache::Empty),
            state: Arc::new(cache::MemoryState::default()),
            commands: Arc::new(commands::Recorder::default()),
            log: Arc::new(log::Tracing),
            clock: Arc::new(clock::System),
            pod: None,
        }
    }
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services").finish_non_exhaustive()
    }
}
