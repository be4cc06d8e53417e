//! How a call into a plugin can fail. A plugin's own error is data; traps, timeouts and
//! limit violations stop the call (and discard the instance) but never the host.

use std::sync::Arc;
use std::time::Duration;

/// A call into a plugin that did not return a value.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The plugin answered with an error of its own.
    #[error("plugin {plugin}: {op} returned an error: {message}")]
    Plugin {
        /// The plugin.
        plugin: Arc<str>,
        /// The export called.
        op: &'static str,
        /// The plugin's message (truncated to the cap).
        message: String,
    },
    /// The call ran past its deadline and was interrupted.
    #[error("plugin {plugin}: {op} exceeded its deadline of {deadline:?}")]
    Timeout {
        /// The plugin.
        plugin: Arc<str>,
        /// The export called.
        op: &'static str,
        /// The deadline.
        deadline: Duration,
    },
    /// The instance needed more memory than its cap.
    #[error("plugin {plugin}: {op} ran out of memory (cap {limit} bytes)")]
    OutOfMemory {
        /// The plugin.
        plugin: Arc<str>,
        /// The export called.
        op: &'static str,
        /// The memory cap.
        limit: usize,
    },
    /// The call broke a per-call cap (e.g. too many commands).
    #[error("plugin {plugin}: {op} stopped: {what}")]
    Limit {
        /// The plugin.
        plugin: Arc<str>,
        /// The export called.
        op: &'static str,
        /// Which cap.
        what: String,
    },
    /// The guest trapped (a panic, `unreachable`, a bad memory access).
    #[error("plugin {plugin}: {op} trapped: {message}")]
    Trap {
        /// The plugin.
        plugin: Arc<str>,
        /// The export called.
        op: &'static str,
        /// The trap and its wasm backtrace.
        message: String,
    },
    /// A new instance could not be created (or its `init` failed).
    #[error("plugin {plugin}: could not start an instance: {message}")]
    Instantiate {
        /// The plugin.
        plugin: Arc<str>,
        /// Why.
        message: String,
    },
}

impl Error {
    /// A stable label for metrics (`plugin-error`, `timeout`, `out-of-memory`, `limit`,
    /// `trap`, `instantiate`).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Plugin { .. } => "plugin-error",
            Error::Timeout { .. } => "timeout",
            Error::OutOfMemory { .. } => "out-of-memory",
            Error::Limit { .. } => "limit",
            Error::Trap { .. } => "trap",
            Error::Instantiate { .. } => "instantiate",
        }
    }

    /// Whether the instance that made this call must be discarded.
    pub fn poisons_instance(&self) -> bool {
        !matches!(self, Error::Plugin { .. })
    }
}

/// A per-call cap broken by the guest; raised from a host import to trap the call.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub(crate) struct LimitExceeded(pub String);
