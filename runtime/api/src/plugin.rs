//! The `Plugin` custom resource (group `bosun.dev`, version `v1alpha1`): how a cluster
//! admin declares a plugin, its source, its grants and how a new revision rolls out.
//! The CRD YAML under `deploy/crds/` is generated from these types and a test fails
//! when it is stale (`BOSUN_UPDATE_CRDS=1 cargo test -p bosun-api --test crd` rewrites it).
//! The runtime's `rollout` module turns these objects into serving revisions; the CLI's
//! `bosun plugin push|promote|rollback` writes them.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::World;

/// A plugin: where its component comes from, what it is granted, how it rolls out.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "bosun.dev",
    version = "v1alpha1",
    kind = "Plugin",
    namespaced,
    status = "PluginStatus",
    shortname = "bp",
    printcolumn = r#"{"name":"World","type":"string","jsonPath":".spec.world"}"#,
    printcolumn = r#"{"name":"Stable","type":"string","jsonPath":".status.stableRevision"}"#,
    printcolumn = r#"{"name":"Canary","type":"string","jsonPath":".status.canaryRevision"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct PluginSpec {
    /// Where the component's bytes come from.
    pub source: Source,
    /// JSON handed to the plugin's `init`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_json")]
    pub config: Option<serde_json::Value>,
    /// The WIT world the component implements.
    pub world: World,
    /// What the plugin is granted; it must cover what its metadata asks, or it does not start.
    #[serde(default)]
    pub permissions: Vec<Permission>,
    /// Pod-agent plugins: the pods whose sidecars run it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_selector: Option<LabelSelector>,
    /// Per-call limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// How a new revision replaces the stable one.
    #[serde(default)]
    pub rollout: Rollout,
    /// Audit commands without executing them.
    #[serde(default)]
    pub dry_run: bool,
    /// Admission plugins: which API requests reach the plugin through the runtime's
    /// webhook, and what the API server does when it cannot answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admission: Option<Webhook>,
}

/// Where a component comes from: exactly one of the fields.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Source {
    /// An http(s) URL; the sha256 is required and checked.
    Url {
        /// The URL.
        url: String,
        /// The sha256 of the bytes: `sha256:<64 hex digits>` (or the 64 digits alone).
        sha256: String,
    },
    /// A key of a ConfigMap in the Plugin's namespace (binaryData), for small components.
    ConfigMap {
        /// The ConfigMap.
        name: String,
        /// The key.
        key: String,
        /// The sha256 of the bytes, `sha256:<64 hex digits>` as `bosun plugin push` writes
        /// it (or the 64 digits alone); required, and checked before anything loads them.
        sha256: String,
    },
    /// An OCI artifact reference (`registry/repo@sha256:...`).
    Oci {
        /// The reference.
        reference: String,
    },
    /// A file in the runtime's plugins folder (embedded mode: how `bosun up` publishes
    /// the folder's plugins); refused by a runtime without one, or outside it.
    File {
        /// The path, absolute.
        path: String,
    },
}

impl Source {
    /// The field this kind of source is written under (`url`, `configMap`, `oci`, `file`).
    pub fn field(&self) -> &'static str {
        match self {
            Source::Url { .. } => "url",
            Source::ConfigMap { .. } => "configMap",
            Source::Oci { .. } => "oci",
            Source::File { .. } => "file",
        }
    }

    /// A JSON merge patch of a Plugin that sets this source and removes every other kind.
    /// Whoever sets a source (a push, the plugins folder) sends it first and so takes the
    /// source over: the schema allows one, and a server-side apply alone would leave
    /// another field manager's kind beside it. The object is valid before and after.
    pub fn take_over_patch(&self) -> serde_json::Value {
        let mut source: serde_json::Map<String, serde_json::Value> = SOURCE_FIELDS
            .iter()
            .map(|f| ((*f).to_owned(), serde_json::Value::Null))
            .collect();
        if let Ok(serde_json::Value::Object(mine)) = serde_json::to_value(self) {
            source.extend(mine);
        }
        serde_json::json!({ "spec": { "source": source } })
    }
}

