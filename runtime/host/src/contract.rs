//! The plugin contract's types, as the host sees them.
//!
//! These are the types generated from `wit/types.wit` (so they cannot drift from the
//! contract), with the helpers the host and its embedders need: keys, the verb and kind
//! a command acts on, validation, and a readable JSON form for tools and audit logs.

use bosun_api::name;
use serde_json::{Value, json};

pub use crate::bindings::iface::types::ObjectRef;
pub use crate::bindings::iface::types::{
    Command, CommandOutcome, EventCommand, EventKind, EventType, HttpResponse, Level, NodeTaint,
    NodeUntaint, Patch, Permission, PluginMetadata, PodCommand, PodInfo, ProbeKind, ProbeResult,
    ReconcileOutcome, ReconcileRequest, Subscription, Taint, TaintEffect, Verb, Verdict,
};

/// Upper bound on the JSON payload of one command (an applied object or a patch):
/// the API server's own request limit.
pub const MAX_COMMAND_PAYLOAD: usize = 3 * 1024 * 1024;

impl ObjectRef {
    /// A reference to a namespaced object.
    pub fn namespaced(api_version: &str, kind: &str, namespace: &str, name: &str) -> Self {
        ObjectRef {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            namespace: Some(namespace.to_owned()),
            name: name.to_owned(),
        }
    }

    /// A reference to a cluster-scoped object.
    pub fn cluster(api_version: &str, kind: &str, name: &str) -> Self {
        ObjectRef {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            namespace: None,
            name: name.to_owned(),
        }
    }

    /// The reference of a Kubernetes object given as JSON, if it names itself.
    pub fn of(object: &Value) -> Option<Self> {
        let api_version = object.get("apiVersion")?.as_str()?;
        let kind = object.get("kind")?.as_str()?;
        let meta = object.get("metadata")?;
        let name = meta.get("name")?.as_str()?;
        let namespace = meta.get("namespace").and_then(Value::as_str);
        Some(ObjectRef {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        })
    }

    /// `kind/namespace/name` (or `kind/name` when cluster-scoped): the work-queue key.
    pub fn key(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{}/{}/{}", self.kind, ns, self.name),
            None => format!("{}/{}", self.kind, self.name),
        }
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.key())
    }
}

impl Verb {
    /// The verb's name as written in the WIT (`record-event`).
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Read => "read",
            Verb::Apply => "apply",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::Evict => "evict",
            Verb::Cordon => "cordon",
            Verb::RecordEvent => "record-event",
            Verb::PodCommand => "pod-command",
        }
    }
}

impl Level {
    /// The level's name (`warn`).
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

impl Verdict {
    /// The verdict's name (`dry-run`): a metric label and an audit field.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pending => "pending",
            Verdict::Executed => "executed",
            Verdict::DryRun => "dry-run",
            Verdict::Refused => "refused",
            Verdict::Failed => "failed",
        }
    }
}

impl TaintEffect {
    /// The effect as Kubernetes spells it (`NoSchedule`).
    pub fn as_k8s(self) -> &'static str {
        match self {
            TaintEffect::NoSchedule => "NoSchedule",
            TaintEffect::PreferNoSchedule => "PreferNoSchedule",
            TaintEffect::NoExecute => "NoExecute",
        }
    }
}

/// What a command acts on, for the permission check: verb, api-version and kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// The verb the command needs.
    pub verb: Verb,
    /// The api-version of the kind it acts on.
    pub api_version: String,
    /// The kind it acts on.
    pub kind: String,
}

