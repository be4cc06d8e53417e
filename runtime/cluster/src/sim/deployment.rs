//! The Deployment controller: one ReplicaSet per pod template; RollingUpdate within
//! maxSurge/maxUnavailable, or Recreate.

use super::{Ctx, owned_by, replicas, template_hash};
use crate::meta;
use serde_json::{Value, json};
use tokio::time::Instant;

/// One pass over every Deployment.
pub(crate) fn reconcile(
    ctx: &Ctx,
    _: &super::Wake,
    _: &mut super::creates::Creates,
) -> Option<Instant> {
    let deployments = ctx.store.all(&ctx.kinds.deployments.storage_key());
    if deployments.is_empty() {
        return None;
    }
    let sets = ctx.store.all(&ctx.kinds.replicasets.storage_key());
    for d in deployments.iter().filter(|d| !meta::is_deleting(d)) {
        sync(ctx, d, &sets);
    }
    None
}

/// Int-or-percent against `total`, rounding up or down. The numbers come from the
/// user's spec: the arithmetic saturates rather than overflows.
fn resolve(v: Option<&Value>, total: usize, default: &str, up: bool) -> usize {
    let v = v.cloned().unwrap_or(json!(default));
    let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    match v {
        Value::Number(n) => count(n.as_u64().unwrap_or(0)),
        Value::String(s) => match s.strip_suffix('%').and_then(|p| p.parse::<usize>().ok()) {
            Some(p) if up => total.saturating_mul(p).div_ceil(100),
            Some(p) => total.saturating_mul(p) / 100,
            None => s.parse().unwrap_or(0),
        },
        _ => 0,
    }
}

fn status_count(rs: &Value, field: &str) -> usize {
    meta::path(rs, &format!("status.{field}"))
        .and_then(Value::as_u64)
        .unwrap_or(0) as usize
}

/// Available pods of a ReplicaSet, as far as its status tells: never more than it is
/// asked for (a scale-down the ReplicaSet controller has not acted on yet).
fn available(rs: &Value) -> usize {
    status_count(rs, "availableReplicas").min(replicas(rs))
}

/// Whether the ReplicaSet controller has not yet written a status for the ReplicaSet's
/// current spec: its counts may be stale.
fn stale(rs: &Value) -> bool {
    let generation = meta::path(rs, "metadata.generation")
        .and_then(Value::as_u64)
        .unwrap_or(1);
    meta::path(rs, "status.observedGeneration")
        .and_then(Value::as_u64)
        .is_none_or(|g| g < generation)
}

/// A RollingUpdate step, as kube-controller-manager's `rolloutRolling`: scale the new
/// ReplicaSet up within maxSurge; otherwise scale the old ones down while the available
/// pods stay at least `replicas - maxUnavailable`, unavailable pods first. Nothing moves
/// while a ReplicaSet's status is stale: the counts would be too.
fn rolling(ctx: &Ctx, d: &Value, new: &Value, olds: &[&Value], owned: &[&Value], want: usize) {
    if owned.iter().any(|s| stale(s)) {
        return;
    }
    let ru = meta::path(d, "spec.strategy.rollingUpdate");
    let surge = resolve(ru.and_then(|r| r.get("maxSurge")), want, "25%", true);
    let mut unavailable = resolve(ru.and_then(|r| r.get("maxUnavailable")), want, "25%", false);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    let total = owned
        .iter()
        .fold(0usize, |t, s| t.saturating_add(replicas(s)));
    let new_replicas = replicas(new);
    if new_replicas > want {
        scale(ctx, d, new, want);
        return;
    }
    if new_replicas < want {
        let room = want.saturating_add(surge).saturating_sub(total);
        if room > 0 {
            scale(ctx, d, new, new_replicas + room.min(want - new_replicas));
            return;
        }
    }
    let min_available = want.saturating_sub(unavailable);
    let new_unavailable = new_replicas.saturating_sub(available(new));
    let mut budget = total
        .saturating_sub(min_available)
        .saturating_sub(new_unavailable);
    if budget == 0 {
        return;
    }
    // Unavailable pods of old ReplicaSets first: removing them costs no availability.
    let mut left: Vec<(&Value, usize)> = Vec::with_capacity(olds.len());
    for o in olds {
        let r = replicas(o);
        let rm = r.saturating_sub(available(o)).min(budget);
        budget -= rm;
        left.push((o, r - rm));
    }
    // Then available ones, oldest ReplicaSet first, while enough stay available.
    let avail = owned
        .iter()
        .fold(0usize, |t, s| t.saturating_add(available(s)));
    let mut room = avail.saturating_sub(min_available);
    for (o, r) in &mut left {
        let rm = (*r).min(room);
        room -= rm;
        *r -= rm;
        scale(ctx, d, o, *r);
    }
}