/// The 64 lowercase hex digits of a full sha256 written `sha256:<hex>` or as bare hex
/// (either case); `None` when it is not one (too short, not hex).
pub fn sha256_hex(text: &str) -> Option<String> {
    let trimmed = text.trim();
    let hex = trimmed.strip_prefix("sha256:").unwrap_or(trimmed);
    (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

/// Every kind of source, as written in `spec.source`.
const SOURCE_FIELDS: [&str; 4] = ["url", "configMap", "oci", "file"];

/// A Plugin object that does not read as one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct Unreadable {
    /// Where in the object (`spec.source`, `.` for the whole object).
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

/// Reads a Plugin object, naming the field that is wrong when it does not read.
pub fn parse(object: &serde_json::Value) -> Result<Plugin, Unreadable> {
    serde_path_to_error::deserialize(object).map_err(|e| Unreadable {
        path: e.path().to_string(),
        message: e.inner().to_string(),
    })
}

/// Verbs granted on a kind.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Permission {
    /// `v1`, `apps/v1`, ...
    pub api_version: String,
    /// A kind, or `*`.
    pub kind: String,
    /// read, apply, patch, delete, evict, cordon, record-event, pod-command.
    pub verbs: Vec<String>,
}

/// A label selector (`matchLabels` only, as pod-agent targeting needs).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Labels a pod must carry.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

/// Per-call limits.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// Deadline of one call, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// Memory one instance may use, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Reconciles in flight at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
}

/// How a new revision rolls out.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// direct, canary or shadow.
    #[serde(default)]
    pub strategy: Strategy,
    /// Canary settings (strategy canary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
}

/// Rollout strategies.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// The new revision replaces the stable one at once.
    #[default]
    Direct,
    /// The new revision serves a share of keys, judged by its error rates.
    Canary,
    /// The new revision sees the same events; its commands are compared, never executed.
    Shadow,
}

/// A canary: which keys it serves and how it is judged.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Canary {
    /// Percentage of keys (by a stable hash) served by the canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<u8>,
    /// Or: objects matching these labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Promotion and rollback criteria.
    #[serde(default)]
    pub analysis: Analysis,
    /// Promote automatically after the window, or wait for `bosun plugin promote`.
    #[serde(default)]
    pub manual_promotion: bool,
}

/// When a canary is rolled back (any rate over its maximum) or promoted.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Analysis {
    /// Highest share of reconciles returning an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_rate: Option<f64>,
    /// Highest share of reconciles that trap or time out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_trap_rate: Option<f64>,
    /// Highest share of commands refused by the guardrails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_refused_rate: Option<f64>,
    /// Reconciles needed before judging.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_samples: Option<u64>,
    /// How long the canary is watched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<u64>,
}

/// What the runtime reports about a Plugin.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PluginStatus {
    /// Digest of the stable revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_revision: Option<String>,
    /// Digest of the canary revision, while one runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_revision: Option<String>,
    /// Share of keys the canary serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_share: Option<u8>,
    /// Counters per revision digest.
    #[serde(default)]
    pub revisions: BTreeMap<String, RevisionCounters>,
    /// Ready, Progressing, Degraded.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Last revisions, newest last.
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
}

/// Counters of one revision.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevisionCounters {
    /// Reconciles.
    pub reconciles: u64,
    /// Errors returned.
    pub errors: u64,
    /// Traps and timeouts.
    pub traps: u64,
    /// Commands refused.
    pub refused: u64,
}

/// A status condition, as Kubernetes writes them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Ready, Progressing or Degraded.
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    /// UpperCamelCase reason.
    pub reason: String,
    /// Human-readable detail.
    pub message: String,
    /// RFC 3339.
    pub last_transition_time: String,
}

/// One entry of a Plugin's history.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// Revision digest.
    pub digest: String,
    /// RFC 3339.
    pub time: String,
    /// serving, replaced, failed, rolled-back, promoted.
    pub outcome: String,
    /// Why, when it failed or was rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// How the API server calls an admission plugin: the plugin's webhook in the runtime's
/// Mutating- or ValidatingWebhookConfiguration (`admissionregistration.k8s.io/v1`; the
/// fields keep their names and meanings there). Every field has a default.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    /// A mutating webhook (its answers may carry a JSON patch); validating when false.
    #[serde(default)]
    pub mutating: bool,
    /// Which requests: default CREATE and UPDATE of the kinds the plugin's metadata
    /// subscribes to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<WebhookRule>,
    /// Namespaces whose requests are sent (their labels); the runtime's own namespace and
    /// `kube-system` are never sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<FullLabelSelector>,
    /// Objects whose requests are sent (their labels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_selector: Option<FullLabelSelector>,
    /// `Ignore` (the default: the request proceeds when the plugin cannot answer) or
    /// `Fail` (it is refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_policy: Option<FailurePolicy>,
    /// How long the API server waits, 1 to 30 seconds; default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 30))]
    pub timeout_seconds: Option<u32>,
    /// `Never` (default) or `IfNeeded`: call the plugin again when a later mutating
    /// webhook changed the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reinvocation_policy: Option<ReinvocationPolicy>,
}

