//! Simulated nodes: registration and Ready heartbeats.

use super::Ctx;
use crate::meta;
use serde_json::{Value, json};
use tokio::time::Instant;

/// The name of simulated node `i`.
pub(crate) fn name(i: usize) -> String {
    format!("sim-node-{i}")
}

/// Whether a node is one this simulation runs.
pub(crate) fn is_simulated(node: &Value) -> bool {
    meta::path(node, "metadata.labels")
        .and_then(|l| l.get("bosun.dev/simulated"))
        .is_some()
}

/// Registers the simulated nodes (kept as they are after a restart).
pub(crate) fn register(ctx: &Ctx, count: usize) {
    let pods = ctx.control.config.pods_per_node.to_string();
    for i in 0..count {
        let n = name(i);
        let capacity =
            json!({"cpu": "8", "memory": "32Gi", "pods": pods, "ephemeral-storage": "100Gi"});
        let node = json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": n, "labels": {
                "kubernetes.io/hostname": n,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "topology.kubernetes.io/zone": format!("zone-{}", i % 3),
                "bosun.dev/simulated": "true",
            }},
            "spec": {"podCIDR": format!("10.244.{i}.0/24")},
            "status": {
                "capacity": capacity,
                "allocatable": capacity,
                "conditions": [ready_condition(true, &meta::now())],
                "addresses": [
                    {"type": "InternalIP", "address": format!("10.0.{}.{}", i / 250, i % 250 + 1)},
                    {"type": "Hostname", "address": n},
                ],
                "nodeInfo": {
                    "architecture": "amd64", "bootID": meta::uid(), "containerRuntimeVersion": "sim://1.0",
                    "kernelVersion": "6.0.0-sim", "kubeProxyVersion": "", "kubeletVersion": "v1.33.0-bosun-sim",
                    "machineID": format!("sim{i}"), "operatingSystem": "linux", "osImage": "bosun simulated node",
                    "systemUUID": meta::uid(),
                },
                "phase": "Running",
            }
        });
        // AlreadyExists after a restart: the stored node is kept.
        let _ = ctx.store.create(&ctx.kinds.nodes, "", node, false);
    }
}

/// The Ready condition a kubelet posts.
fn ready_condition(ready: bool, heartbeat: &str) -> Value {
    let (status, reason, message) = if ready {
        ("True", "KubeletReady", "kubelet is posting ready status")
    } else {
        (
            "False",
            "KubeletNotReady",
            "simulated fault: node not ready",
        )
    };
    condition(status, reason, message, heartbeat)
}

/// The Ready condition of a rebooting node.
fn rebooting_condition(heartbeat: &str) -> Value {
    condition(
        "False",
        "KubeletNotReady",
        "simulated fault: node is rebooting",
        heartbeat,
    )
}

fn condition(status: &str, reason: &str, message: &str, heartbeat: &str) -> Value {
    json!({
        "type": "Ready", "status": status, "reason": reason, "message": message,
        "lastHeartbeatTime": heartbeat, "lastTransitionTime": heartbeat,
    })
}

/// The node's Ready condition (`Null` when it has none).
pub(crate) fn ready_of(node: &Value) -> Value {
    meta::path(node, "status.conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| meta::str_at(c, "type") == "Ready"))
        .cloned()
        .unwrap_or(Value::Null)
}

/// Heartbeats: refreshes each simulated node's Ready condition, unless its kubelet is
/// stopped; ends reboots whose downtime is over.
pub(crate) fn reconcile(
    ctx: &Ctx,
    _: &super::Wake,
    _: &mut super::creates::Creates,
) -> Option<Instant> {
    let interval = ctx.control.config.scaled(ctx.control.config.heartbeat);
    let mut next = Instant::now() + interval.min(std::time::Duration::from_secs(1));
    for node in ctx.store.all(&ctx.kinds.nodes.storage_key()) {
        let name = meta::name(&node);
        if !is_simulated(&node) || !ctx.control.kubelet_posts(name) {
            continue;
        }
        if let Some(until) = ctx.control.reboot_until(name) {
            if Instant::now() < until {
                next = next.min(until);
            } else {
                end_reboot(ctx, &node);
                continue;
            }
        }
        heartbeat(ctx, &node, interval);
    }
    Some(next)
}

/// The node is back from a reboot: Ready with a new bootID; then the kubelet restarts
/// every container of its pods.
fn end_reboot(ctx: &Ctx, node: &Value) {
    let name = meta::name(node);
    let ready = !ctx.control.faults_now().not_ready.contains(name);
    let now = meta::now();
    let mut status = node.get("status").cloned().unwrap_or(json!({}));
    status["conditions"] = json!([ready_condition(ready, &now)]);
    status["nodeInfo"]["bootID"] = json!(meta::uid());
    if super::write_status(ctx, &ctx.kinds.nodes, node, status).is_some() {
        ctx.control.end_reboot(name);
    }
}

/// Posts the node's status when due, and renews its Lease.
fn heartbeat(ctx: &Ctx, node: &Value, interval: std::time::Duration) {
    let rebooting = ctx.control.reboot_until(meta::name(node)).is_some();
    let ready = ctx.control.node_ready(meta::name(node));
    let old = ready_of(node);
    let now = meta::now();
    // A heartbeat is due when the status flips or the last one is older than the interval.
    let threshold = meta::rfc3339(
        std::time::SystemTime::now()
            .checked_sub(interval)
            .unwrap_or(std::time::UNIX_EPOCH),
    );
    let stale = meta::str_at(&old, "lastHeartbeatTime") < threshold.as_str();
    // A NotReady node stops renewing its Lease too, as a dead kubelet would.
    if ready {
        renew_lease(ctx, meta::name(node), &now, &threshold);
    }
    let mut cond = if rebooting {
        rebooting_condition(&now)
    } else {
        ready_condition(ready, &now)
    };
    // An Unknown node (its kubelet was stopped) has a transition to post.
    let same = meta::str_at(&old, "status") == meta::str_at(&cond, "status");
    if same && meta::str_at(&old, "message") == meta::str_at(&cond, "message") && !stale {
        return;
    }
    if same {
        cond["lastTransitionTime"] = old.get("lastTransitionTime").cloned().unwrap_or(json!(now));
    }
    let mut status = node.get("status").cloned().unwrap_or(json!({}));
    status["conditions"] = json!([cond]);
    super::write_status(ctx, &ctx.kinds.nodes, node, status);
}

/// Renews the node's Lease in `kube-node-lease` (created on first renewal).
fn renew_lease(ctx: &Ctx, node: &str, now: &str, threshold: &str) {
    let Some(rt) = ctx.store.resolve("coordination.k8s.io", "v1", "leases") else {
        return;
    };
    if let Ok(lease) = ctx.store.get(&rt, "kube-node-lease", node)
        && meta::str_at(&lease, "spec.renewTime") >= threshold
    {
        return;
    }
    // MicroTime: the same instant with microseconds.
    let renew = now.replace('Z', ".000000Z");
    let result = ctx
        .store
        .mutate(&rt, "kube-node-lease", node, false, false, |cur| {
            let mut lease = cur.cloned().unwrap_or_else(|| {
                json!({
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": node, "namespace": "kube-node-lease"},
                    "spec": {"holderIdentity": node, "leaseDurationSeconds": 40},
                })
            });
            lease["spec"]["renewTime"] = json!(renew);
            Ok(lease)
        });
    if let Err(e) = result {
        tracing::debug!(node, error = %e, "lease renewal failed");
    }
}
