//! Bosun's release plugin: declarative, in-place release of StatefulSets.
//!
//! A StatefulSet opts in with the annotation `release.bosun.dev/strategy` and uses
//! `updateStrategy: OnDelete`, so the StatefulSet controller never replaces pods itself: it
//! records the target revision (`status.updateRevision`) and creates missing pods at it.
//! This plugin moves the existing pods there, in order, at most `max-unavailable` at a time:
//!
//! - a pod whose revision differs from the target only in container images (and labels or
//!   annotations) is updated in place: marked (annotation [`STATE`], phase `Draining`),
//!   left for the grace period, then one JSON patch sets the images, the template's
//!   labels and annotations, the revision label and phase `Patched`; the kubelet restarts
//!   only the changed containers (same uid, restartCount + 1);
//! - any other difference evicts the pod (the StatefulSet controller recreates it at the
//!   target revision), unless the strategy is `InPlaceOnly`.
//!
//! Progress lives on the pods (label `controller-revision-hash` and annotation [`STATE`]),
//! so a restarted runtime resumes without redoing work; the JSON patch tests the pod's
//! old revision, so a stale cache can never update a pod twice. The release's status is
//! the StatefulSet annotation [`STATUS`] plus Events.
//!
//! # The readiness gate
//! A pod that declares the readiness gate [`GATE`] (`spec.readinessGates`, from the pod
//! template) is taken out of service before its images change: when it is marked, its
//! `release.bosun.dev/InPlaceReady` condition is set False (a patch of the pod's status
//! subresource), so the pod is not Ready — endpoints drop it — during the grace period and
//! the container restart; with a grace period the images are patched once the cache shows
//! the condition False, without one in the same pass, by a patch that tests the condition
//! is False; it is set True again once the kubelet runs the new images and the containers
//! are ready. The plugin also sets it True on any other gated pod whose
//! containers are ready (new pods, pods created by the StatefulSet controller), since
//! a gated pod is never Ready otherwise. Pods without the gate are patched as before.
//!
//! # Failures
//! A pod at the target revision counts as failed when a container waits with a pull or
//! crash reason ([`FAILED_REASONS`]), or when its in-place update has not brought the new
//! containers up, running and ready, within `release.bosun.dev/update-timeout-seconds`.

mod params;
mod slim;

use std::collections::BTreeMap;
use std::time::Duration;

use bosun_sdk::{
    Command, Context, Controller, Error, EventType, Metadata, ObjectRef, Outcome, Request, Verb,
    parse_config,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use params::{Order, Params, Strategy};

/// The pod annotation that keeps a pod's in-place update progress.
pub const STATE: &str = "release.bosun.dev/in-place-state";
/// The StatefulSet annotation that shows the release's status.
pub const STATUS: &str = "release.bosun.dev/status";
/// The readiness gate a pod template may declare: False while the pod is updated in place.
pub const GATE: &str = "release.bosun.dev/InPlaceReady";
/// The label the StatefulSet controller puts the revision in.
const HASH_LABEL: &str = "controller-revision-hash";
/// How long a command counts as in flight while the cache does not show it.
const IN_FLIGHT_TTL_MS: u64 = 30_000;
/// Container waiting reasons that count a pod as failed.
const FAILED_REASONS: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "CrashLoopBackOff",
    "CreateContainerError",
    "InvalidImageName",
];

/// The plugin's configuration: `{"pollMs": 1000}`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
struct Config {
    /// How often a StatefulSet with a release in progress is looked at again.
    poll_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self { poll_ms: 1000 }
    }
}

struct Release {
    poll: Duration,
}

/// A pod's in-place update progress ([`STATE`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    /// The revision the pod is being moved to.
    revision: String,
    /// `Draining` (marked, waiting the grace period) or `Patched`.
    phase: String,
    /// When the phase began, in ms since the epoch.
    since_ms: u64,
}

/// The status the plugin writes on the StatefulSet ([`STATUS`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    revision: String,
    updated: u64,
    ready: u64,
    total: u64,
    failed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    paused: Option<String>,
}

/// JSON pointer lookups for literal paths (no `~` escapes): serde_json's `pointer`
/// allocates to unescape every token, which was most of a reconcile's time.
trait At {
    fn at(&self, path: &str) -> Option<&Value>;
}

impl At for Value {
    fn at(&self, path: &str) -> Option<&Value> {
        path.split('/').skip(1).try_fold(self, |v, token| match v {
            Value::Object(m) => m.get(token),
            Value::Array(a) => a.get(token.parse::<usize>().ok()?),
            _ => None,
        })
    }
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.at(pointer).and_then(Value::as_str).unwrap_or("")
}

