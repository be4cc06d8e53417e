//! Every annotation, label and ConfigMap key that more than one part of Bosun reads or
//! writes, in one place (the CLI writes what the runtime reads, the embedded cluster and
//! the runtime agree on what a pod asks for).

/// The API group of Bosun's custom resources.
pub const GROUP: &str = "bosun.dev";

/// Label naming the plugin a revision's ConfigMap belongs to.
pub const PLUGIN_LABEL: &str = "bosun.dev/plugin";
/// Label with the first 63 hex digits of a revision's digest (a label value's maximum);
/// the same key as an annotation holds the whole `sha256:<hex>`.
pub const DIGEST_LABEL: &str = "bosun.dev/digest";
/// Label of the Plugin objects the plugins folder publishes (value [`SOURCE_FOLDER`]).
pub const SOURCE_LABEL: &str = "bosun.dev/source";
/// [`SOURCE_LABEL`]'s value on Plugin objects published from the plugins folder.
pub const SOURCE_FOLDER: &str = "plugins-folder";
/// Annotation of a folder-published Plugin: the digest of the folder's file it last
/// published. A push takes the source over; the folder publishes again only when its
/// file's digest changes.
pub const FOLDER_DIGEST_ANNOTATION: &str = "bosun.dev/folder-digest";
/// Annotation on a Plugin asking the runtime to promote its canary (the RFC 3339 time
/// of the request: a new time is a new request).
pub const PROMOTE_ANNOTATION: &str = "bosun.dev/promote";
/// Annotation on a Plugin asking the runtime to roll back (the RFC 3339 time of the
/// request).
pub const ROLLBACK_ANNOTATION: &str = "bosun.dev/rollback";
/// The key of a revision's ConfigMap that holds the component (binaryData).
pub const CONFIGMAP_KEY: &str = "plugin.wasm";
/// Label of the embedded cluster's simulated nodes.
pub const SIMULATED_LABEL: &str = "bosun.dev/simulated";

/// Pod label asking for a Bosun sidecar (`"true"`): the built-in SidecarSet
/// (`deploy/sidecarset/bosun-sidecar.yaml`) selects it.
pub const SIDECAR_INJECT_LABEL: &str = "sidecar.bosun.dev/inject";
/// The name of the Bosun sidecar's container in a pod.
pub const SIDECAR_CONTAINER: &str = "bosun-sidecar";
/// Pod annotation naming the pod-agent plugins its sidecar runs (comma-separated),
/// besides those whose Pod subscription matches the pod.
pub const SIDECAR_PLUGINS_ANNOTATION: &str = "sidecar.bosun.dev/plugins";

/// StatefulSet annotation choosing the release plugin's strategy.
pub const RELEASE_STRATEGY_ANNOTATION: &str = "release.bosun.dev/strategy";
/// StatefulSet annotation where the release plugin reports progress (JSON).
pub const RELEASE_STATUS_ANNOTATION: &str = "release.bosun.dev/status";
/// StatefulSet annotation bounding the pods the release takes out at once.
pub const RELEASE_MAX_UNAVAILABLE_ANNOTATION: &str = "release.bosun.dev/max-unavailable";

/// OpenKruise's key for the hash of a SidecarSet's containers
/// ([`crate::sidecarset_hash::hash`]): on the SidecarSet, the hash itself; on a pod, JSON
/// of `{<sidecarset name>: {"hash": ..., "sidecarSetName": ..., "sidecarList": [...],
/// "updateTimestamp": ...}}` (Kruise's `SidecarSetUpgradeSpec`).
pub const SIDECARSET_HASH_ANNOTATION: &str = "kruise.io/sidecarset-hash";
/// The same with the images blanked ([`crate::sidecarset_hash::hash_without_image`]),
/// unchanged when only images change, which is when an in-place upgrade suffices.
pub const SIDECARSET_HASH_WITHOUT_IMAGE_ANNOTATION: &str =
    "kruise.io/sidecarset-hash-without-image";
