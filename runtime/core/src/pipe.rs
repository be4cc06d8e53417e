//! The command pipe: the runtime's implementation of the `commands` import.
//!
//! `submit` runs inside the plugin's call: the guardrails decide at once (refused
//! commands come back as an error the plugin sees immediately). Admitted commands wait
//! until the reconcile that submitted them returns: only a call that completed has its
//! commands executed (a trapped call's commands are reported failed, never run). Every
//! verdict is counted, logged and appended to the audit log, and the outcomes reach the
//! plugin in its next reconcile of the same key.
//!
//! Leadership is checked right before each execution (and before a pod-command goes
//! to its sidecar), not only when the reconcile started: a runtime that lost its lease
//! meanwhile executes nothing. An executed command's audit record is on disk (fsync)
//! before its outcome is reported, one fsync per batch.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use bosun_host::contract::{Command, CommandOutcome, ObjectRef, Verdict};
use bosun_host::host::CallInfo;
use bosun_host::host::clock::{Clock, System};
use bosun_host::host::commands::Commands;
use tokio::sync::watch;

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
    leading: std::sync::OnceLock<watch::Receiver<bool>>,
}

/// The outcome of a command admitted while this runtime led, found at execution time
/// to be led by another runtime.
pub const NOT_LEADER: &str = "not executed: this runtime is no longer the leader";

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
            leading: std::sync::OnceLock::new(),
        }
    }

    /// Sets whether this runtime leads (leader election): nothing executes, and no
    /// pod-command goes to a sidecar, while it reads false. Without it the pipe always
    /// executes.
    pub fn set_leading(&self, leading: watch::Receiver<bool>) {
        let _ = self.leading.set(leading);
    }

    /// Whether this runtime may execute commands now (it leads).
    pub fn is_leading(&self) -> bool {
        self.leading.get().is_none_or(|l| *l.borrow())
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
        let seq = self.verdict(&call, Some(delivery.id), &command, verdict, None, &message);
        if verdict == Verdict::Executed {
            self.make_durable(seq);
        }
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
    ) -> Option<u64> {
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
        self.audit.as_ref().map(|audit| {
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
            })
        })
    }

    /// Makes the audit record `seq` durable before the outcome it records is reported
    /// (one fsync covers every record appended before it).
    fn make_durable(&self, seq: Option<u64>) {
        if let (Some(audit), Some(seq)) = (&self.audit, seq) {
            durable(audit, seq);
        }
    }

    /// [`make_durable`](Self::make_durable) on a blocking thread: an fsync must not
    /// stall the async workers.
    async fn make_durable_async(&self, seq: Option<u64>) {
        let (Some(audit), Some(seq)) = (self.audit.clone(), seq) else {
            return;
        };
        if let Err(e) = tokio::task::spawn_blocking(move || durable(&audit, seq)).await {
            tracing::error!(error = %e, "executed command not durable in the audit log");
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
        // Reported once the executed ones are durable in the audit log.
        let mut outcomes = Vec::with_capacity(admitted.len());
        let mut durable = None;
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
                outcomes.push(CommandOutcome {
                    id: a.id,
                    verdict: Verdict::Failed,
                    message,
                });
                continue;
            }
            // Leadership may have ended since the reconcile started: a runtime that no
            // longer leads executes nothing (another one may be acting already).
            if !self.is_leading() {
                self.guardrails.failed(&call.plugin, &a.command);
                self.verdict(
                    &call,
                    Some(a.id),
                    &a.command,
                    Verdict::Failed,
                    None,
                    NOT_LEADER,
                );
                outcomes.push(CommandOutcome {
                    id: a.id,
                    verdict: Verdict::Failed,
                    message: NOT_LEADER.to_owned(),
                });
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
                // Reported at once: the sidecar's outcome may come before this batch ends.
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
            if result.is_err() {
                // A failed disruption frees the budget it held, and its cooldown.
                self.guardrails.failed(&call.plugin, &a.command);
            }
            let (verdict, message) = match result {
                Ok(done) => (Verdict::Executed, done),
                Err(e) => (Verdict::Failed, e.to_string()),
            };
            let seq = self.verdict(&call, Some(a.id), &a.command, verdict, None, &message);
            if verdict == Verdict::Executed {
                durable = seq.max(durable);
            }
            outcomes.push(CommandOutcome {
                id: a.id,
                verdict,
                message,
            });
        }
        self.make_durable_async(durable).await;
        for outcome in outcomes {
            self.report(key.clone(), outcome);
        }
    }
}

fn first_id() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| u64::try_from(d.as_micros()).unwrap_or(1))
}

