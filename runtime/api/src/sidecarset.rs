//! The `SidecarSet` custom resource (group `bosun.dev`, version `v1alpha1`,
//! cluster-scoped): OpenKruise's SidecarSet (`apps.kruise.io/v1alpha1`) for sidecar
//! injection and in-place sidecar upgrades, which Bosun runs as plugins. The fields keep
//! Kruise's names and meanings, so a Kruise manifest works with only its `apiVersion`
//! changed. The CRD YAML under `deploy/crds/sidecarset.yaml` is generated from these
//! types and a test fails when it is stale
//! (`BOSUN_UPDATE_CRDS=1 cargo test -p bosun-api --test crd` rewrites it).
//!
//! # The subset
//!
//! - `selector` (required; a `metav1.LabelSelector`): the pods injected. As in Kruise,
//!   an empty selector matches no pod.
//! - `namespace`: only pods of this namespace; `namespaceSelector`: only pods of the
//!   namespaces whose labels match.
//! - `containers[]`, `initContainers[]`: a core v1 `Container` plus Kruise's
//!   `podInjectPolicy` (`BeforeAppContainer`, the default for containers, or
//!   `AfterAppContainer`, the default for init containers), `upgradeStrategy.upgradeType`
//!   (`ColdUpgrade`), `shareVolumePolicy.type` (`enabled` or `disabled`, the default) and
//!   `transferEnv`. As in Kruise's CRD, the schema names only Kruise's own fields and
//!   keeps the container's other fields unvalidated (`x-kubernetes-preserve-unknown-fields`).
//! - `volumes` (unvalidated, as in Kruise), `imagePullSecrets`.
//! - `updateStrategy`: `type` (`RollingUpdate`, the default, or `NotUpdate`), `partition`
//!   (int or percentage, default 0), `maxUnavailable` (int or percentage, default 1),
//!   `paused`, `selector`.
//! - `injectionStrategy.paused`.
//! - status: `observedGeneration`, `matchedPods`, `updatedPods`, `readyPods`,
//!   `updatedReadyPods`, `latestRevision`; printer columns MATCHED, UPDATED, READY, AGE.
//!
//! # Differences from Kruise
//!
//! - Group and version: `bosun.dev/v1alpha1`; Kruise also serves `v1beta1`, Bosun does not.
//! - Not in the subset, so pruned by the API server when a manifest sets them:
//!   `revisionHistoryLimit`, `patchPodMetadata`, `injectionStrategy.revision`,
//!   `updateStrategy.priorityStrategy` and `scatterStrategy`, status `collisionCount`.
//!   Inside a container nothing is pruned (its schema preserves unknown fields), and
//!   Kruise's other container fields (`shareVolumeDevicePolicy`, `resourcesPolicy`) stay
//!   stored and hashed, though Bosun does not act on them.
//! - `upgradeStrategy.upgradeType` accepts only `ColdUpgrade` (Kruise also has
//!   `HotUpgrade` with `hotUpgradeEmptyImage`): a hot-upgrade manifest is refused rather
//!   than cold-upgraded by surprise.
//! - Enumerations (`podInjectPolicy`, `shareVolumePolicy.type`, `updateStrategy.type`) and
//!   a container's `name` are checked by the schema; Kruise checks them in its
//!   validating webhook. The rest of that webhook's checks are not in the schema: an
//!   empty `selector` or `namespaceSelector` (Kruise refuses both), a SidecarSet without
//!   containers or init containers, `maxUnavailable: 0`, container names clashing with
//!   another SidecarSet's.
//! - Kruise's mutating webhook writes its defaults into the stored object; here
//!   `updateStrategy`'s defaults (`type`, `partition`, `maxUnavailable`) are schema
//!   defaults, so the API server writes them, and the container-level defaults are
//!   documented on the fields (`None` means the default) for the plugins to apply.
//!   The hashes (`kruise.io/sidecarset-hash`, see [`crate::sidecarset_hash`]) cover the
//!   containers as stored, so they equal Kruise's when the same defaults are stored.

use k8s_openapi::api::core::v1::{Container, Volume};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::plugin::{FullLabelSelector as LabelSelector, LabelRequirement};

