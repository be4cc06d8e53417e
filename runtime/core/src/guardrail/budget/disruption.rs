//! What a command does to the cluster's capacity: the pod it takes out of service, or the
//! node it makes unschedulable. The budgets only count what this module finds.
//!
//! A pod is disrupted by an eviction, a deletion, a patch that changes a container's
//! image (the kubelet restarts it in place; judged against the cached pod), or a status
//! patch that sets a condition the pod declares as a readiness gate to False (the pod
//! leaves its Service's endpoints). A node is taken out by a cordon, or by a taint with a
//! `NoSchedule` or `NoExecute` effect.

use bosun_host::contract::{Command, ObjectRef, TaintEffect};

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
    /// A status patch that sets a readiness-gate condition False.
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
pub(super) struct Disruption<'c> {
    /// The pod.
    pub(super) target: &'c ObjectRef,
    /// Until when it counts once admitted.
    pub(super) until: Until,
    /// How the command disrupts it.
    pub(super) kind: Kind,
}

/// The node `cmd` takes out of service, if it does: a cordon, or a `NoSchedule` or
/// `NoExecute` taint.
pub(super) fn disrupted_node(cmd: &Command) -> Option<&str> {
    match cmd {
        Command::Cordon(node) => Some(node),
        Command::Taint(t)
            if matches!(
                t.taint.effect,
                TaintEffect::NoSchedule | TaintEffect::NoExecute
            ) =>
        {
            Some(&t.node)
        }
        _ => None,
    }
}

fn is_pod(r: &ObjectRef) -> bool {
    r.kind == "Pod" && r.api_version == "v1" && r.namespace.is_some()
}

/// The pod `cmd` takes out of service, if it does: an eviction, a deletion, a patch that
/// changes a container's image (judged against the cached pod), or a status patch that
/// sets a condition the pod declares as a readiness gate to False.
pub(super) fn disrupted_pod<'c>(cmd: &'c Command, view: &dyn View) -> Option<Disruption<'c>> {
    match cmd {
        Command::Evict(r) | Command::Delete(r) if is_pod(r) => Some(Disruption {
            target: r,
            until: Until::Ttl,
            kind: if matches!(cmd, Command::Delete(_)) {
                Kind::Deletion
            } else {
                Kind::Eviction
            },
        }),
        Command::MergePatch(p) | Command::JsonPatch(p) if is_pod(&p.target) => {
            let pod: serde_json::Value = serde_json::from_str(&view.get(&p.target)?).ok()?;
            let patch: serde_json::Value = serde_json::from_str(&p.patch).ok()?;
            let json = matches!(cmd, Command::JsonPatch(_));
            let images = if json {
                json_patch_images(&pod, &patch)
            } else {
                merge_patch_images(&pod, &patch)
            };
            if !images.is_empty() {
                return Some(Disruption {
                    target: &p.target,
                    until: Until::Images(p.target.clone(), images),
                    kind: Kind::ImageChange,
                });
            }
            let gates_off = if json {
                json_patch_gates_off(&pod, &patch)
            } else {
                merge_patch_gates_off(&pod, &patch)
            };
            gates_off.then(|| Disruption {
                target: &p.target,
                until: Until::Unready(p.target.clone()),
                kind: Kind::ReadinessGateOff,
            })
        }
        _ => None,
    }
}

// ---- images -------------------------------------------------------------------------

/// The (name, image) of each container in the pod's spec.
fn spec_images(pod: &serde_json::Value) -> Vec<(String, String)> {
    pod.pointer("/spec/containers")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .map(container_image)
        .collect()
}

fn container_image(c: &serde_json::Value) -> (String, String) {
    let s = |k: &str| c.get(k).and_then(|v| v.as_str()).unwrap_or("").to_owned();
    (s("name"), s("image"))
}

/// The containers (name, new image) of `list` whose image differs from the pod's spec.
fn changed(pod: &serde_json::Value, list: &[serde_json::Value]) -> Vec<(String, String)> {
    let have = spec_images(pod);
    list.iter()
        .map(container_image)
        .filter(|(name, image)| {
            !image.is_empty() && !have.iter().any(|(n, i)| n == name && i == image)
        })
        .collect()
}

/// Images a merge patch changes: it replaces `spec.containers` whole.
fn merge_patch_images(pod: &serde_json::Value, patch: &serde_json::Value) -> Vec<(String, String)> {
    patch
        .pointer("/spec/containers")
        .and_then(serde_json::Value::as_array)
        .map(|list| changed(pod, list))
        .unwrap_or_default()
}

