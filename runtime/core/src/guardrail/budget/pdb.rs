//! The PodDisruptionBudget budget: a plugin's command may not leave the pods a
//! `policy/v1` PodDisruptionBudget selects below what it requires.
//!
//! The Eviction API keeps PodDisruptionBudgets already; deletions, in-place image patches
//! and readiness gates do not go through it, so the runtime keeps them itself, for every
//! disruption, counting what is in flight as the other budgets do. As kube-apiserver's
//! disruption controller reads a budget:
//!
//! - a null selector selects no pod, an empty one every pod of the namespace;
//! - the pods it expects are `status.expectedPods` when the controller has written it
//!   (the scale of the selected pods' controllers), else the pods it selects;
//! - `minAvailable` is the healthy pods it requires (a percentage of the expected pods,
//!   rounded up); `maxUnavailable` leaves `expected - maxUnavailable` (a percentage
//!   rounded up);
//! - a pod is healthy when it is Ready and not being deleted (and, here, not being
//!   disrupted by an admitted command); disrupting a pod that is not healthy is allowed.

use std::sync::Arc;
use std::time::Instant;

use bosun_api::selector::Selector;
use bosun_host::contract::{Command, ObjectRef};
use serde::Deserialize;
use serde_json::Value;

use super::disruption::disrupted_pod;
use super::in_flight::InFlight;
use super::pod::{Parsed, PodDoc};
use super::workload::{admit_disruption, disrupted_in, healthy};
use super::{Budget, Policy, Refusal, Settings, View};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PdbDoc {
    metadata: PdbMeta,
    #[serde(default)]
    spec: PdbSpec,
    #[serde(default)]
    status: PdbStatus,
}

