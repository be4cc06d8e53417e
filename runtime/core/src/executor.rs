//! The executor: the last stage of the command pipe, and the only code that changes the
//! cluster. Server-side apply with field manager `bosun/<plugin>`, merge and JSON
//! patches, delete, the Eviction API, cordon/uncordon, taints, and Events.
//!
//! A patch that touches only `status` (a merge patch whose one top-level key is `status`,
//! or a JSON patch whose every path starts with `/status`) goes to the object's `status`
//! subresource, the only place the API server accepts it (a pod's readiness-gate
//! conditions, for example); a patch mixing `status` with other fields is refused, since
//! no single request can carry it.

use std::sync::Arc;

use bosun_host::contract::{
    Command, EventCommand, EventType, NodeTaint, NodeUntaint, ObjectRef, Taint,
};
use bosun_host::host::clock::{Clock, System};
use k8s_openapi::api::core::v1::{Event, EventSource, Node, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, DynamicObject, EvictParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::informer::{Informers, Kind};

/// Why a command failed at the API server.
///
/// Callers show these with `to_string()` (the plugin's outcome, the audit trail), so each
/// message carries its cause in its text and no variant repeats it as a `source`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kind is not served.
    #[error("cannot resolve {kind}: {error}")]
    Resolve {
        /// The kind.
        kind: String,
        /// Discovery's error.
        error: kube::Error,
    },
    /// The API server refused or failed the request: its error, as it reads.
    #[error(transparent)]
    Api(#[from] kube::Error),
    /// The command cannot be expressed as a request.
    #[error("{0}")]
    Invalid(String),
}

/// Executes admitted commands against the cluster.
#[derive(Clone)]
pub struct Executor {
    client: Client,
    informers: Arc<Informers>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor").finish_non_exhaustive()
    }
}

/// How many times an optimistic read-modify-write (taints) is retried on conflict.
const CONFLICT_RETRIES: usize = 5;

impl Executor {
    /// An executor on `client`, resolving kinds through `informers`' discovery cache.
    pub fn new(client: Client, informers: Arc<Informers>) -> Self {
        Executor { client, informers }
    }

    async fn api(&self, r: &ObjectRef) -> Result<Api<DynamicObject>, Error> {
        let kind = Kind::new(&r.api_version, &r.kind);
        let (ar, namespaced) =
            self.informers
                .resolve(&kind)
                .await
                .map_err(|error| Error::Resolve {
                    kind: kind.to_string(),
                    error,
                })?;
        Ok(match (&r.namespace, namespaced) {
            (Some(ns), true) => Api::namespaced_with(self.client.clone(), ns, &ar),
            (None, true) => {
                return Err(Error::Invalid(format!(
                    "{r}: {kind} is namespaced but no namespace was given"
                )));
            }
            (_, false) => Api::all_with(self.client.clone(), &ar),
        })
    }

    /// Executes one command for `plugin`; returns a short description of what was done.
    pub async fn execute(&self, plugin: &str, command: &Command) -> Result<String, Error> {
        let manager = format!("bosun/{plugin}");
        match command {
            Command::Apply(body) => self.apply(body, &manager).await,
            Command::MergePatch(p) => {
                let (patch, status) = parse_merge_patch(&p.patch)?;
                self.patch(&p.target, &manager, status, &patch).await
            }
            Command::JsonPatch(p) => {
                let (patch, status) = parse_json_patch(&p.patch)?;
                self.patch(&p.target, &manager, status, &patch).await
            }
            Command::Delete(r) => self.delete(r).await,
            Command::Evict(r) => self.evict(r).await,
            Command::Cordon(node) => self.set_unschedulable(node, &manager, true).await,
            Command::Uncordon(node) => self.set_unschedulable(node, &manager, false).await,
            Command::Taint(t) => self.taint(t, &manager).await,
            Command::Untaint(u) => self.untaint(u, &manager).await,
            Command::RecordEvent(e) => self.record_event(e, &manager).await,
            Command::PodCommand(p) => Err(Error::Invalid(format!(
                "pod-command for {}/{}: no sidecar link in this runtime yet",
                p.namespace, p.pod
            ))),
        }
    }

    /// Server-side apply of a whole object, forcing ownership of its fields.
    async fn apply(&self, body: &str, manager: &str) -> Result<String, Error> {
        let object: Value = parse(body)?;
        let r =
            ObjectRef::of(&object).ok_or_else(|| Error::Invalid("apply: unnamed object".into()))?;
        let applied = self
            .api(&r)
            .await?
            .patch(
                &r.name,
                &PatchParams::apply(manager).force(),
                &Patch::Apply(&object),
            )
            .await?;
        Ok(format!(
            "applied {r} (resourceVersion {})",
            applied.metadata.resource_version.unwrap_or_default()
        ))
    }

