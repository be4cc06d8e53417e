//! Which SidecarSets a pod gets: Kruise's `PodMatchedSidecarSet` and `IsActivePod`
//! (pkg/control/sidecarcontrol/util.go), and `injectionStrategy.paused`
//! (pkg/webhook/pod/mutating/sidecarset.go).

use bosun_api::Selector;
use bosun_sdk::{Context, ObjectRef};
use serde_json::Value;

/// Whether the pod is neither finished nor being deleted (Kruise injects only those).
pub(crate) fn is_active(pod: &Value) -> bool {
    let phase = pod.pointer("/status/phase").and_then(Value::as_str);
    pod.pointer("/metadata/deletionTimestamp")
        .is_none_or(Value::is_null)
        && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// Whether `set` injects `pod` of `namespace`: not paused, its `namespace` (when set)
/// is the pod's, its `namespaceSelector` (when set) matches the namespace's labels in
/// the cache (a namespace not in the cache matches nothing), and its `selector`, not
/// empty, matches the pod's labels. `Err` for a selector that does not parse.
pub(crate) fn matches(
    ctx: &Context,
    set: &Value,
    pod: &Value,
    namespace: &str,
) -> Result<bool, String> {
    let spec = &set["spec"];
    if spec
        .pointer("/injectionStrategy/paused")
        .and_then(Value::as_bool)
        == Some(true)
    {
        return Ok(false);
    }
    if let Some(ns) = spec["namespace"].as_str()
        && !ns.is_empty()
        && ns != namespace
    {
        return Ok(false);
    }
    if !spec["namespaceSelector"].is_null() {
        let selector = Selector::from_label_selector(&spec["namespaceSelector"])
            .map_err(|e| format!("namespaceSelector: {e}"))?;
        let Some(ns) = ctx.get(&ObjectRef::new("v1", "Namespace").named(namespace)) else {
            return Ok(false);
        };
        if !selector.matches_object(&ns) {
            return Ok(false);
        }
    }
    let selector =
        Selector::from_label_selector(&spec["selector"]).map_err(|e| format!("selector: {e}"))?;
    Ok(!selector.is_empty() && selector.matches_object(pod))
}
