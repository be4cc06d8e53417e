//! The StatefulSet controller: ordered creation (OrderedReady) or all at once (Parallel),
//! scale-down from the highest ordinal, RollingUpdate with a partition (pods are deleted
//! and recreated from the highest ordinal down, one at a time, while all are ready),
//! OnDelete, and currentRevision/updateRevision through ControllerRevisions.

use super::creates::{Controller, Creates, Owner};
use super::{
    Ctx, Interest, Wake, by_owner, pod_from_template, pod_ready, pods_wanted, template_hash,
};
use crate::meta;
use crate::store::DeleteOptions;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use tokio::time::Instant;

/// The StatefulSet controller cares about StatefulSets and the pods and revisions they
/// own: a change is a pass for the owner.
pub(crate) fn interest(ctx: &Ctx, e: &crate::store::Event) -> Interest {
    let o = &e.object;
    let ns = meta::namespace(o).to_string();
    if e.key == ctx.kinds.statefulsets.storage_key() {
        return Interest::Key(ns, meta::name(o).to_string());
    }
    if e.key != ctx.kinds.pods.storage_key() && e.key != ctx.kinds.revisions.storage_key() {
        return Interest::Ignore;
    }
    meta::path(o, "metadata.ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|r| meta::str_at(r, "kind") == "StatefulSet")
        .map_or(Interest::Ignore, |r| {
            Interest::Key(ns, meta::str_at(r, "name").to_string())
        })
}

/// One pass over every StatefulSet (or those that changed).
pub(crate) fn reconcile(ctx: &Ctx, wake: &Wake, creates: &mut Creates) -> Option<Instant> {
    let sets = ctx.store.all(&ctx.kinds.statefulsets.storage_key());
    if sets.is_empty() {
        return None;
    }
    let pods = ctx.store.all(&ctx.kinds.pods.storage_key());
    let revisions = ctx.store.all(&ctx.kinds.revisions.storage_key());
    let (pods_of, revisions_of) = (by_owner(&pods), by_owner(&revisions));
    let changed = |s: &Value| {
        wake.full
            || wake
                .changed
                .contains(&(meta::namespace(s).to_string(), meta::name(s).to_string()))
    };
    for sts in sets.iter().filter(|s| !meta::is_deleting(s) && changed(s)) {
        let uid = meta::uid_of(sts);
        let none = Vec::new();
        let (pods, revisions) = (
            pods_of.get(uid).unwrap_or(&none),
            revisions_of.get(uid).unwrap_or(&none),
        );
        sync(ctx, sts, pods, revisions, creates);
    }
    None
}

const HASH_LABEL: &str = "controller-revision-hash";

/// `pods` and `revisions`: those `sts` owns. Its pods are created through admission
/// (see `creates`).
fn sync(ctx: &Ctx, sts: &Value, pods: &[&Value], revisions: &[&Value], creates: &mut Creates) {
    let (ns, name) = (meta::namespace(sts), meta::name(sts));
    let template = meta::path(sts, "spec.template")
        .cloned()
        .unwrap_or(Value::Null);
    let update_rev = format!("{name}-{}", template_hash(&template));
    let owned_revs = revisions;
    if !owned_revs.iter().any(|r| meta::name(r) == update_rev) {
        let number = owned_revs
            .iter()
            .filter_map(|r| r.get("revision").and_then(Value::as_i64))
            .max()
            .unwrap_or(0)
            .saturating_add(1);
        let rev = json!({
            "apiVersion": "apps/v1", "kind": "ControllerRevision",
            "metadata": {"name": update_rev, "namespace": ns,
                "labels": template.pointer("/metadata/labels").cloned().unwrap_or(json!({})),
                "ownerReferences": [super::owner_ref(sts)]},
            "data": {"spec": {"template": template}},
            "revision": number,
        });
        if let Err(e) = ctx.store.create(&ctx.kinds.revisions, ns, rev, false)
            && e.code != 409
        {
            tracing::warn!(statefulset = name, error = %e, "cannot record revision");
        }
    }
    let current_rev = Some(meta::str_at(sts, "status.currentRevision").to_string())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| update_rev.clone());
    let template_of = |rev: &str| -> Value {
        owned_revs
            .iter()
            .find(|r| meta::name(r) == rev)
            .and_then(|r| meta::path(r, "data.spec.template").cloned())
            .unwrap_or_else(|| template.clone())
    };
    let prefix = format!("{name}-");
    let by_ordinal: BTreeMap<usize, &Value> = pods
        .iter()
        .filter_map(|p| {
            let i = meta::name(p).strip_prefix(&prefix)?.parse().ok()?;
            Some((i, *p))
        })
        .collect();
    let want = pods_wanted(ctx, sts);
    let ordered = meta::str_at(sts, "spec.podManagementPolicy") != "Parallel";
    let strategy = meta::str_at(sts, "spec.updateStrategy.type");
    let rolling = strategy != "OnDelete";
    let partition = meta::path(sts, "spec.updateStrategy.rollingUpdate.partition")
        .and_then(Value::as_u64)
        .unwrap_or(0) as usize;
    let service = meta::str_at(sts, "spec.serviceName").to_string();

    // Create what is missing, in order.
    let mut busy = false;
    let mut owner = None;
    for i in 0..want {
        match by_ordinal.get(&i) {
            Some(p) => {
                if ordered && !pod_ready(p) {
                    busy = true;
                    break;
                }
            }
            None => {
                if !creates.allowed(ctx, sts) {
                    busy |= ordered;
                    break;
                }
                let rev = if rolling && i < partition {
                    current_rev.clone()
                } else {
                    update_rev.clone()
                };
                let mut with_template = sts.clone();
                with_template["spec"]["template"] = template_of(&rev);
                let pod_name = format!("{name}-{i}");
                let idx = i.to_string();
                let mut pod = pod_from_template(
                    &with_template,
                    Some(&pod_name),
                    &[
                        (HASH_LABEL, &rev),
                        ("statefulset.kubernetes.io/pod-name", &pod_name),
                        ("apps.kubernetes.io/pod-index", &idx),
                    ],
                );
                pod["spec"]["hostname"] = json!(pod_name);
                if !service.is_empty() {
                    pod["spec"]["subdomain"] = json!(service);
                }
                let owner = owner.get_or_insert_with(|| Owner::of(sts));
                creates.push(Controller::StatefulSet, owner, pod);
                if ordered {
                    busy = true;
                    break;
                }
            }
        }
    }
    // Scale down from the highest ordinal.
    let delete = |p: &Value| {
        let pod = meta::name(p);
        if ctx
            .store
            .delete(&ctx.kinds.pods, ns, pod, &DeleteOptions::default())
            .is_ok()
        {
            let message = format!("delete Pod {pod} in StatefulSet {name} successful");
            super::events::record(
                ctx,
                sts,
                &super::events::Note::normal(
                    "statefulset-controller",
                    "SuccessfulDelete",
                    &message,
                ),
            );
        }
    };
    if !busy {
        for (_, p) in by_ordinal.range(want..).rev() {
            if !meta::is_deleting(p) {
                delete(p);
                if ordered {
                    busy = true;
                    break;
                }
            }
        }
    }
    // Rolling update: highest ordinal first, one at a time, all others ready.
    let all_ready = (0..want).all(|i| by_ordinal.get(&i).is_some_and(|p| pod_ready(p)));
    if rolling && !busy && all_ready {
        for i in (partition..want).rev() {
            if let Some(p) = by_ordinal.get(&i)
                && meta::str_at(p, &format!("metadata.labels.{HASH_LABEL}")) != update_rev
            {
                delete(p);
                break;
            }
        }
    }

    let live: Vec<&&Value> = by_ordinal
        .values()
        .filter(|p| !meta::is_deleting(p))
        .collect();
    let rev_of = |p: &Value| meta::str_at(p, &format!("metadata.labels.{HASH_LABEL}")).to_string();
    let ready = live.iter().filter(|p| pod_ready(p)).count();
    let updated = live.iter().filter(|p| rev_of(p) == update_rev).count();
    let current = live.iter().filter(|p| rev_of(p) == current_rev).count();
    let done = updated == want && live.len() == want;
    let status = json!({
        "observedGeneration": meta::path(sts, "metadata.generation").cloned().unwrap_or(json!(1)),
        "replicas": live.len(),
        "readyReplicas": ready,
        "availableReplicas": ready,
        "currentReplicas": if done { updated } else { current },
        "updatedReplicas": updated,
        "currentRevision": if done { update_rev.clone() } else { current_rev },
        "updateRevision": update_rev,
        "collisionCount": 0,
    });
    super::write_status(ctx, &ctx.kinds.statefulsets, sts, status);
}
