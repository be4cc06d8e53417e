//! `bosun:operator/commands`: the plugin's end of the command pipe.
//!
//! The host checks what it can decide alone — the per-call cap, the command's shape and
//! the plugin's declared permissions — and hands the rest to the embedder's pipe
//! (rate limits, budgets, breaker, dry-run, execution).

use std::sync::atomic::Ordering;
use std::sync::{Mutex, PoisonError};

use super::CallInfo;
use crate::bindings::iface::commands::Host;
use crate::call::LimitExceeded;
use crate::contract::Command;
use crate::store::StoreState;

/// The command pipe, as an embedder supplies it.
pub trait Commands: Send + Sync {
    /// Takes a command that passed the host's checks. `Ok(id)` when accepted (its outcome
    /// is reported later), `Err(reason)` when refused now.
    fn submit(&self, call: &CallInfo, command: Command) -> Result<u64, String>;
}

/// A command a [`Recorder`] kept.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The id handed to the plugin.
    pub id: u64,
    /// Who submitted it.
    pub call: CallInfo,
    /// What was submitted.
    pub command: Command,
}

impl Recorded {
    /// `{"id": …, "command": {…}}`: how tools print a recorded command.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "id": self.id, "command": self.command.to_json() })
    }
}

/// Accepts every command and keeps it: offline tools and tests.
#[derive(Debug, Default)]
pub struct Recorder {
    commands: Mutex<Vec<Recorded>>,
}

impl Recorder {
    /// Takes the commands recorded so far.
    pub fn take(&self) -> Vec<Recorded> {
        std::mem::take(&mut *self.commands.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// How many commands are recorded.
    pub fn len(&self) -> usize {
        self.commands
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Commands for Recorder {
    fn submit(&self, call: &CallInfo, command: Command) -> Result<u64, String> {
        let mut commands = self.commands.lock().unwrap_or_else(PoisonError::into_inner);
        let id = commands.last().map_or(1, |c| c.id + 1);
        commands.push(Recorded {
            id,
            call: call.clone(),
            command,
        });
        Ok(id)
    }
}

impl Host for StoreState {
    fn submit(&mut self, cmd: Command) -> wasmtime::Result<Result<u64, String>> {
        let shared = &self.shared;
        self.counts.commands += 1;
        let max = shared.limits.max_commands_per_call;
        if self.counts.commands > max {
            // A runaway plugin: stop the call rather than refuse a million times.
            return Err(wasmtime::Error::new(LimitExceeded(format!(
                "submitted more than {max} commands in one call"
            ))));
        }
        shared
            .counters
            .commands_submitted
            .fetch_add(1, Ordering::Relaxed);
        let refuse = |reason: String| {
            shared
                .counters
                .commands_refused
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(plugin = %shared.name, command = cmd.name(), %reason, "command refused by the host");
            Ok(Err(reason))
        };
        let action = match cmd.validate() {
            Ok(action) => action,
            Err(reason) => return refuse(format!("invalid command: {reason}")),
        };
        let permitted = shared
            .metadata
            .get()
            .is_some_and(|m| m.permits(action.verb, &action.api_version, &action.kind));
        if !permitted {
            return refuse(format!(
                "not permitted: plugin {} did not declare `{}` on {}/{}",
                shared.name,
                action.verb.as_str(),
                action.api_version,
                action.kind
            ));
        }
        match shared.services.commands.submit(&self.call, cmd) {
            Ok(id) => Ok(Ok(id)),
            Err(reason) => {
                shared
                    .counters
                    .commands_refused
                    .fetch_add(1, Ordering::Relaxed);
                Ok(Err(reason))
            }
        }
    }
}
