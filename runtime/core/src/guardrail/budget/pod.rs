//! What the budgets read of a cached pod: its readiness, its controller, the images its
//! containers run.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Deserialize;

use super::View;

/// The cached pods of a namespace as [`PodDoc`]s, each cached object parsed once: the
/// informer cache shares an unchanged object's text (the same `Arc`), so a budget checking
/// thousands of commands against a namespace of thousands of pods parses only the pods
/// that changed in between.
#[derive(Debug, Default)]
pub(super) struct Parsed {
    /// By the address of the cached text, which the entry keeps alive.
    memo: Mutex<HashMap<usize, Memo>>,
}

/// A cached pod's text and what it parsed to.
type Memo = (Arc<str>, Arc<PodDoc>);

/// Entries kept beyond twice the last listing before the memo is trimmed to it.
const SLACK: usize = 1024;

impl Parsed {
    /// The cached pods of `namespace` (those that parse).
    pub(super) fn pods(&self, view: &dyn View, namespace: &str) -> Vec<Arc<PodDoc>> {
        let list = view.list_namespaced("v1", "Pod", namespace);
        let mut memo = self.memo.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::with_capacity(list.len());
        let mut seen = Vec::with_capacity(list.len());
        for json in list {
            let key = Arc::as_ptr(&json).cast::<u8>() as usize;
            seen.push(key);
            if let Some((_, doc)) = memo.get(&key) {
                out.push(doc.clone());
            } else if let Ok(doc) = serde_json::from_str::<PodDoc>(&json) {
                let doc = Arc::new(doc);
                memo.insert(key, (json, doc.clone()));
                out.push(doc);
            }
        }
        if memo.len() > 2 * seen.len() + SLACK {
            let seen: std::collections::HashSet<usize> = seen.into_iter().collect();
            memo.retain(|k, _| seen.contains(k));
        }
        out
    }
}

/// The fields of a cached pod the budgets need.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PodDoc {
    pub(super) metadata: PodMeta,
    #[serde(default)]
    status: PodStatus,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PodMeta {
    pub(super) name: String,
    #[serde(default)]
    pub(super) deletion_timestamp: Option<serde_json::Value>,
    #[serde(default)]
    owner_references: Vec<OwnerReference>,
    #[serde(default)]
    pub(super) labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct OwnerReference {
    pub(super) api_version: String,
    pub(super) kind: String,
    pub(super) name: String,
    pub(super) uid: String,
    #[serde(default)]
    pub(super) controller: bool,
}

#[derive(Debug, Deserialize, Default)]
struct PodStatus {
    #[serde(default)]
    conditions: Vec<Condition>,
}

#[derive(Debug, Deserialize)]
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
