//! Commands: the actions a plugin asks the host to carry out.

use std::fmt;

use serde_json::Value;

use crate::ObjectRef;

/// An action a plugin asks for. It never reaches the cluster directly: it passes the
/// guardrails (permission, validation, rate limits, disruption budgets, circuit breaker,
/// dry-run) first, and its outcome comes back in a later
/// [`Request::outcomes`](crate::Request::outcomes).
///
/// Build one with the associated functions ([`Command::merge_patch`], ...) and submit it
/// with `Context::submit`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// Server-side apply of a whole object.
    Apply {
        /// The object as JSON, with apiVersion, kind and metadata.
        object: String,
    },
    /// A JSON merge patch (RFC 7386) of one object.
    MergePatch {
        /// The object to patch.
        target: ObjectRef,
        /// The patch document as JSON.
        patch: String,
    },
    /// A JSON patch (RFC 6902) of one object.
    JsonPatch {
        /// The object to patch.
        target: ObjectRef,
        /// The patch document (a JSON array of operations).
        patch: String,
    },
    /// Delete an object.
    Delete {
        /// The object to delete.
        target: ObjectRef,
    },
    /// Evict a pod through the Eviction API (honours PodDisruptionBudgets).
    Evict {
        /// The pod.
        pod: ObjectRef,
    },
    /// Mark a node unschedulable.
    Cordon {
        /// The node's name.
        node: String,
    },
    /// Mark a node schedulable again.
    Uncordon {
        /// The node's name.
        node: String,
    },
    /// Add (or replace) a taint on a node.
    Taint {
        /// The node's name.
        node: String,
        /// The taint.
        taint: Taint,
    },
    /// Remove a taint from a node.
    Untaint {
        /// The node's name.
        node: String,
        /// The taint's key.
        key: String,
        /// Only the taint with this effect; `None` removes the key with every effect.
        effect: Option<TaintEffect>,
    },
    /// Record a Kubernetes Event about an object.
    Event {
        /// The object the event is about.
        regarding: ObjectRef,
        /// Normal or warning.
        event_type: EventType,
        /// UpperCamelCase, machine-readable (`InPlaceUpdated`).
        reason: String,
        /// For humans.
        message: String,
    },
    /// A command for a pod-agent plugin in the sidecar of one pod.
    Pod {
        /// The pod's namespace.
        namespace: String,
        /// The pod's name.
        pod: String,
        /// The pod-agent plugin that receives it.
        plugin: String,
        /// Opaque to the host; by convention JSON.
        payload: String,
    },
}

impl Command {
    /// Server-side apply of `object` (JSON with apiVersion, kind and metadata).
    pub fn apply(object: &Value) -> Self {
        Self::Apply {
            object: object.to_string(),
        }
    }

    /// A JSON merge patch (RFC 7386) of `target`.
    ///
    /// A patch whose only top-level key is `status` goes to the object's status
    /// subresource ([`Command::patch_status`] builds one); a patch with `status` and other
    /// keys is refused as invalid: split it into two commands.
    ///
    /// ```
    /// # use bosun_sdk::{Command, ObjectRef};
    /// let pod = ObjectRef::new("v1", "Pod").namespaced("default").named("web-0");
    /// let patch = serde_json::json!({"metadata": {"labels": {"tier": "web"}}});
    /// let cmd = Command::merge_patch(&pod, &patch);
    /// ```
    pub fn merge_patch(target: &ObjectRef, patch: &Value) -> Self {
        Self::MergePatch {
            target: target.clone(),
            patch: patch.to_string(),
        }
    }

    /// A JSON patch (RFC 6902, an array of operations) of `target`.
    ///
    /// Operations whose paths are all under `/status` patch the status subresource;
    /// mixing `/status` with other paths is refused (see [`Command::merge_patch`]).
    pub fn json_patch(target: &ObjectRef, patch: &Value) -> Self {
        Self::JsonPatch {
            target: target.clone(),
            patch: patch.to_string(),
        }
    }

