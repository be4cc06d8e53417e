//! Slim typed views of the objects controllers read most: the metadata every object has,
//! pods and nodes. Each names only the fields plugins read (`FIELDS`), and the host cuts
//! the object down to them (`cache.get-fields`) before it is copied in, so the plugin
//! parses a few hundred bytes instead of building a [`serde_json::Value`] of every field;
//! on a 4.5 KB Pod that was most of a reconcile's cost (see
//! `runtime/host/benches/reconcile.rs`).
//!
//! The same views exist in the Go SDK (`PodObject`, `NodeObject`, `ObjectMeta`) and the
//! JavaScript SDK (`ctx.getPod`, `ctx.getNode`, `ctx.getMeta`).
//!
//! ```ignore
//! let Some(pod) = ctx.get_pod(req.target())? else { return Ok(Outcome::done()) };
//! if let Some(node) = pod.spec.node_name.as_deref() { /* … */ }
//! ```
//!
//! A field a view does not name is not read: use [`Context::get_as`](crate::Context::get_as)
//! with your own struct, or [`Context::get`](crate::Context::get) for the whole object.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use crate::ObjectRef;

/// `null` reads as the empty value, as Go's encoding/json reads it into a map or slice.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The part of metav1.ObjectMeta plugins read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ObjectMeta {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`; `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.generation`.
    pub generation: i64,
    /// `metadata.resourceVersion`.
    pub resource_version: String,
    /// `metadata.labels`.
    #[serde(deserialize_with = "nullable")]
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations`.
    #[serde(deserialize_with = "nullable")]
    pub annotations: BTreeMap<String, String>,
    /// `metadata.creationTimestamp` (RFC 3339).
    pub creation_timestamp: Option<String>,
    /// `metadata.deletionTimestamp` (RFC 3339): set once the object is being deleted.
    pub deletion_timestamp: Option<String>,
    /// `metadata.ownerReferences`.
    #[serde(deserialize_with = "nullable")]
    pub owner_references: Vec<OwnerReference>,
}

impl ObjectMeta {
    /// The value of label `key`.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }

    /// The value of annotation `key`.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.get(key).map(String::as_str)
    }

    /// The owner reference marked `controller: true`, if any.
    pub fn controller_of(&self) -> Option<&OwnerReference> {
        self.owner_references.iter().find(|o| o.controller)
    }
}

/// An owner reference.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct OwnerReference {
    /// The owner's `apiVersion`.
    pub api_version: String,
    /// The owner's kind.
    pub kind: String,
    /// The owner's name.
    pub name: String,
    /// The owner's uid.
    pub uid: String,
    /// Whether the owner is the managing controller.
    pub controller: bool,
}

/// The fields of [`ObjectMeta`], as paths for `cache.get-fields`.
macro_rules! meta_fields {
    ($($more:literal),*) => {
        &[
            "metadata.name", "metadata.namespace", "metadata.uid", "metadata.generation",
            "metadata.resourceVersion", "metadata.labels", "metadata.annotations",
            "metadata.creationTimestamp", "metadata.deletionTimestamp",
            "metadata.ownerReferences", $($more),*
        ]
    };
}

/// Any object's metadata, and nothing else of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct MetaObject {
    /// The object's metadata.
    pub metadata: ObjectMeta,
}

/// A status condition (node, pod or metav1.Condition).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Condition {
    /// The condition's type (`Ready`).
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A machine-readable reason.
    pub reason: String,
    /// A human-readable message.
    pub message: String,
    /// When the status last changed (RFC 3339).
    pub last_transition_time: Option<String>,
    /// When a node condition was last reported (RFC 3339).
    pub last_heartbeat_time: Option<String>,
    /// The generation a metav1.Condition was set for.
    pub observed_generation: i64,
}

/// The condition of type `type_` among `conditions`.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// A taint as a Node's spec holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct NodeTaint {
    /// The taint's key.
    pub key: String,
    /// The taint's value.
    pub value: String,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
    /// When a `NoExecute` taint was added (RFC 3339).
    pub time_added: Option<String>,
}

/// The part of a v1 Node plugins read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct NodeObject {
    /// The node's metadata.
    pub metadata: ObjectMeta,
    /// The node's spec.
    pub spec: NodeSpec,
    /// The node's status.
    pub status: NodeStatus,
}

/// The part of a Node's spec plugins read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct NodeSpec {
    /// Whether the node is cordoned.
    pub unschedulable: bool,
    /// The node's taints.
    #[serde(deserialize_with = "nullable")]
    pub taints: Vec<NodeTaint>,
}

/// The part of a Node's status plugins read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct NodeStatus {
    /// The node's conditions.
    #[serde(deserialize_with = "nullable")]
    pub conditions: Vec<Condition>,
    /// The node's boot id (`status.nodeInfo.bootID`).
    pub node_info: NodeInfo,
}

/// `status.nodeInfo` of a Node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct NodeInfo {
    /// Changes when the node reboots.
    #[serde(rename = "bootID")]
    pub boot_id: String,
}

impl MetaObject {
    /// The fields this view reads, for [`Context::get_fields`](crate::Context::get_fields).
    pub const FIELDS: &[&str] = meta_fields!();
}

impl NodeObject {
    /// The fields this view reads, for [`Context::get_fields`](crate::Context::get_fields).
    pub const FIELDS: &[&str] = meta_fields!(
        "spec.unschedulable",
        "spec.taints",
        "status.conditions",
        "status.nodeInfo.bootID"
    );

    /// The status of the node's `Ready` condition (`True`, `False`; `Unknown` when it has
    /// none).
    pub fn ready(&self) -> &str {
        find_condition(&self.status.conditions, "Ready").map_or("Unknown", |c| &c.status)
    }

    /// Whether the node carries a taint with this key and effect.
    pub fn has_taint(&self, key: &str, effect: &str) -> bool {
        self.spec
            .taints
            .iter()
            .any(|t| t.key == key && t.effect == effect)
    }

    /// The node's reference.
    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef::new("v1", "Node").named(&self.metadata.name)
    }
}

/// The part of a v1 Pod plugins read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct PodObject {
    /// The pod's metadata.
    pub metadata: ObjectMeta,
    /// The pod's spec.
    pub spec: PodSpec,
    /// The pod's status.
    pub status: PodStatus,
}

/// The part of a Pod's spec plugins read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PodSpec {
    /// The node the pod is bound to; `None` until it is scheduled.
    pub node_name: Option<String>,
    /// The pod's containers: name and image.
    #[serde(deserialize_with = "nullable")]
    pub containers: Vec<ContainerImage>,
}

/// A container's name and image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ContainerImage {
    /// The container's name.
    pub name: String,
    /// The container's image.
    pub image: String,
}

/// The part of a Pod's status plugins read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PodStatus {
    /// `Pending`, `Running`, `Succeeded`, `Failed` or `Unknown`.
    pub phase: String,
    /// The pod's conditions.
    #[serde(deserialize_with = "nullable")]
    pub conditions: Vec<Condition>,
    /// The containers' statuses.
    #[serde(deserialize_with = "nullable")]
    pub container_statuses: Vec<ContainerStatus>,
}

/// A container's status in a pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ContainerStatus {
    /// The container's name.
    pub name: String,
    /// The image it runs.
    pub image: String,
    /// The image's digest reference.
    #[serde(rename = "imageID")]
    pub image_id: String,
    /// Whether it passes its readiness probe.
    pub ready: bool,
    /// How often it restarted.
    pub restart_count: i32,
}

impl PodObject {
    /// The fields this view reads, for [`Context::get_fields`](crate::Context::get_fields).
    pub const FIELDS: &[&str] = meta_fields!(
        "spec.nodeName",
        "spec.containers.name",
        "spec.containers.image",
        "status.phase",
        "status.conditions",
        "status.containerStatuses"
    );

    /// The pod's reference.
    pub fn object_ref(&self) -> ObjectRef {
        let r = ObjectRef::new("v1", "Pod").named(&self.metadata.name);
        match &self.metadata.namespace {
            Some(ns) => r.namespaced(ns),
            None => r,
        }
    }

    /// The status of the pod's `Ready` condition (`True`, `False`; `Unknown` when it has
    /// none).
    pub fn ready(&self) -> &str {
        find_condition(&self.status.conditions, "Ready").map_or("Unknown", |c| &c.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_reads_the_fields_it_names_and_skips_the_rest() {
        let pod: PodObject = serde_json::from_str(
            r#"{"apiVersion":"v1","kind":"Pod",
                "metadata":{"name":"web-0","namespace":"shop","labels":{"app":"web"},
                  "ownerReferences":[{"apiVersion":"apps/v1","kind":"StatefulSet","name":"web","uid":"u","controller":true}],
                  "managedFields":[{"manager":"kubectl"}]},
                "spec":{"nodeName":"node-1","containers":[{"name":"app","image":"web:1","env":[{"name":"A","value":"1"}]}]},
                "status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}],
                  "containerStatuses":[{"name":"app","image":"web:1","imageID":"sha","ready":true,"restartCount":2,"state":{}}]}}"#,
        )
        .expect("a pod");
        assert_eq!(pod.metadata.label("app"), Some("web"));
        assert_eq!(pod.spec.node_name.as_deref(), Some("node-1"));
        assert_eq!(pod.spec.containers[0].image, "web:1");
        assert_eq!(pod.ready(), "True");
        assert_eq!(pod.status.container_statuses[0].restart_count, 2);
        assert_eq!(
            pod.metadata.controller_of().map(|o| o.kind.as_str()),
            Some("StatefulSet")
        );
        assert_eq!(pod.object_ref().to_string(), "v1/Pod shop/web-0");
    }

    #[test]
    fn null_collections_read_as_empty() {
        let pod: PodObject = serde_json::from_str(
            r#"{"metadata":{"name":"p","labels":null,"creationTimestamp":null},"spec":{"containers":null}}"#,
        )
        .expect("nulls are empty");
        assert!(pod.metadata.labels.is_empty() && pod.spec.containers.is_empty());
    }

    #[test]
    fn missing_parts_read_as_empty_and_a_wrong_type_is_an_error() {
        let node: NodeObject =
            serde_json::from_str(r#"{"metadata":{"name":"n"}}"#).expect("a node");
        assert_eq!(node.ready(), "Unknown");
        assert!(!node.has_taint("k", "NoSchedule"));
        let err = serde_json::from_str::<NodeObject>(r#"{"metadata":{"labels":[1]}}"#)
            .expect_err("labels must be a map");
        assert!(err.to_string().contains("expected a map"), "{err}");
    }
}