/// Sidecar containers injected into the pods a selector matches, and how injected pods
/// are upgraded in place when the containers change.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "bosun.dev",
    version = "v1alpha1",
    kind = "SidecarSet",
    status = "SidecarSetStatus",
    printcolumn = r#"{"name":"MATCHED","type":"integer","jsonPath":".status.matchedPods","description":"The number of pods matched."}"#,
    printcolumn = r#"{"name":"UPDATED","type":"integer","jsonPath":".status.updatedPods","description":"The number of pods matched and updated."}"#,
    printcolumn = r#"{"name":"READY","type":"integer","jsonPath":".status.readyPods","description":"The number of pods matched and ready."}"#,
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SidecarSetSpec {
    /// The pods to inject (their labels); an empty selector matches no pod.
    pub selector: LabelSelector,
    /// Only pods in this namespace; every namespace when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Only pods in the namespaces whose labels match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Init containers injected when a pod is created (by name, in ascending order);
    /// never into existing pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub init_containers: Vec<SidecarContainer>,
    /// Sidecar containers injected into the selected pods and upgraded in place.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<SidecarContainer>,
    /// Volumes the sidecar containers may mount (core v1 `Volume`s).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "any_objects")]
    pub volumes: Vec<Volume>,
    /// How injected pods are upgraded when the containers change.
    #[serde(default)]
    pub update_strategy: UpdateStrategy,
    /// How new pods are injected.
    #[serde(default, skip_serializing_if = "InjectionStrategy::is_default")]
    pub injection_strategy: InjectionStrategy,
    /// Secrets for pulling the sidecar images, added to the pod's `imagePullSecrets`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
}

/// A sidecar container: a core v1 `Container` plus Kruise's injection settings
/// (`SidecarContainer` of `apps.kruise.io/v1alpha1`). `None` means Kruise's default.
///
/// Reading into this type drops the fields neither it nor k8s-openapi's `Container`
/// knows (Kruise's `shareVolumeDevicePolicy`, `resourcesPolicy`, ...), which the hashes
/// cover: hash the object's JSON as read ([`crate::sidecarset_hash`]), not this type
/// written back.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SidecarContainer {
    /// The container, as in a pod.
    #[serde(flatten)]
    pub container: Container,
    /// Where the container goes among the pod's containers; default
    /// `BeforeAppContainer` for containers, `AfterAppContainer` for init containers
    /// (where Kruise ignores it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_inject_policy: Option<PodInjectPolicy>,
    /// How the container is upgraded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade_strategy: Option<ContainerUpgradeStrategy>,
    /// Whether the container also mounts every volume the pod's other containers mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_volume_policy: Option<ShareVolumePolicy>,
    /// Environment variables copied from another container of the pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transfer_env: Vec<TransferEnvVar>,
}

/// The schema of what [`SidecarContainer`] adds to a `Container`.
#[derive(JsonSchema)]
#[serde(rename_all = "camelCase")]
#[expect(dead_code, reason = "only its schema is used")]
struct SidecarFields {
    /// The container's name (a DNS-1123 label), unique in the pod.
    name: String,
    /// Where the container goes among the pod's containers; default
    /// `BeforeAppContainer` for containers, `AfterAppContainer` for init containers.
    pod_inject_policy: Option<PodInjectPolicy>,
    /// How the container is upgraded (`upgradeType`, default `ColdUpgrade`).
    upgrade_strategy: Option<ContainerUpgradeStrategy>,
    /// Whether the container also mounts every volume the pod's other containers mount
    /// (`type`, default `disabled`).
    share_volume_policy: Option<ShareVolumePolicy>,
    /// Environment variables copied from another container of the pod.
    transfer_env: Option<Vec<TransferEnvVar>>,
}

impl JsonSchema for SidecarContainer {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SidecarContainer".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        // Kruise's own fields are checked; the core Container's are kept as written.
        let mut schema = SidecarFields::json_schema(generator);
        schema.insert(
            "description".into(),
            "A core v1 Container plus Kruise's sidecar settings; the Container's fields are \
             kept unvalidated."
                .into(),
        );
        schema.insert("x-kubernetes-preserve-unknown-fields".into(), true.into());
        schema
    }
}

/// Where a sidecar goes among a pod's containers.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PodInjectPolicy {
    /// Before the pod's own containers.
    BeforeAppContainer,
    /// After the pod's own containers.
    AfterAppContainer,
}

