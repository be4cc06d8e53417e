//! What a command does to the cluster's capacity: the pod it takes out of service, or the
//! node it makes unschedulable. The budgets only count what this module finds.
//!
//! Judged by effect, not by verb: an eviction or a deletion of a pod takes it out; any
//! patch or server-side apply of a pod or a node is applied to the cached object (a JSON
//! patch with every operation, `move` and `copy` included; a merge patch; an applied
//! configuration merged as the API server merges it, containers by name and conditions
//! by type), and the result is compared with the cached object:
//!
//! - a pod is disrupted when a container's image changes (the kubelet restarts it in
//!   place), or when a condition it declares as a readiness gate, or its `Ready`
//!   condition, turns False (it leaves its Service's endpoints);
//! - a node is taken out when it becomes unschedulable, or gains a `NoSchedule` or
//!   `NoExecute` taint; so is the target of a cordon, or of a taint with those effects.
//!
//! A patch of a node the cache does not hold is judged against an empty node (so a patch
//! setting `spec.unschedulable` counts); a patch of a pod the cache does not hold cannot
//! be judged against its workload and is not counted.

use bosun_host::contract::{Command, ObjectRef, TaintEffect};
use serde_json::Value;

use super::View;
use super::in_flight::Until;

/// How a command takes a pod out of service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An eviction through the Eviction API.
    Eviction,
    /// A deletion.
    Deletion,
    /// A patch that changes container images: the kubelet restarts them in place.
    ImageChange,
    /// A patch that sets a readiness-gate condition (or `Ready`) False.
    ReadinessGateOff,
}

impl Kind {
    /// The phrase that starts a refusal (`evicting`, `patching the images of`).
    pub fn verb(self) -> &'static str {
        match self {
            Kind::Eviction => "evicting",
            Kind::Deletion => "deleting",
            Kind::ImageChange => "patching the images of",
            Kind::ReadinessGateOff => "setting a readiness gate False on",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.verb())
    }
}

/// A command that takes a pod out of service.
#[derive(Debug)]
pub(crate) struct Disruption {
    /// The pod.
    pub(crate) target: ObjectRef,
    /// Until when it counts once admitted.
    pub(crate) until: Until,
    /// How the command disrupts it.
    pub(crate) kind: Kind,
}

fn is_pod(r: &ObjectRef) -> bool {
    r.kind == "Pod" && r.api_version == "v1" && r.namespace.is_some()
}

fn is_node(r: &ObjectRef) -> bool {
    r.kind == "Node" && r.api_version == "v1"
}

