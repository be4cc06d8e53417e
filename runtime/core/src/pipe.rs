//! The command pipe: the runtime's implementation of the `commands` import.
//!
//! `submit` runs inside the plugin's call: the guardrails decide at once (refused
//! commands come back as an error the plugin sees immediately). Admitted commands wait
//! until the reconcile that submitted them returns: only a call that completed has its
//! commands executed (a trapped call's commands are reported failed, never run). Every
//! verdict is counted, logged and appended to the audit log, and the outcomes reach the
//! plugin in its next reconcile of the same key.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use bosun_host::contract::{Command, CommandOutcome, ObjectRef, Verdict};
use bosun_host::host::CallInfo;
use bosun_host::host::clock::{Clock, System};
use bosun_host::host::commands::Commands;

use crate::audit::{AuditLog, Record};
use crate::executor::Executor;
use crate::guardrail::{Admission, Guardrails, View};
use crate::metrics::Metrics;

type CallKey = (Arc<str>, Option<String>);

struct Admitted {
    id: u64,
    revision: Arc<str>,
    command: Command,
}

/// A pod-command waiting for the sidecar of its pod.
#[derive(Debug, Clone)]
pub struct PodDelivery {
    /// The command's id (its outcome is reported under it).
    pub id: u64,
    /// The plugin that submitted it.
    pub plugin: Arc<str>,
    /// The key the plugin was reconciling (its outcome is reported for that key).
    pub key: Option<String>,
    /// The object behind `key` (reconciled again when the outcome arrives).
    pub target: Option<ObjectRef>,
    /// The command.
    pub command: bosun_host::contract::PodCommand,
}

/// Pod-commands kept waiting for sidecars before the oldest are failed.
const MAX_WAITING_POD_COMMANDS: usize = 10_000;

/// How many commands got each verdict since start.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    /// Executed.
    pub executed: u64,
    /// Refused by a guardrail.
    pub refused: u64,
    /// Failed at the API server (or voided by a trapped call).
    pub failed: u64,
    /// Dry-run.
    pub dry_run: u64,
}

#[derive(Debug, Default)]
struct Counters {
    executed: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
    dry_run: AtomicU64,
}

/// The command pipe shared by all plugins of a runtime.
pub struct Pipe {
    guardrails: Guardrails,
    view: Arc<dyn View>,
    metrics: Metrics,
    audit: Option<Arc<AuditLog>>,
    next_id: AtomicU64,
    waiting: Mutex<HashMap<CallKey, Vec<Admitted>>>,
    outcomes: Mutex<HashMap<CallKey, Vec<CommandOutcome>>>,
    counters: Counters,
    pod_commands: Mutex<std::collections::VecDeque<PodDelivery>>,
    on_pod_outcome: std::sync::OnceLock<OutcomeHook>,
    on_pod_command: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
}

/// Called with `(plugin, target)` when a pod-command's outcome arrives.
pub type OutcomeHook = Box<dyn Fn(&str, &ObjectRef) + Send + Sync>;

impl std::fmt::Debug for Pipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipe").finish_non_exhaustive()
    }
}

/// Outcomes kept per key before the oldest are dropped (a plugin that never reconciles
/// the key again must not grow the map without end).
const MAX_OUTCOMES_PER_KEY: usize = 256;

fn call_key(call: &CallInfo) -> CallKey {
    (call.plugin.clone(), call.key.as_ref().map(ObjectRef::key))
}

impl Pipe {
    /// A pipe with these guardrails, reading budgets' state from `view`.
    pub fn new(
        guardrails: Guardrails,
        view: Arc<dyn View>,
        metrics: Metrics,
        audit: Option<Arc<AuditLog>>,
    ) -> Self {
        Pipe {
            guardrails,
            view,
            metrics,
            audit,
            // Ids stay unique across restarts (a sidecar deduplicates pod-commands by
            // id): they start at the start time in microseconds.
            next_id: AtomicU64::new(first_id()),
            waiting: Mutex::default(),
            outcomes: Mutex::default(),
            counters: Counters::default(),
            pod_commands: Mutex::default(),
            on_pod_outcome: std::sync::OnceLock::new(),
            on_pod_command: std::sync::OnceLock::new(),
        }
    }

    /// Sets what runs when a pod-command starts waiting (the sidecar link wakes up).
    pub fn on_pod_command(&self, hook: Box<dyn Fn() + Send + Sync>) {
        let _ = self.on_pod_command.set(hook);
    }