    /// A merge or JSON patch of `target`, or of its `status` subresource when `status`.
    async fn patch(
        &self,
        target: &ObjectRef,
        manager: &str,
        status: bool,
        patch: &Patch<Value>,
    ) -> Result<String, Error> {
        let api = self.api(target).await?;
        let params = field_manager(manager);
        let out = if status {
            api.patch_status(&target.name, &params, patch).await?
        } else {
            api.patch(&target.name, &params, patch).await?
        };
        Ok(format!(
            "patched {target}{} (resourceVersion {})",
            if status { " status" } else { "" },
            out.metadata.resource_version.as_deref().unwrap_or_default()
        ))
    }

    /// Deletes the object, with the API server's default propagation.
    async fn delete(&self, r: &ObjectRef) -> Result<String, Error> {
        self.api(r)
            .await?
            .delete(&r.name, &DeleteParams::default())
            .await?;
        Ok(format!("deleted {r}"))
    }

    /// An eviction through the Eviction API, which honours PodDisruptionBudgets.
    async fn evict(&self, r: &ObjectRef) -> Result<String, Error> {
        let ns = r
            .namespace
            .as_deref()
            .ok_or_else(|| Error::Invalid("evict: no namespace".into()))?;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        pods.evict(&r.name, &EvictParams::default()).await?;
        Ok(format!("evicted {r}"))
    }

    /// Cordon (`true`) or uncordon (`false`) a node.
    async fn set_unschedulable(
        &self,
        node: &str,
        manager: &str,
        unschedulable: bool,
    ) -> Result<String, Error> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        nodes
            .patch(
                node,
                &field_manager(manager),
                &Patch::Merge(json!({ "spec": { "unschedulable": unschedulable } })),
            )
            .await?;
        let done = if unschedulable {
            "cordoned"
        } else {
            "uncordoned"
        };
        Ok(format!("{done} node {node}"))
    }

    /// Adds a taint, replacing one with the same key and effect.
    async fn taint(&self, t: &NodeTaint, manager: &str) -> Result<String, Error> {
        let taint = t.taint.clone();
        self.edit_taints(&t.node, manager, move |taints| {
            taints.retain(|x| {
                !(x["key"] == taint.key.as_str() && x["effect"] == taint.effect.as_k8s())
            });
            taints.push(taint_json(&taint));
        })
        .await?;
        Ok(format!(
            "tainted node {} with {}:{}",
            t.node,
            t.taint.key,
            t.taint.effect.as_k8s()
        ))
    }

    /// Removes a taint's key, with one effect or all.
    async fn untaint(&self, u: &NodeUntaint, manager: &str) -> Result<String, Error> {
        let (key, effect) = (u.key.clone(), u.effect);
        self.edit_taints(&u.node, manager, move |taints| {
            taints.retain(|x| {
                !(x["key"] == key.as_str() && effect.is_none_or(|e| x["effect"] == e.as_k8s()))
            });
        })
        .await?;
        Ok(format!("removed taint {} from node {}", u.key, u.node))
    }

    /// Creates a core/v1 Event about `e.regarding`, in its namespace (`default` for a
    /// cluster-scoped object).
    async fn record_event(&self, e: &EventCommand, manager: &str) -> Result<String, Error> {
        let ns = e
            .regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        let uid = self
            .informers
            .get(&e.regarding)
            .and_then(|o| serde_json::from_str::<Value>(&o).ok())
            .and_then(|o| {
                o.pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            });
        let event = event(e, &ns, uid, manager, now()?);
        let events: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        events.create(&PostParams::default(), &event).await?;
        Ok(format!(
            "recorded {} event {} on {}",
            event_type(e.event_type),
            e.reason,
            e.regarding
        ))
    }

    /// Read-modify-write of a node's taints, guarded by its resourceVersion.
    async fn edit_taints(
        &self,
        node: &str,
        manager: &str,
        edit: impl Fn(&mut Vec<Value>),
    ) -> Result<(), Error> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let mut last = None;
        for _ in 0..CONFLICT_RETRIES {
            let current = nodes.get(node).await?;
            let mut taints: Vec<Value> = current
                .spec
                .as_ref()
                .and_then(|s| s.taints.as_ref())
                .map(|t| {
                    t.iter()
                        .filter_map(|x| serde_json::to_value(x).ok())
                        .collect()
                })
                .unwrap_or_default();
            edit(&mut taints);
            let patch = json!({
                "metadata": { "resourceVersion": current.metadata.resource_version },
                "spec": { "taints": taints },
            });
            match nodes
                .patch(node, &field_manager(manager), &Patch::Merge(patch))
                .await
            {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 => last = Some(kube::Error::Api(s)),
                Err(e) => return Err(e.into()),
            }
        }
        Err(last.map_or_else(|| Error::Invalid("taint: conflicts".into()), Error::Api))
    }
}

