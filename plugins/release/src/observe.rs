//! What one pass reads: the StatefulSet's pods as the cache shows them, the revisions they
//! are at, and the plugin's own records of what it sent. Each pod's JSON is read once,
//! here, into [`Pod`]; [`plan`](crate::plan) decides from this alone.

use std::collections::BTreeMap;
use std::time::Duration;

use bosun_sdk::{Context, Error, ObjectRef};
use serde_json::Value;

use crate::params::PRIORITY_LABEL;
use crate::{
    At as _, FAILED_REASONS, GATE_RETRY_MS, GatesSent, HASH_LABEL, IN_FLIGHT_TTL_MS, InFlight,
    Phase, STATE, State, annotation, containers_ready, gate_index, gate_status, gated, gates_key,
    in_flight_key, in_place_shape, label, learned_key, load, ordinal, pod_ready, revision_template,
    slim, str_at,
};

/// A StatefulSet mid-release, as one pass sees it.
pub(crate) struct Observed {
    /// The StatefulSet's namespace.
    pub ns: String,
    /// The revision the pods move to (`status.updateRevision`).
    pub target: String,
    /// Its pod template.
    pub target_template: Value,
    /// The other revisions pods are at, read once per pass rather than once per pod.
    pub revisions: BTreeMap<String, Revision>,
    /// `spec.replicas`.
    pub total: u64,
    /// When the pass started, in ms since the epoch.
    pub now: u64,
    /// The pods the StatefulSet owns, in the cache's order.
    pub pods: Vec<Pod>,
    /// Commands sent whose effect the cache does not show yet.
    pub in_flight: InFlight,
    /// Readiness-gate patches sent whose effect the cache does not show yet.
    pub gates: GatesSent,
    /// How long pods took from the in-place patch to running ready, as kept.
    pub learned: Option<u64>,
}

/// An old revision a pod is at.
pub(crate) struct Revision {
    /// Its pod template, `None` when the ControllerRevision is gone from the cache.
    pub template: Option<Value>,
    /// Whether it differs from the target only in what an in-place update can change.
    pub images_only: bool,
}

/// One pod, with what the release decides on read out of its JSON.
#[derive(Debug)]
pub(crate) struct Pod {
    /// The pod as the cache shows it: the patches are built from it.
    pub object: Value,
    pub name: String,
    pub ordinal: u64,
    /// Its [`PRIORITY_LABEL`] (absent or unreadable is 0).
    pub priority: i64,
    /// Its `controller-revision-hash`.
    pub revision: String,
    /// Its in-place update progress ([`STATE`]).
    pub state: Option<State>,
    /// It has a deletion timestamp.
    pub deleting: bool,
    /// Every container runs the image its spec asks for and is ready.
    pub containers_ready: bool,
    /// Ready, and containers ready: right after an image patch the status still shows the
    /// old container ready, which is not available.
    pub available: bool,
    /// A container waits with one of [`FAILED_REASONS`].
    pub stuck: bool,
    /// It declares the readiness gate.
    pub gated: bool,
    /// The gate condition's status, if the pod has one.
    pub gate: Option<String>,
    /// Where a gate patch puts the condition ([`gate_index`]).
    pub gate_at: Option<usize>,
}

