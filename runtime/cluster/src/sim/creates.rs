//! Pod creates by the workload controllers, admitted as kube-apiserver admits
//! kube-controller-manager's: mutating webhooks (sidecar injection), defaults and
//! validation, validating webhooks.
//!
//! A controller's pass is synchronous; it queues the pods it wants in [`Creates`], and
//! [`flush`] creates them after the pass, holding no lock across a webhook call, as the
//! controller's service account
//! (`system:serviceaccount:kube-system:replicaset-controller`). An owner's pods go in
//! slow-start batches (1, 2, 4, ... up to [`MAX_BATCH`] at once, as the ReplicaSet
//! controller's `slowStartBatch`). The first refusal (a denial, a webhook failing under
//! `failurePolicy: Fail`, invalid content) stops the owner's creates for the pass, records
//! a `FailedCreate` Warning Event on the owner (`Error creating: ...` for a ReplicaSet,
//! `create Pod NAME in StatefulSet NAME failed error: ...` for a StatefulSet; repeats are
//! counted on one Event) and holds its creates back for an exponential backoff: 5 ms
//! doubling per failure, as kube-controller-manager's work queues, but capped at
//! [`MAX_BACKOFF`] (kube's cap is 1000 s) so a fixed webhook is seen soon. A change of the
//! owner (its resourceVersion) ends the wait, as an informer event requeues it at once.
//! A success forgets the failures and records a `SuccessfulCreate` Normal Event on the
//! owner (`Created pod: NAME`; `create Pod NAME in StatefulSet NAME successful`).

use super::Ctx;
use crate::admission::User;
use crate::meta;
use crate::status::ApiError;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The first retry's delay (client-go's `DefaultControllerRateLimiter` base).
const BASE_BACKOFF: Duration = Duration::from_millis(5);
/// The longest wait between retries.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Pods of one owner created at once, at most (kube's slow start goes up to its burst of
/// 500): within what the webhook client keeps idle, so batches reuse connections.
const MAX_BATCH: usize = 16;
/// Owners remembered in backoff; past that the oldest failures are forgotten.
const MAX_OWNERS: usize = 4096;

/// The controllers that create pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Controller {
    ReplicaSet,
    StatefulSet,
    DaemonSet,
    Job,
}

impl Controller {
    /// Its service account in `kube-system`.
    fn name(self) -> &'static str {
        match self {
            Self::ReplicaSet => "replicaset-controller",
            Self::StatefulSet => "statefulset-controller",
            Self::DaemonSet => "daemon-set-controller",
            Self::Job => "job-controller",
        }
    }

    /// The Events' source component (the DaemonSet controller's differs from its
    /// service account).
    fn component(self) -> &'static str {
        match self {
            Self::DaemonSet => "daemonset-controller",
            other => other.name(),
        }
    }

    /// The `SuccessfulCreate` message, as each controller words it.
    fn created(self, owner: &Owner, pod: &str) -> String {
        match self {
            Self::StatefulSet => {
                format!("create Pod {pod} in StatefulSet {} successful", owner.name)
            }
            _ => format!("Created pod: {pod}"),
        }
    }

    /// The `FailedCreate` message, as each controller words it.
    fn failed(self, owner: &Owner, pod: &str, e: &ApiError) -> String {
        match self {
            Self::ReplicaSet | Self::DaemonSet | Self::Job => {
                format!("Error creating: {}", e.message)
            }
            Self::StatefulSet => format!(
                "create Pod {pod} in StatefulSet {} failed error: {}",
                owner.name, e.message
            ),
        }
    }
}

/// The owner of the pods to create: what its Event and its backoff need.
#[derive(Debug)]
pub(crate) struct Owner {
    api_version: String,
    kind: String,
    name: String,
    namespace: String,
    uid: String,
    resource_version: String,
}

impl Owner {
    pub(crate) fn of(obj: &Value) -> Arc<Self> {
        Arc::new(Self {
            api_version: meta::str_at(obj, "apiVersion").to_string(),
            kind: meta::str_at(obj, "kind").to_string(),
            name: meta::name(obj).to_string(),
            namespace: meta::namespace(obj).to_string(),
            uid: meta::uid_of(obj).to_string(),
            resource_version: meta::str_at(obj, "metadata.resourceVersion").to_string(),
        })
    }
}