impl Command {
    /// The command's name as written in the WIT (`merge-patch`).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Apply(_) => "apply",
            Command::MergePatch(_) => "merge-patch",
            Command::JsonPatch(_) => "json-patch",
            Command::Delete(_) => "delete",
            Command::Evict(_) => "evict",
            Command::Cordon(_) => "cordon",
            Command::Uncordon(_) => "uncordon",
            Command::Taint(_) => "taint",
            Command::Untaint(_) => "untaint",
            Command::RecordEvent(_) => "record-event",
            Command::PodCommand(_) => "pod-command",
        }
    }

    /// Bytes of guest-supplied payload the command carries (checked against caps).
    pub fn payload_len(&self) -> usize {
        match self {
            Command::Apply(body) => body.len(),
            Command::MergePatch(p) | Command::JsonPatch(p) => p.patch.len(),
            Command::RecordEvent(e) => e.message.len() + e.reason.len(),
            Command::PodCommand(p) => p.payload.len(),
            Command::Delete(_)
            | Command::Evict(_)
            | Command::Cordon(_)
            | Command::Uncordon(_)
            | Command::Taint(_)
            | Command::Untaint(_) => 0,
        }
    }

    /// The object the command acts on, when it names one (an applied object's reference
    /// is read from its JSON).
    pub fn target(&self) -> Option<ObjectRef> {
        let node = |name: &str| Some(ObjectRef::cluster("v1", "Node", name));
        match self {
            Command::Apply(body) => serde_json::from_str::<Value>(body)
                .ok()
                .as_ref()
                .and_then(ObjectRef::of),
            Command::MergePatch(p) | Command::JsonPatch(p) => Some(p.target.clone()),
            Command::Delete(r) | Command::Evict(r) => Some(r.clone()),
            Command::Cordon(n) | Command::Uncordon(n) => node(n),
            Command::Taint(t) => node(&t.node),
            Command::Untaint(u) => node(&u.node),
            Command::RecordEvent(e) => Some(e.regarding.clone()),
            Command::PodCommand(p) => {
                Some(ObjectRef::namespaced("v1", "Pod", &p.namespace, &p.pod))
            }
        }
    }

    /// Checks the command's shape: names present, JSON payloads parse and have the form
    /// their verb needs. Returns what the permission check needs to know.
    pub fn validate(&self) -> Result<Action, String> {
        let action = |verb, r: &ObjectRef| -> Result<Action, String> {
            check_ref(r)?;
            Ok(Action {
                verb,
                api_version: r.api_version.clone(),
                kind: r.kind.clone(),
            })
        };
        if self.payload_len() > MAX_COMMAND_PAYLOAD {
            return Err(format!(
                "{} payload is {} bytes, over the limit of {MAX_COMMAND_PAYLOAD}",
                self.name(),
                self.payload_len()
            ));
        }
        match self {
            Command::Apply(body) => {
                let object: Value = serde_json::from_str(body)
                    .map_err(|e| format!("apply: the object is not valid JSON: {e}"))?;
                let r = ObjectRef::of(&object).ok_or(
                    "apply: the object needs apiVersion, kind and metadata.name".to_owned(),
                )?;
                action(Verb::Apply, &r)
            }
            Command::MergePatch(p) => {
                let patch: Value = serde_json::from_str(&p.patch)
                    .map_err(|e| format!("merge-patch: the patch is not valid JSON: {e}"))?;
                if !patch.is_object() {
                    return Err("merge-patch: the patch must be a JSON object".to_owned());
                }
                action(Verb::Patch, &p.target)
            }
            Command::JsonPatch(p) => {
                let patch: Value = serde_json::from_str(&p.patch)
                    .map_err(|e| format!("json-patch: the patch is not valid JSON: {e}"))?;
                let ops = patch
                    .as_array()
                    .ok_or("json-patch: the patch must be a JSON array")?;
                for (i, op) in ops.iter().enumerate() {
                    let name = op.get("op").and_then(Value::as_str).unwrap_or("");
                    if !matches!(
                        name,
                        "add" | "remove" | "replace" | "move" | "copy" | "test"
                    ) {
                        return Err(format!("json-patch: operation {i} has no valid \"op\""));
                    }
                    if op.get("path").and_then(Value::as_str).is_none() {
                        return Err(format!("json-patch: operation {i} has no \"path\""));
                    }
                }
                action(Verb::Patch, &p.target)
            }
            Command::Delete(r) => action(Verb::Delete, r),
            Command::Evict(r) => {
                if r.kind != "Pod" || r.api_version != "v1" || r.namespace.is_none() {
                    return Err(format!(
                        "evict: only pods (apiVersion v1, with a namespace) can be evicted, \
                         not {} {r}",
                        r.api_version
                    ));
                }
                action(Verb::Evict, r)
            }
            Command::Cordon(n) | Command::Uncordon(n) => {
                action(Verb::Cordon, &ObjectRef::cluster("v1", "Node", n))
            }
            Command::Taint(t) => {
                check_taint_key("taint", &t.taint.key)?;
                if let Some(v) = &t.taint.value
                    && !name::is_label_value(v)
                {
                    return Err(format!("taint: value {v:?} is not a valid label value"));
                }
                action(Verb::Cordon, &ObjectRef::cluster("v1", "Node", &t.node))
            }
            Command::Untaint(u) => {
                check_taint_key("untaint", &u.key)?;
                action(Verb::Cordon, &ObjectRef::cluster("v1", "Node", &u.node))
            }
            Command::RecordEvent(e) => {
                if e.reason.is_empty() {
                    return Err("record-event: the reason is empty".to_owned());
                }
                action(Verb::RecordEvent, &e.regarding)
            }
            Command::PodCommand(p) => {
                if p.plugin.is_empty() {
                    return Err("pod-command: the target plugin is empty".to_owned());
                }
                if !name::is_dns_label(&p.plugin) {
                    return Err(format!(
                        "pod-command: plugin {:?} is not a plugin name (a DNS-1123 label)",
                        p.plugin
                    ));
                }
                action(
                    Verb::PodCommand,
                    &ObjectRef::namespaced("v1", "Pod", &p.namespace, &p.pod),
                )
            }
        }
    }

    /// A readable JSON form (`{"command":"merge-patch","target":...,"patch":{...}}`),
    /// with embedded JSON documents parsed rather than escaped.
    pub fn to_json(&self) -> Value {
        let doc = |s: &str| {
            serde_json::from_str::<Value>(s).unwrap_or_else(|_| Value::String(s.to_owned()))
        };
        let body = match self {
            Command::Apply(body) => json!({ "object": doc(body) }),
            Command::MergePatch(p) | Command::JsonPatch(p) => {
                json!({ "target": ref_json(&p.target), "patch": doc(&p.patch) })
            }
            Command::Delete(r) | Command::Evict(r) => json!({ "target": ref_json(r) }),
            Command::Cordon(n) | Command::Uncordon(n) => json!({ "node": n }),
            Command::Taint(t) => json!({
                "node": t.node,
                "taint": { "key": t.taint.key, "value": t.taint.value, "effect": t.taint.effect.as_k8s() },
            }),
            Command::Untaint(u) => json!({
                "node": u.node, "key": u.key, "effect": u.effect.map(TaintEffect::as_k8s),
            }),
            Command::RecordEvent(e) => json!({
                "regarding": ref_json(&e.regarding),
                "type": match e.event_type { EventType::Normal => "Normal", EventType::Warning => "Warning" },
                "reason": e.reason,
                "message": e.message,
            }),
            Command::PodCommand(p) => json!({
                "namespace": p.namespace, "pod": p.pod, "plugin": p.plugin, "payload": doc(&p.payload),
            }),
        };
        let mut out = json!({ "command": self.name() });
        if let (Some(out), Value::Object(body)) = (out.as_object_mut(), body) {
            out.extend(body);
        }
        out
    }
}