/// Scales a ReplicaSet of `d`, with a `ScalingReplicaSet` Event on `d` as
/// kube-controller-manager words it.
fn scale(ctx: &Ctx, d: &Value, rs: &Value, n: usize) {
    let from = replicas(rs);
    if from == n {
        return;
    }
    let mut o = rs.clone();
    o["spec"]["replicas"] = json!(n);
    let written = ctx.store.update(
        &ctx.kinds.replicasets,
        meta::namespace(rs),
        meta::name(rs),
        o,
        false,
        false,
    );
    if written.is_ok() {
        scaled_event(ctx, d, meta::name(rs), from, n);
    }
}

fn scaled_event(ctx: &Ctx, d: &Value, rs: &str, from: usize, to: usize) {
    let way = if to > from { "up" } else { "down" };
    let message = format!("Scaled {way} replica set {rs} from {from} to {to}");
    super::events::record(
        ctx,
        d,
        &super::events::Note::normal("deployment-controller", "ScalingReplicaSet", &message),
    );
}

fn sync(ctx: &Ctx, d: &Value, sets: &[std::sync::Arc<Value>]) {
    let (ns, name) = (meta::namespace(d), meta::name(d));
    let want = replicas(d);
    let template = meta::path(d, "spec.template")
        .cloned()
        .unwrap_or(Value::Null);
    let hash = template_hash(&template);
    let rs_name = format!("{name}-{hash}");
    let owned: Vec<&Value> = sets
        .iter()
        .map(|s| &**s)
        .filter(|s| owned_by(s, d))
        .collect();
    let Some(new) = owned.iter().find(|s| meta::name(s) == rs_name).copied() else {
        let revision = owned
            .iter()
            .filter_map(|s| {
                s.pointer("/metadata/annotations/deployment.kubernetes.io~1revision")
                    .and_then(Value::as_str)
                    .and_then(|r| r.parse::<u64>().ok())
            })
            .max()
            .unwrap_or(0)
            .saturating_add(1);
        let mut tpl = template.clone();
        meta::object_mut(&mut tpl["metadata"], "labels")
            .insert("pod-template-hash".into(), json!(hash));
        let mut selector = meta::path(d, "spec.selector").cloned().unwrap_or(json!({}));
        meta::object_mut(&mut selector, "matchLabels")
            .insert("pod-template-hash".into(), json!(hash));
        let labels = tpl
            .pointer("/metadata/labels")
            .cloned()
            .unwrap_or(json!({}));
        let rs = json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": rs_name, "namespace": ns, "labels": labels,
                "annotations": {"deployment.kubernetes.io/revision": revision.to_string()},
                "ownerReferences": [super::owner_ref(d)]},
            "spec": {"replicas": if owned.is_empty() { want } else { 0 }, "selector": selector, "template": tpl},
        });
        let initial = replicas(&rs);
        match ctx.store.create(&ctx.kinds.replicasets, ns, rs, false) {
            Ok(_) if initial > 0 => scaled_event(ctx, d, &rs_name, 0, initial),
            Ok(_) => {}
            Err(e) if e.code == 409 => {}
            Err(e) => {
                tracing::warn!(deployment = name, error = %e, "cannot create replicaset");
            }
        }
        return;
    };
    let mut olds: Vec<&Value> = owned
        .iter()
        .filter(|s| meta::name(s) != rs_name)
        .copied()
        .collect();
    olds.sort_by_key(|s| meta::str_at(s, "metadata.creationTimestamp").to_string());
    let recreate = meta::str_at(d, "spec.strategy.type") == "Recreate";
    if recreate {
        for o in &olds {
            scale(ctx, d, o, 0);
        }
        if olds.iter().all(|o| status_count(o, "replicas") == 0) {
            scale(ctx, d, new, want);
        }
    } else {
        rolling(ctx, d, new, &olds, &owned, want);
    }
    let sum = |f: &str| -> usize {
        owned
            .iter()
            .fold(0usize, |t, s| t.saturating_add(status_count(s, f)))
    };
    let available = sum("availableReplicas");
    let tf = |b: bool| if b { "True" } else { "False" };
    let min_available = want.saturating_sub(resolve(
        meta::path(d, "spec.strategy.rollingUpdate.maxUnavailable"),
        want,
        "25%",
        false,
    ));
    let status = json!({
        "observedGeneration": meta::path(d, "metadata.generation").cloned().unwrap_or(json!(1)),
        "replicas": sum("replicas"),
        "updatedReplicas": status_count(new, "replicas"),
        "readyReplicas": sum("readyReplicas"),
        "availableReplicas": available,
        "unavailableReplicas": want.saturating_sub(available),
        "conditions": [
            {"type": "Available", "status": tf(available >= min_available), "reason": "MinimumReplicasAvailable"},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
        ],
    });
    super::write_status(ctx, &ctx.kinds.deployments, d, status);
}
