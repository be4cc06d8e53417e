//! References to Kubernetes objects.

use std::fmt;

use serde_json::Value;

use crate::Error;

/// One Kubernetes object, named the way the API names it.
///
/// ```
/// # use bosun_sdk::ObjectRef;
/// let pod = ObjectRef::new("v1", "Pod").namespaced("default").named("web-0");
/// let node = ObjectRef::new("v1", "Node").named("node-1");
/// assert_eq!(pod.to_string(), "v1/Pod default/web-0");
/// assert_eq!(node.namespace, None);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    /// `v1`, `apps/v1`, `bosun.dev/v1alpha1`, ...
    pub api_version: String,
    /// `Pod`, `StatefulSet`, ...
    pub kind: String,
    /// `None` for cluster-scoped kinds (Node, Namespace, ...).
    pub namespace: Option<String>,
    /// The object's name.
    pub name: String,
}

impl ObjectRef {
    /// A reference to an object of this kind, cluster-scoped and with an empty name until
    /// [`namespaced`](Self::namespaced) and [`named`](Self::named) say otherwise.
    pub fn new(api_version: impl Into<String>, kind: impl Into<String>) -> Self {
        Self {
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: None,
            name: String::new(),
        }
    }

    /// Sets the namespace.
    #[must_use]
    pub fn namespaced(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Sets the name.
    #[must_use]
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The reference of a Kubernetes object given as JSON, from its `apiVersion`, `kind`,
    /// `metadata.namespace` and `metadata.name`.
    ///
    /// Fails when `apiVersion`, `kind` or `metadata.name` is missing or not a string.
    pub fn of(object: &Value) -> Result<Self, Error> {
        let field = |pointer: &str| object.pointer(pointer).and_then(Value::as_str);
        let required = |pointer: &str| {
            field(pointer)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| Error::msg(format!("object has no {pointer}")))
        };
        Ok(Self {
            api_version: required("/apiVersion")?,
            kind: required("/kind")?,
            namespace: field("/metadata/namespace")
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            name: required("/metadata/name")?,
        })
    }
}

impl fmt::Display for ObjectRef {
    /// `v1/Pod default/web-0`, or `v1/Node node-1` for a cluster-scoped object.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} ", self.api_version, self.kind)?;
        if let Some(namespace) = &self.namespace {
            write!(f, "{namespace}/")?;
        }
        f.write_str(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn builds_namespaced_and_cluster_scoped_refs() {
        let pod = ObjectRef::new("v1", "Pod").namespaced("ns").named("web-0");
        assert_eq!(pod.api_version, "v1");
        assert_eq!(pod.kind, "Pod");
        assert_eq!(pod.namespace.as_deref(), Some("ns"));
        assert_eq!(pod.name, "web-0");
        assert_eq!(pod.to_string(), "v1/Pod ns/web-0");
        let node = ObjectRef::new("v1", "Node").named("node-1");
        assert_eq!(node.namespace, None);
        assert_eq!(node.to_string(), "v1/Node node-1");
    }

    #[test]
    fn of_reads_an_objects_identity() {
        let pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web-0", "namespace": "shop", "labels": {"app": "web"}},
        });
        assert_eq!(
            ObjectRef::of(&pod).ok(),
            Some(
                ObjectRef::new("v1", "Pod")
                    .namespaced("shop")
                    .named("web-0")
            )
        );
        let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}});
        assert_eq!(
            ObjectRef::of(&node).ok(),
            Some(ObjectRef::new("v1", "Node").named("n1"))
        );
    }

    #[test]
    fn of_names_the_missing_field() {
        let err = ObjectRef::of(&json!({"apiVersion": "v1", "metadata": {"name": "x"}})).err();
        assert_eq!(
            err.map(|e| e.to_string()).as_deref(),
            Some("object has no /kind")
        );
        let err = ObjectRef::of(&json!({"apiVersion": "v1", "kind": "Pod"})).err();
        assert_eq!(
            err.map(|e| e.to_string()).as_deref(),
            Some("object has no /metadata/name")
        );
    }
}