/// Images a JSON patch changes: `add`/`replace` of `/spec/containers`,
/// `/spec/containers/N` or `/spec/containers/N/image`.
fn json_patch_images(pod: &serde_json::Value, patch: &serde_json::Value) -> Vec<(String, String)> {
    let have = spec_images(pod);
    let mut out = Vec::new();
    for op in patch.as_array().into_iter().flatten() {
        if !matches!(op["op"].as_str(), Some("add" | "replace")) {
            continue;
        }
        let Some(rest) = op["path"]
            .as_str()
            .and_then(|p| p.strip_prefix("/spec/containers"))
        else {
            continue;
        };
        let value = &op["value"];
        let parts: Vec<&str> = rest.split('/').skip(1).collect();
        match parts.as_slice() {
            [] => {
                if let Some(list) = value.as_array() {
                    out.extend(changed(pod, list));
                }
            }
            [_] => out.extend(changed(pod, std::slice::from_ref(value))),
            [index, "image"] => {
                let image = value.as_str().unwrap_or("");
                let name = index
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| have.get(i))
                    .filter(|(_, old)| old != image)
                    .map(|(n, _)| n.clone());
                if let Some(name) = name {
                    out.push((name, image.to_owned()));
                }
            }
            _ => {}
        }
    }
    out
}

// ---- readiness gates ----------------------------------------------------------------

/// The condition types the pod declares as readiness gates.
fn readiness_gates(pod: &serde_json::Value) -> Vec<&str> {
    pod.pointer("/spec/readinessGates")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|g| g.get("conditionType").and_then(|t| t.as_str()))
        .collect()
}

/// Whether a condition (JSON) sets one of `gates` False.
fn gate_off(gates: &[&str], condition: &serde_json::Value) -> bool {
    condition["status"] == "False"
        && condition["type"]
            .as_str()
            .is_some_and(|t| gates.contains(&t))
}

fn merge_patch_gates_off(pod: &serde_json::Value, patch: &serde_json::Value) -> bool {
    let gates = readiness_gates(pod);
    patch
        .pointer("/status/conditions")
        .and_then(serde_json::Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| gate_off(&gates, c)))
}

/// `add`/`replace` of `/status/conditions`, `/status/conditions/N` (or `-`), or
/// `/status/conditions/N/status` where the cached condition N is a gate.
fn json_patch_gates_off(pod: &serde_json::Value, patch: &serde_json::Value) -> bool {
    let gates = readiness_gates(pod);
    let cached = pod
        .pointer("/status/conditions")
        .and_then(serde_json::Value::as_array);
    patch.as_array().into_iter().flatten().any(|op| {
        if !matches!(op["op"].as_str(), Some("add" | "replace")) {
            return false;
        }
        let Some(rest) = op["path"]
            .as_str()
            .and_then(|p| p.strip_prefix("/status/conditions"))
        else {
            return false;
        };
        let value = &op["value"];
        let parts: Vec<&str> = rest.split('/').skip(1).collect();
        match parts.as_slice() {
            [] => value
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| gate_off(&gates, c))),
            [_] => gate_off(&gates, value),
            [index, "status"] => {
                value == "False"
                    && index
                        .parse::<usize>()
                        .ok()
                        .and_then(|i| cached?.get(i))
                        .and_then(|c| c["type"].as_str())
                        .is_some_and(|t| gates.contains(&t))
            }
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{
        FakeView, evict, json_patch, merge, pod, pod_ref, running_workload, set_image, taint,
    };
    use super::*;
    use serde_json::json;

    fn kind(cmd: &Command, view: &dyn View) -> Option<Kind> {
        disrupted_pod(cmd, view).map(|d| d.kind)
    }

    #[test]
    fn cordons_and_hard_taints_take_a_node_out() {
        assert_eq!(disrupted_node(&Command::Cordon("n1".into())), Some("n1"));
        assert_eq!(
            disrupted_node(&taint("n2", TaintEffect::NoExecute)),
            Some("n2")
        );
        assert_eq!(
            disrupted_node(&taint("n2", TaintEffect::NoSchedule)),
            Some("n2")
        );
        assert_eq!(
            disrupted_node(&taint("n2", TaintEffect::PreferNoSchedule)),
            None
        );
        assert_eq!(disrupted_node(&Command::Uncordon("n1".into())), None);
    }

    #[test]
    fn evictions_and_deletions_of_pods_disrupt_them() {
        let view = FakeView::default();
        assert_eq!(kind(&evict("web-0"), &view), Some(Kind::Eviction));
        let delete = Command::Delete(pod_ref("web-0"));
        let d = disrupted_pod(&delete, &view).expect("a pod deletion");
        let web_0 = pod_ref("web-0");
        assert_eq!(
            (d.kind, d.target, d.until),
            (Kind::Deletion, &web_0, Until::Ttl)
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
        // Condition 0 is Ready, not a gate.
        let ready_off = json_patch(
            "web-0",
            json!([{"op": "replace", "path": "/status/conditions/0/status", "value": "False"}]),
        );
        assert_eq!(kind(&ready_off, &view), None);
        let plain = FakeView::default().with(pod("web-0").build());
        let merge_off = merge(
            "web-0",
            json!({"status": {"conditions": [{"type": "example.com/gate", "status": "False"}]}}),
        );
        assert_eq!(kind(&merge_off, &plain), None, "the pod declares no gate");
    }
}
