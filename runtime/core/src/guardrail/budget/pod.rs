//! What the budgets read of a cached pod: its readiness, its controller, the images its
//! containers run.

use serde::Deserialize;

/// The fields of a cached pod the budgets need.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PodDoc {
    pub(super) metadata: PodMeta,
    #[serde(default)]
    status: PodStatus,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PodMeta {
    pub(super) name: String,
    #[serde(default)]
    pub(super) deletion_timestamp: Option<serde_json::Value>,
    #[serde(default)]
    owner_references: Vec<OwnerReference>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct OwnerReference {
    pub(super) api_version: String,
    pub(super) kind: String,
    pub(super) name: String,
    pub(super) uid: String,
    #[serde(default)]
    controller: bool,
}

#[derive(Deserialize, Default)]
struct PodStatus {
    #[serde(default)]
    conditions: Vec<Condition>,
}

#[derive(Deserialize)]
struct Condition {
    #[serde(rename = "type")]
    type_: String,
    status: String,
}

impl PodDoc {
    /// The owner reference marked `controller`: the pod's workload.
    pub(super) fn controller(&self) -> Option<&OwnerReference> {
        self.metadata.owner_references.iter().find(|o| o.controller)
    }

    /// Whether its `Ready` condition is True.
    pub(super) fn ready(&self) -> bool {
        self.status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    }
}

/// The (name, image) of each container status of a pod.
pub(super) fn status_images(pod: &serde_json::Value) -> Vec<(String, String)> {
    pod.pointer("/status/containerStatuses")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            let s = |k: &str| c.get(k).and_then(|v| v.as_str()).unwrap_or("").to_owned();
            (s("name"), s("image"))
        })
        .collect()
}

/// Image references equal up to what container runtimes add when they report them
/// (`docker.io/library/nginx:1.28` for `nginx:1.28`).
pub(super) fn same_image(a: &str, b: &str) -> bool {
    fn short(i: &str) -> &str {
        let i = i.strip_prefix("docker.io/").unwrap_or(i);
        i.strip_prefix("library/").unwrap_or(i)
    }
    short(a) == short(b)
}
