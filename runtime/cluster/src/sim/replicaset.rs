//! The ReplicaSet controller: keeps `spec.replicas` pods, deleting unready and newest first.
//! Its pods are created through admission (see `creates`).

use super::creates::{Controller, Creates, Owner};
use super::{Ctx, by_owner, pod_from_template, pod_ready, pods_wanted};
use crate::meta;
use crate::store::DeleteOptions;
use serde_json::{Value, json};
use tokio::time::Instant;

/// One pass over every ReplicaSet.
pub(crate) fn reconcile(ctx: &Ctx, _: &super::Wake, creates: &mut Creates) -> Option<Instant> {
    let sets = ctx.store.all(&ctx.kinds.replicasets.storage_key());
    if sets.is_empty() {
        return None;
    }
    let pods = ctx.store.all(&ctx.kinds.pods.storage_key());
    let pods_of = by_owner(&pods);
    for rs in sets.iter().filter(|s| !meta::is_deleting(s)) {
        let mut owned: Vec<&Value> = pods_of
            .get(meta::uid_of(rs))
            .into_iter()
            .flatten()
            .copied()
            .filter(|p| !meta::is_deleting(p))
            .collect();
        let want = pods_wanted(ctx, rs);
        let ns = meta::namespace(rs);
        if owned.len() < want {
            if creates.allowed(ctx, rs) {
                let owner = Owner::of(rs);
                for _ in owned.len()..want {
                    let pod = pod_from_template(rs, None, &[]);
                    creates.push(Controller::ReplicaSet, &owner, pod);
                }
            }
        } else if owned.len() > want {
            // Unready first, then the newest.
            owned.sort_by_key(|p| {
                (
                    pod_ready(p),
                    std::cmp::Reverse(meta::str_at(p, "metadata.creationTimestamp").to_string()),
                )
            });
            for p in owned.drain(..owned.len() - want) {
                let pod = meta::name(p);
                if ctx
                    .store
                    .delete(&ctx.kinds.pods, ns, pod, &DeleteOptions::default())
                    .is_ok()
                {
                    let message = format!("Deleted pod: {pod}");
                    super::events::record(
                        ctx,
                        rs,
                        &super::events::Note::normal(
                            "replicaset-controller",
                            "SuccessfulDelete",
                            &message,
                        ),
                    );
                }
            }
        }
        // The status counts the pods kept: a Deployment reads it to scale down further.
        let ready = owned.iter().filter(|p| pod_ready(p)).count();
        let status = json!({
            "observedGeneration": meta::path(rs, "metadata.generation").cloned().unwrap_or(json!(1)),
            "replicas": owned.len(),
            "fullyLabeledReplicas": owned.len(),
            "readyReplicas": ready,
            "availableReplicas": ready,
        });
        super::write_status(ctx, &ctx.kinds.replicasets, rs, status);
    }
    None
}
