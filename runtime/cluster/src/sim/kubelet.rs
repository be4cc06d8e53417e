//! The kubelet of every simulated node: runs pods bound to it.
//!
//! A new pod's containers start after the pod start delay (sandbox, volumes; zero by
//! default), with no image pull time; a container is ready after the start-up delay, a
//! pod is Ready when all its containers are and all its readiness gates are True. Changing a running container's image restarts only that container
//! (restartCount + 1, same pod uid): the in-place update path. Init containers are
//! treated as already completed; probes are not run.

use super::scheduler::set_condition;
use super::{Ctx, Interest, Wake};
use crate::meta;
use crate::store::{Event, EventKind};
use serde_json::{Map, Value, json};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// What the kubelets keep between passes.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// When each simulated sandbox (`uid/sandbox`) and container
    /// (`uid/name/restartCount`) started, for readiness.
    starts: HashMap<String, Instant>,
    /// What was computed for each pod, by uid.
    seen: HashMap<String, Seen>,
    /// Pods whose status changes by itself at an instant (a container becomes ready, a
    /// pull fault ends): `(when, namespace, name)`.
    timers: BTreeSet<(Instant, String, String)>,
}

/// What the kubelet computed for a pod: while the pod, the faults and the clock have not
/// moved past it, computing again gives the same status.
#[derive(Debug)]
struct Seen {
    /// The pod's resourceVersion after the kubelet's own write (or as read).
    resource_version: String,
    generation: u64,
    due: Option<Instant>,
}

/// The kubelets care about pods bound to a node; a node coming or going changes which
/// pods they run.
pub(crate) fn interest(ctx: &Ctx, e: &Event) -> Interest {
    if e.key == ctx.kinds.pods.storage_key() {
        if e.kind == EventKind::Deleted || meta::str_at(&e.object, "spec.nodeName").is_empty() {
            return Interest::Ignore;
        }
        return Interest::Key(
            meta::namespace(&e.object).to_string(),
            meta::name(&e.object).to_string(),
        );
    }
    if e.key == ctx.kinds.nodes.storage_key() && e.kind != EventKind::Modified {
        return Interest::Full;
    }
    Interest::Ignore
}

/// Brings pods on simulated nodes to their simulated state: every pod on a full pass,
/// otherwise the pods that changed and those whose timer is due.
pub(crate) fn reconcile(ctx: &Ctx, wake: &Wake) -> Option<Instant> {
    let nodes: HashSet<String> = ctx
        .store
        .all(&ctx.kinds.nodes.storage_key())
        .iter()
        .filter(|n| super::node::is_simulated(n))
        .map(|n| meta::name(n).to_string())
        .collect();
    let mut state = ctx.kubelet.lock().unwrap_or_else(PoisonError::into_inner);
    let state = &mut *state;
    let now = Instant::now();
    let pods: Vec<Arc<Value>> = if wake.full {
        let pods = ctx.store.all(&ctx.kinds.pods.storage_key());
        let uids: HashSet<&str> = pods.iter().map(|p| meta::uid_of(p)).collect();
        state
            .starts
            .retain(|k, _| uids.contains(k.split('/').next().unwrap_or("")));
        state.seen.retain(|uid, _| uids.contains(uid.as_str()));
        state.timers.clear();
        pods
    } else {
        let mut keys: HashSet<(String, String)> = wake.changed.clone();
        while let Some(first) = state.timers.first()
            && first.0 <= now
        {
            if let Some((_, ns, name)) = state.timers.pop_first() {
                keys.insert((ns, name));
            }
        }
        keys.into_iter()
            .filter_map(|(ns, name)| ctx.store.get(&ctx.kinds.pods, &ns, &name).ok())
            .map(Arc::new)
            .collect()
    };
    let delay = ctx.control.config.scaled(ctx.control.config.startup_delay);
    let generation = ctx.control.generation();
    for pod in &pods {
        let node = meta::str_at(pod, "spec.nodeName");
        if !nodes.contains(node)
            || meta::is_deleting(pod)
            || matches!(meta::str_at(pod, "status.phase"), "Succeeded" | "Failed")
        {
            continue;
        }
        let (ns, name) = (meta::namespace(pod), meta::name(pod));
        let (uid, rv) = (
            meta::uid_of(pod),
            meta::str_at(pod, "metadata.resourceVersion"),
        );
        let due = match state.seen.get(uid) {
            Some(s)
                if s.resource_version == rv
                    && s.generation == generation
                    && s.due.is_none_or(|d| now < d) =>
            {
                s.due
            }
            _ => {
                let mut due = None;
                let status = pod_status(ctx, pod, &mut state.starts, delay, &mut due);
                let written = super::write_status(ctx, &ctx.kinds.pods, pod, status);
                state.seen.insert(
                    uid.to_string(),
                    Seen {
                        resource_version: written.unwrap_or_else(|| rv.to_string()),
                        generation,
                        due,
                    },
                );
                due
            }
        };
        if let Some(at) = due {
            state.timers.insert((at, ns.to_string(), name.to_string()));
        }
    }
    state.timers.first().map(|t| t.0)
}

