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

use bosun_host::contract::{Command, EventType, ObjectRef, Taint};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, DynamicObject, EvictParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::informer::{Informers, Kind};

/// Why a command failed at the API server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kind is not served.
    #[error("cannot resolve {kind}: {source}")]
    Resolve {
        /// The kind.
        kind: String,
        /// Discovery's error.
        #[source]
        source: kube::Error,
    },
    /// The API server refused or failed the request.
    #[error("{0}")]
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
                .map_err(|source| Error::Resolve {
                    kind: kind.to_string(),
                    source,
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
            Command::Apply(body) => {
                let object: Value =
                    serde_json::from_str(body).map_err(|e| Error::Invalid(e.to_string()))?;
                let r = ObjectRef::of(&object)
                    .ok_or_else(|| Error::Invalid("apply: unnamed object".into()))?;
                let api = self.api(&r).await?;
                let applied = api
                    .patch(
                        &r.name,
                        &PatchParams::apply(&manager).force(),
                        &Patch::Apply(&object),
                    )
                    .await?;
                Ok(format!(
                    "applied {r} (resourceVersion {})",
                    applied.metadata.resource_version.unwrap_or_default()
                ))
            }
            Command::MergePatch(p) => {
                let patch: Value =
                    serde_json::from_str(&p.patch).map_err(|e| Error::Invalid(e.to_string()))?;
                let status = merge_patch_scope(&patch)?;
                let api = self.api(&p.target).await?;
                let params = PatchParams {
                    field_manager: Some(manager),
                    ..Default::default()
                };
                let patch = Patch::Merge(&patch);
                let out = if status {
                    api.patch_status(&p.target.name, &params, &patch).await?
                } else {
                    api.patch(&p.target.name, &params, &patch).await?
                };
                Ok(patched(&p.target, status, &out))
            }
            Command::JsonPatch(p) => {
                let patch: json_patch::Patch =
                    serde_json::from_str(&p.patch).map_err(|e| Error::Invalid(e.to_string()))?;
                let status = json_patch_scope(&patch)?;
                let api = self.api(&p.target).await?;
                let params = PatchParams {
                    field_manager: Some(manager),
                    ..Default::default()
                };
                let patch = Patch::<()>::Json(patch);
                let out = if status {
                    api.patch_status(&p.target.name, &params, &patch).await?
                } else {
                    api.patch(&p.target.name, &params, &patch).await?
                };
                Ok(patched(&p.target, status, &out))
            }
            Command::Delete(r) => {
                self.api(r)
                    .await?
                    .delete(&r.name, &DeleteParams::default())
                    .await?;
                Ok(format!("deleted {r}"))
            }
            Command::Evict(r) => {
                let ns = r
                    .namespace
                    .as_deref()
                    .ok_or_else(|| Error::Invalid("evict: no namespace".into()))?;
                let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
                pods.evict(&r.name, &EvictParams::default()).await?;
                Ok(format!("evicted {r}"))
            }
            Command::Cordon(node) | Command::Uncordon(node) => {
                let unschedulable = matches!(command, Command::Cordon(_));
                let nodes: Api<Node> = Api::all(self.client.clone());
                let params = PatchParams {
                    field_manager: Some(manager),
                    ..Default::default()
                };
                nodes
                    .patch(
                        node,
                        &params,
                        &Patch::Merge(json!({ "spec": { "unschedulable": unschedulable } })),
                    )
                    .await?;
                Ok(format!(
                    "{} node {node}",
                    if unschedulable {
                        "cordoned"
                    } else {
                        "uncordoned"
                    }
                ))
            }
            Command::Taint(t) => {
                let taint = t.taint.clone();
                self.edit_taints(&t.node, &manager, move |taints| {
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
            Command::Untaint(u) => {
                let (key, effect) = (u.key.clone(), u.effect);
                self.edit_taints(&u.node, &manager, move |taints| {
                    taints.retain(|x| {
                        !(x["key"] == key.as_str()
                            && effect.is_none_or(|e| x["effect"] == e.as_k8s()))
                    });
                })
                .await?;
                Ok(format!("removed taint {} from node {}", u.key, u.node))
            }
            Command::RecordEvent(e) => {
                let ns = e
                    .regarding
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".to_owned());
                let now = bosun_host::host::clock::rfc3339(bosun_host::host::clock::Clock::now_ms(
                    &bosun_host::host::clock::System,
                ));
                let uid = self
                    .informers
                    .get(&e.regarding)
                    .and_then(|o| serde_json::from_str::<Value>(&o).ok())
                    .and_then(|o| {
                        o.pointer("/metadata/uid")
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    });
                let event: k8s_openapi::api::core::v1::Event = serde_json::from_value(json!({
                    "metadata": { "generateName": format!("{}.", e.regarding.name), "namespace": ns },
                    "involvedObject": {
                        "apiVersion": e.regarding.api_version, "kind": e.regarding.kind,
                        "namespace": e.regarding.namespace, "name": e.regarding.name, "uid": uid,
                    },
                    "reason": e.reason,
                    "message": e.message,
                    "type": match e.event_type { EventType::Normal => "Normal", EventType::Warning => "Warning" },
                    "source": { "component": manager },
                    "reportingComponent": manager,
                    "firstTimestamp": now, "lastTimestamp": now, "count": 1,
                }))
                .map_err(|err| Error::Invalid(err.to_string()))?;
                let events: Api<k8s_openapi::api::core::v1::Event> =
                    Api::namespaced(self.client.clone(), &ns);
                events.create(&PostParams::default(), &event).await?;
                Ok(format!(
                    "recorded {} event {} on {}",
                    if e.event_type == EventType::Normal {
                        "Normal"
                    } else {
                        "Warning"
                    },
                    e.reason,
                    e.regarding
                ))
            }
            Command::PodCommand(p) => Err(Error::Invalid(format!(
                "pod-command for {}/{}: no sidecar pipe in this runtime yet",
                p.namespace, p.pod
            ))),
        }
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
            let params = PatchParams {
                field_manager: Some(manager.to_owned()),
                ..Default::default()
            };
            match nodes.patch(node, &params, &Patch::Merge(patch)).await {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 => last = Some(kube::Error::Api(s)),
                Err(e) => return Err(e.into()),
            }
        }
        Err(last.map_or_else(|| Error::Invalid("taint: conflicts".into()), Error::Api))
    }
}

/// What a patch command reports once done.
fn patched(target: &ObjectRef, status: bool, out: &DynamicObject) -> String {
    format!(
        "patched {target}{} (resourceVersion {})",
        if status { " status" } else { "" },
        out.metadata.resource_version.as_deref().unwrap_or_default()
    )
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
