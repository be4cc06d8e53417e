//! The DaemonSet controller: one pod per eligible node, bound to it directly
//! (`spec.nodeName`, not the default scheduler through node affinity as kube's controller
//! does since 1.12: the simulation's scheduler would bind it to the same node).
//!
//! A node is eligible when it matches the template's `nodeSelector` and required node
//! affinity (`matchExpressions` with `In`, `NotIn`, `Exists`, `DoesNotExist`, `Gt`,
//! `Lt`), and the pod tolerates its `NoSchedule` and `NoExecute` taints; a pod is kept on
//! a node as long as it tolerates the `NoExecute` ones. Pods get the tolerations
//! kube-controller-manager adds to daemon pods. `RollingUpdate` replaces old pods at most
//! `maxUnavailable` (default 1) unavailable at a time (no `maxSurge`); `OnDelete` only
//! replaces pods deleted by someone else. Every template gets a ControllerRevision; pods
//! are labelled `controller-revision-hash` and `pod-template-generation`.

use super::creates::{Controller, Creates, Owner};
use super::events::{self, Note};
use super::{Ctx, by_owner, pod_from_template, pod_ready, template_hash};
use crate::meta;
use crate::store::DeleteOptions;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use tokio::time::Instant;

const HASH_LABEL: &str = "controller-revision-hash";
const GENERATION_LABEL: &str = "pod-template-generation";

/// The tolerations kube-controller-manager adds to every daemon pod.
const TOLERATIONS: &[(&str, &str)] = &[
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ("node.kubernetes.io/network-unavailable", "NoSchedule"),
];

/// One pass over every DaemonSet.
pub(crate) fn reconcile(ctx: &Ctx, _: &super::Wake, creates: &mut Creates) -> Option<Instant> {
    let sets = ctx.store.all(&ctx.kinds.daemonsets.storage_key());
    if sets.is_empty() {
        return None;
    }
    let pods = ctx.store.all(&ctx.kinds.pods.storage_key());
    let nodes = ctx.store.all(&ctx.kinds.nodes.storage_key());
    let revisions = ctx.store.all(&ctx.kinds.revisions.storage_key());
    let (pods_of, revisions_of) = (by_owner(&pods), by_owner(&revisions));
    let none = Vec::new();
    for ds in sets.iter().filter(|s| !meta::is_deleting(s)) {
        let uid = meta::uid_of(ds);
        let pods = pods_of.get(uid).unwrap_or(&none);
        let revisions = revisions_of.get(uid).unwrap_or(&none);
        sync(ctx, ds, &nodes, pods, revisions, creates);
    }
    None
}

/// The pod template with the daemon tolerations added (those it lacks).
fn template_of(ds: &Value) -> Value {
    let mut template = meta::path(ds, "spec.template")
        .cloned()
        .unwrap_or(json!({}));
    let spec = meta::object_mut(&mut template, "spec");
    let list = spec.entry("tolerations").or_insert_with(|| json!([]));
    if let Value::Array(list) = list {
        for (key, effect) in TOLERATIONS {
            let has = list
                .iter()
                .any(|t| meta::str_at(t, "key") == *key && meta::str_at(t, "effect") == *effect);
            if !has {
                list.push(json!({"key": key, "operator": "Exists", "effect": effect}));
            }
        }
    }
    template
}

