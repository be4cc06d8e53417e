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
//!
//! # A pass
//! Each reconcile [observes](observe) the StatefulSet's pods and the plugin's records,
//! [plans](plan) what to do from that alone (no host calls, so the decisions are unit
//! tested on plain data) and [acts](act): sends the plan's commands in order, stopping at
//! the first refused, and writes the status.

mod act;
mod observe;
mod params;
mod plan;
mod slim;

use std::collections::BTreeMap;
use std::time::Duration;

use bosun_sdk::{
    Command, Context, Controller, Error, EventType, Metadata, ObjectRef, Outcome, Request, Verb,
    parse_config,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use params::Params;

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

/// A pod's in-place update progress ([`STATE`]), and a command in flight ([`InFlight`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    /// The revision the pod is being moved to.
    revision: String,
    phase: Phase,
    /// When the phase began, in ms since the epoch.
    since_ms: u64,
}

impl State {
    fn new(revision: &str, phase: Phase, since_ms: u64) -> State {
        State {
            revision: revision.to_owned(),
            phase,
            since_ms,
        }
    }
}

/// Where a pod is in its update. Serialized by variant name (`"Draining"`), as pods and
/// plugin state already carry it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Phase {
    /// Marked for the update, waiting out the grace period.
    Draining,
    /// Images patched in place.
    Patched,
    /// Evicted, to be recreated by the StatefulSet controller (in flight only, never on
    /// a pod).
    Evicted,
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

impl Status {
    /// The status `sts` shows ([`STATUS`]), if readable.
    fn shown(sts: &Value) -> Option<Status> {
        annotation(sts, STATUS).and_then(|s| serde_json::from_str(s).ok())
    }

    /// Writes the status on the StatefulSet.
    fn write(&self, ctx: &mut Context, sts_ref: &ObjectRef) {
        let text = serde_json::to_string(self).unwrap_or_default();
        let patch = json!({"metadata": {"annotations": {STATUS: text}}});
        if let Err(e) = ctx.submit(Command::merge_patch(sts_ref, &patch)) {
            ctx.warn(format!("{sts_ref}: status patch refused: {e}"));
        }
    }
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
        let old = Status::shown(sts);
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
        status.write(ctx, sts_ref);
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
        if Status::shown(sts).as_ref() == Some(&status) {
            return;
        }
        status.write(ctx, sts_ref);
        self.event(ctx, sts_ref, EventType::Warning, reason, msg);
    }

    /// One pass: refuse parameters the plugin cannot follow, then observe, plan and act.
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
        let Some(seen) = observe::observe(ctx, sts_ref, sts)? else {
            // The StatefulSet controller has not recorded the new revision yet.
            return Ok(Outcome::requeue_after(self.poll));
        };
        let plan = plan::plan(&seen, &params, self.poll);
        self.act(ctx, sts_ref, sts, seen, plan)
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