/// Patch parameters naming the plugin's field manager (`bosun/<plugin>`).
fn field_manager(manager: &str) -> PatchParams {
    PatchParams {
        field_manager: Some(manager.to_owned()),
        ..Default::default()
    }
}

/// Parses a command's JSON payload.
fn parse<T: DeserializeOwned>(text: &str) -> Result<T, Error> {
    serde_json::from_str(text).map_err(|e| Error::Invalid(e.to_string()))
}

/// A merge patch command as a request, and whether it goes to the status subresource.
fn parse_merge_patch(text: &str) -> Result<(Patch<Value>, bool), Error> {
    let patch: Value = parse(text)?;
    let status = merge_patch_scope(&patch)?;
    Ok((Patch::Merge(patch), status))
}

/// A JSON patch command as a request, and whether it goes to the status subresource.
fn parse_json_patch(text: &str) -> Result<(Patch<Value>, bool), Error> {
    let patch: json_patch::Patch = parse(text)?;
    let status = json_patch_scope(&patch)?;
    Ok((Patch::Json(patch), status))
}

/// The refusal for a patch that touches `status` and other fields at once.
fn mixed(kind: &str) -> Error {
    Error::Invalid(format!(
        "{kind} touches status and other fields: the status subresource takes status alone, \
         split it into two commands (one for status, one for the rest)"
    ))
}

/// Whether a merge patch goes to the `status` subresource: its only top-level key is
/// `status`. Refuses one that mixes `status` with other keys.
fn merge_patch_scope(patch: &Value) -> Result<bool, Error> {
    let Some(keys) = patch.as_object() else {
        return Ok(false);
    };
    match (keys.contains_key("status"), keys.len()) {
        (false, _) => Ok(false),
        (true, 1) => Ok(true),
        (true, _) => Err(mixed("merge patch")),
    }
}

/// Whether a JSON patch goes to the `status` subresource: every operation that changes
/// something has its `path` (and `from`, for move and copy) at `/status` or below it.
/// Refuses one that changes both. `test` operations only guard: the API server applies a
/// patch to the whole object, status included, either way, so a patch of the main
/// resource may test the status (apply images only if a condition is False) and the
/// reverse; a patch of tests alone goes to the main resource.
fn json_patch_scope(patch: &json_patch::Patch) -> Result<bool, Error> {
    use json_patch::PatchOperation as Op;
    let under_status = |p: &str| p == "/status" || p.starts_with("/status/");
    let mut paths = Vec::new();
    for op in &patch.0 {
        match op {
            Op::Add(o) => paths.push(o.path.to_string()),
            Op::Remove(o) => paths.push(o.path.to_string()),
            Op::Replace(o) => paths.push(o.path.to_string()),
            Op::Test(_) => {}
            Op::Move(o) => paths.extend([o.path.to_string(), o.from.to_string()]),
            Op::Copy(o) => paths.extend([o.path.to_string(), o.from.to_string()]),
        }
    }
    let status = paths.iter().filter(|p| under_status(p)).count();
    if status == 0 {
        Ok(false)
    } else if status == paths.len() {
        Ok(true)
    } else {
        Err(mixed("json patch"))
    }
}

fn taint_json(t: &Taint) -> Value {
    let mut v = json!({ "key": t.key, "effect": t.effect.as_k8s() });
    if let Some(value) = &t.value {
        v["value"] = json!(value);
    }
    v
}

/// The current time as Kubernetes stores it in an Event (to the second).
fn now() -> Result<Time, Error> {
    let seconds = i64::try_from(System.now_ms() / 1000).unwrap_or(i64::MAX);
    Timestamp::from_second(seconds)
        .map(Time)
        .map_err(|e| Error::Invalid(e.to_string()))
}

/// `Normal` or `Warning`, as Kubernetes spells an event's type.
fn event_type(t: EventType) -> &'static str {
    match t {
        EventType::Normal => "Normal",
        EventType::Warning => "Warning",
    }
}

