//! The Job controller: runs pods to completion, `parallelism` (default 1) at a time,
//! until `completions` (default 1) have succeeded, or more than `backoffLimit` (default
//! 6) have failed (with `restartPolicy: OnFailure`, when the containers of its running
//! pods have restarted `backoffLimit` times). Status and conditions as
//! kube-controller-manager writes them: `SuccessCriteriaMet` then `Complete` (reason
//! `CompletionsReached`), or `FailureTarget` then `Failed` (reason
//! `BackoffLimitExceeded`); its pods then stop. `suspend: true` deletes the active pods.
//! At most [`super::Config::max_pods_per_workload`] pods run at once, whatever
//! `parallelism`. Failed pods are replaced at once (kube waits 10 s, doubling, before it does); indexed
//! completion, pod failure and success policies are not simulated.
//!
//! How long a container runs and its exit code come from the kubelet (see the module
//! doc of `sim`).

use super::creates::{Controller, Creates, Owner};
use super::events::{self, Note};
use super::{Ctx, by_owner, pod_from_template, pod_ready};
use crate::meta;
use crate::store::DeleteOptions;
use serde_json::{Value, json};
use tokio::time::Instant;

/// One pass over every Job.
pub(crate) fn reconcile(ctx: &Ctx, _: &super::Wake, creates: &mut Creates) -> Option<Instant> {
    let jobs = ctx.store.all(&ctx.kinds.jobs.storage_key());
    if jobs.is_empty() {
        return None;
    }
    let pods = ctx.store.all(&ctx.kinds.pods.storage_key());
    let pods_of = by_owner(&pods);
    let none = Vec::new();
    for job in jobs.iter().filter(|j| !meta::is_deleting(j)) {
        sync(
            ctx,
            job,
            pods_of.get(meta::uid_of(job)).unwrap_or(&none),
            creates,
        );
    }
    None
}

fn number(job: &Value, field: &str, default: u64) -> usize {
    let n = meta::path(job, field)
        .and_then(Value::as_u64)
        .unwrap_or(default);
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Whether the Job has a True condition of this type.
fn has_condition(job: &Value, type_: &str) -> bool {
    meta::path(job, "status.conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| meta::str_at(c, "type") == type_ && meta::str_at(c, "status") == "True")
        })
}

fn condition(type_: &str, reason: &str, message: &str, now: &str) -> Value {
    json!({"type": type_, "status": "True", "reason": reason, "message": message,
        "lastProbeTime": now, "lastTransitionTime": now})
}