/// The pods one pass of a controller asks for, created by [`flush`] after the pass.
#[derive(Debug, Default)]
pub(crate) struct Creates {
    pods: Vec<(Controller, Arc<Owner>, Value)>,
    /// When an owner held back by its backoff may create again.
    retry: Option<Instant>,
}

impl Creates {
    /// Whether `owner` may create pods now: not while its backoff runs (the controller
    /// then runs again when it ends).
    pub(crate) fn allowed(&mut self, ctx: &Ctx, owner: &Value) -> bool {
        let backoffs = ctx.backoffs.lock();
        let Some(b) = backoffs.get(meta::uid_of(owner)) else {
            return true;
        };
        if b.resource_version != meta::str_at(owner, "metadata.resourceVersion")
            || b.until <= Instant::now()
        {
            return true;
        }
        self.retry_at(b.until);
        false
    }

    /// Queues `pod` for `owner`.
    pub(crate) fn push(&mut self, by: Controller, owner: &Arc<Owner>, pod: Value) {
        self.pods.push((by, owner.clone(), pod));
    }

    fn retry_at(&mut self, at: Instant) {
        self.retry = Some(self.retry.map_or(at, |r| r.min(at)));
    }
}

/// An owner's failures to create.
#[derive(Debug)]
struct Backoff {
    failures: u32,
    until: Instant,
    /// The owner's resourceVersion at the last failure: a change retries at once.
    resource_version: String,
}

/// The owners whose creates failed, by uid.
#[derive(Debug, Default)]
pub(crate) struct Backoffs(Mutex<HashMap<String, Backoff>>);

impl Backoffs {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Backoff>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a failure; returns when the owner may try again.
    fn failed(&self, owner: &Owner) -> Instant {
        let mut map = self.lock();
        if map.len() >= MAX_OWNERS && !map.contains_key(&owner.uid) {
            map.clear();
        }
        let b = map.entry(owner.uid.clone()).or_insert(Backoff {
            failures: 0,
            until: Instant::now(),
            resource_version: String::new(),
        });
        let delay = BASE_BACKOFF
            .checked_mul(1u32.checked_shl(b.failures).unwrap_or(u32::MAX))
            .unwrap_or(MAX_BACKOFF)
            .min(MAX_BACKOFF);
        b.failures = b.failures.saturating_add(1);
        b.until = Instant::now() + delay;
        b.resource_version.clone_from(&owner.resource_version);
        b.until
    }

    fn succeeded(&self, owner: &Owner) {
        self.lock().remove(&owner.uid);
    }
}

/// Creates the queued pods, owner by owner; returns when an owner in backoff may try
/// again (the earliest), if one is.
pub(crate) async fn flush(ctx: &Ctx, creates: &mut Creates) -> Option<Instant> {
    let mut pods = std::mem::take(&mut creates.pods).into_iter().peekable();
    while let Some((by, owner, first)) = pods.next() {
        // A controller queues an owner's pods together.
        let mut mine = vec![first];
        while let Some((_, _, pod)) = pods.next_if(|(_, o, _)| Arc::ptr_eq(o, &owner)) {
            mine.push(pod);
        }
        if let Some(at) = create_all(ctx, by, &owner, mine).await {
            creates.retry_at(at);
        }
    }
    creates.retry.take()
}

