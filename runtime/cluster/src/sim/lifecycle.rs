//! The node lifecycle controller and the pod garbage collector of kube-controller-manager,
//! for the simulated nodes: a node whose kubelet stopped posting status goes `Unknown`,
//! a node that is not Ready is tainted and its pods marked not Ready, and a pod stuck
//! Terminating on an out-of-service node is force-deleted. See the module doc of `sim`.

use super::Ctx;
use crate::meta;
use crate::store::DeleteOptions;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// The taint of a node whose Ready condition is `False`.
const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The taint of a node whose Ready condition is `Unknown`.
const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// The taint an administrator puts on a node known to be down for good.
const OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";
/// The conditions a kubelet posts, which go `Unknown` when it stops.
const KUBELET_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// What the controller last saw of each node's heartbeat and Lease, and when it saw them
/// change: as kube-controller-manager, it judges by its own clock, so a server restart
/// gives every node a full grace period.
#[derive(Debug, Default)]
pub(crate) struct State {
    probes: HashMap<String, Probe>,
}

#[derive(Debug)]
struct Probe {
    heartbeat: String,
    lease: String,
    changed: Instant,
}

/// One pass: node health, taints, pods of nodes that are not Ready, Terminating pods of
/// out-of-service or deleted nodes.
pub(crate) fn reconcile(
    ctx: &Ctx,
    _: &super::Wake,
    _: &mut super::creates::Creates,
) -> Option<Instant> {
    let config = &ctx.control.config;
    // Heartbeats and Lease renewals are written in whole seconds: a shorter grace period
    // (a high speed) would see a live node go silent.
    let grace = config
        .scaled(config.node_monitor_grace_period)
        .max(Duration::from_secs(2));
    let nodes: Vec<Arc<Value>> = ctx
        .store
        .all(&ctx.kinds.nodes.storage_key())
        .into_iter()
        .filter(|n| super::node::is_simulated(n))
        .collect();
    let mut down = HashMap::new();
    {
        let mut state = ctx.lifecycle.lock().unwrap_or_else(PoisonError::into_inner);
        let names: HashSet<&str> = nodes.iter().map(|n| meta::name(n)).collect();
        state.probes.retain(|n, _| names.contains(n.as_str()));
        for node in &nodes {
            let silent = silent_for(ctx, &mut state, node) >= grace;
            let node = if silent {
                mark_unknown(ctx, node).unwrap_or_else(|| Value::clone(node))
            } else {
                Value::clone(node)
            };
            let ready = meta::str_at(&super::node::ready_of(&node), "status").to_string();
            sync_taints(ctx, &node, &ready);
            if ready != "True" {
                down.insert(meta::name(&node).to_string(), out_of_service(&node));
            }
        }
    }
    let names: HashSet<&str> = nodes.iter().map(|n| meta::name(n)).collect();
    pods(ctx, &names, &down);
    let tick = config.scaled(config.heartbeat).min(grace);
    Some(Instant::now() + tick.clamp(Duration::from_millis(100), Duration::from_secs(1)))
}

/// How long the node's heartbeat and Lease have not moved, by the controller's clock.
fn silent_for(ctx: &Ctx, state: &mut State, node: &Value) -> Duration {
    let name = meta::name(node);
    let heartbeat = meta::str_at(&super::node::ready_of(node), "lastHeartbeatTime").to_string();
    let lease = ctx
        .store
        .resolve("coordination.k8s.io", "v1", "leases")
        .and_then(|rt| ctx.store.get(&rt, "kube-node-lease", name).ok())
        .map(|l| meta::str_at(&l, "spec.renewTime").to_string())
        .unwrap_or_default();
    let now = Instant::now();
    let probe = state.probes.entry(name.to_string()).or_insert(Probe {
        heartbeat: String::new(),
        lease: String::new(),
        changed: now,
    });
    if probe.heartbeat != heartbeat || probe.lease != lease {
        *probe = Probe {
            heartbeat,
            lease,
            changed: now,
        };
    }
    now - probe.changed
}

/// Sets the kubelet's conditions of a silent node to `Unknown` (the last heartbeat kept),
/// as kube-controller-manager does; the node as written, if it changed.
fn mark_unknown(ctx: &Ctx, node: &Value) -> Option<Value> {
    let mut status = node.get("status").cloned()?;
    let now = meta::now();
    for c in status
        .get_mut("conditions")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if !KUBELET_CONDITIONS.contains(&meta::str_at(c, "type")) {
            continue;
        }
        if meta::str_at(c, "status") != "Unknown" {
            c["status"] = json!("Unknown");
            c["lastTransitionTime"] = json!(now);
        }
        c["reason"] = json!("NodeStatusUnknown");
        c["message"] = json!("Kubelet stopped posting node status.");
    }
    super::write_status(ctx, &ctx.kinds.nodes, node, status)?;
    ctx.store.get(&ctx.kinds.nodes, "", meta::name(node)).ok()
}