/// What a patch or an apply changes and of which object, with its body parsed.
enum Change<'c> {
    Merge(&'c ObjectRef, Value),
    Json(&'c ObjectRef, json_patch::Patch),
    Apply(ObjectRef, Value),
}

impl<'c> Change<'c> {
    /// The change `cmd` makes, if it is a patch or an apply of an object `wanted`
    /// accepts; a patch of anything else is not parsed at all.
    fn of(cmd: &'c Command, wanted: fn(&ObjectRef) -> bool) -> Option<Self> {
        match cmd {
            Command::MergePatch(p) if wanted(&p.target) => Some(Change::Merge(
                &p.target,
                serde_json::from_str(&p.patch).ok()?,
            )),
            Command::JsonPatch(p) if wanted(&p.target) => Some(Change::Json(
                &p.target,
                serde_json::from_str(&p.patch).ok()?,
            )),
            Command::Apply(body) => {
                let object: Value = serde_json::from_str(body).ok()?;
                let target = ObjectRef::of(&object).filter(wanted)?;
                Some(Change::Apply(target, object))
            }
            _ => None,
        }
    }

    fn target(&self) -> &ObjectRef {
        match self {
            Change::Merge(r, _) | Change::Json(r, _) => r,
            Change::Apply(r, _) => r,
        }
    }

    /// `before` with the change applied, as the API server would apply it. A JSON patch
    /// whose `test` operations fail against the cache (which may lag) is judged by its
    /// other operations: the budget must not be bypassed by a guard.
    fn applied_to(&self, before: &Value) -> Option<Value> {
        let mut after = before.clone();
        match self {
            Change::Merge(_, patch) => json_patch::merge(&mut after, patch),
            Change::Json(_, patch) => {
                if json_patch::patch(&mut after, patch).is_err() {
                    after = before.clone();
                    let untested = json_patch::Patch(
                        patch
                            .0
                            .iter()
                            .filter(|op| !matches!(op, json_patch::PatchOperation::Test(_)))
                            .cloned()
                            .collect(),
                    );
                    json_patch::patch(&mut after, &untested).ok()?;
                }
            }
            Change::Apply(_, applied) => apply_merge(&mut after, applied),
        }
        Some(after)
    }
}

/// Merges an applied configuration into an object as server-side apply does for the
/// fields the budgets read: maps merge, lists of containers merge by `name` and lists of
/// conditions and taints by `type`/`key`, other lists are replaced.
fn apply_merge(target: &mut Value, applied: &Value) {
    let (Some(target), Some(applied)) = (target.as_object_mut(), applied.as_object()) else {
        *target = applied.clone();
        return;
    };
    for (field, value) in applied {
        let key = match field.as_str() {
            "containers" | "initContainers" | "ephemeralContainers" => Some("name"),
            "conditions" => Some("type"),
            "readinessGates" => Some("conditionType"),
            _ => None,
        };
        match (key, target.get_mut(field), value) {
            (Some(key), Some(Value::Array(have)), Value::Array(items)) => {
                for item in items {
                    let id = item.get(key);
                    match have.iter_mut().find(|h| id.is_some() && h.get(key) == id) {
                        Some(h) => apply_merge(h, item),
                        None => have.push(item.clone()),
                    }
                }
            }
            (None, Some(have @ Value::Object(_)), Value::Object(_)) => apply_merge(have, value),
            _ => {
                target.insert(field.clone(), value.clone());
            }
        }
    }
}

/// The node `cmd` takes out of service, if it does: a cordon, a `NoSchedule` or
/// `NoExecute` taint, or a patch or apply of a node that makes it unschedulable or adds
/// such a taint.
pub(crate) fn disrupted_node(cmd: &Command, view: &dyn View) -> Option<String> {
    match cmd {
        Command::Cordon(node) => Some(node.clone()),
        Command::Taint(t) if hard(t.taint.effect.as_k8s()) => Some(t.node.clone()),
        _ => {
            let change = Change::of(cmd, is_node)?;
            let target = change.target();
            let before = view
                .get(target)
                .and_then(|json| serde_json::from_str(&json).ok())
                .unwrap_or_else(|| serde_json::json!({}));
            let after = change.applied_to(&before)?;
            node_taken_out(&before, &after).then(|| target.name.clone())
        }
    }
}

/// Whether a taint effect keeps pods off the node.
fn hard(effect: &str) -> bool {
    effect == TaintEffect::NoSchedule.as_k8s() || effect == TaintEffect::NoExecute.as_k8s()
}

fn node_taken_out(before: &Value, after: &Value) -> bool {
    let unschedulable = |n: &Value| n.pointer("/spec/unschedulable") == Some(&Value::Bool(true));
    let hard_taints = |n: &Value| -> Vec<(String, String)> {
        n.pointer("/spec/taints")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|t| {
                let effect = t.get("effect")?.as_str()?;
                let key = t.get("key")?.as_str()?;
                hard(effect).then(|| (key.to_owned(), effect.to_owned()))
            })
            .collect()
    };
    if unschedulable(after) && !unschedulable(before) {
        return true;
    }
    let had = hard_taints(before);
    hard_taints(after).iter().any(|t| !had.contains(t))
}

/// Whether `cmd` is destructive: it deletes or evicts anything, or takes a pod or a node
/// out of service (judged as the budgets judge it).
pub(crate) fn is_destructive(cmd: &Command, view: &dyn View) -> bool {
    matches!(cmd, Command::Delete(_) | Command::Evict(_))
        || disrupted_node(cmd, view).is_some()
        || disrupted_pod(cmd, view).is_some()
}