/// Syncs the audit log through record `seq`; a failure is logged (the command ran:
/// its outcome is reported all the same).
fn durable(audit: &AuditLog, seq: u64) {
    if let Err(e) = audit.flush_through(seq) {
        tracing::error!(error = %e, "executed command not durable in the audit log");
    }
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

#[cfg(test)]
mod tests {
    use bosun_host::contract::Patch;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, PostParams};
    use serde_json::json;

    use super::*;
    use crate::audit;
    use crate::informer::Informers;

    /// A cache with nothing in it (the commands here concern no budget).
    struct Empty;

    impl View for Empty {
        fn list(&self, _: &str, _: &str) -> Vec<Arc<str>> {
            Vec::new()
        }

        fn get(&self, _: &ObjectRef) -> Option<Arc<str>> {
            None
        }
    }

    /// A pipe that executes on an embedded cluster holding the ConfigMap `settings`.
    struct Setup {
        _cluster: bosun_cluster::Cluster,
        _dir: tempfile::TempDir,
        pipe: Pipe,
        executor: Executor,
        audit: Arc<AuditLog>,
        leading: watch::Sender<bool>,
        config_maps: Api<ConfigMap>,
    }

    async fn setup() -> Setup {
        let cluster = bosun_cluster::start(bosun_cluster::Config {
            nodes: 0,
            ..Default::default()
        })
        .await
        .expect("cluster");
        let client = cluster.client().await.expect("client");
        let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let settings: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": "settings"}})).expect("object");
        config_maps
            .create(&PostParams::default(), &settings)
            .await
            .expect("create");
        let (informers, _changes) = Informers::new(client.clone());
        let dir = tempfile::tempdir().expect("temp dir");
        let audit = Arc::new(AuditLog::open(dir.path().join("audit.log")).expect("audit"));
        let guardrails = Guardrails::new(crate::guardrail::Config::default()).expect("defaults");
        let pipe = Pipe::new(
            guardrails,
            Arc::new(Empty),
            Metrics::new(),
            Some(audit.clone()),
        );
        let (leading, rx) = watch::channel(true);
        pipe.set_leading(rx);
        Setup {
            _cluster: cluster,
            _dir: dir,
            pipe,
            executor: Executor::new(client, informers),
            audit,
            leading,
            config_maps,
        }
    }

    fn settings() -> ObjectRef {
        ObjectRef::namespaced("v1", "ConfigMap", "default", "settings")
    }

    fn call() -> CallInfo {
        CallInfo {
            plugin: Arc::from("p"),
            revision: Arc::from("sha256:r"),
            key: Some(settings()),
        }
    }

    fn label(value: &str) -> Command {
        Command::MergePatch(Patch {
            target: settings(),
            patch: json!({"metadata": {"labels": {"n": value}}}).to_string(),
        })
    }

    impl Setup {
        async fn label(&self) -> Option<String> {
            let cm = self.config_maps.get("settings").await.expect("get");
            cm.metadata.labels?.get("n").cloned()
        }
    }

    #[tokio::test]
    async fn a_runtime_that_no_longer_leads_executes_nothing() {
        let s = setup().await;
        let id = s.pipe.submit(&call(), label("1")).expect("admitted");
        // Leadership ends while the reconcile that submitted it runs.
        s.leading.send(false).expect("receiver");
        s.pipe.finish(&call(), true, &s.executor).await;
        assert_eq!(s.label().await, None, "nothing executed");
        let outcomes = s.pipe.take_outcomes("p", &settings());
        assert_eq!(outcomes.len(), 1);
        assert_eq!(
            (
                outcomes[0].id,
                outcomes[0].verdict,
                outcomes[0].message.as_str()
            ),
            (id, Verdict::Failed, NOT_LEADER)
        );
        s.audit.flush().expect("flush");
        let records = audit::read(s.audit.path()).expect("audit");
        assert!(
            records.iter().any(|r| r.command_id == Some(id)
                && r.verdict == Verdict::Failed
                && r.message == NOT_LEADER),
            "{records:?}"
        );

        // Leading again, the same command executes.
        s.leading.send(true).expect("receiver");
        s.pipe.submit(&call(), label("2")).expect("admitted");
        s.pipe.finish(&call(), true, &s.executor).await;
        assert_eq!(s.label().await.as_deref(), Some("2"));
    }

    #[tokio::test]
    async fn an_executed_command_is_on_disk_before_its_outcome_is_reported() {
        let s = setup().await;
        let ids: Vec<u64> = ["a", "b", "c"]
            .into_iter()
            .map(|v| s.pipe.submit(&call(), label(v)).expect("admitted"))
            .collect();
        s.pipe.finish(&call(), true, &s.executor).await;
        let outcomes = s.pipe.take_outcomes("p", &settings());
        assert!(
            outcomes.iter().all(|o| o.verdict == Verdict::Executed),
            "{outcomes:?}"
        );
        assert_eq!(outcomes.len(), 3);
        // Read from the file at once: no flush since the outcomes were reported.
        let on_disk: Vec<u64> = audit::read(s.audit.path())
            .expect("audit")
            .into_iter()
            .filter(|r| r.verdict == Verdict::Executed)
            .filter_map(|r| r.command_id)
            .collect();
        assert_eq!(on_disk, ids);
    }
}