/// Which requests a webhook is sent (`admissionregistration.k8s.io/v1` RuleWithOperations).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookRule {
    /// CREATE, UPDATE, DELETE, CONNECT or `*`.
    pub operations: Vec<String>,
    /// API groups (`""` is the core group), or `*`.
    pub api_groups: Vec<String>,
    /// API versions, or `*`.
    pub api_versions: Vec<String>,
    /// Resources (plural, `pods/status` for a subresource), or `*`.
    pub resources: Vec<String>,
    /// `Cluster`, `Namespaced` or `*` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// A label selector with expressions (`metav1.LabelSelector`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FullLabelSelector {
    /// Labels that must be present with these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Requirements (all must hold).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelRequirement>,
}

/// One requirement of a [`FullLabelSelector`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabelRequirement {
    /// The label key.
    pub key: String,
    /// In, NotIn, Exists or DoesNotExist.
    pub operator: String,
    /// Values for In and NotIn.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// What the API server does when a webhook cannot answer.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum FailurePolicy {
    /// The request proceeds.
    Ignore,
    /// The request is refused.
    Fail,
}

/// Whether a mutating webhook is called again after later webhooks changed the object.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ReinvocationPolicy {
    /// Once.
    Never,
    /// Again when needed.
    IfNeeded,
}

fn any_json(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true })
}

/// Removes the `format`s the API server does not know (schemars writes `uint64` for a
/// `u64`; apiextensions-apiserver warns "unrecognized format" for each). The bounds
/// stay: `minimum: 0` says what `uint` said.
pub(crate) fn drop_unknown_formats(v: &mut serde_json::Value) {
    const KNOWN: [&str; 8] = [
        "int32",
        "int64",
        "float",
        "double",
        "byte",
        "date",
        "date-time",
        "uuid",
    ];
    match v {
        serde_json::Value::Object(m) => {
            if m.get("format")
                .and_then(serde_json::Value::as_str)
                .is_some_and(|f| {
                    f.starts_with("uint") || (f.starts_with("int") && !KNOWN.contains(&f))
                })
            {
                m.remove("format");
            }
            m.values_mut().for_each(drop_unknown_formats);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(drop_unknown_formats),
        _ => {}
    }
}

/// The CRD as YAML, as checked in under `deploy/crds/plugin.yaml`.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    use kube::CustomResourceExt;
    let mut crd = serde_json::to_value(Plugin::crd()).unwrap_or_default();
    drop_unknown_formats(&mut crd);
    let body = serde_yaml::to_string(&crd)?;
    Ok(format!(
        "# Generated from runtime/api/src/plugin.rs — do not edit; see that file.\n{body}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_takes_over_from_the_other_kinds() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let s = Source::ConfigMap {
            name: "cm".into(),
            key: "plugin.wasm".into(),
            sha256: digest.clone(),
        };
        assert_eq!(
            s.take_over_patch(),
            serde_json::json!({"spec": {"source": {"url": null, "oci": null, "file": null,
                "configMap": {"name": "cm", "key": "plugin.wasm", "sha256": digest}}}})
        );
    }

    #[test]
    fn a_sha256_is_64_hex_digits_with_or_without_its_prefix() {
        let hex = "AB".repeat(32);
        assert_eq!(sha256_hex(&format!("sha256:{hex}")), Some("ab".repeat(32)));
        assert_eq!(sha256_hex(&hex), Some("ab".repeat(32)));
        for bad in [
            "",
            "sha256:",
            "abc",
            &hex[..63],
            &format!("{hex}0"),
            &"g".repeat(64),
        ] {
            assert_eq!(sha256_hex(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_configmap_source_without_its_sha256_does_not_read() {
        let old = serde_json::json!({
            "apiVersion": "bosun.dev/v1alpha1", "kind": "Plugin",
            "metadata": {"name": "p"},
            "spec": {"source": {"configMap": {"name": "c", "key": "k"}}, "world": "controller"}
        });
        let e = parse(&old).expect_err("no sha256");
        assert!(e.to_string().contains("sha256"), "{e}");
    }

    #[test]
    fn an_unreadable_plugin_names_the_field() {
        let two_sources = serde_json::json!({
            "apiVersion": "bosun.dev/v1alpha1", "kind": "Plugin",
            "metadata": {"name": "p"},
            "spec": {"source": {"file": {"path": "/x.wasm"}, "configMap": {"name": "c", "key": "k", "sha256": "sha256:0"}},
                     "world": "controller"}
        });
        let e = parse(&two_sources).expect_err("two sources");
        assert_eq!(e.path, "spec.source", "{e}");
        let good = serde_json::json!({
            "apiVersion": "bosun.dev/v1alpha1", "kind": "Plugin",
            "metadata": {"name": "p"},
            "spec": {"source": {"file": {"path": "/x.wasm"}}, "world": "controller"}
        });
        assert!(parse(&good).is_ok());
    }
}