#[derive(Deserialize)]
struct PdbMeta {
    name: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PdbSpec {
    min_available: Option<Value>,
    max_unavailable: Option<Value>,
    selector: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PdbStatus {
    expected_pods: Option<u32>,
}

/// An int-or-string of a PodDisruptionBudget scaled to `expected` pods, percentages
/// rounded up (kube's `GetScaledValueFromIntOrPercent(…, roundUp=true)`). `None` when it
/// is neither a count nor a percentage.
fn scaled(value: &Value, expected: u32) -> Option<u32> {
    match value {
        Value::Number(n) => n.as_u64().map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
        Value::String(s) => {
            let p: u64 = s.trim().strip_suffix('%')?.trim().parse().ok()?;
            let v = (u64::from(expected) * p).div_ceil(100);
            Some(u32::try_from(v).unwrap_or(u32::MAX))
        }
        _ => None,
    }
}

impl PdbDoc {
    /// Healthy pods required out of `expected`; `None` when the budget sets no limit
    /// the runtime can read.
    fn desired(&self, expected: u32) -> Option<u32> {
        if let Some(min) = &self.spec.min_available {
            return scaled(min, expected);
        }
        let max = scaled(self.spec.max_unavailable.as_ref()?, expected)?;
        Some(expected.saturating_sub(max))
    }
}

/// Refuses a command that would leave a PodDisruptionBudget covering its pod with fewer
/// healthy pods than it requires.
#[derive(Debug)]
pub struct PodDisruptionBudgets {
    policy: Arc<dyn Policy>,
    parsed: Parsed,
    in_flight: InFlight,
}

impl Default for PodDisruptionBudgets {
    fn default() -> Self {
        Self::with_policy(Arc::new(Settings {
            pod_disruption_budgets: true,
            ..Settings::OFF
        }))
    }
}

impl PodDisruptionBudgets {
    /// Kept for the plugins and namespaces `policy` says.
    pub fn with_policy(policy: Arc<dyn Policy>) -> Self {
        PodDisruptionBudgets {
            policy,
            parsed: Parsed::default(),
            in_flight: InFlight::default(),
        }
    }
}

impl Budget for PodDisruptionBudgets {
    fn name(&self) -> &str {
        "pod-disruption-budget"
    }

    fn check(
        &self,
        plugin: &str,
        cmd: &Command,
        view: &dyn View,
        now: Instant,
    ) -> Result<(), Refusal> {
        let Some(d) = disrupted_pod(cmd, view) else {
            return Ok(());
        };
        let Some(namespace) = d.target.namespace.as_deref() else {
            return Ok(());
        };
        if !self
            .policy
            .settings(plugin, Some(namespace))
            .pod_disruption_budgets
        {
            return Ok(());
        }
        let Some(pod) = view
            .get(&d.target)
            .and_then(|json| serde_json::from_str::<PodDoc>(&json).ok())
        else {
            return Ok(());
        };
        let in_flight = self.in_flight.live(now, view);
        let disrupted = disrupted_in(&in_flight, namespace);
        if !healthy(&pod, &disrupted) {
            return Ok(());
        }
        let mut pods: Option<Vec<Arc<PodDoc>>> = None;
        for json in view.list_namespaced("policy/v1", "PodDisruptionBudget", namespace) {
            let Ok(pdb) = serde_json::from_str::<PdbDoc>(&json) else {
                continue;
            };
            // policy/v1: a null selector selects nothing; a selector kube would refuse
            // selects nothing either.
            let Some(selector) = pdb
                .spec
                .selector
                .as_ref()
                .filter(|s| !s.is_null())
                .and_then(|s| Selector::from_label_selector(s).ok())
            else {
                continue;
            };
            if !selector.matches(&pod.metadata.labels) {
                continue;
            }
            let pods = pods.get_or_insert_with(|| self.parsed.pods(view, namespace));
            let (mut selected, mut healthy_now) = (0u32, 0u32);
            for p in pods.iter().filter(|p| selector.matches(&p.metadata.labels)) {
                selected += 1;
                healthy_now += u32::from(healthy(p, &disrupted));
            }
            let expected = pdb
                .status
                .expected_pods
                .filter(|n| *n > 0)
                .unwrap_or(selected);
            let Some(desired) = pdb.desired(expected) else {
                continue;
            };
            let left = healthy_now.saturating_sub(1);
            if left < desired {
                return Err(Refusal::PodDisruptionBudget {
                    disruption: d.kind,
                    pod: d.target.clone(),
                    pdb: format!("{namespace}/{}", pdb.metadata.name),
                    left,
                    expected,
                    desired,
                });
            }
        }
        Ok(())
    }

    fn admitted(&self, _plugin: &str, cmd: &Command, view: &dyn View, now: Instant) {
        admit_disruption(&self.in_flight, cmd, view, now);
    }

    fn settle(&self, target: &ObjectRef) {
        self.in_flight.remove(&target.key());
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{FakeView, evict, pdb, pod, pod_ref};
    use super::*;
    use serde_json::json;

    /// Four ready pods labelled app=web, and `extra` objects.
    fn view(extra: Vec<Value>) -> FakeView {
        let mut v = FakeView::default();
        for i in 0..4 {
            v = v.with(pod(&format!("web-{i}")).label("app", "web").build());
        }
        extra.into_iter().fold(v, FakeView::with)
    }

    fn selector() -> Value {
        json!({"matchLabels": {"app": "web"}})
    }

    #[test]
    fn min_available_is_kept_counting_admitted_disruptions() {
        let now = Instant::now();
        let budget = PodDisruptionBudgets::default();
        let v = view(vec![pdb(
            "web",
            json!({"selector": selector(), "minAvailable": 3}),
        )]);
        assert!(budget.check("p", &evict("web-0"), &v, now).is_ok());
        budget.admitted("p", &evict("web-0"), &v, now);
        let err = budget
            .check("p", &evict("web-1"), &v, now)
            .expect_err("3 of 4 must stay");
        assert_eq!(
            err.to_string(),
            "evicting Pod/default/web-1 would leave 2 of 4 pods selected by \
             PodDisruptionBudget default/web healthy, it requires 3"
        );
        // web-0, being disrupted, may be disrupted again.
        assert!(budget.check("p", &evict("web-0"), &v, now).is_ok());
        budget.settle(&pod_ref("web-0"));
        assert!(budget.check("p", &evict("web-1"), &v, now).is_ok());
    }

    #[test]
    fn max_unavailable_and_percentages_round_up() {
        let now = Instant::now();
        let budget = PodDisruptionBudgets::default();
        // maxUnavailable 25% of 4 = 1: one may go.
        let v = view(vec![pdb(
            "web",
            json!({"selector": selector(), "maxUnavailable": "25%"}),
        )]);
        assert!(budget.check("p", &evict("web-0"), &v, now).is_ok());
        // minAvailable 80% of 4 = 3.2, rounded up to 4: none may go.
        let v = view(vec![pdb(
            "web",
            json!({"selector": selector(), "minAvailable": "80%"}),
        )]);
        assert!(budget.check("p", &evict("web-0"), &v, now).is_err());
        // expectedPods from the disruption controller sizes the percentage: 6 expected,
        // 50% may be out so 3 are required; 4 are healthy, one may go.
        let with_expected = |n: u32| {
            let mut p = pdb(
                "web",
                json!({"selector": selector(), "maxUnavailable": "50%"}),
            );
            p["status"] = json!({"expectedPods": n});
            view(vec![p])
        };
        assert!(
            budget
                .check("p", &evict("web-0"), &with_expected(6), now)
                .is_ok()
        );
        // 8 expected: 4 required, and only 4 are healthy.
        assert!(
            budget
                .check("p", &evict("web-0"), &with_expected(8), now)
                .is_err()
        );
    }

    #[test]
    fn null_selectors_select_nothing_and_empty_ones_everything() {
        let now = Instant::now();
        let budget = PodDisruptionBudgets::default();
        let none = view(vec![pdb("none", json!({"minAvailable": 4}))]);
        assert!(budget.check("p", &evict("web-0"), &none, now).is_ok());
        let all = view(vec![pdb("all", json!({"selector": {}, "minAvailable": 4}))]);
        assert!(budget.check("p", &evict("web-0"), &all, now).is_err());
        // Another app's budget does not cover these pods.
        let other = view(vec![pdb(
            "db",
            json!({"selector": {"matchLabels": {"app": "db"}}, "minAvailable": 4}),
        )]);
        assert!(budget.check("p", &evict("web-0"), &other, now).is_ok());
        // Switched off for this plugin: not checked.
        let off = PodDisruptionBudgets::with_policy(Arc::new(Settings::OFF));
        assert!(off.check("p", &evict("web-0"), &all, now).is_ok());
    }
}