    /// Sets what runs when a pod-command's outcome arrives (the runtime reconciles the
    /// submitting key again, so the plugin sees the outcome without waiting for an event).
    pub fn on_pod_outcome(&self, hook: OutcomeHook) {
        let _ = self.on_pod_outcome.set(hook);
    }

    /// Takes every pod-command waiting for a sidecar, oldest first.
    pub fn take_all_pod_commands(&self) -> Vec<PodDelivery> {
        self.pod_commands
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
            .collect()
    }

    /// Takes the pod-commands waiting for `namespace/pod`'s sidecar, oldest first.
    pub fn take_pod_commands(&self, namespace: &str, pod: &str) -> Vec<PodDelivery> {
        let mut queue = self
            .pod_commands
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (mine, rest) = queue
            .drain(..)
            .partition(|d| d.command.namespace == namespace && d.command.pod == pod);
        *queue = rest;
        mine.into_iter().collect()
    }

    /// Pod-commands waiting for sidecars.
    pub fn waiting_pod_commands(&self) -> usize {
        self.pod_commands
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Reports what a sidecar did with a pod-command.
    pub fn pod_command_done(
        &self,
        delivery: &PodDelivery,
        revision: &str,
        result: Result<String, String>,
    ) {
        let call = CallInfo {
            plugin: delivery.plugin.clone(),
            revision: Arc::from(revision),
            key: None,
        };
        let (verdict, message) = match result {
            Ok(m) => (Verdict::Executed, m),
            Err(m) => (Verdict::Failed, m),
        };
        let command = Command::PodCommand(delivery.command.clone());
        self.verdict(&call, Some(delivery.id), &command, verdict, None, &message);
        self.report(
            (delivery.plugin.clone(), delivery.key.clone()),
            CommandOutcome {
                id: delivery.id,
                verdict,
                message,
            },
        );
        if let (Some(hook), Some(target)) = (self.on_pod_outcome.get(), &delivery.target) {
            hook(&delivery.plugin, target);
        }
    }

    /// Verdicts so far.
    pub fn counts(&self) -> Counts {
        let c = &self.counters;
        Counts {
            executed: c.executed.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            dry_run: c.dry_run.load(Ordering::Relaxed),
        }
    }

    /// The guardrails (for status pages).
    pub fn guardrails(&self) -> &Guardrails {
        &self.guardrails
    }

    fn verdict(
        &self,
        call: &CallInfo,
        id: Option<u64>,
        command: &Command,
        verdict: Verdict,
        guardrail: Option<&str>,
        message: &str,
    ) {
        let key = call.key.as_ref().map(ObjectRef::key);
        let counter = match verdict {
            Verdict::Executed => Some(&self.counters.executed),
            Verdict::Refused => Some(&self.counters.refused),
            Verdict::Failed => Some(&self.counters.failed),
            Verdict::DryRun => Some(&self.counters.dry_run),
            Verdict::Pending => None,
        };
        if let Some(c) = counter {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.metrics.command(
            &call.plugin,
            &call.revision,
            command.name(),
            verdict.as_str(),
            guardrail.unwrap_or(""),
        );
        match verdict {
            Verdict::Refused | Verdict::Failed => tracing::warn!(
                plugin = %call.plugin, revision = %short(&call.revision), key = key.as_deref().unwrap_or(""),
                command = command.name(), verdict = verdict.as_str(), guardrail = guardrail.unwrap_or(""), "{message}"
            ),
            _ => tracing::info!(
                plugin = %call.plugin, revision = %short(&call.revision), key = key.as_deref().unwrap_or(""),
                command = command.name(), verdict = verdict.as_str(), "{message}"
            ),
        }
        if let Some(audit) = &self.audit {
            audit.append(&Record {
                time_ms: System.now_ms(),
                plugin: call.plugin.to_string(),
                revision: call.revision.to_string(),
                key,
                command_id: id,
                command: command.to_json(),
                verdict,
                guardrail: guardrail.map(str::to_owned),
                message: message.to_owned(),
            });
        }
    }

    fn report(&self, key: CallKey, outcome: CommandOutcome) {
        let mut outcomes = self.outcomes.lock().unwrap_or_else(PoisonError::into_inner);
        let list = outcomes.entry(key).or_default();
        list.push(outcome);
        if list.len() > MAX_OUTCOMES_PER_KEY {
            list.remove(0);
        }
    }

    /// The commands `call` submitted that wait for its reconcile to return, as JSON (a
    /// shadow revision's commands are compared with them).
    pub fn pending_of(&self, call: &CallInfo) -> Vec<serde_json::Value> {
        self.waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&call_key(call))
            .map(|list| list.iter().map(|a| a.command.to_json()).collect())
            .unwrap_or_default()
    }

    /// Outcomes not yet shown to `plugin` for `key`, oldest first.
    pub fn take_outcomes(&self, plugin: &str, key: &ObjectRef) -> Vec<CommandOutcome> {
        let k: CallKey = (Arc::from(plugin), Some(key.key()));
        self.outcomes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&k)
            .unwrap_or_default()
    }