/// How a sidecar container is upgraded.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerUpgradeStrategy {
    /// `ColdUpgrade` (the default and the only one: Kruise's `HotUpgrade` is not offered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade_type: Option<UpgradeType>,
}

/// Sidecar upgrade types.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum UpgradeType {
    /// Restart the container in place with the new image.
    ColdUpgrade,
}

/// Whether a sidecar shares the volume mounts of the pod's other containers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
pub struct ShareVolumePolicy {
    /// `enabled` or `disabled` (the default).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<ShareVolumePolicyType>,
}

/// Volume sharing, on or off.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ShareVolumePolicyType {
    /// The sidecar mounts every volume the pod's other containers mount.
    Enabled,
    /// It mounts only its own.
    Disabled,
}

/// Environment variables a sidecar copies from another container of the pod.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransferEnvVar {
    /// The container to copy from, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_container_name: Option<String>,
    /// Or: the container whose name a field of the pod holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_container_name_from: Option<SourceContainerNameSource>,
    /// One variable to copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_name: Option<String>,
    /// Several variables to copy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_names: Vec<String>,
}

/// Where the name of the container to copy variables from is found.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceContainerNameSource {
    /// A field of the pod: `metadata.labels['<KEY>']` or `metadata.annotations['<KEY>']`
    /// (`metadata.name` is accepted and skipped, as Kruise skips it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_ref: Option<ObjectFieldSelector>,
}

/// A field of an object (core v1 `ObjectFieldSelector`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectFieldSelector {
    /// The schema version `fieldPath` is written in; default `v1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// The path of the field.
    pub field_path: String,
}

/// A Secret in the same namespace as the pod, by name (core v1 `LocalObjectReference`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
pub struct LocalObjectReference {
    /// The Secret's name.
    #[serde(default)]
    pub name: String,
}

/// How injected pods are upgraded when the sidecar containers change
/// (Kruise's `SidecarSetUpdateStrategy`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateStrategy {
    /// `RollingUpdate` (the default): injected pods are upgraded in place; `NotUpdate`:
    /// only new pods get the new containers.
    #[serde(rename = "type", default)]
    pub type_: UpdateStrategyType,
    /// Stop upgrading pods (new pods are still injected).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// Upgrade only the matched pods that this selects too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// How many matched pods (or what percentage) keep the old containers; default 0.
    #[serde(default = "zero")]
    #[schemars(schema_with = "int_or_string")]
    pub partition: IntOrString,
    /// How many matched pods (or what percentage, rounded up) may be unavailable at once
    /// during an upgrade; not 0; default 1.
    #[serde(default = "one")]
    #[schemars(schema_with = "int_or_string")]
    pub max_unavailable: IntOrString,
}

impl Default for UpdateStrategy {
    fn default() -> Self {
        UpdateStrategy {
            type_: UpdateStrategyType::default(),
            paused: false,
            selector: None,
            partition: zero(),
            max_unavailable: one(),
        }
    }
}

fn zero() -> IntOrString {
    IntOrString::Int(0)
}

fn one() -> IntOrString {
    IntOrString::Int(1)
}

/// Upgrade strategy types.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum UpdateStrategyType {
    /// Upgrade injected pods in place, in batches.
    #[default]
    RollingUpdate,
    /// Only inject new pods.
    NotUpdate,
}

/// How new pods are injected (Kruise's `SidecarSetInjectionStrategy`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InjectionStrategy {
    /// Stop injecting new pods; injected pods keep being upgraded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

impl InjectionStrategy {
    fn is_default(&self) -> bool {
        self == &InjectionStrategy::default()
    }
}

/// What the SidecarSet controller reports (Kruise's `SidecarSetStatus`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SidecarSetStatus {
    /// The generation of the spec these counts are for.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub observed_generation: i64,
    /// Pods the selectors match.
    #[serde(default)]
    pub matched_pods: i32,
    /// Matched pods that run the latest containers.
    #[serde(default)]
    pub updated_pods: i32,
    /// Matched pods that are ready.
    #[serde(default)]
    pub ready_pods: i32,
    /// Matched pods that run the latest containers and are ready.
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    pub updated_ready_pods: i32,
    /// The name of the latest revision (ControllerRevision) of the SidecarSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_revision: Option<String>,
}