/// The pod `cmd` takes out of service, if it does: an eviction, a deletion, or a patch
/// or apply whose result, against the cached pod, changes a container's image or sets a
/// readiness gate (or `Ready`) False.
pub(crate) fn disrupted_pod(cmd: &Command, view: &dyn View) -> Option<Disruption> {
    match cmd {
        Command::Evict(r) | Command::Delete(r) if is_pod(r) => Some(Disruption {
            target: r.clone(),
            until: view
                .get(r)
                .and_then(|json| serde_json::from_str::<Value>(&json).ok())
                .and_then(|p| Some(p.pointer("/metadata/uid")?.as_str()?.to_owned()))
                .map_or(Until::Ttl, |uid| Until::Gone(r.clone(), uid)),
            kind: if matches!(cmd, Command::Delete(_)) {
                Kind::Deletion
            } else {
                Kind::Eviction
            },
        }),
        Command::MergePatch(_) | Command::JsonPatch(_) | Command::Apply(_) => {
            let change = Change::of(cmd, is_pod)?;
            let target = change.target();
            let before: Value = serde_json::from_str(&view.get(target)?).ok()?;
            let after = change.applied_to(&before)?;
            let images = changed_images(&before, &after);
            if !images.is_empty() {
                return Some(Disruption {
                    target: target.clone(),
                    until: Until::Images(target.clone(), images),
                    kind: Kind::ImageChange,
                });
            }
            gates_off(&before, &after).then(|| Disruption {
                target: target.clone(),
                until: Until::Unready(target.clone()),
                kind: Kind::ReadinessGateOff,
            })
        }
        _ => None,
    }
}

/// The (name, image) of each container in the pod's spec.
fn spec_images(pod: &Value) -> Vec<(String, String)> {
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            (s("name"), s("image"))
        })
        .collect()
}

/// The containers (name, new image) of `after` whose image is not what `before` runs.
fn changed_images(before: &Value, after: &Value) -> Vec<(String, String)> {
    let have = spec_images(before);
    spec_images(after)
        .into_iter()
        .filter(|(name, image)| {
            !image.is_empty() && !have.iter().any(|(n, i)| n == name && i == image)
        })
        .collect()
}

/// The status of each condition of the pod, by type.
fn conditions(pod: &Value) -> Vec<(&str, &str)> {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| Some((c.get("type")?.as_str()?, c.get("status")?.as_str()?)))
        .collect()
}

