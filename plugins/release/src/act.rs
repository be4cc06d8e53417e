//! Carries out a [`Plan`]: its commands in order, then the plugin state that remembers
//! them and the release's status.

use std::collections::BTreeMap;
use std::time::Duration;

use bosun_sdk::{Command, Context, Error, ObjectRef, Outcome};
use serde_json::{Value, json};

use crate::observe::{Observed, Pod};
use crate::plan::{Plan, Step};
use crate::{
    At as _, GATE, GATE_RETRY_MS, GatesSent, HASH_LABEL, Phase, Release, STATE, STATUS, State,
    Status, containers, escape, gate_patch, gate_status, gates_key, in_flight_key, keep,
    learned_key, pod_ref, str_at,
};

impl Release {
    /// Sends `plan`'s commands in order until the pipe refuses one (the rest waits for a
    /// later pass), keeps what is in flight, writes the status and says when to come back.
    pub(crate) fn act(
        &self,
        ctx: &mut Context,
        sts_ref: &ObjectRef,
        sts: &Value,
        mut seen: Observed,
        plan: Plan,
    ) -> Result<Outcome, Error> {
        if let Some(learned) = plan.learned {
            keep(ctx, &learned_key(sts_ref), &learned)?;
        }
        for &i in &plan.open {
            self.set_gate(ctx, &mut seen.gates, &seen.ns, &seen.pods[i].object, true);
        }
        let mut wake = plan.wake;
        let mut blocked = None;
        for step in plan.steps {
            let sent = match step {
                Step::Wait(left) => {
                    wake = Some(wake.map_or(left, |w| w.min(left)));
                    true
                }
                Step::Block(why) => {
                    blocked = Some(why);
                    true
                }
                Step::Close(i) => {
                    self.set_gate(ctx, &mut seen.gates, &seen.ns, &seen.pods[i].object, false)
                }
                Step::Mark(i) => send(ctx, sts_ref, &mut seen, i, Phase::Draining, None)?,
                Step::Patch(i, guard) => send(ctx, sts_ref, &mut seen, i, Phase::Patched, guard)?,
                Step::Evict(i) => send(ctx, sts_ref, &mut seen, i, Phase::Evicted, None)?,
            };
            if !sent {
                break;
            }
        }
        forget_or_keep(ctx, &in_flight_key(sts_ref), &seen.in_flight)?;
        forget_or_keep(ctx, &gates_key(sts_ref), &seen.gates)?;
        let status = Status {
            revision: seen.target,
            updated: plan.updated,
            ready: plan.ready,
            total: seen.total,
            failed: plan.failed,
            paused: plan.paused.or(blocked),
        };
        let settled = plan.done && status.paused.is_none() && seen.in_flight.is_empty();
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
}

/// Keeps `records` as plugin state under `key`, or deletes it when there are none.
fn forget_or_keep<V: serde::Serialize>(
    ctx: &mut Context,
    key: &str,
    records: &BTreeMap<String, V>,
) -> Result<(), Error> {
    if records.is_empty() {
        ctx.state_delete(key);
        Ok(())
    } else {
        keep(ctx, key, records)
    }
}

/// Moves pod `i` to `phase` with one command (mark, in-place patch or eviction) and
/// records it as in flight; false when the pipe refused it.
fn send(
    ctx: &mut Context,
    sts_ref: &ObjectRef,
    seen: &mut Observed,
    i: usize,
    phase: Phase,
    guard: Option<usize>,
) -> Result<bool, Error> {
    let state = State::new(&seen.target, phase, seen.now);
    let (ns, target, pod) = (&seen.ns, &seen.target, &seen.pods[i]);
    let (name, at) = (&pod.name, pod_ref(ns, &pod.object));
    let command = match phase {
        Phase::Draining => {
            let text = serde_json::to_string(&state).map_err(Error::from)?;
            Command::merge_patch(&at, &json!({"metadata": {"annotations": {STATE: text}}}))
        }
        Phase::Patched => Command::json_patch(&at, &in_place_patch(seen, pod, guard, &state)?),
        Phase::Evicted => Command::evict(&at),
    };
    if let Err(refused) = ctx.submit(command) {
        ctx.warn(match phase {
            Phase::Draining => format!("{sts_ref}: marking {name}: {refused}; retrying later"),
            Phase::Patched => format!("pod {ns}/{name}: in-place patch {refused}; retrying later"),
            Phase::Evicted => format!("{sts_ref}: evicting {name}: {refused}; retrying later"),
        });
        return Ok(false);
    }
    match phase {
        Phase::Draining => {}
        Phase::Patched => ctx.info(format!(
            "pod {ns}/{name}: images patched in place to revision {target}"
        )),
        Phase::Evicted => ctx.info(format!(
            "{sts_ref}: evicting {name} to recreate it at {target}"
        )),
    }
    let name = name.clone();
    seen.in_flight.insert(name, state);
    Ok(true)
}

/// The in-place update of `pod` as one JSON patch: test the old revision (a stale cache
/// cannot update a pod twice) and, with `gate` (the index of the [`GATE`] condition),
/// that the pod is out of service; set the changed images, the target template's labels
/// and annotations (dropping those only the old template had), the revision label and
/// the progress annotation, `state`.
fn in_place_patch(
    seen: &Observed,
    pod: &Pod,
    gate: Option<usize>,
    state: &State,
) -> Result<Value, Error> {
    let template = &seen.target_template;
    let old_template = seen
        .revisions
        .get(&pod.revision)
        .and_then(|r| r.template.as_ref());
    let wanted: BTreeMap<&str, &str> = template
        .get("spec")
        .map(containers)
        .unwrap_or(&[])
        .iter()
        .map(|c| (str_at(c, "/name"), str_at(c, "/image")))
        .collect();
    let label_path = format!("/metadata/labels/{}", escape(HASH_LABEL));
    let mut ops = vec![json!({"op": "test", "path": label_path, "value": pod.revision})];
    if let Some(i) = gate {
        ops.push(
            json!({"op": "test", "path": format!("/status/conditions/{i}/type"), "value": GATE}),
        );
        ops.push(json!({"op": "test", "path": format!("/status/conditions/{i}/status"), "value": "False"}));
    }
    let pod = &pod.object;
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
    ops.push(json!({"op": "replace", "path": label_path, "value": seen.target}));
    let text = serde_json::to_string(state).map_err(Error::from)?;
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
    Ok(Value::Array(ops))
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