fn is_zero_i64(n: &i64) -> bool {
    *n == 0
}

fn is_zero_i32(n: &i32) -> bool {
    *n == 0
}

fn int_or_string(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "x-kubernetes-int-or-string": true })
}

fn any_objects(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": { "type": "object", "x-kubernetes-preserve-unknown-fields": true }
    })
}

/// The CRD as YAML, as checked in under `deploy/crds/sidecarset.yaml`.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    use kube::CustomResourceExt;
    let mut crd = serde_json::to_value(SidecarSet::crd()).unwrap_or_default();
    crate::plugin::drop_unknown_formats(&mut crd);
    let body = serde_yaml::to_string(&crd)?;
    Ok(format!(
        "# Generated from runtime/api/src/sidecarset.rs — do not edit; see that file.\n{body}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kruise_manifest_reads_with_its_api_version_changed() {
        let yaml = r#"
apiVersion: bosun.dev/v1alpha1
kind: SidecarSet
metadata: {name: test-sidecarset}
spec:
  selector:
    matchLabels: {app: nginx}
    matchExpressions: [{key: tier, operator: In, values: [web]}]
  namespace: ns-1
  containers:
  - name: sidecar1
    image: centos:6.7
    command: ["sleep", "999d"]
    podInjectPolicy: BeforeAppContainer
    shareVolumePolicy: {type: disabled}
    upgradeStrategy: {upgradeType: ColdUpgrade}
    transferEnv:
    - {sourceContainerName: main, envName: TZ}
    volumeMounts: [{name: log-volume, mountPath: /var/log}]
    resources: {limits: {cpu: 100m, memory: 64Mi}}
  initContainers:
  - {name: init, image: busybox, restartPolicy: Always}
  volumes:
  - {name: log-volume, emptyDir: {}}
  imagePullSecrets: [{name: registry}]
  updateStrategy:
    type: RollingUpdate
    partition: 30%
    maxUnavailable: 2
  injectionStrategy: {paused: true}
"#;
        let value: serde_json::Value = serde_yaml::from_str(yaml).expect("yaml");
        let s: SidecarSet = serde_json::from_value(value.clone()).expect("reads");
        let c = &s.spec.containers[0];
        assert_eq!(c.container.name, "sidecar1");
        assert_eq!(c.container.image.as_deref(), Some("centos:6.7"));
        assert_eq!(
            c.pod_inject_policy,
            Some(PodInjectPolicy::BeforeAppContainer)
        );
        assert_eq!(
            c.share_volume_policy.as_ref().and_then(|p| p.type_),
            Some(ShareVolumePolicyType::Disabled)
        );
        assert_eq!(c.transfer_env[0].env_name.as_deref(), Some("TZ"));
        assert_eq!(
            s.spec.update_strategy.partition,
            IntOrString::String("30%".into())
        );
        assert_eq!(s.spec.update_strategy.max_unavailable, IntOrString::Int(2));
        assert!(s.spec.injection_strategy.paused);
        assert_eq!(s.spec.volumes[0].name, "log-volume");
        // What Bosun writes back is what it read: the hashes cover the containers as stored.
        let back = serde_json::to_value(&s).expect("writes");
        assert_eq!(back["spec"]["containers"], value["spec"]["containers"]);
        assert_eq!(
            back["spec"]["initContainers"],
            value["spec"]["initContainers"]
        );
    }

    #[test]
    fn update_strategy_defaults_are_kruises() {
        let s: SidecarSetSpec =
            serde_json::from_value(serde_json::json!({"selector": {}})).expect("reads");
        assert_eq!(s.update_strategy.type_, UpdateStrategyType::RollingUpdate);
        assert_eq!(s.update_strategy.max_unavailable, IntOrString::Int(1));
        assert_eq!(s.update_strategy.partition, IntOrString::Int(0));
        assert!(!s.injection_strategy.paused);
    }

    #[test]
    fn a_hot_upgrade_is_refused() {
        let bad = serde_json::json!({"selector": {}, "containers": [
            {"name": "envoy", "upgradeStrategy": {"upgradeType": "HotUpgrade"}}]});
        assert!(serde_json::from_value::<SidecarSetSpec>(bad).is_err());
    }
}
