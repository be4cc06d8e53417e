//! What a pass does, decided from what it [observed](crate::observe) alone: no host calls,
//! so the release's decisions are tested on plain data.

use std::cmp::Reverse;
use std::time::Duration;

use crate::observe::{Observed, Pod};
use crate::params::{Order, Params, Strategy};
use crate::{Phase, RECHECK_MS};

/// What one pass does, and the counts the release's status shows.
#[derive(Debug)]
pub(crate) struct Plan {
    /// Pods at the target revision.
    pub updated: u64,
    /// Pods available.
    pub ready: u64,
    /// Pods at the target revision that failed to start.
    pub failed: u64,
    /// Why the release waits: too many failures, or the user paused it.
    pub paused: Option<String>,
    /// Every pod at or above the partition is at the target revision, every pod ready.
    pub done: bool,
    /// How long pods take to run ready after the in-place patch, when it changed: kept.
    pub learned: Option<u64>,
    /// When a patched pod should run ready: the plugin is called for changes of the
    /// StatefulSet, not of its pods, so it comes back then rather than at the poll.
    pub wake: Option<Duration>,
    /// Gated pods back in service, whose gate is set True.
    pub open: Vec<usize>,
    /// The updates, in order; a refused command ends them until a later pass.
    pub steps: Vec<Step>,
}

/// One thing a pass does; a pod is its index in [`Observed::pods`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Set the pod's readiness gate False: out of service before its images change.
    Close(usize),
    /// Mark the pod [`Phase::Draining`] for the grace period.
    Mark(usize),
    /// Patch its images in place; with the index of its gate condition, tested False.
    Patch(usize, Option<usize>),
    /// Evict it: the StatefulSet controller recreates it at the target revision.
    Evict(usize),
    /// Look again within this long: a grace period or a gate patch runs.
    Wait(Duration),
    /// The release cannot go on, and why.
    Block(String),
}

/// Decides one pass of the release of `seen` under `params`; `poll` is how soon the
/// plugin looks again at a pod whose gate patch the cache does not show yet.
pub(crate) fn plan(seen: &Observed, params: &Params, poll: Duration) -> Plan {
    let (target, total, now) = (seen.target.as_str(), seen.total, seen.now);
    let at_target = || seen.pods.iter().filter(|p| p.revision == target);
    let updated = at_target().count() as u64;
    let ready = seen.pods.iter().filter(|p| p.available).count() as u64;
    let failed = at_target()
        .filter(|p| p.failed(params.update_timeout, now))
        .count() as u64;
    let in_flight = |p: &Pod| seen.in_flight.contains_key(&p.name);
    let (learned, expected) = pace(seen, params);
    // A gated pod that is not being updated and runs ready containers is back in
    // service (after its update, or new from the StatefulSet controller).
    let open = indexes(seen, |p| {
        p.gated && p.marked(target).is_none() && !in_flight(p) && p.containers_ready
    });
    // Unavailable: missing, not available, marked for update, or just acted on.
    let present = seen.pods.iter().filter(|p| !p.deleting).count() as u64;
    let unavailable = total.saturating_sub(present)
        + seen
            .pods
            .iter()
            .filter(|p| !p.available || p.marked(target).is_some() || in_flight(p))
            .count() as u64;
    let threshold = params.failure_threshold.of(total, 0);
    let paused = if failed > threshold {
        Some(format!(
            "{failed} pods failed to start at revision {target} (threshold {threshold})"
        ))
    } else if params.paused {
        Some("paused by annotation release.bosun.dev/paused".to_owned())
    } else {
        None
    };
    let steps = match paused {
        None => steps(seen, params, unavailable, poll),
        Some(_) => Vec::new(),
    };
    Plan {
        updated,
        ready,
        failed,
        paused,
        done: updated >= total.saturating_sub(params.partition.min(total)) && ready == total,
        learned: learned.filter(|_| learned != seen.learned),
        wake: expected.map(|at| Duration::from_millis(at - now)),
        open,
        steps,
    }
}

/// The indexes of the pods `keep` selects, in the cache's order.
fn indexes(seen: &Observed, keep: impl Fn(&Pod) -> bool) -> Vec<usize> {
    (0..seen.pods.len())
        .filter(|&i| keep(&seen.pods[i]))
        .collect()
}

