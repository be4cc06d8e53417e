//! The executor: the last stage of the command pipe, and the only code that changes the
//! cluster. Server-side apply with field manager `bosun/<plugin>`, merge and JSON
//! patches, delete, the Eviction API, cordon/uncordon, taints, and Events.

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
                let api = self.api(&p.target).await?;
                let out = api
                    .patch(
                        &p.target.name,
                        &PatchParams {
                            field_manager: Some(manager),
                            ..Default::default()
                        },
                        &Patch::Merge(&patch),
                    )
                    .await?;
                Ok(format!(
                    "patched {} (resourceVersion {})",
                    p.target,
                    out.metadata.resource_version.unwrap_or_default()
                ))
            }
            Command::JsonPatch(p) => {
                let patch: json_patch::Patch =
                    serde_json::from_str(&p.patch).map_err(|e| Error::Invalid(e.to_string()))?;
                let api = self.api(&p.target).await?;
                let params = PatchParams {
                    field_manager: Some(manager),
                    ..Default::default()
                };
                let out = api
                    .patch(&p.target.name, &params, &Patch::<()>::Json(patch))
                    .await?;
                Ok(format!(
                    "patched {} (resourceVersion {})",
                    p.target,
                    out.metadata.resource_version.unwrap_or_default()
                ))
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