/// The core/v1 Event for `e`, created in `namespace` by `manager` at `now`. `uid` is the
/// cached object's, when it is cached.
fn event(
    e: &EventCommand,
    namespace: &str,
    uid: Option<String>,
    manager: &str,
    now: Time,
) -> Event {
    let r = &e.regarding;
    Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}.", r.name)),
            namespace: Some(namespace.to_owned()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some(r.api_version.clone()),
            kind: Some(r.kind.clone()),
            namespace: r.namespace.clone(),
            name: Some(r.name.clone()),
            uid,
            ..ObjectReference::default()
        },
        reason: Some(e.reason.clone()),
        message: Some(e.message.clone()),
        type_: Some(event_type(e.event_type).to_owned()),
        source: Some(EventSource {
            component: Some(manager.to_owned()),
            host: None,
        }),
        reporting_component: Some(manager.to_owned()),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(1),
        ..Event::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bosun_host::contract::TaintEffect;

    fn json_ops(ops: Value) -> json_patch::Patch {
        serde_json::from_value(ops).expect("a json patch")
    }

    #[test]
    fn merge_patches_of_status_alone_go_to_the_subresource() {
        let status = json!({"status": {"conditions": []}});
        assert!(merge_patch_scope(&status).expect("status only"));
        let meta = json!({"metadata": {"labels": {"a": "b"}}});
        assert!(!merge_patch_scope(&meta).expect("no status"));
        let mixed = json!({"metadata": {"labels": {"a": "b"}}, "status": {}});
        let err = merge_patch_scope(&mixed).expect_err("mixed");
        assert!(
            err.to_string().contains("split it into two commands"),
            "{err}"
        );
    }

    #[test]
    fn json_patches_of_status_alone_go_to_the_subresource() {
        let status = json_ops(json!([
            {"op": "test", "path": "/status/conditions/0/type", "value": "Ready"},
            {"op": "replace", "path": "/status/conditions/0/status", "value": "False"},
        ]));
        assert!(json_patch_scope(&status).expect("status only"));
        let spec = json_ops(json!([{"op": "replace", "path": "/spec/replicas", "value": 2}]));
        assert!(!json_patch_scope(&spec).expect("no status"));
        // `/statusx` is not under `/status`.
        let lookalike = json_ops(json!([{"op": "add", "path": "/statusx", "value": 1}]));
        assert!(!json_patch_scope(&lookalike).expect("no status"));
        let mixed = json_ops(json!([
            {"op": "replace", "path": "/status/phase", "value": "Running"},
            {"op": "replace", "path": "/metadata/labels/a", "value": "b"},
        ]));
        assert!(matches!(json_patch_scope(&mixed), Err(Error::Invalid(_))));
        let moved = json_ops(json!([{"op": "move", "from": "/spec/x", "path": "/status/x"}]));
        assert!(json_patch_scope(&moved).is_err());
        // Tests guard without choosing: images patched only while a condition is False.
        let guarded = json_ops(json!([
            {"op": "test", "path": "/status/conditions/2/status", "value": "False"},
            {"op": "replace", "path": "/spec/containers/0/image", "value": "app:v2"},
        ]));
        assert!(!json_patch_scope(&guarded).expect("main resource"));
        let status_guarded = json_ops(json!([
            {"op": "test", "path": "/metadata/labels/a", "value": "b"},
            {"op": "replace", "path": "/status/phase", "value": "Running"},
        ]));
        assert!(json_patch_scope(&status_guarded).expect("status"));
    }

    /// An executor on a fresh embedded cluster with one simulated node, and a running pod.
    async fn executor_with_pod() -> (bosun_cluster::Cluster, Executor, Api<Pod>) {
        let cluster = bosun_cluster::start(bosun_cluster::Config {
            nodes: 1,
            ..Default::default()
        })
        .await
        .expect("cluster");
        let client = cluster.client().await.expect("client");
        let (informers, _changes) = Informers::new(client.clone());
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0"},
            "spec": {"containers": [{"name": "app", "image": "app:v1"}],
                     "readinessGates": [{"conditionType": "example.com/Gate"}]},
        }))
        .expect("pod");
        pods.create(&PostParams::default(), &pod)
            .await
            .expect("create");
        (cluster, Executor::new(client, informers), pods)
    }

    fn pod_ref() -> ObjectRef {
        ObjectRef {
            api_version: "v1".into(),
            kind: "Pod".into(),
            namespace: Some("default".into()),
            name: "web-0".into(),
        }
    }

    fn condition(pod: &Pod, kind: &str) -> Option<String> {
        pod.status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == kind)
            .map(|c| c.status.clone())
    }

    #[tokio::test]
    async fn status_patches_reach_the_status_subresource() {
        let (cluster, executor, pods) = executor_with_pod().await;
        // The main resource ignores status: only the subresource can set a condition.
        let merge = Command::MergePatch(bosun_host::contract::Patch {
            target: pod_ref(),
            patch: json!({"status": {"conditions": [
                {"type": "example.com/Gate", "status": "False"}]}})
            .to_string(),
        });
        let done = executor.execute("t", &merge).await.expect("merge status");
        assert!(
            done.contains("patched") && done.contains("status"),
            "{done}"
        );
        let pod = pods.get("web-0").await.expect("get");
        assert_eq!(
            condition(&pod, "example.com/Gate").as_deref(),
            Some("False")
        );

        let json = Command::JsonPatch(bosun_host::contract::Patch {
            target: pod_ref(),
            patch: json!([
                {"op": "test", "path": "/status/conditions/0/type", "value": "example.com/Gate"},
                {"op": "replace", "path": "/status/conditions/0/status", "value": "True"},
            ])
            .to_string(),
        });
        executor.execute("t", &json).await.expect("json status");
        let pod = pods.get("web-0").await.expect("get");
        assert_eq!(condition(&pod, "example.com/Gate").as_deref(), Some("True"));

        let mixed = Command::MergePatch(bosun_host::contract::Patch {
            target: pod_ref(),
            patch: json!({"metadata": {"labels": {"a": "b"}}, "status": {"phase": "Failed"}})
                .to_string(),
        });
        let err = executor.execute("t", &mixed).await.expect_err("mixed");
        assert!(matches!(err, Error::Invalid(_)), "{err}");
        let pod = pods.get("web-0").await.expect("get");
        assert!(!pod.metadata.labels.unwrap_or_default().contains_key("a"));
        cluster.shutdown().await;
    }

    #[test]
    fn events_are_built_as_the_json_form_was() {
        let e = EventCommand {
            regarding: ObjectRef::namespaced("v1", "Pod", "prod", "web-0"),
            event_type: EventType::Warning,
            reason: "InPlaceUpdated".into(),
            message: "image app:v2".into(),
        };
        let now = Time(Timestamp::from_second(1_767_225_600).expect("a time"));
        let built = event(&e, "prod", Some("u-1".into()), "bosun/release", now);
        // The Event the executor used to write as JSON and deserialise.
        let stamp = "2026-01-01T00:00:00Z";
        let expected: Event = serde_json::from_value(json!({
            "metadata": { "generateName": "web-0.", "namespace": "prod" },
            "involvedObject": {
                "apiVersion": "v1", "kind": "Pod", "namespace": "prod", "name": "web-0",
                "uid": "u-1",
            },
            "reason": "InPlaceUpdated",
            "message": "image app:v2",
            "type": "Warning",
            "source": { "component": "bosun/release" },
            "reportingComponent": "bosun/release",
            "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
        }))
        .expect("an event");
        assert_eq!(built, expected);
        // A cluster-scoped object: the event lives in `default`, the reference has no
        // namespace, and an uncached object no uid.
        let node = EventCommand {
            regarding: ObjectRef::cluster("v1", "Node", "n1"),
            ..e
        };
        let built = event(
            &node,
            "default",
            None,
            "bosun/r",
            built.last_timestamp.expect("set"),
        );
        assert_eq!(built.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(built.involved_object.namespace, None);
        assert_eq!(built.involved_object.uid, None);
    }

    #[test]
    fn api_errors_show_the_api_servers_message_once() {
        let status: kube::core::Status = serde_json::from_value(json!({
            "status": "Failure", "code": 404, "reason": "NotFound",
            "message": "nodes \"n1\" not found",
        }))
        .expect("a status");
        let cause = kube::Error::Api(Box::new(status));
        let shown = cause.to_string();
        let err = Error::from(cause);
        assert_eq!(err.to_string(), shown);
        let chain: Vec<String> =
            std::iter::successors(Some(&err as &dyn std::error::Error), |e| e.source())
                .map(ToString::to_string)
                .collect();
        assert_eq!(
            chain.iter().filter(|m| **m == shown).count(),
            1,
            "{chain:?}"
        );
    }

    #[test]
    fn taints_serialise_like_kubernetes() {
        let t = Taint {
            key: "bosun.dev/repair".into(),
            value: None,
            effect: TaintEffect::NoSchedule,
        };
        assert_eq!(
            taint_json(&t),
            json!({"key": "bosun.dev/repair", "effect": "NoSchedule"})
        );
    }
}
