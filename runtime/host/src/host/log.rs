//! `bosun:operator/log`: plugin log lines, capped in size and count per call.

use std::sync::atomic::Ordering;
use std::sync::{Mutex, PoisonError};

use super::CallInfo;
use crate::bindings::iface::log::Host;
use crate::contract::Level;
use crate::limits::truncate;
use crate::store::StoreState;

/// Where plugin log lines go, as an embedder supplies it.
pub trait Log: Send + Sync {
    /// One line, already capped.
    fn log(&self, call: &CallInfo, level: Level, message: &str);
}

/// Logs through `tracing` with plugin, revision and key as fields.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tracing;

impl Log for Tracing {
    fn log(&self, call: &CallInfo, level: Level, message: &str) {
        let key = call.key.as_ref().map(|k| k.key()).unwrap_or_default();
        let (plugin, revision) = (&*call.plugin, short(&call.revision));
        match level {
            Level::Trace => {
                tracing::trace!(target: "bosun.plugin", plugin, revision, key, "{message}")
            }
            Level::Debug => {
                tracing::debug!(target: "bosun.plugin", plugin, revision, key, "{message}")
            }
            Level::Info => {
                tracing::info!(target: "bosun.plugin", plugin, revision, key, "{message}")
            }
            Level::Warn => {
                tracing::warn!(target: "bosun.plugin", plugin, revision, key, "{message}")
            }
            Level::Error => {
                tracing::error!(target: "bosun.plugin", plugin, revision, key, "{message}")
            }
        }
    }
}

/// The first 12 hex digits of a `sha256:` digest, for logs.
pub fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

/// A line a [`Memory`] log kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The plugin that wrote it.
    pub plugin: String,
    /// Its level.
    pub level: Level,
    /// The text.
    pub message: String,
}

impl Line {
    /// `{"level": "info", "message": …}`: how tools print a log line.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "level": self.level.as_str(), "message": self.message })
    }
}

/// Keeps lines in memory: offline tools and tests.
#[derive(Debug, Default)]
pub struct Memory {
    lines: Mutex<Vec<Line>>,
}

impl Memory {
    /// Takes the lines kept so far.
    pub fn take(&self) -> Vec<Line> {
        std::mem::take(&mut *self.lines.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Log for Memory {
    fn log(&self, call: &CallInfo, level: Level, message: &str) {
        let line = Line {
            plugin: call.plugin.to_string(),
            level,
            message: message.to_owned(),
        };
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(line);
    }
}

impl StoreState {
    /// Writes one line within the per-call caps; returns whether it was written.
    pub(crate) fn write_log(&mut self, level: Level, message: String) -> bool {
        let limits = &self.shared.limits;
        if self.counts.log_lines >= limits.max_log_lines_per_call {
            self.counts.log_dropped += 1;
            self.shared
                .counters
                .log_lines_dropped
                .fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.counts.log_lines += 1;
        let message = truncate(message, limits.max_log_line_bytes);
        self.shared.services.log.log(&self.call, level, &message);
        true
    }
}

impl Host for StoreState {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        self.write_log(level, message);
        Ok(())
    }
}
