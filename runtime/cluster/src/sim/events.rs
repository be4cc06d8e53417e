//! Events the simulated components record, worded as kube's components word them: the
//! scheduler's `Scheduled`, the kubelet's `Pulled`, `Created`, `Started`, `Killing`, the
//! controllers' `SuccessfulCreate`, `SuccessfulDelete`, `ScalingReplicaSet`, `Completed`.
//!
//! The same Event again (same object, reason, message and field path) counts up (`count`,
//! `lastTimestamp`), as client-go's event correlator does. The simulation keeps at most
//! [`MAX_EVENTS`] of the Events it created: past that the oldest is deleted, as
//! kube-apiserver's one-hour Event TTL bounds them.

use super::Ctx;
use crate::meta;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::Mutex;

/// Events the simulation keeps at most.
pub(crate) const MAX_EVENTS: usize = 20_000;

/// The Events the simulation created, oldest first, by (namespace, name).
#[derive(Debug, Default)]
pub(crate) struct Recorded(Mutex<VecDeque<(String, String)>>);

/// What an Event says.
pub(crate) struct Note<'a> {
    /// `Normal` or `Warning`.
    pub type_: &'a str,
    pub reason: &'a str,
    pub message: &'a str,
    /// `source.component`: `kubelet`, `default-scheduler`, `replicaset-controller`.
    pub component: &'a str,
    /// `source.host`: the node, for the kubelet; empty otherwise.
    pub host: &'a str,
    /// `involvedObject.fieldPath` (`spec.containers{app}`), or empty.
    pub field_path: &'a str,
}

impl<'a> Note<'a> {
    /// A `Normal` Event of a controller or the scheduler about an object.
    pub(crate) fn normal(component: &'a str, reason: &'a str, message: &'a str) -> Self {
        Self {
            type_: "Normal",
            reason,
            message,
            component,
            host: "",
            field_path: "",
        }
    }
}

/// The object reference an Event needs, from an owner's identity.
pub(crate) fn object(api_version: &str, kind: &str, ns: &str, name: &str, uid: &str) -> Value {
    json!({"apiVersion": api_version, "kind": kind,
        "metadata": {"namespace": ns, "name": name, "uid": uid}})
}

/// Records `note` about `obj`, or counts it again.
pub(crate) fn record(ctx: &Ctx, obj: &Value, note: &Note<'_>) {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let Some(events) = ctx.store.resolve("", "v1", "events") else {
        return;
    };
    let (ns, name) = (meta::namespace(obj), meta::name(obj));
    let mut h = DefaultHasher::new();
    (
        meta::uid_of(obj),
        note.reason,
        note.message,
        note.field_path,
    )
        .hash(&mut h);
    let event_name = format!("{name}.{:016x}", h.finish());
    let now = meta::now();
    let mut created = false;
    let result = ctx
        .store
        .mutate(&events, ns, &event_name, false, false, |cur| {
            if let Some(cur) = cur {
                let mut e = cur.clone();
                let count = e.get("count").and_then(Value::as_i64).unwrap_or(1);
                e["count"] = json!(count.saturating_add(1));
                e["lastTimestamp"] = json!(now);
                return Ok(e);
            }
            created = true;
            let mut involved = json!({
                "apiVersion": meta::str_at(obj, "apiVersion"),
                "kind": meta::str_at(obj, "kind"),
                "name": name, "namespace": ns, "uid": meta::uid_of(obj),
            });
            if !note.field_path.is_empty() {
                involved["fieldPath"] = json!(note.field_path);
            }
            let mut source = json!({"component": note.component});
            if !note.host.is_empty() {
                source["host"] = json!(note.host);
            }
            Ok(json!({
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": event_name, "namespace": ns},
                "involvedObject": involved,
                "reason": note.reason,
                "message": note.message,
                "type": note.type_,
                "source": source,
                "reportingComponent": note.component,
                "reportingInstance": note.host,
                "count": 1,
                "firstTimestamp": now,
                "lastTimestamp": now,
            }))
        });
    if let Err(e) = result {
        tracing::debug!(namespace = ns, name, error = %e, "event not recorded");
        return;
    }
    if !created {
        return;
    }
    let old = {
        let mut kept = ctx.events.0.lock().unwrap_or_else(|e| e.into_inner());
        kept.push_back((ns.to_string(), event_name));
        if kept.len() > MAX_EVENTS {
            kept.pop_front()
        } else {
            None
        }
    };
    if let Some((ns, name)) = old {
        let _ = ctx
            .store
            .delete(&events, &ns, &name, &crate::store::DeleteOptions::default());
    }
}