    /// Executes what `call` submitted, after its reconcile returned. `completed` is false
    /// when the call failed by trapping: its commands are reported failed, not run.
    pub async fn finish(&self, call: &CallInfo, completed: bool, executor: &Executor) {
        let key = call_key(call);
        let admitted = self
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key)
            .unwrap_or_default();
        for a in admitted {
            let mut call = call.clone();
            call.revision = a.revision.clone();
            if !completed {
                let message =
                    "not executed: the reconcile that submitted it did not complete".to_owned();
                self.verdict(
                    &call,
                    Some(a.id),
                    &a.command,
                    Verdict::Failed,
                    None,
                    &message,
                );
                self.report(
                    key.clone(),
                    CommandOutcome {
                        id: a.id,
                        verdict: Verdict::Failed,
                        message,
                    },
                );
                continue;
            }
            if let Command::PodCommand(p) = &a.command {
                // The sidecar link delivers it; until then it waits, pending.
                let delivery = PodDelivery {
                    id: a.id,
                    plugin: call.plugin.clone(),
                    key: key.1.clone(),
                    target: call.key.clone(),
                    command: p.clone(),
                };
                let mut queue = self
                    .pod_commands
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                queue.push_back(delivery);
                let overflow = queue.len().saturating_sub(MAX_WAITING_POD_COMMANDS);
                let dropped: Vec<PodDelivery> = queue.drain(..overflow).collect();
                drop(queue);
                if let Some(wake) = self.on_pod_command.get() {
                    wake();
                }
                let message = format!("waiting for the sidecar of {}/{}", p.namespace, p.pod);
                self.verdict(
                    &call,
                    Some(a.id),
                    &a.command,
                    Verdict::Pending,
                    None,
                    &message,
                );
                self.report(
                    key.clone(),
                    CommandOutcome {
                        id: a.id,
                        verdict: Verdict::Pending,
                        message,
                    },
                );
                for d in dropped {
                    self.pod_command_done(
                        &d,
                        &call.revision,
                        Err("expired: too many pod-commands waiting for sidecars".to_owned()),
                    );
                }
                continue;
            }
            let span = tracing::info_span!("bosun.pipe.execute", plugin = %call.plugin, command = a.command.name(), id = a.id);
            let result =
                tracing::Instrument::instrument(executor.execute(&call.plugin, &a.command), span)
                    .await;
            self.guardrails
                .record(&call.plugin, result.is_ok(), Instant::now());
            if result.is_err()
                && let Some(target) = a.command.target()
            {
                // A failed disruption frees the budget it held.
                self.guardrails.settle(&target);
            }
            let (verdict, message) = match result {
                Ok(done) => (Verdict::Executed, done),
                Err(e) => (Verdict::Failed, e.to_string()),
            };
            self.verdict(&call, Some(a.id), &a.command, verdict, None, &message);
            self.report(
                key.clone(),
                CommandOutcome {
                    id: a.id,
                    verdict,
                    message,
                },
            );
        }
    }
}

fn first_id() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| u64::try_from(d.as_micros()).unwrap_or(1))
}

fn short(digest: &str) -> &str {
    bosun_host::host::log::short(digest)
}

impl Commands for Pipe {
    fn submit(&self, call: &CallInfo, command: Command) -> Result<u64, String> {
        match self
            .guardrails
            .admit(&call.plugin, &command, self.view.as_ref(), Instant::now())
        {
            Admission::Refused(refusal) => {
                let guardrail = refusal.guardrail.as_str();
                self.verdict(
                    call,
                    None,
                    &command,
                    Verdict::Refused,
                    Some(guardrail),
                    &refusal.message,
                );
                Err(refusal.message)
            }
            Admission::DryRun => {
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                let message = "dry-run: passed the guardrails, not executed".to_owned();
                self.verdict(call, Some(id), &command, Verdict::DryRun, None, &message);
                self.report(
                    call_key(call),
                    CommandOutcome {
                        id,
                        verdict: Verdict::DryRun,
                        message,
                    },
                );
                Ok(id)
            }
            Admission::Execute => {
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
                waiting.entry(call_key(call)).or_default().push(Admitted {
                    id,
                    revision: call.revision.clone(),
                    command,
                });
                Ok(id)
            }
        }
    }
}
