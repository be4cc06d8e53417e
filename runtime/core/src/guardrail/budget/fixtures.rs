//! Test fixtures: JSON objects built by small builders, a view over them, and the
//! commands the budget tests submit.

use std::sync::Arc;

use bosun_host::contract::{Command, NodeTaint, ObjectRef, Patch, Taint, TaintEffect};
use serde_json::{Value, json};

use super::View;

/// A view over a fixed set of objects.
#[derive(Default)]
pub struct FakeView {
    objects: Vec<(ObjectRef, Arc<str>)>,
}

impl FakeView {
    pub fn with(mut self, object: Value) -> Self {
        let r = ObjectRef::of(&object).expect("fixture names itself");
        self.objects.push((r, object.to_string().into()));
        self
    }
}

impl View for FakeView {
    fn list(&self, api_version: &str, kind: &str) -> Vec<Arc<str>> {
        self.objects
            .iter()
            .filter(|(r, _)| r.api_version == api_version && r.kind == kind)
            .map(|(_, json)| Arc::clone(json))
            .collect()
    }

    fn get(&self, r: &ObjectRef) -> Option<Arc<str>> {
        self.objects
            .iter()
            .find(|(o, _)| o == r)
            .map(|(_, json)| Arc::clone(json))
    }
}

pub struct NodeBuilder(Value);

pub fn node(name: &str) -> NodeBuilder {
    NodeBuilder(json!({
        "apiVersion": "v1", "kind": "Node", "metadata": { "name": name }, "spec": {},
    }))
}

impl NodeBuilder {
    pub fn unschedulable(mut self) -> Self {
        self.0["spec"]["unschedulable"] = json!(true);
        self
    }
    pub fn build(self) -> Value {
        self.0
    }
}

pub struct PodBuilder(Value);

/// A ready pod in namespace `default`.
pub fn pod(name: &str) -> PodBuilder {
    PodBuilder(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "namespace": "default" },
        "status": { "conditions": [ { "type": "Ready", "status": "True" } ] },
    }))
}

impl PodBuilder {
    /// Controlled by ReplicaSet `rs` (uid `uid-<rs>`).
    pub fn owned_by(mut self, rs: &str) -> Self {
        self.0["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs,
            "uid": format!("uid-{rs}"), "controller": true,
        }]);
        self
    }
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.0["metadata"]["labels"][key] = json!(value);
        self
    }
    pub fn not_ready(mut self) -> Self {
        self.0["status"]["conditions"][0]["status"] = json!("False");
        self
    }
    pub fn deleting(mut self) -> Self {
        self.0["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        self
    }
    /// Runs container `app` with `image` (spec and status).
    pub fn image(mut self, image: &str) -> Self {
        self.0["spec"]["containers"] = json!([{"name": "app", "image": image}]);
        self.0["status"]["containerStatuses"] =
            json!([{"name": "app", "image": image, "ready": true}]);
        self
    }
    /// Declares the readiness gate `example.com/gate`, with the condition at `status`.
    pub fn gated(mut self, status: &str) -> Self {
        self.0["spec"]["readinessGates"] = json!([{"conditionType": "example.com/gate"}]);
        let conditions = self.0["status"]["conditions"]
            .as_array_mut()
            .expect("conditions");
        conditions.push(json!({"type": "example.com/gate", "status": status}));
        self
    }
    pub fn build(self) -> Value {
        self.0
    }
}

pub fn replica_set(name: &str, replicas: u32) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": { "name": name, "namespace": "default", "uid": format!("uid-{name}") },
        "spec": { "replicas": replicas },
    })
}

pub fn deployment(name: &str, replicas: u32) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": name, "namespace": "default", "uid": format!("uid-{name}") },
        "spec": { "replicas": replicas },
    })
}

/// A PodDisruptionBudget in namespace `default` with `spec` (selector and limit).
pub fn pdb(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": { "name": name, "namespace": "default" },
        "spec": spec,
    })
}

/// Builders' extras on finished objects.
pub trait Owned {
    /// Controlled by Deployment `d` (uid `uid-<d>`).
    fn owned_by_deployment(self, d: &str) -> Value;
}

impl Owned for Value {
    fn owned_by_deployment(mut self, d: &str) -> Value {
        self["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "apps/v1", "kind": "Deployment", "name": d,
            "uid": format!("uid-{d}"), "controller": true,
        }]);
        self
    }
}

/// A view with `ready` ready pods and `not_ready` unready pods of ReplicaSet `web`.
pub fn workload(ready: usize, not_ready: usize) -> FakeView {
    let mut view = FakeView::default();
    for i in 0..ready {
        view = view.with(pod(&format!("web-{i}")).owned_by("web").build());
    }
    for i in ready..ready + not_ready {
        view = view.with(pod(&format!("web-{i}")).owned_by("web").not_ready().build());
    }
    view
}

/// A view with `ready` ready pods and `not_ready` unready pods of ReplicaSet `web`,
/// each running `app:v1` and gated by `example.com/gate`.
pub fn running_workload(ready: usize, not_ready: usize) -> FakeView {
    let mut view = FakeView::default();
    for i in 0..ready + not_ready {
        let p = pod(&format!("web-{i}")).owned_by("web").image("app:v1");
        let p = if i < ready {
            p.gated("True")
        } else {
            p.gated("True").not_ready()
        };
        view = view.with(p.build());
    }
    view
}

pub fn pod_ref(name: &str) -> ObjectRef {
    ObjectRef::namespaced("v1", "Pod", "default", name)
}

pub fn evict(name: &str) -> Command {
    Command::Evict(pod_ref(name))
}

pub fn taint(node: &str, effect: TaintEffect) -> Command {
    Command::Taint(NodeTaint {
        node: node.into(),
        taint: Taint {
            key: "bosun.dev/repair".into(),
            value: None,
            effect,
        },
    })
}

pub fn merge(name: &str, patch: Value) -> Command {
    Command::MergePatch(Patch {
        target: pod_ref(name),
        patch: patch.to_string(),
    })
}

pub fn json_patch(name: &str, ops: Value) -> Command {
    Command::JsonPatch(Patch {
        target: pod_ref(name),
        patch: ops.to_string(),
    })
}

/// A JSON patch replacing the image of container 0.
pub fn set_image(name: &str, image: &str) -> Command {
    json_patch(
        name,
        json!([{"op": "replace", "path": "/spec/containers/0/image", "value": image}]),
    )
}