impl Pod {
    /// Reads what the release needs out of `object`.
    pub fn read(object: Value) -> Pod {
        let containers_ready = containers_ready(&object);
        let stuck = object
            .at("/status/containerStatuses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|c| FAILED_REASONS.contains(&str_at(c, "/state/waiting/reason")));
        Pod {
            name: str_at(&object, "/metadata/name").to_owned(),
            ordinal: ordinal(&object),
            priority: label(&object, PRIORITY_LABEL)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            revision: label(&object, HASH_LABEL).unwrap_or("").to_owned(),
            state: annotation(&object, STATE).and_then(|s| serde_json::from_str(s).ok()),
            deleting: object.at("/metadata/deletionTimestamp").is_some(),
            containers_ready,
            available: pod_ready(&object) && containers_ready,
            stuck,
            gated: gated(&object),
            gate: gate_status(&object).map(str::to_owned),
            gate_at: gate_index(&object),
            object,
        }
    }

    /// Its progress when it is marked for an update to `target` and waits out the grace
    /// period.
    pub fn marked(&self, target: &str) -> Option<&State> {
        self.state
            .as_ref()
            .filter(|s| s.phase == Phase::Draining && s.revision == target)
    }

    /// Whether the pod, at the target revision, failed to start its containers: one
    /// waits with a failure reason, or the in-place update it got more than `timeout` ago
    /// has not brought them up and ready.
    pub fn failed(&self, timeout: Duration, now_ms: u64) -> bool {
        self.stuck
            || self.state.as_ref().is_some_and(|s| {
                s.phase == Phase::Patched
                    && s.revision == self.revision
                    && now_ms.saturating_sub(s.since_ms) > timeout.as_millis() as u64
                    && !self.containers_ready
            })
    }
}

/// Reads `sts`'s release situation; `Ok(None)` when the StatefulSet controller has not
/// recorded its target revision yet (look again later).
pub(crate) fn observe(
    ctx: &Context,
    sts_ref: &ObjectRef,
    sts: &Value,
) -> Result<Option<Observed>, Error> {
    let ns = sts_ref.namespace.clone().unwrap_or_default();
    let target = str_at(sts, "/status/updateRevision").to_owned();
    let generation = sts.at("/metadata/generation").and_then(Value::as_i64);
    let observed = sts.at("/status/observedGeneration").and_then(Value::as_i64);
    if target.is_empty() || observed < generation {
        return Ok(None);
    }
    let Some(target_template) = revision_template(ctx, &ns, &target) else {
        return Ok(None);
    };
    let uid = str_at(sts, "/metadata/uid");
    let selector = sts
        .at("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let pods: Vec<Pod> = slim::pods(ctx, &ns, &selector)?
        .into_iter()
        .filter(|p| {
            p.at("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|os| os.iter().any(|o| str_at(o, "/uid") == uid))
        })
        .map(Pod::read)
        .collect();
    let total = sts
        .at("/spec/replicas")
        .and_then(Value::as_u64)
        .unwrap_or(1);
    let now = ctx.now_ms();

    let by_name: BTreeMap<&str, &Pod> = pods.iter().map(|p| (p.name.as_str(), p)).collect();
    let mut in_flight: InFlight = load(ctx, &in_flight_key(sts_ref)).unwrap_or_default();
    // Forget what the cache now shows, or what is too old to trust.
    in_flight.retain(|name, sent| {
        now.saturating_sub(sent.since_ms) < IN_FLIGHT_TTL_MS
            && by_name.get(name.as_str()).is_some_and(|p| {
                let shown = if sent.phase == Phase::Draining {
                    p.state
                        .as_ref()
                        .is_some_and(|s| s.revision == sent.revision)
                } else {
                    p.revision == sent.revision
                };
                !shown && !p.deleting
            })
    });
    let mut gates: GatesSent = load(ctx, &gates_key(sts_ref)).unwrap_or_default();
    gates.retain(|name, (value, at)| {
        let want = if *value { "True" } else { "False" };
        now.saturating_sub(*at) < GATE_RETRY_MS
            && by_name
                .get(name.as_str())
                .is_some_and(|p| p.gate.as_deref() != Some(want))
    });
    let learned = load(ctx, &learned_key(sts_ref));

    let target_shape = in_place_shape(&target_template);
    let mut revisions = BTreeMap::new();
    for pod in pods.iter().filter(|p| p.revision != target) {
        if !revisions.contains_key(&pod.revision) {
            let template = revision_template(ctx, &ns, &pod.revision);
            let images_only = template
                .as_ref()
                .is_some_and(|t| in_place_shape(t) == target_shape);
            let revision = Revision {
                template,
                images_only,
            };
            revisions.insert(pod.revision.clone(), revision);
        }
    }
    Ok(Some(Observed {
        ns,
        target,
        target_template,
        revisions,
        total,
        now,
        pods,
        in_flight,
        gates,
        learned,
    }))
}