/// Creates one owner's pods in slow-start batches; on a failure, the time the owner may
/// try again.
async fn create_all(ctx: &Ctx, by: Controller, owner: &Owner, pods: Vec<Value>) -> Option<Instant> {
    let mut pods = pods.into_iter();
    let mut batch = 1;
    loop {
        let chunk: Vec<Value> = pods.by_ref().take(batch).collect();
        if chunk.is_empty() {
            ctx.backoffs.succeeded(owner);
            return None;
        }
        let results = futures::future::join_all(chunk.into_iter().map(|pod| async move {
            let name = meta::name(&pod).to_string();
            let out = ctx
                .admission
                .create_as(
                    &ctx.store,
                    &ctx.kinds.pods,
                    &owner.namespace,
                    pod,
                    User::Controller(by.name()),
                )
                .await;
            (name, out)
        }))
        .await;
        let mut failed = false;
        for (pod, out) in results {
            let e = match out {
                Ok(created) => {
                    let message = by.created(owner, meta::name(&created));
                    let obj = super::events::object(
                        &owner.api_version,
                        &owner.kind,
                        &owner.namespace,
                        &owner.name,
                        &owner.uid,
                    );
                    super::events::record(
                        ctx,
                        &obj,
                        &super::events::Note::normal(by.component(), "SuccessfulCreate", &message),
                    );
                    continue;
                }
                Err(e) => e,
            };
            // A StatefulSet pod made meanwhile; it is seen on the next pass.
            if e.code == 409 {
                continue;
            }
            failed = true;
            tracing::warn!(
                kind = %owner.kind,
                namespace = %owner.namespace,
                name = %owner.name,
                error = %e,
                "cannot create pod"
            );
            // As kube's controllers: no Event when the namespace is going away.
            if !e.message.contains("because it is being terminated") {
                record(ctx, by, owner, "FailedCreate", &by.failed(owner, &pod, &e));
            }
        }
        if failed {
            return Some(ctx.backoffs.failed(owner));
        }
        batch = (batch * 2).min(MAX_BATCH);
    }
}

/// Records a Warning Event on `owner`, or counts it again on the same one, as client-go's
/// event recorder aggregates repeats.
fn record(ctx: &Ctx, by: Controller, owner: &Owner, reason: &str, message: &str) {
    let Some(events) = ctx.store.resolve("", "v1", "events") else {
        return;
    };
    let now = meta::now();
    let mut seen = None;
    ctx.store.for_each(&events, &owner.namespace, |e| {
        if seen.is_none()
            && meta::str_at(e, "involvedObject.uid") == owner.uid
            && meta::str_at(e, "reason") == reason
            && meta::str_at(e, "message") == message
            && meta::str_at(e, "source.component") == by.component()
        {
            seen = Some(e.clone());
        }
    });
    if let Some(mut e) = seen {
        let count = e.get("count").and_then(Value::as_i64).unwrap_or(1);
        e["count"] = json!(count.saturating_add(1));
        e["lastTimestamp"] = json!(now);
        let name = meta::name(&e).to_string();
        if ctx
            .store
            .update(&events, &owner.namespace, &name, e, false, false)
            .is_ok()
        {
            return;
        }
    }
    let event = json!({
        "metadata": {"generateName": format!("{}.", owner.name), "namespace": owner.namespace},
        "involvedObject": {
            "apiVersion": owner.api_version, "kind": owner.kind, "name": owner.name,
            "namespace": owner.namespace, "uid": owner.uid,
            "resourceVersion": owner.resource_version,
        },
        "reason": reason,
        "message": message,
        "type": "Warning",
        "source": {"component": by.component()},
        "reportingComponent": by.component(),
        "count": 1,
        "firstTimestamp": now,
        "lastTimestamp": now,
    });
    if let Err(e) = ctx.store.create(&events, &owner.namespace, event, false) {
        tracing::debug!(error = %e, "cannot record an event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let backoffs = Backoffs::default();
        let owner = Owner::of(&json!({"metadata": {"uid": "u1", "resourceVersion": "7"}}));
        let mut last = Duration::ZERO;
        for i in 0..40 {
            let wait = backoffs
                .failed(&owner)
                .saturating_duration_since(Instant::now());
            assert!(wait <= MAX_BACKOFF, "{i}: {wait:?}");
            if i > 0 && i < 10 {
                assert!(wait > last, "{i}: {wait:?} after {last:?}");
            }
            last = wait;
        }
        assert!(last > MAX_BACKOFF / 2, "reaches the cap: {last:?}");
        backoffs.succeeded(&owner);
        assert!(backoffs.lock().is_empty());
    }
}