fn ref_json(r: &ObjectRef) -> Value {
    json!({ "apiVersion": r.api_version, "kind": r.kind, "namespace": r.namespace, "name": r.name })
}

/// A command's target checked by Kubernetes' rules before any guardrail sees it (and so
/// before the executor builds a request path from it).
fn check_ref(r: &ObjectRef) -> Result<(), String> {
    if r.name.is_empty() || r.kind.is_empty() || r.api_version.is_empty() {
        return Err(format!(
            "the target needs an apiVersion, a kind and a name (got apiVersion {:?}, kind {:?}, name {:?})",
            r.api_version, r.kind, r.name
        ));
    }
    if !name::is_api_version(&r.api_version) {
        return Err(format!(
            "target apiVersion {:?} is not `v1` or `GROUP/VERSION` (a DNS subdomain and a DNS label)",
            r.api_version
        ));
    }
    if !name::is_kind(&r.kind) {
        return Err(format!(
            "target kind {:?} is not a kind (a letter, then letters and digits)",
            r.kind
        ));
    }
    if let Some(ns) = &r.namespace
        && !name::is_dns_label(ns)
    {
        return Err(format!(
            "target namespace {ns:?} is not a DNS-1123 label (lowercase alphanumerics and '-', at most 63)"
        ));
    }
    name::check_object_name(&r.kind, &r.name).map_err(|e| format!("target {e}"))
}

