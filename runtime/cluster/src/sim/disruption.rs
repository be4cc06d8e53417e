//! The disruption controller: keeps PodDisruptionBudget status (`currentHealthy`,
//! `desiredHealthy`, `expectedPods`, `disruptionsAllowed`) up to date.

use super::Ctx;
use crate::meta;
use serde_json::{Value, json};
use tokio::time::Instant;

/// One pass over every PodDisruptionBudget.
pub(crate) fn reconcile(
    ctx: &Ctx,
    _: &super::Wake,
    _: &mut super::creates::Creates,
) -> Option<Instant> {
    let rt = ctx.store.resolve("policy", "v1", "poddisruptionbudgets")?;
    for pdb in ctx.store.all(&rt.storage_key()) {
        let Some((healthy, desired, expected)) = crate::eviction::budget(&ctx.store, &pdb) else {
            continue;
        };
        let allowed = healthy.saturating_sub(desired);
        let mut status = pdb.get("status").cloned().unwrap_or(json!({}));
        if !status.is_object() {
            status = json!({});
        }
        status["observedGeneration"] = meta::path(&pdb, "metadata.generation")
            .cloned()
            .unwrap_or(json!(1));
        status["currentHealthy"] = json!(healthy);
        status["desiredHealthy"] = json!(desired);
        status["expectedPods"] = json!(expected);
        status["disruptionsAllowed"] = json!(allowed);
        let sufficient = if allowed > 0 { "True" } else { "False" };
        let old_cond = meta::path(&pdb, "status.conditions")
            .and_then(Value::as_array)
            .and_then(|cs| {
                cs.iter()
                    .find(|c| meta::str_at(c, "type") == "DisruptionAllowed")
            })
            .cloned();
        let cond = match old_cond {
            Some(c) if meta::str_at(&c, "status") == sufficient => c,
            _ => json!({
                "type": "DisruptionAllowed",
                "status": sufficient,
                "reason": if allowed > 0 { "SufficientPods" } else { "InsufficientPods" },
                "message": "",
                "lastTransitionTime": meta::now(),
                "observedGeneration": status["observedGeneration"].clone(),
            }),
        };
        status["conditions"] = json!([cond]);
        super::write_status(ctx, &rt, &pdb, status);
    }
    None
}