/// The taints the node should carry, given its Ready status: `not-ready` when `False`,
/// `unreachable` when `Unknown` (each NoSchedule and NoExecute), neither when `True`.
/// Other taints are kept as they are; so are these when already there.
fn wanted_taints(taints: &[Value], ready: &str) -> Vec<Value> {
    let key = match ready {
        "True" => None,
        "Unknown" => Some(UNREACHABLE),
        _ => Some(NOT_READY),
    };
    let mut out: Vec<Value> = taints
        .iter()
        .filter(|t| {
            let k = meta::str_at(t, "key");
            !(k == NOT_READY || k == UNREACHABLE) || Some(k) == key
        })
        .cloned()
        .collect();
    let Some(key) = key else {
        return out;
    };
    for effect in ["NoSchedule", "NoExecute"] {
        let has = out
            .iter()
            .any(|t| meta::str_at(t, "key") == key && meta::str_at(t, "effect") == effect);
        if !has {
            let mut t = json!({"key": key, "effect": effect});
            if effect == "NoExecute" {
                t["timeAdded"] = json!(meta::now());
            }
            out.push(t);
        }
    }
    out
}

/// Brings the node's taints in line with its Ready status (a spec write, as the
/// controller's).
fn sync_taints(ctx: &Ctx, node: &Value, ready: &str) {
    let current = meta::path(node, "spec.taints")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if wanted_taints(&current, ready) == current {
        return;
    }
    let result = ctx.store.mutate(
        &ctx.kinds.nodes,
        "",
        meta::name(node),
        false,
        false,
        |cur| {
            let mut n = cur
                .cloned()
                .ok_or_else(|| crate::status::ApiError::not_found("nodes", meta::name(node)))?;
            let taints = meta::path(&n, "spec.taints")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let wanted = wanted_taints(&taints, ready);
            let spec = meta::object_mut(&mut n, "spec");
            if wanted.is_empty() {
                spec.remove("taints");
            } else {
                spec.insert("taints".into(), Value::Array(wanted));
            }
            Ok(n)
        },
    );
    if let Err(e) = result {
        tracing::debug!(node = meta::name(node), error = %e, "taint update failed");
    }
}

/// Whether the node carries `node.kubernetes.io/out-of-service` with effect NoExecute.
fn out_of_service(node: &Value) -> bool {
    meta::path(node, "spec.taints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|t| {
            meta::str_at(t, "key") == OUT_OF_SERVICE && meta::str_at(t, "effect") == "NoExecute"
        })
}

/// The pods of the simulated nodes: not Ready on a node that is not (MarkPodsNotReady);
/// Terminating ones force-deleted when their node is gone, or is not Ready and out of
/// service (the pod garbage collector).
fn pods(ctx: &Ctx, nodes: &HashSet<&str>, down: &HashMap<String, bool>) {
    let force = DeleteOptions {
        grace_period_seconds: Some(0),
        ..DeleteOptions::default()
    };
    for pod in ctx.store.all(&ctx.kinds.pods.storage_key()) {
        let node = meta::str_at(&pod, "spec.nodeName");
        let (ns, name) = (meta::namespace(&pod), meta::name(&pod));
        let waiting = meta::is_deleting(&pod)
            && meta::path(&pod, "metadata.deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .is_some_and(|g| g > 0);
        let orphaned =
            waiting && !node.is_empty() && !nodes.contains(node) && !is_other_node(ctx, node);
        if waiting && (orphaned || down.get(node) == Some(&true)) {
            tracing::info!(
                namespace = ns,
                pod = name,
                node,
                "force-deleting terminating pod"
            );
            let _ = ctx.store.delete(&ctx.kinds.pods, ns, name, &force);
            continue;
        }
        if down.contains_key(node)
            && !matches!(meta::str_at(&pod, "status.phase"), "Succeeded" | "Failed")
            && crate::eviction::is_ready(&pod)
        {
            let mut status = pod.get("status").cloned().unwrap_or(json!({}));
            super::scheduler::set_condition(&mut status, "Ready", "False", "");
            super::write_status(ctx, &ctx.kinds.pods, &pod, status);
        }
    }
}

/// Whether a node that is not simulated exists under that name (its pods are not ours).
fn is_other_node(ctx: &Ctx, node: &str) -> bool {
    ctx.store.get(&ctx.kinds.nodes, "", node).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taints_follow_ready_and_keep_the_others() {
        let user = json!({"key": "example.com/maintenance", "effect": "NoSchedule"});
        let unknown = wanted_taints(std::slice::from_ref(&user), "Unknown");
        assert_eq!(unknown.len(), 3);
        assert_eq!(unknown[0], user);
        assert!(unknown.iter().any(|t| meta::str_at(t, "key") == UNREACHABLE
            && meta::str_at(t, "effect") == "NoExecute"
            && !meta::str_at(t, "timeAdded").is_empty()));
        let not_ready = wanted_taints(&unknown, "False");
        assert!(
            not_ready
                .iter()
                .all(|t| meta::str_at(t, "key") != UNREACHABLE)
        );
        assert_eq!(not_ready.len(), 3);
        assert_eq!(wanted_taints(&not_ready, "False"), not_ready);
        assert_eq!(wanted_taints(&not_ready, "True"), vec![user]);
    }
}