/// A taint or untaint key, checked as Kubernetes checks taint keys (a qualified name).
fn check_taint_key(what: &str, key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err(format!("{what}: the key is empty"));
    }
    if !name::is_qualified_name(key) {
        return Err(format!(
            "{what}: key {key:?} is not a qualified name (an optional DNS-subdomain prefix and '/', then at most 63 alphanumerics, '-', '_' or '.')"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_ref() -> ObjectRef {
        ObjectRef::namespaced("v1", "Pod", "default", "web-0")
    }

    #[test]
    fn keys_name_kind_namespace_and_name() {
        assert_eq!(pod_ref().key(), "Pod/default/web-0");
        assert_eq!(ObjectRef::cluster("v1", "Node", "n1").key(), "Node/n1");
    }

    #[test]
    fn validate_maps_commands_to_verbs() {
        let patch = Command::MergePatch(Patch {
            target: pod_ref(),
            patch: "{}".into(),
        });
        assert_eq!(patch.validate().map(|a| a.verb), Ok(Verb::Patch));
        let cordon = Command::Cordon("n1".into());
        let action = cordon.validate().expect("valid");
        assert_eq!((action.verb, action.kind.as_str()), (Verb::Cordon, "Node"));
    }

    #[test]
    fn targets_are_checked_by_kubernetes_rules() {
        let evict = |ns: &str, name: &str| {
            Command::Evict(ObjectRef::namespaced("v1", "Pod", ns, name)).validate()
        };
        let e = evict("../../etc", "web-0").expect_err("namespace");
        assert!(
            e.contains("namespace") && e.contains("DNS-1123 label"),
            "{e}"
        );
        let e = evict("default", "\u{0}\n/..").expect_err("pod name");
        assert!(e.contains("Pod") && e.contains("DNS-1123 subdomain"), "{e}");
        let e = Command::Cordon("a/../../b".into())
            .validate()
            .expect_err("node");
        assert!(e.contains("Node"), "{e}");
        assert!(Command::Cordon(String::new()).validate().is_err());
        // An eviction is of a core v1 Pod only: another api-version would not be judged
        // as a pod by the disruption budgets.
        let e = Command::Evict(ObjectRef::namespaced("apps/v1", "Pod", "default", "web-0"))
            .validate()
            .expect_err("not a v1 pod");
        assert!(e.starts_with("evict: only pods (apiVersion v1"), "{e}");
        let bad_version = Command::Delete(ObjectRef::namespaced("../v1", "Pod", "default", "p"));
        assert!(
            bad_version
                .validate()
                .expect_err("apiVersion")
                .contains("apiVersion")
        );
        let bad_kind = Command::Delete(ObjectRef::namespaced("v1", "Pod/x", "default", "p"));
        assert!(bad_kind.validate().expect_err("kind").contains("kind"));
        let bad_plugin = Command::PodCommand(PodCommand {
            namespace: "default".into(),
            pod: "web-0".into(),
            plugin: "../x".into(),
            payload: "{}".into(),
        });
        assert!(
            bad_plugin
                .validate()
                .expect_err("plugin")
                .contains("plugin")
        );
        assert!(evict("default", "web-0").is_ok());
    }

    #[test]
    fn validate_rejects_malformed_payloads() {
        let bad_json = Command::MergePatch(Patch {
            target: pod_ref(),
            patch: "{".into(),
        });
        assert!(
            bad_json
                .validate()
                .expect_err("invalid")
                .contains("not valid JSON")
        );
        let not_object = Command::MergePatch(Patch {
            target: pod_ref(),
            patch: "[1]".into(),
        });
        assert!(not_object.validate().is_err());
        let bad_op = Command::JsonPatch(Patch {
            target: pod_ref(),
            patch: r#"[{"op":"frob","path":"/a"}]"#.into(),
        });
        assert!(
            bad_op
                .validate()
                .expect_err("invalid")
                .contains("operation 0")
        );
        let nameless =
            Command::Apply(r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{}}"#.into());
        assert!(nameless.validate().is_err());
        let evict_node = Command::Evict(ObjectRef::cluster("v1", "Node", "n1"));
        assert!(evict_node.validate().is_err());
    }

    #[test]
    fn to_json_parses_embedded_documents() {
        let patch = Command::MergePatch(Patch {
            target: pod_ref(),
            patch: r#"{"a":1}"#.into(),
        });
        let v = patch.to_json();
        assert_eq!(v["command"], "merge-patch");
        assert_eq!(v["patch"]["a"], 1);
        assert_eq!(v["target"]["name"], "web-0");
    }
}
