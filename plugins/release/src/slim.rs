//! The parts of a pod the release reads. A reconcile lists every pod of its StatefulSet on
//! every pass; deserializing them into full JSON trees (every status field, every
//! timestamp) was most of its cost. These structs skip what the release never reads and
//! are turned into a small [`Value`] with the same paths as the pod, so the rest of the
//! plugin reads pods one way, whether they come from here or from a test.

use bosun_sdk::{Context, Error};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Deserialize, Serialize)]
struct Pod {
    metadata: Meta,
    #[serde(default)]
    spec: Spec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<Status>,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    #[serde(default)]
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    labels: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    annotations: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    owner_references: Vec<Owner>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    deletion_timestamp: Option<String>,
}

#[derive(Deserialize, Serialize)]
struct Owner {
    #[serde(default)]
    uid: String,
}

#[derive(Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    #[serde(default)]
    containers: Vec<Container>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    readiness_gates: Vec<Gate>,
}

#[derive(Deserialize, Serialize)]
struct Container {
    #[serde(default)]
    name: String,
    #[serde(default)]
    image: String,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct Gate {
    #[serde(default)]
    condition_type: String,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    /// Kept whole: the readiness-gate patch tests the list exactly as the cache shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    conditions: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    container_statuses: Option<Vec<ContainerStatus>>,
}

#[derive(Deserialize, Serialize)]
struct ContainerStatus {
    #[serde(default)]
    name: String,
    #[serde(default)]
    image: String,
    #[serde(default, rename = "imageID")]
    image_id: String,
    #[serde(default)]
    ready: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    state: Option<Value>,
}

/// The pods of namespace `ns` matching `selector`, with only what the release reads.
pub(crate) fn pods(ctx: &Context, ns: &str, selector: &str) -> Result<Vec<Value>, Error> {
    ctx.list_as::<Pod>("v1", "Pod", Some(ns), Some(selector))?
        .into_iter()
        .map(|p| serde_json::to_value(p).map_err(Error::from))
        .collect()
}