/// How long pods take from the in-place patch to running their new containers ready,
/// learned from the pods before, and the earliest time (ms) a patched pod should be
/// ready by that measure.
fn pace(seen: &Observed, params: &Params) -> (Option<u64>, Option<u64>) {
    let (target, now) = (seen.target.as_str(), seen.now);
    let mut learned = seen.learned;
    let mut expected = None::<u64>;
    for pod in &seen.pods {
        let Some(state) = pod
            .state
            .as_ref()
            .filter(|s| s.phase == Phase::Patched && s.revision == target)
        else {
            continue;
        };
        if pod.revision != target || pod.failed(params.update_timeout, now) {
            continue;
        }
        if pod.containers_ready {
            if pod.gate.as_deref() == Some("False") && !seen.gates.contains_key(&pod.name) {
                // Seen ready for the first time (its gate is set True this pass): an
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
    (learned, expected)
}

/// The updates of the pods not at the target revision, highest ordinal (or priority)
/// first, while `max-unavailable` less the `unavailable` pods allows.
fn steps(seen: &Observed, params: &Params, unavailable: u64, poll: Duration) -> Vec<Step> {
    let (target, now) = (seen.target.as_str(), seen.now);
    let mut candidates = indexes(seen, |p| {
        p.revision != target
            && p.ordinal >= params.partition
            && !p.deleting
            && !seen.in_flight.contains_key(&p.name)
    });
    let pod = |i: usize| &seen.pods[i];
    match params.order {
        Order::Ordinal => candidates.sort_by_key(|&i| Reverse(pod(i).ordinal)),
        Order::Priority => candidates.sort_by_key(|&i| Reverse((pod(i).priority, pod(i).ordinal))),
    }
    let grace = params.grace_period;
    let mut budget = params
        .max_unavailable
        .of(seen.total, 1)
        .saturating_sub(unavailable);
    let mut steps = Vec::new();
    for i in candidates {
        let pod = pod(i);
        let marked = pod.marked(target);
        // A pod that is not available already does not cost any budget.
        let cost = u64::from(pod.available);
        if marked.is_none() && budget < cost {
            continue;
        }
        let in_place = params.strategy != Strategy::Recreate
            && seen
                .revisions
                .get(&pod.revision)
                .is_some_and(|r| r.images_only);
        // The image patch of a gated pod tests its gate condition is False.
        let guard = pod.gate_at.filter(|_| pod.gated);
        if let Some(state) = marked {
            // Marked earlier (counted unavailable already): the grace period may be over.
            if pod.gated {
                steps.push(Step::Close(i));
            }
            let due = state.since_ms + grace.as_millis() as u64;
            if now < due {
                steps.push(Step::Wait(Duration::from_millis(due - now)));
            } else if in_place {
                if pod.gated && pod.gate.as_deref() != Some("False") {
                    // Out of service first: patch once the cache shows it.
                    steps.push(Step::Wait(poll));
                } else {
                    steps.push(Step::Patch(i, guard));
                }
            }
            continue;
        }
        if !in_place {
            if params.strategy == Strategy::InPlaceOnly {
                steps.push(Step::Block(format!(
                    "pod {} differs from revision {target} in more than images and the \
                     strategy is InPlaceOnly",
                    pod.name
                )));
                break;
            }
            steps.push(Step::Evict(i));
        } else {
            // Out of service first: the pipe runs a plugin's commands in order.
            if pod.gated {
                steps.push(Step::Close(i));
            }
            if grace.is_zero() {
                // Patched in the same pass: the image patch tests the gate condition is
                // False, so it never reaches a pod whose gate patch failed.
                steps.push(Step::Patch(i, guard));
            } else {
                steps.push(Step::Mark(i));
                steps.push(Step::Wait(grace));
            }
        }
        budget -= cost;
    }
    steps
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::{Value, json};

    use super::*;
    use crate::observe::Revision;
    use crate::params::{GRACE_PERIOD, MAX_UNAVAILABLE, STRATEGY};
    use crate::{GATE, HASH_LABEL, STATE, State};

    const NOW: u64 = 1_000_000;
    const POLL: Duration = Duration::from_millis(100);

    fn params(annotations: Value) -> Params {
        let mut annotations = annotations;
        annotations[STRATEGY] = json!("InPlaceIfPossible");
        Params::of(&json!({"metadata": {"annotations": annotations}}))
            .ok()
            .flatten()
            .expect("opted in")
    }

    /// Pod `web-{ordinal}` at `revision`, ready, its gate (if `gate`) in that state.
    fn pod(ordinal: u64, revision: &str, gate: Option<&str>, state: Option<State>) -> Pod {
        let mut conditions = vec![json!({"type": "Ready", "status": "True"})];
        conditions.extend(gate.map(|g| json!({"type": GATE, "status": g})));
        let annotations = match state {
            Some(s) => json!({STATE: serde_json::to_string(&s).expect("json")}),
            None => json!({}),
        };
        Pod::read(json!({
            "metadata": {"name": format!("web-{ordinal}"), "labels": {HASH_LABEL: revision},
                "annotations": annotations},
            "spec": {"containers": [{"name": "app", "image": "app"}],
                "readinessGates": if gate.is_some() { json!([{"conditionType": GATE}]) } else { json!([]) }},
            "status": {"conditions": conditions,
                "containerStatuses": [{"name": "app", "image": "app", "imageID": "sim://app", "ready": true}]}
        }))
    }

    fn seen(pods: Vec<Pod>) -> Observed {
        let old = Revision {
            template: None,
            images_only: true,
        };
        Observed {
            ns: "shop".into(),
            target: "web-v2".into(),
            target_template: json!({}),
            revisions: BTreeMap::from([("web-v1".to_owned(), old)]),
            total: pods.len() as u64,
            now: NOW,
            pods,
            in_flight: BTreeMap::new(),
            gates: BTreeMap::new(),
            learned: None,
        }
    }

    #[test]
    fn highest_ordinals_first_within_the_budget_the_unready_pods_leave() {
        let pods = (0..4).map(|i| pod(i, "web-v1", None, None)).collect();
        let planned = plan(&seen(pods), &params(json!({MAX_UNAVAILABLE: "2"})), POLL);
        assert_eq!(planned.steps, [Step::Patch(3, None), Step::Patch(2, None)]);
        assert_eq!(
            (planned.updated, planned.ready, planned.done),
            (0, 4, false)
        );

        // web-3 just sent (in flight): it uses one of the two.
        let mut seen = seen((0..4).map(|i| pod(i, "web-v1", None, None)).collect());
        let sent = State::new("web-v2", Phase::Patched, NOW);
        seen.in_flight.insert("web-3".into(), sent);
        let planned = plan(&seen, &params(json!({MAX_UNAVAILABLE: "2"})), POLL);
        assert_eq!(planned.steps, [Step::Patch(2, None)]);
    }

    #[test]
    fn a_gated_pod_is_closed_marked_then_patched_once_its_gate_shows_false() {
        let grace = json!({GRACE_PERIOD: "5"});
        // Not marked yet: out of service, mark, come back when the grace period is over.
        let planned = plan(
            &seen(vec![pod(0, "web-v1", Some("True"), None)]),
            &params(grace.clone()),
            POLL,
        );
        let five = Duration::from_secs(5);
        assert_eq!(
            planned.steps,
            [Step::Close(0), Step::Mark(0), Step::Wait(five)]
        );
        assert_eq!(
            planned.open,
            [0],
            "not marked yet: its gate is still let in service"
        );

        let marked = |since_ms| Some(State::new("web-v2", Phase::Draining, since_ms));
        // Marked 1 s ago: wait the 4 s left, without a patch.
        let pods = vec![pod(0, "web-v1", Some("False"), marked(NOW - 1_000))];
        let planned = plan(&seen(pods), &params(grace.clone()), POLL);
        let left = Duration::from_secs(4);
        assert_eq!(planned.steps, [Step::Close(0), Step::Wait(left)]);
        assert!(planned.open.is_empty());
        // Over, but the cache still shows the gate True: look again at the poll.
        let pods = vec![pod(0, "web-v1", Some("True"), marked(NOW - 6_000))];
        let planned = plan(&seen(pods), &params(grace.clone()), POLL);
        assert_eq!(planned.steps, [Step::Close(0), Step::Wait(POLL)]);
        // Over and the gate False: patch, testing the gate at its index (after Ready).
        let pods = vec![pod(0, "web-v1", Some("False"), marked(NOW - 6_000))];
        let planned = plan(&seen(pods), &params(grace), POLL);
        assert_eq!(planned.steps, [Step::Close(0), Step::Patch(0, Some(1))]);
    }
}