fn annotation<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.at("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

fn label<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.at("/metadata/labels")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

/// `/` and `~` escaped for a JSON pointer.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn ordinal(pod: &Value) -> u64 {
    str_at(pod, "/metadata/name")
        .rsplit('-')
        .next()
        .and_then(|i| i.parse().ok())
        .unwrap_or(0)
}

fn containers(v: &Value) -> &[Value] {
    v.get("containers")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn pod_ready(pod: &Value) -> bool {
    pod.at("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| str_at(c, "/type") == "Ready" && str_at(c, "/status") == "True")
        })
}

/// Ready, and the kubelet runs what the spec asks: right after an image patch the status
/// still shows the old container ready, which is not available.
fn available(pod: &Value) -> bool {
    pod_ready(pod) && containers_ready(pod)
}

/// Whether the pod declares the readiness gate [`GATE`].
fn gated(pod: &Value) -> bool {
    pod.at("/spec/readinessGates")
        .and_then(Value::as_array)
        .is_some_and(|gs| gs.iter().any(|g| str_at(g, "/conditionType") == GATE))
}

/// The status (`True`, `False`) of the [`GATE`] condition, if the pod has one.
fn gate_status(pod: &Value) -> Option<&str> {
    pod.at("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| str_at(c, "/type") == GATE)
        .map(|c| str_at(c, "/status"))
}

/// Every container the spec asks for runs its image (the kubelet reports an imageID for
/// it) and is ready, whatever the pod's readiness gates say.
fn containers_ready(pod: &Value) -> bool {
    if pod.at("/metadata/deletionTimestamp").is_some() {
        return false;
    }
    let statuses: BTreeMap<&str, &Value> = pod
        .at("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| (str_at(c, "/name"), c))
        .collect();
    pod.get("spec")
        .map(containers)
        .unwrap_or(&[])
        .iter()
        .all(|c| {
            statuses.get(str_at(c, "/name")).is_some_and(|s| {
                str_at(s, "/image") == str_at(c, "/image")
                    && !str_at(s, "/imageID").is_empty()
                    && s.get("ready").and_then(Value::as_bool) == Some(true)
            })
        })
}

/// Whether a pod at the target revision failed to start its containers: a container
/// waits with one of [`FAILED_REASONS`], or the in-place update it got more than `timeout`
/// ago has not brought its containers up and ready.
fn failed(pod: &Value, timeout: Duration, now_ms: u64) -> bool {
    let waiting = pod
        .at("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| FAILED_REASONS.contains(&str_at(c, "/state/waiting/reason")));
    let timed_out = || {
        let Some(state) =
            annotation(pod, STATE).and_then(|s| serde_json::from_str::<State>(s).ok())
        else {
            return false;
        };
        state.phase == "Patched"
            && state.revision == label(pod, HASH_LABEL).unwrap_or("")
            && now_ms.saturating_sub(state.since_ms) > timeout.as_millis() as u64
            && !containers_ready(pod)
    };
    waiting || timed_out()
}

/// A status-subresource JSON patch that sets the [`GATE`] condition to `value`, guarded by
/// a `test` on what the cache shows, so a stale cache can neither clobber another
/// condition nor add the gate twice: when the condition is there, the type at its index;
/// when it is appended, the whole list (a test of the last element would pass after
/// someone else appended the gate, and the kubelet reads a duplicate True as Ready). The
/// kubelet rewrites the list only when a condition changes status, so the whole-list
/// guard rarely fails; when it does, the next pass sees the fresh list. `None` when the
/// pod has no conditions yet (the kubelet has not reported it): there is nothing to
/// guard against and nothing to gate.
fn gate_patch(pod: &Value, value: bool, now_rfc3339: &str) -> Option<Value> {
    let conditions = pod.at("/status/conditions").and_then(Value::as_array)?;
    let status = if value { "True" } else { "False" };
    let condition = json!({
        "type": GATE, "status": status, "lastTransitionTime": now_rfc3339,
        "reason": if value { "InPlaceUpdateDone" } else { "InPlaceUpdating" },
    });
    Some(match gate_position(pod) {
        Some(i) => json!([
            {"op": "test", "path": format!("/status/conditions/{i}/type"), "value": GATE},
            {"op": "replace", "path": format!("/status/conditions/{i}"), "value": condition},
        ]),
        None => json!([
            {"op": "test", "path": "/status/conditions", "value": conditions},
            {"op": "add", "path": "/status/conditions/-", "value": condition},
        ]),
    })
}

/// The index of the [`GATE`] condition in the pod's status as the cache shows it.
fn gate_position(pod: &Value) -> Option<usize> {
    pod.at("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .position(|c| str_at(c, "/type") == GATE)
}

/// Where [`gate_patch`] puts the [`GATE`] condition: its index, or the end of the list.
/// `None` when the pod has no conditions yet (nothing to gate).
fn gate_index(pod: &Value) -> Option<usize> {
    let conditions = pod.at("/status/conditions").and_then(Value::as_array)?;
    Some(gate_position(pod).unwrap_or(conditions.len()))
}

/// The template with images, labels and annotations removed: two templates whose
/// remainders are equal differ only in what an in-place update can change.
fn in_place_shape(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(meta) = t.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("labels");
        meta.remove("annotations");
    }
    for list in ["containers", "initContainers"] {
        if let Some(cs) = t
            .pointer_mut(&format!("/spec/{list}"))
            .and_then(Value::as_array_mut)
        {
            for c in cs {
                if let Some(c) = c.as_object_mut()
                    && list == "containers"
                {
                    c.remove("image");
                }
            }
        }
    }
    t
}

fn revision_template(ctx: &Context, ns: &str, revision: &str) -> Option<Value> {
    let r = ObjectRef::new("apps/v1", "ControllerRevision")
        .namespaced(ns)
        .named(revision);
    ctx.get(&r)?.at("/data/spec/template").cloned()
}

fn pod_ref(ns: &str, pod: &Value) -> ObjectRef {
    ObjectRef::new("v1", "Pod")
        .namespaced(ns)
        .named(str_at(pod, "/metadata/name"))
}

/// Commands the plugin submitted whose effect the cache may not show yet, per pod name.
/// Kept as plugin state per StatefulSet.
type InFlight = BTreeMap<String, State>;

fn sent(revision: &str, phase: &str, since_ms: u64) -> State {
    State {
        revision: revision.to_owned(),
        phase: phase.to_owned(),
        since_ms,
    }
}

/// Plugin state under `key`, as JSON; `None` when there is none or it cannot be read
/// (the plugin rebuilds it from the cluster).
fn load<T: serde::de::DeserializeOwned>(ctx: &Context, key: &str) -> Option<T> {
    ctx.state_get(key)
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// Keeps `value` as plugin state under `key`, as JSON.
fn keep<T: Serialize>(ctx: &mut Context, key: &str, value: &T) -> Result<(), Error> {
    let bytes = serde_json::to_vec(value).map_err(Error::from)?;
    ctx.state_set(key, &bytes)
}

fn in_flight_key(sts: &ObjectRef) -> String {
    format!("in-flight/{sts}")
}

/// Readiness-gate patches the plugin submitted, per pod name: the value and when, so a
/// lagging cache does not make every pass submit the same patch again.
type GatesSent = BTreeMap<String, (bool, u64)>;

/// How soon a pod whose containers should be ready by now is looked at again.
const RECHECK_MS: u64 = 25;

/// How often, at most, the status annotation is rewritten while only its counts move.
const STATUS_INTERVAL_MS: u64 = 1_000;

/// How long a submitted gate patch is trusted to be on its way before it is sent again.
const GATE_RETRY_MS: u64 = 2_000;

fn gates_key(sts: &ObjectRef) -> String {
    format!("gates/{sts}")
}

/// How long, in ms, pods of this StatefulSet took from the in-place patch to running their
/// new containers ready (plugin state).
fn learned_key(sts: &ObjectRef) -> String {
    format!("ready-after/{sts}")
}

fn status_key(sts: &ObjectRef) -> String {
    format!("status-at/{sts}")
}

/// The labels (or annotations, per `field`) the target template sets and the pod lacks,
/// and those only the old template set, as JSON patch operations; `keep` are the keys the
/// controllers own.
fn metadata_ops(
    pod: &Value,
    old: Option<&Value>,
    target: &Value,
    field: &str,
    keep: &[&str],
) -> Vec<Value> {
    let of = |v: &Value| {
        v.at(&format!("/metadata/{field}"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let (have, want) = (of(pod), of(target));
    let gone = old.map(of).unwrap_or_default();
    let path = |k: &str| format!("/metadata/{field}/{}", escape(k));
    let mut ops: Vec<Value> = want
        .iter()
        .filter(|(k, v)| !keep.contains(&k.as_str()) && have.get(k.as_str()) != Some(v))
        .map(|(k, v)| json!({"op": "add", "path": path(k), "value": v}))
        .collect();
    ops.extend(
        gone.keys()
            .filter(|k| {
                !want.contains_key(k.as_str())
                    && have.contains_key(k.as_str())
                    && !keep.contains(&k.as_str())
            })
            .map(|k| json!({"op": "remove", "path": path(k)})),
    );
    ops
}

impl Release {
    fn event(&self, ctx: &mut Context, sts: &ObjectRef, kind: EventType, reason: &str, msg: &str) {
        if let Err(e) = ctx.submit(Command::event(sts, kind, reason, msg)) {
            ctx.warn(format!("{sts}: event {reason} refused: {e}"));
        }
    }

    /// Writes `status` and the matching Events when it differs from what the StatefulSet
    /// shows. While only the counts move, at most once per [`STATUS_INTERVAL_MS`] (every
    /// write is a change of the StatefulSet, which calls the plugin again), unless
    /// `settled`: the release is over and the plugin will not look again.
    fn publish(
        &self,
        ctx: &mut Context,
        sts_ref: &ObjectRef,
        sts: &Value,
        status: &Status,
        settled: bool,
    ) {
        let old: Option<Status> =
            annotation(sts, STATUS).and_then(|s| serde_json::from_str(s).ok());
        if old.as_ref() == Some(status) {
            return;
        }
        let done = |s: &Status| s.total > 0 && s.updated == s.total && s.ready == s.total;
        let counts_only = !settled
            && old.as_ref().is_some_and(|o| {
                o.revision == status.revision
                    && o.paused == status.paused
                    && o.failed == status.failed
                    && !done(status)
            });
        let key = status_key(sts_ref);
        let now = ctx.now_ms();
        let last: u64 = load(ctx, &key).unwrap_or(0);
        if counts_only && now.saturating_sub(last) < STATUS_INTERVAL_MS {
            return;
        }
        if let Err(e) = keep(ctx, &key, &now) {
            ctx.warn(format!("{sts_ref}: keeping the status time: {e}"));
        }
        let text = serde_json::to_string(status).unwrap_or_default();
        let patch = json!({"metadata": {"annotations": {STATUS: text}}});
        if let Err(e) = ctx.submit(Command::merge_patch(sts_ref, &patch)) {
            ctx.warn(format!("{sts_ref}: status patch refused: {e}"));
        }
        let old = old.unwrap_or_default();
        if old.revision != status.revision && status.updated < status.total {
            let msg = format!(
                "release to revision {} started: {}/{} pods updated",
                status.revision, status.updated, status.total
            );
            self.event(ctx, sts_ref, EventType::Normal, "ReleaseStarted", &msg);
        }
        if status.paused.is_some() && status.paused != old.paused {
            let msg = format!(
                "release to revision {} paused: {}",
                status.revision,
                status.paused.as_deref().unwrap_or("")
            );
            self.event(ctx, sts_ref, EventType::Warning, "ReleasePaused", &msg);
        }
        if done(status) && !(done(&old) && old.revision == status.revision) {
            let msg = format!(
                "release to revision {} completed: {}/{} pods updated and ready",
                status.revision, status.updated, status.total
            );
            self.event(ctx, sts_ref, EventType::Normal, "ReleaseCompleted", &msg);
        }
    }

    /// A release that cannot start: one Warning Event per distinct reason.
    fn refuse(&self, ctx: &mut Context, sts_ref: &ObjectRef, sts: &Value, reason: &str, msg: &str) {
        let status = Status {
            paused: Some(msg.to_owned()),
            ..Status::default()
        };
        let old: Option<Status> =
            annotation(sts, STATUS).and_then(|s| serde_json::from_str(s).ok());
        if old.as_ref() == Some(&status) {
            return;
        }
        let text = serde_json::to_string(&status).unwrap_or_default();
        let patch = json!({"metadata": {"annotations": {STATUS: text}}});
        if let Err(e) = ctx.submit(Command::merge_patch(sts_ref, &patch)) {
            ctx.warn(format!("{sts_ref}: status patch refused: {e}"));
        }
        self.event(ctx, sts_ref, EventType::Warning, reason, msg);
    }

    /// Sets `pod`'s [`GATE`] condition to `value` unless the cache or a recent patch
    /// already does; false when the pipe refused the patch (retried on a later pass).
    fn set_gate(
        &self,
        ctx: &mut Context,
        gates: &mut GatesSent,
        ns: &str,
        pod: &Value,
        value: bool,
    ) -> bool {
        let want = if value { "True" } else { "False" };
        let name = str_at(pod, "/metadata/name");
        let now = ctx.now_ms();
        let recent = gates
            .get(name)
            .is_some_and(|(v, at)| *v == value && now.saturating_sub(*at) < GATE_RETRY_MS);
        if gate_status(pod) == Some(want) || recent {
            return true;
        }
        let Some(patch) = gate_patch(pod, value, &ctx.now_rfc3339()) else {
            return true;
        };
        match ctx.submit(Command::json_patch(&pod_ref(ns, pod), &patch)) {
            Ok(_) => {
                ctx.debug(format!("pod {ns}/{name}: readiness gate {GATE} set {want}"));
                gates.insert(name.to_owned(), (value, now));
                true
            }
            Err(refused) => {
                ctx.warn(format!(
                    "pod {ns}/{name}: readiness gate {GATE}={want}: {refused}; retrying later"
                ));
                false
            }
        }
    }

    fn release(
        &self,
        ctx: &mut Context,
        sts_ref: &ObjectRef,
        sts: &Value,
    ) -> Result<Outcome, Error> {
        let params = match Params::of(sts) {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(Outcome::done()),
            Err(invalid) => {
                let msg = format!("{invalid}; the release does not start");
                self.refuse(ctx, sts_ref, sts, "InvalidReleaseAnnotation", &msg);
                return Ok(Outcome::done());
            }
        };
        if str_at(sts, "/spec/updateStrategy/type") != "OnDelete" {
            let msg = "the release plugin needs spec.updateStrategy.type: OnDelete (the \
                       StatefulSet controller would replace pods itself); set it, or remove \
                       the release.bosun.dev/strategy annotation";
            self.refuse(ctx, sts_ref, sts, "UnsupportedUpdateStrategy", msg);
            return Ok(Outcome::done());
        }
        let ns = sts_ref.namespace.clone().unwrap_or_default();
        let target = str_at(sts, "/status/updateRevision").to_owned();
        let generation = sts.at("/metadata/generation").and_then(Value::as_i64);
        let observed = sts.at("/status/observedGeneration").and_then(Value::as_i64);
        if target.is_empty() || observed < generation {
            // The StatefulSet controller has not recorded the new revision yet.
            return Ok(Outcome::requeue_after(self.poll));
        }
        let Some(target_template) = revision_template(ctx, &ns, &target) else {
            return Ok(Outcome::requeue_after(self.poll));
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
        let pods: Vec<Value> = slim::pods(ctx, &ns, &selector)?
            .into_iter()
            .filter(|p| {
                p.at("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .is_some_and(|os| os.iter().any(|o| str_at(o, "/uid") == uid))
            })
            .collect();
        let total = sts
            .at("/spec/replicas")
            .and_then(Value::as_u64)
            .unwrap_or(1);
        let now = ctx.now_ms();

        let key = in_flight_key(sts_ref);
        let mut in_flight: InFlight = load(ctx, &key).unwrap_or_default();
        let by_name: BTreeMap<&str, &Value> = pods
            .iter()
            .map(|p| (str_at(p, "/metadata/name"), p))
            .collect();
        // Forget what the cache now shows, or what is too old to trust.
        in_flight.retain(|name, sent| {
            now.saturating_sub(sent.since_ms) < IN_FLIGHT_TTL_MS
                && by_name.get(name.as_str()).is_some_and(|p| {
                    let shown = if sent.phase == "Draining" {
                        annotation(p, STATE)
                            .and_then(|s| serde_json::from_str::<State>(s).ok())
                            .is_some_and(|s| s.revision == sent.revision)
                    } else {
                        label(p, HASH_LABEL) == Some(sent.revision.as_str())
                    };
                    !shown && p.at("/metadata/deletionTimestamp").is_none()
                })
        });

        let gates_key = gates_key(sts_ref);
        let mut gates: GatesSent = load(ctx, &gates_key).unwrap_or_default();
        gates.retain(|name, (value, at)| {
            let want = if *value { "True" } else { "False" };
            now.saturating_sub(*at) < GATE_RETRY_MS
                && by_name
                    .get(name.as_str())
                    .is_some_and(|p| gate_status(p) != Some(want))
        });

        let rev_of = |p: &Value| label(p, HASH_LABEL).unwrap_or("").to_owned();
        let state_of = |p: &Value| -> Option<State> {
            annotation(p, STATE).and_then(|s| serde_json::from_str(s).ok())
        };
        let at_target: Vec<&Value> = pods.iter().filter(|p| rev_of(p) == target).collect();
        let updated = at_target.len() as u64;
        let ready = pods.iter().filter(|p| available(p)).count() as u64;
        let failures = at_target
            .iter()
            .filter(|p| failed(p, params.update_timeout, now))
            .count() as u64;
        let draining =
            |p: &Value| state_of(p).is_some_and(|s| s.phase == "Draining" && s.revision == target);
        // When the pods patched in place should run their new containers ready, from how
        // long that took for the pods before them: the plugin is not called when a pod's
        // containers become ready (only the StatefulSet is watched), so it comes back then
        // instead of waiting for its poll.
        let learned_key = learned_key(sts_ref);
        let known: Option<u64> = load(ctx, &learned_key);
        let mut learned = known;
        let mut expected = None::<u64>;
        for pod in &pods {
            let Some(state) =
                state_of(pod).filter(|s| s.phase == "Patched" && s.revision == target)
            else {
                continue;
            };
            if rev_of(pod) != target || failed(pod, params.update_timeout, now) {
                continue;
            }
            if containers_ready(pod) {
                if gate_status(pod) == Some("False")
                    && !gates.contains_key(str_at(pod, "/metadata/name"))
                {
                    // Seen ready for the first time (the gate is set True below): an
                    // upper bound of how long it took. Follow a faster pod at once, a
                    // slower one gradually.
                    let took = now.saturating_sub(state.since_ms);
                    learned = Some(
                        learned.map_or(took, |l| if took < l { took } else { (l * 4 + took) / 5 }),
                    );
                }
            } else if let Some(l) = learned {
                // Due: come back then. A little late (its status not in the cache yet):
                // look again shortly, for as long as half the usual time; later than that
                // it is slow or failing, and the poll is soon enough.
                let due = state.since_ms + l;
                let at = if due > now {
                    Some(due)
                } else {
                    (now - due < (l / 2).max(50)).then_some(now + RECHECK_MS)
                };
                if let Some(at) = at {
                    expected = Some(expected.map_or(at, |e| e.min(at)));
                }
            }
        }
        if let Some(l) = learned.filter(|_| learned != known) {
            keep(ctx, &learned_key, &l)?;
        }
        // A gated pod that is not being updated and runs ready containers is back in
        // service (after its update, or new from the StatefulSet controller).
        for pod in pods.iter().filter(|p| {
            gated(p)
                && !draining(p)
                && !in_flight.contains_key(str_at(p, "/metadata/name"))
                && containers_ready(p)
        }) {
            self.set_gate(ctx, &mut gates, &ns, pod, true);
        }
        let mut wake = expected.map(|at| Duration::from_millis(at - now));
        // Unavailable: missing, not available, marked for update, or just acted on.
        let present = pods
            .iter()
            .filter(|p| p.at("/metadata/deletionTimestamp").is_none());
        let unavailable = total.saturating_sub(present.count() as u64)
            + pods
                .iter()
                .filter(|p| {
                    !available(p)
                        || draining(p)
                        || in_flight.contains_key(str_at(p, "/metadata/name"))
                })
                .count() as u64;

        let mut paused = None;
        let threshold = params.failure_threshold.of(total, 0);
        if failures > threshold {
            paused = Some(format!(
                "{failures} pods failed to start at revision {target} (threshold {threshold})"
            ));
        } else if params.paused {
            paused = Some("paused by annotation release.bosun.dev/paused".to_owned());
        }

        let mut candidates: Vec<&Value> = pods
            .iter()
            .filter(|p| {
                rev_of(p) != target
                    && ordinal(p) >= params.partition
                    && p.at("/metadata/deletionTimestamp").is_none()
                    && !in_flight.contains_key(str_at(p, "/metadata/name"))
            })
            .collect();
        match params.order {
            Order::Ordinal => candidates.sort_by_key(|p| std::cmp::Reverse(ordinal(p))),
            Order::Priority => candidates.sort_by_key(|p| {
                let prio: i64 = label(p, params::PRIORITY_LABEL)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                std::cmp::Reverse((prio, ordinal(p)))
            }),
        }
        let max_unavailable = params.max_unavailable.of(total, 1);
        let mut budget = max_unavailable.saturating_sub(unavailable);
        let mut blocked = None;
        // Old revisions' templates and whether they differ from the target in place only:
        // read once per reconcile, not once per pod.
        let target_shape = in_place_shape(&target_template);
        let mut templates: BTreeMap<String, (Option<Value>, bool)> = BTreeMap::new();
        if paused.is_none() {
            for pod in candidates {
                let marked = draining(pod);
                // A pod that is not available already does not cost any budget.
                let cost = u64::from(available(pod));
                if !marked && budget < cost {
                    continue;
                }
                let name = str_at(pod, "/metadata/name").to_owned();
                let old_rev = rev_of(pod);
                let (old_template, same_shape) =
                    &*templates.entry(old_rev.clone()).or_insert_with(|| {
                        let t = revision_template(ctx, &ns, &old_rev);
                        let same = t
                            .as_ref()
                            .is_some_and(|t| in_place_shape(t) == target_shape);
                        (t, same)
                    });
                let (old_template, same_shape) = (old_template.as_ref(), *same_shape);
                let in_place = params.strategy != Strategy::Recreate && same_shape;
                // Marked earlier: the grace period may be over.
                if marked {
                    if gated(pod) && !self.set_gate(ctx, &mut gates, &ns, pod, false) {
                        break;
                    }
                    let since = state_of(pod).map_or(now, |s| s.since_ms);
                    let due = since + params.grace_period.as_millis() as u64;
                    if now < due {
                        let left = Duration::from_millis(due - now);
                        wake = Some(wake.map_or(left, |w| w.min(left)));
                        continue;
                    }
                    if in_place {
                        if gated(pod) && gate_status(pod) != Some("False") {
                            // Out of service first: patch once the cache shows it.
                            wake = Some(wake.map_or(self.poll, |w| w.min(self.poll)));
                            continue;
                        }
                        let guard = gated(pod).then(|| gate_position(pod)).flatten();
                        if !self.patch_images(
                            ctx,
                            &ns,
                            pod,
                            (&old_rev, old_template),
                            (&target, &target_template),
                            guard,
                            now,
                        )? {
                            break;
                        }
                        in_flight.insert(name, sent(&target, "Patched", now));
                    }
                    continue;
                }
                if !in_place {
                    if params.strategy == Strategy::InPlaceOnly {
                        blocked = Some(format!(
                            "pod {name} differs from revision {target} in more than images and \
                             the strategy is InPlaceOnly"
                        ));
                        break;
                    }
                    if let Err(refused) = ctx.submit(Command::evict(&pod_ref(&ns, pod))) {
                        ctx.warn(format!(
                            "{sts_ref}: evicting {name}: {refused}; retrying later"
                        ));
                        break;
                    }
                    ctx.info(format!(
                        "{sts_ref}: evicting {name} to recreate it at {target}"
                    ));
                    in_flight.insert(name, sent(&target, "Evicted", now));
                } else if params.grace_period.is_zero() {
                    // No grace period: out of service and patched in one pass. The pipe
                    // runs a plugin's commands in order, and the image patch tests that
                    // the gate condition is False, so it never reaches a pod whose
                    // gate patch failed (it is retried on a later pass).
                    let guard = if gated(pod) {
                        if !self.set_gate(ctx, &mut gates, &ns, pod, false) {
                            break;
                        }
                        gate_index(pod)
                    } else {
                        None
                    };
                    if !self.patch_images(
                        ctx,
                        &ns,
                        pod,
                        (&old_rev, old_template),
                        (&target, &target_template),
                        guard,
                        now,
                    )? {
                        break;
                    }
                    in_flight.insert(name, sent(&target, "Patched", now));
                } else {
                    let state = State {
                        revision: target.clone(),
                        phase: "Draining".into(),
                        since_ms: now,
                    };
                    // Out of service first (commands run in order), then the mark.
                    if gated(pod) && !self.set_gate(ctx, &mut gates, &ns, pod, false) {
                        break;
                    }
                    let text = serde_json::to_string(&state).map_err(Error::from)?;
                    let patch = json!({"metadata": {"annotations": {STATE: text}}});
                    if let Err(refused) =
                        ctx.submit(Command::merge_patch(&pod_ref(&ns, pod), &patch))
                    {
                        ctx.warn(format!(
                            "{sts_ref}: marking {name}: {refused}; retrying later"
                        ));
                        break;
                    }
                    let left = params.grace_period;
                    wake = Some(wake.map_or(left, |w| w.min(left)));
                    in_flight.insert(name, state);
                }
                budget -= cost;
            }
        }
        if in_flight.is_empty() {
            ctx.state_delete(&key);
        } else {
            keep(ctx, &key, &in_flight)?;
        }
        if gates.is_empty() {
            ctx.state_delete(&gates_key);
        } else {
            keep(ctx, &gates_key, &gates)?;
        }
        let status = Status {
            revision: target,
            updated,
            ready,
            total,
            failed: failures,
            paused: paused.or(blocked),
        };
        let done = updated >= total.saturating_sub(params.partition.min(total)) && ready == total;
        let settled = done && status.paused.is_none() && in_flight.is_empty();
        // Settled, the plugin is not called again until the StatefulSet changes: the
        // status must be written now.
        self.publish(ctx, sts_ref, sts, &status, settled);
        if settled {
            return Ok(Outcome::done());
        }
        let delay = wake.map_or(self.poll, |w| {
            w.min(self.poll).max(Duration::from_millis(10))
        });
        Ok(Outcome::requeue_after(delay))
    }

    /// One JSON patch: test the old revision (a stale cache cannot update a pod twice)
    /// and, with `gate` (the index of the [`GATE`] condition), that the pod is out of
    /// service; set the changed images, the target template's labels and annotations
    /// (dropping those only the old template had), the revision label and the progress
    /// annotation.
    #[expect(
        clippy::too_many_arguments,
        reason = "two call sites, all plain inputs"
    )]
    fn patch_images(
        &self,
        ctx: &mut Context,
        ns: &str,
        pod: &Value,
        (old_rev, old_template): (&str, Option<&Value>),
        (target, template): (&str, &Value),
        gate: Option<usize>,
        now: u64,
    ) -> Result<bool, Error> {
        let wanted: BTreeMap<&str, &str> = template
            .get("spec")
            .map(containers)
            .unwrap_or(&[])
            .iter()
            .map(|c| (str_at(c, "/name"), str_at(c, "/image")))
            .collect();
        let label_path = format!("/metadata/labels/{}", escape(HASH_LABEL));
        let mut ops = vec![json!({"op": "test", "path": label_path, "value": old_rev})];
        if let Some(i) = gate {
            ops.push(json!({"op": "test", "path": format!("/status/conditions/{i}/type"), "value": GATE}));
            ops.push(json!({"op": "test", "path": format!("/status/conditions/{i}/status"), "value": "False"}));
        }
        for (i, c) in pod
            .get("spec")
            .map(containers)
            .unwrap_or(&[])
            .iter()
            .enumerate()
        {
            if let Some(image) = wanted.get(str_at(c, "/name"))
                && *image != str_at(c, "/image")
            {
                ops.push(json!({"op": "replace", "path": format!("/spec/containers/{i}/image"), "value": image}));
            }
        }
        ops.extend(metadata_ops(
            pod,
            old_template,
            template,
            "labels",
            &[HASH_LABEL],
        ));
        ops.push(json!({"op": "replace", "path": label_path, "value": target}));
        let state = State {
            revision: target.to_owned(),
            phase: "Patched".into(),
            since_ms: now,
        };
        let text = serde_json::to_string(&state).map_err(Error::from)?;
        if pod.at("/metadata/annotations").is_none() {
            ops.push(json!({"op": "add", "path": "/metadata/annotations", "value": {}}));
        }
        ops.extend(metadata_ops(
            pod,
            old_template,
            template,
            "annotations",
            &[STATE, STATUS],
        ));
        ops.push(json!({"op": "add", "path": format!("/metadata/annotations/{}", escape(STATE)), "value": text}));
        let name = str_at(pod, "/metadata/name");
        if let Err(refused) = ctx.submit(Command::json_patch(&pod_ref(ns, pod), &Value::Array(ops)))
        {
            ctx.warn(format!(
                "pod {ns}/{name}: in-place patch {refused}; retrying later"
            ));
            return Ok(false);
        }
        ctx.info(format!(
            "pod {ns}/{name}: images patched in place to revision {target}"
        ));
        Ok(true)
    }
}

impl Controller for Release {
    fn metadata() -> Metadata {
        Metadata::new("release", env!("CARGO_PKG_VERSION"))
            .description("declarative in-place release of StatefulSets (release.bosun.dev)")
            .subscribe("apps/v1", "StatefulSet")
            .permit(
                "apps/v1",
                "StatefulSet",
                &[Verb::Read, Verb::Patch, Verb::RecordEvent],
            )
            .permit("apps/v1", "ControllerRevision", &[Verb::Read])
            .permit(
                "v1",
                "Pod",
                &[Verb::Read, Verb::Patch, Verb::Evict, Verb::RecordEvent],
            )
    }

    fn init(config: &str) -> Result<Self, Error> {
        let config: Config = parse_config(config)?;
        if config.poll_ms == 0 {
            return Err(Error::msg("invalid config: `pollMs` must be positive"));
        }
        Ok(Self {
            poll: Duration::from_millis(config.poll_ms),
        })
    }

    fn reconcile(&self, ctx: &mut Context, req: &Request) -> Result<Outcome, Error> {
        if req.is_deleted() {
            ctx.state_delete(&in_flight_key(req.target()));
            ctx.state_delete(&gates_key(req.target()));
            ctx.state_delete(&status_key(req.target()));
            ctx.state_delete(&learned_key(req.target()));
            return Ok(Outcome::done());
        }
        let Some(sts) = ctx.get(req.target()) else {
            return Ok(Outcome::done());
        };
        self.release(ctx, req.target(), &sts)
    }
}

bosun_sdk::export_controller!(Release);

#[cfg(test)]
mod tests;
