//! The kinds the server knows: built-in types and those CustomResourceDefinitions add.

use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One served resource (one group/version/plural).
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceType {
    /// API group, "" for core.
    pub group: String,
    /// API version within the group.
    pub version: String,
    /// Kind, e.g. `Pod`.
    pub kind: String,
    /// Plural resource name, e.g. `pods`.
    pub plural: String,
    /// Singular resource name, e.g. `pod`.
    pub singular: String,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Whether a `/status` subresource exists (status changes only through it, and
    /// `metadata.generation` counts spec changes).
    pub status: bool,
    /// Whether a `/scale` subresource exists.
    pub scale: bool,
    /// kubectl short names.
    pub short_names: Vec<String>,
    /// openAPIV3Schema of a custom resource version: pruning, defaults and validation.
    pub schema: Option<Value>,
    /// Whether a CustomResourceDefinition defines it.
    pub custom: bool,
    /// A custom resource version's `additionalPrinterColumns` (table columns after Name).
    pub printer_columns: Vec<Value>,
}

impl ResourceType {
    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The storage key: all versions of one resource share their objects.
    pub fn storage_key(&self) -> String {
        format!("{}/{}", self.group, self.plural)
    }

    /// `plural.group` (or `plural`) as error messages name it.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

/// `(group, version, kind, plural, namespaced, status, scale, short names)`.
type Builtin = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    bool,
    bool,
    &'static [&'static str],
);

const BUILTINS: &[Builtin] = &[
    (
        "",
        "v1",
        "Namespace",
        "namespaces",
        false,
        true,
        false,
        &["ns"],
    ),
    ("", "v1", "Node", "nodes", false, true, false, &["no"]),
    ("", "v1", "Pod", "pods", true, true, false, &["po"]),
    (
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        true,
        false,
        false,
        &["cm"],
    ),
    ("", "v1", "Secret", "secrets", true, false, false, &[]),
    ("", "v1", "Event", "events", true, false, false, &["ev"]),
    ("", "v1", "Service", "services", true, true, false, &["svc"]),
    (
        "",
        "v1",
        "Endpoints",
        "endpoints",
        true,
        false,
        false,
        &["ep"],
    ),
    (
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        true,
        false,
        false,
        &["sa"],
    ),
    (
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        true,
        true,
        true,
        &["sts"],
    ),
    (
        "apps",
        "v1",
        "Deployment",
        "deployments",
        true,
        true,
        true,
        &["deploy"],
    ),
    (
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        true,
        true,
        true,
        &["rs"],
    ),
    (
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        true,
        true,
        false,
        &["ds"],
    ),
    ("batch", "v1", "Job", "jobs", true, true, false, &[]),
    (
        "batch",
        "v1",
        "CronJob",
        "cronjobs",
        true,
        true,
        false,
        &["cj"],
    ),
    (
        "apps",
        "v1",
        "ControllerRevision",
        "controllerrevisions",
        true,
        false,
        false,
        &[],
    ),
    (
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        true,
        true,
        false,
        &["pdb"],
    ),
    (
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        true,
        false,
        false,
        &[],
    ),
    (
        "events.k8s.io",
        "v1",
        "Event",
        "events",
        true,
        false,
        false,
        &["ev"],
    ),
    (
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
        true,
        false,
        &["crd", "crds"],
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        false,
        false,
        false,
        &[],
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        false,
        false,
        false,
        &[],
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        true,
        false,
        false,
        &[],
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        true,
        false,
        false,
        &[],
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        false,
        false,
        false,
        &[],
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
        false,
        false,
        &[],
    ),
];

/// All served resources, keyed by `(group, version, plural)`.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    types: BTreeMap<(String, String, String), Arc<ResourceType>>,
}

impl Registry {
    /// The built-in types.
    pub fn builtin() -> Self {
        let mut r = Self::default();
        for (group, version, kind, plural, namespaced, status, scale, short) in BUILTINS {
            r.insert(ResourceType {
                group: (*group).into(),
                version: (*version).into(),
                kind: (*kind).into(),
                plural: (*plural).into(),
                singular: kind.to_lowercase(),
                namespaced: *namespaced,
                status: *status,
                scale: *scale,
                short_names: short.iter().map(|s| (*s).to_string()).collect(),
                schema: None,
                custom: false,
                printer_columns: Vec::new(),
            });
        }
        r
    }

    fn insert(&mut self, t: ResourceType) {
        self.types.insert(
            (t.group.clone(), t.version.clone(), t.plural.clone()),
            Arc::new(t),
        );
    }

    /// The type served at `group/version/plural`.
    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.types
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .cloned()
    }

    /// Any served version of `group/plural` (for internal callers that do not care).
    pub fn by_storage_key(&self, key: &str) -> Option<Arc<ResourceType>> {
        self.types
            .values()
            .find(|t| t.storage_key() == key)
            .cloned()
    }

    /// Every served type, sorted by group, version, plural.
    pub fn all(&self) -> impl Iterator<Item = &Arc<ResourceType>> {
        self.types.values()
    }

    /// Adds (or replaces) the versions a CustomResourceDefinition serves.
    pub fn add_crd(&mut self, crd: &Value) {
        self.remove_crd(crd);
        let spec = crd.get("spec").cloned().unwrap_or(Value::Null);
        let group = spec.get("group").and_then(Value::as_str).unwrap_or("");
        let names = spec.get("names").cloned().unwrap_or(Value::Null);
        let s = |k: &str| {
            names
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let (kind, plural) = (s("kind"), s("plural"));
        if group.is_empty() || kind.is_empty() || plural.is_empty() {
            return;
        }
        let singular = Some(s("singular"))
            .filter(|x| !x.is_empty())
            .unwrap_or_else(|| kind.to_lowercase());
        let short_names: Vec<String> = names
            .get("shortNames")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let namespaced = spec.get("scope").and_then(Value::as_str) != Some("Cluster");
        for v in spec
            .get("versions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if v.get("served").and_then(Value::as_bool) == Some(false) {
                continue;
            }
            let Some(version) = v.get("name").and_then(Value::as_str) else {
                continue;
            };
            let sub = v.get("subresources");
            self.insert(ResourceType {
                group: group.to_string(),
                version: version.to_string(),
                kind: kind.clone(),
                plural: plural.clone(),
                singular: singular.clone(),
                namespaced,
                status: sub.and_then(|s| s.get("status")).is_some(),
                scale: sub.and_then(|s| s.get("scale")).is_some(),
                short_names: short_names.clone(),
                schema: v
                    .get("schema")
                    .and_then(|s| s.get("openAPIV3Schema"))
                    .cloned(),
                custom: true,
                printer_columns: v
                    .get("additionalPrinterColumns")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            });
        }
    }

    /// Stops serving a CustomResourceDefinition's resource.
    pub fn remove_crd(&mut self, crd: &Value) {
        let group = crate::meta::str_at(crd, "spec.group");
        let plural = crate::meta::str_at(crd, "spec.names.plural");
        self.types
            .retain(|(g, _, p), t| !(t.custom && g == group && p == plural));
    }
}
