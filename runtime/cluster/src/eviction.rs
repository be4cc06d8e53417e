//! The Eviction API: deletes a pod unless a PodDisruptionBudget forbids it.

use crate::meta;
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::{ApiError, Result};
use crate::store::{DeleteOptions, Store};
use serde_json::{Value, json};

/// Whether a pod's Ready condition is True.
pub(crate) fn is_ready(pod: &Value) -> bool {
    meta::path(pod, "status.conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| meta::str_at(c, "type") == "Ready" && meta::str_at(c, "status") == "True")
        })
}

/// Resolves an int-or-percent against a total; percentages round up, as the disruption
/// controller does.
fn scaled(v: &Value, total: usize) -> usize {
    match v {
        Value::Number(n) => usize::try_from(n.as_u64().unwrap_or(0)).unwrap_or(usize::MAX),
        // The budget's numbers are the user's: saturate rather than overflow.
        Value::String(s) => match s.strip_suffix('%').and_then(|p| p.parse::<usize>().ok()) {
            Some(pct) => total.saturating_mul(pct).div_ceil(100),
            None => s.parse().unwrap_or(0),
        },
        _ => 0,
    }
}

/// A budget's pod selector; `None` when it has none: in policy/v1 a null selector
/// selects no pod (an empty one selects every pod of the namespace).
fn selector_of(pdb: &Value) -> Option<LabelSelector> {
    meta::path(pdb, "spec.selector")
        .filter(|s| !s.is_null())
        .map(LabelSelector::from_object)
}

/// How many more pods a budget lets go: `(healthy, desired healthy, expected)`.
pub(crate) fn budget(store: &Store, pdb: &Value) -> Option<(usize, usize, usize)> {
    let pods_rt = store.resolve("", "v1", "pods")?;
    let Some(sel) = selector_of(pdb) else {
        let desired = meta::path(pdb, "spec.minAvailable").map_or(0, |min| scaled(min, 0));
        return Some((0, desired, 0));
    };
    let pods: Vec<Value> = store
        .list(
            &pods_rt,
            meta::namespace(pdb),
            &sel,
            &FieldSelector::default(),
        )
        .into_iter()
        .filter(|p| !meta::is_deleting(p))
        .collect();
    let expected = pods.len();
    let healthy = pods.iter().filter(|p| is_ready(p)).count();
    let desired = if let Some(min) = meta::path(pdb, "spec.minAvailable") {
        scaled(min, expected)
    } else if let Some(max) = meta::path(pdb, "spec.maxUnavailable") {
        expected.saturating_sub(scaled(max, expected))
    } else {
        0
    };
    Some((healthy, desired, expected))
}

/// Evicts a pod: refuses with 429 when a matching budget has no disruption left.
pub(crate) fn evict(store: &Store, ns: &str, name: &str, opts: &DeleteOptions) -> Result<()> {
    let (Some(pods_rt), Some(pdb_rt)) = (
        store.resolve("", "v1", "pods"),
        store.resolve("policy", "v1", "poddisruptionbudgets"),
    ) else {
        return Err(ApiError::internal("built-in types missing"));
    };
    let pod = store.get(&pods_rt, ns, name)?;
    // An unready pod does not count as healthy: evicting it costs the budget nothing.
    if is_ready(&pod) && !meta::is_deleting(&pod) {
        for pdb in store.list(
            &pdb_rt,
            ns,
            &LabelSelector::default(),
            &FieldSelector::default(),
        ) {
            if !selector_of(&pdb).is_some_and(|sel| sel.matches(&pod)) {
                continue;
            }
            let Some((healthy, desired, _)) = budget(store, &pdb) else {
                continue;
            };
            if healthy <= desired {
                // As kube-apiserver's eviction REST: the budget is the cause.
                return Err(ApiError::too_many_requests(
                    "Cannot evict pod as it would violate the pod's disruption budget.",
                )
                .with_causes(vec![json!({
                    "reason": "DisruptionBudget",
                    "message": format!(
                        "The disruption budget {} needs {desired} healthy pods and has {healthy} currently",
                        meta::name(&pdb)
                    ),
                })]));
            }
        }
    }
    store.delete(&pods_rt, ns, name, opts)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn budget_numbers_saturate() {
        // The API refuses these; a stored budget from elsewhere must not panic the server.
        assert_eq!(
            scaled(&json!("18446744073709551615%"), 3),
            usize::MAX.div_ceil(100)
        );
        assert_eq!(scaled(&json!(u64::MAX), 3), usize::MAX);
        assert_eq!(scaled(&json!("50%"), 3), 2);
    }
}