fn restarts(pod: &Value) -> u64 {
    meta::path(pod, "status.containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("restartCount").and_then(Value::as_u64))
        .sum()
}

fn sync(ctx: &Ctx, job: &Value, pods: &[&Value], creates: &mut Creates) {
    let name = meta::name(job);
    let completions = number(job, "spec.completions", 1);
    // Capped as a ReplicaSet's replicas are (without the warning Event).
    let parallelism =
        number(job, "spec.parallelism", 1).min(ctx.control.config.max_pods_per_workload);
    let backoff_limit = number(job, "spec.backoffLimit", 6);
    let suspended = meta::path(job, "spec.suspend").and_then(Value::as_bool) == Some(true);
    let phase = |p: &Value| meta::str_at(p, "status.phase").to_string();
    let live: Vec<&Value> = pods
        .iter()
        .copied()
        .filter(|p| !meta::is_deleting(p))
        .collect();
    let active: Vec<&Value> = live
        .iter()
        .copied()
        .filter(|p| !matches!(phase(p).as_str(), "Succeeded" | "Failed"))
        .collect();
    let succeeded = pods.iter().filter(|p| phase(p) == "Succeeded").count();
    let failed = pods.iter().filter(|p| phase(p) == "Failed").count();
    let on_failure = meta::str_at(job, "spec.template.spec.restartPolicy") == "OnFailure";
    let restarted: u64 = active.iter().map(|p| restarts(p)).sum();
    let now = meta::now();
    let mut status = job.get("status").cloned().unwrap_or(json!({}));
    if !status.is_object() {
        status = json!({});
    }
    let finished = has_condition(job, "Complete") || has_condition(job, "Failed");
    let mut active_n = active.len();
    if !finished {
        if status.get("startTime").is_none() && !suspended {
            status["startTime"] = json!(now);
        }
        let past_limit = failed > backoff_limit
            || (on_failure && backoff_limit > 0 && restarted >= backoff_limit as u64)
            || (on_failure && backoff_limit == 0 && restarted > 0);
        if succeeded >= completions {
            let mut conds = vec![
                condition(
                    "SuccessCriteriaMet",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                    &now,
                ),
                condition(
                    "Complete",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                    &now,
                ),
            ];
            push_conditions(&mut status, &mut conds);
            status["completionTime"] = json!(now);
            active.iter().for_each(|p| delete_pod(ctx, job, p));
            active_n = 0;
            events::record(
                ctx,
                job,
                &Note::normal("job-controller", "Completed", "Job completed"),
            );
        } else if past_limit {
            let message = "Job has reached the specified backoff limit";
            let mut conds = vec![
                condition("FailureTarget", "BackoffLimitExceeded", message, &now),
                condition("Failed", "BackoffLimitExceeded", message, &now),
            ];
            push_conditions(&mut status, &mut conds);
            active.iter().for_each(|p| delete_pod(ctx, job, p));
            active_n = 0;
            events::record(
                ctx,
                job,
                &Note {
                    type_: "Warning",
                    ..Note::normal("job-controller", "BackoffLimitExceeded", message)
                },
            );
        } else if suspended {
            active.iter().for_each(|p| delete_pod(ctx, job, p));
            active_n = 0;
        } else {
            let want = parallelism.min(completions.saturating_sub(succeeded));
            if active.len() < want && creates.allowed(ctx, job) {
                let owner = Owner::of(job);
                let uid = meta::uid_of(job);
                let labels = [
                    ("batch.kubernetes.io/controller-uid", uid),
                    ("batch.kubernetes.io/job-name", name),
                    ("controller-uid", uid),
                    ("job-name", name),
                ];
                for _ in active.len()..want {
                    creates.push(
                        Controller::Job,
                        &owner,
                        pod_from_template(job, None, &labels),
                    );
                }
            } else if active.len() > want {
                // Parallelism lowered: the newest go.
                let mut extra = active.clone();
                extra.sort_by_key(|p| {
                    std::cmp::Reverse(meta::str_at(p, "metadata.creationTimestamp").to_string())
                });
                for p in extra.iter().take(active.len() - want) {
                    delete_pod(ctx, job, p);
                    active_n -= 1;
                }
            }
        }
    } else {
        active_n = 0;
    }
    let ready = if active_n == 0 {
        0
    } else {
        active.iter().filter(|p| pod_ready(p)).count()
    };
    status["active"] = json!(active_n);
    status["ready"] = json!(ready);
    status["succeeded"] = json!(succeeded);
    status["failed"] = json!(failed);
    status["terminating"] = json!(pods.iter().filter(|p| meta::is_deleting(p)).count());
    status["uncountedTerminatedPods"] = json!({});
    super::write_status(ctx, &ctx.kinds.jobs, job, status);
}

/// Adds conditions (the Job's are kept).
fn push_conditions(status: &mut Value, conds: &mut Vec<Value>) {
    let list = status
        .as_object_mut()
        .map(|m| m.entry("conditions").or_insert_with(|| json!([])));
    if let Some(Value::Array(list)) = list {
        list.append(conds);
    }
}

fn delete_pod(ctx: &Ctx, job: &Value, pod: &Value) {
    let (ns, name) = (meta::namespace(pod), meta::name(pod));
    if ctx
        .store
        .delete(&ctx.kinds.pods, ns, name, &DeleteOptions::default())
        .is_ok()
    {
        let message = format!("Deleted pod: {name}");
        events::record(
            ctx,
            job,
            &Note::normal("job-controller", "SuccessfulDelete", &message),
        );
    }
}
