//! The scheduler: binds pending pods to Ready, schedulable nodes with room, honouring
//! `nodeSelector` and taints/tolerations (NoSchedule and NoExecute). Affinity and
//! resources are not considered: room is a pod count.

use super::Ctx;
use crate::meta;
use serde_json::{Value, json};
use std::collections::HashMap;
use tokio::time::Instant;

fn node_ready(node: &Value) -> bool {
    meta::path(node, "status.conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| meta::str_at(c, "type") == "Ready" && meta::str_at(c, "status") == "True")
        })
}

/// Whether one of the pod's tolerations matches the taint (PreferNoSchedule always).
pub(crate) fn tolerates(pod: &Value, taint: &Value) -> bool {
    let effect = meta::str_at(taint, "effect");
    if effect == "PreferNoSchedule" {
        return true;
    }
    meta::path(pod, "spec.tolerations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|t| {
            let key_ok = match meta::str_at(t, "key") {
                "" => meta::str_at(t, "operator") == "Exists",
                k => k == meta::str_at(taint, "key"),
            };
            let value_ok = meta::str_at(t, "operator") == "Exists"
                || meta::str_at(t, "value") == meta::str_at(taint, "value");
            let effect_ok =
                matches!(meta::str_at(t, "effect"), "") || meta::str_at(t, "effect") == effect;
            key_ok && value_ok && effect_ok
        })
}

/// Whether `pod` may run on `node`, capacity aside.
pub(crate) fn fits(pod: &Value, node: &Value) -> bool {
    if meta::path(node, "spec.unschedulable").and_then(Value::as_bool) == Some(true) {
        return false;
    }
    let labels = meta::labels(node);
    let selector_ok = meta::path(pod, "spec.nodeSelector")
        .and_then(Value::as_object)
        .is_none_or(|sel| sel.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let taints_ok = meta::path(node, "spec.taints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .all(|t| tolerates(pod, t));
    selector_ok && taints_ok
}

/// The scheduler cares about pods waiting for a node, pods going (capacity frees up) and
/// nodes.
pub(crate) fn interest(ctx: &Ctx, e: &crate::store::Event) -> super::Interest {
    use crate::store::EventKind;
    let o = &e.object;
    let wanted = if e.key == ctx.kinds.pods.storage_key() {
        e.kind == EventKind::Deleted
            || (meta::str_at(o, "spec.nodeName").is_empty() && !meta::is_deleting(o))
    } else {
        e.key == ctx.kinds.nodes.storage_key()
    };
    if wanted {
        super::Interest::Full
    } else {
        super::Interest::Ignore
    }
}

/// Binds every pending pod it can.
pub(crate) fn reconcile(
    ctx: &Ctx,
    _: &super::Wake,
    _: &mut super::creates::Creates,
) -> Option<Instant> {
    let pods = ctx.store.all(&ctx.kinds.pods.storage_key());
    let pending: Vec<&Value> = pods
        .iter()
        .map(|p| &**p)
        .filter(|p| {
            meta::str_at(p, "spec.nodeName").is_empty()
                && !meta::is_deleting(p)
                && matches!(
                    meta::str_at(p, "spec.schedulerName"),
                    "" | "default-scheduler"
                )
        })
        .collect();
    if pending.is_empty() {
        return None;
    }
    let nodes = ctx.store.all(&ctx.kinds.nodes.storage_key());
    let mut load: HashMap<String, usize> = HashMap::new();
    for p in &pods {
        let n = meta::str_at(p, "spec.nodeName");
        if !n.is_empty() && !matches!(meta::str_at(p, "status.phase"), "Succeeded" | "Failed") {
            *load.entry(n.to_string()).or_default() += 1;
        }
    }
    for pod in pending {
        let best = nodes
            .iter()
            .filter(|n| node_ready(n) && fits(pod, n))
            .filter(|n| {
                let cap = meta::str_at(n, "status.allocatable.pods")
                    .parse::<usize>()
                    .unwrap_or(110);
                load.get(meta::name(n)).copied().unwrap_or(0) < cap
            })
            .min_by_key(|n| {
                (
                    load.get(meta::name(n)).copied().unwrap_or(0),
                    meta::name(n).to_string(),
                )
            });
        let (ns, name) = (meta::namespace(pod), meta::name(pod));
        match best {
            Some(node) => {
                let node_name = meta::name(node).to_string();
                match crate::api::bind(&ctx.store, &ctx.kinds.pods, ns, name, &node_name, false) {
                    Ok(bound) => {
                        let message = format!("Successfully assigned {ns}/{name} to {node_name}");
                        super::events::record(
                            ctx,
                            &bound,
                            &super::events::Note::normal(
                                "default-scheduler",
                                "Scheduled",
                                &message,
                            ),
                        );
                        *load.entry(node_name).or_default() += 1;
                        let mut status = bound.get("status").cloned().unwrap_or(json!({}));
                        set_condition(&mut status, "PodScheduled", "True", "");
                        super::write_status(ctx, &ctx.kinds.pods, &bound, status);
                    }
                    Err(e) => tracing::debug!(pod = name, error = %e, "bind failed"),
                }
            }
            None => {
                let mut status = pod.get("status").cloned().unwrap_or(json!({}));
                set_condition(&mut status, "PodScheduled", "False", "Unschedulable");
                super::write_status(ctx, &ctx.kinds.pods, pod, status);
            }
        }
    }
    None
}

/// Sets a pod condition, keeping `lastTransitionTime` when the status does not change.
pub(crate) fn set_condition(status: &mut Value, type_: &str, value: &str, reason: &str) {
    if !status.is_object() {
        *status = json!({});
    }
    let conds = status
        .as_object_mut()
        .map(|m| m.entry("conditions").or_insert_with(|| json!([])));
    let Some(Value::Array(conds)) = conds else {
        return;
    };
    if let Some(c) = conds.iter_mut().find(|c| meta::str_at(c, "type") == type_) {
        if meta::str_at(c, "status") != value {
            *c = json!({"type": type_, "status": value, "lastTransitionTime": meta::now()});
            if !reason.is_empty() {
                c["reason"] = json!(reason);
            }
        }
        return;
    }
    let mut c = json!({"type": type_, "status": value, "lastTransitionTime": meta::now()});
    if !reason.is_empty() {
        c["reason"] = json!(reason);
    }
    conds.push(c);
}