    /// A JSON merge patch of `target`'s status subresource: `{"status": status}`.
    ///
    /// The host sends a patch whose only top-level key is `status` to the status
    /// subresource (the main resource ignores status changes). Status and other fields
    /// cannot be patched in one command: submit one for status, one for the rest.
    ///
    /// A merge patch replaces lists whole; to change one entry of a list such as a pod's
    /// `status.conditions` without touching the others, use [`Command::json_patch`] with
    /// paths under `/status` (and a `test` operation to guard the index).
    ///
    /// ```
    /// # use bosun_sdk::{Command, ObjectRef};
    /// let pod = ObjectRef::new("v1", "Pod").namespaced("default").named("web-0");
    /// let cmd = Command::patch_status(&pod, &serde_json::json!({"phase": "Running"}));
    /// ```
    pub fn patch_status(target: &ObjectRef, status: &Value) -> Self {
        Self::MergePatch {
            target: target.clone(),
            patch: serde_json::json!({ "status": status }).to_string(),
        }
    }

    /// Deletes `target`.
    pub fn delete(target: &ObjectRef) -> Self {
        Self::Delete {
            target: target.clone(),
        }
    }

    /// Evicts a pod through the Eviction API.
    pub fn evict(pod: &ObjectRef) -> Self {
        Self::Evict { pod: pod.clone() }
    }

    /// Cordons a node.
    pub fn cordon(node: impl Into<String>) -> Self {
        Self::Cordon { node: node.into() }
    }

    /// Uncordons a node.
    pub fn uncordon(node: impl Into<String>) -> Self {
        Self::Uncordon { node: node.into() }
    }

    /// Adds (or replaces) a taint on a node.
    pub fn taint(node: impl Into<String>, taint: Taint) -> Self {
        Self::Taint {
            node: node.into(),
            taint,
        }
    }

    /// Removes the taint `key` from a node: only with `effect`, or every effect if `None`.
    pub fn untaint(
        node: impl Into<String>,
        key: impl Into<String>,
        effect: Option<TaintEffect>,
    ) -> Self {
        Self::Untaint {
            node: node.into(),
            key: key.into(),
            effect,
        }
    }

    /// Records a Kubernetes Event about `regarding`.
    pub fn event(
        regarding: &ObjectRef,
        event_type: EventType,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::Event {
            regarding: regarding.clone(),
            event_type,
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// Sends `payload` to the pod-agent plugin `plugin` in the sidecar of one pod.
    pub fn pod(
        namespace: impl Into<String>,
        pod: impl Into<String>,
        plugin: impl Into<String>,
        payload: impl Into<String>,
    ) -> Self {
        Self::Pod {
            namespace: namespace.into(),
            pod: pod.into(),
            plugin: plugin.into(),
            payload: payload.into(),
        }
    }
}

/// The effect of a node taint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaintEffect {
    /// New pods that do not tolerate the taint are not scheduled on the node.
    NoSchedule,
    /// The scheduler tries to avoid the node.
    PreferNoSchedule,
    /// Pods that do not tolerate the taint are evicted.
    NoExecute,
}

/// A node taint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taint {
    /// The taint's key (`bosun.dev/remediation`).
    pub key: String,
    /// The taint's value, if any.
    pub value: Option<String>,
    /// What the taint does.
    pub effect: TaintEffect,
}

impl Taint {
    /// A taint; an empty `value` means none.
    pub fn new(key: impl Into<String>, value: impl Into<String>, effect: TaintEffect) -> Self {
        let value = value.into();
        Self {
            key: key.into(),
            value: (!value.is_empty()).then_some(value),
            effect,
        }
    }
}

/// The type of a Kubernetes Event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Something expected happened.
    Normal,
    /// Something a human may want to look at.
    Warning,
}