/// Whether a node's label value satisfies one `matchExpressions` requirement.
fn requirement(labels: &serde_json::Map<String, Value>, r: &Value) -> bool {
    let value = labels.get(meta::str_at(r, "key")).and_then(Value::as_str);
    let values: Vec<&str> = meta::path(r, "values")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let number = |v: Option<&str>| v.and_then(|v| v.parse::<i64>().ok());
    match meta::str_at(r, "operator") {
        "In" => value.is_some_and(|v| values.contains(&v)),
        "NotIn" => value.is_none_or(|v| !values.contains(&v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => number(value)
            .zip(number(values.first().copied()))
            .is_some_and(|(a, b)| a > b),
        "Lt" => number(value)
            .zip(number(values.first().copied()))
            .is_some_and(|(a, b)| a < b),
        _ => false,
    }
}

/// Whether the node matches the pod's `nodeSelector` and required node affinity (any of
/// its terms, each with all its expressions).
fn selects(pod_spec: &Value, node: &Value) -> bool {
    let labels = meta::labels(node);
    let selector_ok = meta::path(pod_spec, "nodeSelector")
        .and_then(Value::as_object)
        .is_none_or(|sel| sel.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let terms = meta::path(
        pod_spec,
        "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms",
    )
    .and_then(Value::as_array);
    let affinity_ok = terms.is_none_or(|terms| {
        terms.iter().any(|t| {
            meta::path(t, "matchExpressions")
                .and_then(Value::as_array)
                .is_some_and(|rs| rs.iter().all(|r| requirement(&labels, r)))
        })
    });
    selector_ok && affinity_ok
}

/// (should run a new pod, may keep a running one) on `node`.
fn placement(template: &Value, node: &Value) -> (bool, bool) {
    let pod = json!({"spec": template.get("spec").cloned().unwrap_or(json!({}))});
    if !selects(&pod["spec"], node) {
        return (false, false);
    }
    let taints: Vec<&Value> = meta::path(node, "spec.taints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    let ok = |effect: &str| {
        taints
            .iter()
            .filter(|t| meta::str_at(t, "effect") == effect)
            .all(|t| super::scheduler::tolerates(&pod, t))
    };
    let keep = ok("NoExecute");
    (keep && ok("NoSchedule"), keep)
}

/// `maxUnavailable` against the desired pods, rounded up, at least 1 when it is zero.
fn max_unavailable(ds: &Value, desired: usize) -> usize {
    let v = meta::path(ds, "spec.updateStrategy.rollingUpdate.maxUnavailable");
    let n = match v {
        Some(Value::Number(n)) => usize::try_from(n.as_u64().unwrap_or(1)).unwrap_or(usize::MAX),
        Some(Value::String(s)) => match s.strip_suffix('%').and_then(|p| p.parse::<usize>().ok()) {
            Some(p) => desired.saturating_mul(p).div_ceil(100),
            None => s.parse().unwrap_or(1),
        },
        _ => 1,
    };
    n.max(1)
}

fn delete_pod(ctx: &Ctx, ds: &Value, pod: &Value) {
    let (ns, name) = (meta::namespace(pod), meta::name(pod));
    if ctx
        .store
        .delete(&ctx.kinds.pods, ns, name, &DeleteOptions::default())
        .is_ok()
    {
        let message = format!("Deleted pod: {name}");
        events::record(
            ctx,
            ds,
            &Note::normal("daemonset-controller", "SuccessfulDelete", &message),
        );
    }
}

/// Writes the ControllerRevision of `template` if it is new.
fn revision(ctx: &Ctx, ds: &Value, template: &Value, hash: &str, revisions: &[&Value]) {
    let (ns, name) = (meta::namespace(ds), meta::name(ds));
    let rev_name = format!("{name}-{hash}");
    if revisions.iter().any(|r| meta::name(r) == rev_name) {
        return;
    }
    let number = revisions
        .iter()
        .filter_map(|r| r.get("revision").and_then(Value::as_i64))
        .max()
        .unwrap_or(0)
        .saturating_add(1);
    let mut labels = template
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or(json!({}));
    if let Some(m) = labels.as_object_mut() {
        m.insert(HASH_LABEL.into(), json!(hash));
    }
    let rev = json!({
        "apiVersion": "apps/v1", "kind": "ControllerRevision",
        "metadata": {"name": rev_name, "namespace": ns, "labels": labels,
            "ownerReferences": [super::owner_ref(ds)]},
        "data": {"spec": {"template": template}},
        "revision": number,
    });
    if let Err(e) = ctx.store.create(&ctx.kinds.revisions, ns, rev, false)
        && e.code != 409
    {
        tracing::warn!(daemonset = name, error = %e, "cannot record revision");
    }
}

fn sync(
    ctx: &Ctx,
    ds: &Value,
    nodes: &[std::sync::Arc<Value>],
    pods: &[&Value],
    revisions: &[&Value],
    creates: &mut Creates,
) {
    let user_template = meta::path(ds, "spec.template")
        .cloned()
        .unwrap_or(Value::Null);
    let hash = template_hash(&user_template);
    revision(ctx, ds, &user_template, &hash, revisions);
    let template = template_of(ds);
    let generation = meta::path(ds, "metadata.generation")
        .and_then(Value::as_u64)
        .unwrap_or(1);
    let on_delete = meta::str_at(ds, "spec.updateStrategy.type") == "OnDelete";
    // Pods by node; failed ones are deleted (the controller replaces them).
    let mut by_node: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for p in pods.iter().copied().filter(|p| !meta::is_deleting(p)) {
        if meta::str_at(p, "status.phase") == "Failed" {
            delete_pod(ctx, ds, p);
            continue;
        }
        by_node
            .entry(meta::str_at(p, "spec.nodeName"))
            .or_default()
            .push(p);
    }
    let updated =
        |p: &Value| meta::labels(p).get(HASH_LABEL).and_then(Value::as_str) == Some(hash.as_str());
    let mut to_create: Vec<&str> = Vec::new();
    let (mut desired, mut current, mut misscheduled) = (0usize, 0usize, 0usize);
    let (mut ready, mut updated_n) = (0usize, 0usize);
    // Nodes whose pod runs an old template: (node, its pod, available).
    let mut old: Vec<(&Value, bool)> = Vec::new();
    let mut unavailable = 0usize;
    for node in nodes.iter().filter(|n| !meta::is_deleting(n)) {
        let node_name = meta::name(node);
        let (run, keep) = placement(&template, node);
        let mut here = by_node.remove(node_name).unwrap_or_default();
        here.sort_by_key(|p| meta::str_at(p, "metadata.creationTimestamp").to_string());
        if !keep {
            if !here.is_empty() {
                misscheduled += 1;
            }
            here.iter().for_each(|p| delete_pod(ctx, ds, p));
            continue;
        }
        if run {
            desired += 1;
        } else if !here.is_empty() {
            misscheduled += 1;
        }
        // One pod per node: the oldest stays.
        for extra in here.iter().skip(1) {
            delete_pod(ctx, ds, extra);
        }
        let Some(pod) = here.first().copied() else {
            if run {
                to_create.push(node_name);
                unavailable += 1;
            }
            continue;
        };
        current += usize::from(run);
        let available = pod_ready(pod);
        if run {
            ready += usize::from(available);
            unavailable += usize::from(!available);
        }
        if updated(pod) {
            updated_n += usize::from(run);
        } else {
            old.push((pod, available));
        }
    }
    // Pods on nodes that are gone.
    for p in by_node.values().flatten() {
        delete_pod(ctx, ds, p);
    }
    if !on_delete {
        let max = max_unavailable(ds, desired);
        // Unavailable old pods go at once; available ones while the budget allows.
        for (pod, available) in &old {
            if !available {
                delete_pod(ctx, ds, pod);
            } else if unavailable < max {
                unavailable += 1;
                delete_pod(ctx, ds, pod);
            }
        }
    }
    if !to_create.is_empty() && creates.allowed(ctx, ds) {
        let owner = Owner::of(ds);
        let mut with_tolerations = ds.clone();
        with_tolerations["spec"]["template"] = template.clone();
        let generation = generation.to_string();
        for node in to_create {
            let mut pod = pod_from_template(
                &with_tolerations,
                None,
                &[(HASH_LABEL, &hash), (GENERATION_LABEL, &generation)],
            );
            pod["spec"]["nodeName"] = json!(node);
            creates.push(Controller::DaemonSet, &owner, pod);
        }
    }
    let status = json!({
        "observedGeneration": generation,
        "desiredNumberScheduled": desired,
        "currentNumberScheduled": current,
        "numberMisscheduled": misscheduled,
        "numberReady": ready,
        "numberAvailable": ready,
        "numberUnavailable": desired.saturating_sub(ready),
        "updatedNumberScheduled": updated_n,
    });
    super::write_status(ctx, &ctx.kinds.daemonsets, ds, status);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_follows_selector_affinity_and_taints() {
        let node = json!({"metadata": {"name": "n", "labels": {"disk": "ssd", "zone": "a"}},
            "spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}});
        let ds = |spec: Value| json!({"spec": {"template": {"spec": spec}}});
        let t = template_of(&ds(json!({})));
        assert_eq!(
            placement(&t, &node),
            (false, true),
            "NoSchedule taint not tolerated"
        );
        let t = template_of(&ds(
            json!({"tolerations": [{"key": "dedicated", "operator": "Exists"}]}),
        ));
        assert_eq!(placement(&t, &node), (true, true));
        let t = template_of(&ds(json!({
            "tolerations": [{"key": "dedicated", "operator": "Exists"}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "zone", "operator": "NotIn", "values": ["a"]}]}]}}}
        })));
        assert_eq!(placement(&t, &node), (false, false));
        let t = template_of(&ds(json!({"nodeSelector": {"disk": "hdd"}})));
        assert_eq!(placement(&t, &node), (false, false));
        let unreachable = json!({"spec": {"taints": [
            {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"},
            {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]}});
        let t = template_of(&ds(json!({})));
        assert_eq!(
            placement(&t, &unreachable),
            (true, true),
            "default tolerations"
        );
    }
}