/// Whether `after` sets False a condition that `before` declares as a readiness gate (or
/// `Ready`), which was not False before.
fn gates_off(before: &Value, after: &Value) -> bool {
    let mut gates: Vec<&str> = before
        .pointer("/spec/readinessGates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|g| g.get("conditionType").and_then(Value::as_str))
        .collect();
    gates.push("Ready");
    let was = conditions(before);
    conditions(after).iter().any(|(t, status)| {
        *status == "False" && gates.contains(t) && !was.iter().any(|(w, s)| w == t && *s == "False")
    })
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{
        FakeView, evict, json_patch, merge, node, pod, pod_ref, running_workload, set_image, taint,
    };
    use super::*;
    use bosun_host::contract::Patch;
    use serde_json::json;

    fn kind(cmd: &Command, view: &dyn View) -> Option<Kind> {
        disrupted_pod(cmd, view).map(|d| d.kind)
    }

    #[test]
    fn cordons_and_hard_taints_take_a_node_out() {
        let view = FakeView::default();
        let node = |cmd: &Command| disrupted_node(cmd, &view);
        assert_eq!(node(&Command::Cordon("n1".into())).as_deref(), Some("n1"));
        assert_eq!(
            node(&taint("n2", TaintEffect::NoExecute)).as_deref(),
            Some("n2")
        );
        assert_eq!(
            node(&taint("n2", TaintEffect::NoSchedule)).as_deref(),
            Some("n2")
        );
        assert_eq!(node(&taint("n2", TaintEffect::PreferNoSchedule)), None);
        assert_eq!(node(&Command::Uncordon("n1".into())), None);
    }

    fn node_patch(name: &str, patch: Value, json: bool) -> Command {
        let p = Patch {
            target: ObjectRef::cluster("v1", "Node", name),
            patch: patch.to_string(),
        };
        if json {
            Command::JsonPatch(p)
        } else {
            Command::MergePatch(p)
        }
    }

    #[test]
    fn node_patches_are_judged_by_their_effect() {
        let view = FakeView::default()
            .with(node("n1").build())
            .with(node("n2").unschedulable().build());
        let out = |cmd: &Command| disrupted_node(cmd, &view);
        let cordon = node_patch("n1", json!({"spec": {"unschedulable": true}}), false);
        assert_eq!(out(&cordon).as_deref(), Some("n1"));
        // Already unschedulable: no change.
        let again = node_patch("n2", json!({"spec": {"unschedulable": true}}), false);
        assert_eq!(out(&again), None);
        let tainted = node_patch(
            "n1",
            json!({"spec": {"taints": [{"key": "k", "effect": "NoExecute"}]}}),
            false,
        );
        assert_eq!(out(&tainted).as_deref(), Some("n1"));
        let soft = node_patch(
            "n1",
            json!({"spec": {"taints": [{"key": "k", "effect": "PreferNoSchedule"}]}}),
            false,
        );
        assert_eq!(out(&soft), None);
        // A JSON patch copying a value into spec.unschedulable.
        let copied = node_patch(
            "n1",
            json!([
                {"op": "add", "path": "/metadata/labels", "value": {"x": true}},
                {"op": "copy", "from": "/metadata/labels/x", "path": "/spec/unschedulable"}
            ]),
            true,
        );
        assert_eq!(out(&copied).as_deref(), Some("n1"));
        // A server-side apply of a node, and a node the cache does not hold.
        let apply = Command::Apply(
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
                   "spec": {"unschedulable": true}})
            .to_string(),
        );
        assert_eq!(out(&apply).as_deref(), Some("n1"));
        let unknown = node_patch("n9", json!({"spec": {"unschedulable": true}}), false);
        assert_eq!(out(&unknown).as_deref(), Some("n9"));
    }

    #[test]
    fn evictions_and_deletions_of_pods_disrupt_them() {
        let view = FakeView::default();
        assert_eq!(kind(&evict("web-0"), &view), Some(Kind::Eviction));
        let delete = Command::Delete(pod_ref("web-0"));
        let d = disrupted_pod(&delete, &view).expect("a pod deletion");
        assert_eq!(
            (d.kind, d.target, d.until),
            (Kind::Deletion, pod_ref("web-0"), Until::Ttl)
        );
        // Not a pod: a cluster-scoped or non-core object.
        let node = Command::Delete(ObjectRef::cluster("v1", "Node", "n1"));
        assert_eq!(kind(&node, &view), None);
        let rs = Command::Evict(ObjectRef::namespaced("apps/v1", "Pod", "default", "x"));
        assert_eq!(kind(&rs, &view), None);
    }

    #[test]
    fn image_patches_are_judged_against_the_cached_pod() {
        let view = running_workload(1, 0);
        let patch = set_image("web-0", "app:v2");
        let d = disrupted_pod(&patch, &view).expect("a new image");
        assert_eq!(d.kind, Kind::ImageChange);
        assert_eq!(
            d.until,
            Until::Images(pod_ref("web-0"), vec![("app".into(), "app:v2".into())])
        );
        let whole = json_patch(
            "web-0",
            json!([{"op": "replace", "path": "/spec/containers",
                "value": [{"name": "app", "image": "app:v3"}]}]),
        );
        assert_eq!(kind(&whole, &view), Some(Kind::ImageChange));
        let one = json_patch(
            "web-0",
            json!([{"op": "add", "path": "/spec/containers/0",
                "value": {"name": "app", "image": "app:v3"}}]),
        );
        assert_eq!(kind(&one, &view), Some(Kind::ImageChange));
        let merge_image = merge(
            "web-0",
            json!({"spec": {"containers": [{"name": "app", "image": "app:v2"}]}}),
        );
        assert_eq!(kind(&merge_image, &view), Some(Kind::ImageChange));
        // The same image, a removal, or a pod not in the cache is no disruption.
        assert_eq!(kind(&set_image("web-0", "app:v1"), &view), None);
        let remove = json_patch(
            "web-0",
            json!([{"op": "remove", "path": "/spec/containers/0/image"}]),
        );
        assert_eq!(kind(&remove, &view), None);
        assert_eq!(kind(&set_image("gone", "app:v2"), &view), None);
    }

    #[test]
    fn only_gate_conditions_set_false_disrupt() {
        let view = running_workload(1, 0);
        let whole = json_patch(
            "web-0",
            json!([{"op": "replace", "path": "/status/conditions",
                "value": [{"type": "example.com/gate", "status": "False"}]}]),
        );
        let d = disrupted_pod(&whole, &view).expect("gate off");
        assert_eq!(
            (d.kind, d.until),
            (Kind::ReadinessGateOff, Until::Unready(pod_ref("web-0")))
        );
        let appended = json_patch(
            "web-0",
            json!([{"op": "add", "path": "/status/conditions/-",
                "value": {"type": "example.com/gate", "status": "False"}}]),
        );
        assert_eq!(kind(&appended, &view), Some(Kind::ReadinessGateOff));
        // Ready set False takes the pod out of its endpoints too.
        let ready_off = json_patch(
            "web-0",
            json!([{"op": "replace", "path": "/status/conditions/0/status", "value": "False"}]),
        );
        assert_eq!(kind(&ready_off, &view), Some(Kind::ReadinessGateOff));
        // A condition that is not a gate does not.
        let other = merge(
            "web-0",
            json!({"status": {"conditions": [{"type": "Ready", "status": "True"},
                {"type": "example.com/other", "status": "False"}]}}),
        );
        assert_eq!(kind(&other, &view), None);
        let plain = FakeView::default().with(pod("web-0").build());
        let merge_off = merge(
            "web-0",
            json!({"status": {"conditions": [{"type": "example.com/gate", "status": "False"}]}}),
        );
        assert_eq!(kind(&merge_off, &plain), None, "the pod declares no gate");
    }

    #[test]
    fn moves_copies_and_applies_of_pods_are_judged_by_their_effect() {
        let view = running_workload(1, 0);
        // move: the image comes from another field.
        let moved = json_patch(
            "web-0",
            json!([
                {"op": "add", "path": "/metadata/annotations", "value": {"i": "app:v9"}},
                {"op": "move", "from": "/metadata/annotations/i", "path": "/spec/containers/0/image"}
            ]),
        );
        assert_eq!(kind(&moved, &view), Some(Kind::ImageChange));
        let copied = json_patch(
            "web-0",
            json!([
                {"op": "add", "path": "/metadata/labels", "value": {"g": "False"}},
                {"op": "copy", "from": "/metadata/labels/g", "path": "/status/conditions/1/status"}
            ]),
        );
        assert_eq!(kind(&copied, &view), Some(Kind::ReadinessGateOff));
        // A failing test (the cache may lag) does not hide the rest of the patch.
        let guarded = json_patch(
            "web-0",
            json!([
                {"op": "test", "path": "/metadata/name", "value": "someone-else"},
                {"op": "replace", "path": "/spec/containers/0/image", "value": "app:v2"}
            ]),
        );
        assert_eq!(kind(&guarded, &view), Some(Kind::ImageChange));
        // Server-side apply of the pod: containers merge by name.
        let apply = |image: &str| {
            Command::Apply(
                json!({"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": "web-0", "namespace": "default"},
                       "spec": {"containers": [{"name": "app", "image": image}]}})
                .to_string(),
            )
        };
        assert_eq!(kind(&apply("app:v2"), &view), Some(Kind::ImageChange));
        assert_eq!(kind(&apply("app:v1"), &view), None);
        let labels_only = Command::Apply(
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": "web-0", "namespace": "default", "labels": {"a": "b"}}})
            .to_string(),
        );
        assert_eq!(kind(&labels_only, &view), None);
        assert!(!is_destructive(&labels_only, &view));
        assert!(is_destructive(&apply("app:v2"), &view));
        assert!(is_destructive(
            &Command::Delete(ObjectRef::namespaced("v1", "ConfigMap", "default", "c")),
            &view
        ));
    }
}