/// The id the host gave a submitted command; its outcome carries the same id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommandId(pub u64);

impl fmt::Display for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// The host refused a command at once: not permitted, invalid, over the per-call cap,
/// rate limited, or the plugin's circuit breaker is open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// Why, as the host says it.
    pub reason: String,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "command refused: {}", self.reason)
    }
}

impl std::error::Error for Refused {}

impl From<Refused> for crate::Error {
    fn from(refused: Refused) -> Self {
        crate::Error::msg(refused.to_string())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod() -> ObjectRef {
        ObjectRef::new("v1", "Pod").namespaced("ns").named("web-0")
    }

    #[test]
    fn patches_carry_target_and_json() {
        let patch = json!({"metadata": {"labels": {"a": "b"}}});
        assert_eq!(
            Command::merge_patch(&pod(), &patch),
            Command::MergePatch {
                target: pod(),
                patch: r#"{"metadata":{"labels":{"a":"b"}}}"#.into(),
            }
        );
        let ops = json!([{"op": "remove", "path": "/metadata/labels/a"}]);
        let Command::JsonPatch { target, patch } = Command::json_patch(&pod(), &ops) else {
            panic!("json_patch built another variant");
        };
        assert_eq!(target, pod());
        assert_eq!(serde_json::from_str::<Value>(&patch).ok(), Some(ops));
    }

    #[test]
    fn patch_status_wraps_the_status_alone() {
        let Command::MergePatch { target, patch } =
            Command::patch_status(&pod(), &json!({"phase": "Running"}))
        else {
            panic!("patch_status built another variant");
        };
        assert_eq!(target, pod());
        assert_eq!(
            serde_json::from_str::<Value>(&patch).ok(),
            Some(json!({"status": {"phase": "Running"}}))
        );
    }

    #[test]
    fn apply_serializes_the_object() {
        let object = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
        let Command::Apply { object: text } = Command::apply(&object) else {
            panic!("apply built another variant");
        };
        assert_eq!(serde_json::from_str::<Value>(&text).ok(), Some(object));
    }

    #[test]
    fn node_commands() {
        assert_eq!(Command::cordon("n1"), Command::Cordon { node: "n1".into() });
        assert_eq!(
            Command::uncordon("n1"),
            Command::Uncordon { node: "n1".into() }
        );
        assert_eq!(
            Command::taint("n1", Taint::new("k", "v", TaintEffect::NoExecute)),
            Command::Taint {
                node: "n1".into(),
                taint: Taint {
                    key: "k".into(),
                    value: Some("v".into()),
                    effect: TaintEffect::NoExecute,
                },
            }
        );
        assert_eq!(Taint::new("k", "", TaintEffect::NoSchedule).value, None);
        assert_eq!(
            Command::untaint("n1", "k", None),
            Command::Untaint {
                node: "n1".into(),
                key: "k".into(),
                effect: None,
            }
        );
    }

    #[test]
    fn events_evictions_and_pod_commands() {
        assert_eq!(Command::evict(&pod()), Command::Evict { pod: pod() });
        assert_eq!(Command::delete(&pod()), Command::Delete { target: pod() });
        assert_eq!(
            Command::event(&pod(), EventType::Warning, "Stuck", "no progress"),
            Command::Event {
                regarding: pod(),
                event_type: EventType::Warning,
                reason: "Stuck".into(),
                message: "no progress".into(),
            }
        );
        assert_eq!(
            Command::pod("ns", "web-0", "release-agent", "{}"),
            Command::Pod {
                namespace: "ns".into(),
                pod: "web-0".into(),
                plugin: "release-agent".into(),
                payload: "{}".into(),
            }
        );
    }

    #[test]
    fn refused_converts_to_error() {
        let err = crate::Error::from(Refused {
            reason: "rate limited".into(),
        });
        assert_eq!(err.to_string(), "command refused: rate limited");
    }
}