fn pod_status(
    ctx: &Ctx,
    pod: &Value,
    starts: &mut HashMap<String, Instant>,
    delay: Duration,
    next: &mut Option<Instant>,
) -> Value {
    let (ns, name, uid) = (meta::namespace(pod), meta::name(pod), meta::uid_of(pod));
    let node = meta::str_at(pod, "spec.nodeName");
    let node_ready = ctx.control.node_ready(node);
    let old: HashMap<String, Value> = meta::path(pod, "status.containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| (meta::str_at(c, "name").to_string(), c.clone()))
        .collect();
    let now = Instant::now();
    let (mut all_running, mut all_ready) = (true, true);
    let mut statuses = Vec::new();
    // A new pod waits for its sandbox and volumes before any container starts.
    let setup = ctx
        .control
        .config
        .scaled(ctx.control.config.pod_start_delay);
    let ran = old.values().any(|c| {
        meta::path(c, "state.running").is_some() || meta::path(c, "lastState.terminated").is_some()
    });
    let creating = if setup.is_zero() || ran {
        false
    } else {
        let bound = *starts.entry(format!("{uid}/sandbox")).or_insert(now);
        let at = bound + setup;
        if now < at {
            *next = Some(next.map_or(at, |n| n.min(at)));
        }
        now < at
    };
    for c in meta::path(pod, "spec.containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let cname = meta::str_at(c, "name");
        let image = meta::str_at(c, "image");
        let prev = old.get(cname);
        let mut restarts = prev
            .and_then(|p| p.get("restartCount"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if creating {
            all_running = false;
            all_ready = false;
            statuses.push(json!({
                "name": cname, "image": image, "imageID": "", "ready": false, "started": false,
                "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}},
            }));
            continue;
        }
        let transient = ctx.control.pod_pull_fails(ns, name, image, now);
        if let Some(until) = transient {
            *next = Some(next.map_or(until, |n| n.min(until)));
        }
        if ctx.control.image_fails(image) || transient.is_some() {
            all_running = false;
            all_ready = false;
            statuses.push(json!({
                "name": cname, "image": image, "imageID": "", "ready": false, "started": false,
                "restartCount": restarts,
                "state": {"waiting": {"reason": "ErrImagePull",
                    "message": format!("simulated fault: failed to pull image \"{image}\"")}},
            }));
            continue;
        }
        let was_running = prev.is_some_and(|p| meta::path(p, "state.running").is_some());
        let same_image = prev.is_some_and(|p| meta::str_at(p, "image") == image);
        let crashed = was_running && same_image && ctx.control.take_crash(ns, name, cname);
        let mut last_state = prev
            .and_then(|p| p.get("lastState"))
            .cloned()
            .unwrap_or(json!({}));
        let mut started_at = prev
            .map(|p| meta::str_at(p, "state.running.startedAt").to_string())
            .unwrap_or_default();
        let fresh = if was_running && (!same_image || crashed) {
            // In place: this container alone restarts, the pod keeps its uid.
            restarts += 1;
            last_state = json!({"terminated": {
                "exitCode": if crashed { 1 } else { 0 },
                "reason": if crashed { "Error" } else { "Completed" },
                "startedAt": started_at, "finishedAt": meta::now(),
            }});
            true
        } else {
            !was_running
        };
        if fresh {
            started_at = meta::now();
        }
        let key = format!("{uid}/{cname}/{restarts}");
        // After a server restart a running container has no start instant: it has been
        // up for long enough.
        let started = *starts.entry(key).or_insert_with(|| {
            if fresh {
                now
            } else {
                now.checked_sub(delay).unwrap_or(now)
            }
        });
        let ready_at = started + delay;
        let ready = node_ready && now >= ready_at;
        if node_ready && !ready {
            *next = Some(next.map_or(ready_at, |n| n.min(ready_at)));
        }
        all_ready &= ready;
        statuses.push(json!({
            "name": cname, "image": image, "imageID": format!("sim://{image}"),
            "containerID": format!("sim://{uid}/{cname}/{restarts}"),
            "ready": ready, "started": true, "restartCount": restarts,
            "state": {"running": {"startedAt": started_at}},
            "lastState": last_state,
        }));
    }
    let mut status = pod.get("status").cloned().unwrap_or(json!({}));
    let gates_ok = meta::path(pod, "spec.readinessGates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .all(|g| {
            let t = meta::str_at(g, "conditionType");
            meta::path(&status, "conditions")
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        meta::str_at(c, "type") == t && meta::str_at(c, "status") == "True"
                    })
                })
        });
    let tf = |b: bool| if b { "True" } else { "False" };
    set_condition(&mut status, "PodScheduled", "True", "");
    set_condition(&mut status, "Initialized", "True", "");
    set_condition(
        &mut status,
        "ContainersReady",
        tf(all_ready),
        if all_ready { "" } else { "ContainersNotReady" },
    );
    let ready = all_ready && gates_ok;
    set_condition(
        &mut status,
        "Ready",
        tf(ready),
        if ready {
            ""
        } else if all_ready {
            "ReadinessGatesNotReady"
        } else {
            "ContainersNotReady"
        },
    );
    let m: &mut Map<String, Value> = match status.as_object_mut() {
        Some(m) => m,
        None => return status,
    };
    m.insert(
        "phase".into(),
        json!(if all_running { "Running" } else { "Pending" }),
    );
    m.insert("containerStatuses".into(), Value::Array(statuses));
    m.entry("startTime").or_insert_with(|| json!(meta::now()));
    m.insert("qosClass".into(), json!("BestEffort"));
    let node_idx = node
        .rsplit('-')
        .next()
        .and_then(|i| i.parse::<u64>().ok())
        .unwrap_or(0);
    let host = format!("10.0.{}.{}", node_idx / 250, node_idx % 250 + 1);
    m.insert("hostIP".into(), json!(host));
    m.insert("hostIPs".into(), json!([{"ip": host}]));
    if !m.contains_key("podIP") {
        let h = uid
            .bytes()
            .fold(0u32, |a, b| a.wrapping_mul(31).wrapping_add(u32::from(b)));
        let ip = format!("10.244.{}.{}", node_idx % 256, h % 253 + 2);
        m.insert("podIP".into(), json!(ip));
        m.insert("podIPs".into(), json!([{"ip": ip}]));
    }
    status
}
