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

fn scale(ctx: &Ctx, rs: &Value, n: usize) {
    if replicas(rs) == n {
        return;
    }
    let mut o = rs.clone();
    o["spec"]["replicas"] = json!(n);
    let _ = ctx.store.update(
        &ctx.kinds.replicasets,
        meta::namespace(rs),
        meta::name(rs),
        o,
        false,
        false,
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
        if let Err(e) = ctx.store.create(&ctx.kinds.replicasets, ns, rs, false)
            && e.code != 409
        {
            tracing::warn!(deployment = name, error = %e, "cannot create replicaset");
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
            scale(ctx, o, 0);
        }
        if olds.iter().all(|o| status_count(o, "replicas") == 0) {
            scale(ctx, new, want);
        }
    } else {
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
            scale(ctx, new, want);
        } else if new_replicas < want {
            let room = want.saturating_add(surge).saturating_sub(total);
            if room > 0 {
                scale(ctx, new, new_replicas + room.min(want - new_replicas));
            }
        }
        let ready = owned.iter().fold(0usize, |t, s| {
            t.saturating_add(status_count(s, "readyReplicas"))
        });
        let mut removable = ready.saturating_sub(want.saturating_sub(unavailable));
        for o in &olds {
            let r = replicas(o);
            let unready = r.saturating_sub(status_count(o, "readyReplicas"));
            let rm = r.min(unready.saturating_add(removable));
            removable = removable.saturating_sub(rm.saturating_sub(unready));
            if rm > 0 {
                scale(ctx, o, r - rm);
            }
        }
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
